// The standby's postmaster. embedded-postgres.ts cannot run it: it knows a
// server is ready only by the line a primary logs, and a standby says "ready
// to accept read-only connections" instead. So this only spawns and stops it,
// with the settings embedded-postgres.ts gives the primary, and keeps its log;
// whoever starts it asks the server itself when it is ready.
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import type { RunAs } from "../scripts/embedded-postgres-root.js";

export interface StandbyProcess {
  /** True once the postmaster is gone (or could not be run). */
  readonly exited: boolean;
  /** A fast shutdown; resolves once the postmaster has exited. */
  stop(): Promise<void>;
  /** Its last 40 log lines. */
  log(): string;
}

/** The standby's postmaster, with the settings embedded-postgres.ts gives the primary. */
export function spawnStandby(
  binDir: string,
  dataDir: string,
  port: number,
  runAs: RunAs | undefined,
): StandbyProcess {
  const child: ChildProcess = spawn(
    join(binDir, "postgres"),
    [
      ...["-D", dataDir, "-p", String(port)],
      ...["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="],
      // A standby refuses to start with fewer than the primary's.
      ...["-c", "max_connections=200"],
      ...["-c", "lc_messages=C"],
    ],
    { ...runAs, cwd: runAs ? "/" : undefined, stdio: ["ignore", "ignore", "pipe"] },
  );
  const lines: string[] = [];
  let partial = "";
  let exited = false;
  // A postgres left behind would hold its port and data directory.
  const stopOnExit = () => child.kill("SIGINT");
  process.on("exit", stopOnExit);
  const gone = new Promise<void>((resolve) => {
    const done = () => {
      exited = true;
      process.off("exit", stopOnExit);
      resolve();
    };
    child.on("exit", done);
    child.on("error", (error) => {
      lines.push(`cannot run postgres: ${error.message}`);
      done();
    });
  });
  // Always read stderr, or a full pipe would stall the server's logging.
  child.stderr?.on("data", (chunk: Buffer) => {
    const complete = (partial + chunk.toString("utf8")).split("\n");
    partial = complete.pop() ?? "";
    lines.push(...complete);
    if (lines.length > 40) lines.splice(0, lines.length - 40);
  });
  return {
    get exited() {
      return exited;
    },
    async stop() {
      if (!exited) child.kill("SIGINT"); // a fast shutdown
      await gone;
    },
    log: () => lines.join("\n"),
  };
}
