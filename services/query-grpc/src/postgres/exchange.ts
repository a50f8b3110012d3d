// One round trip of the extended protocol inside an open transaction: a few
// steps (statements, or more rows of the open portal) pipelined in one write
// and closed with Sync, so PostgreSQL answers with one ReadyForQuery.
//
// Why not TransactionCursor (Execute's): a batch or session statement runs in
// a transaction that outlives it. Ending every exchange with Sync leaves the
// connection honestly "idle in transaction" between statements (so
// idle_in_transaction_session_timeout and pg_stat_activity see the truth),
// restarts statement_timeout for every statement, and keeps the unnamed
// portal: inside BEGIN ... COMMIT, Sync does not close it, so a later exchange
// may read more of its rows.
import type { FieldDef } from "pg";
import type { ParamValue, ProtocolConnection, RawRow } from "./cursor.js";

export type Step =
  /** Parse, Bind into the unnamed portal, optionally Describe, Execute up to `rows` rows (0 = all). */
  | { sql: string; values?: ParamValue[]; describe?: boolean; rows?: number }
  /** Execute up to `more` further rows of the unnamed portal. */
  | { more: number };

export interface StepResult {
  /** Set when the step described its portal; [] for a statement without rows. */
  fields: FieldDef[] | undefined;
  rows: RawRow[];
  /** PostgreSQL's command tag once the statement completed. */
  commandTag: string | undefined;
  /** True when the row limit stopped the portal before its end. */
  suspended: boolean;
}

export class Exchange {
  /** One result per step, in order; filled as PostgreSQL answers. */
  readonly results: StepResult[];
  /** Index of the step an error struck; exact for an ErrorResponse. */
  failedAt: number | undefined;
  /** True once the exchange was written to the connection. */
  submitted = false;

  private connection: ProtocolConnection | undefined;
  /** The step PostgreSQL is answering now. */
  private step = 0;
  private finished = false;
  private readonly settled: Promise<StepResult[]>;
  private resolve!: (results: StepResult[]) => void;
  private reject!: (error: unknown) => void;

  constructor(private readonly steps: readonly Step[]) {
    this.results = steps.map(() => ({
      fields: undefined,
      rows: [],
      commandTag: undefined,
      suspended: false,
    }));
    this.settled = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    // The caller awaits done() later; an early failure must not count as unhandled meanwhile.
    this.settled.catch(() => {});
  }

  /** Resolves at ReadyForQuery with every step's result; rejects with the first error. */
  done(): Promise<StepResult[]> {
    return this.settled;
  }

  /** True while PostgreSQL may be working on it, i.e. a cancel request would hit it. */
  get busy(): boolean {
    return this.submitted && !this.finished;
  }

  /** True once PostgreSQL answered it completely, or it failed. */
  get ended(): boolean {
    return this.finished;
  }

  // ---- Submittable interface, called by pg.Client ----

  submit(connection: unknown): void {
    const con = connection as ProtocolConnection;
    this.connection = con;
    this.submitted = true;
    for (const step of this.steps) {
      if ("more" in step) {
        con.execute({ rows: step.more });
        continue;
      }
      con.parse({ text: step.sql });
      con.bind({ values: step.values ?? [] });
      if (step.describe) con.describe({ type: "P" });
      con.execute({ rows: step.rows ?? 0 });
    }
    con.sync();
    con.on("noData", this.onNoData);
  }

  handleRowDescription(msg: { fields: FieldDef[] }): void {
    const result = this.results[this.step];
    if (result) result.fields = msg.fields;
  }

  handleDataRow(msg: { fields: RawRow }): void {
    this.results[this.step]?.rows.push(msg.fields);
  }

  handlePortalSuspended(): void {
    const result = this.results[this.step++];
    if (result) result.suspended = true;
  }

  handleCommandComplete(msg: { text: string }): void {
    const result = this.results[this.step++];
    if (result) result.commandTag = msg.text;
  }

  handleEmptyQuery(): void {
    const result = this.results[this.step++];
    if (result) result.commandTag = "";
  }

  handleCopyInResponse(connection: unknown): void {
    (connection as ProtocolConnection).sendCopyFail("COPY FROM STDIN is not supported through querygate");
  }

  handleCopyData(): void {}

  handleError(error: unknown): void {
    // node-postgres ends the active query on an error; the ReadyForQuery that
    // follows our Sync goes to the client, which then starts its next query.
    if (this.finished) return;
    this.failedAt = this.step;
    this.finish();
    this.reject(error);
  }

  handleReadyForQuery(): void {
    if (this.finished) return;
    this.finish();
    this.resolve(this.results);
  }

  private finish(): void {
    this.finished = true;
    this.connection?.removeListener("noData", this.onNoData);
  }

  private onNoData = (): void => {
    const result = this.results[this.step];
    if (result) result.fields = [];
  };
}
