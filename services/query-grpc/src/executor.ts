// Runs one caller's statement inside its own transaction on a pooled
// connection and hands the result to a writer in batches, waiting for the
// writer (the gRPC stream's backpressure) before reading more. Cancellation
// (client cancel, deadline) reaches PostgreSQL as a CancelRequest, and the
// connection goes back to the pool only in a known-clean state.
import { performance } from "node:perf_hooks";
import type pg from "pg";
import type { Column, ResultFooter, Row } from "../../../proto/gen/querygate/v1/query.js";
import { sendCancelRequest } from "./cancel.js";
import { type ParamValue, type RawRow, TransactionCursor } from "./cursor.js";
import { fromDatabaseError, QueryFailure } from "./errors.js";
import type { TypeNames } from "./type-names.js";

export interface StatementRequest {
  sql: string;
  params: ParamValue[];
  /** 0 = no limit. */
  maxRows: number;
  timeoutMs: number;
  readOnly: boolean;
  applicationName: string;
}

/** Where results go. Each method resolves once the transport can take more. */
export interface ResultWriter {
  header(columns: Column[]): Promise<void>;
  rows(batch: Row[]): Promise<void>;
  footer(footer: ResultFooter): Promise<void>;
}

export interface ExecutorOptions {
  /** Rows per batch after the first. */
  batchRows: number;
  /** The first batch is small so the first rows arrive quickly whatever the result's size. */
  firstBatchRows: number;
}

export class Executor {
  constructor(
    private readonly pool: pg.Pool,
    private readonly typeNames: TypeNames,
    private readonly options: ExecutorOptions,
  ) {}

  async run(request: StatementRequest, writer: ResultWriter, signal: AbortSignal): Promise<void> {
    const started = performance.now();
    if (signal.aborted) throw signal.reason;
    const client = await this.connect();
    const limit = request.maxRows > 0 ? request.maxRows : Number.POSITIVE_INFINITY;
    const cursor = new TransactionCursor(
      transactionSetup(request),
      request.sql,
      request.params,
      Math.min(this.options.firstBatchRows, limit),
    );
    // A connection that breaks while checked out emits 'error' on the client; the
    // cursor gets the same error, so this listener only keeps it from being unhandled.
    const onClientError = () => {};
    client.on("error", onClientError);
    const onAbort = () => {
      if (cursor.busy) void sendCancelRequest(backendKey(client));
    };
    signal.addEventListener("abort", onAbort);
    let clean = false;
    try {
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
        await writer.rows(take.map(toRow));
        if (sent >= limit && !cursor.complete) {
          truncated = true;
          break;
        }
      }
      if (signal.aborted) throw signal.reason;

      await cursor.finish("COMMIT");
      clean = true;
      // A SELECT read in several Executes reports only the last one's count: use our own.
      const completed = cursor.commandTag ?? "";
      const tag = truncated || /^SELECT \d+$/.test(completed) ? `SELECT ${sent}` : completed;
      await writer.footer({
        commandTag: tag,
        command: commandOf(tag),
        rowCount: String(fields.length > 0 ? sent : affectedRows(tag)),
        truncated,
        serverTimeMs: performance.now() - started,
      });
    } catch (error) {
      clean = await rollback(client, cursor);
      if (signal.aborted) throw signal.reason;
      throw fromDatabaseError(error);
    } finally {
      signal.removeEventListener("abort", onAbort);
      client.off("error", onClientError);
      // A connection whose state we cannot vouch for is closed, not reused.
      client.release(clean ? undefined : true);
    }
  }

  private async connect(): Promise<pg.PoolClient> {
    try {
      return await this.pool.connect();
    } catch (error) {
      throw new QueryFailure(
        "unavailable",
        `database unavailable: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  }
}

function transactionSetup(request: StatementRequest): string[] {
  const setup = [request.readOnly ? "BEGIN READ ONLY" : "BEGIN"];
  // Both values are validated integers or escaped here, never caller text spliced in raw.
  setup.push(`SET LOCAL statement_timeout = ${Math.max(1, Math.trunc(request.timeoutMs))}`);
  setup.push(`SET LOCAL application_name = ${quoteLiteral(request.applicationName.slice(0, 63))}`);
  return setup;
}

function quoteLiteral(value: string): string {
  return `'${value.replace(/'/g, "''").replace(/\0/g, "")}'`;
}

/** Returns true when the connection is idle again and fit for reuse. */
async function rollback(client: pg.PoolClient, cursor: TransactionCursor): Promise<boolean> {
  try {
    await cursor.finish("ROLLBACK").catch(() => {});
    await client.query("ROLLBACK");
    return true;
  } catch {
    return false;
  }
}

/** Shared by every row without NULLs; encoding only reads it. */
const NO_NULLS: number[] = [];

function toRow(raw: RawRow): Row {
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

function commandOf(tag: string): string {
  return tag.replace(/( \d+)+$/, "");
}

function affectedRows(tag: string): number {
  const match = / (\d+)$/.exec(tag);
  return match ? Number(match[1]) : 0;
}

function backendKey(client: pg.PoolClient) {
  const c = client as unknown as { host: string; port: number; processID: number; secretKey: number };
  return { host: c.host, port: c.port, processID: c.processID, secretKey: c.secretKey };
}
