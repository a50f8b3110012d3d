// What the read-replica and failover tests ask of query-grpc: one Execute or
// ExecuteBatch with its trailer (the commit position), query-grpc started on
// a primary + standby pair instead of the shared test database, and one
// value read off its /metrics.
import { Metadata, type ServiceError } from "@grpc/grpc-js";
import {
  type DeepPartial,
  ExecuteBatchRequest,
  ExecuteRequest,
  type ExecuteResponse,
  type QueryServiceClient,
  SessionRequest,
  type SessionResponse,
} from "../proto/gen/querygate/v1/query.js";
import { loadConfig } from "../services/query-grpc/src/config.js";
import { type QueryGrpcServer, startQueryGrpc } from "../services/query-grpc/src/grpc/server.js";
import { atEnd, silentLogger } from "./helpers.js";

export const LSN_KEY = "x-querygate-lsn";

export interface Answer {
  rows: Array<Array<string | null>>;
  /** Result headers received (Execute and Session: one per statement). */
  headers: number;
  /** The x-querygate-lsn trailer, if the answer had one. */
  lsn: string | undefined;
}

export interface CallFailure extends Error {
  code: number;
  /** querygate-error-kind, e.g. "unavailable" or "commit_unknown". */
  kind: string | undefined;
  sqlstate: string | undefined;
}

function metadataWith(token: string | undefined): Metadata {
  const metadata = new Metadata();
  if (token) metadata.set(LSN_KEY, token);
  return metadata;
}

function failureOf(error: ServiceError): CallFailure {
  const failure = new Error(`gRPC status ${error.code}: ${error.details}`) as CallFailure;
  failure.code = error.code;
  const kind = error.metadata?.get("querygate-error-kind")[0];
  failure.kind = typeof kind === "string" ? kind : undefined;
  const sqlstate = error.metadata?.get("sqlstate")[0];
  failure.sqlstate = typeof sqlstate === "string" ? sqlstate : undefined;
  return failure;
}

/** Execute, gathering rows and the trailer; `token` goes out as x-querygate-lsn. */
export function run(
  client: QueryServiceClient,
  request: DeepPartial<ExecuteRequest>,
  token?: string,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const rows: Answer["rows"] = [];
    let headers = 0;
    const call = client.execute(ExecuteRequest.fromPartial(request), metadataWith(token));
    call.on("data", (message: ExecuteResponse) => {
      if (message.header) headers++;
      for (const row of message.rows?.rows ?? []) {
        const values: Array<string | null> = [...row.values];
        for (const i of row.nullColumns) values[i] = null;
        rows.push(values);
      }
    });
    call.on("error", (error: ServiceError) => reject(failureOf(error)));
    // Rows are all in at "end", the trailer at "status": whichever comes last answers.
    let lsn: string | undefined;
    let waiting = 2;
    const settle = () => {
      if (--waiting === 0) resolve({ rows, headers, lsn });
    };
    call.on("end", settle);
    call.on("status", (status: { code: number; metadata: Metadata }) => {
      if (status.code !== 0) return;
      const value = status.metadata.get(LSN_KEY)[0];
      lsn = typeof value === "string" ? value : undefined;
      settle();
    });
  });
}

/** ExecuteBatch; resolves with the trailer's commit position. */
export function runBatch(
  client: QueryServiceClient,
  request: DeepPartial<ExecuteBatchRequest>,
  token?: string,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    let rows: Answer["rows"] = [];
    const call = client.executeBatch(
      ExecuteBatchRequest.fromPartial(request),
      metadataWith(token),
      (error, response) => {
        if (error) reject(failureOf(error));
        else rows = response?.results.flatMap((r) => r.rows.map((row) => [...row.values])) ?? [];
      },
    );
    call.on("status", (status: { code: number; metadata: Metadata }) => {
      if (status.code !== 0) return;
      const lsn = status.metadata.get(LSN_KEY)[0];
      // The callback ran just before: rows are in.
      setImmediate(() =>
        resolve({ rows, headers: rows.length > 0 ? 1 : 0, lsn: typeof lsn === "string" ? lsn : undefined }),
      );
    });
  });
}

/** A Session of `messages` (then the client's half-close); resolves with its rows and trailer. */
export function runSession(
  client: QueryServiceClient,
  messages: Array<DeepPartial<SessionRequest>>,
  token?: string,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const rows: Answer["rows"] = [];
    let headers = 0;
    const call = client.session(metadataWith(token));
    call.on("data", (message: SessionResponse) => {
      if (message.header) headers++;
      for (const row of message.rows?.rows ?? []) rows.push([...row.values]);
    });
    call.on("error", (error: ServiceError) => reject(failureOf(error)));
    let lsn: string | undefined;
    let waiting = 2;
    const settle = () => {
      if (--waiting === 0) resolve({ rows, headers, lsn });
    };
    call.on("end", settle);
    call.on("status", (status: { code: number; metadata: Metadata }) => {
      if (status.code !== 0) return;
      const value = status.metadata.get(LSN_KEY)[0];
      lsn = typeof value === "string" ? value : undefined;
      settle();
    });
    for (const message of messages) call.write(SessionRequest.fromPartial(message));
    call.end();
  });
}

/** query-grpc on loopback with `env` (DATABASE_URL, DATABASE_READ_URL, ...). */
export async function startGrpcOn(
  env: Record<string, string>,
): Promise<QueryGrpcServer & { target: string }> {
  const server = await startQueryGrpc(
    loadConfig({ GRPC_PORT: "0", METRICS_PORT: "0", HEALTH_INTERVAL_MS: "200", ...env }),
    silentLogger,
  );
  let closed: Promise<void> | undefined;
  const close = (graceMs?: number) => {
    closed ??= server.close(graceMs);
    return closed;
  };
  atEnd(() => close());
  return {
    port: server.port,
    metricsPort: server.metricsPort,
    health: server.health,
    close,
    target: `127.0.0.1:${server.port}`,
  };
}

/**
 * The sum of the series on query-grpc's /metrics named as
 * `querygate_reads_total{target="replica"}` (labels: those that must be
 * among a series'); 0 if there is none.
 */
export async function metric(metricsPort: number, series: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const [name, labels = ""] = series.replace(/}$/, "").split("{");
  const wanted = labels.split(",").filter(Boolean);
  let sum = 0;
  for (const line of text.split("\n")) {
    const match = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const has = (match[2] ?? "").split(",");
    if (wanted.every((label) => has.includes(label))) sum += Number(match[3]);
  }
  return sum;
}
