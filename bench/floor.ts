// The floor phase: what the transport alone costs on this machine. The same
// generators, connections and body as the loadgen phase, against servers
// that do nothing (bench/floor-servers.ts: an empty grpc-js server, one on
// query-grpc's own transport, a bare node:http2 one, Hono answering canned
// JSON, and Hono in front of query-grpc's empty server through either gRPC
// client). Issue 12's CPU targets are read against these figures: a target
// below the floor cannot be met by changing querygate's code alone.
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { peerLookupSql } from "./data.js";
import type { FloorKind } from "./floor-servers.js";
import { findTool, h2load, wrk } from "./generators.js";
import { EXECUTE_PATH, executeBody, executeOnce } from "./h2load-grpc.js";
import { measurePaths, type Path, postOnce } from "./paths.js";
import { processCpu, stopChild } from "./processes.js";
import type { FloorResults } from "./report.js";

export interface FloorContext {
  root: string;
  workDir: string;
  logDir: string;
  /** Rows of bench_lookup: the range of ids in the body, as in the loadgen phase. */
  lookupRows: number;
  connections: number;
  seconds: number;
  warmupSeconds: number;
  reps: number;
  step(message: string): void;
}

type FloorPath = Path<Exclude<keyof FloorResults, "skipped" | "sums">>;

export async function floorPhase(ctx: FloorContext): Promise<FloorResults> {
  const skipped: string[] = [];
  const skip = (line: string) => {
    skipped.push(line);
    ctx.step(`  ${line}`);
  };
  const tools = { wrk: findTool("wrk"), h2load: findTool("h2load") };
  if (!tools.wrk && !tools.h2load) {
    const line =
      "floor phase skipped: neither wrk nor h2load is installed (Debian packages wrk, nghttp2-client)";
    ctx.step(line);
    return { skipped: [line] };
  }
  ctx.step(
    `floor: the transport alone (no database, no querygate code), ${ctx.connections} connections, ${ctx.seconds} s each, ${ctx.reps} rep(s)`,
  );
  if (!tools.h2load)
    skip("empty gRPC servers (h2load) skipped: h2load is not installed (Debian package nghttp2-client)");
  if (!tools.wrk) skip("Hono paths (wrk) skipped: wrk is not installed (Debian package wrk)");

  const scratch = mkdtempSync(join(ctx.workDir, "floor-"));
  const children: FloorChild[] = [];
  const start = async (kind: FloorKind, label: string, upstream?: FloorChild) => {
    const child = await FloorChild.start(kind, {
      root: ctx.root,
      logFile: join(ctx.logDir, `floor-${label}.log`),
      upstream: upstream && `127.0.0.1:${upstream.port}`,
    });
    children.push(child);
    return child;
  };
  try {
    const paths: FloorPath[] = [];
    /** A path to one empty server of `kind`, alone, loaded by `tool`. */
    const alone = async (
      key: FloorPath["key"],
      kind: FloorKind,
      label: string,
      name: string,
      tool: FloorPath["tool"],
      via: (port: number) => Pick<FloorPath, "check" | "once">,
    ) => {
      const server = await start(kind, kind);
      paths.push({ key, label, tool, cpu: [processCpu(name, server.pid)], ...via(server.port) });
    };
    if (tools.h2load) {
      const h2loadPath = tools.h2load;
      const bodyFile = join(scratch, "execute.bin");
      // loadgen's Execute body: the empty servers read it and answer without looking.
      const body = executeBody(peerLookupSql("$1"), [String(Math.ceil(ctx.lookupRows / 2))]);
      writeFileSync(bodyFile, body);
      let runs = 0;
      const viaH2load = (port: number) => ({
        check: () => executeOnce(port, body),
        once: (seconds: number) =>
          h2load(h2loadPath, {
            url: `http://127.0.0.1:${port}${EXECUTE_PATH}`,
            connections: ctx.connections,
            seconds,
            bodyFile,
            logFile: join(scratch, `h2load-${runs++}.log`),
          }),
      });
      await alone(
        "grpcJs",
        "grpc-js",
        "grpc-js server, empty handler",
        "grpc-js server",
        "h2load",
        viaH2load,
      );
      await alone(
        "querygateH2",
        "querygate-h2",
        "query-grpc's node:http2 gRPC server, empty handler",
        "querygate h2 server",
        "h2load",
        viaH2load,
      );
      await alone("http2", "http2", "node:http2 server, empty handler", "http2 server", "h2load", viaH2load);
    }
    if (tools.wrk) {
      const wrkPath = tools.wrk;
      const script = join(ctx.root, "bench", "lookup.lua");
      // The Flask tool's body, as loadgen sends it to Flask and to the bridge.
      const literal = JSON.stringify({ query: peerLookupSql("%d") });
      const viaWrk = (port: number) => ({
        check: () => postOnce(`http://127.0.0.1:${port}/query`, literal.replace("%d", "1")),
        once: (seconds: number) =>
          wrk(wrkPath, {
            url: `http://127.0.0.1:${port}`,
            connections: ctx.connections,
            seconds,
            script,
            scriptArgs: [String(ctx.lookupRows), literal],
          }),
      });
      await alone("hono", "hono", "Hono HTTP server, canned JSON", "Hono", "wrk", viaWrk);
      // Each Hono its own empty server on query-grpc's transport (what the bridge talks to), so no path's figure holds another's connections.
      const inFront = async (
        key: "honoGrpcJs" | "honoHttp2",
        kind: "hono-grpc-js" | "hono-http2",
        label: string,
        client: string,
      ) => {
        const behind = await start("querygate-h2", `querygate-h2-behind-${kind}`);
        const hono = await start(kind, kind, behind);
        paths.push({
          key,
          label,
          tool: "wrk",
          cpu: [processCpu(`Hono + ${client}`, hono.pid), processCpu("query-grpc's server", behind.pid)],
          ...viaWrk(hono.port),
        });
      };
      await inFront(
        "honoGrpcJs",
        "hono-grpc-js",
        "Hono → grpc-js client → query-grpc's empty server",
        "grpc-js client",
      );
      await inFront(
        "honoHttp2",
        "hono-http2",
        "Hono → node:http2 client → query-grpc's empty server",
        "http2 client",
      );
    }
    return {
      skipped,
      ...(await measurePaths(paths, ctx)),
    };
  } finally {
    for (const child of children.reverse()) await child.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** One server of floor-servers.ts in a process of its own, so /proc gives its CPU alone. */
class FloorChild {
  private readonly exited: Promise<void>;

  private constructor(
    readonly port: number,
    private readonly child: ChildProcess,
  ) {
    this.exited = new Promise((resolve) => child.once("exit", () => resolve()));
  }

  static async start(
    kind: FloorKind,
    options: { root: string; logFile: string; upstream?: string },
  ): Promise<FloorChild> {
    const log = openSync(options.logFile, "w");
    const script = join(options.root, "bench", "floor-servers.ts");
    const child = spawn(
      process.execPath,
      ["--import", "tsx", script, kind, ...(options.upstream ? [options.upstream] : [])],
      { cwd: options.root, stdio: ["ignore", "pipe", log] },
    );
    closeSync(log);
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(new Error(`floor server ${kind} did not listen within 15 s; see ${options.logFile}`));
      }, 15_000);
      const lines = createInterface({ input: child.stdout! });
      lines.on("line", (line) => {
        const found = /^listening (\d+)$/.exec(line);
        if (!found) return;
        clearTimeout(timer);
        resolve(Number(found[1]));
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`floor server ${kind} exited with ${code} while starting; see ${options.logFile}`));
      });
    });
    return new FloorChild(port, child);
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  async stop(): Promise<void> {
    await stopChild(this.child, this.exited, 5000);
  }
}
