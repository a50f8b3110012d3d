// querygate.v1.QueryService/ExecuteBatch: several statements, one
// transaction, one answer. request → authenticate → classify every statement
// → open the transaction → run each, gathering its result → COMMIT → respond.
// The first failure rolls everything back and names its statement.
import { performance } from "node:perf_hooks";
import type { Metadata } from "@grpc/grpc-js";
import {
  ExecuteBatchRequest,
  ExecuteBatchResponse,
  type ResultFooter,
  type Row,
  type StatementResult,
} from "../../../../proto/gen/querygate/v1/query.js";
import { auditLogger } from "../../../shared/src/logger.js";
import type { Caller } from "../auth/authenticate.js";
import { asFailure, QueryFailure, toGrpcStatus } from "../errors.js";
import type { StatementSink, Transaction } from "../postgres/engine.js";
import type { LedgerEntry } from "../postgres/ledger.js";
import type { Classification } from "../sql/classify.js";
import {
  atStatement,
  cancellation,
  cancelledFromOutside,
  classifyStatement,
  firstValue,
  maxRowsOf,
  requestIdMetadata,
  requestIdOf,
  statementTimeoutMs,
  toParam,
  transactionSettings,
} from "./call.js";
import { lsnTrailer, tokenOf } from "./consistency.js";
import type { TransactionRpcDeps } from "./deps.js";
import { keyedCall, markReplayed, recordedBatch } from "./idempotency.js";
import { refuseBadEncoding } from "./request-encoding.js";
import type { ServerUnaryCall, UnaryHandler } from "./server-call.js";

export function executeBatchHandler(
  deps: TransactionRpcDeps,
): UnaryHandler<ExecuteBatchRequest, ExecuteBatchResponse> {
  return (call, callback) => {
    const controller = new AbortController();
    const requestId = requestIdOf(call.metadata);
    const done = runBatch(call, deps, controller, requestId).then(
      ({ response, trailer, replayed }) => {
        const metadata = requestIdMetadata(requestId);
        call.sendMetadata(replayed ? markReplayed(metadata, replayed) : metadata);
        callback(null, response, trailer);
      },
      (failure: QueryFailure) => {
        const grpcStatus = toGrpcStatus(failure);
        grpcStatus.metadata.set("x-request-id", requestId);
        callback(grpcStatus);
      },
    );
    deps.track(done, (reason) => controller.abort(reason));
  };
}

async function runBatch(
  call: ServerUnaryCall<ExecuteBatchRequest>,
  deps: TransactionRpcDeps,
  controller: AbortController,
  requestId: string,
): Promise<{ response: ExecuteBatchResponse; trailer?: Metadata; replayed?: LedgerEntry }> {
  const started = performance.now();
  const { signal } = controller;
  const { batch } = deps.transactionRpcs;
  const onCancelled = () => controller.abort(cancellation(call.getDeadline()));
  call.on("cancelled", onCancelled);
  // A stream reset before this handler ran emitted "cancelled" to nobody.
  if (call.cancelled) onCancelled();
  const { statements, options } = call.request;
  let caller: Caller | undefined;
  let classified: Classification[] = [];
  let transaction: Transaction | undefined;
  let outcome = "OK";
  let failedStatement: number | undefined;
  let gathered = new Gathered(batch.maxResponseBytes);
  try {
    if (!deps.accepting())
      throw new QueryFailure("shutting_down", "server is shutting down; retry on another replica");
    caller = await deps.authenticator.authenticate(firstValue(call.metadata, "authorization"));
    refuseBadEncoding(call.request);
    if (statements.length === 0) throw new QueryFailure("invalid_request", "statements is empty");
    if (statements.length > batch.maxStatements) {
      throw new QueryFailure(
        "invalid_request",
        `a batch may hold at most ${batch.maxStatements} statements (got ${statements.length})`,
      );
    }
    const allowed = caller.statements;
    classified = [];
    for (const [index, statement] of statements.entries()) {
      try {
        classified.push(await classifyStatement(deps.parser, statement, allowed));
      } catch (error) {
        throw atStatement(index, error);
      }
    }
    const deadline = call.getDeadline();
    const settings = transactionSettings(options, caller, requestId, deps.limits, deadline);
    const keyed = keyedCall(
      deps.idempotency,
      call.metadata,
      caller,
      settings.readOnly,
      "ExecuteBatch",
      () => ExecuteBatchRequest.encode(call.request).finish(),
      () => recordedBatch({ results: gathered.results, serverTimeMs: 0 }, deps.idempotency.maxRecordBytes),
    );
    settings.ledger = keyed?.hook;
    // A batch that may write names its transaction if COMMIT's answer is lost.
    settings.reportTransactionId = classified.some((c) => c.kinds.some((kind) => kind !== "read"));
    const runner = caller;
    let replayed: LedgerEntry | undefined;
    // The answer is one message, so nothing reaches the caller before the end: a failed read may run again.
    const position = await deps.routing.run(
      settings,
      tokenOf(call.metadata),
      () => false,
      async (engines, routed) => {
        await transaction?.close(); // a first attempt's, before the retry takes another connection
        gathered = new Gathered(batch.maxResponseBytes);
        transaction = await engines.engine.open(routed, signal, "open");
        for (const [index, statement] of statements.entries()) {
          const request = {
            sql: statement.sql,
            params: statement.params.map(toParam),
            maxRows: maxRowsOf(statement, options),
            timeoutMs: statementTimeoutMs(statement.timeoutMs, options, runner, deps.limits, deadline),
          };
          const statementStarted = performance.now();
          try {
            const sink = gathered.next();
            await sink.footer(await transaction.run(request, sink, signal, batch.batchRows));
          } catch (error) {
            // The key is claimed along with the first statement: a used key fails it before it runs.
            const entry = index === 0 ? await keyed?.replayFor(error) : undefined;
            if (entry) {
              replayed = entry;
              return undefined;
            }
            const ranMs = performance.now() - statementStarted;
            throw atStatement(index, cancelledFromOutside(asFailure(error), ranMs, request.timeoutMs));
          }
        }
        if (signal.aborted) throw signal.reason;
        const [lsn] = await transaction.commit();
        await transaction.close();
        return lsn ?? undefined;
      },
    );
    if (replayed) {
      outcome = "replayed";
      const response = ExecuteBatchResponse.decode(replayed.outcome as Buffer);
      return { response: { ...response, serverTimeMs: performance.now() - started }, replayed };
    }
    return {
      response: { results: gathered.results, serverTimeMs: performance.now() - started },
      trailer: lsnTrailer(position),
    };
  } catch (error) {
    const failure = asFailure(error);
    if (failure.kind === "internal") deps.logger.error({ err: error }, "ExecuteBatch failed unexpectedly");
    // Roll back before answering, so a caller that retries at once finds no locks of ours.
    await transaction?.close();
    outcome = failure.pg?.sqlstate ? `${failure.kind}:${failure.pg.sqlstate}` : failure.kind;
    failedStatement = failure.statementIndex;
    throw failure;
  } finally {
    await transaction?.close();
    call.off("cancelled", onCancelled);
    // The audit line: who ran what kinds of statement, how it ended. Never
    // parameter values, literals or credentials.
    auditLogger(deps.logger).info(
      {
        method: "ExecuteBatch",
        requestId,
        caller: caller?.name,
        role: caller?.role,
        statements: statements.length,
        kinds: [...new Set(classified.flatMap((c) => c.kinds))],
        fingerprints: classified.slice(0, 50).map((c) => c.fingerprint),
        failedStatement,
        outcome,
        rows: gathered.rows,
        durationMs: Math.round(performance.now() - started),
      },
      "request",
    );
  }
}

/**
 * Every statement's whole result, for the one response message. Its size is
 * capped: past the cap the batch fails (RESOURCE_EXHAUSTED, kind too_large)
 * before COMMIT, so nothing is committed that the caller never saw.
 */
class Gathered {
  readonly results: StatementResult[] = [];
  rows = 0;
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  /** The sink for the next statement's result. */
  next(): StatementSink & { footer(footer: ResultFooter): Promise<void> } {
    const result: StatementResult = { columns: [], rows: [], footer: undefined };
    this.results.push(result);
    return {
      header: async (columns) => {
        result.columns = columns;
        this.count(columns.reduce((n, c) => n + Buffer.byteLength(c.name) + c.typeName.length + 24, 4));
      },
      rows: async (batch) => {
        for (const row of batch) result.rows.push(row);
        this.rows += batch.length;
        this.count(batch.reduce((n, row) => n + rowBytes(row), 0));
      },
      footer: async (footer) => {
        result.footer = footer;
        this.count(48);
      },
    };
  }

  private count(bytes: number): void {
    this.bytes += bytes;
    if (this.bytes > this.maxBytes) {
      throw new QueryFailure(
        "too_large",
        `the batch's results exceed ${this.maxBytes} bytes, so it was rolled back; limit rows with max_rows, or stream large results with Execute`,
      );
    }
  }
}

/** A row's approximate size in the protobuf encoding: each value with its tag and length prefix. */
function rowBytes(row: Row): number {
  let bytes = 4 + row.nullColumns.length * 2;
  for (const value of row.values) bytes += Buffer.byteLength(value) + 3;
  return bytes;
}
