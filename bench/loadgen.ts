// The loadgen phase: the small lookup driven by independent C load
// generators instead of the bench's node client, beside the original Flask
// tool, all on the same PostgreSQL in the same run. pgbench gives the direct
// PostgreSQL figure, wrk drives Flask and the bridge with the same body,
// h2load drives query-grpc's Execute with a pre-encoded request. Whatever is
// not installed is skipped with one line saying why.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { peerLookupSql } from "./data.js";
import { FlaskPeer, flaskMissing } from "./flask-peer.js";
import { findPgbench, findTool, type GeneratorRun, h2load, pgbench, wrk } from "./generators.js";
import { EXECUTE_PATH, executeBody, executeFailures, executeOnce } from "./h2load-grpc.js";
import {
  CpuMeter,
  type CpuSource,
  postgresCpu,
  postmasterPid,
  processCpu,
  processTree,
  reapedChildrenCpu,
  type Service,
  treeCpu,
} from "./processes.js";
import type { GeneratorStats, LoadgenResults } from "./report.js";

export interface LoadgenContext {
  root: string;
  workDir: string;
  logDir: string;
  databaseUrl: string;
  dataDir: string;
  /** bin/ of the embedded PostgreSQL, looked in first for pgbench. */
  binDir: string;
  lookupRows: number;
  connections: number;
  seconds: number;
  warmupSeconds: number;
  reps: number;
  startServices(label: string): Promise<{ grpc: Service; bridge: Service; metricsPort: number }>;
  stopServices(): Promise<void>;
  step(message: string): void;
}

interface Path {
  key: Exclude<keyof LoadgenResults, "skipped">;
  label: string;
  tool: string;
  cpu: CpuSource[];
  /** Before the first measured run: the answer is right (throws if not). */
  check?: () => Promise<void>;
  once(seconds: number): Promise<GeneratorRun>;
}

export async function loadgenPhase(ctx: LoadgenContext): Promise<LoadgenResults> {
  const skipped: string[] = [];
  const skip = (line: string) => {
    skipped.push(line);
    ctx.step(`  ${line}`);
  };
  const tools = {
    wrk: findTool("wrk"),
    h2load: findTool("h2load"),
    pgbench: findPgbench(ctx.binDir),
  };
  if (!tools.wrk && !tools.h2load) {
    const line =
      "loadgen phase skipped: neither wrk nor h2load is installed (Debian packages wrk, nghttp2-client)";
    ctx.step(line);
    return { skipped: [line] };
  }
  const appDir = join(ctx.root, "..", "shared", "peers", "seed-flask");
  const flaskWhyNot = tools.wrk ? await flaskMissing(appDir) : undefined;
  ctx.step(
    `loadgen: lookups from independent generators, ${ctx.connections} connections, ${ctx.seconds} s each, ${ctx.reps} rep(s)`,
  );
  if (!tools.pgbench)
    skip(
      "direct PostgreSQL (pgbench) skipped: not installed (Debian package postgresql-NN puts it in /usr/lib/postgresql/NN/bin)",
    );
  if (!tools.wrk) skip("Flask and bridge (wrk) skipped: wrk is not installed (Debian package wrk)");
  else if (flaskWhyNot) skip(`Flask skipped: ${flaskWhyNot}`);
  if (!tools.h2load) skip("gRPC (h2load) skipped: h2load is not installed (Debian package nghttp2-client)");

  const scratch = mkdtempSync(join(ctx.workDir, "loadgen-"));
  let flask: FlaskPeer | undefined;
  try {
    const { grpc, bridge, metricsPort } = await ctx.startServices("loadgen");
    if (tools.wrk && !flaskWhyNot)
      flask = await FlaskPeer.start({
        appDir,
        databaseUrl: ctx.databaseUrl,
        logFile: join(ctx.logDir, "loadgen-flask.log"),
      });
    const postgres = postgresCpu(ctx.dataDir);
    const queryGrpc = processCpu("query-grpc", grpc.pid);
    const paths: Path[] = [];
    if (tools.pgbench) {
      const pgbenchPath = tools.pgbench;
      const script = join(scratch, "lookup.sql");
      writeFileSync(script, `\\set id random(1, ${ctx.lookupRows})\n${peerLookupSql(":id")};\n`);
      const postmaster = postmasterPid(ctx.dataDir);
      let runs = 0;
      paths.push({
        key: "pgbench",
        label: "direct PostgreSQL (pgbench)",
        tool: "pgbench",
        cpu: [postgres],
        once: async (seconds) => {
          const backends = processTree(postmaster).length;
          const logDir = join(scratch, `pgbench-${runs++}`);
          mkdirSync(logDir);
          const result = await pgbench(pgbenchPath, {
            url: ctx.databaseUrl,
            connections: ctx.connections,
            seconds,
            scriptFile: script,
            logDir,
            protocol: "extended",
          });
          // pgbench's backends' CPU counts once the postmaster has reaped them.
          await untilTreeShrinksTo(postmaster, backends);
          return result;
        },
      });
    }
    if (tools.wrk) {
      const wrkPath = tools.wrk;
      const script = join(ctx.root, "bench", "lookup.lua");
      const literal = JSON.stringify({ query: peerLookupSql("%d") });
      const withParams = `{"query":${JSON.stringify(peerLookupSql("$1"))},"params":[%d]}`;
      const viaWrk = (url: string, body: string) => (seconds: number) =>
        wrk(wrkPath, {
          url,
          connections: ctx.connections,
          seconds,
          script,
          scriptArgs: [String(ctx.lookupRows), body],
        });
      const bridgeUrl = `http://127.0.0.1:${bridge.port}`;
      if (flask) {
        const flaskUrl = `http://127.0.0.1:${flask.port}`;
        paths.push({
          key: "flask",
          label: "Flask (gunicorn, wrk)",
          tool: "wrk",
          cpu: [treeCpu("gunicorn", flask.pid), postgres],
          check: () => postOnce(`${flaskUrl}/query`, literal.replace("%d", "1")),
          once: viaWrk(flaskUrl, literal),
        });
      }
      const bridgeCpu = [processCpu("bridge", bridge.pid), queryGrpc, postgres];
      paths.push({
        key: "bridge",
        label: "bridge (wrk, Flask's body)",
        tool: "wrk",
        cpu: bridgeCpu,
        check: () => postOnce(`${bridgeUrl}/query`, literal.replace("%d", "1")),
        once: viaWrk(bridgeUrl, literal),
      });
      paths.push({
        key: "bridgeParams",
        label: "bridge (wrk, $1 + params)",
        tool: "wrk",
        cpu: bridgeCpu,
        check: () => postOnce(`${bridgeUrl}/query`, withParams.replace("%d", "1")),
        once: viaWrk(bridgeUrl, withParams),
      });
    }
    if (tools.h2load) {
      const h2loadPath = tools.h2load;
      const bodyFile = join(scratch, "execute.bin");
      // One body for every request: h2load cannot vary it, so every call reads the same row.
      const body = executeBody(peerLookupSql("$1"), [String(Math.ceil(ctx.lookupRows / 2))]);
      writeFileSync(bodyFile, body);
      const url = `http://127.0.0.1:${grpc.port}${EXECUTE_PATH}`;
      let runs = 0;
      paths.push({
        key: "grpc",
        label: "gRPC Execute (h2load)",
        tool: "h2load",
        cpu: [queryGrpc, postgres],
        check: () => executeOnce(grpc.port, body),
        once: async (seconds) => {
          const failedBefore = await executeFailures(metricsPort);
          const result = await h2load(h2loadPath, {
            url,
            connections: ctx.connections,
            seconds,
            bodyFile,
            logFile: join(scratch, `h2load-${runs++}.log`),
          });
          // A gRPC error is an HTTP 200 to h2load: count them where query-grpc does.
          // (A call h2load gave up on when its time was up may have failed too: hence the floor.)
          const failed = (await executeFailures(metricsPort)) - failedBefore;
          const requests = Math.max(0, result.requests - failed);
          return {
            ...result,
            requests,
            errors: result.errors + failed,
            perSecond: requests / result.seconds,
          };
        },
      });
    }

    for (const path of paths) {
      await path.check?.();
      await path.once(ctx.warmupSeconds); // not counted: JIT, pools, connections
    }
    const runs = new Map<Path, Array<{ run: GeneratorRun; cpu: Record<string, number> }>>();
    for (let rep = 0; rep < ctx.reps; rep++) {
      // Rotate the order so no path always runs right after another.
      for (let k = 0; k < paths.length; k++) {
        const path = paths[(rep + k) % paths.length]!;
        const meter = new CpuMeter([...path.cpu, reapedChildrenCpu("client")]);
        const run = await path.once(ctx.seconds);
        const cpu = meter.stop();
        if (run.requests === 0) throw new Error(`${path.label}: no request succeeded in ${ctx.seconds} s`);
        if (run.errors > 0) ctx.step(`  ${path.label}: ${run.errors} errors`);
        ctx.step(
          `  ${path.label.padEnd(28)} ${Math.round(run.perSecond).toLocaleString("en-US")} req/s, p50 ${run.p50Ms.toFixed(2)} ms, p99 ${run.p99Ms.toFixed(2)} ms`,
        );
        runs.set(path, [...(runs.get(path) ?? []), { run, cpu }]);
      }
    }
    const results: LoadgenResults = { skipped };
    for (const [path, done] of runs) results[path.key] = stats(path.tool, done);
    return results;
  } finally {
    await flask?.stop();
    await ctx.stopServices();
    rmSync(scratch, { recursive: true, force: true });
  }
}

function stats(
  tool: string,
  runs: Array<{ run: GeneratorRun; cpu: Record<string, number> }>,
): GeneratorStats {
  const sum = (f: (r: GeneratorRun) => number) => runs.reduce((total, { run }) => total + f(run), 0);
  const mean = (f: (r: GeneratorRun) => number) => sum(f) / runs.length;
  const requests = sum((r) => r.requests);
  const errors = sum((r) => r.errors);
  const cpu: Record<string, number> = {};
  for (const { cpu: one } of runs)
    for (const [name, seconds] of Object.entries(one)) cpu[name] = (cpu[name] ?? 0) + seconds;
  return {
    tool,
    reps: runs.length,
    requests,
    errors,
    perSecond: requests / sum((r) => r.seconds),
    p50Ms: mean((r) => r.p50Ms),
    p99Ms: mean((r) => r.p99Ms),
    allPerSecond: runs.map(({ run }) => run.perSecond),
    allP99Ms: runs.map(({ run }) => run.p99Ms),
    cpuUsPerRequest: Object.fromEntries(
      Object.entries(cpu).map(([name, seconds]) => [name, (seconds * 1e6) / (requests + errors)]),
    ),
  };
}

async function postOnce(url: string, body: string): Promise<void> {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
  });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`${url} answered ${response.status} to ${body}: ${text}`);
}

/** Polls until `root` has no more than `size` processes in its tree again. */
async function untilTreeShrinksTo(root: number, size: number): Promise<void> {
  const until = Date.now() + 5000;
  while (processTree(root).length > size) {
    if (Date.now() > until) throw new Error(`pgbench's backends were still there 5 s after it ended`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
