// The three ways the bench reads results: a grpc-js client of query-grpc, an
// HTTP client of the bridge, and node-postgres directly (the baseline). Each
// reads every row to the end and touches every value, and records when the
// first row arrived.
import { Agent, request } from "node:http";
import { credentials } from "@grpc/grpc-js";
import type pg from "pg";
import Cursor from "pg-cursor";
import { ExecuteRequest, type ExecuteResponse, QueryServiceClient } from "../proto/gen/querygate/v1/query.js";

export interface StreamResult {
  rows: number;
  /** Sum of the values' lengths: proof that every value was looked at. */
  chars: number;
  /** From sending the request to the first row in hand, ms. */
  firstRowMs: number;
  totalMs: number;
}

/** Statement timeout asked for by streams: the 10M-row ones outlast the 30 s default. */
const LONG_TIMEOUT_MS = 300_000;

/**
 * Text form for every type, no parsing: the same strings the gRPC client
 * gets, so the baseline does no more work than querygate's client does.
 */
export const textTypes = { getTypeParser: () => (value: string) => value };

// ---- gRPC ----

export function grpcClient(target: string): QueryServiceClient {
  return new QueryServiceClient(target, credentials.createInsecure());
}

/** Reads a whole result; `stopAfterFirstRow` cancels the call once the first row is in. */
export function grpcStream(
  client: QueryServiceClient,
  sql: string,
  options: { stopAfterFirstRow?: boolean; params?: string[] } = {},
): Promise<StreamResult> {
  const started = performance.now();
  let firstRowMs = -1;
  let rows = 0;
  let chars = 0;
  const call = client.execute(
    ExecuteRequest.fromPartial({
      sql,
      params: (options.params ?? []).map((textValue) => ({ textValue })),
      options: { timeoutMs: LONG_TIMEOUT_MS },
    }),
  );
  return new Promise((resolve, reject) => {
    let stopped = false;
    call.on("data", (message: ExecuteResponse) => {
      if (!message.rows) return;
      if (firstRowMs < 0) firstRowMs = performance.now() - started;
      for (const row of message.rows.rows) {
        rows++;
        for (const value of row.values) chars += value.length;
      }
      if (options.stopAfterFirstRow && !stopped) {
        stopped = true;
        call.cancel();
      }
    });
    call.on("error", (error: Error & { code?: number }) => {
      // CANCELLED (1) is our own doing when only the first row was wanted.
      if (stopped && error.code === 1)
        resolve({ rows, chars, firstRowMs, totalMs: performance.now() - started });
      else reject(error);
    });
    call.on("end", () => resolve({ rows, chars, firstRowMs, totalMs: performance.now() - started }));
  });
}

// ---- the bridge over HTTP/1.1 ----

export function httpAgent(sockets: number): Agent {
  return new Agent({ keepAlive: true, maxSockets: sockets });
}

/**
 * POST /query with accept: application/x-ndjson. Counts lines rather than
 * parsing each one, so the client's own CPU (which competes with the servers
 * on a small machine) stays low; the header and footer lines are parsed to
 * check the stream ended properly.
 */
export function ndjsonStream(
  url: string,
  agent: Agent,
  sql: string,
  options: { stopAfterFirstRow?: boolean } = {},
): Promise<StreamResult> {
  const started = performance.now();
  const body = JSON.stringify({ query: sql, timeoutMs: LONG_TIMEOUT_MS });
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (error: Error | undefined, result?: StreamResult) => {
      if (settled) return;
      settled = true;
      if (error) reject(error);
      else resolve(result as StreamResult);
    };
    const req = request(
      `${url}/query`,
      {
        method: "POST",
        agent,
        headers: { "content-type": "application/json", accept: "application/x-ndjson" },
      },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          settle(new Error(`bridge answered ${res.statusCode}`));
          return;
        }
        let firstRowMs = -1;
        let lines = 0;
        let bytes = 0;
        let tail = "";
        const result = (rows: number) => ({
          rows,
          chars: bytes,
          firstRowMs,
          totalMs: performance.now() - started,
        });
        res.on("data", (chunk: Buffer) => {
          bytes += chunk.length;
          for (let at = chunk.indexOf(10); at >= 0; at = chunk.indexOf(10, at + 1)) lines++;
          if (firstRowMs < 0 && chunk.includes('{"row":')) {
            firstRowMs = performance.now() - started;
            if (options.stopAfterFirstRow) {
              // Closing the connection is how an HTTP client says "no more": the bridge cancels the call.
              settle(undefined, result(lines - 1));
              req.destroy();
              return;
            }
          }
          tail = (tail + chunk.subarray(Math.max(0, chunk.length - 512)).toString()).slice(-512);
        });
        res.on("end", () => {
          const last = tail.trimEnd().split("\n").pop() ?? "";
          const parsed = JSON.parse(last) as { footer?: unknown };
          if (parsed.footer) settle(undefined, result(lines - 2));
          else settle(new Error(`stream ended without a footer: ${last}`));
        });
        res.on("error", (error) => settle(error));
      },
    );
    req.on("error", (error) => settle(error));
    req.end(body);
  });
}

/** POST /query (buffered JSON) and parse the answer, as a web client would. */
export function bridgeQuery(url: string, agent: Agent, sql: string, params: unknown[]): Promise<unknown> {
  const body = JSON.stringify({ query: sql, params });
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}/query`,
      { method: "POST", agent, headers: { "content-type": "application/json" } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => {
          const parsed = JSON.parse(Buffer.concat(chunks).toString()) as unknown;
          if (res.statusCode === 200) resolve(parsed);
          else reject(new Error(`bridge answered ${res.statusCode}: ${JSON.stringify(parsed)}`));
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

// ---- node-postgres directly: the baseline ----

/** Reads through pg-cursor in batches of `batchRows`, as query-grpc reads from PostgreSQL. */
export async function pgCursorStream(
  client: pg.Client,
  sql: string,
  batchRows: number,
  options: { stopAfterFirstRow?: boolean; firstBatchRows?: number } = {},
): Promise<StreamResult> {
  const started = performance.now();
  const cursor = client.query(new Cursor<string[]>(sql, [], { rowMode: "array", types: textTypes }));
  let firstRowMs = -1;
  let rows = 0;
  let chars = 0;
  let batch = await cursor.read(options.firstBatchRows ?? batchRows);
  while (batch.length > 0) {
    if (firstRowMs < 0) firstRowMs = performance.now() - started;
    for (const row of batch) {
      rows++;
      for (const value of row) chars += value.length;
    }
    if (options.stopAfterFirstRow) break;
    batch = await cursor.read(batchRows);
  }
  await cursor.close();
  return { rows, chars, firstRowMs, totalMs: performance.now() - started };
}
