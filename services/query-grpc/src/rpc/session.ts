// querygate.v1.QueryService/Session: one connection, one transaction, for
// the life of a bidirectional stream. The client sends an optional begin,
// statements, then commit or rollback; each statement's result streams back
// as in Execute, then the transaction's outcome.
//
// Any failure ends the stream with an error status after rolling back: a
// statement PostgreSQL rejects leaves its transaction aborted anyway, and
// with no savepoints (transaction control is refused) the only way on is
// ROLLBACK, so querygate does it rather than wait for the client to ask. The
// same happens when the stream breaks, is cancelled, passes its deadline,
// stays idle too long or reaches its maximum lifetime, and on shutdown.
import { performance } from "node:perf_hooks";
import type { Metadata } from "@grpc/grpc-js";
import type {
  ResultFooter,
  SessionRequest,
  SessionResponse,
  TransactionOptions,
} from "../../../../proto/gen/querygate/v1/query.js";
import { auditLogger } from "../../../shared/src/logger.js";
import type { Caller } from "../auth/authenticate.js";
import { asFailure, QueryFailure, toGrpcStatus } from "../errors.js";
import type { StatementSink, Transaction } from "../postgres/engine.js";
import type { StatementKind } from "../statement-kinds.js";
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
import { headerOnce, lsnTrailer, tokenOf } from "./consistency.js";
import type { TransactionRpcDeps } from "./deps.js";
import { refuseBadEncoding } from "./request-encoding.js";
import type { DuplexHandler, ServerDuplexCall } from "./server-call.js";

type Call = ServerDuplexCall<SessionRequest, SessionResponse>;

export function sessionHandler(deps: TransactionRpcDeps): DuplexHandler<SessionRequest, SessionResponse> {
  return (call) => {
    const controller = new AbortController();
    const done = runSession(call, deps, controller);
    deps.track(done, (reason) => controller.abort(reason));
  };
}

async function runSession(call: Call, deps: TransactionRpcDeps, controller: AbortController): Promise<void> {
  const started = performance.now();
  const { signal } = controller;
  const limits = deps.transactionRpcs.session;
  const requestId = requestIdOf(call.metadata);
  const onCancelled = () => controller.abort(cancellation(call.getDeadline()));
  call.on("cancelled", onCancelled);
  // A stream reset before this handler ran emitted "cancelled" to nobody.
  if (call.cancelled) onCancelled();
  const lifetime = setTimeout(
    () =>
      controller.abort(
        new QueryFailure(
          "timeout",
          `the session reached its maximum lifetime of ${limits.maxLifetimeMs} ms; its transaction was rolled back`,
        ),
      ),
    limits.maxLifetimeMs,
  );
  const inbox = new Inbox(call);
  const out = new Outbox(call, signal);
  let leave: (() => void) | undefined;
  let caller: Caller | undefined;
  let transaction: Transaction | undefined;
  let statements = 0;
  const kinds = new Set<StatementKind>();
  let committed: boolean | undefined;
  let outcome = "OK";
  let failedStatement: number | undefined;
  let trailer: Metadata | undefined;
  try {
    if (!deps.accepting())
      throw new QueryFailure("shutting_down", "server is shutting down; retry on another replica");
    caller = await deps.authenticator.authenticate(firstValue(call.metadata, "authorization"));
    const token = tokenOf(call.metadata);
    call.sendMetadata(requestIdMetadata(requestId));
    leave = limits.slots.enter();
    let options: TransactionOptions | undefined;
    for (let first = true; ; first = false) {
      const message = await inbox.next(limits.idleTimeoutMs, signal);
      if (message) refuseBadEncoding(message);
      if (message === undefined || message.rollback) {
        // A client that closes its side without commit or rollback gets a rollback.
        await transaction?.close();
        committed = false;
        await out.write({ outcome: { committed } });
        break;
      }
      if (message.begin) {
        if (!first) throw new QueryFailure("invalid_request", "begin must be the session's first message");
        options = message.begin;
        // Checked now, so a bad option fails before any statement.
        transactionSettings(options, caller, requestId, deps.limits, call.getDeadline());
        continue;
      }
      if (message.statement) {
        const index = statements++;
        const statement = message.statement;
        try {
          const classification = await classifyStatement(deps.parser, statement, caller.statements);
          for (const kind of classification.kinds) kinds.add(kind);
          const deadline = call.getDeadline();
          const request = {
            sql: statement.sql,
            params: statement.params.map(toParam),
            maxRows: maxRowsOf(statement, options),
            timeoutMs: statementTimeoutMs(statement.timeoutMs, options, caller, deps.limits, deadline),
          };
          const statementStarted = performance.now();
          const fromOutside = (error: unknown) => {
            const ranMs = performance.now() - statementStarted;
            throw cancelledFromOutside(asFailure(error), ranMs, request.timeoutMs);
          };
          if (transaction) {
            const sink = out.sink();
            await sink.footer(
              await transaction.run(request, sink, signal, limits.firstBatchRows).catch(fromOutside),
            );
          } else {
            // The first statement picks the server; it may run again there only while no row went out.
            // A session may write later: it names its transaction if COMMIT's answer is lost.
            const settings = {
              ...transactionSettings(options, caller, requestId, deps.limits, deadline),
              reportTransactionId: true,
            };
            // One sink for both attempts: its header goes out once.
            const sink = out.sink();
            const footer = await deps.routing
              .run(
                settings,
                token,
                () => out.delivered,
                async (engines, routed) => {
                  await transaction?.close(); // a first attempt's, before the retry takes another connection
                  transaction = await engines.engine.open(routed, signal, "open");
                  return transaction.run(request, sink, signal, limits.firstBatchRows);
                },
              )
              .catch(fromOutside);
            await sink.footer(footer);
          }
        } catch (error) {
          throw atStatement(index, error);
        }
        continue;
      }
      if (message.commit) {
        const [lsn] = (await transaction?.commit()) ?? [];
        await transaction?.close();
        committed = true;
        // COMMIT succeeded: an abort since (lifetime, shutdown) cannot undo it, so the caller is told unless gone.
        if (call.cancelled) throw signal.reason;
        call.write({ outcome: { committed } });
        trailer = lsnTrailer(lsn ?? undefined);
        break;
      }
      throw new QueryFailure("invalid_request", "empty message: send begin, statement, commit or rollback");
    }
    call.end(trailer);
  } catch (error) {
    const failure = asFailure(error);
    if (failure.kind === "internal") deps.logger.error({ err: error }, "Session failed unexpectedly");
    // Roll back before answering, so a caller that retries at once finds no locks of ours.
    await transaction?.close();
    outcome = failure.pg?.sqlstate ? `${failure.kind}:${failure.pg.sqlstate}` : failure.kind;
    failedStatement = failure.statementIndex;
    const grpcStatus = toGrpcStatus(failure);
    grpcStatus.metadata.set("x-request-id", requestId);
    if (!call.cancelled) call.emit("error", grpcStatus);
  } finally {
    await transaction?.close();
    leave?.();
    clearTimeout(lifetime);
    call.off("cancelled", onCancelled);
    // The audit line: who ran what kinds of statement, how it ended. Never
    // parameter values, literals or credentials.
    auditLogger(deps.logger).info(
      {
        method: "Session",
        requestId,
        caller: caller?.name,
        role: caller?.role,
        statements,
        kinds: [...kinds],
        failedStatement,
        committed,
        outcome,
        rows: out.rows,
        durationMs: Math.round(performance.now() - started),
      },
      "request",
    );
  }
}

/**
 * The client's messages, one at a time, with the session's idle timeout.
 * Events rather than the stream's async iterator: that one destroys the
 * stream when the client half-closes, which would take our sending side
 * (the outcome, the status) with it.
 */
class Inbox {
  private readonly queue: SessionRequest[] = [];
  private ended = false;
  private wake: () => void = () => {};

  constructor(private readonly call: Call) {
    call.on("data", (message: SessionRequest) => {
      this.queue.push(message);
      // Backpressure: a client that sends far ahead waits in its own flow control.
      if (this.queue.length >= 16) call.pause();
      this.wake();
    });
    call.on("end", () => {
      this.ended = true;
      this.wake();
    });
  }

  /** The next message, or undefined once the client closed its side. */
  async next(idleMs: number, signal: AbortSignal): Promise<SessionRequest | undefined> {
    let idle = false;
    const timer = setTimeout(() => {
      idle = true;
      this.wake();
    }, idleMs);
    const onAbort = () => this.wake();
    signal.addEventListener("abort", onAbort);
    try {
      for (;;) {
        if (signal.aborted) throw signal.reason;
        const message = this.queue.shift();
        if (message) {
          if (this.queue.length < 4) this.call.resume();
          return message;
        }
        if (this.ended) return undefined;
        if (idle) {
          throw new QueryFailure(
            "timeout",
            `the session was idle for more than ${idleMs} ms; its transaction was rolled back`,
          );
        }
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
      }
    } finally {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      this.wake = () => {};
    }
  }
}

/** Writes to the stream with backpressure: each write resolves once the stream can take more. */
class Outbox {
  rows = 0;
  /** True once rows, a footer or an outcome went to the client (a header alone may be sent again, once). */
  delivered = false;

  constructor(
    private readonly call: Call,
    private readonly signal: AbortSignal,
  ) {}

  write(message: SessionResponse): Promise<void> {
    // A call that ended (cancel, deadline, shutdown) takes no more messages.
    if (this.signal.aborted) return Promise.reject(this.signal.reason);
    if (!message.header) this.delivered = true;
    if (this.call.write(message)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const settle = () => {
        this.call.off("drain", settle);
        this.signal.removeEventListener("abort", settle);
        if (this.signal.aborted) reject(this.signal.reason);
        else resolve();
      };
      this.call.on("drain", settle);
      this.signal.addEventListener("abort", settle);
    });
  }

  /** Where one statement's header, rows and footer go. */
  sink(): StatementSink & { footer(footer: ResultFooter): Promise<void> } {
    return {
      header: headerOnce((columns) => this.write({ header: { columns } })),
      rows: (batch) => {
        this.rows += batch.length;
        return this.write({ rows: { rows: batch } });
      },
      footer: (footer) => this.write({ footer }),
    };
  }
}
