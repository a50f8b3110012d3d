// Runs one caller's statement inside its own transaction on a pooled
// connection and hands the result to a writer in batches, waiting for the
// writer (the gRPC stream's backpressure) before reading more. Cancellation
// (client cancel, deadline) reaches PostgreSQL as a CancelRequest, and the
// connection goes back to the pool only in a known-clean state.
import { performance } from "node:perf_hooks";
import type pg from "pg";
import type { Column, ResultFooter, Row } from "../../../../proto/gen/querygate/v1/query.js";
import { QueryFailure } from "../errors.js";
import type { Admission } from "./admission.js";
import { cancelledInDatabase, stopStatement } from "./cancel.js";
import { type ParamValue, type RawRow, TransactionCursor } from "./cursor.js";
import { DISCARD_ALL, markSessionClean, rollbackAndReset, takeSessionClean } from "./session-reset.js";
import { roleGuard, type TransactionSettings, transactionFailure, transactionSetup } from "./transaction.js";
import type { TypeNames } from "./type-names.js";

export interface StatementRequest extends TransactionSettings {
  sql: string;
  params: ParamValue[];
  /** 0 = no limit. */
  maxRows: number;
}

/** Where results go. Each method resolves once the transport can take more. */
export interface ResultWriter {
  /** Called once, just before the first SQL goes to PostgreSQL. */
  accepted(): void;
  header(columns: Column[]): Promise<void>;
  rows(batch: Row[]): Promise<void>;
  footer(footer: ResultFooter): Promise<void>;
}

export interface ExecutorOptions {
  /** Rows per batch after the first. */
  batchRows: number;
  /** The first batch is small so the first rows arrive quickly whatever the result's size. */
  firstBatchRows: number;
  /** DISCARD ALL before each request, so nothing one caller left in the session reaches the next. */
  resetSession: boolean;
  /** How long a cancelled statement or a rollback may take before its connection is closed instead. */
  settleTimeoutMs: number;
  /** Rows go out in messages of at most about this many bytes of values. */
  maxMessageBytes: number;
}

export class Executor {
  constructor(
    private readonly pool: pg.Pool,
    private readonly admission: Admission,
    private readonly typeNames: TypeNames,
    private readonly options: ExecutorOptions,
  ) {}

  async run(request: StatementRequest, writer: ResultWriter, signal: AbortSignal): Promise<void> {
    const started = performance.now();
    const releaseSlot = await this.admission.acquire(signal);
    try {
      await this.runAdmitted(request, writer, signal, started);
    } finally {
      releaseSlot();
    }
  }

  private async runAdmitted(
    request: StatementRequest,
    writer: ResultWriter,
    signal: AbortSignal,
    started: number,
  ): Promise<void> {
    const client = await this.connect(signal);
    const limit = request.maxRows > 0 ? request.maxRows : Number.POSITIVE_INFINITY;
    const reset = this.options.resetSession;
    const cursor = new TransactionCursor(
      transactionSetup(request, reset && !takeSessionClean(client)),
      request.sql,
      request.params,
      Math.min(this.options.firstBatchRows, limit),
    );
    // A connection that breaks while checked out emits 'error' on the client; the
    // cursor gets the same error, so this listener only keeps it from being unhandled.
    const onClientError = () => {};
    client.on("error", onClientError);
    // A CancelRequest travels on its own connection and may land late, on
    // whatever runs next on this backend: a connection we sent one for is
    // never handed to another caller.
    let cancelSent = false;
    let stopCancelling = () => {};
    const onAbort = () => {
      if (!cursor.busy) return; // between reads: the loop below sees the abort
      cancelSent = true;
      stopCancelling = stopStatement(client, () => cursor.busy, this.options.settleTimeoutMs);
    };
    signal.addEventListener("abort", onAbort);
    let clean = false;
    try {
      if (signal.aborted) throw signal.reason;
      writer.accepted();
      client.query(cursor as unknown as pg.QueryConfig);
      const fields = await cursor.describe();
      const names = await this.typeNames.namesFor(fields.map((f) => f.dataTypeID));
      await writer.header(
        fields.map((f, i) => ({
          name: f.name,
          typeOid: f.dataTypeID,
          typeName: names[i] ?? "",
          tableOid: f.tableID,
          columnNumber: f.columnID,
          typeModifier: f.dataTypeModifier,
        })),
      );

      let sent = 0;
      let truncated = false;
      for (;;) {
        if (signal.aborted) throw signal.reason;
        const raw = await cursor.read(Math.min(this.options.batchRows, limit - sent));
        if (raw.length === 0) break;
        const take = raw.length > limit - sent ? raw.slice(0, limit - sent) : raw;
        sent += take.length;
        for (const batch of byteBounded(take, this.options.maxMessageBytes))
          await writer.rows(batch.map(toRow));
        if (sent >= limit && !cursor.complete) {
          // The portal stopped at the limit; only another row proves there was more.
          truncated = (await cursor.read(1)).length > 0;
          break;
        }
      }
      if (signal.aborted) throw signal.reason;

      // A SELECT read in several Executes reports only the last one's count: use our own.
      const completed = cursor.commandTag ?? "";
      const tag = truncated || /^SELECT \d+$/.test(completed) ? `SELECT ${sent}` : completed;
      const rowCount = fields.length > 0 ? sent : affectedRows(tag);
      // A read-only transaction has nothing to commit: ending it with ROLLBACK
      // makes sure nothing it did persists, even what PostgreSQL allows in READ ONLY.
      await cursor.finish(
        request.readOnly ? "ROLLBACK" : "COMMIT",
        [
          ...(request.role === undefined ? [] : [roleGuard(request.role)]),
          ...(request.ledger?.record({ commandTag: tag, rowCount, truncated }) ?? []),
        ],
        reset ? [DISCARD_ALL] : [],
      );
      clean = !cursor.connectionLost;
      if (clean && reset) markSessionClean(client);
      await writer.footer({
        commandTag: tag,
        command: commandOf(tag),
        rowCount: String(rowCount),
        truncated,
        serverTimeMs: performance.now() - started,
      });
    } catch (error) {
      const ended = await rollbackAndReset(client, reset, this.options.settleTimeoutMs, () =>
        cursor.finish("ROLLBACK"),
      );
      clean = ended.settled && ended.ok && !cancelledInDatabase(error);
      // A failure once COMMIT went out says more than the caller's cancel: it may have committed.
      const failure = transactionFailure(error, cursor.failedIn, request);
      if (failure.kind === "commit_unknown") throw failure;
      if (signal.aborted) throw signal.reason;
      throw failure;
    } finally {
      stopCancelling();
      signal.removeEventListener("abort", onAbort);
      client.off("error", onClientError);
      // A connection whose state we cannot vouch for is closed, not reused.
      client.release(clean && !cancelSent ? undefined : true);
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
}

/**
 * Splits rows into messages of at most about `maxBytes` of values, so no
 * message nears a gRPC client's receive limit (grpc-js and grpcurl default
 * to 4 MiB) however wide the rows; a single larger row travels alone.
 */
export function* byteBounded(rows: RawRow[], maxBytes: number): Generator<RawRow[]> {
  let start = 0;
  let bytes = 0;
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i] as RawRow;
    let size = 8 * row.length;
    for (const value of row) if (value !== null) size += value.length;
    if (bytes + size > maxBytes && i > start) {
      yield rows.slice(start, i);
      start = i;
      bytes = 0;
    }
    bytes += size;
  }
  if (start === 0) yield rows;
  else if (start < rows.length) yield rows.slice(start);
}

/** Shared by every row without NULLs; encoding only reads it. */
const NO_NULLS: number[] = [];

export function toRow(raw: RawRow): Row {
  // Most rows have no NULL: their values go out as the array PostgreSQL's row
  // arrived in, so a row costs two fewer arrays to allocate and collect.
  if (!raw.includes(null)) return { values: raw as string[], nullColumns: NO_NULLS };
  const nullColumns: number[] = [];
  const values = new Array<string>(raw.length);
  for (let i = 0; i < raw.length; i++) {
    const value = raw[i];
    if (value === null || value === undefined) {
      values[i] = "";
      nullColumns.push(i);
    } else {
      values[i] = value;
    }
  }
  return { values, nullColumns };
}

export function commandOf(tag: string): string {
  return tag.replace(/( \d+)+$/, "");
}

export function affectedRows(tag: string): number {
  const match = / (\d+)$/.exec(tag);
  return match ? Number(match[1]) : 0;
}
