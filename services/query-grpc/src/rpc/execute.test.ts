import { Metadata, status } from "@grpc/grpc-js";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { adminClient, execute, executeError, grpcClient, startGrpc } from "../../../../test/helpers.js";
import { callerHash } from "../postgres/application-name.js";

const t = suite("Execute over gRPC");
let client: ReturnType<typeof grpcClient>;

t.before(async () => {
  const server = await startGrpc();
  client = grpcClient(server.target);
});

t("the original tool's create, insert and select flow works", async () => {
  const created = await execute(client, {
    sql: "create table account (id_user serial PRIMARY KEY, username VARCHAR(50) NOT NULL)",
  });
  assert.equal(created.columns, []);
  assert.is(created.footer?.commandTag, "CREATE TABLE");
  const inserted = await execute(client, { sql: "insert into account (username) values ('pmbrull')" });
  assert.is(inserted.footer?.commandTag, "INSERT 0 1");
  assert.is(inserted.footer?.rowCount, "1");
  const selected = await execute(client, { sql: "select * from account" });
  assert.equal(
    selected.columns.map((c) => [c.name, c.typeOid, c.typeName]),
    [
      ["id_user", 23, "integer"],
      ["username", 1043, "character varying"],
    ],
  );
  assert.equal(selected.rows, [["1", "pmbrull"]]);
  assert.is(selected.footer?.commandTag, "SELECT 1");
});

t("a request with only sql is valid and the stream is header, rows, footer in that order", async () => {
  const result = await execute(client, { sql: "select 1" });
  assert.equal(
    result.messages.map((m) => Object.keys(m).filter((k) => m[k as keyof typeof m] !== undefined)[0]),
    ["header", "rows", "footer"],
  );
  assert.ok((result.footer?.serverTimeMs ?? 0) > 0);
});

t("a statement that returns no rows still gets an empty header and a footer", async () => {
  const result = await execute(client, { sql: "create temporary table scratch (x int)" });
  assert.equal(result.messages.length, 2);
  assert.equal(result.messages[0]?.header?.columns, []);
  assert.is(result.messages[1]?.footer?.commandTag, "CREATE TABLE");
});

t("values of every type come back in PostgreSQL's exact text form", async () => {
  const admin = await adminClient();
  await admin.query("create type mood as enum ('sad', 'happy')");
  await admin.query("create domain short_text as text check (length(value) < 10)");
  const result = await execute(client, {
    sql: `select 9223372036854775807::int8 as i8, (-32768)::int2 as i2, 2147483647::int4 as i4,
      123456789012345678901234567890.123456789::numeric as num, 0.1::float8 as f8, 'NaN'::float8 as nan,
      true as b, ''::text as empty, null::text as nothing, '\\x00ff10'::bytea as bin,
      array[1,null,3]::int[] as arr, array['a"b', 'c,d', null]::text[] as tarr,
      '{"a": 12345678901234567890, "b": [1, 2]}'::json as j, '{"b": 1, "a": [true, null]}'::jsonb as jb,
      '2024-02-29 13:14:15.123456'::timestamp as ts, '2024-02-29 13:14:15.123456+02'::timestamptz as tstz,
      '1 year 2 mons 3 days 04:05:06.789'::interval as iv, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid as id,
      'happy'::mood as m, 'tiny'::short_text as d, '2024-02-29'::date as dt, '[1,5)'::int4range as r`,
  });
  const row = Object.fromEntries(result.columns.map((c, i) => [c.name, result.rows[0]?.[i]]));
  assert.equal(row, {
    i8: "9223372036854775807",
    i2: "-32768",
    i4: "2147483647",
    num: "123456789012345678901234567890.123456789",
    f8: "0.1",
    nan: "NaN",
    b: "t",
    empty: "",
    nothing: null,
    bin: "\\x00ff10",
    arr: "{1,NULL,3}",
    tarr: '{"a\\"b","c,d",NULL}',
    j: '{"a": 12345678901234567890, "b": [1, 2]}',
    jb: '{"a": [true, null], "b": 1}',
    ts: "2024-02-29 13:14:15.123456",
    tstz: "2024-02-29 11:14:15.123456+00",
    iv: "1 year 2 mons 3 days 04:05:06.789",
    id: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    m: "happy",
    d: "tiny",
    dt: "2024-02-29",
    r: "[1,5)",
  });
  const types = Object.fromEntries(result.columns.map((c) => [c.name, c.typeName]));
  assert.is(types.m, "mood");
  assert.is(types.tarr, "text[]");
  assert.is(types.i8, "bigint");
});

t("parameters of every kind bind, and text parameters round-trip any type exactly", async () => {
  const result = await execute(client, {
    sql: "select $1::int8 as a, $2::bool as b, $3::float8 as c, $4::bytea as d, $5::text as e, $6::numeric as f, $7::text as g, $8::jsonb as h, $9::int[] as i",
    params: [
      { intValue: "-9223372036854775808" },
      { boolValue: true },
      { floatValue: 1.5 },
      { bytesValue: Buffer.from([0, 1, 254, 255]) },
      { nullValue: 0 },
      { textValue: "98765432109876543210.000000000001" },
      { textValue: "" },
      { textValue: '{"k": "v"}' },
      { textValue: "{1,2,3}" },
    ],
  });
  assert.equal(result.rows[0], [
    "-9223372036854775808",
    "t",
    "1.5",
    "\\x0001feff",
    null,
    "98765432109876543210.000000000001",
    "",
    '{"k": "v"}',
    "{1,2,3}",
  ]);
});

t("a parameter of the wrong type is INVALID_ARGUMENT with SQLSTATE 22P02", async () => {
  const error = await executeError(client, { sql: "select $1::int", params: [{ textValue: "abc" }] });
  assert.is(error.code, status.INVALID_ARGUMENT);
  assert.is(error.error?.sqlstate, "22P02");
});

t("streams 200,000 rows in batches without losing or reordering any", async () => {
  const result = await execute(client, { sql: "select g, md5(g::text) from generate_series(1, 200000) g" });
  assert.is(result.rows.length, 200_000);
  assert.ok(result.messages.length > 10, "rows arrive in many batches");
  assert.is(result.rows[0]?.[0], "1");
  assert.is(result.rows[199_999]?.[0], "200000");
  assert.ok(result.rows.every((row, i) => row[0] === String(i + 1)));
  assert.is(result.footer?.commandTag, "SELECT 200000");
  assert.is(result.footer?.rowCount, "200000");
});

t("max rows stops the result early and the footer says it was truncated", async () => {
  const result = await execute(client, {
    sql: "select g from generate_series(1, 5000) g",
    options: { maxRows: "250" },
  });
  assert.is(result.rows.length, 250);
  assert.is(result.footer?.truncated, true);
  const whole = await execute(client, {
    sql: "select g from generate_series(1, 10) g",
    options: { maxRows: "250" },
  });
  assert.is(whole.rows.length, 10);
  assert.is(whole.footer?.truncated, false);
});

t("syntax errors are INVALID_ARGUMENT with SQLSTATE, message and position", async () => {
  const error = await executeError(client, { sql: "select * fro account" });
  assert.is(error.code, status.INVALID_ARGUMENT);
  assert.is(error.error?.sqlstate, "42601");
  assert.is(error.error?.position, 10);
  assert.match(error.error?.message ?? "", /syntax error/);
  assert.is(error.metadata.get("sqlstate")[0], "42601");
});

t("a syntax error after non-ASCII text has PostgreSQL's own position, counted in characters", async () => {
  const admin = await adminClient();
  try {
    for (const sql of [
      "select 'é' as e,\n  (2 +) as bad",
      "select '🙂' as smile, (2 +)",
      "select 'a' fro m",
    ]) {
      const fromPostgres = await admin.query(sql).then(
        () => undefined,
        (error: { position?: string }) => Number(error.position),
      );
      assert.ok(fromPostgres, `PostgreSQL gives a position for ${sql}`);
      const error = await executeError(client, { sql });
      assert.is(error.error?.position, fromPostgres, sql);
    }
  } finally {
    await admin.end();
  }
});

t("an unknown table is INVALID_ARGUMENT with SQLSTATE 42P01", async () => {
  const error = await executeError(client, { sql: "select * from no_such_table" });
  assert.is(error.code, status.INVALID_ARGUMENT);
  assert.is(error.error?.sqlstate, "42P01");
});

t("a unique violation is ALREADY_EXISTS and carries PostgreSQL's detail", async () => {
  await execute(client, { sql: "create table uniq (id int primary key)" });
  await execute(client, { sql: "insert into uniq values (1)" });
  const error = await executeError(client, { sql: "insert into uniq values (1)" });
  assert.is(error.code, status.ALREADY_EXISTS);
  assert.is(error.error?.sqlstate, "23505");
  assert.match(error.error?.detail ?? "", /Key \(id\)=\(1\) already exists/);
});

t("a foreign-key violation is FAILED_PRECONDITION", async () => {
  await execute(client, { sql: "create table parent (id int primary key)" });
  await execute(client, { sql: "create table child (parent_id int references parent(id))" });
  const error = await executeError(client, { sql: "insert into child values (42)" });
  assert.is(error.code, status.FAILED_PRECONDITION);
  assert.is(error.error?.sqlstate, "23503");
});

t("a write in a read-only request is PERMISSION_DENIED and writes nothing", async () => {
  await execute(client, { sql: "create table ro_target (x int)" });
  const error = await executeError(client, {
    sql: "insert into ro_target values (1)",
    options: { readOnly: true },
  });
  assert.is(error.code, status.PERMISSION_DENIED);
  assert.is(error.error?.sqlstate, "25006");
  const count = await execute(client, { sql: "select count(*) from ro_target" });
  assert.equal(count.rows, [["0"]]);
});

t("a statement that fails half-way leaves nothing behind", async () => {
  await execute(client, { sql: "create table halfway (x int)" });
  const error = await executeError(client, {
    sql: "insert into halfway select 10 / (3 - g) from generate_series(1, 5) g",
  });
  assert.is(error.error?.sqlstate, "22012");
  assert.is(error.code, status.INVALID_ARGUMENT);
  const count = await execute(client, { sql: "select count(*) from halfway" });
  assert.equal(count.rows, [["0"]]);
});

t("several statements in one request are refused before anything runs", async () => {
  const error = await executeError(client, { sql: "select 1; select 2" });
  assert.is(error.code, status.INVALID_ARGUMENT);
  assert.is(error.error?.kind, "invalid_request");
  assert.match(error.details, /one statement per Execute \(got 2\)/);
});

t("an empty statement is INVALID_ARGUMENT before anything runs", async () => {
  const error = await executeError(client, { sql: "   " });
  assert.is(error.code, status.INVALID_ARGUMENT);
  assert.is(error.error?.kind, "invalid_request");
});

t("a statement past its timeout is DEADLINE_EXCEEDED", async () => {
  const error = await executeError(client, { sql: "select pg_sleep(5)", options: { timeoutMs: 200 } });
  assert.is(error.code, status.DEADLINE_EXCEEDED);
});

t("the application tag and the request id show up as PostgreSQL's application_name", async () => {
  const metadata = new Metadata();
  metadata.set("x-request-id", "req-42");
  const result = await execute(
    client,
    { sql: "select current_setting('application_name')", options: { applicationTag: "nightly-report" } },
    metadata,
  );
  // The caller (a hash of its name) travels too, so the registry can tell whose statement it is.
  assert.equal(result.rows, [[`querygate:nightly-report ${callerHash("anonymous")}/req-42`]]);
});

t.run();
