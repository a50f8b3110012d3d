// Property-based fuzzing of what the streamed formats, the idempotency ledger
// and the request registry read from a request's headers: `Accept` (format,
// q-values, rows=array), the body's `rowMode`, `Idempotency-Key` and
// `x-request-id`, over HTTP and as gRPC metadata. Whatever a client writes
// there, the answer is a result or a 4xx (a clean status over gRPC), never a
// 5xx, and afterwards both services still answer `select 1` (property()
// checks that after every case).
import { Metadata, type ServiceError } from "@grpc/grpc-js";
import fc from "fast-check";
import pg from "pg";
import { suite } from "uvu";
import { ExecuteRequest, type QueryServiceClient } from "../../proto/gen/querygate/v1/query.js";
import { database } from "../helpers.js";
import { assertGrpc, assertHttp, property, rawPost } from "./check.js";
import { labelled } from "./inputs.js";

const t = suite("fuzzing the headers that choose a format and name a request");

const TYPES = [
  "application/json",
  "application/x-ndjson",
  "text/csv",
  "application/vnd.apache.arrow.stream",
  "*/*",
  "text/*",
  "application/*",
  "text/html",
];

/** Header bytes a client could send: never CR or LF (those would end the header, not fuzz it). */
const noLineBreaks = (b: Buffer) => Buffer.from(b.filter((byte) => byte !== 0x0d && byte !== 0x0a));

const mediaRange = fc
  .tuple(
    fc.constantFrom(...TYPES),
    fc.option(fc.constantFrom("q=0", "q=1", "q=0.5", "q=1.001", "q=-1", "q=x", "q=", "rows=array", "rows=x")),
    fc.option(fc.constantFrom("rows=array", "charset=utf-8", "rows", "=", ";;")),
  )
  .map(([type, a, b]) => [type, a, b].filter((part) => part !== null).join("; "));

const acceptValue = fc.oneof(
  fc.array(mediaRange, { minLength: 1, maxLength: 4 }).map((ranges) => Buffer.from(ranges.join(", "))),
  fc.string({ unit: "binary-ascii", maxLength: 120 }).map((s) => Buffer.from(s, "latin1")),
  fc.uint8Array({ maxLength: 80 }).map((a) => Buffer.from(a)),
  fc.integer({ min: 1000, max: 20_000 }).map((n) => Buffer.from(`text/csv;${"q=1;".repeat(n / 4)}`)),
  fc.constant(Buffer.from("")),
);

const rowMode = fc.option(
  fc.oneof(
    fc.constantFrom("object", "array", "ARRAY", "", " array", "arrays", "object\u0000"),
    fc.jsonValue(),
  ),
  { nil: undefined },
);

/** Results of each shape a format has to write: several columns, none, no rows, an error before and after the first row. */
const formatSql = fc.constantFrom(
  "select g, g::text as t, null::int as n from generate_series(1, 3) g",
  "select 1 where false",
  "select",
  "select 1 / 0",
  "select 1 / (g - 250) from generate_series(1, 300) g",
  "select '{1,2}'::int[] as a, 'NaN'::numeric as x, now() as at",
);

const formatCase = fc
  .tuple(acceptValue, rowMode, formatSql)
  .map(([accept, mode, sql]) =>
    labelled(
      { accept: noLineBreaks(accept), body: JSON.stringify({ query: sql, rowMode: mode }) },
      `accept ${JSON.stringify(noLineBreaks(accept).toString("latin1").slice(0, 80))}, body ${JSON.stringify({ query: sql, rowMode: mode }).slice(0, 120)}`,
    ),
  );

t("random Accept headers and rowMode values are answered with a result or a 4xx", async () => {
  await property(formatCase, 120, async (c, { bridgePort }) => {
    const headers: Array<[string, string | Buffer]> = [
      ["content-type", "application/json"],
      ["accept", c.value.accept],
    ];
    assertHttp(await rawPost(bridgePort, c.value.body, headers), "mistake-or-valid");
  });
});

/** Keys and ids: valid ones (so the ledger and the registry really run), empty, long, non-ASCII, raw bytes. */
const idValue = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9._:-]{1,44}$/).map((s) => Buffer.from(s)),
  fc.string({ unit: "binary-ascii", maxLength: 300 }).map((s) => Buffer.from(s, "latin1")),
  fc.string({ unit: "grapheme", maxLength: 40 }).map((s) => Buffer.from(s, "utf8")),
  fc.uint8Array({ maxLength: 60 }).map((a) => Buffer.from(a)),
  fc.integer({ min: 45, max: 20_000 }).map((n) => Buffer.from("k".repeat(n))),
  fc.constantFrom("", " ", "a", "soak-1").map((s) => Buffer.from(s)),
);

const KEYED = "fuzz_keyed_writes";
/** A write (so the key is claimed and recorded) and a read, with the value varied so one key meets other bodies. */
const keyedBody = fc
  .tuple(fc.boolean(), fc.integer({ min: 1, max: 3 }))
  .map(([write, v]) =>
    JSON.stringify(
      write
        ? { query: `insert into ${KEYED} (v) values ($1) returning v`, params: [v] }
        : { query: "select 1" },
    ),
  );

const keyCase = fc
  .tuple(
    fc.record({ "idempotency-key": idValue, "x-request-id": idValue }, { requiredKeys: [] }),
    keyedBody,
    fc.boolean(),
  )
  .map(([headers, body, twice]) => {
    const entries = Object.entries(headers).map(([n, v]) => [n, noLineBreaks(v)] as [string, Buffer]);
    const shown = entries.map(([n, v]) => `${n}: ${JSON.stringify(v.toString("latin1").slice(0, 60))}`);
    return labelled(
      { entries, body, twice },
      `${shown.join("; ") || "no headers"}; ${body}${twice ? " (twice)" : ""}`,
    );
  });

async function keyedTable(): Promise<void> {
  const client = new pg.Client((await database()).url);
  await client.connect();
  try {
    await client.query(`create table if not exists ${KEYED} (v int not null)`);
  } finally {
    await client.end();
  }
}

t(
  "random Idempotency-Key and x-request-id values (long, non-ASCII, empty) are answered with a result or a 4xx, sent once or twice",
  async () => {
    await keyedTable();
    await property(keyCase, 120, async (c, { bridgePort }) => {
      const headers: Array<[string, string | Buffer]> = [
        ["content-type", "application/json"],
        ...c.value.entries,
      ];
      assertHttp(await rawPost(bridgePort, c.value.body, headers), "mistake-or-valid");
      if (c.value.twice) assertHttp(await rawPost(bridgePort, c.value.body, headers), "mistake-or-valid");
    });
  },
);

/** grpc-js itself refuses metadata outside printable ASCII before sending, so over gRPC only those reach the server. */
const printable = fc.oneof(
  fc.stringMatching(/^[\x20-\x7e]{0,300}$/),
  fc.integer({ min: 256, max: 8000 }).map((n) => "k".repeat(n)),
  fc.constantFrom("", " ", "a"),
);

function executeWith(client: QueryServiceClient, sql: string, metadata: Metadata) {
  return new Promise<{ code: number; details: string }>((resolve) => {
    const call = client.execute(ExecuteRequest.fromPartial({ sql }), metadata, {
      deadline: Date.now() + 10_000,
    });
    call.on("data", () => {});
    call.on("error", (error: ServiceError) => resolve({ code: error.code, details: error.details }));
    call.on("end", () => resolve({ code: 0, details: "" }));
  });
}

t(
  "random idempotency-key and x-request-id metadata over gRPC is answered OK or with a clean status",
  async () => {
    await keyedTable();
    const grpcCase = fc
      .tuple(printable, printable, fc.boolean())
      .map(([key, id, write]) =>
        labelled(
          { key, id, write },
          `key ${JSON.stringify(key.slice(0, 60))}, id ${JSON.stringify(id.slice(0, 60))}`,
        ),
      );
    await property(grpcCase, 60, async (c, { client }) => {
      const metadata = new Metadata();
      metadata.set("idempotency-key", c.value.key);
      metadata.set("x-request-id", c.value.id);
      const sql = c.value.write ? `insert into ${KEYED} (v) values (7)` : "select 1";
      assertGrpc(await executeWith(client, sql, metadata), "mistake-or-valid");
    });
  },
);

t.run();
