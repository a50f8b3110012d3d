// A private PgBouncer in transaction mode in front of the test database, so
// tests can prove query-grpc leaves nothing behind on a server connection that
// the next transaction (its own or another caller's) gets. Debian's pgbouncer
// (1.18: no prepared-statement support, the strictest) is optional locally:
// when it is absent, pgbouncer() says so in one line and returns undefined.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { freePort } from "../scripts/embedded-postgres.js";
import { atEnd, database, eventually } from "./helpers.js";

export const PGBOUNCER_BINARY = "/usr/sbin/pgbouncer";
/** Server connections per database/user pair: fewer than query-grpc's pool, so callers share them. */
export const SERVER_POOL_SIZE = 2;

export interface PgBouncer {
  /** postgres:// URL of the test database's superuser, through PgBouncer. */
  readonly url: string;
  /** The same through PgBouncer's admin console (SHOW POOLS, ...). */
  readonly adminUrl: string;
  /** Everything PgBouncer logged, for failure messages. */
  log(): string;
}

let started: Promise<PgBouncer | undefined> | undefined;

/** The run's PgBouncer, started on first use; undefined (after one line saying so) when not installed. */
export function pgbouncer(): Promise<PgBouncer | undefined> {
  started ??= start();
  return started;
}

async function start(): Promise<PgBouncer | undefined> {
  if (!existsSync(PGBOUNCER_BINARY)) {
    console.log("pgbouncer not installed: skipping PgBouncer tests (apt-get install pgbouncer)");
    return undefined;
  }
  const backend = new URL((await database()).url);
  const port = await freePort();
  // PgBouncer refuses to run as root: as root it runs as the postgres OS user
  // embedded-postgres already uses, so its files must be that user's.
  const runAs = process.getuid?.() === 0 ? osUser("postgres") : undefined;
  const dir = mkdtempSync(join(tmpdir(), "querygate-pgbouncer-"));
  chmodSync(dir, 0o700);
  const userlist = join(dir, "userlist.txt");
  const config = join(dir, "pgbouncer.ini");
  // A plain password in the userlist lets PgBouncer answer SCRAM both ways:
  // to its clients and to the SCRAM-only test server.
  writeFileSync(
    userlist,
    `"${decodeURIComponent(backend.username)}" "${decodeURIComponent(backend.password)}"\n`,
    { mode: 0o600 },
  );
  writeFileSync(
    config,
    [
      "[databases]",
      `${backend.pathname.slice(1)} = host=${backend.hostname} port=${backend.port}`,
      "[pgbouncer]",
      "listen_addr = 127.0.0.1",
      `listen_port = ${port}`,
      "unix_socket_dir =",
      "auth_type = scram-sha-256",
      `auth_file = ${userlist}`,
      "pool_mode = transaction",
      `default_pool_size = ${SERVER_POOL_SIZE}`,
      "max_client_conn = 200",
      // SHOW POOLS on the admin console tells tests when a client waits for a server connection.
      `admin_users = ${decodeURIComponent(backend.username)}`,
      // Only what query-grpc does on its connections counts: no reset of PgBouncer's own in between.
      "server_reset_query =",
      "",
    ].join("\n"),
    { mode: 0o600 },
  );
  if (runAs) for (const path of [dir, userlist, config]) chownSync(path, runAs.uid, runAs.gid);

  let output = "";
  const child: ChildProcess = spawn(PGBOUNCER_BINARY, [config], {
    ...(runAs ?? {}),
    cwd: dir,
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  let exited = false;
  child.on("exit", () => {
    exited = true;
  });
  child.on("error", (error) => {
    exited = true;
    output += `spawn failed: ${error.message}\n`;
  });
  const stop = async () => {
    if (!exited) {
      const gone = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGINT");
      await Promise.race([gone, new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
      if (!exited) child.kill("SIGKILL");
    }
    rmSync(dir, { recursive: true, force: true });
  };
  atEnd(stop);

  const url = new URL(backend);
  url.port = String(port);
  const answers = async () => {
    if (exited) throw new Error(`pgbouncer exited before it answered:\n${output}`);
    const probe = new pg.Client({ connectionString: url.toString(), connectionTimeoutMillis: 2000 });
    try {
      await probe.connect();
      await probe.query("select 1");
      return true;
    } catch {
      return false;
    } finally {
      await probe.end().catch(() => {});
    }
  };
  try {
    await eventually(answers, 15_000, "pgbouncer to accept connections");
  } catch (error) {
    await stop();
    throw new Error(`${(error as Error).message}\n${output}`);
  }
  const admin = new URL(url);
  admin.pathname = "/pgbouncer";
  return { url: url.toString(), adminUrl: admin.toString(), log: () => output };
}

function osUser(name: string): { uid: number; gid: number } {
  const id = (flag: string) => Number(execFileSync("id", [flag, name], { encoding: "utf8" }).trim());
  return { uid: id("-u"), gid: id("-g") };
}
