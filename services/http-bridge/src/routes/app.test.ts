// POST /query end to end: HTTP → bridge → query-grpc → PostgreSQL and back,
// with real servers on loopback. What the original tool's users send must keep
// working; errors keep PostgreSQL's fields; JSON values keep every digit.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  adminClient,
  eventually,
  type JsonBody,
  postQuery,
  runningStatements,
  startBridgeFor,
  startStack,
} from "../../../../test/helpers.js";

const t = suite("http-bridge POST /query");
let url: string;
let grpcTarget: string;
let admin: Awaited<ReturnType<typeof adminClient>>;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

t.before(async () => {
  const stack = await startStack();
  url = stack.url;
  grpcTarget = stack.grpc.target;
  admin = await adminClient();
});

/** POST /query with exactly these headers (fetch adds text/plain to a string body; bytes get none). */
function rawPost(body: string, headers: Record<string, string> = {}) {
  return fetch(`${url}/query`, { method: "POST", headers, body: new TextEncoder().encode(body) });
}

t("GET / answers 200 so the original tool's liveness check keeps working", async () => {
  const response = await fetch(`${url}/`);
  assert.is(response.status, 200);
  assert.is(((await response.json()) as JsonBody).status, "ok");
});

t("an unknown path is a 404 with a JSON error body", async () => {
  const response = await fetch(`${url}/nowhere`);
  assert.is(response.status, 404);
  assert.match(response.headers.get("content-type") ?? "", /application\/json/);
  const body: JsonBody = await response.json();
  assert.is(body.error.code, "not_found");
  assert.match(body.error.message, /\/nowhere/);
});

t("a body that is not JSON is a 400 invalid_json", async () => {
  const response = await postQuery(url, '{"query": "select 1"');
  assert.is(response.status, 400);
  assert.is(response.body.error.code, "invalid_json");
});

t("a body without query is a 400 invalid_request that names the field", async () => {
  const response = await postQuery(url, { params: [1] });
  assert.is(response.status, 400);
  assert.is(response.body.error.code, "invalid_request");
  assert.match(response.body.error.message, /query/);
});

t("a body over MAX_BODY_BYTES is a 413 and the bridge runs nothing", async () => {
  const small = await startBridgeFor(grpcTarget, { MAX_BODY_BYTES: "2048" });
  const comment = "x".repeat(4096);
  const response = await postQuery(
    small.url,
    { query: `select 1 /* ${comment} */` },
    { "x-request-id": "too-big-1" },
  );
  assert.is(response.status, 413);
  assert.is(response.body.error.code, "body_too_large");
  assert.is(response.headers.get("x-request-id"), "too-big-1");
  const fits = await postQuery(small.url, { query: "select 1 as one" });
  assert.is(fits.status, 200);
  assert.equal(fits.body.result, [{ one: 1 }]);
});

t("a JSON body is read with no content-type, application/json, or curl -d's form type", async () => {
  const contentTypes: Array<Record<string, string>> = [
    {},
    { "content-type": "application/json" },
    { "content-type": "application/json; charset=utf-8" },
    { "content-type": "application/x-www-form-urlencoded" },
  ];
  for (const headers of contentTypes) {
    const response = await rawPost(JSON.stringify({ query: "select 2 as two" }), headers);
    assert.is(response.status, 200, `status with ${JSON.stringify(headers)}`);
    assert.equal(((await response.json()) as JsonBody).result, [{ two: 2 }]);
  }
});

t("another explicit content-type such as text/xml is a 415", async () => {
  for (const contentType of ["text/xml", "text/plain"]) {
    const response = await rawPost(JSON.stringify({ query: "select 1" }), { "content-type": contentType });
    assert.is(response.status, 415, contentType);
    assert.is(((await response.json()) as JsonBody).error.code, "unsupported_media_type");
  }
});

t("a syntax error is a 400 carrying SQLSTATE 42601 and the error's position", async () => {
  const response = await postQuery(url, { query: "select 1 fro m" });
  assert.is(response.status, 400);
  assert.is(response.body.error.code, "42601");
  assert.is(response.body.error.grpcStatus, "INVALID_ARGUMENT");
  assert.is(response.body.error.position, 14);
});

t("a unique violation is a 409 carrying SQLSTATE 23505 and PostgreSQL's detail", async () => {
  const created = await postQuery(url, { query: "create table bridge_unique (id int primary key)" });
  assert.is(created.status, 200);
  assert.is(created.body.result, "OK");
  assert.is(created.body.command, "CREATE TABLE");
  assert.is((await postQuery(url, { query: "insert into bridge_unique values (1)" })).status, 200);
  const duplicate = await postQuery(url, { query: "insert into bridge_unique values (1)" });
  assert.is(duplicate.status, 409);
  assert.is(duplicate.body.error.code, "23505");
  assert.match(duplicate.body.error.detail, /\(id\)=\(1\) already exists/);
});

t("maxRows returns that many rows and says truncated", async () => {
  const response = await postQuery(url, { query: "select g from generate_series(1, 10) g", maxRows: 3 });
  assert.is(response.status, 200);
  assert.equal(response.body.result, [{ g: 1 }, { g: 2 }, { g: 3 }]);
  assert.is(response.body.truncated, true);
  assert.is(response.body.rowCount, 3);
});

t("a result of exactly maxRows rows is not marked truncated", async () => {
  const whole = await postQuery(url, { query: "select g from generate_series(1, 3) g", maxRows: 3 });
  assert.is(whole.body.result.length, 3);
  assert.is(whole.body.truncated, undefined);
});

t("parameters of every JSON type reach PostgreSQL as the values they are", async () => {
  const response = await postQuery(url, {
    query: `select $1::text || '!' as s, $2::int + 1 as i, $3::float8 * 2 as f, not $4::bool as b,
      $5::text is null as n, $6::text[] as ta, ($7::int[])[2][1] as nested, $8::bool[] as ba,
      $9::jsonb -> 'k' as o, $10::json ->> 'q' as q, $11::int8 as big`,
    params: [
      'it\'s "quoted"',
      41,
      0.25,
      false,
      null,
      ['a"b', "c,d", "back\\slash", null, "NULL", ""],
      [
        [1, 2],
        [3, 4],
      ],
      [true, false],
      { k: [1, "two", null] },
      { q: "é\n" },
      "9223372036854775807",
    ],
  });
  assert.is(response.status, 200, response.text);
  assert.equal(response.body.result, [
    {
      s: 'it\'s "quoted"!',
      i: 42,
      f: 0.5,
      b: true,
      n: true,
      ta: ['a"b', "c,d", "back\\slash", null, "NULL", ""],
      nested: 3,
      ba: [true, false],
      o: [1, "two", null],
      q: "é\n",
      big: "9223372036854775807",
    },
  ]);
});

t(
  "untyped parameters are sent as text, integer, float and boolean literals PostgreSQL can cast",
  async () => {
    const response = await postQuery(url, {
      query: "select $1 = '42' as int_text, $2::numeric = 1.5 as float_text, $3::text as bool_text",
      params: [42, 1.5, true],
    });
    assert.is(response.status, 200, response.text);
    assert.equal(response.body.result, [{ int_text: true, float_text: true, bool_text: "true" }]);
    // Parameters carry no type OID, so a statement that fixes none for $1 cannot run.
    const unresolved = await postQuery(url, { query: "select pg_typeof($1)", params: [1] });
    assert.is(unresolved.status, 400);
    assert.is(unresolved.body.error.code, "42P18");
  },
);

t("one row of every common type becomes exactly the JSON json-codec.ts documents", async () => {
  await admin.query("create type bridge_mood as enum ('sad', 'happy')");
  await admin.query("create domain bridge_small_int as int check (value < 100)");
  const response = await postQuery(url, {
    query: `select 1::int2 as i2, 2147483647::int4 as i4, 9223372036854775807::int8 as i8,
      12345678901234567890.000000000001::numeric as num, 0.1::float8 as f8, 1e300::float8 as f8big,
      'NaN'::float8 as nan, 'Infinity'::float8 as inf, '-Infinity'::float8 as ninf,
      true as t, false as f, ''::text as empty, null::int4 as nothing, '\\x00ff10'::bytea as bin,
      'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid as id,
      '2024-02-29 13:14:15.123456+02'::timestamptz as tstz, '1 year 2 mons 3 days 04:05:06.789'::interval as iv,
      '{"a": 12345678901234567890, "b": [1.10, 2]}'::json as j, E'{"a":\\n1}'::json as jn,
      '{"b": 1, "a": [true, null]}'::jsonb as jb,
      array[1, null, 3]::int4[] as ia, array['x', null, 'NULL', 'q"z']::text[] as ta,
      'happy'::bridge_mood as m, 7::bridge_small_int as d`,
  });
  assert.is(response.status, 200, response.text);
  const row = /^\{"result":\[(.*)\],"columns":/s.exec(response.text)?.[1];
  assert.is(
    row,
    "{" +
      [
        `"i2":1`,
        `"i4":2147483647`,
        `"i8":"9223372036854775807"`,
        `"num":"12345678901234567890.000000000001"`,
        `"f8":0.1`,
        `"f8big":1e+300`,
        `"nan":"NaN"`,
        `"inf":"Infinity"`,
        `"ninf":"-Infinity"`,
        `"t":true`,
        `"f":false`,
        `"empty":""`,
        `"nothing":null`,
        `"bin":"\\\\x00ff10"`,
        `"id":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`,
        `"tstz":"2024-02-29 11:14:15.123456+00"`,
        `"iv":"1 year 2 mons 3 days 04:05:06.789"`,
        `"j":{"a": 12345678901234567890, "b": [1.10, 2]}`,
        `"jn":{"a": 1}`,
        `"jb":{"a": [true, null], "b": 1}`,
        `"ia":[1,null,3]`,
        `"ta":["x",null,"NULL","q\\"z"]`,
        `"m":"happy"`,
        `"d":7`,
      ].join(",") +
      "}",
  );
  const columns = Object.fromEntries(
    (response.body.columns as Array<{ name: string; type: string; typeOid: number }>).map((c) => [
      c.name,
      [c.type, c.typeOid],
    ]),
  );
  assert.equal(columns.i8, ["bigint", 20]);
  assert.equal(columns.ta, ["text[]", 1009]);
  assert.equal(columns.m?.[0], "bridge_mood");
});

t("NDJSON streams a header line, 100,000 row lines in order, and a footer last", async () => {
  const response = await fetch(`${url}/query`, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/x-ndjson" },
    body: JSON.stringify({ query: "select g from generate_series(1, 100000) g" }),
  });
  assert.is(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /application\/x-ndjson/);
  const lines = (await response.text()).split("\n");
  assert.is(lines.pop(), "", "the stream ends with a newline");
  assert.is(lines.length, 100_002);
  assert.equal(JSON.parse(lines[0]!), { header: { columns: [{ name: "g", type: "integer", typeOid: 23 }] } });
  for (let i = 1; i <= 100_000; i++) {
    if (lines[i] !== `{"row":{"g":${i}}}`) assert.unreachable(`line ${i} is ${lines[i]}`);
  }
  assert.equal(JSON.parse(lines[100_001]!), { footer: { command: "SELECT", rowCount: 100000 } });
});

t("an error after NDJSON rows began ends the stream with an error line", async () => {
  const response = await postQuery(
    url,
    { query: "select 10 / (300 - g) as q from generate_series(1, 500) g" },
    { accept: "application/x-ndjson" },
  );
  assert.is(response.status, 200);
  const lines = response.body as JsonBody[];
  assert.ok(lines[0].header, "header first");
  assert.is(lines.at(-1).error.code, "22012");
  assert.not.ok(
    lines.some((l) => l.footer),
    "no footer after an error",
  );
});

t("an error before any row went out is a plain HTTP error, also for NDJSON", async () => {
  // query-grpc holds a result that arrived whole until it has committed, so a
  // failure inside the first batch never shows the caller a partial header.
  const response = await postQuery(
    url,
    { query: "select 10 / (3 - g) as q from generate_series(1, 5) g" },
    { accept: "application/x-ndjson" },
  );
  assert.is(response.status, 400);
  assert.is((response.body as JsonBody).error.code, "22012");
});

t(
  "a client that disconnects mid-stream gets its statement cancelled and the bridge keeps serving",
  async () => {
    const abort = new AbortController();
    const response = await fetch(`${url}/query`, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/x-ndjson" },
      body: JSON.stringify({
        query:
          "select g, pg_sleep(0.005)::text as slept from generate_series(1, 100000) g /* bridge-abort */",
      }),
      signal: abort.signal,
    });
    assert.is(response.status, 200);
    const reader = response.body!.getReader();
    const first = await reader.read();
    assert.ok(first.value && first.value.length > 0, "a first chunk arrives");
    await eventually(
      async () => (await runningStatements(admin, "%bridge-abort%")) === 1,
      5000,
      "the statement to be running",
    );
    abort.abort();
    await eventually(
      async () => (await runningStatements(admin, "%bridge-abort%")) === 0,
      5000,
      "the statement to be cancelled",
    );
    const after = await postQuery(url, { query: "select 'still here' as s" });
    assert.is(after.status, 200);
    assert.equal(after.body.result, [{ s: "still here" }]);
  },
);

t("with query-grpc unreachable the answer is a 503 with Retry-After within 3 seconds", async () => {
  const orphan = await startBridgeFor("127.0.0.1:1");
  const started = Date.now();
  const response = await postQuery(orphan.url, { query: "select 1" });
  const elapsed = Date.now() - started;
  assert.is(response.status, 503);
  assert.is(response.body.error.grpcStatus, "UNAVAILABLE");
  assert.ok(response.headers.get("retry-after"), "Retry-After is set");
  assert.ok(elapsed < 3000, `answered in ${elapsed} ms`);
});

t("x-request-id is echoed when the caller sends one and generated when not", async () => {
  const given = await postQuery(url, { query: "select 1" }, { "x-request-id": "trace-abc-123" });
  assert.is(given.headers.get("x-request-id"), "trace-abc-123");
  const generated = await postQuery(url, { query: "select 1" });
  assert.match(generated.headers.get("x-request-id") ?? "", UUID);
  const failed = await postQuery(url, { query: "selec 1" }, { "x-request-id": "trace-err" });
  assert.is(failed.status, 400);
  assert.is(failed.headers.get("x-request-id"), "trace-err");
  for (const odd of ["caf\u00e9", "spaces and; semicolons"]) {
    const replaced = await postQuery(url, { query: "select 1" }, { "x-request-id": odd });
    assert.is(replaced.status, 200, odd);
    assert.match(replaced.headers.get("x-request-id") ?? "", UUID);
  }
  const notFound = await fetch(`${url}/nowhere`, { headers: { "x-request-id": "trace-404" } });
  assert.is(notFound.status, 404);
  assert.is(notFound.headers.get("x-request-id"), "trace-404");
});

t.run();
