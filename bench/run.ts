// `npm run bench`: querygate against node-postgres on the same machine, in
// the same run. Builds dist/, starts an ephemeral embedded PostgreSQL, loads
// the tables, then runs each phase against fresh query-grpc and http-bridge
// child processes. Prints a table and writes bench/results.json.
//
//   npm run bench                 full sizes (about 3 minutes)
//   npm run bench -- --quick      small sizes, short runs (under a minute)
//   npm run bench -- --only=bulk,small    some phases: bulk, small, loadgen, floor, first-row, big, formats
//   npm run bench -- --profile    CPU profiles of the children in bench/profiles/
//   npm run bench -- --perf       on-CPU profiles (Linux perf) of the loadgen phase's services
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, release, totalmem } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { freePort, startEmbeddedPostgres } from "../scripts/embedded-postgres.js";
import { HTTP_BRIDGE_NODE_FLAGS } from "../services/http-bridge/src/node-flags.js";
import {
  bridgeQuery,
  grpcClient,
  grpcStream,
  httpAgent,
  ndjsonStream,
  pgCursorStream,
  type StreamResult,
  textTypes,
} from "./clients.js";
import { LOOKUP_SQL, loadTables, streamSql } from "./data.js";
import { floorPhase } from "./floor.js";
import { formatsPhase } from "./formats.js";
import { findTool } from "./generators.js";
import { closedLoop, median, percentile } from "./load.js";
import { loadgenPhase } from "./loadgen.js";
import {
  CpuMeter,
  type CpuSource,
  clientCpu,
  PeakMemory,
  postgresCpu,
  processCpu,
  queryGrpcFlags,
  Service,
} from "./processes.js";
import { formatProfile } from "./profile.js";
import {
  count,
  type FirstRowStats,
  floorSums,
  type Results,
  type SmallStats,
  type StreamStats,
  targetsOf,
} from "./report.js";
import { formatResults } from "./table.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const args = new Set(process.argv.slice(2));
const quick = args.has("--quick");
const profile = args.has("--profile");
const perf = args.has("--perf") ? findTool("perf") : undefined;
const onlyArg = process.argv.find((a) => a.startsWith("--only="));
const PHASES = ["bulk", "small", "loadgen", "floor", "first-row", "big", "formats"] as const;
const phases = new Set(onlyArg ? onlyArg.slice("--only=".length).split(",") : PHASES);

/** query-grpc's defaults (config.ts, server.ts), mirrored by the baseline. */
const BATCH_ROWS = 2000;
const FIRST_BATCH_ROWS = 100;
const POOL_MAX = 10;
/** The ways the bench reads a result: direct node-postgres, gRPC, the bridge. */
const MODES = ["pg", "grpc", "ndjson"] as const;

const sizes = quick
  ? {
      bulkRows: 200_000,
      bigRows: 1_000_000,
      lookupRows: 100_000,
      callers: 32,
      smallSeconds: 3,
      streamReps: 1,
      firstRowReps: 10,
      loadgenReps: 1,
    }
  : {
      bulkRows: 1_000_000,
      bigRows: 10_000_000,
      lookupRows: 100_000,
      callers: 32,
      smallSeconds: 10,
      streamReps: 3,
      firstRowReps: 25,
      loadgenReps: 2,
    };
const warmupMs = quick ? 500 : 2000;

const workDir = join(root, ".data", "bench");
// Kept after the run (overwritten by the next one): the services' logs, for when something fails.
const logDir = join(workDir, "logs");
const profileDir = profile ? join(root, "bench", "profiles") : undefined;
// perf's recordings are large: they stay with the logs, their summary goes to results.json.
const onCpuDir = perf ? join(workDir, "oncpu") : undefined;

function step(message: string): void {
  process.stdout.write(`· ${message}\n`);
}

async function timed<T>(message: string, work: () => Promise<T>): Promise<T> {
  const started = performance.now();
  process.stdout.write(`· ${message} … `);
  const result = await work();
  process.stdout.write(`${((performance.now() - started) / 1000).toFixed(1)} s\n`);
  return result;
}

const wallStarted = performance.now();
mkdirSync(logDir, { recursive: true });
if (profileDir) {
  rmSync(profileDir, { recursive: true, force: true });
  mkdirSync(profileDir, { recursive: true });
}
if (onCpuDir) {
  rmSync(onCpuDir, { recursive: true, force: true });
  mkdirSync(onCpuDir, { recursive: true });
} else if (args.has("--perf")) {
  step("on-CPU profiles skipped: perf is not installed (Debian package linux-perf)");
}

// Production runs node dist/…; so does the bench, built from this checkout now.
await timed("building dist/ (tsc)", async () => {
  execFileSync(
    process.execPath,
    [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.build.json"],
    {
      cwd: root,
      stdio: "inherit",
    },
  );
});

const db = await timed("starting embedded PostgreSQL", () =>
  startEmbeddedPostgres({
    dataDir: join(workDir, `postgres-${process.pid}-${randomBytes(3).toString("hex")}`),
    ephemeral: true,
  }),
);
const running: Service[] = [];
let interrupted = false;
process.on("SIGINT", () => {
  interrupted = true;
  void Promise.allSettled(running.map((s) => s.stop()))
    .then(() => db.stop())
    .finally(() => process.exit(130));
});

const admin = new pg.Client(db.url);
const results: Results = {
  mode: quick ? "quick" : "full",
  date: new Date().toISOString(),
  machine: {},
  sizes: { ...sizes, batchRows: BATCH_ROWS, firstBatchRows: FIRST_BATCH_ROWS, poolMax: POOL_MAX },
  notes: [
    "direct pg baseline reads text form (type parsers return the string as is, rowMode array), in pg-cursor batches of the same sizes as query-grpc (100, then 2000)",
    "gRPC client decodes every message and touches every value; NDJSON client reads every byte and counts lines without parsing them",
    `services run from dist/ as child processes with LOG_LEVEL=info (one log line per request, as in production); direct pg pool max ${POOL_MAX} = query-grpc's POOL_MAX`,
    `query-grpc node flags: ${queryGrpcFlags().join(" ") || "(none)"}; http-bridge: ${HTTP_BRIDGE_NODE_FLAGS.join(" ")}`,
  ],
  targets: [],
};

try {
  await admin.connect();
  const version = (await admin.query<{ v: string }>("select current_setting('server_version') as v")).rows[0]
    ?.v;
  results.machine = {
    cpuModel: cpus()[0]?.model ?? "unknown",
    cores: cpus().length,
    memoryGb: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    postgres: version ?? "unknown",
    kernel: release(),
    loadAverageStart: loadavg()[0]?.toFixed(2) ?? "",
  };
  const started = performance.now();
  await timed(`loading ${count(sizes.bigRows)} + ${count(sizes.lookupRows)} rows`, () =>
    loadTables(admin, sizes.bigRows, sizes.lookupRows),
  );
  results.loadSeconds = (performance.now() - started) / 1000;

  const startServices = async (label: string, withBridge: boolean) => {
    const options = { root, logDir, profileDir, label, perfMap: perf !== undefined };
    // A port of its own for /metrics: the default one may be taken by another checkout's service.
    const metricsPort = await freePort();
    const grpc = await Service.start(
      "query-grpc",
      { DATABASE_URL: db.url, LOG_LEVEL: "info", METRICS_PORT: String(metricsPort) },
      options,
    );
    running.push(grpc);
    const bridge = withBridge
      ? await Service.start(
          "http-bridge",
          { QUERY_GRPC_TARGET: `127.0.0.1:${grpc.port}`, LOG_LEVEL: "info" },
          options,
        )
      : undefined;
    if (bridge) running.push(bridge);
    return { grpc, bridge, metricsPort };
  };
  const stopServices = async () => {
    for (const service of running.splice(0).reverse()) await service.stop();
  };

  if (phases.has("bulk")) results.bulk = await bulkPhase();
  if (phases.has("small")) results.small = await smallPhase();
  if (phases.has("loadgen"))
    results.loadgen = await loadgenPhase({
      root,
      workDir,
      logDir,
      databaseUrl: db.url,
      dataDir: db.dataDir,
      binDir: db.binDir,
      lookupRows: sizes.lookupRows,
      connections: sizes.callers,
      seconds: sizes.smallSeconds,
      warmupSeconds: Math.max(1, Math.round(warmupMs / 1000)),
      reps: sizes.loadgenReps,
      startServices: async (label) => {
        const { grpc, bridge, metricsPort } = await startServices(label, true);
        return { grpc, bridge: bridge!, metricsPort };
      },
      stopServices,
      step,
      ...(perf && onCpuDir ? { onCpu: { perf, dir: onCpuDir } } : {}),
    });
  if (results.loadgen && Object.keys(results.loadgen).some((key) => key !== "skipped"))
    results.notes.push(
      ...(perf
        ? [
            "on-CPU: perf record -F499 -g of each querygate process during each loadgen path's first rep (node --perf-basic-prof); a sample goes to the nearest frame that names a module or folder, kernel and GC apart; shares times the measured CPU per request",
          ]
        : []),
      `loadgen: pgbench -n -M extended -c${sizes.callers} -j2; wrk -t2 -c${sizes.callers} with bench/lookup.lua (the Flask tool's body, or $1 and params); h2load -c${sizes.callers} -t2 -m1 with one pre-encoded Execute (the same id each call); Flask is shared/peers/seed-flask under gunicorn -w 2 (sync); the generators' CPU is shown apart and not counted`,
    );
  if (phases.has("floor")) {
    const floor = await floorPhase({
      root,
      workDir,
      logDir,
      lookupRows: sizes.lookupRows,
      connections: sizes.callers,
      seconds: sizes.smallSeconds,
      warmupSeconds: Math.max(1, Math.round(warmupMs / 1000)),
      reps: sizes.loadgenReps,
      step,
    });
    results.floor = { ...floor, sums: floorSums(floor, results.loadgen) };
    if (Object.keys(floor).some((key) => key !== "skipped"))
      results.notes.push(
        "floor: the transport alone, no database and no querygate code (bench/floor-servers.ts), same generators, connections, seconds and reps as loadgen; gRPC messages stay raw bytes (no protobuf); each server a child process of its own",
      );
  }
  if (phases.has("first-row")) results.firstRow = await firstRowPhase();
  if (phases.has("big")) results.big = await bigPhase();
  if (phases.has("formats"))
    Object.assign(results, {
      formats: await formatsPhase({
        startServices,
        stopServices,
        admin,
        sizes,
        batchRows: BATCH_ROWS,
        firstBatchRows: FIRST_BATCH_ROWS,
        step,
      }),
    });

  async function bulkPhase() {
    step(`bulk: ${count(sizes.bulkRows)} rows, ${sizes.streamReps} rep(s) of direct pg, gRPC, bridge NDJSON`);
    const { grpc, bridge } = await startServices("bulk", true);
    const client = grpcClient(`127.0.0.1:${grpc.port}`);
    const agent = httpAgent(1);
    const bridgeUrl = `http://127.0.0.1:${bridge!.port}`;
    const sql = streamSql(sizes.bulkRows, sizes.bigRows);
    const warm = streamSql(Math.min(50_000, sizes.bulkRows), sizes.bigRows);
    await grpcStream(client, warm);
    await ndjsonStream(bridgeUrl, agent, warm);
    await pgCursorStream(admin, warm, BATCH_ROWS, { firstBatchRows: FIRST_BATCH_ROWS });

    const runs = { pg: [] as StreamResult[], grpc: [] as StreamResult[], ndjson: [] as StreamResult[] };
    const cpu = { pg: {}, grpc: {}, ndjson: {} } as Record<Mode, Record<string, number>>;
    const rss = { grpcViaGrpc: 0, grpcViaBridge: 0, bridge: 0 };
    const sources = cpuSources(grpc, bridge);
    for (let rep = 0; rep < sizes.streamReps; rep++) {
      // Rotate the order so no mode always runs right after another.
      for (let k = 0; k < MODES.length; k++) {
        const mode = MODES[(rep + k) % MODES.length]!;
        const grpcMemory = new PeakMemory(grpc.pid);
        const bridgeMemory = new PeakMemory(bridge!.pid);
        const meter = new CpuMeter(sources[mode]);
        const result =
          mode === "pg"
            ? await pgCursorStream(admin, sql, BATCH_ROWS, { firstBatchRows: FIRST_BATCH_ROWS })
            : mode === "grpc"
              ? await grpcStream(client, sql)
              : await ndjsonStream(bridgeUrl, agent, sql);
        addTo(cpu[mode], meter.stop());
        const grpcPeak = grpcMemory.stop();
        const bridgePeak = bridgeMemory.stop();
        if (result.rows !== sizes.bulkRows) throw new Error(`${mode} read ${result.rows} rows`);
        runs[mode].push(result);
        if (mode === "grpc") rss.grpcViaGrpc = Math.max(rss.grpcViaGrpc, grpcPeak);
        if (mode === "ndjson") {
          rss.grpcViaBridge = Math.max(rss.grpcViaBridge, grpcPeak);
          rss.bridge = Math.max(rss.bridge, bridgePeak);
        }
        step(
          `  ${mode.padEnd(6)} ${count((result.rows / result.totalMs) * 1000)} rows/s, first row ${result.firstRowMs.toFixed(1)} ms`,
        );
      }
    }
    client.close();
    agent.destroy();
    await stopServices();
    // CPU ms per 1,000 rows.
    const perKRows = (seconds: Record<string, number>) =>
      scaled(seconds, 1e6 / (sizes.bulkRows * sizes.streamReps));
    return {
      pg: { ...streamStats(runs.pg), cpuMsPerKRows: perKRows(cpu.pg) },
      grpc: { ...streamStats(runs.grpc), grpcPeakRssMb: rss.grpcViaGrpc, cpuMsPerKRows: perKRows(cpu.grpc) },
      ndjson: {
        ...streamStats(runs.ndjson),
        grpcPeakRssMb: rss.grpcViaBridge,
        bridgePeakRssMb: rss.bridge,
        cpuMsPerKRows: perKRows(cpu.ndjson),
      },
    };
  }

  async function smallPhase() {
    step(`small: primary-key lookups, ${sizes.callers} callers, ${sizes.smallSeconds} s each`);
    const { grpc, bridge } = await startServices("small", true);
    const client = grpcClient(`127.0.0.1:${grpc.port}`);
    const agent = httpAgent(sizes.callers);
    const bridgeUrl = `http://127.0.0.1:${bridge!.port}`;
    const pool = new pg.Pool({ connectionString: db.url, max: POOL_MAX });
    const randomId = () => 1 + Math.floor(Math.random() * sizes.lookupRows);
    const durationMs = sizes.smallSeconds * 1000;
    const sources = cpuSources(grpc, bridge);
    const measure = async (mode: Mode, name: string, once: () => Promise<unknown>): Promise<SmallStats> => {
      // Not counted: JIT, pool connections, keep-alive sockets.
      await closedLoop(sizes.callers, warmupMs, once);
      const meter = new CpuMeter(sources[mode]);
      const result = await closedLoop(sizes.callers, durationMs, once);
      const cpu = meter.stop();
      if (result.errors > 0) step(`  ${name}: ${result.errors} errors`);
      step(
        `  ${name.padEnd(6)} ${count(result.perSecond)} req/s, p50 ${result.p50Ms.toFixed(2)} ms, p99 ${result.p99Ms.toFixed(2)} ms`,
      );
      return { ...result, cpuUsPerRequest: scaled(cpu, 1e6 / (result.requests + result.errors)) };
    };
    const pgStats = await measure("pg", "pg", () =>
      pool.query({ text: LOOKUP_SQL, values: [randomId()], rowMode: "array", types: textTypes }),
    );
    const grpcStats = await measure("grpc", "gRPC", () =>
      grpcStream(client, LOOKUP_SQL, { params: [String(randomId())] }),
    );
    const bridgeStats = await measure("ndjson", "bridge", () =>
      bridgeQuery(bridgeUrl, agent, LOOKUP_SQL, [randomId()]),
    );
    await pool.end();
    client.close();
    agent.destroy();
    await stopServices();
    return { pg: pgStats, grpc: grpcStats, bridge: bridgeStats };
  }

  async function firstRowPhase() {
    step(`first row: 10 rows and ${count(sizes.bigRows)} rows, ${sizes.firstRowReps} tries each`);
    const { grpc, bridge } = await startServices("first-row", true);
    const client = grpcClient(`127.0.0.1:${grpc.port}`);
    const agent = httpAgent(1);
    const bridgeUrl = `http://127.0.0.1:${bridge!.port}`;
    // query-grpc cancels an abandoned statement with a CancelRequest, which can
    // land after the connection went back to the pool and kill the next
    // statement on it (SQLSTATE 57014 for a call nobody cancelled). That is a
    // finding, counted and reported, not a reason to stop measuring.
    let staleCancels = 0;
    const againIfStaleCancel = async <T>(attempt: () => Promise<T>): Promise<T> => {
      for (let tries = 1; ; tries++) {
        try {
          return await attempt();
        } catch (error) {
          const text = String((error as Error).message);
          if (tries >= 3 || !/57014|canceling statement due to user request/.test(text)) throw error;
          staleCancels++;
        }
      }
    };
    const measure = async (sql: string, stopAfterFirstRow: boolean) => {
      const times = { pg: [] as number[], grpc: [] as number[], ndjson: [] as number[] };
      const warmups = 3;
      for (let rep = 0; rep < sizes.firstRowReps + warmups; rep++) {
        const pgRun = await pgCursorStream(admin, sql, BATCH_ROWS, {
          firstBatchRows: FIRST_BATCH_ROWS,
          stopAfterFirstRow,
        });
        const grpcRun = await againIfStaleCancel(() => grpcStream(client, sql, { stopAfterFirstRow }));
        if (stopAfterFirstRow) await untilQuerygateIdle(admin);
        const ndjsonRun = await againIfStaleCancel(() =>
          ndjsonStream(bridgeUrl, agent, sql, { stopAfterFirstRow }),
        );
        if (stopAfterFirstRow) await untilQuerygateIdle(admin);
        if (rep < warmups) continue;
        times.pg.push(pgRun.firstRowMs);
        times.grpc.push(grpcRun.firstRowMs);
        times.ndjson.push(ndjsonRun.firstRowMs);
      }
      return {
        pg: firstRowStats(times.pg),
        grpc: firstRowStats(times.grpc),
        ndjson: firstRowStats(times.ndjson),
      };
    };
    const fewRows = await measure(streamSql(10, sizes.bigRows), false);
    const allRows = await measure(streamSql(sizes.bigRows, sizes.bigRows), true);
    step(
      `  gRPC first row: 10 rows ${fewRows.grpc.medianMs.toFixed(2)} ms, ${count(sizes.bigRows)} rows ${allRows.grpc.medianMs.toFixed(2)} ms`,
    );
    if (staleCancels > 0) {
      step(`  ${staleCancels} tries failed with 57014: a previous call's cancel hit them; tried again`);
      results.notes.push(
        `first-row: ${staleCancels} statement(s) were cancelled by the CancelRequest of the previous, abandoned call on the same pooled connection (query-grpc bug: a late cancel reaches the next statement)`,
      );
    }
    client.close();
    agent.destroy();
    await stopServices();
    return { fewRows, allRows, staleCancels };
  }

  async function bigPhase() {
    step(`big: all ${count(sizes.bigRows)} rows through gRPC, watching query-grpc's memory`);
    const { grpc } = await startServices("big", false);
    const client = grpcClient(`127.0.0.1:${grpc.port}`);
    await grpcStream(client, streamSql(10_000, sizes.bigRows));
    const memory = new PeakMemory(grpc.pid);
    const run = await grpcStream(client, streamSql(sizes.bigRows, sizes.bigRows));
    const peak = memory.stop();
    if (run.rows !== sizes.bigRows) throw new Error(`big stream read ${run.rows} rows`);
    step(`  ${count((run.rows / run.totalMs) * 1000)} rows/s, peak RSS ${peak.toFixed(0)} MiB`);
    client.close();
    await stopServices();
    return {
      rows: run.rows,
      rowsPerSecond: (run.rows / run.totalMs) * 1000,
      seconds: run.totalMs / 1000,
      firstRowMs: run.firstRowMs,
      grpcPeakRssMb: peak,
    };
  }
} finally {
  await Promise.allSettled(running.map((s) => s.stop()));
  await admin.end().catch(() => {});
  if (!interrupted) await db.stop();
}

results.machine.loadAverageEnd = loadavg()[0]?.toFixed(2) ?? "";
results.targets = targetsOf(results);
results.wallSeconds = (performance.now() - wallStarted) / 1000;
if (profileDir) {
  results.profiles = readdirSync(profileDir)
    .filter((f) => f.endsWith(".cpuprofile"))
    .map((f) => join("bench", "profiles", f));
}

const file = join(root, "bench", "results.json");
writeFileSync(`${file}.tmp`, `${JSON.stringify(results, null, 2)}\n`);
renameSync(`${file}.tmp`, file);

console.log(`\n${formatResults(results)}`);
for (const profileFile of results.profiles ?? []) console.log(`\n${formatProfile(join(root, profileFile))}`);
console.log(`\nwall time ${results.wallSeconds.toFixed(0)} s; results in bench/results.json`);

type Mode = (typeof MODES)[number];

/** Whose CPU counts for each way of reading. */
function cpuSources(grpc: Service, bridge: Service | undefined): Record<Mode, CpuSource[]> {
  const postgres = postgresCpu(db.dataDir);
  const queryGrpc = processCpu("query-grpc", grpc.pid);
  const httpBridge = bridge ? [processCpu("bridge", bridge.pid)] : [];
  return {
    pg: [clientCpu, postgres],
    grpc: [clientCpu, queryGrpc, postgres],
    ndjson: [clientCpu, ...httpBridge, queryGrpc, postgres],
  };
}

function addTo(total: Record<string, number>, more: Record<string, number>): void {
  for (const [name, value] of Object.entries(more)) total[name] = (total[name] ?? 0) + value;
}

function scaled(values: Record<string, number>, factor: number): Record<string, number> {
  return Object.fromEntries(Object.entries(values).map(([name, value]) => [name, value * factor]));
}

/**
 * A call abandoned after its first row keeps query-grpc and PostgreSQL busy
 * for a few ms more (batches already read, cancel, rollback): let that end so
 * the next try measures the first row alone, not the previous one's tail.
 */
async function untilQuerygateIdle(admin: pg.Client): Promise<void> {
  const until = Date.now() + 5000;
  while (Date.now() < until) {
    const busy = await admin.query<{ n: number }>(
      "select count(*)::int as n from pg_stat_activity where application_name like 'querygate%' and state <> 'idle'",
    );
    if (busy.rows[0]?.n === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error("querygate's connections were still busy 5 s after the call was abandoned");
}

function streamStats(runs: StreamResult[]): StreamStats {
  const perSecond = runs.map((r) => (r.rows / r.totalMs) * 1000);
  return {
    rows: runs[0]?.rows ?? 0,
    reps: runs.length,
    rowsPerSecond: median(perSecond),
    firstRowMs: median(runs.map((r) => r.firstRowMs)),
    allRowsPerSecond: perSecond,
  };
}

function firstRowStats(times: number[]): FirstRowStats {
  const sorted = [...times].sort((a, b) => a - b);
  return {
    reps: times.length,
    medianMs: percentile(sorted, 0.5),
    p90Ms: percentile(sorted, 0.9),
    maxMs: sorted[sorted.length - 1] ?? Number.NaN,
  };
}
