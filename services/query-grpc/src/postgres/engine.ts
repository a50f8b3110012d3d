// The statement engine: every caller's SQL runs here, in a transaction on a
// pooled connection, behind admission. Execute is a transaction of one
// statement; ExecuteBatch and Session keep one open across several. Both are
// the same Transaction: one set-up, one cancel path, one rule for when a
// connection may go back to the pool, one classification of failures.
//
// A one-statement transaction is a single Exchange ended with Flush until
// its COMMIT, so BEGIN, the set-up, the statement and its first rows go out
// in one write and the transaction's end in another; one whose statement
// cannot write sends its end with it and reads the rows as they come
// (oneTrip). An open transaction ends each statement's exchange with Sync
// (see exchange.ts).
import { performance } from "node:perf_hooks";
import type pg from "pg";
import type { Column, ResultFooter, Row } from "../../../../proto/gen/querygate/v1/query.js";
import { asFailure, isServerError, QueryFailure } from "../errors.js";
import { JsonBound } from "../results/json-bound.js";
import { byteBounded, columnOf, footerOf, type RawRow, toRow } from "../results/rows.js";
import type { Admission } from "./admission.js";
import { cancelledInDatabase, stopStatement } from "./cancel.js";
import {
  type Ending,
  Exchange,
  type ParamValue,
  type Step,
  type StepResult,
  type StreamBatch,
} from "./exchange.js";
import { DISCARD_ALL, markSessionClean, takeSessionClean } from "./session-reset.js";
import {
  provesNoCommit,
  roleGuard,
  type StatementOutcome,
  TRANSACTION_ID_SQL,
  type TransactionSettings,
  transactionFailure,
  transactionSetup,
} from "./transaction.js";
import type { TypeNames } from "./type-names.js";
import { settleWithin, untilAborted, withTimeout } from "./waits.js";

export interface Statement {
  sql: string;
  params: ParamValue[];
  /** 0 = no limit. */
  maxRows: number;
  /** The most its rows may take as JSON text (results/json-bound.ts), checked before anything commits; 0 = no limit. */
  maxResultBytes?: number;
  /** maxResultBytes counts rows as JSON arrays, without column names. */
  maxResultBytesAsArrays?: boolean;
  timeoutMs: number;
  /**
   * The signal given to run() already aborts once timeoutMs has passed
   * (Execute's call timer, which also counts why): run() then arms no timer
   * and no AbortController of its own, two of the costs of a small query.
   */
  deadlineInSignal?: boolean;
}

/** Where one statement's result goes. Each method resolves once the receiver can take more. */
export interface StatementSink {
  /**
   * Called just before SQL that may commit goes to PostgreSQL: Execute sends
   * its response headers then (a gRPC client retries only a call without
   * them). A statement sent with a ROLLBACK (oneTrip) does not call it.
   */
  mayCommit?(): void;
  header(columns: Column[]): Promise<void>;
  /** `last`: no more rows follow, so the receiver may hold this batch to send it with the footer. */
  rows(batch: Row[], last: boolean): Promise<void>;
}

export interface EngineOptions {
  /** Rows per Execute after the first. */
  batchRows: number;
  /** DISCARD ALL when a transaction ends, so nothing its caller left in the session reaches the next. */
  resetSession: boolean;
  /** How long a rollback, or a cancelled statement, may take before the connection is closed instead. */
  settleTimeoutMs: number;
  /** Rows go out in messages of at most about this many bytes of values. */
  maxMessageBytes: number;
}

/** "single": a transaction of exactly one statement (Execute); "open": any number (ExecuteBatch, Session). */
export type TransactionShape = "single" | "open";

export class Engine {
  /** A replacement connection is being opened (spare()). */
  private sparing = false;

  constructor(
    private readonly pool: pg.Pool,
    private readonly admission: Admission,
    private readonly typeNames: TypeNames,
    private readonly options: EngineOptions,
  ) {}

  /** Takes an admission slot and a connection; no SQL runs until the first statement. */
  async open(
    settings: TransactionSettings,
    signal: AbortSignal,
    shape: TransactionShape,
  ): Promise<Transaction> {
    const releaseSlot = await this.admission.acquire(signal);
    try {
      const client = await this.connect(signal);
      const giveBack = (reusable: boolean) => {
        client.release(reusable ? undefined : true);
        if (!reusable) this.spare();
        releaseSlot();
      };
      return new Transaction(client, giveBack, settings, shape, this.typeNames, this.options);
    } catch (error) {
      releaseSlot();
      throw error;
    }
  }

  /**
   * A pooled connection. pg cannot abandon a connect in progress, so a caller
   * who gives up meanwhile gets its abort as soon as the connection is there,
   * and the connection (untouched) goes straight back to the pool.
   */
  private async connect(signal: AbortSignal): Promise<pg.PoolClient> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (error) {
      throw new QueryFailure(
        "unavailable",
        `database unavailable: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    if (signal.aborted) {
      client.release();
      throw signal.reason;
    }
    return client;
  }

  /**
   * A connection that could not be reused was just closed (a caller gave up
   * on a streamed result, a cancel, a failed rollback): if that left the
   * pool with none idle, one is opened now, so the next caller does not pay
   * a connection and its authentication (5-11 ms here) on its first row.
   * One at a time, only after a close, never retried: a database that is
   * down costs one failed attempt per closed connection, no more.
   */
  private spare(): void {
    const pool = this.pool;
    if (this.sparing || pool.ending || pool.idleCount > 0 || pool.waitingCount > 0) return;
    if (pool.totalCount >= (pool.options.max ?? 10)) return;
    this.sparing = true;
    pool.connect().then(
      (client) => {
        this.sparing = false;
        client.release();
      },
      () => {
        this.sparing = false;
      },
    );
  }
}

type State =
  /** Nothing sent yet: the set-up goes out with the first statement. */
  | "new"
  /** BEGIN went out; what follows must end with COMMIT or ROLLBACK. */
  | "open"
  | "committed"
  | "rolled back";

export class Transaction {
  private state: State = "new";
  /** The statement_timeout in force in the transaction. */
  private timeoutMs: number;
  /**
   * The connection failed, may be mid-exchange, or was sent a CancelRequest
   * (which may land late, on whatever runs next): it must not go back to the pool.
   */
  private broken = false;
  private closed = false;
  /** The transaction's id, when the set-up read it (settings.reportTransactionId). */
  private transactionId: string | undefined;
  /** A "single" transaction's one exchange, while it is still open (ended with Flush). */
  private live: Exchange | undefined;
  /** A read-only statement sent with its transaction's end (oneTrip): that exchange and those steps. */
  private sentEnd: { exchange: Exchange; steps: Step[] } | undefined;
  /** The exchange whose statement's rows stream() is reading, until it has read them all. */
  private streaming: Exchange | undefined;
  private readonly onClientError = () => {
    this.broken = true;
  };

  constructor(
    private readonly client: pg.PoolClient,
    /** Returns the connection (closed unless `reusable`) and the admission slot. */
    private readonly giveBack: (reusable: boolean) => void,
    private readonly settings: TransactionSettings,
    private readonly shape: TransactionShape,
    private readonly typeNames: TypeNames,
    private readonly options: EngineOptions,
  ) {
    this.timeoutMs = settings.timeoutMs;
    // A connection that breaks emits 'error' on the client; without a listener it would crash the process.
    client.on("error", this.onClientError);
  }

  /**
   * Runs one statement and hands its result to `sink`: header, then rows in
   * batches (the first of `firstBatchRows`). Returns the footer, for the
   * caller to send when it means it (Execute: only once COMMIT succeeded).
   * Throws a QueryFailure; after one the transaction is aborted and only close() remains.
   */
  async run(
    statement: Statement,
    sink: StatementSink,
    signal: AbortSignal,
    firstBatchRows: number,
  ): Promise<ResultFooter> {
    if (this.shape === "single" && this.state !== "new") {
      throw new Error("a single-statement transaction runs one statement");
    }
    const started = performance.now();
    const bounded = statement.deadlineInSignal
      ? { signal, end() {} }
      : withTimeout(signal, statement.timeoutMs);
    try {
      if (this.oneTripAllowed()) {
        return await this.oneTrip(statement, sink, bounded.signal, firstBatchRows, started);
      }
      const { before, idStep } = this.setupSteps(statement);
      if (!this.settings.readOnly) sink.mayCommit?.();
      const limit = rowLimit(statement);
      const { exchange, index } = this.send([...before, statementStep(statement, limit)]);
      const streamed = await this.stream(exchange, index, sink, statement, firstBatchRows, bounded.signal);
      if (idStep !== undefined) {
        const at = index - (before.length - idStep);
        this.transactionId = exchange.results[at]?.rows[0]?.[0] ?? undefined;
      }
      return footerOf(streamed.commandTag, streamed.described, streamed.sent, streamed.truncated, started);
    } catch (error) {
      const failure = bounded.signal.aborted ? bounded.signal.reason : error;
      if (this.commitSent) await this.refuseToHideCommit(failure);
      throw failure;
    } finally {
      bounded.end();
    }
  }

  /**
   * A call that failed (aborted, or failed here) while its COMMIT was in
   * flight with its statement (oneTrip): the statement is stopped if it
   * still runs, which skips the COMMIT, and PostgreSQL's answer is awaited
   * (bounded). Unless an error before COMMIT proves it never ran, the
   * failure must not hide a COMMIT that happened or may have: it says so,
   * and never invites a retry. (The rows not read since are gone, so it
   * cannot be answered as a success.)
   */
  private async refuseToHideCommit(failure: unknown): Promise<void> {
    const sent = this.sentEnd;
    if (!sent) return;
    const { exchange, steps } = sent;
    await this.stopSent(exchange);
    const answer = commitAnswer(exchange, steps);
    // PostgreSQL answers COMMIT of a failed transaction with ROLLBACK.
    if (answer !== undefined && answer !== "COMMIT") return;
    const before =
      exchange.failedIn === "setup" || exchange.failedIn === "statement" || exchange.failedIn === "guard";
    if (answer === undefined && before && provesNoCommit(exchange.failure)) return;
    const failed = failure instanceof QueryFailure ? failure : asFailure(failure);
    if (failed.kind === "commit_unknown") return;
    if (answer === undefined) {
      throw new QueryFailure(
        "commit_unknown",
        `${failed.message}; its COMMIT had gone to the database with the statement and no answer came, so it may have committed; check before retrying`,
      );
    }
    // A timeout or a cancel may have completed (gRPC's own rule), and a result
    // too large is not retried as it is; anything else would invite a retry,
    // which must not run it again.
    const kept =
      failed.kind === "timeout" || failed.kind === "cancelled" || failed.kind === "result_too_large";
    const kind = kept ? failed.kind : "commit_unknown";
    throw new QueryFailure(
      kind,
      `${failed.message}; the statement had already finished, and its transaction committed`,
      failed.pg,
    );
  }

  /**
   * True once a COMMIT went to PostgreSQL with the statement (oneTrip): from
   * then on only commit() can tell what became of the transaction, whatever
   * aborted the call meanwhile.
   */
  get commitSent(): boolean {
    return this.sentEnd !== undefined && !this.settings.readOnly;
  }

  /** What goes ahead of a statement: the transaction's set-up if it is new, and its own timeout. */
  private setupSteps(statement: Statement): { before: Step[]; idStep: number | undefined } {
    const before: Step[] = [];
    let idStep: number | undefined;
    if (this.state === "new") {
      const reset = this.options.resetSession && !takeSessionClean(this.client);
      for (const sql of transactionSetup(this.settings, reset)) before.push({ sql, role: "setup" });
      if (this.settings.reportTransactionId && !this.settings.readOnly) {
        idStep = before.length;
        before.push({ sql: TRANSACTION_ID_SQL, role: "setup" });
      }
      this.state = "open";
    }
    if (statement.timeoutMs !== this.timeoutMs) {
      const ms = Math.max(1, Math.trunc(statement.timeoutMs));
      before.push({
        sql: `SELECT pg_catalog.set_config('statement_timeout', '${ms}', true)`,
        role: "setup",
      });
      this.timeoutMs = statement.timeoutMs;
    }
    return { before, idStep };
  }

  /**
   * A transaction of one statement can send its end with it: set-up,
   * statement, role guard, COMMIT (ROLLBACK if read-only) and DISCARD ALL go
   * out in one write and come back in one answer, a round trip (and a wakeup
   * of each side) fewer. Not for a statement that may write: its
   * transaction's id must be known before COMMIT goes out, so a lost answer
   * can name it (a second round trip). Not with an idempotency key: its
   * record holds the statement's outcome, which is known only afterwards.
   * For a read-write caller's read it means COMMIT is in flight as soon as
   * the statement is: a lost connection is "commit_unknown", and a cancel
   * that comes after PostgreSQL finished the statement does not undo it.
   */
  private oneTripAllowed(): boolean {
    return (
      this.shape === "single" &&
      this.state === "new" &&
      this.settings.ledger === undefined &&
      (this.settings.readOnly || !this.settings.reportTransactionId)
    );
  }

  /**
   * Runs `statement` with its transaction's end (see oneTripAllowed). The
   * statement runs to its end (or to maxRows) in one Execute; its rows are
   * read as they arrive, a batch at a time, with PostgreSQL held back on
   * its socket while the caller is slower (Exchange.take).
   */
  private async oneTrip(
    statement: Statement,
    sink: StatementSink,
    signal: AbortSignal,
    firstBatchRows: number,
    started: number,
  ): Promise<ResultFooter> {
    const { before } = this.setupSteps(statement);
    const limit = rowLimit(statement);
    const ending = this.endSteps();
    if (!this.settings.readOnly) sink.mayCommit?.();
    const index = before.length;
    const exchange = new Exchange([...before, statementStep(statement, limit), ...ending], "sync");
    exchange.streamRows(index, this.streamBatch());
    this.client.query(exchange as unknown as pg.QueryConfig);
    this.sentEnd = { exchange, steps: ending };
    const streamed = await this.stream(exchange, index, sink, statement, firstBatchRows, signal);
    return footerOf(streamed.commandTag, streamed.described, streamed.sent, streamed.truncated, started);
  }

  /**
   * Hands step `index`'s result to `sink` as PostgreSQL sends it: the header
   * once the result is described, then its rows a batch at a time (the first
   * of `firstBatchRows`, so the first rows go out early), its maxRows at most,
   * and failing once they pass its maxResultBytes.
   * The step was sent streamed (streamBatch): while the caller is slower,
   * PostgreSQL is held back on its socket, so a result of any size or width
   * costs a few batches of memory.
   */
  private async stream(
    exchange: Exchange,
    index: number,
    sink: StatementSink,
    statement: Statement,
    firstBatchRows: number,
    signal: AbortSignal,
  ): Promise<{ described: boolean; sent: number; truncated: boolean; commandTag: string | undefined }> {
    this.streaming = exchange;
    const fields = await this.wait(exchange, exchange.fields(index), signal);
    const names = await untilAborted(this.columnNames(fields), signal);
    await untilAborted(sink.header(fields.map((f, i) => columnOf(f, names[i]))), signal);
    const limit = rowLimit(statement);
    const maxBytes = statement.maxResultBytes ?? 0;
    const bound =
      maxBytes > 0
        ? new JsonBound(
            fields.map((f) => f.name),
            maxBytes,
            statement.maxResultBytesAsArrays,
          )
        : undefined;
    let sent = 0;
    let truncated = false;
    for (let want = firstBatchRows; ; want = this.options.batchRows) {
      const taken = await this.wait(exchange, exchange.take(want), signal);
      let rows = taken.rows;
      if (rows.length > limit - sent) {
        rows = rows.slice(0, limit - sent);
        truncated = true;
      }
      // Before the rows go out: a write's COMMIT waits for its last rows to be delivered.
      if (bound && !bound.add(rows)) {
        throw new QueryFailure(
          "result_too_large",
          `result exceeds max_result_bytes (${maxBytes} bytes as JSON) within its first ${sent + rows.length} rows; stream it, or page it with max_rows`,
        );
      }
      sent += rows.length;
      const lastRows = truncated || taken.ended;
      await this.deliver(sink, rows, lastRows, signal);
      if (lastRows) break;
    }
    if (signal.aborted) throw signal.reason;
    const result = await this.step(exchange, index, signal);
    this.streaming = undefined;
    return { described: fields.length > 0, sent, truncated, commandTag: result.commandTag };
  }

  /** How much of a streamed result may wait unread (in rows, or a message's bytes) beside the batch being delivered. */
  private streamBatch(): StreamBatch {
    return { rows: this.options.batchRows, bytes: this.options.maxMessageBytes };
  }

  /** Hands `rows` to the sink in messages bounded by bytes; `lastRows`: no rows follow them. */
  private async deliver(sink: StatementSink, rows: RawRow[], lastRows: boolean, signal: AbortSignal) {
    const batches = [...byteBounded(rows, this.options.maxMessageBytes)].filter((b) => b.length > 0);
    for (const [i, batch] of batches.entries()) {
      await untilAborted(sink.rows(batch.map(toRow), lastRows && i === batches.length - 1), signal);
    }
  }

  /** What ends the transaction: role guard, the ledger's record, COMMIT (ROLLBACK if read-only), DISCARD ALL, afterCommit. */
  private endSteps(outcome?: StatementOutcome): Step[] {
    const ending = this.settings.readOnly ? "ROLLBACK" : "COMMIT";
    const steps: Step[] = [];
    if (this.settings.role !== undefined) steps.push({ sql: roleGuard(this.settings.role), role: "guard" });
    // An idempotency key's outcome, recorded in the very transaction it is about (ledger.ts).
    for (const sql of this.settings.ledger?.record(outcome) ?? []) steps.push({ sql, role: "ledger" });
    steps.push({ sql: ending, role: "commit" });
    if (this.options.resetSession) steps.push({ sql: DISCARD_ALL, role: "after" });
    // Read-your-writes positions and the like, on the same connection, after
    // DISCARD ALL (PostgreSQL refuses DISCARD ALL once another statement ran after COMMIT).
    const afterCommit = this.settings.readOnly ? [] : (this.settings.afterCommit ?? []);
    for (const sql of afterCommit) steps.push({ sql, role: "after" });
    return steps;
  }

  /** The result's column type names, looked up on the control connection. */
  private columnNames(fields: pg.FieldDef[]): Promise<Array<string | undefined>> {
    return this.typeNames.namesFor(fields.map((f) => f.dataTypeID)).catch((error: unknown) => {
      // The control connection failed, not the statement: unavailable, as a lost connection is.
      const message = error instanceof Error ? error.message : String(error);
      throw new QueryFailure("unavailable", `database unavailable: cannot look up type names (${message})`);
    });
  }

  /**
   * COMMIT, after the role guard, with DISCARD ALL in the same round trip
   * (behind a transaction-mode pooler a separate query could land on another
   * server connection). Never cancelled: once COMMIT is sent, only
   * PostgreSQL's answer says whether it happened; a failure with that
   * answer missing is "commit_unknown". A read-only transaction ends with
   * ROLLBACK: nothing it did persists, even what PostgreSQL allows in READ ONLY.
   */
  async commit(outcome?: StatementOutcome): Promise<Array<string | null>> {
    if (this.state === "new") {
      // Nothing ran, so there is nothing to commit.
      this.state = "committed";
      return [];
    }
    if (this.state !== "open") throw new Error(`cannot commit a transaction that is ${this.state}`);
    const ending = this.settings.readOnly ? "ROLLBACK" : "COMMIT";
    const afterCommit = this.settings.readOnly ? [] : (this.settings.afterCommit ?? []);
    // Sent already with the statement (oneTrip), or now.
    const sent = this.sentEnd;
    this.sentEnd = undefined;
    const steps = sent?.steps ?? this.endSteps(outcome);
    const firstAfter = steps.length - afterCommit.length;
    const exchange = sent?.exchange ?? this.finalExchange(steps);
    let failure: unknown;
    try {
      await exchange.done();
    } catch (error) {
      failure = error;
      this.broken = true; // what failed after COMMIT leaves a session we cannot vouch for
    }
    const answer = commitAnswer(exchange, steps);
    const unanswered = failure !== undefined && answer === undefined;
    // A read-only transaction has nothing to commit: once its statement ran,
    // only a failed role guard can still fail it.
    const readOnlyEnd = this.settings.readOnly && exchange.failedIn !== "guard";
    if (unanswered && !readOnlyEnd) {
      if (!exchange.submitted) {
        const message = failure instanceof Error ? failure.message : String(failure);
        throw new QueryFailure("unavailable", `database unavailable: ${message}`);
      }
      // Left "open": after a failed guard PostgreSQL skipped the COMMIT and the
      // transaction is still there, aborted; close() sends the ROLLBACK.
      if (isServerError(failure)) this.broken = false;
      const known = transactionFailure(failure, exchange.failedIn, this.settings);
      const xid = this.transactionId;
      if (known.kind !== "commit_unknown" || !xid) throw known;
      throw new QueryFailure(
        known.kind,
        `${known.message}; its transaction id is ${xid}`,
        known.pg,
        undefined,
        xid,
      );
    }
    if (!unanswered && answer !== ending) {
      // PostgreSQL answers COMMIT of an aborted transaction with ROLLBACK.
      this.state = "rolled back";
      throw new QueryFailure("sql", "the transaction was aborted; COMMIT rolled it back", {
        sqlstate: "25P02",
      });
    }
    this.state = "committed";
    if (failure === undefined && this.options.resetSession) markSessionClean(this.client);
    const answers = answersTo(exchange, steps);
    return afterCommit.map((_, i) => answers[firstAfter + i]?.rows[0]?.[0] ?? null);
  }

  /**
   * Ends the transaction with ROLLBACK (and DISCARD ALL in the same round
   * trip). Never fails: a connection that broke rolled back too; one that
   * does not answer in time is closed instead of reused.
   */
  async rollback(): Promise<void> {
    const sent = this.sentEnd;
    this.sentEnd = undefined;
    const streaming = this.streaming;
    this.streaming = undefined;
    // Rows nobody reads any more: never hold PostgreSQL back from its answer
    // (a statement that completed may still have rows waiting, its socket paused).
    sent?.exchange.abandonRows();
    streaming?.abandonRows();
    if (streaming && streaming !== sent?.exchange && streaming.busy) {
      // A statement left mid-stream (its reader gone, its sink full): a ROLLBACK
      // queued behind its paused socket would never be answered.
      await this.stopStreaming(streaming);
    } else if (sent?.exchange.busy) {
      await this.stopSent(sent.exchange);
    } else if (this.state === "open" && !this.broken) {
      const steps: Step[] = [{ sql: "ROLLBACK", role: "commit" }];
      if (this.options.resetSession) steps.push({ sql: DISCARD_ALL, role: "after" });
      // An async function: whatever sending throws becomes a failed rollback, never rollback()'s own error.
      const answered = (async () => {
        // A ROLLBACK sent with the statement (oneTrip) is waited for rather than sent again,
        // unless an error made PostgreSQL skip it: then the transaction is still there, aborted.
        if (
          sent &&
          (await sent.exchange.done().then(
            () => true,
            (error) => !isServerError(error),
          ))
        )
          return;
        await this.finalExchange(steps).done();
      })();
      if (!(await settleWithin(answered, this.options.settleTimeoutMs))) this.broken = true;
      else if (this.options.resetSession) markSessionClean(this.client);
    }
    this.live = undefined;
    this.state = "rolled back";
  }

  /**
   * Stops an exchange sent with its transaction's end (oneTrip) that is still
   * going: PostgreSQL may still run the statement and send rows nobody reads
   * any more. Cancels it and waits, bounded, for the exchange's end.
   */
  private stopSent(exchange: Exchange): Promise<void> {
    return this.stopExchange(exchange, () => exchange.done());
  }

  /**
   * Stops a statement whose rows stream() no longer reads; its end, not
   * ReadyForQuery (which an exchange ended with Flush never gets), is awaited.
   */
  private stopStreaming(exchange: Exchange): Promise<void> {
    return this.stopExchange(exchange, () => exchange.result(exchange.last));
  }

  /**
   * Drops `exchange`'s waiting rows, so PostgreSQL is never held back again,
   * and if it is still busy cancels it and waits, bounded, for `ended`. A
   * late cancel could hit what runs next: the connection is never reused.
   */
  private async stopExchange(exchange: Exchange, ended: () => Promise<unknown>): Promise<void> {
    exchange.abandonRows();
    if (!exchange.busy) return;
    this.broken = true;
    const stop = stopStatement(this.client, () => exchange.busy, this.options.settleTimeoutMs);
    await settleWithin(ended(), this.options.settleTimeoutMs);
    stop();
  }

  /** Rolls back whatever is still open, then returns the connection and the admission slot. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.rollback();
    this.client.off("error", this.onClientError);
    // A connection whose state we cannot vouch for is closed, not reused.
    this.giveBack(!this.broken);
  }

  /**
   * Sends steps: a "single" transaction keeps one exchange open with Flush,
   * an "open" one ends each with Sync. Returns the exchange and the index of
   * the last step, to wait on with wait().
   */
  /** Sends `steps`, the last of them a statement whose rows are streamed (stream()). */
  private send(steps: Step[]): { exchange: Exchange; index: number } {
    const ending: Ending = this.shape === "single" ? "flush" : "sync";
    let exchange: Exchange;
    if (this.live?.open) {
      exchange = this.live;
      exchange.streamRows(exchange.last + steps.length, this.streamBatch());
      exchange.continue(steps, ending);
    } else {
      exchange = new Exchange(steps, ending);
      exchange.streamRows(steps.length - 1, this.streamBatch());
      if (ending === "flush") this.live = exchange;
      this.client.query(exchange as unknown as pg.QueryConfig);
    }
    return { exchange, index: exchange.last };
  }

  /**
   * Waits for `answer` from `exchange`. On abort it asks PostgreSQL to cancel
   * and gives the statement a bounded moment to end; a connection still busy
   * after that is closed. Failures come out as QueryFailures.
   */
  private async wait<T>(exchange: Exchange, answer: Promise<T>, signal: AbortSignal): Promise<T> {
    if (signal.aborted) {
      answer.catch(() => {});
      throw signal.reason;
    }
    let timer: NodeJS.Timeout | undefined;
    let stopCancelling = () => {};
    let onAbort = () => {};
    const abandoned = new Promise<never>((_, reject) => {
      onAbort = () => {
        if (!exchange.busy) return;
        // A late cancel could hit whatever runs next on this backend: never reuse it.
        this.broken = true;
        // Rows still streaming are dropped, so PostgreSQL is not held back from reaching the cancel.
        exchange.abandonRows();
        stopCancelling = stopStatement(this.client, () => exchange.busy, this.options.settleTimeoutMs);
        // stopStatement closes a connection that stays busy; this is the backstop if even that hangs.
        timer = setTimeout(() => {
          if (!exchange.ended) reject(signal.reason);
        }, this.options.settleTimeoutMs + 1000);
      };
    });
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      return await Promise.race([answer, abandoned]);
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      // Cancelled from outside (CancelQuery from any replica): like a client cancel, the connection goes.
      if (cancelledInDatabase(error)) this.broken = true;
      if (!isServerError(error)) {
        this.broken = true;
        // A COMMIT sent with the statement (oneTrip) may have happened.
        if (this.commitSent && exchange.submitted) throw transactionFailure(error, "commit", this.settings);
        const message = error instanceof Error ? error.message : String(error);
        throw new QueryFailure("unavailable", `database unavailable: ${message}`);
      }
      throw transactionFailure(error, exchange.failedIn, this.settings);
    } finally {
      clearTimeout(timer);
      stopCancelling();
      signal.removeEventListener("abort", onAbort);
    }
  }

  /** The last step's result; for an exchange ended with Sync, once PostgreSQL is ready again. */
  private async step(exchange: Exchange, index: number, signal: AbortSignal): Promise<StepResult> {
    const answer =
      this.shape === "single"
        ? exchange.result(index)
        : Promise.all([exchange.result(index), exchange.done()]).then(([result]) => result);
    return this.wait(exchange, answer, signal);
  }

  /** The exchange that ends the transaction: the open one's last steps, or a new exchange. */
  private finalExchange(steps: Step[]): Exchange {
    const live = this.live;
    this.live = undefined;
    if (live?.open) {
      live.continue(steps, "sync");
      return live;
    }
    const exchange = new Exchange(steps, "sync");
    this.client.query(exchange as unknown as pg.QueryConfig);
    return exchange;
  }
}

/**
 * PostgreSQL's answers to `steps`, the last steps given to `exchange`, in
 * their order (the exchange may have carried the statement before them).
 */
function answersTo(exchange: Exchange, steps: Step[]): StepResult[] {
  return exchange.results.slice(exchange.last - (steps.length - 1));
}

/** The command tag PostgreSQL answered the COMMIT (or ROLLBACK) of `steps` with, if it did. */
function commitAnswer(exchange: Exchange, steps: Step[]): string | undefined {
  return answersTo(exchange, steps)[steps.findIndex((s) => s.role === "commit")]?.commandTag;
}

/** Execute's row count is a 32-bit integer: PostgreSQL's largest positive one. */
const MAX_EXECUTE_ROWS = 2 ** 31 - 1;

/**
 * The caller's statement, run to its end in one Execute; one row past `limit`
 * tells a result of exactly `limit` rows from a truncated one. A limit the
 * Execute message cannot carry is applied here alone (stream() cuts the rows).
 */
function statementStep(statement: Statement, limit: number): Step {
  return {
    sql: statement.sql,
    values: statement.params,
    describe: true,
    rows: limit < MAX_EXECUTE_ROWS ? limit + 1 : 0,
    role: "statement",
  };
}

/** The most rows a statement's result may have: its maxRows, or no limit. */
function rowLimit(statement: Statement): number {
  return statement.maxRows > 0 ? statement.maxRows : Number.POSITIVE_INFINITY;
}
