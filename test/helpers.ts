// Shared fixtures for every test file: one embedded PostgreSQL per `npm test`
// run, started on first use and stopped by test/run.ts.
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { type EmbeddedDatabase, startEmbeddedPostgres } from "../scripts/embedded-postgres.js";
import { EmbeddedPostgresError } from "../scripts/embedded-postgres-error.js";

let db: Promise<EmbeddedDatabase> | undefined;
const cleanups: Array<() => Promise<void>> = [];

/** The test run's PostgreSQL (a fresh, ephemeral cluster). */
export function database(): Promise<EmbeddedDatabase> {
  db ??= startEmbeddedPostgres({
    dataDir: join(".data", `test-${process.pid}-${randomBytes(3).toString("hex")}`),
    ephemeral: true,
  }).catch((error: unknown) => {
    // One line saying what to do, not the same stack trace under every test.
    if (error instanceof EmbeddedPostgresError) {
      console.error(`npm test: ${error.message}`);
      process.exit(1);
    }
    throw error;
  });
  return db;
}

/** Registers work to run once all suites have finished (stop servers, pools). */
export function atEnd(cleanup: () => Promise<void>): void {
  cleanups.push(cleanup);
}

export async function stopAll(): Promise<void> {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  if (db) await (await db).stop();
}

// ---- query-grpc in-process, and a client that gathers a whole result ----

import { credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import {
  type Column,
  type DeepPartial,
  ExecuteRequest,
  type ExecuteResponse,
  QueryError,
  QueryServiceClient,
  type ResultFooter,
} from "../proto/gen/querygate/v1/query.js";
import { loadConfig } from "../services/query-grpc/src/config.js";
import { type QueryGrpcServer, startQueryGrpc } from "../services/query-grpc/src/grpc/server.js";
import { createLogger, type Logger } from "../services/shared/src/logger.js";

export const silentLogger = createLogger("test", process.env.TEST_LOG_LEVEL ?? "silent");

/** The test database's URL with another login role and password. */
export async function databaseUrlAs(user: string, password: string): Promise<string> {
  const url = new URL((await database()).url);
  url.username = user;
  url.password = password;
  return url.toString();
}

/** Starts query-grpc against the test database on a free loopback port. */
export async function startGrpc(
  env: Record<string, string> = {},
  logger: Logger = silentLogger,
): Promise<QueryGrpcServer & { target: string }> {
  const { url } = await database();
  const config = loadConfig({
    DATABASE_URL: url,
    GRPC_PORT: "0",
    METRICS_PORT: "0",
    HEALTH_INTERVAL_MS: "200",
    ...env,
  });
  const server = await startQueryGrpc(config, logger);
  let closed = false;
  const close = async (graceMs?: number) => {
    if (closed) return;
    closed = true;
    await server.close(graceMs);
  };
  atEnd(() => close());
  return {
    ...server,
    close,
    port: server.port,
    metricsPort: server.metricsPort,
    health: server.health,
    target: `127.0.0.1:${server.port}`,
  };
}

export function grpcClient(target: string): QueryServiceClient {
  const client = new QueryServiceClient(target, credentials.createInsecure());
  atEnd(async () => client.close());
  return client;
}

export interface GatheredResult {
  columns: Column[];
  rows: Array<Array<string | null>>;
  footer: ResultFooter | undefined;
  messages: ExecuteResponse[];
}

export class GatheredError extends Error {
  constructor(
    readonly code: number,
    readonly details: string,
    readonly error: QueryError | undefined,
    readonly metadata: Metadata,
  ) {
    super(`gRPC status ${code}: ${details}`);
  }
}

/** Runs Execute and gathers the stream; rejects with a GatheredError on a non-OK status. */
export function execute(
  client: QueryServiceClient,
  request: DeepPartial<ExecuteRequest>,
  metadata: Metadata = new Metadata(),
  options: { deadline?: Date } = {},
): Promise<GatheredResult> {
  return new Promise((resolve, reject) => {
    const result: GatheredResult = { columns: [], rows: [], footer: undefined, messages: [] };
    const call = client.execute(ExecuteRequest.fromPartial(request), metadata, options);
    call.on("data", (message: ExecuteResponse) => {
      result.messages.push(message);
      if (message.header) result.columns = message.header.columns;
      if (message.rows) {
        for (const row of message.rows.rows) {
          const values: Array<string | null> = [...row.values];
          for (const i of row.nullColumns) values[i] = null;
          result.rows.push(values);
        }
      }
      if (message.footer) result.footer = message.footer;
    });
    call.on("error", (error: ServiceError) => {
      const bin = error.metadata?.get("querygate-error-bin")[0];
      reject(
        new GatheredError(
          error.code,
          error.details,
          bin ? QueryError.decode(bin as Buffer) : undefined,
          error.metadata,
        ),
      );
    });
    call.on("end", () => resolve(result));
  });
}

/** Expects execute() to fail and returns the error. */
export async function executeError(
  client: QueryServiceClient,
  request: DeepPartial<ExecuteRequest>,
  metadata?: Metadata,
  options?: { deadline?: Date },
): Promise<GatheredError> {
  try {
    await execute(client, request, metadata, options);
  } catch (error) {
    if (error instanceof GatheredError) return error;
    throw error;
  }
  throw new Error(`expected ${JSON.stringify(request.sql)} to fail, but it succeeded`);
}

/** Polls `check` until it returns true or the deadline passes. */
export async function eventually(
  check: () => Promise<boolean> | boolean,
  timeoutMs = 5000,
  what = "condition",
) {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

// ---- the whole stack: query-grpc + http-bridge on loopback ----

import pg from "pg";
import { loadConfig as loadBridgeConfig } from "../services/http-bridge/src/config.js";
import { type BridgeServer, startBridge } from "../services/http-bridge/src/server.js";

export async function startBridgeFor(
  target: string,
  env: Record<string, string> = {},
): Promise<BridgeServer & { url: string }> {
  const config = loadBridgeConfig({ PORT: "0", QUERY_GRPC_TARGET: target, ...env });
  const bridge = await startBridge(config, silentLogger);
  let closed = false;
  const close = async (graceMs?: number) => {
    if (closed) return;
    closed = true;
    await bridge.close(graceMs);
  };
  atEnd(() => close());
  return { port: bridge.port, close, url: `http://127.0.0.1:${bridge.port}` };
}

export async function startStack(
  grpcEnv: Record<string, string> = {},
  bridgeEnv: Record<string, string> = {},
) {
  const grpc = await startGrpc(grpcEnv);
  const bridge = await startBridgeFor(grpc.target, bridgeEnv);
  return { grpc, bridge, client: grpcClient(grpc.target), url: bridge.url };
}

/** A parsed JSON response body, inspected field by field in tests. */
// biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary JSON shapes
export type JsonBody = any;

/** POST /query with a JSON body; returns status, headers and the parsed body. */
export async function postQuery(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; body: JsonBody; text: string }> {
  const response = await fetch(`${url}/query`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await response.text();
  let parsed: unknown;
  try {
    parsed =
      text.includes("\n") && response.headers.get("content-type")?.includes("ndjson")
        ? text
            .trim()
            .split("\n")
            .map((line) => JSON.parse(line))
        : JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: response.status, headers: response.headers, body: parsed, text };
}

/** A superuser connection to the test database, for setting up and inspecting. */
/** POST /query with `{query: sql}` as raw HTTP/1.1 bytes, for tests that drive a socket themselves. */
export function rawQueryRequest(sql: string, headers: Record<string, string> = {}): string {
  const body = JSON.stringify({ query: sql });
  const lines = Object.entries({ "content-type": "application/json", ...headers }).map(
    ([k, v]) => `${k}: ${v}\r\n`,
  );
  return `POST /query HTTP/1.1\r\nhost: x\r\n${lines.join("")}content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

/** A metric of the bridge at `url` (the first line of that name, whatever its labels). */
export async function bridgeMetric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
  if (!line) throw new Error(`no ${name} in the bridge's /metrics`);
  return Number(line.slice(line.lastIndexOf(" ") + 1));
}

export async function adminClient(): Promise<pg.Client> {
  const { url } = await database();
  const client = new pg.Client(url);
  await client.connect();
  atEnd(() => client.end());
  return client;
}

/** Statements of querygate's pool still active in PostgreSQL, other than `exceptPid`. */
export async function runningStatements(admin: pg.Client, like: string): Promise<number> {
  const result = await admin.query(
    "select count(*)::int as n from pg_stat_activity where state = 'active' and query like $1 and pid <> pg_backend_pid()",
    [like],
  );
  return result.rows[0].n as number;
}

// ---- a grpc-js server that misbehaves on purpose (the bridge's Execute client) ----

import { Server, ServerCredentials, type ServerWritableStream } from "@grpc/grpc-js";
import { QueryServiceService } from "../proto/gen/querygate/v1/query.js";

/** A grpc-js server whose Execute runs `execute`; the other methods are UNIMPLEMENTED. */
export async function testQueryServer(
  execute: (call: ServerWritableStream<ExecuteRequest, ExecuteResponse>) => void,
  host = "127.0.0.1",
  port = 0,
) {
  const server = new Server();
  server.addService(QueryServiceService, { execute });
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${port}`, ServerCredentials.createInsecure(), (error, p) =>
      error ? reject(error) : resolve(p),
    ),
  );
  atEnd(async () => server.forceShutdown());
  return { server, port: bound, target: `${host}:${bound}` };
}

import type { ClientHttp2Session, ClientHttp2Stream, OutgoingHttpHeaders } from "node:http2";

/** An Execute request as raw HTTP/2 sends it (a load tool, a crashing or hostile client): headers only, no gRPC client. */
export function rawExecute(
  session: ClientHttp2Session,
  headers: OutgoingHttpHeaders = {},
): ClientHttp2Stream {
  const stream = session.request({
    ":method": "POST",
    ":path": "/querygate.v1.QueryService/Execute",
    "content-type": "application/grpc",
    te: "trailers",
    ...headers,
  });
  stream.on("error", () => {});
  return stream;
}

/** `sql` as Execute's request message in gRPC framing (`flag` 1: marked compressed). */
export function framedExecute(sql: string, flag = 0, body?: Buffer): Buffer {
  const message = body ?? Buffer.from(ExecuteRequest.encode(ExecuteRequest.fromPartial({ sql })).finish());
  const out = Buffer.alloc(5 + message.length);
  out[0] = flag;
  out.writeUInt32BE(message.length, 1);
  message.copy(out, 5);
  return out;
}
