// An Execute of a statement that cannot write goes to PostgreSQL with its
// transaction's end in the same write (engine.ts oneTrip): ROLLBACK for a
// read-only caller, COMMIT for a read-write caller's read. One round trip
// instead of two, whatever the size of its result. The relay (test/relay.ts)
// counts the writes query-grpc makes to PostgreSQL and can hold back or cut
// the answer to a write carrying COMMIT; the results must be the batched
// path's, and a COMMIT in flight must never be reported as if it did not run.
import type pg from "pg";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { grpcAnswer } from "../../../../test/fault-calls.js";
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

const t = suite("a statement that cannot write, sent with its transaction's end");

let admin: pg.Client;
let relay: Relay;
let client: ReturnType<typeof grpcClient>;

t.before(async () => {
  admin = await adminClient();
  await admin.query("create table one_trip (id int primary key, label text)");
  await admin.query("insert into one_trip select g, 'row ' || g from generate_series(1, 500) g");
  await admin.query("create table one_trip_log (at timestamptz default now())");
  // A SELECT that writes through a function: classified read, it must still commit, once.
  await admin.query(
    "create function one_trip_log_it() returns bigint language sql as $$ insert into one_trip_log default values; select count(*) from one_trip_log $$",
  );
  const db = await database();
  relay = await startRelay(db.port);
  // One pooled connection, so every call's writes are the ones counted.
  const grpc = await startGrpc({ DATABASE_URL: relay.via(db.url), POOL_MAX: "1" });
  client = grpcClient(grpc.target);
  // The column types' names, looked up once on the control connection (also relayed), are known from here on.
  await execute(client, { sql: "select id, label from one_trip where id = 1" });
});

t.after(async () => {
  await admin.query("drop function one_trip_log_it(); drop table one_trip, one_trip_log");
  await admin.end();
});

/** The writes query-grpc made to PostgreSQL for one call (not counting the control connection's health probes). */
async function writesFor(call: () => Promise<unknown>): Promise<number> {
  const before = relay.clientWrites("querygate-control");
  await call();
  return relay.clientWrites("querygate-control") - before;
}

t("reaches PostgreSQL in one write when its result fits in the first batch", async () => {
  let rows: Array<Array<string | null>> = [];
  const readOnly = await writesFor(async () => {
    ({ rows } = await execute(client, {
      sql: "select id, label from one_trip where id = $1",
      params: [{ textValue: "7" }],
      options: { readOnly: true },
    }));
  });
  assert.equal(rows, [["7", "row 7"]]);
  assert.is(readOnly, 1, "set-up, statement and ROLLBACK in one write");
  const readWrite = await writesFor(async () => {
    ({ rows } = await execute(client, {
      sql: "select id, label from one_trip where id = $1",
      params: [{ textValue: "8" }],
    }));
  });
  assert.equal(rows, [["8", "row 8"]]);
  assert.is(readWrite, 1, "a read-write caller's SELECT: set-up, statement and COMMIT in one write");
});

t(
  "sends a statement that may write in two round trips, so a lost COMMIT answer can name its transaction",
  async () => {
    const writes = await writesFor(() =>
      execute(client, {
        sql: "update one_trip set label = label where id = $1",
        params: [{ textValue: "9" }],
      }),
    );
    assert.is(writes, 2, "the transaction id comes back before COMMIT goes out");
  },
);

t("gives a read-write caller's result longer than the first batch whole, in one write", async () => {
  let result: Awaited<ReturnType<typeof execute>> | undefined;
  const writes = await writesFor(async () => {
    result = await execute(client, { sql: "select id, label from one_trip order by id" });
  });
  assert.is(writes, 1);
  assert.is(result?.rows.length, 500);
  assert.equal(result?.rows[499], ["500", "row 500"]);
  assert.is(result?.footer?.truncated, false);
});

t("commits a SELECT that writes through a function, once per call", async () => {
  for (const expected of [1, 2]) {
    const { rows } = await execute(client, { sql: "select one_trip_log_it()" });
    assert.equal(rows, [[String(expected)]]);
    assert.equal((await admin.query("select count(*)::int as n from one_trip_log")).rows, [{ n: expected }]);
  }
  const refused = await executeError(client, {
    sql: "select one_trip_log_it()",
    options: { readOnly: true },
  });
  assert.is(refused.error?.sqlstate, "25006", "read-only, in one write or not, cannot write");
});

t("gives a result longer than the first batch whole, in the same one write", async () => {
  const sql = "select id, label from one_trip order by id";
  for (const attempt of ["first", "again"]) {
    let result: Awaited<ReturnType<typeof execute>> | undefined;
    const writes = await writesFor(async () => {
      result = await execute(client, { sql, options: { readOnly: true } });
    });
    assert.is(writes, 1, `${attempt} run: the statement ran once, its rows read as they came`);
    assert.is(result?.rows.length, 500);
    assert.equal(result?.rows[499], ["500", "row 500"]);
    assert.is(result?.footer?.rowCount, "500");
    assert.is(result?.footer?.truncated, false);
    assert.is(result?.messages.filter((m) => m.header).length, 1, "one header");
  }
});

t("truncates at maxRows in one write", async () => {
  let result: Awaited<ReturnType<typeof execute>> | undefined;
  const writes = await writesFor(async () => {
    result = await execute(client, {
      sql: "select id from one_trip order by id",
      options: { readOnly: true, maxRows: "5" },
    });
  });
  assert.equal(
    result?.rows.map((r) => r[0]),
    ["1", "2", "3", "4", "5"],
  );
  assert.is(result?.footer?.truncated, true);
  assert.is(result?.footer?.rowCount, "5");
  assert.is(writes, 1);
});

t("fails with the statement's SQLSTATE and leaves the connection fit for the next call", async () => {
  const backend = async () =>
    (await execute(client, { sql: "select pg_backend_pid()", options: { readOnly: true } })).rows[0]?.[0];
  const before = await backend();
  const failure = await executeError(client, {
    sql: "select 1 / (id - id) from one_trip",
    options: { readOnly: true },
  });
  assert.is(failure.error?.sqlstate, "22012");
  // The ROLLBACK behind the statement was skipped by its error: one is sent
  // after it, and the connection (the pool's only one) is reused, not replaced.
  assert.is(await backend(), before, "the next call ran on the same connection");
  const refused = await executeError(client, {
    sql: "insert into one_trip values (1000, 'x')",
    options: { readOnly: true },
  });
  assert.is(refused.error?.sqlstate, "25006");
  const { rows } = await execute(client, {
    sql: "select count(*) from one_trip",
    options: { readOnly: true },
  });
  assert.equal(rows, [["500"]]);
  const { rows: settings } = await execute(client, {
    sql: "select current_setting('transaction_read_only'), current_setting('statement_timeout') <> '0'",
  });
  assert.equal(settings, [["off", "t"]], "the next transaction is read-write again");
});

async function logged(): Promise<number> {
  return (await admin.query("select count(*)::int as n from one_trip_log")).rows[0].n;
}

t(
  "a lost connection after a read-write caller's SELECT went out with its COMMIT is commit_unknown, not retry",
  async () => {
    const before = await logged();
    const trapped = relay.trapNextCommit("forward");
    const answer = executeError(client, { sql: "select one_trip_log_it()" });
    const commit = await trapped;
    await eventually(async () => (await logged()) === before + 1, 5000, "the SELECT's write to commit");
    commit.cut();
    const error = await answer;
    assert.is(grpcAnswer(error), "unknown", `committed, but the caller saw ${error.code} ${error.details}`);
    assert.is(await logged(), before + 1, "committed once");
  },
);

t(
  "a read-write caller's SELECT whose timer fired after PostgreSQL committed it says it committed",
  async () => {
    const before = await logged();
    const trapped = relay.trapNextCommit("forward");
    const answer = executeError(client, { sql: "select one_trip_log_it()", options: { timeoutMs: 300 } });
    const commit = await trapped;
    await eventually(async () => (await logged()) === before + 1, 5000, "the SELECT's write to commit");
    // The timer fires while the answer is held back; the answer then comes, late.
    await new Promise((resolve) => setTimeout(resolve, 600));
    commit.release();
    const error = await answer;
    assert.is(error.error?.kind, "timeout");
    assert.match(error.details, /its transaction committed/);
    assert.is(await logged(), before + 1, "committed once");
  },
);

// Why a read-write caller's SELECT is not sent with a ROLLBACK even when it
// wrote nothing (no transaction id): a NOTIFY leaves no trace SQL can see.
t(
  "delivers the NOTIFY of a read-write caller's SELECT: it writes nothing, and only COMMIT sends it",
  async () => {
    const listener = await adminClient();
    const heard: string[] = [];
    listener.on("notification", (n) => heard.push(n.payload ?? ""));
    await listener.query("listen one_trip");
    const token = `t${Date.now()}`;
    await execute(client, { sql: "select pg_notify('one_trip', $1)", params: [{ textValue: token }] });
    await eventually(async () => heard.includes(token), 5000, "the notification");
    await listener.end();
  },
);

t(
  "a read-write caller's SELECT whose timer fired and whose COMMIT was never answered is commit_unknown",
  async () => {
    const before = await logged();
    const trapped = relay.trapNextCommit("forward");
    const answer = executeError(client, { sql: "select one_trip_log_it()", options: { timeoutMs: 300 } });
    await trapped;
    await eventually(async () => (await logged()) === before + 1, 5000, "the SELECT's write to commit");
    // The answer is never let through: query-grpc gives up on the connection.
    const error = await answer;
    assert.is(
      grpcAnswer(error),
      "unknown",
      `it committed, but the caller saw ${error.code} ${error.details}`,
    );
    assert.is(await logged(), before + 1, "committed once");
  },
);

t.run();
