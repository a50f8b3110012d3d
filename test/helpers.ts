// Shared fixtures for every test file: one embedded PostgreSQL per `npm test`
// run, started on first use and stopped by test/run.ts.
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { type EmbeddedDatabase, startEmbeddedPostgres } from "../scripts/embedded-postgres.js";

let db: Promise<EmbeddedDatabase> | undefined;
const cleanups: Array<() => Promise<void>> = [];

/** The test run's PostgreSQL (a fresh, ephemeral cluster). */
export function database(): Promise<EmbeddedDatabase> {
  db ??= startEmbeddedPostgres({
    dataDir: join(".data", `test-${process.pid}-${randomBytes(3).toString("hex")}`),
    ephemeral: true,
  });
  return db;
}

/** Registers work to run once all suites have finished (stop servers, pools). */
export function atEnd(cleanup: () => Promise<void>): void {
  cleanups.push(cleanup);
}

export async function stopAll(): Promise<void> {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  if (db) await (await db).stop();
}
