// How the soak talks to the two services: raw enough to send what a browser
// never would (invalid JSON, oversized bodies, NUL bytes) and to walk away in
// the middle of an answer, and each call answering one plain value — the
// status it got, or that the client gave up — so the load mix can judge it.
import { Agent, type IncomingHttpHeaders, request } from "node:http";
import { type ClientReadableStream, credentials, Metadata, type ServiceError, status } from "@grpc/grpc-js";
import {
  type DeepPartial,
  ExecuteBatchRequest,
  type ExecuteBatchResponse,
  ExecuteRequest,
  type ExecuteResponse,
  QueryError,
  QueryServiceClient,
  SessionRequest,
  type SessionResponse,
} from "../../proto/gen/querygate/v1/query.js";

/**
 * What the client saw in the end. `gave-up` is the client's own doing;
 * `net-error` is a broken connection; `no-answer` is a request still
 * unanswered after NO_ANSWER_MS, which nothing in the mix should take.
 */
export type Ending =
  | {
      kind: "http";
      status: number;
      body: string;
      headers?: IncomingHttpHeaders;
      trailers?: NodeJS.Dict<string>;
    }
  | { kind: "grpc"; code: status; errorKind: string; details: string }
  | { kind: "gave-up" }
  | { kind: "no-answer"; afterMs: number }
  | { kind: "net-error"; message: string };

export interface Bridge {
  url: string;
  agent: Agent;
}

/** Keep-alive connections shared by the callers, as a busy client's pool is; `sockets: 0` opens a new one per request. */
export function bridgeClient(port: number, sockets: number): Bridge {
  const agent =
    sockets > 0 ? new Agent({ keepAlive: true, maxSockets: sockets }) : new Agent({ keepAlive: false });
  return { url: `http://127.0.0.1:${port}`, agent };
}

const netError = (error: Error & { code?: string }): Ending => ({
  kind: "net-error",
  message: [error.code, error.message].filter(Boolean).join(" "),
});

/** Longer than any statement may run (STATEMENT_TIMEOUT_MS 6 s) plus the pool's wait (2 s), many times over. */
export const NO_ANSWER_MS = 30_000;

const noAnswer = (afterMs: number): Ending => ({ kind: "no-answer", afterMs });

export interface PostOptions {
  requestId: string;
  headers?: Record<string, string>;
  /** Close the connection after this many ms without waiting for the answer. */
  giveUpAfterMs?: number;
  /** Close the connection as soon as the first bytes of the body arrive. */
  giveUpOnFirstChunk?: boolean;
  /**
   * Read the first bytes of the body, then nothing for this many ms, then the
   * rest (kept nowhere): an answer the bridge cut meanwhile ends as gave-up.
   */
  stopReadingForMs?: number;
  noAnswerMs?: number;
  /** Another route than POST /query (the registry's DELETE /queries/{id}). */
  method?: string;
  path?: string;
}

/** POST /query with a body sent byte for byte; buffers the answer, its headers and trailers. */
export function post(bridge: Bridge, body: string | Buffer, options: PostOptions): Promise<Ending> {
  return new Promise((resolve) => {
    let settled = false;
    const settle = (ending: Ending) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(patience);
      resolve(ending);
    };
    const req = request(
      `${bridge.url}${options.path ?? "/query"}`,
      {
        method: options.method ?? "POST",
        agent: bridge.agent,
        headers: {
          "content-type": "application/json",
          "x-request-id": options.requestId,
          ...options.headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        let stopped = false;
        res.on("data", (chunk: Buffer) => {
          if (options.giveUpOnFirstChunk) {
            settle({ kind: "gave-up" });
            req.destroy();
            return;
          }
          if (options.stopReadingForMs === undefined) {
            chunks.push(chunk);
          } else if (!stopped) {
            stopped = true;
            res.pause();
            setTimeout(() => res.resume(), options.stopReadingForMs);
          }
        });
        // Cut before its end: what the bridge does to a caller that stopped reading.
        const cut = () => {
          if (options.stopReadingForMs !== undefined && !res.complete) settle({ kind: "gave-up" });
        };
        res.on("error", cut);
        res.on("close", cut);
        res.on("end", () =>
          settle({
            kind: "http",
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks).toString(),
            headers: res.headers,
            trailers: res.trailers,
          }),
        );
        res.on("error", (error) => settle(netError(error)));
      },
    );
    const timer =
      options.giveUpAfterMs === undefined
        ? undefined
        : setTimeout(() => {
            settle({ kind: "gave-up" });
            req.destroy();
          }, options.giveUpAfterMs);
    const waitMs = options.noAnswerMs ?? NO_ANSWER_MS;
    const patience = setTimeout(() => {
      settle(noAnswer(waitMs));
      req.destroy();
    }, waitMs);
    req.on("error", (error) => settle(netError(error)));
    req.end(body);
  });
}

// ---- gRPC, straight to query-grpc ----

export function grpcClient(port: number): QueryServiceClient {
  return new QueryServiceClient(`127.0.0.1:${port}`, credentials.createInsecure(), {
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
  });
}

function metadataFor(requestId: string): Metadata {
  const metadata = new Metadata();
  metadata.set("x-request-id", requestId);
  return metadata;
}

function grpcEnding(error: ServiceError): Ending {
  const bin = error.metadata?.get("querygate-error-bin")[0];
  const detail = bin instanceof Buffer ? QueryError.decode(bin) : undefined;
  return { kind: "grpc", code: error.code, errorKind: detail?.kind ?? "", details: error.details };
}

const OK: Ending = { kind: "grpc", code: status.OK, errorKind: "", details: "" };

export interface ExecuteOptions {
  requestId: string;
  deadlineMs?: number;
  /** Cancel the call after this many ms. */
  cancelAfterMs?: number;
  /** Cancel the call once the first rows arrived. */
  cancelOnFirstRows?: boolean;
  noAnswerMs?: number;
}

export interface ExecuteResult {
  ending: Ending;
  rows: number;
  footerRowCount: number | undefined;
}

export function execute(
  client: QueryServiceClient,
  request: DeepPartial<ExecuteRequest>,
  options: ExecuteOptions,
): Promise<ExecuteResult> {
  const call: ClientReadableStream<ExecuteResponse> = client.execute(
    ExecuteRequest.fromPartial(request),
    metadataFor(options.requestId),
    options.deadlineMs === undefined ? {} : { deadline: Date.now() + options.deadlineMs },
  );
  let rows = 0;
  let footerRowCount: number | undefined;
  let gaveUp = false;
  let waitedOut = false;
  const giveUp = () => {
    gaveUp = true;
    call.cancel();
  };
  const timer = options.cancelAfterMs === undefined ? undefined : setTimeout(giveUp, options.cancelAfterMs);
  const waitMs = options.noAnswerMs ?? NO_ANSWER_MS;
  const patience = setTimeout(() => {
    waitedOut = true;
    call.cancel();
  }, waitMs);
  return new Promise((resolve) => {
    const done = (ending: Ending) => {
      clearTimeout(timer);
      clearTimeout(patience);
      const seen = waitedOut ? noAnswer(waitMs) : gaveUp ? { kind: "gave-up" as const } : ending;
      resolve({ ending: seen, rows, footerRowCount });
    };
    call.on("data", (message: ExecuteResponse) => {
      if (message.rows) {
        rows += message.rows.rows.length;
        if (options.cancelOnFirstRows && !gaveUp) giveUp();
      }
      if (message.footer) footerRowCount = Number(message.footer.rowCount);
    });
    call.on("error", (error: ServiceError) => done(grpcEnding(error)));
    call.on("end", () => done(OK));
  });
}

export function executeBatch(
  client: QueryServiceClient,
  request: DeepPartial<ExecuteBatchRequest>,
  requestId: string,
): Promise<{ ending: Ending; response?: ExecuteBatchResponse }> {
  return new Promise((resolve) => {
    let waitedOut = false;
    const call = client.executeBatch(
      ExecuteBatchRequest.fromPartial(request),
      metadataFor(requestId),
      (error, response) => {
        clearTimeout(patience);
        if (waitedOut) resolve({ ending: noAnswer(NO_ANSWER_MS) });
        else resolve(error ? { ending: grpcEnding(error) } : { ending: OK, response });
      },
    );
    const patience = setTimeout(() => {
      waitedOut = true;
      call.cancel();
    }, NO_ANSWER_MS);
  });
}

/**
 * One Session: the statements in order (each answered before the next is
 * sent, as an interactive client does), then commit or rollback; answers the
 * outcome querygate reported.
 */
export function session(
  client: QueryServiceClient,
  statements: Array<{ sql: string; params: string[] }>,
  end: "commit" | "rollback",
  requestId: string,
): Promise<{ ending: Ending; committed?: boolean }> {
  const call = client.session(metadataFor(requestId));
  const send = (message: DeepPartial<SessionRequest>) => call.write(SessionRequest.fromPartial(message));
  let next = 0;
  const sendNext = () => {
    const statement = statements[next++];
    if (statement)
      send({
        statement: { sql: statement.sql, params: statement.params.map((textValue) => ({ textValue })) },
      });
    else {
      send(end === "commit" ? { commit: {} } : { rollback: {} });
      call.end();
    }
  };
  return new Promise((resolve) => {
    let committed: boolean | undefined;
    let waitedOut = false;
    const patience = setTimeout(() => {
      waitedOut = true;
      call.cancel();
    }, NO_ANSWER_MS);
    const done = (ending: Ending) => {
      clearTimeout(patience);
      resolve(waitedOut ? { ending: noAnswer(NO_ANSWER_MS) } : { ending, committed });
    };
    call.on("data", (message: SessionResponse) => {
      if (message.footer) sendNext();
      if (message.outcome) committed = message.outcome.committed;
    });
    call.on("error", (error: ServiceError) => done(grpcEnding(error)));
    call.on("end", () => done(OK));
    sendNext();
  });
}
