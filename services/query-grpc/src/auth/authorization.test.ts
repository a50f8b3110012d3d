import { status } from "@grpc/grpc-js";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  adminClient,
  execute,
  executeError,
  grpcClient,
  postQuery,
  startBridgeFor,
  startGrpc,
} from "../../../../test/helpers.js";
import { as, bearer, jwt, roles, TOKENS } from "../../../../test/roles.js";

const t = suite("authorization in PostgreSQL");

let client: ReturnType<typeof grpcClient>;
let bridgeUrl: string;
let admin: Awaited<ReturnType<typeof adminClient>>;

async function itemCount(): Promise<number> {
  return (await admin.query("select count(*)::int as n from app.items")).rows[0].n;
}

t.before(async () => {
  const fixture = await roles();
  // One pooled connection: whatever one request leaves behind, the next one sees.
  const server = await startGrpc({ ...fixture.env, POOL_MAX: "1" });
  client = grpcClient(server.target);
  bridgeUrl = (await startBridgeFor(server.target)).url;
  admin = await adminClient();
});

t("a read-only caller's INSERT is refused by PostgreSQL (25006) and the table is unchanged", async () => {
  const before = await itemCount();
  const error = await executeError(
    client,
    { sql: "insert into app.items (name) values ('x')" },
    as(TOKENS.readOnlyWriter),
  );
  assert.is(error.code, status.PERMISSION_DENIED);
  assert.is(error.error?.sqlstate, "25006");
  const response = await postQuery(
    bridgeUrl,
    { query: "insert into app.items (name) values ('x')" },
    bearer(TOKENS.readOnlyWriter),
  );
  assert.is(response.status, 403);
  assert.is(response.body.error.code, "25006");
  assert.is(await itemCount(), before);
});

t("a read-only caller can neither create a large object nor write through a function", async () => {
  await admin.query(`
    create or replace function app.sneaky_insert() returns int language sql security definer
      as $$ insert into app.items (name) values ('sneaky') returning id $$;
    grant execute on function app.sneaky_insert() to writer;
  `);
  const objects = async () =>
    (await admin.query("select count(*)::int as n from pg_largeobject_metadata")).rows[0].n;
  const beforeObjects = await objects();
  const beforeItems = await itemCount();
  for (const sql of [
    "select lo_from_bytea(0, repeat('x', 1000)::bytea)",
    "select lo_create(0)",
    "select app.sneaky_insert()",
  ]) {
    const error = await executeError(client, { sql }, as(TOKENS.readOnlyWriter));
    assert.is(error.code, status.PERMISSION_DENIED, sql);
    assert.is(error.error?.sqlstate, "25006", sql);
  }
  assert.is(await objects(), beforeObjects);
  assert.is(await itemCount(), beforeItems);
});

t("a session advisory lock is released when its request ends", async () => {
  await execute(client, { sql: "select pg_advisory_lock(4242)" }, as(TOKENS.writer));
  const held = await admin.query(
    "select count(*)::int as n from pg_locks where locktype = 'advisory' and objid = 4242",
  );
  assert.is(held.rows[0].n, 0);
});

t("a read-only caller cannot make its transaction writable", async () => {
  for (const sql of [
    "set transaction read write",
    "select set_config('transaction_read_only', 'off', true)",
  ]) {
    const error = await executeError(client, { sql }, as(TOKENS.readOnlyWriter));
    assert.is(error.code, status.INVALID_ARGUMENT, sql);
  }
});

t("GRANTs decide: the reader may select but not insert, the writer may insert", async () => {
  await execute(client, { sql: "select count(*) from app.items" }, as(TOKENS.reader));
  // A JWT for the reader role is not read-only: the missing INSERT grant refuses it.
  const reader = as(await jwt({ claims: { role: "reader" } }));
  const denied = await executeError(client, { sql: "insert into app.items (name) values ('r')" }, reader);
  assert.is(denied.code, status.PERMISSION_DENIED);
  assert.is(denied.error?.sqlstate, "42501");
  const before = await itemCount();
  const inserted = await execute(
    client,
    { sql: "insert into app.items (name) values ('w')" },
    as(TOKENS.writer),
  );
  assert.is(inserted.footer?.commandTag, "INSERT 0 1");
  assert.is(await itemCount(), before + 1);
  const secret = await executeError(client, { sql: "select * from app.secrets" }, as(TOKENS.writer));
  assert.is(secret.code, status.PERMISSION_DENIED);
  assert.is(secret.error?.sqlstate, "42501");
});

t("a caller cannot SET ROLE, RESET ROLE or SET SESSION AUTHORIZATION its way out", async () => {
  for (const sql of [
    "set role app_admin",
    "set local role app_admin",
    "reset role",
    "set session authorization postgres",
    "reset all",
    "select set_config('role', 'app_admin', false)",
    "select set_config(lower('ROLE'), 'app_admin', true)",
  ]) {
    const error = await executeError(client, { sql }, as(TOKENS.writer));
    assert.is(error.code, status.INVALID_ARGUMENT, sql);
  }
  const over = await postQuery(bridgeUrl, { query: "set role app_admin" }, bearer(TOKENS.writer));
  assert.is(over.status, 400);
  const who = await execute(client, { sql: "select current_user" }, as(TOKENS.writer));
  assert.equal(who.rows, [["writer"]]);
});

t("a write made after switching role inside a function is rolled back, not committed", async () => {
  const error = await executeError(client, { sql: "select app.escalate_and_write()" }, as(TOKENS.writer));
  assert.is(error.code, status.PERMISSION_DENIED);
  assert.match(error.details, /switched away from role "writer"/);
  const rows = await admin.query("select count(*)::int as n from app.secrets");
  assert.is(rows.rows[0].n, 0);
});

t("a caller cannot forge request.jwt.claims or raise its own statement timeout", async () => {
  for (const sql of [
    `select set_config('request.jwt.claims', '{"sub":"mallory"}', true)`,
    "set statement_timeout = 0",
    "set local statement_timeout = 0",
  ]) {
    const error = await executeError(client, { sql }, as(TOKENS.writer));
    assert.is(error.code, status.INVALID_ARGUMENT, sql);
  }
});

t("row-level security sees the JWT's claims", async () => {
  const alice = as(await jwt({ claims: { sub: "alice" } }));
  const bob = as(await jwt({ claims: { sub: "bob" } }));
  await execute(client, { sql: "insert into app.notes (body) values ('from alice')" }, alice);
  await execute(client, { sql: "insert into app.notes (body) values ('from bob')" }, bob);
  const seen = await execute(client, { sql: "select owner, body from app.notes order by body" }, alice);
  assert.equal(seen.rows, [["alice", "from alice"]]);
});

t("state set by one request never reaches the next on the same connection", async () => {
  const writer = as(TOKENS.writer);
  const pid = (await execute(client, { sql: "select pg_backend_pid()" }, writer)).rows[0]?.[0];
  await execute(client, { sql: "set search_path = app" }, writer);
  await execute(client, { sql: "select set_config('app.tenant', 'leaked', false)" }, writer);
  await execute(client, { sql: "create temp table scratch (a int)" }, writer);
  await execute(client, { sql: "prepare leaked_plan as select 1" }, writer);
  await execute(client, { sql: "select pg_advisory_lock(4242)" }, writer);
  await execute(client, { sql: "listen leaked_channel" }, writer);
  const next = await execute(
    client,
    {
      sql: `select pg_backend_pid(), current_user, current_setting('search_path'),
              coalesce(current_setting('app.tenant', true), ''),
              to_regclass('pg_temp.scratch') is null,
              (select count(*) from pg_prepared_statements),
              (select count(*) from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()),
              (select count(*) from pg_listening_channels())`,
    },
    as(TOKENS.reader),
  );
  // Same backend (pool of one), none of the first caller's state.
  assert.equal(next.rows, [[pid ?? "", "reader", '"$user", public', "", "t", "0", "0", "0"]]);
});

t("a BEGIN in the SQL cannot leave a transaction open for the next caller", async () => {
  for (const sql of ["begin", "commit", "rollback", "savepoint s", "start transaction"]) {
    const error = await executeError(client, { sql }, as(TOKENS.writer));
    assert.is(error.code, status.INVALID_ARGUMENT, sql);
    assert.match(error.details, /transaction control/);
  }
  const idle = await admin.query(
    "select count(*)::int as n from pg_stat_activity where usename = 'authenticator' and state like 'idle in transaction%'",
  );
  assert.is(idle.rows[0].n, 0);
});

t("what a gateway must never run is refused, naming the statement kind", async () => {
  const cases: Array<[string, RegExp]> = [
    ["copy app.items to '/tmp/items.csv'", /"server_file"/],
    ["copy app.items from program 'cat /etc/passwd'", /"server_file"/],
    ["alter system set work_mem = '1GB'", /"system"/],
    ["load 'auto_explain'", /"system"/],
    ["do $$ begin perform 1; end $$", /"anonymous_code"/],
    ["copy app.items to stdout", /COPY to or from the client/],
    ["select query_to_xml('select 1', true, true, '')", /runs SQL text/],
  ];
  for (const [sql, reason] of cases) {
    const error = await executeError(client, { sql }, as(TOKENS.admin));
    assert.is(error.code, status.INVALID_ARGUMENT, sql);
    assert.match(error.details, reason, sql);
  }
  const response = await postQuery(
    bridgeUrl,
    { query: "alter system set work_mem = '1GB'" },
    bearer(TOKENS.admin),
  );
  assert.is(response.status, 400);
  assert.match(response.body.error.message, /"system"/);
});

t("a credential limited to reads cannot write or change the schema", async () => {
  const key = as(TOKENS.selectOnly);
  await execute(client, { sql: "select 1" }, key);
  for (const [sql, kind] of [
    ["insert into app.items (name) values ('no')", "write"],
    ["with x as (delete from app.items returning id) select count(*) from x", "write"],
    ["explain analyze delete from app.items", "write"],
    ["create table app.nope (a int)", "ddl"],
  ]) {
    const error = await executeError(client, { sql: sql as string }, key);
    assert.is(error.code, status.INVALID_ARGUMENT, sql);
    assert.match(error.details, new RegExp(`"${kind}" statement`), sql);
  }
  // Plain EXPLAIN runs nothing: a read-only credential may use it.
  await execute(client, { sql: "explain delete from app.items" }, key);
});

t(
  "a syntax error is reported with PostgreSQL's SQLSTATE and position before reaching the database",
  async () => {
    const error = await executeError(client, { sql: "select * frm app.items" }, as(TOKENS.reader));
    assert.is(error.code, status.INVALID_ARGUMENT);
    assert.is(error.error?.sqlstate, "42601");
    assert.is(error.error?.position, 10);
  },
);

t.run();
