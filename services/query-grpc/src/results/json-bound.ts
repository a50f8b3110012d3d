// The most bytes a result's rows can take as JSON text (max_result_bytes):
// an upper bound of any JSON encoding of PostgreSQL's text forms, so a
// client that buffers the result under the same limit (the bridge's buffered
// JSON) never finds it too large after query-grpc let it through, and so
// never after a write committed. Counted per row as a JSON object:
//
//   {"name":value,...},   each name as an escaped string, plus a colon and a comma
//   value                 its UTF-8 bytes as an escaped string (quotes, \" \\, \u00XX),
//                         at least 5 (null, true, false)
//   "{...}" (an array)    three times its bytes, plus its escapes: {t,f} becomes [true,false],
//                         {a,b} becomes ["a","b"]
import type { RawRow } from "./rows.js";

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what JSON escapes
const ESCAPED = /["\\\u0000-\u001f]/;

/** A string's bytes as a JSON string: UTF-8, its quotes and its escapes. */
export function jsonStringBytes(text: string): number {
  const { bytes, controls, quotes } = measure(text);
  return bytes + 2 + 5 * controls + quotes;
}

function measure(text: string): { bytes: number; controls: number; quotes: number } {
  const bytes = Buffer.byteLength(text, "utf8");
  let controls = 0;
  let quotes = 0;
  if (ESCAPED.test(text)) {
    for (let i = 0; i < text.length; i++) {
      const code = text.charCodeAt(i);
      if (code < 0x20) controls++;
      else if (code === 0x22 || code === 0x5c) quotes++;
    }
  }
  return { bytes, controls, quotes };
}

/** Counts rows against a limit; `add` is false once they passed it. */
export class JsonBound {
  private readonly perRow: number;
  private total = 0;

  constructor(
    names: readonly string[],
    private readonly limit: number,
  ) {
    // {} and the comma between rows, then per column its key, colon and comma.
    let perRow = 3;
    for (const name of names) perRow += jsonStringBytes(name) + 2;
    this.perRow = perRow;
  }

  get bytes(): number {
    return this.total;
  }

  add(rows: readonly RawRow[]): boolean {
    for (const row of rows) {
      let size = this.perRow;
      for (const value of row) size += valueBound(value);
      this.total += size;
    }
    return this.total <= this.limit;
  }
}

function valueBound(value: string | null): number {
  if (value === null) return 5;
  const { bytes, controls, quotes } = measure(value);
  // An element of k bytes and its comma become at most k + 2 quotes + a comma (t, becomes true,).
  const widest = value.charCodeAt(0) === 0x7b /* { */ ? 3 * bytes : bytes + quotes;
  return Math.max(widest + 2 + 5 * controls, 5);
}
