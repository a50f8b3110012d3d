import { type ServerWritableStream, status } from "@grpc/grpc-js";
import {
  ExecuteRequest,
  type ExecuteResponse,
  StatementResult,
} from "../../../../proto/gen/querygate/v1/query.js";
import type { Caller } from "../auth/authenticate.js";
import { asFailure, QueryFailure, toGrpcStatus } from "../errors.js";
import type { CancelReason, QueryMetrics } from "../metrics.js";
import { applicationName } from "../postgres/application-name.js";
import type { ResultWriter, StatementRequest } from "../postgres/executor.js";
import type { LedgerEntry } from "../postgres/ledger.js";
import type { Classification } from "../sql/classify.js";
import {
  cancelledFromOutside,
  classifyStatement,
  firstValue,
  requestIdMetadata,
  requestIdOf,
  toParam,
} from "./call.js";
import type { QueryServiceDeps, QueryServiceLimits } from "./deps.js";
import { keyedCall, markReplayed, ResultRecorder } from "./idempotency.js";
import { refuseBadEncoding } from "./request-encoding.js";

export async function handleExecute(
  call: ServerWritableStream<ExecuteRequest, ExecuteResponse>,
  deps: QueryServiceDeps,
  controller: AbortController,
): Promise<void> {
  const started = performance.now();
  const { signal } = controller;
  const requestId = requestIdOf(call.metadata);
  const onCancelled = () => {
    const deadline = call.getDeadline();
    const passed = deadline instanceof Date ? deadline.getTime() <= Date.now() : deadline <= Date.now();
    if (passed) {
      const failure = new QueryFailure("timeout", "the call's deadline passed; the statement was cancelled");
      abort(controller, failure, "deadline", deps.metrics);
    } else {
      const failure = new QueryFailure(
        "cancelled",
        "the caller cancelled the call; the statement was cancelled",
      );
      abort(controller, failure, "client", deps.metrics);
    }
  };
  call.on("cancelled", onCancelled);
  // A stream reset before this handler ran emitted "cancelled" to nobody.
  if (call.cancelled) onCancelled();
  let timer: NodeJS.Timeout | undefined;
  let outcome = "OK";
  let code: status = status.OK;
  let rows = 0;
  let caller: Caller | undefined;
  let classification: Classification | undefined;
  let timeoutMs = Number.POSITIVE_INFINITY;
  try {
    if (!deps.accepting())
      throw new QueryFailure("shutting_down", "server is shutting down; retry on another replica");
    caller = await deps.authenticator.authenticate(firstValue(call.metadata, "authorization"));
    refuseBadEncoding(call.request);
    classification = await classifyStatement(deps.parser, call.request, caller.statements);
    const request = toStatementRequest(call.request, caller, requestId, deps.limits, call.getDeadline());
    timeoutMs = request.timeoutMs;
    timer = setTimeout(() => {
      const failure = new QueryFailure("timeout", `statement exceeded its ${request.timeoutMs} ms timeout`);
      abort(controller, failure, "timeout", deps.metrics);
    }, request.timeoutMs);
    const recorder = new ResultRecorder(deps.idempotency.maxRecordBytes);
    const keyed = keyedCall(
      deps.idempotency,
      call.metadata,
      caller,
      request.readOnly,
      "Execute",
      ExecuteRequest.encode(call.request).finish(),
      (statement) => recorder.recorded(statement),
    );
    request.ledger = keyed?.hook;
    const writer = streamWriter(call, signal, requestId, keyed ? recorder : undefined, (n) => {
      rows += n;
    });
    try {
      await deps.executor.run(request, writer, signal);
    } catch (error) {
      const entry = await keyed?.replayFor(error);
      if (!entry) throw error;
      outcome = "replayed";
      replay(call, entry, requestId);
    }
    call.end();
  } catch (error) {
    const failure = cancelledFromOutside(asFailure(error), performance.now() - started, timeoutMs);
    if (failure.kind === "internal") deps.logger.error({ err: error }, "execute failed unexpectedly");
    const grpcStatus = toGrpcStatus(failure);
    code = grpcStatus.code;
    const { details, metadata } = grpcStatus;
    // Also in the trailers: a call refused before any SQL ran sends no headers.
    metadata.set("x-request-id", requestId);
    outcome = failure.pg?.sqlstate ? `${failure.kind}:${failure.pg.sqlstate}` : failure.kind;
    call.emit("error", { code, details, metadata });
  } finally {
    clearTimeout(timer);
    call.off("cancelled", onCancelled);
    const seconds = (performance.now() - started) / 1000;
    deps.metrics.calls.inc({ method: "Execute", code: status[code] });
    deps.metrics.duration.observe({ method: "Execute" }, seconds);
    deps.metrics.rows.inc({ method: "Execute" }, rows);
    // The audit line: who ran what kind of statement, how it ended. Never
    // parameter values, literals or credentials.
    deps.logger.info(
      {
        method: "Execute",
        requestId,
        caller: caller?.name,
        role: caller?.role,
        kinds: classification?.kinds,
        fingerprint: classification?.fingerprint,
        outcome,
        rows,
        durationMs: Math.round(performance.now() - started),
      },
      "request",
    );
  }
}

/** Aborts the call's work once, counting why. */
export function abort(
  controller: AbortController,
  failure: QueryFailure,
  reason: CancelReason,
  metrics: QueryMetrics,
) {
  if (controller.signal.aborted) return;
  metrics.cancellations.inc({ reason });
  controller.abort(failure);
}

function toStatementRequest(
  request: ExecuteRequest,
  caller: Caller,
  requestId: string,
  limits: QueryServiceLimits,
  deadline: Date | number,
): StatementRequest {
  const options = request.options;
  const maxRows = Number(options?.maxRows ?? "0");
  const asked = options?.timeoutMs || limits.defaultTimeoutMs;
  const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
  const untilDeadline = Number.isFinite(deadlineMs)
    ? Math.max(1, deadlineMs - Date.now())
    : Number.POSITIVE_INFINITY;
  return {
    sql: request.sql,
    params: request.params.map(toParam),
    maxRows: Number.isSafeInteger(maxRows) ? maxRows : 0,
    timeoutMs: Math.min(
      asked,
      caller.maxStatementMs ?? Number.POSITIVE_INFINITY,
      limits.maxTimeoutMs,
      untilDeadline,
    ),
    readOnly: caller.readOnly || (options?.readOnly ?? false),
    // Lets the registry (and anyone reading pg_stat_activity) trace a statement to its request and caller.
    applicationName: applicationName(caller.name, requestId, options?.applicationTag ?? ""),
    role: caller.role,
    claims: caller.claims,
  };
}

function streamWriter(
  call: ServerWritableStream<ExecuteRequest, ExecuteResponse>,
  signal: AbortSignal,
  requestId: string,
  /** Set for a call with an idempotency key: it keeps the result for the ledger. */
  recorder: ResultRecorder | undefined,
  countRows: (n: number) => void,
): ResultWriter {
  let headersSent = false;
  const sendHeaders = () => {
    if (headersSent) return;
    headersSent = true;
    call.sendMetadata(requestIdMetadata(requestId));
  };
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
    // Response headers go out before any SQL runs: a client that saw no headers
    // knows the statement never started (grpc-js retries only such calls).
    // With an idempotency key they wait for the result's header, i.e. for the
    // claim to succeed, since a replay's headers say so; a retry is safe then anyway.
    accepted: () => {
      if (!recorder) sendHeaders();
    },
    header: (columns) => {
      sendHeaders();
      recorder?.header(columns);
      return write({ header: { columns } });
    },
    rows: (batch) => {
      recorder?.rows(batch);
      countRows(batch.length);
      return write({ rows: { rows: batch } });
    },
    footer: (footer) => write({ footer }),
  };
}

/** A recorded outcome, streamed as Execute streams a result (it is capped in size, so no backpressure). */
function replay(
  call: ServerWritableStream<ExecuteRequest, ExecuteResponse>,
  entry: LedgerEntry,
  requestId: string,
): void {
  const result = StatementResult.decode(entry.outcome as Buffer);
  call.sendMetadata(markReplayed(requestIdMetadata(requestId), entry));
  call.write({ header: { columns: result.columns } });
  for (let i = 0; i < result.rows.length; i += 1000)
    call.write({ rows: { rows: result.rows.slice(i, i + 1000) } });
  if (result.footer) call.write({ footer: { ...result.footer, serverTimeMs: 0 } });
}
