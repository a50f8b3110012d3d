// A PostgreSQL of one test file's own, which the test may stop (`-m fast`),
// kill (`-m immediate`) and start again without disturbing the run's shared
// database. Run by scripts/embedded-postgres.ts like the shared one, so it
// works wherever that does (as root in a checkout others cannot enter too).
import { rmSync } from "node:fs";
import { join } from "node:path";
import { type StopMode, startEmbeddedPostgres } from "../scripts/embedded-postgres.js";
import { atEnd } from "./helpers.js";

export type { StopMode };

export interface DisposableDatabase {
  /** postgres:// URL of the superuser on the `postgres` database; valid across restarts. */
  readonly url: string;
  readonly port: number;
  readonly running: boolean;
  /** Starts the server (again) on the same port and data; resolves once it accepts connections. */
  start(): Promise<void>;
  /** Stops the server and waits until its processes are gone. */
  stop(mode: StopMode): Promise<void>;
}

/** Creates a fresh cluster and starts it; atEnd() kills it and deletes its data. */
export async function startDisposablePostgres(name: string): Promise<DisposableDatabase> {
  const dataDir = join(".data", `${name}-${process.pid}`);
  rmSync(dataDir, { recursive: true, force: true }); // a crashed run's leftovers
  const db = await startEmbeddedPostgres({ dataDir });
  let running = true;
  atEnd(() => db.remove());
  return {
    url: db.url,
    port: db.port,
    get running() {
      return running;
    },
    async start() {
      await db.start();
      running = true;
    },
    async stop(mode) {
      await db.stop(mode);
      running = false;
    },
  };
}
