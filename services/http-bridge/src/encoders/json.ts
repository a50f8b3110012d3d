// PostgreSQL text form → JSON, losslessly, chosen per column by type OID.
// Encoders return JSON text so rows are assembled without intermediate objects
// and json/jsonb values pass through verbatim (no float rounding on re-parse).
//
//   bool                      → true / false
//   int2, int4, oid           → number
//   float4, float8            → number when finite, else the string "NaN" / "Infinity" / "-Infinity"
//   int8, numeric, money      → string (all digits kept)
//   json, jsonb               → the JSON value itself
//   arrays of the types above → JSON arrays (nested for multi-dimensional), elements encoded as above
//   everything else           → PostgreSQL's text form as a string (bytea "\x…", timestamps ISO
//                               8601, intervals, uuid, ranges, enums, domains of text types, …)
import { parse as parseArray } from "postgres-array";

export type Encoder = (text: string) => string;

// A value that needs no escaping (nearly all of them) is quoted as it is:
// the test is cheaper than JSON.stringify (42 against 70 ns for a short
// value; 4 of the bench's 5 columns are strings), and for a value of many
// megabytes JSON.stringify would make one more full copy of it. A surrogate,
// paired or not, goes to JSON.stringify, which escapes a lone one.
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what JSON must escape
const needsEscape = /["\\\u0000-\u001f\ud800-\udfff]/;
const asString: Encoder = (text) => (needsEscape.test(text) ? JSON.stringify(text) : `"${text}"`);
const asNumber: Encoder = (text) => text;
const asBool: Encoder = (text) => (text === "t" ? "true" : "false");
const asFloat: Encoder = (text) =>
  Number.isFinite(Number(text)) ? normaliseFloat(text) : JSON.stringify(text);
// JSON text may hold raw newlines between tokens (never inside strings): flatten
// them so one value stays on one line in NDJSON.
const asJson: Encoder = (text) =>
  text.includes("\n") || text.includes("\r") ? text.replace(/[\r\n]+/g, " ") : text;

/** PostgreSQL prints floats like "1e+100" that JSON accepts; only fix forms JSON rejects. */
function normaliseFloat(text: string): string {
  return text.startsWith(".") || text.startsWith("-.") ? String(Number(text)) : text;
}

const scalar = new Map<number, Encoder>([
  [16, asBool],
  [21, asNumber],
  [23, asNumber],
  [26, asNumber],
  [700, asFloat],
  [701, asFloat],
  [114, asJson],
  [3802, asJson],
]);

/** Array type OID → element type OID, for the built-in arrays we turn into JSON arrays. */
const arrayElement = new Map<number, number>([
  [1000, 16], // bool[]
  [1005, 21], // int2[]
  [1007, 23], // int4[]
  [1028, 26], // oid[]
  [1016, 20], // int8[]
  [1021, 700], // float4[]
  [1022, 701], // float8[]
  [1231, 1700], // numeric[]
  [1009, 25], // text[]
  [1015, 1043], // varchar[]
  [1014, 1042], // bpchar[]
  [199, 114], // json[]
  [3807, 3802], // jsonb[]
  [2951, 2950], // uuid[]
  [1182, 1082], // date[]
  [1115, 1114], // timestamp[]
  [1185, 1184], // timestamptz[]
]);

export function encoderFor(typeOid: number): Encoder {
  const known = scalar.get(typeOid);
  if (known) return known;
  const element = arrayElement.get(typeOid);
  if (element !== undefined) return arrayEncoder(encoderFor(element));
  return asString;
}

function arrayEncoder(element: Encoder): Encoder {
  type Nested = string | null | Nested[];
  const encode = (value: Nested): string =>
    value === null ? "null" : Array.isArray(value) ? `[${value.map(encode).join(",")}]` : element(value);
  return (text) => {
    // A non-default lower bound ("[0:1]={1,2}") has no JSON equivalent: keep the text form.
    if (text.startsWith("[")) return JSON.stringify(text);
    return encode(parseArray(text) as Nested);
  };
}

export interface RowEncoder {
  /** JSON object text for one row, keys in column order. */
  object(values: readonly string[], nullColumns: readonly number[]): string;
  /** JSON array text for one row, values in column order; duplicate names keep every column. */
  array(values: readonly string[], nullColumns: readonly number[]): string;
}

export function rowEncoder(columns: ReadonlyArray<{ name: string; typeOid: number }>): RowEncoder {
  // With duplicate column names the last one wins, as it would in a JS object.
  const lastIndex = new Map(columns.map((c, i) => [c.name, i]));
  const parts = columns
    .map((c, i) => ({ index: i, key: `${JSON.stringify(c.name)}:`, encode: encoderFor(c.typeOid) }))
    .filter((p) => lastIndex.get(columns[p.index]!.name) === p.index);
  const encoders = columns.map((c) => encoderFor(c.typeOid));
  return {
    array(values, nullColumns) {
      let out = "[";
      for (let i = 0; i < encoders.length; i++) {
        if (i > 0) out += ",";
        out += nullColumns.length > 0 && nullColumns.includes(i) ? "null" : encoders[i]!(values[i] ?? "");
      }
      return `${out}]`;
    },
    object(values, nullColumns) {
      let out = "{";
      for (let k = 0; k < parts.length; k++) {
        const part = parts[k]!;
        if (k > 0) out += ",";
        out += part.key;
        out +=
          nullColumns.length > 0 && nullColumns.includes(part.index)
            ? "null"
            : part.encode(values[part.index] ?? "");
      }
      return `${out}}`;
    },
  };
}
