// A result's column type names come from the control connection (type-names.ts)
// while the statement's transaction waits on its pooled connection. A control
// connection that stops answering must not take the statement's timeout,
// or a caller's cancel, with it: the call ends when its time is up, as a
// timeout, and its pooled connection comes back usable.
import { status } from "@grpc/grpc-js";
import type pg from "pg";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  adminClient,
  database,
  eventually,
  execute,
  executeError,
  grpcClient,
  startGrpc,
} from "../../../../test/helpers.js";
import { type Relay, startRelay } from "../../../../test/relay.js";

const t = suite("type names from a control connection that hangs");

let admin: pg.Client;
let relay: Relay;
let client: ReturnType<typeof grpcClient>;
let dbUrl: string;

t.before(async () => {
  admin = await adminClient();
  await admin.query("create type review_mood as enum ('fine')");
  const db = await database();
  relay = await startRelay(db.port);
  dbUrl = db.url;
  const grpc = await startGrpc({
    DATABASE_URL: relay.via(db.url),
    POOL_MAX: "1",
    CONNECT_TIMEOUT_MS: "600000",
  });
  client = grpcClient(grpc.target);
});

t("a statement whose type names cannot be looked up ends at its own timeout, as a timeout", async () => {
  // int4's name is cached from now on; the enum's is not.
  assert.equal((await execute(client, { sql: "select 1" })).rows, [["1"]]);
  await eventually(
    async () =>
      ((await admin.query("select 1 from pg_stat_activity where application_name = 'querygate-control'"))
        .rowCount ?? 0) > 0,
    5000,
    "the control connection to be open",
  );
  relay.freezeWhere("querygate-control");
  // The lookup would give up only after 600 s; the client's deadline (without a querygate kind) comes first.
  const error = await executeError(
    client,
    { sql: "select 'fine'::review_mood", options: { timeoutMs: 300 } },
    undefined,
    { deadline: new Date(Date.now() + 15_000) },
  );
  assert.is(
    `${status[error.code]} kind=${error.error?.kind}`,
    "DEADLINE_EXCEEDED kind=timeout",
    error.details,
  );
  // The one pooled connection came back in a state fit for the next caller.
  assert.equal((await execute(client, { sql: "select 2" })).rows, [["2"]]);
});

t("a type lookup that fails is the database's unavailability, and a read then runs once more", async () => {
  await admin.query("create type review_colour as enum ('teal')");
  // This time the lookup gives up first: a control query answers within 500 ms or fails.
  const grpc = await startGrpc({ DATABASE_URL: relay.via(dbUrl), POOL_MAX: "1", CONNECT_TIMEOUT_MS: "500" });
  const quick = grpcClient(grpc.target);
  assert.equal((await execute(quick, { sql: "select 1" })).rows, [["1"]]);
  await eventually(
    async () =>
      ((await admin.query("select 1 from pg_stat_activity where application_name = 'querygate-control'"))
        .rowCount ?? 0) > 1,
    5000,
    "this server's control connection to be open",
  );
  relay.freezeWhere("querygate-control");
  // The control connection that timed out is replaced; the retry's lookup goes over the new one.
  const result = await execute(quick, {
    sql: "select 'teal'::review_colour",
    options: { timeoutMs: 10_000, readOnly: true },
  });
  assert.equal(result.rows, [["teal"]]);
  assert.is(result.columns[0]?.typeName, "review_colour");
});

t.run();
