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
import { findPgbench, findTool, h2load, pgbench, wrk } from "./generators.js";
import { EXECUTE_PATH, executeBody, executeFailures, executeOnce } from "./h2load-grpc.js";
import { measurePaths, type Path, postOnce } from "./paths.js";
import { postgresCpu, postmasterPid, processCpu, processTree, type Service, treeCpu } from "./processes.js";
import type { LoadgenResults } from "./report.js";

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
  /** With --perf: sample each path's services with perf in its first rep (paths.ts). */
  onCpu?: { perf: string; dir: string };
}

type LoadgenPath = Path<Exclude<keyof LoadgenResults, "skipped">>;

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
    const paths: LoadgenPath[] = [];
    if (tools.pgbench) {
      const pgbenchPath = tools.pgbench;
      const postmaster = postmasterPid(ctx.dataDir);
      let runs = 0;
      const viaPgbench = (key: "pgbench" | "pgbenchWrapped", label: string, script: string): LoadgenPath => {
        const scriptFile = join(scratch, `${key}.sql`);
        writeFileSync(scriptFile, script);
        return {
          key,
          label,
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
              scriptFile,
              logDir,
              protocol: "extended",
            });
            // pgbench's backends' CPU counts once the postmaster has reaped them.
            await untilTreeShrinksTo(postmaster, backends);
            return result;
          },
        };
      };
      const id = `\\set id random(1, ${ctx.lookupRows})\n`;
      paths.push(viaPgbench("pgbench", "direct PostgreSQL (pgbench)", `${id}${peerLookupSql(":id")};\n`));
      paths.push(
        viaPgbench(
          "pgbenchWrapped",
          "PostgreSQL, querygate's statements",
          `${id}${wrappedLookup(peerLookupSql(":id"))}`,
        ),
      );
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
      const url = `http://127.0.0.1:${grpc.port}${EXECUTE_PATH}`;
      let runs = 0;
      const viaH2load = (key: "grpc" | "grpcReadOnly", label: string, readOnly: boolean): LoadgenPath => {
        const bodyFile = join(scratch, `${key}.bin`);
        // One body for every request: h2load cannot vary it, so every call reads the same row.
        const body = executeBody(peerLookupSql("$1"), [String(Math.ceil(ctx.lookupRows / 2))], readOnly);
        writeFileSync(bodyFile, body);
        return {
          key,
          label,
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
        };
      };
      paths.push(viaH2load("grpc", "gRPC Execute (h2load)", false));
      // A read-only caller's transaction ends with ROLLBACK sent with its statement: one round trip.
      paths.push(viaH2load("grpcReadOnly", "gRPC Execute, read-only (h2load)", true));
    }

    return {
      skipped,
      ...(await measurePaths(paths, ctx)),
    };
  } finally {
    await flask?.stop();
    await ctx.stopServices();
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** Polls until `root` has no more than `size` processes in its tree again. */
async function untilTreeShrinksTo(root: number, size: number): Promise<void> {
  const until = Date.now() + 5000;
  while (processTree(root).length > size) {
    if (Date.now() > until) throw new Error(`pgbench's backends were still there 5 s after it ended`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * The statements query-grpc sends PostgreSQL for one Execute of `sql`, as a
 * pgbench script: the set-up (BEGIN, one set_config SELECT) with the
 * statement in one round trip, COMMIT with DISCARD ALL in a second
 * (engine.ts). What PostgreSQL alone costs per request for querygate's
 * transaction shape, before any querygate code runs.
 */
export function wrappedLookup(sql: string): string {
  const setup =
    "SELECT pg_catalog.set_config('statement_timeout', '30000', true), " +
    "pg_catalog.set_config('application_name', 'querygate 0123abcd/7f3c2a9e-1b4d-4c5e-8f60-9a1b2c3d4e5f', true)";
  return [
    "\\startpipeline",
    "BEGIN;",
    `${setup};`,
    `${sql};`,
    "\\endpipeline",
    "\\startpipeline",
    "COMMIT;",
    "DISCARD ALL;",
    "\\endpipeline",
    "",
  ].join("\n");
}
