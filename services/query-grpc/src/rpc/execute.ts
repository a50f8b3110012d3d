import { status } from "@grpc/grpc-js";
import {
  ExecuteRequest,
  type ExecuteResponse,
  type ResultFooter,
  StatementResult,
} from "../../../../proto/gen/querygate/v1/query.js";
import { auditLogger } from "../../../shared/src/logger.js";
import type { Caller } from "../auth/authenticate.js";
import { asFailure, QueryFailure, toGrpcStatus } from "../errors.js";
import type { CancelReason, QueryMetrics } from "../metrics.js";
import { applicationName } from "../postgres/application-name.js";
import type { Statement, StatementSink } from "../postgres/engine.js";
import type { LedgerEntry } from "../postgres/ledger.js";
import type { TransactionSettings } from "../postgres/transaction.js";
import type { Classification } from "../sql/classify.js";
import {
  cancelledFromOutside,
  classifyStatement,
  firstValue,
  requestIdMetadata,
  requestIdOf,
  statementTimeoutMs,
  toParam,
} from "./call.js";
import { lsnTrailer, tokenOf } from "./consistency.js";
import type { QueryServiceDeps, QueryServiceLimits } from "./deps.js";
import { keyedCall, markReplayed, ResultRecorder } from "./idempotency.js";
import { refuseBadEncoding } from "./request-encoding.js";
import type { ServerWritableCall } from "./server-call.js";

export async function handleExecute(
  call: ServerWritableCall<ExecuteRequest, ExecuteResponse>,
  deps: QueryServiceDeps,
  controller: AbortController,
): Promise<void> {
  const started = performance.now();
  const { signal } = controller;
  const requestId = requestIdOf(call.metadata);
  const onCancelled = () => {
    if (call.getDeadline() <= Date.now()) {
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
    const { settings, statement } = executeRequest(
      call.request,
      caller,
      requestId,
      deps.limits,
      call.getDeadline(),
    );
    timeoutMs = statement.timeoutMs;
    timer = setTimeout(() => {
      const failure = new QueryFailure("timeout", `statement exceeded its ${statement.timeoutMs} ms timeout`);
      abort(controller, failure, "timeout", deps.metrics);
    }, statement.timeoutMs);
    const token = tokenOf(call.metadata);
    const recorder = new ResultRecorder(deps.idempotency.maxRecordBytes);
    const keyed = keyedCall(
      deps.idempotency,
      call.metadata,
      caller,
      settings.readOnly,
      "Execute",
      () => ExecuteRequest.encode(call.request).finish(),
      (result) => recorder.recorded(result),
    );
    settings.ledger = keyed?.hook;
    // A statement that may write names its transaction if COMMIT's answer is lost.
    settings.reportTransactionId = classification.kinds.some((kind) => kind !== "read");
    const writer = streamWriter(
      call,
      signal,
      requestId,
      settings.readOnly,
      keyed ? recorder : undefined,
      (n) => {
        rows += n;
      },
    );
    try {
      await deps.routing.run(settings, token, writer.delivered, async (engines, chosen) => {
        writer.attempt();
        const transaction = await engines.engine.open(chosen, signal, "single");
        try {
          const footer = await transaction.run(statement, writer, signal, deps.firstBatchRows);
          // Once a COMMIT went with the statement, only its answer says what happened.
          if (signal.aborted && !transaction.commitSent) throw signal.reason;
          const outcome = {
            commandTag: footer.commandTag,
            rowCount: Number(footer.rowCount),
            truncated: footer.truncated,
          };
          writer.committed(await transaction.commit(outcome));
          // The footer says the statement succeeded: only once it committed.
          await writer.footer(footer);
        } finally {
          await transaction.close();
        }
      });
    } catch (error) {
      const entry = await keyed?.replayFor(error);
      if (!entry) throw error;
      outcome = "replayed";
      replay(call, entry, requestId);
    }
    call.end(lsnTrailer(writer.commitPosition()));
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
    auditLogger(deps.logger).info(
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

/** Execute's one statement and the transaction it runs in, from the call's options. */
function executeRequest(
  request: ExecuteRequest,
  caller: Caller,
  requestId: string,
  limits: QueryServiceLimits,
  deadline: number,
): { settings: TransactionSettings; statement: Statement } {
  const options = request.options;
  const maxRows = Number(options?.maxRows ?? "0");
  const maxResultBytes = Number(options?.maxResultBytes ?? "0");
  const timeoutMs = statementTimeoutMs(0, options, caller, limits, deadline);
  return {
    settings: {
      timeoutMs,
      readOnly: caller.readOnly || (options?.readOnly ?? false),
      applicationName: applicationName(caller.name, requestId, options?.applicationTag ?? ""),
      role: caller.role,
      claims: caller.claims,
    },
    statement: {
      sql: request.sql,
      params: request.params.map(toParam),
      maxRows: Number.isSafeInteger(maxRows) && maxRows > 0 ? maxRows : 0,
      maxResultBytes: Number.isFinite(maxResultBytes) && maxResultBytes > 0 ? maxResultBytes : 0,
      maxResultBytesAsArrays: options?.maxResultBytesAsArrays ?? false,
      timeoutMs,
      // handleExecute's timer aborts the call's signal at timeoutMs.
      deadlineInSignal: true,
    },
  };
}

/** Where Execute's result goes: the statement's header and rows, then its footer once committed. */
interface ResultWriter extends StatementSink {
  footer(footer: ResultFooter): Promise<void>;
  /** A (re)try of the statement begins: whatever an earlier try held back is dropped. */
  attempt(): void;
  /** True once rows (or the footer) went to the caller: the statement may no longer be run again. */
  delivered(): boolean;
  /** The values of the transaction's afterCommit statements, once it committed. */
  committed(values: Array<string | null>): void;
  /** The commit's WAL position, once a write committed (with a replica configured). */
  commitPosition(): string | undefined;
}

function streamWriter(
  call: ServerWritableCall<ExecuteRequest, ExecuteResponse>,
  signal: AbortSignal,
  requestId: string,
  readOnly: boolean,
  /** Set for a call with an idempotency key: it keeps the result for the ledger. */
  recorder: ResultRecorder | undefined,
  countRows: (n: number) => void,
): ResultWriter {
  let delivered = false;
  let headersSent = false;
  let position: string | undefined;
  // A retried read is accepted twice; the headers go out once, with the request id.
  const sendHeaders = () => {
    if (headersSent) return;
    headersSent = true;
    call.sendMetadata(requestIdMetadata(requestId));
  };
  // Backpressure by what has actually gone out: a write resolves once the
  // message before the previous one was handed to HTTP/2, so at most two
  // batches wait there. (Under grpc-js, write()'s own signal came only after
  // it had queued 16 messages, 32,000 rows held as objects long enough for
  // the GC to promote them, and RSS then grew with the result.)
  let sentOlder: Promise<void> = Promise.resolve();
  let sentLast: Promise<void> = Promise.resolve();
  const write = (message: ExecuteResponse): Promise<void> => {
    // A call that ended (cancel, deadline, shutdown) takes no more messages.
    if (signal.aborted) return Promise.reject(signal.reason);
    sendHeaders();
    const waitFor = sentOlder;
    sentOlder = sentLast;
    // A cancelled call never calls back: the abort below covers that.
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
  // A result that arrives whole (the usual small one) is held back and goes
  // out with its footer and the trailers in one network write, once it has
  // committed; a result that streams is written as it comes.
  let held: ExecuteResponse[] | undefined = [];
  const release = () => {
    const messages = held ?? [];
    held = undefined;
    if (messages.length > 0) sendHeaders();
    for (const message of messages) call.write(message);
  };
  return {
    // The headers go out before anything that may commit, so a client's retry
    // policy (no retry once headers arrived) cannot run a write twice. With an
    // idempotency key they wait for the result, i.e. for the claim to succeed,
    // since a replay's headers say so; a retry is safe then anyway.
    mayCommit: () => {
      if (!readOnly && !recorder) sendHeaders();
    },
    attempt: () => {
      if (held) held = [];
    },
    delivered: () => delivered,
    committed: (values) => {
      position = values[0] ?? undefined;
    },
    commitPosition: () => position,
    header: (columns) => {
      if (signal.aborted) return Promise.reject(signal.reason);
      recorder?.header(columns);
      held?.push({ header: { columns } });
      return held ? Promise.resolve() : write({ header: { columns } });
    },
    rows: (batch, last) => {
      recorder?.rows(batch);
      countRows(batch.length);
      if (held && last) {
        if (signal.aborted) return Promise.reject(signal.reason);
        held.push({ rows: { rows: batch } });
        return Promise.resolve();
      }
      release();
      delivered = true;
      return write({ rows: { rows: batch } });
    },
    // The last message is small and the trailers follow at once: not waiting
    // for the messages before it lets them all share their network write.
    // It goes out once COMMIT succeeded, which an abort since (the statement
    // timer, shutdown) cannot undo: only a caller who is gone is not told.
    footer: (footer) => {
      if (call.cancelled) return Promise.reject(signal.reason);
      release();
      delivered = true;
      sendHeaders();
      call.write({ footer });
      return Promise.resolve();
    },
  };
}

/** A recorded outcome, streamed as Execute streams a result (it is capped in size, so no backpressure). */
function replay(
  call: ServerWritableCall<ExecuteRequest, ExecuteResponse>,
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
