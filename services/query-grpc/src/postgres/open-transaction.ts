// A transaction that outlives one statement, for ExecuteBatch and Session. It
// holds an admission slot and a pooled connection from open() to close(),
// runs each statement as one pipelined Exchange (the set-up rides along with
// the first), commits after the role guard, and on close() rolls back
// whatever did not commit. The connection goes back to the pool only when it
// is known to be idle again; otherwise it is closed.
import { performance } from "node:perf_hooks";
import type pg from "pg";
import type { Column, ResultFooter, Row } from "../../../../proto/gen/querygate/v1/query.js";
import { isServerError, QueryFailure } from "../errors.js";
import type { Admission } from "./admission.js";
import { cancelledInDatabase, stopStatement } from "./cancel.js";
import type { ParamValue } from "./cursor.js";
import { Exchange, type Step, type StepResult } from "./exchange.js";
import { affectedRows, commandOf, toRow } from "./executor.js";
import { DISCARD_ALL, markSessionClean, rollbackAndReset, takeSessionClean } from "./session-reset.js";
import { roleGuard, type TransactionSettings, transactionFailure, transactionSetup } from "./transaction.js";
import type { TypeNames } from "./type-names.js";

export interface TransactionStatement {
  sql: string;
  params: ParamValue[];
  /** 0 = no limit. */
  maxRows: number;
  timeoutMs: number;
}

/** Where one statement's result goes. Each method resolves once the receiver can take more. */
export interface StatementSink {
  header(columns: Column[]): Promise<void>;
  rows(batch: Row[]): Promise<void>;
  footer(footer: ResultFooter): Promise<void>;
}

export interface TransactionsOptions {
  /** Rows per Execute after the first. */
  batchRows: number;
  /** DISCARD ALL before the transaction, so nothing a previous user left in the session shows. */
  resetSession: boolean;
  /** How long a rollback, or a cancelled statement, may take before the connection is closed instead. */
  settleTimeoutMs: number;
}

/** Opens transactions on the pool, behind the same admission as Execute. */
export class Transactions {
  constructor(
    private readonly pool: pg.Pool,
    private readonly admission: Admission,
    private readonly typeNames: TypeNames,
    private readonly options: TransactionsOptions,
  ) {}

  /** Takes a slot and a connection; no SQL runs until the first statement. */
  async open(settings: TransactionSettings, signal: AbortSignal): Promise<OpenTransaction> {
    const releaseSlot = await this.admission.acquire(signal);
    try {
      const client = await this.pool.connect().catch((error: unknown) => {
        throw new QueryFailure(
          "unavailable",
          `database unavailable: ${error instanceof Error ? error.message : String(error)}`,
        );
      });
      return new OpenTransaction(client, releaseSlot, settings, this.typeNames, this.options);
    } catch (error) {
      releaseSlot();
      throw error;
    }
  }
}

type State =
  /** Nothing sent yet: the set-up goes out with the first statement. */
  | "new"
  /** BEGIN went out; what follows must end with COMMIT or ROLLBACK. */
  | "open"
  | "committed"
  | "rolled back";

export class OpenTransaction {
  private state: State = "new";
  /** The statement_timeout in force in the transaction. */
  private timeoutMs: number;
  /** The connection failed or may be mid-exchange: it must not go back to the pool. */
  private broken = false;
  private closed = false;
  private readonly onClientError = () => {
    this.broken = true;
  };

  constructor(
    private readonly client: pg.PoolClient,
    private readonly releaseSlot: () => void,
    private readonly settings: TransactionSettings,
    private readonly typeNames: TypeNames,
    private readonly options: TransactionsOptions,
  ) {
    this.timeoutMs = settings.timeoutMs;
    // A connection that breaks emits 'error' on the client; without a listener it would crash the process.
    client.on("error", this.onClientError);
  }

  /**
   * Runs one statement and hands its result to `sink`: header, rows in
   * batches (the first of `firstBatchRows`), footer. Throws a QueryFailure;
   * after one the transaction is aborted and only close() remains.
   */
  async run(
    statement: TransactionStatement,
    sink: StatementSink,
    signal: AbortSignal,
    firstBatchRows: number,
  ): Promise<void> {
    const started = performance.now();
    const local = new AbortController();
    const stop = () => local.abort(signal.reason);
    signal.addEventListener("abort", stop);
    // statement_timeout restarts with every exchange; this bounds the whole statement, row reading included.
    const timer = setTimeout(
      () =>
        local.abort(new QueryFailure("timeout", `statement exceeded its ${statement.timeoutMs} ms timeout`)),
      statement.timeoutMs,
    );
    try {
      const before: string[] = [];
      let setupSteps = 0;
      if (this.state === "new") {
        const reset = this.options.resetSession && !takeSessionClean(this.client);
        before.push(...transactionSetup(this.settings, reset));
        setupSteps = before.length;
        this.state = "open";
      }
      if (statement.timeoutMs !== this.timeoutMs) {
        const ms = Math.max(1, Math.trunc(statement.timeoutMs));
        before.push(`SELECT pg_catalog.set_config('statement_timeout', '${ms}', true)`);
        this.timeoutMs = statement.timeoutMs;
      }
      const limit = statement.maxRows > 0 ? statement.maxRows : Number.POSITIVE_INFINITY;
      // One row past the limit tells a result of exactly `limit` rows from a truncated one.
      const want = (sent: number, batch: number) => Math.min(batch, limit - sent + 1);
      const first = [
        ...before.map((sql): Step => ({ sql })),
        { sql: statement.sql, values: statement.params, describe: true, rows: want(0, firstBatchRows) },
      ];
      let result = await this.exchange(first, local.signal, setupSteps);
      const fields = result.fields ?? [];
      const names = await this.typeNames.namesFor(fields.map((f) => f.dataTypeID));
      await untilAborted(
        sink.header(
          fields.map((f, i) => ({
            name: f.name,
            typeOid: f.dataTypeID,
            typeName: names[i] ?? "",
            tableOid: f.tableID,
            columnNumber: f.columnID,
            typeModifier: f.dataTypeModifier,
          })),
        ),
        local.signal,
      );

      let sent = 0;
      let truncated = false;
      for (;;) {
        let rows = result.rows;
        if (rows.length > limit - sent) {
          rows = rows.slice(0, limit - sent);
          truncated = true;
        }
        sent += rows.length;
        if (rows.length > 0) await untilAborted(sink.rows(rows.map(toRow)), local.signal);
        if (truncated || !result.suspended) break;
        if (local.signal.aborted) throw local.signal.reason;
        result = await this.exchange([{ more: want(sent, this.options.batchRows) }], local.signal, 0);
      }

      // A SELECT read in several Executes reports only the last one's count: use our own.
      const completed = result.commandTag ?? "";
      const tag = truncated || /^SELECT \d+$/.test(completed) ? `SELECT ${sent}` : completed;
      await untilAborted(
        sink.footer({
          commandTag: tag,
          command: commandOf(tag),
          rowCount: String(fields.length > 0 ? sent : affectedRows(tag)),
          truncated,
          serverTimeMs: performance.now() - started,
        }),
        local.signal,
      );
    } catch (error) {
      if (local.signal.aborted) throw local.signal.reason;
      throw error;
    } finally {
      clearTimeout(timer);
      signal.removeEventListener("abort", stop);
    }
  }

  /**
   * COMMIT, after the role guard, in one exchange. Never cancelled: once
   * COMMIT is sent, only PostgreSQL's answer says whether it happened. A
   * failure with that answer missing is "commit_unknown".
   */
  async commit(): Promise<void> {
    if (this.state === "new") {
      // Nothing ran, so there is nothing to commit.
      this.state = "committed";
      return;
    }
    const guards = [
      ...(this.settings.role === undefined ? [] : [roleGuard(this.settings.role)]),
      ...(this.settings.ledger?.record() ?? []),
    ];
    // A read-only transaction has nothing to commit: ROLLBACK makes sure nothing it did persists.
    const ending = this.settings.readOnly ? "ROLLBACK" : "COMMIT";
    // DISCARD ALL in the same round trip, so it meets the very session the transaction ran on
    // (behind a transaction-mode pooler a separate query could land on another).
    const exchange = new Exchange([
      ...guards.map((sql): Step => ({ sql })),
      { sql: ending },
      ...this.resetSteps(),
    ]);
    this.client.query(exchange as unknown as pg.QueryConfig);
    let results: StepResult[];
    try {
      results = await exchange.done();
    } catch (error) {
      if (!exchange.submitted) {
        this.broken = true;
        const message = error instanceof Error ? error.message : String(error);
        throw new QueryFailure("unavailable", `database unavailable: ${message}`);
      }
      if (!isServerError(error)) this.broken = true;
      // PostgreSQL refused the guard or the COMMIT, or the answer is missing: transactionFailure tells which.
      const failedIn =
        exchange.failedAt !== undefined && exchange.failedAt < guards.length ? "guard" : "commit";
      throw transactionFailure(error, failedIn, this.settings);
    }
    // PostgreSQL answers COMMIT of an aborted transaction with ROLLBACK.
    if (results[guards.length]?.commandTag !== ending) {
      this.state = "rolled back";
      throw new QueryFailure("sql", "the transaction was aborted; COMMIT rolled it back", {
        sqlstate: "25P02",
      });
    }
    this.state = "committed";
    this.sessionReset();
  }

  /** Ends the transaction with ROLLBACK. Never fails: a connection that broke rolled back too. */
  async rollback(): Promise<void> {
    if (this.state === "open" && !this.broken) {
      const { settled } = await rollbackAndReset(
        this.client,
        this.options.resetSession,
        this.options.settleTimeoutMs,
      );
      if (!settled) this.broken = true;
    }
    this.state = "rolled back";
  }

  /** Rolls back whatever is still open, then returns the connection and the admission slot. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.rollback();
    this.client.off("error", this.onClientError);
    // A connection whose state we cannot vouch for is closed, not reused.
    this.client.release(this.broken ? true : undefined);
    this.releaseSlot();
  }

  /**
   * Sends one exchange and waits for it. On abort it asks PostgreSQL to
   * cancel and gives the exchange a bounded moment to end; a connection still
   * mid-exchange after that is marked broken, so close() discards it.
   */
  private async exchange(steps: Step[], signal: AbortSignal, setupSteps: number): Promise<StepResult> {
    if (signal.aborted) throw signal.reason;
    const exchange = new Exchange(steps);
    this.client.query(exchange as unknown as pg.QueryConfig);
    let timer: NodeJS.Timeout | undefined;
    let stopCancelling = () => {};
    let onAbort = () => {};
    const abandoned = new Promise<never>((_, reject) => {
      onAbort = () => {
        if (!exchange.busy) return;
        // A late cancel could hit whatever runs next on this backend: never reuse it.
        this.broken = true;
        stopCancelling = stopStatement(this.client, () => exchange.busy, this.options.settleTimeoutMs);
        // stopStatement closes a connection that stays busy; this is the backstop if even that hangs.
        timer = setTimeout(() => {
          if (!exchange.ended) reject(signal.reason);
        }, this.options.settleTimeoutMs + 1000);
      };
    });
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      const results = await Promise.race([exchange.done(), abandoned]);
      return results[results.length - 1] as StepResult;
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      if (!isServerError(error)) {
        this.broken = true;
        const message = error instanceof Error ? error.message : String(error);
        throw new QueryFailure("unavailable", `database unavailable: ${message}`);
      }
      if (cancelledInDatabase(error)) this.broken = true;
      const failedIn = (exchange.failedAt ?? 0) < setupSteps ? "setup" : "statement";
      throw transactionFailure(error, failedIn, this.settings);
    } finally {
      clearTimeout(timer);
      stopCancelling();
      signal.removeEventListener("abort", onAbort);
    }
  }

  /**
   * DISCARD ALL after the transaction ends, so nothing its caller took in
   * the session (advisory locks, LISTEN, settings, temp tables) outlives it.
   */
  private resetSteps(): Step[] {
    return this.options.resetSession ? [{ sql: DISCARD_ALL }] : [];
  }

  private sessionReset(): void {
    if (this.options.resetSession) markSessionClean(this.client);
  }
}

/** `work`, or the signal's reason as soon as it aborts. */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
