// querygate.v1.QueryService: the path of one call, top to bottom:
// request → validate → execute (cursor) → encode → write with backpressure.
import type { ServerWritableStream } from "@grpc/grpc-js";
import type {
  ExecuteRequest,
  ExecuteResponse,
  QueryServiceServer,
  Value,
} from "../../../proto/gen/querygate/v1/query.js";
import type { Logger } from "../../shared/src/logger.js";
import type { ParamValue } from "./cursor.js";
import { asFailure, QueryFailure, toGrpcStatus } from "./errors.js";
import type { Executor, ResultWriter, StatementRequest } from "./executor.js";

export interface QueryServiceLimits {
  defaultTimeoutMs: number;
  maxTimeoutMs: number;
}

export interface QueryServiceDeps {
  executor: Executor;
  limits: QueryServiceLimits;
  logger: Logger;
  /** False once shutdown began: new calls are refused before any SQL runs. */
  accepting: () => boolean;
  /** Tracks in-flight calls so shutdown can wait for them. */
  track: (done: Promise<unknown>, abort: (reason: QueryFailure) => void) => void;
}

export function queryServiceHandlers(deps: QueryServiceDeps): QueryServiceServer {
  return {
    execute(call: ServerWritableStream<ExecuteRequest, ExecuteResponse>) {
      const controller = new AbortController();
      const done = handleExecute(call, deps, controller);
      deps.track(done, (reason) => controller.abort(reason));
    },
  };
}

async function handleExecute(
  call: ServerWritableStream<ExecuteRequest, ExecuteResponse>,
  deps: QueryServiceDeps,
  controller: AbortController,
): Promise<void> {
  const started = performance.now();
  const { signal } = controller;
  const onCancelled = () => {
    const deadline = call.getDeadline();
    const passed = deadline instanceof Date ? deadline.getTime() <= Date.now() : deadline <= Date.now();
    controller.abort(
      passed
        ? new QueryFailure("timeout", "the call's deadline passed; the statement was cancelled")
        : new QueryFailure("cancelled", "the caller cancelled the call; the statement was cancelled"),
    );
  };
  call.on("cancelled", onCancelled);
  let timer: NodeJS.Timeout | undefined;
  let outcome = "OK";
  let rows = 0;
  try {
    if (!deps.accepting())
      throw new QueryFailure("shutting_down", "server is shutting down; retry on another replica");
    const request = toStatementRequest(call.request, deps.limits, call.getDeadline());
    timer = setTimeout(
      () =>
        controller.abort(
          new QueryFailure("timeout", `statement exceeded its ${request.timeoutMs} ms timeout`),
        ),
      request.timeoutMs,
    );
    const writer = streamWriter(call, signal, (n) => {
      rows += n;
    });
    await deps.executor.run(request, writer, signal);
    call.end();
  } catch (error) {
    const failure = asFailure(error);
    if (failure.kind === "internal") deps.logger.error({ err: error }, "execute failed unexpectedly");
    const { code, details, metadata } = toGrpcStatus(failure);
    outcome = failure.pg?.sqlstate ? `${failure.kind}:${failure.pg.sqlstate}` : failure.kind;
    call.emit("error", { code, details, metadata });
  } finally {
    clearTimeout(timer);
    call.off("cancelled", onCancelled);
    deps.logger.info(
      { method: "Execute", outcome, rows, durationMs: Math.round(performance.now() - started) },
      "request",
    );
  }
}

function toStatementRequest(
  request: ExecuteRequest,
  limits: QueryServiceLimits,
  deadline: Date | number,
): StatementRequest {
  if (!request.sql.trim()) throw new QueryFailure("invalid_request", "sql is empty");
  const options = request.options;
  const maxRows = Number(options?.maxRows ?? "0");
  const asked = options?.timeoutMs || limits.defaultTimeoutMs;
  const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
  const untilDeadline = Number.isFinite(deadlineMs)
    ? Math.max(1, deadlineMs - Date.now())
    : Number.POSITIVE_INFINITY;
  const tag = (options?.applicationTag ?? "").replace(/[^\x20-\x7e]/g, "").slice(0, 40);
  return {
    sql: request.sql,
    params: request.params.map(toParam),
    maxRows: Number.isSafeInteger(maxRows) ? maxRows : 0,
    timeoutMs: Math.min(asked, limits.maxTimeoutMs, untilDeadline),
    readOnly: options?.readOnly ?? false,
    applicationName: tag ? `querygate:${tag}` : "querygate",
  };
}

/** A parameter in the form node-postgres sends: text, bytes (bytea) or NULL. */
function toParam(value: Value): ParamValue {
  if (value.textValue !== undefined) return value.textValue;
  if (value.intValue !== undefined) return value.intValue;
  if (value.boolValue !== undefined) return value.boolValue ? "true" : "false";
  if (value.floatValue !== undefined) return floatText(value.floatValue);
  if (value.bytesValue !== undefined) return value.bytesValue;
  return null;
}

function floatText(n: number): string {
  if (Number.isNaN(n)) return "NaN";
  if (n === Number.POSITIVE_INFINITY) return "Infinity";
  if (n === Number.NEGATIVE_INFINITY) return "-Infinity";
  return String(n);
}

function streamWriter(
  call: ServerWritableStream<ExecuteRequest, ExecuteResponse>,
  signal: AbortSignal,
  countRows: (n: number) => void,
): ResultWriter {
  // Backpressure by what has actually gone out: a write resolves once the
  // message before the previous one was handed to HTTP/2, so at most two
  // batches wait there. (write()'s own signal comes only after grpc-js has
  // queued 16 messages, 32,000 rows held as objects long enough for the GC
  // to promote them, and RSS then grew with the result.)
  let sentOlder: Promise<void> = Promise.resolve();
  let sentLast: Promise<void> = Promise.resolve();
  const write = (message: ExecuteResponse): Promise<void> => {
    // A call that ended (cancel, deadline, shutdown) takes no more messages.
    if (signal.aborted) return Promise.reject(signal.reason);
    const waitFor = sentOlder;
    sentOlder = sentLast;
    // grpc-js never calls back for a cancelled call: the abort below covers that.
    sentLast = new Promise((resolve) => call.write(message, () => resolve()));
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = () => {
        if (settled) return;
        settled = true;
        signal.removeEventListener("abort", settle);
        if (signal.aborted) reject(signal.reason);
        else resolve();
      };
      signal.addEventListener("abort", settle);
      void waitFor.then(settle);
    });
  };
  return {
    header: (columns) => write({ header: { columns } }),
    rows: (batch) => {
      countRows(batch.length);
      return write({ rows: { rows: batch } });
    },
    footer: (footer) => write({ footer }),
  };
}
