// The soak's processes: an ephemeral embedded PostgreSQL, query-grpc and the
// bridge, each its own OS process run from dist/ as production runs them, so
// a leak, a crash or a stuck backend shows in /proc and in pg_stat_activity
// rather than being hidden inside the harness's own heap. The services are
// started by the bench's Service helper; what this file adds is what a long
// run needs: whether each process is still alive and how much memory it holds.
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { processTree, Service } from "../../bench/processes.js";
import { type EmbeddedDatabase, freePort, startEmbeddedPostgres } from "../../scripts/embedded-postgres.js";

/** query-grpc's settings for the soak: a small pool so cancels and zombies matter, a short statement timeout. */
export const SOAK_GRPC_ENV = {
  POOL_MAX: "8",
  STATEMENT_TIMEOUT_MS: "6000",
  LOG_LEVEL: "warn",
};

/**
 * The bridge's: buffered JSON holds at most 1 MiB, so writes whose RETURNING
 * rows pass it are cheap enough to send often (the 10k-row result is 0.5 MiB).
 * All buffered results together get 1 MiB too, so they wait on one another
 * often, writes among them. A caller that stops reading is cut after 1.5 s.
 */
export const SOAK_BRIDGE_ENV = {
  MAX_JSON_RESPONSE_BYTES: String(1024 * 1024),
  MAX_BUFFERED_JSON_BYTES: String(1024 * 1024),
  SEND_TIMEOUT_MS: "1500",
  LOG_LEVEL: "warn",
};

export interface Stack {
  db: EmbeddedDatabase;
  grpc: Service;
  bridge: Service;
  /** query-grpc's Prometheus port (its main port speaks only gRPC). */
  grpcMetricsPort: number;
  stop(): Promise<void>;
}

export async function startStack(root: string, workDir: string): Promise<Stack> {
  const db = await startEmbeddedPostgres({
    dataDir: join(workDir, `postgres-${process.pid}-${randomBytes(3).toString("hex")}`),
    ephemeral: true,
  });
  const options = { root, logDir: join(workDir, "logs"), label: "soak" };
  const started: Service[] = [];
  const stop = async () => {
    for (const service of started.reverse()) await service.stop().catch(() => {});
    await db.stop().catch(() => {});
  };
  try {
    const grpcMetricsPort = await freePort();
    const grpc = await Service.start(
      "query-grpc",
      { ...SOAK_GRPC_ENV, DATABASE_URL: db.url, METRICS_PORT: String(grpcMetricsPort) },
      options,
    );
    started.push(grpc);
    const bridge = await Service.start(
      "http-bridge",
      { ...SOAK_BRIDGE_ENV, QUERY_GRPC_TARGET: `127.0.0.1:${grpc.port}` },
      options,
    );
    started.push(bridge);
    return { db, grpc, bridge, grpcMetricsPort, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** A live process, not a zombie awaiting its parent. */
export function alive(pid: number): boolean {
  if (!existsSync(`/proc/${pid}`)) return false;
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return false;
  }
}

function statusKb(pid: number, key: string): number {
  try {
    const match = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match ? Number(match[1]) : 0;
  } catch {
    return 0; // exited while we looked
  }
}

/** Resident memory of one process in MiB. */
export function rssMb(pid: number): number {
  return statusKb(pid, "VmRSS") / 1024;
}

export function postmasterPid(dataDir: string): number {
  return Number(readFileSync(join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
}

/**
 * PostgreSQL's private memory: RssAnon of the postmaster and every child
 * (backends, background workers). Plain VmRSS would count shared_buffers once
 * per backend that touched them, which grows with the pages touched, not with
 * any leak; anonymous memory is what each process holds for itself.
 */
export function postgresMb(postmaster: number): number {
  let kb = 0;
  for (const { pid } of processTree(postmaster)) kb += statusKb(pid, "RssAnon");
  return kb / 1024;
}

/** A metric without labels besides `service` from a service's /metrics, or NaN. */
export async function metricValue(metricsUrl: string, name: string): Promise<number> {
  try {
    const text = await (await fetch(metricsUrl, { signal: AbortSignal.timeout(1000) })).text();
    const match = new RegExp(`^${name}(?:\\{[^}]*\\})? ([\\d.e+]+)$`, "m").exec(text);
    return match ? Number(match[1]) : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** V8's used heap in MiB from a service's /metrics (prom-client's default metrics), or NaN. */
export async function heapUsedMb(metricsUrl: string): Promise<number> {
  return (await metricValue(metricsUrl, "nodejs_heap_size_used_bytes")) / 2 ** 20;
}
