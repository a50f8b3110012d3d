// A disposable primary and one streaming standby on loopback, for tests of
// read replicas, read-your-writes and failover (issue 13). The primary is run
// by scripts/embedded-postgres.ts like every test server (its binaries, its
// way of running as root); the standby is the primary's base backup
// (base-backup.ts) plus standby.signal and primary_conninfo, run by
// standby-process.ts. Readiness, streaming, replay and promotion are asked of
// the servers themselves, each with a deadline.
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import pg from "pg";
import {
  type EmbeddedDatabase,
  freePort,
  type StopMode,
  startEmbeddedPostgres,
} from "../scripts/embedded-postgres.js";
import { placeForRoot, type RunAs } from "../scripts/embedded-postgres-root.js";
import { baseBackup, writeOwned } from "./base-backup.js";
import { atEnd, eventually } from "./helpers.js";
import { type StandbyProcess, spawnStandby } from "./standby-process.js";

export interface StandbyPair {
  /** postgres:// URL of the primary's superuser; that server is gone after promote(). */
  readonly primaryUrl: string;
  /** The same on the standby: read-only until promote(), the only primary after. */
  readonly standbyUrl: string;
  /** Resolves once the standby has replayed the WAL up to `lsn` (a pg_lsn as text); before promote() only. */
  waitForReplay(lsn: string, timeoutMs?: number): Promise<void>;
  /** Stops applying WAL (the standby keeps receiving it); resolves once replay has paused. */
  pauseReplay(): Promise<void>;
  resumeReplay(): Promise<void>;
  /**
   * Failover: stops the primary, then promotes the standby; resolves once the
   * standby takes writes. "fast" (default) sends the standby all WAL before
   * the primary exits; "immediate" is a crash, which loses commits the standby
   * had not received unless the pair is synchronous.
   */
  promote(mode?: StopMode): Promise<void>;
  /** Stops both servers and deletes their data (atEnd() does it too). */
  stop(): Promise<void>;
  /** The standby's last log lines, for failure messages. */
  log(): string;
}

export interface StandbyOptions {
  /** Commits on the primary wait until the standby has flushed their WAL (synchronous_standby_names). */
  synchronous?: boolean;
}

// The standby's name on the primary (pg_stat_replication, synchronous_standby_names).
const APPLICATION_NAME = "standby";
const SLOT = "querygate_standby";
const REPLICATION_ROLE = "querygate_replication";
const STARTS_WITHIN_MS = 120_000;
const PROMOTES_WITHIN_S = 60;

/** Starts a fresh primary and a standby streaming from it; resolves once the standby has caught up. */
export async function startStandbyPair(options: StandbyOptions = {}): Promise<StandbyPair> {
  // Open to all (the data directories in it are 700): as root the postgres OS
  // user must reach it, or embedded-postgres.ts would move the primary's data.
  const dir = mkdtempSync(join(tmpdir(), "querygate-standby-"));
  chmodSync(dir, 0o755);
  let standby: StandbyProcess | undefined;
  let standbyRemoveRoot: string | undefined;
  const primary = await startEmbeddedPostgres({ dataDir: join(dir, "primary") }).catch((error: unknown) => {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  });
  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= (async () => {
      await standby?.stop();
      await primary.remove();
      if (standbyRemoveRoot) rmSync(standbyRemoveRoot, { recursive: true, force: true });
      rmSync(dir, { recursive: true, force: true });
    })();
    return stopped;
  };
  atEnd(stop);

  try {
    const password = randomBytes(16).toString("hex");
    await query(
      primary.url,
      `do $$ begin
         if current_setting('wal_level') = 'minimal' then
           raise 'wal_level is minimal: a standby needs replica';
         end if;
       end $$;
       create role ${REPLICATION_ROLE} login replication password '${password}';
       -- WAL from here on stays until the standby has it: the backup needs it all.
       select pg_create_physical_replication_slot('${SLOT}', immediately_reserve => true);`,
    );

    const clone = await cloneAsStandby(primary, join(dir, "standby"), password);
    standbyRemoveRoot = clone.removeRoot;

    const port = await freePort();
    const standbyUrl = new URL(primary.url);
    standbyUrl.port = String(port);
    const running = spawnStandby(primary.binDir, clone.dataDir, port, clone.owner);
    standby = running;
    const failure = (what: string) => `${what}; the standby's log:\n${running.log()}`;
    // Fails at once if the standby exits; a timeout comes with its log too.
    const until = (check: () => Promise<boolean>, what: string) =>
      eventually(
        async () => {
          if (running.exited) throw new Error(failure("the standby stopped"));
          return check();
        },
        STARTS_WITHIN_MS,
        what,
      ).catch((error: Error) => {
        throw running.exited ? error : new Error(failure(error.message));
      });

    await until(() => answers(standbyUrl.toString()), "the standby to accept connections");
    await until(
      async () => (await replicationState(primary.url)) === "streaming",
      "the standby to stream from the primary",
    );
    if (options.synchronous) {
      await query(primary.url, `alter system set synchronous_standby_names = '"${APPLICATION_NAME}"'`);
      await query(primary.url, "select pg_reload_conf()");
      await until(
        async () => (await replicationState(primary.url, "sync_state")) === "sync",
        "the standby to become synchronous",
      );
    }

    const pair: StandbyPair = {
      primaryUrl: primary.url,
      standbyUrl: standbyUrl.toString(),
      waitForReplay: (lsn, timeoutMs = 30_000) =>
        pollStandby(
          pair.standbyUrl,
          "select coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false) as done",
          [lsn],
          timeoutMs,
          `the standby to replay the WAL up to ${lsn}`,
        ),
      async pauseReplay() {
        await query(pair.standbyUrl, "select pg_wal_replay_pause()");
        await pollStandby(
          pair.standbyUrl,
          "select pg_get_wal_replay_pause_state() = 'paused' as done",
          [],
          30_000,
          "replay to pause",
        );
      },
      async resumeReplay() {
        await query(pair.standbyUrl, "select pg_wal_replay_resume()");
      },
      async promote(mode = "fast") {
        await primary.stop(mode);
        const { rows } = await query<{ promoted: boolean }>(
          pair.standbyUrl,
          `select pg_promote(wait => true, wait_seconds => ${PROMOTES_WITHIN_S}) as promoted`,
        );
        if (!rows[0]?.promoted)
          throw new Error(failure(`the standby was not promoted within ${PROMOTES_WITHIN_S} s`));
      },
      stop,
      log: () => running.log(),
    };
    await pair.waitForReplay(await currentLsn(primary.url));
    return pair;
  } catch (error) {
    await stop();
    throw error;
  }
}

interface Clone {
  dataDir: string;
  /** As root: the postgres OS user, who owns the data. */
  owner: RunAs | undefined;
  /** What deleting the standby's data deletes. */
  removeRoot: string;
}

/** The primary's base backup at `asked` (or where, as root, the postgres OS user owns it), set up to stream. */
async function cloneAsStandby(primary: EmbeddedDatabase, asked: string, password: string): Promise<Clone> {
  // As root, a directory of the postgres OS user's, as for the primary.
  const placed =
    process.getuid?.() === 0
      ? placeForRoot({ nativeDir: dirname(primary.binDir), dataDir: asked, ephemeral: true })
      : undefined;
  const owner = placed?.runAs;
  const dataDir = placed?.dataDir ?? asked;
  if (!placed) mkdirSync(dataDir, { mode: 0o700 });
  const clone = { dataDir, owner, removeRoot: placed?.removeRoot ?? dataDir };
  try {
    await baseBackup(primary.url, primary.dataDir, dataDir, owner);
  } catch (error) {
    rmSync(clone.removeRoot, { recursive: true, force: true });
    throw error;
  }
  writeOwned(join(dataDir, "standby.signal"), "", owner);
  const primaryPort = new URL(primary.url).port;
  writeOwned(
    join(dataDir, "postgresql.auto.conf"),
    [
      `primary_conninfo = 'host=127.0.0.1 port=${primaryPort} user=${REPLICATION_ROLE} password=${password} application_name=${APPLICATION_NAME}'`,
      `primary_slot_name = '${SLOT}'`,
      "",
    ].join("\n"),
    owner,
    "a",
  );
  return clone;
}

async function query<Row extends pg.QueryResultRow = pg.QueryResultRow>(
  url: string,
  sql: string,
  params: unknown[] = [],
): Promise<pg.QueryResult<Row>> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    // No parameters: the simple protocol, which runs several statements.
    return params.length > 0 ? await client.query<Row>(sql, params) : await client.query<Row>(sql);
  } finally {
    await client.end().catch(() => {});
  }
}

/** Polls `sql` (one row with a boolean `done`) on one connection until it says true. */
async function pollStandby(
  url: string,
  sql: string,
  params: unknown[],
  timeoutMs: number,
  what: string,
): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    await eventually(
      async () => (await client.query<{ done: boolean }>(sql, params)).rows[0]?.done === true,
      timeoutMs,
      what,
    );
  } finally {
    await client.end().catch(() => {});
  }
}

async function answers(url: string): Promise<boolean> {
  try {
    await query(url, "select 1");
    return true;
  } catch {
    return false; // not consistent yet: "the database system is not yet accepting connections"
  }
}

async function replicationState(primaryUrl: string, column: "state" | "sync_state" = "state") {
  const { rows } = await query<{ value: string }>(
    primaryUrl,
    `select ${column} as value from pg_stat_replication where application_name = $1`,
    [APPLICATION_NAME],
  );
  return rows[0]?.value;
}

async function currentLsn(primaryUrl: string): Promise<string> {
  const { rows } = await query<{ lsn: string }>(primaryUrl, "select pg_current_wal_lsn()::text as lsn");
  return rows[0]!.lsn;
}
