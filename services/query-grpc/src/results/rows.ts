// A result's rows and tag as they go to the caller: PostgreSQL's text forms
// kept as they arrived, NULLs listed per row, messages bounded in bytes, and
// the command and row count read from the command tag.
import { performance } from "node:perf_hooks";
import type pg from "pg";
import type { Column, ResultFooter, Row } from "../../../../proto/gen/querygate/v1/query.js";

/** A row as PostgreSQL sent it: text form per column, null for NULL. */
export type RawRow = Array<string | null>;

/**
 * Splits rows into messages of at most about `maxBytes` of values, so no
 * message nears a gRPC client's receive limit (grpc-js and grpcurl default
 * to 4 MiB) however wide the rows; a single larger row travels alone.
 */
export function* byteBounded(rows: RawRow[], maxBytes: number): Generator<RawRow[]> {
  let start = 0;
  let bytes = 0;
  for (let i = 0; i < rows.length; i++) {
    const size = rowBytes(rows[i] as RawRow);
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

/** About what a row weighs in a message: its values' lengths and a little per column. */
export function rowBytes(row: RawRow): number {
  let size = 8 * row.length;
  for (const value of row) if (value !== null) size += value.length;
  return size;
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

/** A result column as the caller sees it, from PostgreSQL's description and its type's name. */
export function columnOf(f: pg.FieldDef, typeName: string | undefined): Column {
  return {
    name: f.name,
    typeOid: f.dataTypeID,
    typeName: typeName ?? "",
    tableOid: f.tableID,
    columnNumber: f.columnID,
    typeModifier: f.dataTypeModifier,
  };
}

/** A statement's footer from its command tag and the rows the caller got. */
export function footerOf(
  completedTag: string | undefined,
  hasRows: boolean,
  sent: number,
  truncated: boolean,
  started: number,
): ResultFooter {
  // A SELECT read in several Executes reports only the last one's count: use our own.
  const completed = completedTag ?? "";
  const tag = truncated || /^SELECT \d+$/.test(completed) ? `SELECT ${sent}` : completed;
  return {
    commandTag: tag,
    command: commandOf(tag),
    rowCount: String(hasRows ? sent : affectedRows(tag)),
    truncated,
    serverTimeMs: performance.now() - started,
  };
}
