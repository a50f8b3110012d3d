// What the fuzz suites throw at querygate: generators (fast-check
// arbitraries) for hostile bodies, SQL, parameters and headers. Each input is
// a Case with a short description, because fast-check prints the
// counterexample it found — and a body nested 100,000 levels deep should be
// reported as "params: array nested 100000 deep", not as 200 KB of brackets.
// Sizes are drawn as numbers, so shrinking walks a depth or a length down to
// the smallest one that still fails.
import fc from "fast-check";

export interface Case<T> {
  value: T;
  label: string;
}

/** Attaches the description fast-check prints in place of the value. */
export function labelled<T>(value: T, label: string): Case<T> {
  return { value, label, [fc.toStringMethod]: () => label } as Case<T>;
}

const short = (text: string, max = 160) =>
  text.length > max ? `${text.slice(0, max)}… (${text.length} chars)` : text;
export const show = (value: unknown) => short(JSON.stringify(value) ?? String(value));

// ---- strings that parsers and encoders trip on ----

const ODD = [
  "\u0000",
  "\u202e",
  "\ufeff",
  "\u0085",
  "\u2028",
  "\uffff",
  "\ud83d\ude00",
  "e\u0301",
  "\u{10ffff}",
  "\\",
  '"',
  "'",
  "$1",
  "--",
  "/*",
  "\r\n",
];
const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c));

/** Unicode oddities, NUL, lone surrogates, quotes and comment starts, mixed with ordinary text. */
export const oddString = fc
  .array(fc.oneof(fc.constantFrom(...ODD), loneSurrogate, fc.string({ unit: "binary", maxLength: 8 })), {
    maxLength: 24,
  })
  .map((parts) => parts.join(""));

/** A long run of one character: under and over the bridge's 1 MiB body limit. */
export const hugeString = fc
  .tuple(fc.constantFrom("x", "é", "'", "\u0000", "😀"), fc.integer({ min: 10_000, max: 1_500_000 }))
  .map(([unit, count]) => labelled(unit.repeat(count), `${JSON.stringify(unit)} × ${count}`));

// ---- SQL ----

const NESTINGS: Record<string, (n: number) => string> = {
  parentheses: (n) => `select ${"(".repeat(n)}1${")".repeat(n)}`,
  "+1 chain": (n) => `select 1${"+1".repeat(n)}`,
  "unary minus": (n) => `select ${"- ".repeat(n)}1`,
  "array[": (n) => `select ${"array[".repeat(n)}1${"]".repeat(n)}`,
  "abs(": (n) => `select ${"abs(".repeat(n)}1${")".repeat(n)}`,
  "not ": (n) => `select ${"not ".repeat(n)}true`,
  "(select": (n) => `select ${"(select ".repeat(n)}1${")".repeat(n)}`,
  "and chain": (n) => `select true${" and true".repeat(n)}`,
};

/** Deeply nested or very long expressions: 1,000 to 20,000 levels or terms. */
export const deepSql = fc
  // No bias towards small numbers: the interesting depths are the large ones.
  .tuple(fc.constantFrom(...Object.keys(NESTINGS)), fc.noBias(fc.integer({ min: 1000, max: 20_000 })))
  .map(([form, n]) => labelled(NESTINGS[form]!(n), `${form} × ${n}`));

const TOKENS = `select from where with as union all values insert into order by returning explain analyze
  show begin commit rollback savepoint prepare execute listen notify limit table pg_class generate_series(1,3)
  count(*) ( ) [ ] , ; . * + - / % :: ::int ::text[] ::json = <> || $1 $2 $0 $99999 $2147483648 ' '' 'a'
  E'\\\\x' U&'\\0041' " "id" $$ $tag$ 1 -1 1e308 1e999 0x1F 9223372036854775808 null true -- /* */ \u0000 \\ 😀`
  .split(/\s+/)
  .filter(Boolean);

/** Statements made of SQL's own tokens in random order; nothing destructive is in the vocabulary. */
export const tokenSql = fc
  .tuple(fc.boolean(), fc.array(fc.constantFrom(...TOKENS), { minLength: 1, maxLength: 30 }))
  .map(([select, tokens]) => (select ? ["select", ...tokens] : tokens).join(" "));

/** Any of the above, for places that take SQL. */
export const anySql = fc.oneof(
  { arbitrary: tokenSql.map((sql) => labelled(sql, show(sql))), weight: 4 },
  { arbitrary: oddString.map((s) => labelled(`select '${s}'`, show(`select '${s}'`))), weight: 2 },
  { arbitrary: oddString.map((s) => labelled(s, show(s))), weight: 1 },
  { arbitrary: deepSql, weight: 1 },
);

// ---- JSON bodies ----

/** Values where the bridge expects a string, a number, a list: every JSON type, and odd numbers. */
const anyJson = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom(-1, 0.5, 1e300, -0, 2 ** 31, 2 ** 53 + 1, Number.MAX_SAFE_INTEGER),
);

export const queryShaped = fc.record(
  {
    query: fc.oneof(tokenSql, oddString, anyJson),
    params: fc.oneof(fc.array(anyJson, { maxLength: 5 }), anyJson),
    maxRows: anyJson,
    timeoutMs: anyJson,
    readOnly: anyJson,
    applicationTag: fc.oneof(oddString, anyJson),
  },
  { requiredKeys: [] },
);

export const batchShaped = fc.record(
  {
    statements: fc.oneof(fc.array(queryShaped, { maxLength: 4 }), anyJson),
    isolation: fc.oneof(fc.constantFrom("serializable", "read committed", "read uncommitted", ""), anyJson),
    readOnly: anyJson,
    deferrable: anyJson,
    timeoutMs: anyJson,
  },
  { requiredKeys: ["statements"] },
);

/** Any JSON value, or something shaped like a query or a batch with fields of every wrong type. */
export const jsonBody = fc
  .oneof(fc.jsonValue({ maxDepth: 4 }), queryShaped, batchShaped)
  .map((value) => labelled(JSON.stringify(value), show(value)));

const nest = (container: "array" | "object", depth: number, inner: string) =>
  container === "array"
    ? `${"[".repeat(depth)}${inner}${"]".repeat(depth)}`
    : `${'{"a":'.repeat(depth)}${inner}${"}".repeat(depth)}`;

const PLACES: Record<string, (deep: string) => string> = {
  "the whole body": (deep) => deep,
  query: (deep) => `{"query":${deep}}`,
  params: (deep) => `{"query":"select 1","params":${deep}}`,
  "one param": (deep) => `{"query":"select $1::text","params":[${deep}]}`,
  "an int[] param": (deep) => `{"query":"select $1::int[]","params":[${deep}]}`,
  maxRows: (deep) => `{"query":"select 1","maxRows":${deep}}`,
  statements: (deep) => `{"statements":${deep}}`,
  "a statement's params": (deep) => `{"statements":[{"query":"select $1::text","params":[${deep}]}]}`,
};

/** JSON nested 1 to 100,000 levels deep, in each place a body has. */
export const deepJsonBody = fc
  .tuple(
    fc.constantFrom(...Object.keys(PLACES)),
    fc.constantFrom("array" as const, "object" as const),
    fc.integer({ min: 1, max: 100_000 }),
  )
  .map(([place, container, depth]) =>
    labelled(PLACES[place]!(nest(container, depth, "1")), `${place}: ${container} nested ${depth} deep`),
  );

/** Odd text in every string a body carries: the SQL, inside a literal, a parameter, an identifier, the tag. */
export const oddTextBody = fc
  .tuple(
    fc.oneof(
      oddString.map((s) => labelled(s, show(s))),
      hugeString,
    ),
    fc.constantFrom("query", "literal", "param", "identifier", "applicationTag"),
  )
  .map(([text, place]) => {
    const body =
      place === "query"
        ? { query: text.value }
        : place === "literal"
          ? { query: `select '${text.value}' as v` }
          : place === "param"
            ? { query: "select $1::text as v", params: [text.value] }
            : place === "identifier"
              ? { query: `select 1 as "${text.value}"` }
              : { query: "select 1", applicationTag: text.value };
    return labelled(JSON.stringify(body), `${place}: ${text.label}`);
  });

const INVALID_UTF8 = [
  [0x80],
  [0xc0, 0x80],
  [0xc3],
  [0xed, 0xa0, 0x80],
  [0xed, 0xbf, 0xbf],
  [0xf4, 0x90, 0x80, 0x80],
  [0xf8, 0x88, 0x80, 0x80, 0x80],
  [0xfe],
  [0xff],
  [0xe2, 0x82],
  [0x00],
];

/** Bytes that are not valid UTF-8, inside a JSON string or as the whole body. */
export const invalidUtf8Body = fc
  .tuple(
    fc.array(
      fc.oneof(
        fc.constantFrom(...INVALID_UTF8),
        fc.uint8Array({ maxLength: 6 }).map((a) => [...a]),
      ),
      { minLength: 1, maxLength: 12 },
    ),
    fc.constantFrom("query", "literal", "param", "whole body"),
  )
  .map(([chunks, place]) => {
    const bytes = Buffer.from(chunks.flat());
    const [before, after] =
      place === "query"
        ? ['{"query":"', '"}']
        : place === "literal"
          ? ['{"query":"select \'', "'\"}"]
          : place === "param"
            ? ['{"query":"select $1::text","params":["', '"]}']
            : ["", ""];
    return labelled(
      Buffer.concat([Buffer.from(before), bytes, Buffer.from(after)]),
      `${place}: bytes ${bytes.toString("hex")}`,
    );
  });

function paramCase(placeholders: number, count: number) {
  const sql =
    placeholders === 0
      ? "select 1"
      : `select ${Array.from({ length: placeholders }, (_, i) => `$${i + 1}::text`).join(", ")}`;
  const params = Array.from({ length: count }, (_, i) => String(i));
  return labelled({ sql, params }, `${placeholders} placeholder(s), ${count} param(s)`);
}

/** $1…$k placeholders and a params array of any other length. */
export const wrongParamCount = fc
  .tuple(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 16 }))
  .filter(([k, n]) => k !== n)
  .map(([k, n]) => paramCase(k, n));

/** More parameters than the wire protocol can carry (its count is 16 bits). */
export const tooManyParams = fc
  .tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 65_536, max: 70_000 }))
  .map(([k, n]) => paramCase(k, n));

// ---- headers ----

/** Header values a client could send: odd ASCII, raw bytes above 0x7f, NUL, tabs, very long ones; never CR or LF. */
const headerValue = fc
  .oneof(
    fc.string({ unit: "binary-ascii", maxLength: 80 }).map((s) => Buffer.from(s, "latin1")),
    fc.uint8Array({ maxLength: 80 }).map((a) => Buffer.from(a)),
    fc.integer({ min: 100, max: 20_000 }).map((n) => Buffer.from("a".repeat(n))),
    fc
      .constantFrom(
        "",
        " ",
        "Bearer",
        "Bearer ",
        "Basic Zm9vOmJhcg==",
        "bearer x.y.z",
        "application/json; charset=latin1",
        "text/plain",
        "multipart/form-data; boundary=x",
        "application/json;;;",
        "application/x-www-form-urlencoded",
      )
      .map((s) => Buffer.from(s)),
  )
  .map((b) => Buffer.from(b.filter((byte) => byte !== 0x0d && byte !== 0x0a)));

export const oddHeaders = fc
  .record(
    { "x-request-id": headerValue, authorization: headerValue, "content-type": headerValue },
    { requiredKeys: [] },
  )
  .map((headers) => {
    const entries = Object.entries(headers) as Array<[string, Buffer]>;
    return labelled(
      entries,
      entries
        .map(([name, value]) => `${name}: ${short(JSON.stringify(value.toString("latin1")), 60)}`)
        .join("; ") || "no odd headers",
    );
  });
