// The bench's results: their shape (as written to bench/results.json) and
// the targets of issue 12 they are held to. table.ts prints them.
import type { LoadResult } from "./load.js";

export interface StreamStats {
  rows: number;
  reps: number;
  /** Median over the reps. */
  rowsPerSecond: number;
  firstRowMs: number;
  allRowsPerSecond: number[];
  /** Peak RSS of query-grpc (and the bridge) over the reps, MiB. */
  grpcPeakRssMb?: number;
  bridgePeakRssMb?: number;
  /** CPU time per 1,000 rows, ms, by process (client, query-grpc, bridge, postgres). */
  cpuMsPerKRows?: Record<string, number>;
}

export interface SmallStats extends LoadResult {
  /** CPU time per request, µs, by process (client, query-grpc, bridge, postgres). */
  cpuUsPerRequest?: Record<string, number>;
}

/** One path of the loadgen phase, over all its reps. */
export interface GeneratorStats {
  /** What drove it: pgbench, wrk or h2load. */
  tool: string;
  reps: number;
  requests: number;
  errors: number;
  /** Every rep's requests over every rep's seconds. */
  perSecond: number;
  /** Means of the reps' percentiles. */
  p50Ms: number;
  p99Ms: number;
  allPerSecond: number[];
  allP99Ms: number[];
  /**
   * CPU time per request, µs, by process: the servers of the path
   * (gunicorn, bridge, query-grpc, postgres) and `client`, the generator.
   */
  cpuUsPerRequest: Record<string, number>;
  /**
   * With --perf: each sampled process's CPU per request split by who asked
   * for it (bench/oncpu.ts), µs, from the path's first rep.
   */
  onCpu?: Record<string, Record<string, number>>;
}

export interface LoadgenResults {
  /** One line for each generator or peer that could not run, saying why. */
  skipped: string[];
  pgbench?: GeneratorStats;
  /** pgbench sending what query-grpc sends for one Execute (BEGIN, set-up, statement; COMMIT, DISCARD ALL). */
  pgbenchWrapped?: GeneratorStats;
  flask?: GeneratorStats;
  bridge?: GeneratorStats;
  bridgeParams?: GeneratorStats;
  grpc?: GeneratorStats;
  /** The same Execute asking for a read-only transaction (its ROLLBACK goes out with the statement). */
  grpcReadOnly?: GeneratorStats;
}

/**
 * The floor phase: what the transport alone costs on this machine, with no
 * database and no querygate code, one path per layer of the real ones.
 */
export interface FloorResults {
  skipped: string[];
  /** h2load → an empty grpc-js server (query-grpc's server options). */
  grpcJs?: GeneratorStats;
  /** h2load → query-grpc's own gRPC server (grpc/transport on node:http2), empty handler. */
  querygateH2?: GeneratorStats;
  /** h2load → an empty node:http2 server answering as gRPC does. */
  http2?: GeneratorStats;
  /** wrk → Hono on @hono/node-server, reading the body, answering canned JSON. */
  hono?: GeneratorStats;
  /** wrk → Hono → grpc-js client (the bridge's options) → query-grpc's empty server. */
  honoGrpcJs?: GeneratorStats;
  /** wrk → Hono → a minimal gRPC call over node:http2 → query-grpc's empty server. */
  honoHttp2?: GeneratorStats;
  sums?: FloorSums;
}

/** One path's floor: its transport, PostgreSQL's own work for the lookup, and issue 12's target beside them. */
export interface FloorSum {
  /** CPU µs per request of every server process of the path, the generator left out. */
  transportUs: number;
  /** PostgreSQL's CPU µs per lookup under pgbench, when the loadgen phase measured it. */
  postgresUs?: number;
  totalUs: number;
  /** Shown beside the floor as information; the floor is not judged against it. */
  targetUs: number;
}

export interface FloorSums {
  /** query-grpc's own gRPC server, empty handler (path 2). */
  grpc?: FloorSum;
  /** Hono + node:http2 client + query-grpc's empty server (path 6): the bridge's Execute as built. */
  bridge?: FloorSum;
  /** Hono + grpc-js client + query-grpc's empty server (path 5): the client of the bridge's other calls. */
  bridgeGrpcJs?: FloorSum;
}

/** Issue 12: CPU per request, services + PostgreSQL, client excluded. */
const GRPC_PATH_CPU_TARGET_US = 130;
const BRIDGE_PATH_CPU_TARGET_US = 250;

/** The floors of the gRPC and bridge paths, with pgbench's PostgreSQL CPU when loadgen measured it. */
export function floorSums(floor: FloorResults, loadgen: LoadgenResults | undefined): FloorSums {
  const postgresUs = loadgen?.pgbench?.cpuUsPerRequest.postgres;
  const sum = (stats: GeneratorStats | undefined, targetUs: number): FloorSum | undefined => {
    if (!stats) return undefined;
    const transportUs = serversCpu(stats.cpuUsPerRequest);
    return postgresUs === undefined
      ? { transportUs, totalUs: transportUs, targetUs }
      : { transportUs, postgresUs, totalUs: transportUs + postgresUs, targetUs };
  };
  return {
    grpc: sum(floor.querygateH2, GRPC_PATH_CPU_TARGET_US),
    bridge: sum(floor.honoHttp2, BRIDGE_PATH_CPU_TARGET_US),
    bridgeGrpcJs: sum(floor.honoGrpcJs, BRIDGE_PATH_CPU_TARGET_US),
  };
}

export interface FirstRowStats {
  reps: number;
  medianMs: number;
  p90Ms: number;
  maxMs: number;
}

export interface Results {
  mode: "full" | "quick";
  date: string;
  machine: Record<string, string | number>;
  sizes: Record<string, number>;
  notes: string[];
  loadSeconds?: number;
  bulk?: { pg: StreamStats; grpc: StreamStats; ndjson: StreamStats };
  small?: { pg: SmallStats; grpc: SmallStats; bridge: SmallStats };
  loadgen?: LoadgenResults;
  floor?: FloorResults;
  firstRow?: {
    fewRows: { pg: FirstRowStats; grpc: FirstRowStats; ndjson: FirstRowStats };
    allRows: { pg: FirstRowStats; grpc: FirstRowStats; ndjson: FirstRowStats };
    /** Tries that failed because an earlier call's cancel reached their statement. */
    staleCancels: number;
  };
  big?: { rows: number; rowsPerSecond: number; seconds: number; firstRowMs: number; grpcPeakRssMb: number };
  targets: Target[];
  profiles?: string[];
  wallSeconds?: number;
}

export interface Target {
  name: string;
  value: number;
  unit: string;
  /** "≥ 0.8", "< 10", "≤ 250" */
  goal: string;
  pass: boolean;
}

/** The work of the servers alone: everything but the client that sent the load. */
export function serversCpu(cpu: Record<string, number> | undefined): number {
  return Object.entries(cpu ?? {}).reduce((sum, [name, value]) => sum + (name === "client" ? 0 : value), 0);
}

/** Issue 12's targets, for whichever phases ran. */
export function targetsOf(r: Results): Target[] {
  const targets: Target[] = [];
  const atLeast = (name: string, value: number, goal: number) =>
    targets.push({ name, value, unit: "×", goal: `≥ ${goal}`, pass: value >= goal });
  const below = (name: string, value: number, goal: number, unit: string) =>
    targets.push({ name, value, unit, goal: `< ${goal}`, pass: value < goal });
  const atMost = (name: string, value: number, goal: number, unit: string) =>
    targets.push({ name, value, unit, goal: `≤ ${goal}`, pass: value <= goal });
  if (r.bulk) {
    atLeast("bulk gRPC rows/s vs direct pg cursor", r.bulk.grpc.rowsPerSecond / r.bulk.pg.rowsPerSecond, 0.8);
    atLeast(
      "bulk bridge NDJSON rows/s vs direct pg cursor",
      r.bulk.ndjson.rowsPerSecond / r.bulk.pg.rowsPerSecond,
      0.6,
    );
    const peak = Math.max(r.bulk.grpc.grpcPeakRssMb ?? 0, r.bulk.ndjson.grpcPeakRssMb ?? 0);
    below(`query-grpc peak RSS streaming ${count(r.bulk.grpc.rows)} rows (bulk)`, peak, 150, "MiB");
  }
  if (r.small) {
    atLeast("small queries gRPC req/s vs direct pg pool", r.small.grpc.perSecond / r.small.pg.perSecond, 0.4);
    atLeast(
      "small queries bridge req/s vs direct pg pool",
      r.small.bridge.perSecond / r.small.pg.perSecond,
      0.25,
    );
    atMost(
      "small queries gRPC path CPU per request, servers + PostgreSQL",
      serversCpu(r.small.grpc.cpuUsPerRequest),
      GRPC_PATH_CPU_TARGET_US,
      "µs",
    );
    atMost(
      "small queries bridge path CPU per request, servers + PostgreSQL",
      serversCpu(r.small.bridge.cpuUsPerRequest),
      BRIDGE_PATH_CPU_TARGET_US,
      "µs",
    );
  }
  const l = r.loadgen;
  if (l?.flask && l.bridge)
    atLeast("loadgen bridge (wrk) req/s vs Flask", l.bridge.perSecond / l.flask.perSecond, 1.5);
  if (l?.bridge) atMost("loadgen bridge (wrk) p99", l.bridge.p99Ms, 15, "ms");
  if (l?.flask && l.grpc)
    atLeast("loadgen gRPC (h2load) req/s vs Flask", l.grpc.perSecond / l.flask.perSecond, 2);
  if (l?.bridge)
    atMost(
      "loadgen bridge path (wrk) CPU per request, servers + PostgreSQL",
      serversCpu(l.bridge.cpuUsPerRequest),
      BRIDGE_PATH_CPU_TARGET_US,
      "µs",
    );
  if (l?.grpc)
    atMost(
      "loadgen gRPC path (h2load) CPU per request, servers + PostgreSQL",
      serversCpu(l.grpc.cpuUsPerRequest),
      GRPC_PATH_CPU_TARGET_US,
      "µs",
    );
  if (r.firstRow) {
    below("first row via gRPC, 10-row result (median)", r.firstRow.fewRows.grpc.medianMs, 20, "ms");
    below(
      `first row via gRPC, ${count(r.sizes.bigRows ?? 0)}-row result (median)`,
      r.firstRow.allRows.grpc.medianMs,
      20,
      "ms",
    );
  }
  if (r.big)
    below(`query-grpc peak RSS streaming ${count(r.big.rows)} rows`, r.big.grpcPeakRssMb, 150, "MiB");
  return targets;
}

export function count(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}
