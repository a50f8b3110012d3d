// `npm run bench [-- --quick] [-- --profile]`: what querygate costs on top of
// talking to PostgreSQL directly, measured side by side in one run on one
// machine. Starts its own embedded PostgreSQL, loads data, starts query-grpc
// and the bridge as child processes, prints a table and writes
// bench/results.json. --profile writes a CPU profile of query-grpc to bench/.

import { rmSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { credentials } from "@grpc/grpc-js";
import pg from "pg";
import Cursor from "pg-cursor";
import { ExecuteRequest, type ExecuteResponse, QueryServiceClient } from "../proto/gen/querygate/v1/query.js";
import { startEmbeddedPostgres } from "../scripts/embedded-postgres.js";
import { peakRssMb, resetPeakRss, startBridge, startQueryGrpc } from "./processes.js";

const quick = process.argv.includes("--quick");
const profile = process.argv.includes("--profile");
const SIZES = quick
  ? { bulkRows: 200_000, bigRows: 1_000_000, smallSeconds: 3, callers: 32 }
  : { bulkRows: 1_000_000, bigRows: 10_000_000, smallSeconds: 10, callers: 32 };
const BULK_SQL = "select id, name, amount, at, flag from bench_rows";
const BIG_SQL = "select id, name from bench_big";
const LOOKUP_SQL = "select id, name, amount, at, flag from bench_rows where id = $1";

interface Throughput {
  rows: number;
  seconds: number;
  rowsPerSecond: number;
  firstRowMs: number;
}
interface Latency {
  requests: number;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

function log(message: string) {
  process.stderr.write(`${message}\n`);
}

// ---------------------------------------------------------------- bulk streaming

async function directCursor(pool: pg.Pool, sql: string): Promise<Throughput> {
  const client = await pool.connect();
  try {
    const started = performance.now();
    let firstRowMs = 0;
    let rows = 0;
    const cursor = client.query(new Cursor(sql));
    for (;;) {
      const batch = await cursor.read(2000);
      if (batch.length === 0) break;
      if (rows === 0) firstRowMs = performance.now() - started;
      rows += batch.length;
    }
    await cursor.close();
    return throughput(rows, started, firstRowMs);
  } finally {
    client.release();
  }
}

function grpcStream(
  client: QueryServiceClient,
  sql: string,
  stopAfterFirstRows = false,
): Promise<Throughput> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    let firstRowMs = 0;
    let rows = 0;
    let touched = 0;
    const call = client.execute(ExecuteRequest.fromPartial({ sql }));
    call.on("data", (message: ExecuteResponse) => {
      if (!message.rows) return;
      if (rows === 0) {
        firstRowMs = performance.now() - started;
        if (stopAfterFirstRows) {
          call.cancel();
          resolve(throughput(message.rows.rows.length, started, firstRowMs));
          return;
        }
      }
      for (const row of message.rows.rows) touched += row.values.length;
      rows += message.rows.rows.length;
    });
    call.on("end", () => resolve(throughput(rows + touched * 0, started, firstRowMs)));
    call.on("error", (error: { code: number }) => {
      if (stopAfterFirstRows && error.code === 1) return; // our own cancel
      reject(error);
    });
  });
}

async function bridgeNdjson(url: string, sql: string): Promise<Throughput> {
  const started = performance.now();
  const response = await fetch(`${url}/query`, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/x-ndjson" },
    body: JSON.stringify({ query: sql }),
  });
  if (!response.ok || !response.body) throw new Error(`bridge answered ${response.status}`);
  let firstRowMs = 0;
  let lines = 0;
  const decoder = new TextDecoder();
  for await (const chunk of response.body) {
    const text = decoder.decode(chunk, { stream: true });
    for (let i = text.indexOf("\n"); i !== -1; i = text.indexOf("\n", i + 1)) lines++;
    if (firstRowMs === 0 && lines >= 2) firstRowMs = performance.now() - started;
  }
  return throughput(lines - 2, started, firstRowMs); // minus header and footer lines
}

function throughput(rows: number, started: number, firstRowMs: number): Throughput {
  const seconds = (performance.now() - started) / 1000;
  return { rows, seconds, rowsPerSecond: rows / seconds, firstRowMs };
}

// ---------------------------------------------------------------- small queries

async function closedLoop(
  seconds: number,
  callers: number,
  request: (id: number) => Promise<void>,
): Promise<Latency> {
  const latencies: number[] = [];
  let errors = 0;
  const until = performance.now() + seconds * 1000;
  const caller = async () => {
    while (performance.now() < until) {
      const id = 1 + Math.floor(Math.random() * SIZES.bulkRows);
      const t0 = performance.now();
      try {
        await request(id);
        latencies.push(performance.now() - t0);
      } catch {
        errors++;
      }
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: callers }, caller));
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  return {
    requests: latencies.length,
    requestsPerSecond: latencies.length / elapsed,
    p50Ms: at(0.5),
    p99Ms: at(0.99),
    errors,
  };
}

function grpcLookup(client: QueryServiceClient) {
  return (id: number) =>
    new Promise<void>((resolve, reject) => {
      let rows = 0;
      const call = client.execute(
        ExecuteRequest.fromPartial({ sql: LOOKUP_SQL, params: [{ intValue: String(id) }] }),
      );
      call.on("data", (m: ExecuteResponse) => {
        rows += m.rows?.rows.length ?? 0;
      });
      call.on("end", () => (rows === 1 ? resolve() : reject(new Error(`got ${rows} rows`))));
      call.on("error", reject);
    });
}

function bridgeLookup(url: string) {
  return async (id: number) => {
    const response = await fetch(`${url}/query`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: LOOKUP_SQL, params: [id] }),
    });
    const body = (await response.json()) as { result?: unknown[] };
    if (!response.ok || body.result?.length !== 1) throw new Error(`bridge answered ${response.status}`);
  };
}

function poolLookup(pool: pg.Pool) {
  return async (id: number) => {
    const result = await pool.query(LOOKUP_SQL, [id]);
    if (result.rows.length !== 1) throw new Error("no row");
  };
}

// ---------------------------------------------------------------- run

async function main() {
  const dataDir = join(".data", `bench-${process.pid}`);
  log(`bench${quick ? " (quick)" : ""}: starting PostgreSQL in ${dataDir}`);
  const db = await startEmbeddedPostgres({ dataDir, ephemeral: true });
  const pool = new pg.Pool({ connectionString: db.url, max: 10 });
  pool.on("error", () => {}); // idle connections end when the database stops at the end
  const services: Array<{ stop(): Promise<void> }> = [];
  try {
    const version = (await pool.query("show server_version")).rows[0].server_version as string;
    log(`loading ${SIZES.bulkRows.toLocaleString()} + ${SIZES.bigRows.toLocaleString()} rows`);
    await pool.query(`
      create table bench_rows (id int8 primary key, name text, amount numeric, at timestamptz, flag bool);
      insert into bench_rows
        select g, 'name-' || g, (g * 1.25)::numeric(12,2), timestamptz '2026-01-01' + g * interval '1 second', g % 2 = 0
        from generate_series(1, ${SIZES.bulkRows}) g;
      create unlogged table bench_big (id int8, name text);
      insert into bench_big select g, 'row-' || g from generate_series(1, ${SIZES.bigRows}) g;
    `);
    await pool.query("vacuum analyze bench_rows");
    await pool.query("vacuum analyze bench_big");

    const grpc = await startQueryGrpc(db.url, profile ? ["--cpu-prof", "--cpu-prof-dir=bench"] : []);
    services.push(grpc);
    const bridge = await startBridge(grpc.port);
    services.push(bridge);
    const bridgeUrl = `http://127.0.0.1:${bridge.port}`;
    const client = new QueryServiceClient(`127.0.0.1:${grpc.port}`, credentials.createInsecure(), {
      "grpc.max_receive_message_length": 64 * 1024 * 1024,
    });
    const grpcPid = grpc.process.pid as number;

    // Warm up every path once (JIT, connections, type-name cache).
    await directCursor(pool, `${BULK_SQL} limit 20000`);
    await grpcStream(client, `${BULK_SQL} limit 20000`);
    await bridgeNdjson(bridgeUrl, `${BULK_SQL} limit 20000`);

    log("1. bulk streaming");
    const bulkDirect = await directCursor(pool, BULK_SQL);
    resetPeakRss(grpcPid);
    const bulkGrpc = await grpcStream(client, BULK_SQL);
    const bulkGrpcRss = peakRssMb(grpcPid);
    const bulkBridge = await bridgeNdjson(bridgeUrl, BULK_SQL);

    log("3. small queries");
    const smallDirect = await closedLoop(SIZES.smallSeconds, SIZES.callers, poolLookup(pool));
    const smallGrpc = await closedLoop(SIZES.smallSeconds, SIZES.callers, grpcLookup(client));
    const smallBridge = await closedLoop(SIZES.smallSeconds, SIZES.callers, bridgeLookup(bridgeUrl));

    log("4. time to first row, and memory while streaming the big result");
    const ttfrSmall = await grpcStream(client, `${BIG_SQL} limit 10`);
    const ttfrBig = await grpcStream(client, BIG_SQL, true);
    resetPeakRss(grpcPid);
    const bigGrpc = await grpcStream(client, BIG_SQL);
    const bigRss = peakRssMb(grpcPid);
    client.close();

    const results = {
      date: new Date().toISOString(),
      mode: quick ? "quick" : "full",
      machine: {
        cpu: cpus()[0]?.model ?? "unknown",
        cores: cpus().length,
        memoryGiB: Math.round(totalmem() / 2 ** 30),
        node: process.version,
        postgres: version,
      },
      sizes: SIZES,
      bulk: { direct: bulkDirect, grpc: bulkGrpc, bridgeNdjson: bulkBridge, grpcPeakRssMb: bulkGrpcRss },
      small: { direct: smallDirect, grpc: smallGrpc, bridgeJson: smallBridge },
      firstRow: { rows10Ms: ttfrSmall.firstRowMs, bigMs: ttfrBig.firstRowMs, bigRows: SIZES.bigRows },
      big: { grpc: bigGrpc, grpcPeakRssMb: bigRss },
    };
    const targets = [
      target(
        "bulk gRPC rows/s vs direct pg cursor",
        bulkGrpc.rowsPerSecond / bulkDirect.rowsPerSecond,
        ">=",
        0.8,
      ),
      target(
        "bulk bridge NDJSON rows/s vs direct pg cursor",
        bulkBridge.rowsPerSecond / bulkDirect.rowsPerSecond,
        ">=",
        0.6,
      ),
      target(
        "small queries gRPC req/s vs direct pg pool",
        smallGrpc.requestsPerSecond / smallDirect.requestsPerSecond,
        ">=",
        0.6,
      ),
      target(
        "small queries bridge req/s vs direct pg pool",
        smallBridge.requestsPerSecond / smallDirect.requestsPerSecond,
        ">=",
        0.4,
      ),
      target("small queries gRPC p99 ms", smallGrpc.p99Ms, "<", 10),
      target("small queries bridge p99 ms", smallBridge.p99Ms, "<", 10),
      target("time to first row, 10 rows (ms)", ttfrSmall.firstRowMs, "<", 20),
      target(`time to first row, ${SIZES.bigRows.toLocaleString()} rows (ms)`, ttfrBig.firstRowMs, "<", 20),
      target(`query-grpc peak RSS streaming ${SIZES.bigRows.toLocaleString()} rows (MB)`, bigRss, "<", 150),
    ];
    writeFileSync("bench/results.json", `${JSON.stringify({ ...results, targets }, null, 2)}\n`);
    console.log(table(results, targets));
  } finally {
    for (const service of services.reverse()) await service.stop().catch(() => {});
    await pool.end();
    await db.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

interface Target {
  name: string;
  value: number;
  op: ">=" | "<";
  goal: number;
  met: boolean;
}

function target(name: string, value: number, op: ">=" | "<", goal: number): Target {
  return { name, value, op, goal, met: op === ">=" ? value >= goal : value < goal };
}

function table(
  r: {
    machine: Record<string, unknown>;
    bulk: { direct: Throughput; grpc: Throughput; bridgeNdjson: Throughput; grpcPeakRssMb: number };
    small: { direct: Latency; grpc: Latency; bridgeJson: Latency };
    big: { grpc: Throughput; grpcPeakRssMb: number };
  },
  targets: Target[],
): string {
  const n = (x: number, digits = 0) =>
    x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
  const lines = [
    `machine: ${r.machine.cpu}, ${r.machine.cores} cores, Node ${r.machine.node}, PostgreSQL ${r.machine.postgres}${quick ? " — QUICK MODE (smaller sizes)" : ""}`,
    "",
    `| bulk SELECT of ${n(SIZES.bulkRows)} rows × 5 columns | rows/s | first row | ratio |`,
    "| --- | ---: | ---: | ---: |",
    `| direct pg cursor | ${n(r.bulk.direct.rowsPerSecond)} | ${n(r.bulk.direct.firstRowMs, 1)} ms | 1.00 |`,
    `| query-grpc (grpc-js client) | ${n(r.bulk.grpc.rowsPerSecond)} | ${n(r.bulk.grpc.firstRowMs, 1)} ms | ${n(r.bulk.grpc.rowsPerSecond / r.bulk.direct.rowsPerSecond, 2)} |`,
    `| bridge NDJSON | ${n(r.bulk.bridgeNdjson.rowsPerSecond)} | ${n(r.bulk.bridgeNdjson.firstRowMs, 1)} ms | ${n(r.bulk.bridgeNdjson.rowsPerSecond / r.bulk.direct.rowsPerSecond, 2)} |`,
    "",
    `| primary-key lookup, ${SIZES.callers} callers, ${SIZES.smallSeconds} s | req/s | p50 | p99 | ratio |`,
    "| --- | ---: | ---: | ---: | ---: |",
    ...(
      [
        ["direct pg pool (10)", r.small.direct],
        ["query-grpc", r.small.grpc],
        ["bridge JSON", r.small.bridgeJson],
      ] as const
    ).map(
      ([name, l]) =>
        `| ${name} | ${n(l.requestsPerSecond)} | ${n(l.p50Ms, 2)} ms | ${n(l.p99Ms, 2)} ms | ${n(l.requestsPerSecond / r.small.direct.requestsPerSecond, 2)} |`,
    ),
    "",
    `query-grpc peak RSS: ${n(r.bulk.grpcPeakRssMb)} MB streaming ${n(SIZES.bulkRows)} rows, ${n(r.big.grpcPeakRssMb)} MB streaming ${n(SIZES.bigRows)} rows (${n(r.big.grpc.rowsPerSecond)} rows/s)`,
    "",
    "| target | measured | goal | |",
    "| --- | ---: | ---: | --- |",
    ...targets.map(
      (t) => `| ${t.name} | ${n(t.value, 2)} | ${t.op} ${t.goal} | ${t.met ? "met" : "MISSED"} |`,
    ),
  ];
  return lines.join("\n");
}

await main();
