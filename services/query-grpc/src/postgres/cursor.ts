// A node-postgres Submittable that runs one request's transaction over the
// extended protocol and hands out its rows in batches.
//
// Why not pg-cursor: we pipeline the transaction's set-up (BEGIN, SET LOCAL
// ...) with the statement in one network write, keep rows in PostgreSQL's text
// form without any per-value parsing, and need the exact command tag. The
// surface stays as small as pg-cursor's: describe(), read(n), then finish() or
// abandon().
import type { EventEmitter } from "node:events";
import type { FieldDef } from "pg";
import { isServerError } from "../errors.js";

export type FieldDescription = FieldDef;

/** A row as PostgreSQL sent it: text form per column, null for NULL. */
export type RawRow = Array<string | null>;
export type ParamValue = string | Buffer | null;
export type FailedIn = "setup" | "statement" | "guard" | "commit";

interface Waiter<T> {
  resolve: (value: T) => void;
  reject: (error: unknown) => void;
}

type State = "new" | "describing" | "idle" | "reading" | "complete" | "finishing" | "done";

// `pg` hands this object the protocol messages of the active query.
export interface ProtocolConnection extends EventEmitter {
  stream: { cork(): void; uncork(): void };
  parse(query: { text: string; name?: string; types?: number[] }): void;
  bind(config: { portal?: string; statement?: string; values?: ParamValue[] }): void;
  execute(config: { portal?: string; rows?: number }): void;
  describe(msg: { type: "P" | "S"; name?: string }): void;
  close(msg: { type: "P" | "S"; name?: string }): void;
  flush(): void;
  sync(): void;
  sendCopyFail(message: string): void;
}

export class TransactionCursor {
  /** Column descriptions; [] for a statement that returns no rows. */
  fields: FieldDescription[] | undefined;
  /** PostgreSQL's command tag once the statement completed, e.g. "INSERT 0 1". */
  commandTag: string | undefined;
  /** Where an error struck: querygate's set-up, the caller's statement, or the checks before COMMIT. */
  failedIn: FailedIn | undefined;

  private connection: ProtocolConnection | undefined;
  private state: State = "new";
  private rows: RawRow[] = [];
  private pending: Waiter<RawRow[]> | undefined;
  private described: Waiter<FieldDescription[]> | undefined;
  private settled: Waiter<void> | undefined;
  private error: unknown;
  private syncSent = false;
  /** Set-up statements still to complete before the caller's statement starts. */
  private setupLeft: number;
  /** Guard statements of finish() still to complete before its COMMIT. */
  private guardsLeft = 0;
  /** PostgreSQL confirmed finish()'s COMMIT/ROLLBACK: whatever fails later cannot undo it. */
  private finished = false;
  /** The connection failed after the transaction had ended: it must not be reused. */
  connectionLost = false;
  /** Rows of finish()'s `after` statements (those following COMMIT/ROLLBACK), in order. */
  readonly afterRows: RawRow[] = [];

  constructor(
    private readonly setup: string[],
    private readonly text: string,
    private readonly values: ParamValue[],
    private readonly firstBatch: number,
  ) {
    this.setupLeft = setup.length;
  }

  // ---- Submittable interface, called by pg.Client ----

  submit(connection: unknown): void {
    const con = connection as ProtocolConnection;
    this.connection = con;
    this.state = "describing";
    // One network write for the whole pipeline, not one per protocol message.
    con.stream.cork();
    for (const statement of this.setup) {
      con.parse({ text: statement });
      con.bind({});
      con.execute({ rows: 0 });
    }
    con.parse({ text: this.text });
    con.bind({ values: this.values });
    con.describe({ type: "P" });
    con.execute({ rows: this.firstBatch });
    con.flush();
    con.stream.uncork();
    con.once("noData", this.onNoData);
  }

  handleRowDescription(msg: { fields: FieldDescription[] }): void {
    this.connection?.removeListener("noData", this.onNoData);
    this.fields = msg.fields;
    this.described?.resolve(msg.fields);
    this.described = undefined;
  }

  handleDataRow(msg: { fields: RawRow }): void {
    // Rows of set-up and guard statements are not the caller's; those after COMMIT are querygate's.
    if (this.state === "finishing" && this.finished) this.afterRows.push(msg.fields);
    if (this.setupLeft > 0 || this.state === "finishing") return;
    this.rows.push(msg.fields);
  }

  handlePortalSuspended(): void {
    this.state = "idle";
    this.deliver();
  }

  handleCommandComplete(msg: { text: string }): void {
    if (this.setupLeft > 0) {
      this.setupLeft--;
      return;
    }
    if (this.state === "finishing") {
      if (this.guardsLeft > 0) this.guardsLeft--;
      else this.finished = true;
      return; // a guard's or COMMIT/ROLLBACK's own tag
    }
    this.commandTag = msg.text;
    this.state = "complete";
    this.deliver();
  }

  handleEmptyQuery(): void {
    this.commandTag = "";
    this.state = "complete";
    this.deliver();
  }

  handleCopyInResponse(connection: unknown): void {
    (connection as ProtocolConnection).sendCopyFail("COPY FROM STDIN is not supported through querygate");
  }

  handleCopyData(): void {}

  handleError(error: unknown): void {
    // node-postgres ends the active query on an error: the ReadyForQuery that
    // follows our Sync goes to the client, not to us. So the cursor is done now.
    this.connection?.removeListener("noData", this.onNoData);
    if (this.state === "finishing" && this.finished) {
      // The COMMIT's own answer arrived before the connection died (e.g. the
      // server shutting down): the transaction ended as asked.
      this.state = "done";
      this.connectionLost = true;
      this.settled?.resolve();
      this.settled = undefined;
      return;
    }
    if (this.error === undefined) {
      this.error = error;
      this.failedIn =
        this.setupLeft > 0
          ? "setup"
          : this.guardsLeft > 0
            ? "guard"
            : this.state === "finishing"
              ? "commit"
              : "statement";
    }
    if (isServerError(error) && !this.syncSent) this.sync();
    this.state = "done";
    this.pending?.reject(error);
    this.pending = undefined;
    this.described?.reject(error);
    this.described = undefined;
    this.settled?.reject(error);
    this.settled = undefined;
  }

  handleReadyForQuery(): void {
    this.state = "done";
    this.settled?.resolve();
    this.settled = undefined;
    // A read that was still waiting gets whatever arrived.
    this.deliver();
  }

  // ---- Consumer surface ----

  /** Resolves with the result's columns once PostgreSQL has described them. */
  describe(): Promise<FieldDescription[]> {
    if (this.fields) return Promise.resolve(this.fields);
    if (this.error !== undefined) return Promise.reject(this.error);
    return new Promise((resolve, reject) => {
      this.described = { resolve, reject };
    });
  }

  /**
   * The next batch of rows: the first call returns the batch requested at
   * submit; later calls ask for `count` more. [] means the statement is complete.
   */
  read(count: number): Promise<RawRow[]> {
    if (this.error !== undefined) return Promise.reject(this.error);
    if (this.rows.length > 0 || this.state === "complete" || this.state === "done") {
      const rows = this.rows;
      this.rows = [];
      return Promise.resolve(rows);
    }
    if (this.state === "idle") {
      this.state = "reading";
      this.connection?.execute({ rows: count });
      this.connection?.flush();
    }
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
    });
  }

  /** True while PostgreSQL is working on a read, i.e. a cancel request would hit it. */
  get busy(): boolean {
    return this.state === "describing" || this.state === "reading";
  }

  get complete(): boolean {
    return this.state === "complete";
  }

  /**
   * Ends the transaction with COMMIT (or ROLLBACK) and waits for PostgreSQL's
   * answer. `guards` run first in the same pipeline; if one fails, the
   * transaction is aborted and the COMMIT never happens. `after` runs once
   * the transaction ended (DISCARD ALL); its failure only makes the
   * connection unfit for reuse.
   */
  finish(command: "COMMIT" | "ROLLBACK", guards: string[] = [], after: string[] = []): Promise<void> {
    if (this.state === "done") {
      return this.error !== undefined ? Promise.reject(this.error) : Promise.resolve();
    }
    const settled = new Promise<void>((resolve, reject) => {
      this.settled = { resolve, reject };
    });
    const con = this.connection;
    if (!con) return Promise.reject(new Error("cursor was never submitted"));
    this.state = "finishing";
    this.guardsLeft = guards.length;
    con.stream.cork();
    for (const guard of guards) {
      con.parse({ text: guard });
      con.bind({});
      con.execute({ rows: 0 });
    }
    for (const statement of [command, ...after]) {
      con.parse({ text: statement });
      con.bind({});
      con.execute({ rows: 0 });
    }
    this.sync();
    con.stream.uncork();
    return settled;
  }

  private sync(): void {
    this.syncSent = true;
    this.connection?.sync();
  }

  private onNoData = (): void => {
    this.fields = [];
    this.described?.resolve([]);
    this.described = undefined;
  };

  private deliver(): void {
    if (!this.pending) return;
    const { resolve } = this.pending;
    this.pending = undefined;
    const rows = this.rows;
    this.rows = [];
    resolve(rows);
  }
}
