// PostgreSQL refuses to run as root, so as root it runs as the unprivileged
// `postgres` OS user, who often cannot reach the checkout at all: /root and
// `mktemp -d` are mode 700, and containers and cloud VMs clone right there.
// Then the binaries run from a root-owned, world-readable copy keyed by
// version (cacheDir), and the data lives where the postgres user owns it:
// stateDir/<hash of the path asked for>/ when it is kept across restarts, a
// temp directory when it is ephemeral. Reachability is asked of the kernel
// (a probe run as that user), not guessed from mode bits.
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { arch, platform, tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { EmbeddedPostgresError } from "./embedded-postgres-error.js";

export const OS_USER = "postgres";
export const DEFAULT_CACHE_DIR = "/var/cache/querygate";
export const DEFAULT_STATE_DIR = "/var/lib/querygate";

export interface RunAs {
  uid: number;
  gid: number;
}

export interface RootPlacement {
  runAs: RunAs;
  nativeDir: string;
  dataDir: string;
  /** The data directory asked for, when the data lives elsewhere. */
  movedFrom: string | undefined;
  /** What deleting the data deletes: the directory made to hold it, when it was moved. */
  removeRoot: string;
}

export interface RootOptions {
  nativeDir: string;
  dataDir: string;
  ephemeral: boolean;
  cacheDir?: string;
  stateDir?: string;
}

export function placeForRoot(options: RootOptions): RootPlacement {
  const runAs = osUser();
  const nativeDir = reachableBinaries(options.nativeDir, options.cacheDir ?? DEFAULT_CACHE_DIR, runAs);
  const data = reachableData(options, runAs);
  return { runAs, nativeDir, ...data };
}

function osUser(): RunAs {
  const existing = lookUp(OS_USER);
  if (existing) return existing;
  try {
    execFileSync("useradd", ["--system", "--user-group", OS_USER], { stdio: "pipe" });
  } catch (error) {
    throw new EmbeddedPostgresError(
      `PostgreSQL cannot run as root and there is no "${OS_USER}" OS user to run it as (useradd: ${reason(error)}): create one (useradd --system ${OS_USER}), run as another user, or set DATABASE_URL`,
    );
  }
  const created = lookUp(OS_USER);
  if (!created)
    throw new EmbeddedPostgresError(
      `useradd created no "${OS_USER}" OS user: create one, or set DATABASE_URL`,
    );
  return created;
}

function lookUp(name: string): RunAs | undefined {
  try {
    const id = (flag: string) =>
      Number(
        execFileSync("id", [flag, name], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim(),
      );
    return { uid: id("-u"), gid: id("-g") };
  } catch {
    return undefined;
  }
}

/** Runs a shell test as the postgres user: the kernel's answer, ACLs and all. */
function holdsFor(runAs: RunAs, script: string, ...args: string[]): boolean {
  const probe = spawnSync("/bin/sh", ["-c", script, "sh", ...args], {
    ...runAs,
    cwd: "/",
    stdio: "ignore",
    timeout: 30_000,
  });
  return probe.status === 0;
}

const BINARIES_WORK =
  '"$1/bin/postgres" --version && "$1/bin/initdb" --version && test -r "$1/share/postgresql/postgres.bki"';

function reachableBinaries(nativeDir: string, cacheDir: string, runAs: RunAs): string {
  if (holdsFor(runAs, BINARIES_WORK, nativeDir)) return nativeDir;
  const cannot = (what: string) =>
    new EmbeddedPostgresError(
      `the "${OS_USER}" OS user cannot reach the PostgreSQL binaries in ${nativeDir}, and ${what}: let it in (chmod o+x on each parent directory) or set DATABASE_URL`,
    );
  try {
    rootOwnedDir(cacheDir);
  } catch (error) {
    if (error instanceof EmbeddedPostgresError) throw error;
    throw cannot(`a copy cannot go to ${cacheDir} (${reason(error)})`);
  }
  const target = join(cacheDir, `postgres-${version(nativeDir)}-${platform()}-${arch()}`);
  if (existsSync(target)) {
    rootOwnedDir(target);
    if (holdsFor(runAs, BINARIES_WORK, target)) return target;
    // Damaged (a cleaner took files): build it again.
    rmSync(target, { recursive: true, force: true });
  }
  const building = mkdtempSync(join(cacheDir, ".building-"));
  try {
    copyTree(realpathSync(nativeDir), building);
    chmodSync(building, 0o755);
    renameSync(building, target);
  } catch (error) {
    rmSync(building, { recursive: true, force: true });
    // Another process renamed its copy into place first: use that one.
    const lostRace = ["ENOTEMPTY", "EEXIST"].includes(code(error)) && existsSync(target);
    if (!lostRace) throw cannot(`copying them to ${cacheDir} failed (${reason(error)})`);
  }
  if (!holdsFor(runAs, BINARIES_WORK, target)) throw cannot(`it cannot reach their copy in ${target} either`);
  return target;
}

/** The binaries package's version, so checkouts of one version share one copy. */
function version(nativeDir: string): string {
  try {
    const { version } = JSON.parse(readFileSync(join(nativeDir, "..", "package.json"), "utf8")) as {
      version?: unknown;
    };
    if (typeof version === "string" && /^[\w.+-]+$/.test(version)) return version;
  } catch {}
  return `of-${createHash("sha256").update(realpathSync(nativeDir)).digest("hex").slice(0, 16)}`;
}

/**
 * Creates `dir` (mode 755) or checks the one there: a real directory, owned by
 * root, that nobody else can write to — not a symlink someone planted.
 */
function rootOwnedDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const stat = lstatSync(dir);
  if (!stat.isDirectory() || stat.uid !== 0 || (stat.mode & 0o022) !== 0)
    throw new EmbeddedPostgresError(
      `${dir} is not a directory owned by root that only root can write to: remove it, then start again`,
    );
  // A umask of 077 would leave it closed to the postgres user.
  if ((stat.mode & 0o755) !== 0o755) chmodSync(dir, 0o755);
}

/**
 * Files root owns that are already world-readable are hard-linked (instant,
 * no extra disk); anything else is copied, so nobody but root can change what
 * the cache runs. Symlinks (lib*.so → lib*.so.N) are recreated as they are.
 */
function copyTree(from: string, to: string): void {
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    const source = join(from, entry.name);
    const target = join(to, entry.name);
    if (entry.isSymbolicLink()) symlinkSync(readlinkSync(source), target);
    else if (entry.isDirectory()) {
      mkdirSync(target);
      chmodSync(target, 0o755);
      copyTree(source, target);
    } else if (entry.isFile()) {
      const stat = lstatSync(source);
      const mode = stat.mode & 0o111 ? 0o755 : 0o644;
      if (stat.uid === 0 && (stat.mode & 0o777) === mode && tryLink(source, target)) continue;
      copyFileSync(source, target);
      chmodSync(target, mode);
    }
  }
}

function tryLink(source: string, target: string): boolean {
  try {
    linkSync(source, target);
    return true;
  } catch {
    return false; // another filesystem (EXDEV), or links not allowed
  }
}

function reachableData(
  options: RootOptions,
  runAs: RunAs,
): Pick<RootPlacement, "dataDir" | "movedFrom" | "removeRoot"> {
  mkdirSync(dirname(options.dataDir), { recursive: true });
  const asked = join(realpathSync(dirname(options.dataDir)), basename(options.dataDir));
  if (usableDataDir(asked, runAs)) {
    ownedDataDir(asked, runAs);
    return { dataDir: asked, movedFrom: undefined, removeRoot: asked };
  }
  let parent: string;
  if (options.ephemeral) {
    parent = mkdtempSync(join(tmpdir(), "querygate-"));
    chmodSync(parent, 0o755);
  } else {
    const stateDir = options.stateDir ?? DEFAULT_STATE_DIR;
    parent = join(stateDir, createHash("sha256").update(asked).digest("hex").slice(0, 16));
    try {
      rootOwnedDir(stateDir);
      rootOwnedDir(parent);
      // Which checkout this data belongs to, for whoever finds it.
      if (!existsSync(join(parent, "source"))) writeFileSync(join(parent, "source"), `${asked}\n`);
    } catch (error) {
      if (error instanceof EmbeddedPostgresError) throw error;
      throw new EmbeddedPostgresError(
        `the "${OS_USER}" OS user cannot reach ${dirname(asked)}, and its data cannot go to ${stateDir} (${reason(error)}): let it in (chmod o+x on each parent directory) or set DATABASE_URL`,
      );
    }
  }
  const dataDir = join(parent, basename(asked));
  if (!usableDataDir(dataDir, runAs)) {
    if (options.ephemeral) rmSync(parent, { recursive: true, force: true });
    throw new EmbeddedPostgresError(
      `the "${OS_USER}" OS user cannot reach ${dirname(asked)} nor ${parent}: let it in (chmod o+x on each parent directory)${options.ephemeral ? ", point TMPDIR elsewhere," : ""} or set DATABASE_URL`,
    );
  }
  ownedDataDir(dataDir, runAs);
  return { dataDir, movedFrom: asked, removeRoot: parent };
}

/** An existing cluster the postgres user owns and can enter, or a parent it can enter to make one in. */
function usableDataDir(dataDir: string, runAs: RunAs): boolean {
  if (!existsSync(dataDir)) return holdsFor(runAs, 'test -x "$1"', dirname(dataDir));
  if (!existsSync(join(dataDir, "PG_VERSION"))) return holdsFor(runAs, 'test -x "$1"', dirname(dataDir));
  return lstatSync(dataDir).uid === runAs.uid && holdsFor(runAs, 'test -w "$1/PG_VERSION"', dataDir);
}

/** initdb, run as the postgres user, wants an empty directory of its own, mode 700. */
function ownedDataDir(dataDir: string, runAs: RunAs): void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  if (readdirSync(dataDir).length > 0) return;
  chownSync(dataDir, runAs.uid, runAs.gid);
  chmodSync(dataDir, 0o700);
}

function code(error: unknown): string {
  return (error as NodeJS.ErrnoException)?.code ?? "";
}

function reason(error: unknown): string {
  const e = error as NodeJS.ErrnoException & { stderr?: Buffer };
  const stderr = e?.stderr?.toString().trim().split("\n").at(-1);
  return stderr || e?.code || String(error).split("\n")[0] || "unknown error";
}
