// The soak's mix: what production sends, in rough proportion — small
// queries, 10k-row streams, batches, sessions, inserts whose fate is checked,
// callers who give up mid-statement, and callers who send nonsense — over the
// bridge and straight over gRPC. The weights favour the cheap, common
// requests so the process sees tens of thousands of them, with enough of the
// rare ones (cancels, bad input) that each shows up hundreds of times in a
// two-minute run.
import { type ExecuteResult, executeBatch, session } from "./clients.js";
import { between, type Kind, ndjsonProblem, overGrpc, overHttp, succeeded, writeOutcome } from "./mix.js";

export const ITEMS = 10_000;
export const LOOKUP = "select id, label from soak_items where id = $1";
export const TEN_K = "select g, md5(g::text) as h from generate_series(1, 10000) g";
/**
 * Far more rows than anyone reads: the client leaves after the first chunk.
 * The series is in the select list, so PostgreSQL makes rows as they are read;
 * in FROM it materialised all 5M (1 GB of temp file) before the first row,
 * and a dozen of these at once took both cores, leaving the pool's callers
 * to time out as "overloaded".
 */
export const ENDLESS = "select g, repeat('x', 200) as pad from (select generate_series(1, 5000000) as g) s";
/** Outlives every give-up; STATEMENT_TIMEOUT_MS (6 s) ends it if querygate does not. */
export const SLEEP = "select pg_sleep(10)";
/** The kind whose caller stops reading its NDJSON answer mid-stream. */
export const STOPS_READING = "stops reading mid-stream";
export const INSERT = "insert into soak_writes (token, via) values ($1, $2)";
const NDJSON = { accept: "application/x-ndjson" };

export const json = (value: unknown) => JSON.stringify(value);
const deepPlus = (terms: number) => `select 1${"+1".repeat(terms)}`;
const deepParens = (depth: number) => `select ${"(".repeat(depth)}1${")".repeat(depth)}`;
const text = (...values: string[]) => values.map((textValue) => ({ textValue }));

export const rowsProblem = (expected: number) => (r: ExecuteResult) =>
  succeeded(r.ending) && (r.rows !== expected || r.footerRowCount !== expected)
    ? `${r.rows} rows (footer ${r.footerRowCount}), expected ${expected}`
    : undefined;

const valid: Kind[] = [
  overHttp("select", 14, "valid", (ctx) => {
    const id = between(ctx, 1, ITEMS);
    return {
      body: json({ query: LOOKUP, params: [id] }),
      check: (b) => (b.includes(`"id":${id},`) ? undefined : `wrong row: ${b.slice(0, 120)}`),
    };
  }),
  overGrpc("select", 10, "valid", (ctx) => ({
    request: { sql: LOOKUP, params: [{ intValue: String(between(ctx, 1, ITEMS)) }] },
    check: rowsProblem(1),
  })),
  overHttp("ndjson 10k", 4, "valid", () => ({
    body: json({ query: TEN_K }),
    headers: NDJSON,
    check: (b) => ndjsonProblem(b, 10_000),
  })),
  overHttp("json 10k", 2, "valid", () => ({
    body: json({ query: TEN_K }),
    check: (b) => (b.endsWith('"rowCount":10000}') ? undefined : "buffered 10k result incomplete"),
  })),
  overGrpc("stream 10k", 4, "valid", () => ({ request: { sql: TEN_K }, check: rowsProblem(10_000) })),
  overHttp("insert", 6, "valid", (_, id) => ({
    body: json({ query: INSERT, params: [id, "http"] }),
    writes: true,
  })),
  overGrpc("insert", 4, "valid", (_, id) => ({
    request: { sql: INSERT, params: text(id, "grpc") },
    writes: true,
  })),
  overHttp("huge literal", 1, "valid", (ctx) => {
    const length = between(ctx, 100_000, 900_000);
    return {
      body: json({ query: `select length('${"x".repeat(length)}') as n` }),
      check: (b) => (b.includes(`"n":${length}`) ? undefined : "wrong length back"),
    };
  }),
  overHttp("batch", 3, "valid", (ctx, id) => {
    const statements = [
      { query: INSERT, params: [id, "http batch"] },
      { query: "select count(*) from soak_items where id <= $1", params: [between(ctx, 1, ITEMS)] },
    ];
    return {
      body: json({ isolation: "repeatable read", statements }),
      writes: true,
      check: (b) => (b.startsWith('{"results":[{') ? undefined : "batch without results"),
    };
  }),
  {
    name: "grpc batch",
    weight: 3,
    expect: "valid",
    run: async (ctx, requestId) => {
      const statements = [
        { sql: INSERT, params: text(requestId, "grpc batch") },
        { sql: LOOKUP, params: [{ intValue: String(between(ctx, 1, ITEMS)) }] },
      ];
      const r = await executeBatch(ctx.grpc, { statements }, requestId);
      ctx.wrote(requestId, writeOutcome(r.ending));
      return {
        ending: r.ending,
        problem:
          r.response && r.response.results.length !== 2 ? `${r.response.results.length} results` : undefined,
      };
    },
  },
  {
    name: "grpc session commit",
    weight: 3,
    expect: "valid",
    run: async (ctx, requestId) => {
      const statements = [
        { sql: INSERT, params: [requestId, "session"] },
        { sql: "select token from soak_writes where token = $1", params: [requestId] },
      ];
      const r = await session(ctx.grpc, statements, "commit", requestId);
      const notCommitted = succeeded(r.ending) && r.committed !== true;
      ctx.wrote(requestId, notCommitted ? "failed" : writeOutcome(r.ending));
      return { ending: r.ending, problem: notCommitted ? "commit answered OK but not committed" : undefined };
    },
  },
  {
    name: "grpc session rollback",
    weight: 2,
    expect: "valid",
    run: async (ctx, requestId) => {
      const r = await session(
        ctx.grpc,
        [{ sql: INSERT, params: [requestId, "session rollback"] }],
        "rollback",
        requestId,
      );
      if (r.ending.kind === "grpc") ctx.wrote(requestId, "failed"); // rolled back either way: must be absent
      return { ending: r.ending, problem: r.committed === true ? "rollback reported committed" : undefined };
    },
  },
];

const giveUps: Kind[] = [
  overHttp("give up on pg_sleep", 2, "give-up", (ctx) => ({
    body: json({ query: SLEEP }),
    giveUpAfterMs: between(ctx, 100, 500),
  })),
  overGrpc("cancel pg_sleep", 2, "give-up", (ctx) => ({
    request: { sql: SLEEP },
    options: { cancelAfterMs: between(ctx, 100, 500) },
  })),
  overGrpc("deadline on pg_sleep", 1, "give-up", (ctx) => ({
    request: { sql: SLEEP },
    options: { deadlineMs: between(ctx, 100, 500) },
    check: (r) => (succeeded(r.ending) ? "pg_sleep(10) answered OK within its deadline" : undefined),
  })),
  overHttp("disconnect mid-stream", 2, "give-up", () => ({
    body: json({ query: ENDLESS }),
    headers: NDJSON,
    giveUpOnFirstChunk: true,
  })),
  // The bridge cuts it after SEND_TIMEOUT_MS (SOAK_BRIDGE_ENV); the verdict
  // counts the cuts, and the zombie check sees its statement stop. Under the
  // soak's load one stream took 7 s to fill the kernel's buffers (5 MB at
  // 0.7 MB/s): hence wide rows, a 20 s pause and a statement timeout past it.
  overHttp(STOPS_READING, 0.15, "give-up", () => ({
    body: json({
      query: "select g, repeat('x', 20000) as pad from generate_series(1, 1000000) g",
      timeoutMs: 28_000,
    }),
    headers: NDJSON,
    stopReadingForMs: 20_000,
  })),
  overGrpc("cancel mid-stream", 1, "give-up", () => ({
    request: { sql: ENDLESS },
    options: { cancelOnFirstRows: true },
  })),
];

const mistakes: Kind[] = [
  overHttp("syntax error", 2, "mistake", () => ({ body: json({ query: "selec 1 from" }) })),
  // RETURNING rows past the bridge's buffered JSON limit (SOAK_BRIDGE_ENV): a
  // 413 that committed nothing, whether its one row is the whole result or
  // the limit is passed mid-stream. The bridge's own check once answered 413
  // after the COMMIT.
  overHttp("insert returning one row over the JSON limit", 0.5, "mistake", (_, id) => ({
    body: json({
      query: `${INSERT} returning token, repeat('x', 1100000) as pad`,
      params: [id, "over limit"],
    }),
    writes: true,
  })),
  overHttp("insert returning 3,000 rows over the JSON limit", 0.5, "mistake", (_, id) => ({
    body: json({
      query:
        "insert into soak_writes (token, via) select case g when 1 then $1 else $1 || '-' || g end, 'over limit' from generate_series(1, 3000) g returning token, repeat('x', 400) as pad",
      params: [id],
    }),
    writes: true,
  })),
  overGrpc("syntax error", 1, "mistake", () => ({ request: { sql: "select from where" } })),
  overHttp("wrong param count", 1, "mistake", () => ({
    body: json({ query: "select $1::int", params: [1, 2] }),
  })),
  overGrpc("wrong param count", 1, "mistake", () => ({
    request: { sql: "select $1::int + $2::int", params: text("1") },
  })),
  // 1,000 to 20,000 levels: the shallow end is valid SQL (a result is fine), the deep end is past the parser's limits.
  overHttp("deep parentheses", 1, "mistake", (ctx) => ({
    body: json({ query: deepParens(between(ctx, 1000, 20_000)) }),
  })),
  overHttp("deep +1 chain", 1, "mistake", (ctx) => ({
    body: json({ query: deepPlus(between(ctx, 1000, 20_000)) }),
  })),
  overGrpc("deep +1 chain", 1, "mistake", (ctx) => ({
    request: { sql: deepPlus(between(ctx, 1000, 20_000)) },
  })),
  // Past the parser's token budget (100,000): refused unparsed; parsed, each took seconds and hundreds of MB.
  overHttp("wide statement", 0.5, "mistake", (ctx) => ({
    body: json({ query: `select ${"1,".repeat(between(ctx, 120_000, 450_000))}1` }),
  })),
  overGrpc("wide statement", 0.5, "mistake", (ctx) => ({
    request: { sql: `select ${"1,".repeat(between(ctx, 120_000, 1_500_000))}1` },
  })),
  overHttp("NUL byte", 1, "mistake", () => ({ body: json({ query: "select 1\u0000" }) })),
  overGrpc("NUL byte", 1, "mistake", () => ({ request: { sql: "select 'a\u0000b'" } })),
  overHttp("invalid JSON", 1, "mistake", () => ({ body: '{"query": "select 1",' })),
  overHttp("wrong field type", 1, "mistake", () => ({ body: json({ query: 42, params: "x" }) })),
  overHttp("deep JSON", 1, "mistake", (ctx) => {
    const depth = between(ctx, 10_000, 100_000);
    return { body: `{"query":"select $1::text","params":[${"[".repeat(depth)}1${"]".repeat(depth)}]}` };
  }),
  // PostgreSQL quotes the whole statement in this error: its trailer once outgrew what clients accept.
  overHttp("huge unterminated literal", 0.5, "mistake", (ctx) => ({
    // An even run of quotes after the opening one: every pair is an escaped quote, so the literal never ends.
    body: json({ query: `select '${"''".repeat(between(ctx, 50_000, 150_000))} as v` }),
  })),
  overGrpc("bytes that are not UTF-8 as text", 0.5, "mistake", () => ({
    request: { sql: "select $1::text", params: [{ bytesValue: Buffer.from([0xff]) }] },
  })),
  overHttp("lone surrogate in a parameter", 0.5, "mistake", () => ({
    body: '{"query":"select $1::text","params":["\\ud800"]}',
  })),
  overHttp("too many parameters", 0.5, "mistake", () => ({
    body: json({ query: "select $1::int", params: Array.from({ length: 65_536 }, () => 1) }),
  })),
  overHttp("oversized body", 1, "mistake", () => ({
    body: json({ query: `select '${"x".repeat(1_100_000)}'` }),
  })),
  overGrpc("oversized request", 0.5, "mistake", () => ({
    request: { sql: `select '${"x".repeat(4_300_000)}'` },
  })),
  overHttp("batch that fails", 2, "mistake", (_, id) => ({
    body: json({
      statements: [
        { query: INSERT, params: [id, "failing batch"] },
        { query: "select 1 / (id - id) from soak_items where id = 1" },
      ],
    }),
    writes: true,
    check: () => "a batch dividing by zero answered 200",
  })),
];

export const KINDS: readonly Kind[] = [...valid, ...giveUps, ...mistakes];
