// The one way querygate speaks PostgreSQL's extended protocol: an Exchange
// is a node-postgres Submittable that pipelines steps (statements) in one
// network write each time it is given some,
// and ends either with Sync (PostgreSQL answers ReadyForQuery and the
// exchange is over) or with Flush (PostgreSQL sends what it has and waits:
// the exchange stays pg's active query and more steps can follow).
//
// Why our own and not pg's Query or pg-cursor: we pipeline a transaction's
// set-up with the caller's statement in the same write, keep rows in
// PostgreSQL's text form without any per-value parsing, need the exact
// command tag, and must know at which step an error struck (set-up,
// statement, role guard, COMMIT): that decides what the failure means for
// the caller's data (transaction.ts).
//
// Flush keeps a one-statement transaction (Execute) one exchange from BEGIN
// to COMMIT, so PostgreSQL shows it "active" while its rows stream. Sync
// ends every statement of a transaction that outlives it (ExecuteBatch,
// Session): between statements the connection is honestly "idle in
// transaction". A statement's rows are read as they arrive (streamRows,
// take), with the socket paused while the reader is slower.
import type { EventEmitter } from "node:events";
import type { FieldDef } from "pg";
import { isServerError } from "../errors.js";
import { type RawRow, rowBytes } from "../results/rows.js";

/** A parameter in the form node-postgres sends: text, bytes (bytea) or NULL. */
export type ParamValue = string | Buffer | null;

/** What a step is for: where an error strikes decides what it means (transaction.ts). */
export type StepRole = "setup" | "statement" | "guard" | "ledger" | "commit" | "after";

/** Parse, Bind into the unnamed portal, optionally Describe, Execute up to `rows` rows (0 = all). */
export interface Step {
  sql: string;
  values?: ParamValue[];
  describe?: boolean;
  rows?: number;
  role: StepRole;
}

export interface StepResult {
  /** Set when the step described its portal; [] for a statement without rows. */
  fields: FieldDef[] | undefined;
  rows: RawRow[];
  /** PostgreSQL's command tag once the statement completed. */
  commandTag: string | undefined;
}

export type Ending = "sync" | "flush";

// `pg` hands the Submittable the protocol messages of the active query.
interface ProtocolConnection extends EventEmitter {
  stream: { cork(): void; uncork(): void; pause(): void; resume(): void; destroy(): void };
  parse(query: { text: string }): void;
  bind(config: { values?: ParamValue[] }): void;
  execute(config: { rows?: number }): void;
  describe(msg: { type: "P" }): void;
  flush(): void;
  sync(): void;
  sendCopyFail(message: string): void;
}

interface Waiter {
  index: number;
  resolve: (result: StepResult) => void;
  reject: (error: unknown) => void;
}

interface Taker {
  index: number;
  want: number;
  resolve: (taken: TakenRows) => void;
  reject: (error: unknown) => void;
}

/**
 * A streamed step's batch: a take() is answered once `rows` rows or `bytes`
 * bytes of them wait, and PostgreSQL is held back once a batch more than that
 * waits unread.
 */
export interface StreamBatch {
  rows: number;
  bytes: number;
}

/** Rows of a streamed step: `ended` once no more follow (the step completed or suspended). */
export interface TakenRows {
  rows: RawRow[];
  ended: boolean;
}

interface DescriptionWaiter {
  index: number;
  resolve: (fields: FieldDef[]) => void;
  reject: (error: unknown) => void;
}

export class Exchange {
  /** One result per step, in order; filled as PostgreSQL answers. */
  readonly results: StepResult[] = [];
  /** The role of the step an error struck; exact for an ErrorResponse. */
  failedIn: StepRole | undefined;
  /** True once the first steps were written to the connection. */
  submitted = false;

  private readonly steps: Step[] = [];
  private connection: ProtocolConnection | undefined;
  /** The step PostgreSQL is answering now. */
  private step = 0;
  private syncSent = false;
  private finished = false;
  private error: unknown;
  private waiters: Waiter[] = [];
  private describing: DescriptionWaiter[] = [];
  /** A streamed step (take()): who waits for its rows, and whether PostgreSQL is held back meanwhile. */
  private taker: Taker | undefined;
  private streamed: { index: number; batch: StreamBatch } | undefined;
  /** What the streamed step's rows waiting unread weigh (rowBytes). */
  private pendingBytes = 0;
  private paused = false;
  private abandoned = false;
  private readonly settled: Promise<void>;
  private resolveDone!: () => void;
  private rejectDone!: (error: unknown) => void;

  constructor(
    steps: Step[],
    private ending: Ending,
  ) {
    this.add(steps);
    this.settled = new Promise((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
    // The caller awaits done() later, if at all; an early failure must not count as unhandled meanwhile.
    this.settled.catch(() => {});
  }

  /** Resolves at ReadyForQuery (after a Sync); rejects with the first error. */
  done(): Promise<void> {
    return this.settled;
  }

  /** Resolves once step `index` completed or suspended; rejects if it or an earlier step failed. */
  result(index: number): Promise<StepResult> {
    const result = this.results[index];
    if (index < this.step && result) return Promise.resolve(result);
    if (this.error !== undefined) return Promise.reject(this.error);
    if (this.finished) return Promise.reject(new Error("the exchange ended before that step ran"));
    return new Promise((resolve, reject) => {
      this.waiters.push({ index, resolve, reject });
    });
  }

  /**
   * Resolves with step `index`'s columns as soon as PostgreSQL described them
   * (before its rows), so the caller learns the result's shape first.
   */
  fields(index: number): Promise<FieldDef[]> {
    const known = this.results[index]?.fields;
    if (known) return Promise.resolve(known);
    if (this.error !== undefined) return Promise.reject(this.error);
    if (this.finished || index < this.step) return this.result(index).then((r) => r.fields ?? []);
    return new Promise((resolve, reject) => {
      this.describing.push({ index, resolve, reject });
    });
  }

  /**
   * Step `index`'s rows are to be read as they arrive (take()) rather than
   * once it completed; while more than a batch of them waits unread (in rows
   * or in bytes), the connection is paused, so a result of any size or width
   * costs a few batches of memory and PostgreSQL waits on a full socket.
   * Given before the exchange is sent, it holds from the first row.
   */
  streamRows(index: number, batch: StreamBatch): void {
    this.streamed = { index, batch };
  }

  /**
   * Resolves with up to `want` of the streamed step's rows as soon as that
   * many, or a batch's bytes, wait; or with the rest once the step completed (`ended`).
   */
  take(want: number): Promise<TakenRows> {
    if (this.taker) throw new Error("one take() at a time");
    if (this.abandoned) return Promise.reject(new Error("the rows were abandoned"));
    const streamed = this.streamed;
    const result = streamed && this.results[streamed.index];
    if (!streamed || !result) return Promise.reject(new Error("no streamed step"));
    const { index } = streamed;
    const hand = (ended: boolean) => {
      const rows = this.takeRows(result.rows, want);
      if (!this.overBatch(result.rows)) this.holdBack(false);
      return Promise.resolve({ rows, ended: ended && result.rows.length === 0 });
    };
    // A step that completed is whole, whatever failed after it.
    if (index < this.step) return hand(true);
    // A whole batch that arrived before a failure is the caller's, as a batch
    // read by an Execute of its own would be; a part of one is not.
    if (this.batchReady(result.rows, want)) return hand(false);
    if (this.error !== undefined) return Promise.reject(this.error);
    if (this.finished) return Promise.reject(new Error("the exchange ended before that step ran"));
    this.holdBack(false);
    return new Promise((resolve, reject) => {
      this.taker = { index, want, resolve, reject };
    });
  }

  /** The first error PostgreSQL or the connection gave, once there is one. */
  get failure(): unknown {
    return this.error;
  }

  /**
   * Rows no longer wanted (the call was aborted): they are dropped as they
   * come and the connection is never held back again, so PostgreSQL can
   * reach the cancel and the end of the exchange.
   */
  abandonRows(): void {
    this.abandoned = true;
    if (this.streamed) this.results[this.streamed.index]?.rows.splice(0);
    this.pendingBytes = 0;
    this.holdBack(false);
  }

  /** Index of the last step given so far. */
  get last(): number {
    return this.steps.length - 1;
  }

  /** True while PostgreSQL may be working on a step, i.e. a cancel request would hit it. */
  get busy(): boolean {
    return this.submitted && !this.finished && this.step < this.steps.length;
  }

  /** True once PostgreSQL answered it completely, or it failed. */
  get ended(): boolean {
    return this.finished;
  }

  /** True when more steps may still be given: it ended with Flush and nothing failed. */
  get open(): boolean {
    return this.submitted && !this.finished && !this.syncSent;
  }

  /** More steps for an exchange that ended with Flush, in one network write. */
  continue(steps: Step[], ending: Ending): void {
    if (!this.open) throw new Error("the exchange is over; start another");
    const from = this.steps.length;
    this.add(steps);
    this.ending = ending;
    const error = this.write(from);
    if (error) throw error;
  }

  // ---- Submittable interface, called by pg.Client ----

  submit(connection: unknown): Error | undefined {
    this.connection = connection as ProtocolConnection;
    this.submitted = true;
    this.connection.on("noData", this.onNoData);
    // pg may submit from its queue, inside a socket event: an error returned, not thrown.
    return this.write(0);
  }

  handleRowDescription(msg: { fields: FieldDef[] }): void {
    const result = this.results[this.step];
    if (result) result.fields = msg.fields;
    this.described(msg.fields);
  }

  handleDataRow(msg: { fields: RawRow }): void {
    const rows = this.results[this.step]?.rows;
    if (!rows) return;
    const streamed = this.streamed;
    if (streamed === undefined || streamed.index !== this.step) {
      rows.push(msg.fields);
      return;
    }
    if (this.abandoned) return;
    rows.push(msg.fields);
    this.pendingBytes += rowBytes(msg.fields);
    const taker = this.taker;
    if (taker && this.batchReady(rows, taker.want)) {
      this.taker = undefined;
      taker.resolve({ rows: this.takeRows(rows, taker.want), ended: false });
    } else if (!taker && this.overBatch(rows)) {
      this.holdBack(true);
    }
  }

  handlePortalSuspended(): void {
    // The row limit stopped the portal before its end: the step is over all the same.
    this.advance();
  }

  handleCommandComplete(msg: { text: string }): void {
    const result = this.results[this.step];
    if (result) result.commandTag = msg.text;
    this.advance();
  }

  handleEmptyQuery(): void {
    const result = this.results[this.step];
    if (result) result.commandTag = "";
    this.advance();
  }

  handleCopyInResponse(connection: unknown): void {
    (connection as ProtocolConnection).sendCopyFail("COPY FROM STDIN is not supported through querygate");
  }

  handleCopyData(): void {}

  handleError(error: unknown): void {
    // node-postgres ends the active query on an error: the ReadyForQuery that
    // follows our Sync goes to the client, which then starts its next query.
    if (this.finished) return;
    this.error = error;
    this.failedIn = this.steps[this.step]?.role ?? "statement";
    // After an ErrorResponse PostgreSQL skips everything up to the next Sync:
    // send one if none is on its way, so the connection comes back.
    if (isServerError(error) && !this.syncSent) {
      this.syncSent = true;
      this.connection?.sync();
    }
    this.finish();
    this.taker?.reject(error);
    this.taker = undefined;
    for (const waiter of this.waiters) waiter.reject(error);
    this.waiters = [];
    for (const waiter of this.describing) waiter.reject(error);
    this.describing = [];
    this.rejectDone(error);
  }

  handleReadyForQuery(): void {
    if (this.finished) return;
    this.finish();
    if (this.taker) {
      this.taker.reject(new Error("the exchange ended before that step ran"));
      this.taker = undefined;
    }
    // Any step still awaited was never answered (PostgreSQL answered Sync first).
    if (this.waiters.length > 0 || this.describing.length > 0) {
      const never = new Error("the exchange ended before that step ran");
      for (const waiter of this.waiters) waiter.reject(never);
      this.waiters = [];
      for (const waiter of this.describing) waiter.reject(never);
      this.describing = [];
    }
    this.resolveDone();
  }

  private add(steps: Step[]): void {
    for (const step of steps) {
      this.steps.push(step);
      this.results.push({ fields: undefined, rows: [], commandTag: undefined });
    }
  }

  /**
   * One network write for the whole pipeline, not one per protocol message.
   * A step that cannot be serialized leaves part of the pipeline buffered:
   * the protocol's state is then unknown, so the connection is closed (pg
   * reports it lost) and the error is returned.
   */
  private write(from: number): Error | undefined {
    const con = this.connection;
    if (!con) return undefined; // submit() writes everything given so far
    con.stream.cork();
    try {
      for (const step of this.steps.slice(from)) {
        con.parse({ text: step.sql });
        con.bind({ values: step.values ?? [] });
        if (step.describe) con.describe({ type: "P" });
        con.execute({ rows: step.rows ?? 0 });
      }
      if (this.ending === "sync") {
        this.syncSent = true;
        con.sync();
      } else {
        con.flush();
      }
      return undefined;
    } catch (error) {
      con.stream.destroy();
      return error instanceof Error ? error : new Error(String(error));
    } finally {
      con.stream.uncork();
    }
  }

  private described(fields: FieldDef[]): void {
    if (this.describing.length === 0) return;
    const ready = this.describing.filter((w) => w.index === this.step);
    if (ready.length === 0) return;
    this.describing = this.describing.filter((w) => w.index !== this.step);
    for (const waiter of ready) waiter.resolve(fields);
  }

  private advance(): void {
    // A step that was not described (or whose description was not asked for) answers its waiters now.
    this.described(this.results[this.step]?.fields ?? []);
    const index = this.step++;
    const taker = this.taker;
    if (taker && taker.index === index) {
      this.taker = undefined;
      const rows = this.results[index]?.rows ?? [];
      const taken = this.takeRows(rows, taker.want);
      taker.resolve({ rows: taken, ended: rows.length === 0 });
    }
    if (this.waiters.length === 0) return;
    const result = this.results[index] as StepResult;
    const ready = this.waiters.filter((w) => w.index <= index);
    if (ready.length === 0) return;
    this.waiters = this.waiters.filter((w) => w.index > index);
    for (const waiter of ready) waiter.resolve(this.results[waiter.index] ?? result);
  }

  private batchReady(rows: RawRow[], want: number): boolean {
    return rows.length >= want || this.pendingBytes >= (this.streamed?.batch.bytes ?? 0);
  }

  /** More than a batch waits unread: time to hold PostgreSQL back. */
  private overBatch(rows: RawRow[]): boolean {
    const batch = this.streamed?.batch;
    return batch !== undefined && (rows.length >= batch.rows || this.pendingBytes >= 2 * batch.bytes);
  }

  /** Up to `want` rows from the front, and their weight off what waits. */
  private takeRows(rows: RawRow[], want: number): RawRow[] {
    const taken = rows.splice(0, want);
    if (rows.length === 0) this.pendingBytes = 0;
    else for (const row of taken) this.pendingBytes -= rowBytes(row);
    return taken;
  }

  /** Pauses or resumes reading from PostgreSQL (take()'s flow control). */
  private holdBack(on: boolean): void {
    if (on === this.paused || !this.connection) return;
    if (on && this.abandoned) return;
    this.paused = on;
    if (on) this.connection.stream.pause();
    else this.connection.stream.resume();
  }

  private finish(): void {
    this.holdBack(false);
    this.finished = true;
    this.connection?.removeListener("noData", this.onNoData);
  }

  private onNoData = (): void => {
    const result = this.results[this.step];
    if (result) result.fields = [];
    this.described([]);
  };
}
