// What query-grpc reports to Prometheus: calls by method and outcome,
// latency, rows and bytes streamed, pool and admission state, active
// sessions, cancellations; with a read replica, where reads ran, the retries
// of failed reads, and how far the replica replays behind the primary.
import type pg from "pg";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { createRegistry, LATENCY_BUCKETS } from "../../shared/src/metrics.js";

export type CancelReason = "client" | "deadline" | "timeout" | "shutdown";

export class QueryMetrics {
  readonly registry: Registry;
  readonly calls: Counter<"method" | "code">;
  readonly duration: Histogram<"method">;
  readonly rows: Counter<"method">;
  readonly bytes: Counter<"method">;
  readonly cancellations: Counter<"reason">;
  readonly sessions: Gauge;
  /** Read-only requests by where they ran: replica, primary (by choice), fallback (replica down or failed). */
  readonly reads: Counter<"target">;
  /** Read-only requests run a second time, by why the first attempt failed. */
  readonly readRetries: Counter<"reason">;
  readonly replicaUp: Gauge;
  readonly replicaLagSeconds: Gauge;
  readonly replicaLagBytes: Gauge;

  constructor(pool: pg.Pool, admission: { readonly waiting: number }) {
    const registry = createRegistry("query-grpc");
    this.registry = registry;
    this.calls = new Counter({
      name: "querygate_grpc_calls_total",
      help: "Finished calls by method and gRPC status code.",
      labelNames: ["method", "code"],
      registers: [registry],
    });
    this.duration = new Histogram({
      name: "querygate_grpc_call_duration_seconds",
      help: "Call duration from arrival to the last message, by method.",
      labelNames: ["method"],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    });
    this.rows = new Counter({
      name: "querygate_rows_streamed_total",
      help: "Result rows sent to callers.",
      labelNames: ["method"],
      registers: [registry],
    });
    this.bytes = new Counter({
      name: "querygate_response_bytes_total",
      help: "Serialized response bytes sent to callers.",
      labelNames: ["method"],
      registers: [registry],
    });
    this.cancellations = new Counter({
      name: "querygate_cancellations_total",
      help: "Statements cancelled in PostgreSQL, by why.",
      labelNames: ["reason"],
      registers: [registry],
    });
    this.sessions = new Gauge({
      name: "querygate_sessions_active",
      help: "Open interactive sessions (each holds one connection).",
      registers: [registry],
    });
    this.reads = new Counter({
      name: "querygate_reads_total",
      help: "Read-only requests by where they ran: replica, primary (chosen), fallback (replica down or failed).",
      labelNames: ["target"],
      registers: [registry],
    });
    this.readRetries = new Counter({
      name: "querygate_read_retries_total",
      help: "Read-only requests retried once after their first attempt failed, by why.",
      labelNames: ["reason"],
      registers: [registry],
    });
    this.replicaUp = new Gauge({
      name: "querygate_replica_up",
      help: "1 while the read replica answers its probe, 0 while its reads go to the primary.",
      registers: [registry],
    });
    this.replicaLagSeconds = new Gauge({
      name: "querygate_replica_lag_seconds",
      help: "Seconds since the replica's last replayed commit while it has WAL left to replay; 0 when caught up.",
      registers: [registry],
    });
    this.replicaLagBytes = new Gauge({
      name: "querygate_replica_lag_bytes",
      help: "WAL bytes between the primary's current position and the replica's replay position.",
      registers: [registry],
    });
    new Gauge({
      name: "querygate_pool_connections",
      help: "Database connections in the pool by state.",
      labelNames: ["state"],
      registers: [registry],
      collect() {
        this.set({ state: "in_use" }, pool.totalCount - pool.idleCount);
        this.set({ state: "idle" }, pool.idleCount);
      },
    });
    new Gauge({
      name: "querygate_pool_waiting",
      help: "Callers waiting for a database connection.",
      registers: [registry],
      collect() {
        this.set(admission.waiting);
      },
    });
  }
}
