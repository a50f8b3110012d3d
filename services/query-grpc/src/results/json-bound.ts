// The most bytes a result's rows can take as JSON text (max_result_bytes):
// an upper bound of any JSON encoding of PostgreSQL's text forms, so a
// client that buffers the result under the same limit (the bridge's buffered
// JSON) never finds it too large after query-grpc let it through, and so
// never after a write committed. Counted per row as a JSON object, or as an
// array for a client that buffers arrays (max_result_bytes_as_arrays):
//
//   {"name":value,...},   each name as an escaped string, plus a colon and a comma
//   [value,...],          a comma per value
//   value                 its UTF-8 bytes as an escaped string (quotes, \" \\, \u00XX),
//                         at least 5 (null, true, false)
//   "{...}" (an array)    three times its bytes, plus its escapes: {t,f} becomes [true,false],
//                         {a,b} becomes ["a","b"]
import type { RawRow } from "./rows.js";

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what JSON escapes
const ESCAPED = /["\\\u0000-\u001f]/;

/** A string's bytes as a JSON string: UTF-8, its quotes and its escapes. */
function jsonStringBytes(text: string): number {
  return Buffer.byteLength(text, "utf8") + 2 + escapeBytes(text, true);
}

/** What escaping adds: 5 per control character (\u00XX), and 1 per quote or backslash if `quotes`. */
function escapeBytes(text: string, quotes: boolean): number {
  if (!ESCAPED.test(text)) return 0;
  let extra = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x20) extra += 5;
    else if (quotes && (code === 0x22 || code === 0x5c)) extra += 1;
  }
  return extra;
}

/** Counts rows against a limit; `add` is false once they passed it. */
export class JsonBound {
  private readonly perRow: number;
  private total = 0;

  constructor(
    names: readonly string[],
    private readonly limit: number,
    asArrays = false,
  ) {
    // {} or [] and the comma between rows, then per column its comma, and for an object its key and colon.
    let perRow = 3;
    for (const name of names) perRow += asArrays ? 1 : jsonStringBytes(name) + 2;
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
  const bytes = Buffer.byteLength(value, "utf8");
  // An element of k bytes and its comma become at most k + 2 quotes + a comma (t, becomes true,).
  const isArray = value.charCodeAt(0) === 0x7b; /* { */
  const widest = (isArray ? 3 * bytes : bytes) + 2 + escapeBytes(value, !isArray);
  return Math.max(widest, 5);
}
