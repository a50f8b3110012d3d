// Reads POST /query's NDJSON as it arrives and keeps the rows compactly: the
// response text stays as the chunks it came in, and each row is three numbers
// (chunk, start, end) in typed arrays — about 12 bytes per row beside its own
// text. A row is parsed only when the table shows it, so a million rows cost
// tens of MB, not a million objects, and the first row shows as soon as its
// line is complete.

export interface ResultColumn {
  name: string;
  type: string;
  typeOid: number;
}

export interface ResultFooter {
  command: string;
  rowCount: number;
  truncated?: boolean;
}

/** The bridge's error body: PostgreSQL's fields where there are any. */
export interface QueryErrorBody {
  code: string;
  message: string;
  detail?: string;
  hint?: string;
  position?: number;
  grpcStatus?: string;
}

export type RowValue = string | number | boolean | null | object;

/** "{"row":" — the prefix of every row line the bridge writes. */
const ROW_PREFIX = '{"row":';

export class RowStore {
  private chunks: string[] = [];
  private chunkOf = new Uint32Array(1024);
  private starts = new Uint32Array(1024);
  private ends = new Uint32Array(1024);
  private names: string[] = [];
  count = 0;

  setColumns(columns: ResultColumn[]): void {
    this.names = columns.map((c) => c.name);
  }

  /** Registers a chunk of text whose row lines will be added with `add`; returns its number. */
  addChunk(text: string): number {
    this.chunks.push(text);
    return this.chunks.length - 1;
  }

  /** A row line: chunk `chunk` from `start` (at the line's `{`) to `end` (at its `\n`). */
  add(chunk: number, start: number, end: number): void {
    if (this.count === this.starts.length) this.grow();
    this.chunkOf[this.count] = chunk;
    this.starts[this.count] = start;
    this.ends[this.count] = end;
    this.count++;
  }

  /**
   * Row `index`'s values in column order. Rows are objects today; arrays once
   * the bridge honours `"rowMode":"array"` (which the console asks for, so
   * columns with the same name stop hiding each other).
   */
  values(index: number): RowValue[] {
    const chunk = this.chunks[this.chunkOf[index] as number] as string;
    const start = (this.starts[index] as number) + ROW_PREFIX.length;
    // The line ends with the row's value, then "}" closing the line's object.
    const row = JSON.parse(chunk.slice(start, (this.ends[index] as number) - 1)) as
      | RowValue[]
      | Record<string, RowValue>;
    if (Array.isArray(row)) return row;
    return this.names.map((name) => row[name] ?? null);
  }

  private grow(): void {
    const size = this.starts.length * 2;
    for (const key of ["chunkOf", "starts", "ends"] as const) {
      const bigger = new Uint32Array(size);
      bigger.set(this[key]);
      this[key] = bigger;
    }
  }
}

export interface StreamEvents {
  onHeader(columns: ResultColumn[]): void;
  /** Called after each network chunk that added rows. */
  onRows(): void;
  onFooter(footer: ResultFooter): void;
  onError(error: QueryErrorBody): void;
}

/** Reads the NDJSON body to its end (or until the fetch is aborted, which rejects). */
export async function readResult(
  body: ReadableStream<Uint8Array>,
  rows: RowStore,
  events: StreamEvents,
): Promise<void> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let pending = "";
  for (;;) {
    const { done, value } = await reader.read();
    const text = pending + (done ? decoder.decode() : decoder.decode(value, { stream: true }));
    const lastNewline = text.lastIndexOf("\n");
    if (lastNewline === -1) {
      pending = text;
    } else {
      pending = text.slice(lastNewline + 1);
      readLines(text, lastNewline, rows, events);
    }
    if (done) break;
  }
  if (pending.trim() !== "") readLines(`${pending}\n`, pending.length, rows, events);
}

function readLines(text: string, lastNewline: number, rows: RowStore, events: StreamEvents): void {
  let chunk = -1;
  const before = rows.count;
  let start = 0;
  while (start <= lastNewline) {
    const end = text.indexOf("\n", start);
    if (text.startsWith(ROW_PREFIX, start)) {
      if (chunk === -1) chunk = rows.addChunk(text.slice(0, lastNewline + 1));
      rows.add(chunk, start, end);
    } else if (end > start) {
      other(JSON.parse(text.slice(start, end)), rows, events);
    }
    start = end + 1;
  }
  if (rows.count > before) events.onRows();
}

function other(line: Record<string, unknown>, rows: RowStore, events: StreamEvents): void {
  if (line.header) {
    const columns = (line.header as { columns: ResultColumn[] }).columns;
    rows.setColumns(columns);
    events.onHeader(columns);
  } else if (line.footer) {
    events.onFooter(line.footer as ResultFooter);
  } else if (line.error) {
    events.onError(line.error as QueryErrorBody);
  }
}
