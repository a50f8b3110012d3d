// `npm start`: the whole stack on one machine. Without DATABASE_URL an
// embedded PostgreSQL runs from .data/postgres in this checkout (kept across
// restarts, on a free port so checkouts side by side never collide; as root
// in a checkout the postgres OS user cannot enter, from a directory of its own
// that the log names); then query-grpc and http-bridge start in this process.
// Ctrl-C stops all three.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadConfig as loadBridgeConfig } from "../services/http-bridge/src/config.js";
import { startBridge } from "../services/http-bridge/src/server.js";
import { loadConfig as loadGrpcConfig } from "../services/query-grpc/src/config.js";
import { startQueryGrpc } from "../services/query-grpc/src/grpc/server.js";
import { ConfigError } from "../services/shared/src/config.js";
import { createLogger } from "../services/shared/src/logger.js";
import { EmbeddedPostgresError } from "./embedded-postgres-error.js";

/** The checkout: the nearest folder above this file with a package.json (works from scripts/ and dist/scripts/). */
function checkoutRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json")) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

const root = checkoutRoot();
const logLevel = process.env.LOG_LEVEL ?? "info";
const logger = createLogger("querygate", logLevel);

async function main() {
  let databaseUrl = process.env.DATABASE_URL;
  let stopDatabase = async () => {};
  if (!databaseUrl) {
    const { startEmbeddedPostgres } = await import("./embedded-postgres.js");
    const dataDir = join(root, ".data", "postgres");
    const db = await startEmbeddedPostgres({ dataDir });
    databaseUrl = db.url;
    stopDatabase = db.stop;
    logger.info(
      { dataDir: db.dataDir, port: db.port },
      db.movedFrom
        ? `embedded PostgreSQL running, data in ${db.dataDir} (the postgres OS user cannot reach ${db.movedFrom}; set DATABASE_URL to use another server)`
        : "embedded PostgreSQL running (set DATABASE_URL to use another server)",
    );
  }

  const grpcConfig = loadGrpcConfig({ ...process.env, DATABASE_URL: databaseUrl });
  const grpc = await startQueryGrpc(grpcConfig, createLogger("query-grpc", logLevel));
  const bridgeConfig = loadBridgeConfig({ QUERY_GRPC_TARGET: `127.0.0.1:${grpc.port}`, ...process.env });
  const bridge = await startBridge(bridgeConfig, createLogger("http-bridge", logLevel));
  logger.info(
    `ready: curl -XPOST localhost:${bridge.port}/query -H 'content-type: application/json' -d '{"query":"select 1"}'`,
  );

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "stopping");
    await bridge.close(2000);
    await grpc.close(2000);
    await stopDatabase();
    process.exit(0);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
}

main().catch((error) => {
  if (error instanceof ConfigError || error instanceof EmbeddedPostgresError)
    console.error(`querygate: ${error.message}`);
  else console.error("querygate failed to start:", error);
  process.exit(1);
});
