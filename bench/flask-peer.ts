// The original Flask tool that querygate replaces, run beside it on the same
// PostgreSQL so "faster than what it replaces" is measured, not remembered.
// The app is the stand-in kept in shared/peers/seed-flask (the seed's code is
// not in this repository); it is served as the seed served it: gunicorn, 2 sync
// workers, SQLAlchemy's pool of 10. It needs Debian's gunicorn, python3-flask,
// python3-sqlalchemy and python3-psycopg2; without them the phase skips it.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { closeSync, existsSync, openSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "../scripts/embedded-postgres.js";
import { findTool } from "./generators.js";
import { stopChild } from "./processes.js";

/** Debian's gunicorn runs /usr/bin/python3, whatever python3 is first on PATH. */
const PYTHON = "/usr/bin/python3";

/** Why the peer cannot run here, or undefined when it can. */
export async function flaskMissing(appDir: string): Promise<string | undefined> {
  if (!existsSync(join(appDir, "app.py"))) return `no Flask peer at ${appDir}/app.py`;
  if (!findTool("gunicorn")) return "gunicorn is not installed (Debian package gunicorn)";
  const missing = await new Promise<string | undefined>((resolve) => {
    execFile(PYTHON, ["-c", "import flask, sqlalchemy, psycopg2"], (error, _stdout, stderr) =>
      resolve(error ? stderr.trim().split("\n").pop() || error.message : undefined),
    );
  });
  return missing
    ? `${PYTHON} cannot import the Flask peer's modules (Debian python3-flask python3-sqlalchemy python3-psycopg2): ${missing}`
    : undefined;
}

export class FlaskPeer {
  private readonly exited: Promise<void>;

  private constructor(
    readonly port: number,
    private readonly child: ChildProcess,
  ) {
    this.exited = new Promise((resolve) => child.once("exit", () => resolve()));
  }

  static async start(options: { appDir: string; databaseUrl: string; logFile: string }): Promise<FlaskPeer> {
    const port = await freePort();
    const log = openSync(options.logFile, "w");
    const child = spawn(
      findTool("gunicorn") ?? "gunicorn",
      ["-w", "2", "-b", `127.0.0.1:${port}`, "app:app"],
      {
        cwd: options.appDir,
        env: { ...process.env, DATABASE_URL: options.databaseUrl },
        stdio: ["ignore", log, log],
      },
    );
    closeSync(log);
    const peer = new FlaskPeer(port, child);
    const until = Date.now() + 15_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`gunicorn exited while starting; see ${options.logFile}`);
      if (await answers(`http://127.0.0.1:${port}/`)) return peer;
      if (Date.now() > until) {
        await peer.stop();
        throw new Error(`gunicorn did not answer within 15 s; see ${options.logFile}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** gunicorn's master; its workers are its children. */
  get pid(): number {
    return this.child.pid ?? 0;
  }

  async stop(): Promise<void> {
    await stopChild(this.child, this.exited, 10_000);
  }
}

async function answers(url: string): Promise<boolean> {
  try {
    return (await fetch(url)).ok;
  } catch {
    return false;
  }
}
