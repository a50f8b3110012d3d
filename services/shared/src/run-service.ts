// What both services' main.ts do: read configuration (one clear line and exit 2
// when it is wrong), start, and on SIGTERM/SIGINT stop gracefully and exit 0.
import { ConfigError } from "./config.js";
import { createLogger, type Logger } from "./logger.js";

interface Stoppable {
  close(graceMs: number): Promise<void>;
}

interface ServiceConfig {
  LOG_LEVEL: string;
  SHUTDOWN_GRACE_MS: number;
}

export async function runService<C extends ServiceConfig>(
  name: string,
  loadConfig: (env: Record<string, string | undefined>) => C,
  start: (config: C, logger: Logger) => Promise<Stoppable>,
): Promise<void> {
  let config: C;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`${name}: ${error.message}`);
      process.exit(2);
    }
    throw error;
  }
  const logger = createLogger(name, config.LOG_LEVEL);
  const service = await start(config, logger);
  let stopping = false;
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.on(signal, () => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal, graceMs: config.SHUTDOWN_GRACE_MS }, "shutting down");
      service.close(config.SHUTDOWN_GRACE_MS).then(
        () => process.exit(0),
        (error) => {
          logger.error({ err: error }, "shutdown failed");
          process.exit(1);
        },
      );
    });
  }
}
