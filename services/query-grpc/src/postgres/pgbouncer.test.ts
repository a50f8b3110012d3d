// query-grpc behind a real PgBouncer in transaction mode, with fewer server
// connections (2) than query-grpc's pool (4): different callers share server
// connections and one caller's consecutive requests land on different ones.
// Whatever a request takes in its session (temp tables, prepared statements,
// settings, LISTEN, session advisory locks) must be gone for the next one,
// whichever server connection that is, on success and on failure alike.
import { status } from "@grpc/grpc-js";
import pg from "pg";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  ExecuteBatchRequest,
  type ExecuteBatchResponse,
  type QueryServiceClient,
} from "../../../../proto/gen/querygate/v1/query.js";
import { executeBatch, session } from "../../../../test/fault-calls.js";
import {
  adminClient,
  atEnd,
  eventually,
  execute,
  executeError,
  type GatheredError,
  grpcClient,
  runningStatements,
  startGrpc,
} from "../../../../test/helpers.js";
import { pgbouncer, SERVER_POOL_SIZE } from "../../../../test/pgbouncer.js";

const bouncer = await pgbouncer();
const ROUNDS = 20;

// Every trace a request can leave in its session, read from inside one.
const TRACES = `select pg_backend_pid()::text as pid,
  coalesce(to_regclass('pg_temp.pgb_leak')::text, '') as temp_table,
  (select count(*) from pg_prepared_statements)::text as prepared,
  current_setting('work_mem') as work_mem,
  current_setting('search_path') as search_path,
  coalesce(current_setting('x.y', true), '') as custom,
  coalesce(current_setting('x.fn', true), '') as in_function,
  (select count(*) from pg_listening_channels())::text as listening`;

// The advisory locks this file's statements take. Other query-grpc servers of
// the same test run share the database, and their idempotency cleanup holds
// an advisory lock of its own for a moment now and then: not ours to count.
const OUR_LOCKS = "locktype = 'advisory' and classid = 0 and objid in (4242, 4243, 4244, 4245)";

/** Session-level state, each kind that outlives a transaction unless the session is reset. */
const TAINTS = [
  "create temp table pgb_leak (x int)",
  "prepare pgb_leak_stmt as select 1",
  "set work_mem = '77MB'",
  "select set_config('x.y', 'leaked', false)",
  "select public.pgb_set_in_function()",
  "listen pgb_leak",
  "select pg_advisory_lock(4242)",
  "set search_path = pg_catalog",
];

if (bouncer) {
  const t = suite("query-grpc behind PgBouncer in transaction mode");
  let client: QueryServiceClient;
  let other: QueryServiceClient;
  let admin: Awaited<ReturnType<typeof adminClient>>;
  let clean: Record<string, string>;
  const pidsSeen = new Set<string>();

  async function traces(target: QueryServiceClient): Promise<Record<string, string>> {
    const result = await execute(target, { sql: TRACES });
    const row = result.rows[0] ?? [];
    return Object.fromEntries(result.columns.map((c, i) => [c.name, row[i] ?? ""]));
  }

  /** Reads the traces several times from both callers at once, so every server connection is asked. */
  async function assertNoTraces(after: string): Promise<string[]> {
    const seen = await Promise.all(
      [client, other, client, other, client, other].map((target) => traces(target)),
    );
    for (const { pid, ...rest } of seen) {
      pidsSeen.add(pid as string);
      assert.equal(rest, clean, `a trace of "${after}" on server backend ${pid}`);
    }
    // Who holds a leftover lock, and in what state, says which path left it.
    const locks = await admin.query(
      `select l.pid, l.objid, a.state, a.query, a.application_name, a.backend_start, now() as now
         from pg_locks l left join pg_stat_activity a using (pid)
        where ${OUR_LOCKS}`,
    );
    assert.is(
      locks.rows.length,
      0,
      `an advisory lock still held after "${after}": ${JSON.stringify(locks.rows)}\n${bouncer?.log().slice(-2000)}`,
    );
    return seen.map((s) => s.pid as string);
  }

  function isClientError(error: GatheredError): boolean {
    return [status.INVALID_ARGUMENT, status.FAILED_PRECONDITION, status.OUT_OF_RANGE].includes(error.code);
  }

  t.before(async () => {
    admin = await adminClient();
    await admin.query(`create or replace function pgb_set_in_function() returns text language plpgsql as $$
      begin
        set work_mem = '78MB';
        perform set_config('x.fn', 'leaked', false);
        return 'set';
      end $$`);
    const grpc = await startGrpc({ DATABASE_URL: bouncer.url, POOL_MAX: "4" });
    client = grpcClient(grpc.target);
    other = grpcClient(grpc.target);
    const { pid: _, ...rest } = await traces(client);
    clean = rest;
    assert.is(clean.work_mem, "4MB");
  });

  t.after(() => {
    console.log(
      `PgBouncer tests: ${ROUNDS} rounds per case, ${pidsSeen.size} distinct server backends seen (server pool ${SERVER_POOL_SIZE})`,
    );
  });

  t("a batch sees its own session state, so the trace check can see a leak", async () => {
    const response = await new Promise<ExecuteBatchResponse>((resolve, reject) =>
      client.executeBatch(
        ExecuteBatchRequest.fromPartial({ statements: [...TAINTS, TRACES].map((sql) => ({ sql })) }),
        (error, answer) => (error ? reject(error) : resolve(answer as ExecuteBatchResponse)),
      ),
    );
    // LISTEN takes effect at COMMIT: inside its own transaction nothing listens yet.
    const seen = response.results.at(-1)?.rows[0]?.values ?? [];
    assert.equal(seen.slice(1), ["pgb_leak", "1", "78MB", "pg_catalog", "leaked", "leaked", "0"]);
  });

  t("Execute, stream, batch and session work through PgBouncer", async () => {
    const streamed = await execute(client, { sql: "select g::text from generate_series(1, 20000) g" });
    assert.is(streamed.rows.length, 20000);
    assert.is(streamed.rows[19999]?.[0], "20000");
    const batch = await executeBatch(client, {
      statements: [{ sql: "select 1" }, { sql: "select $1::int + 1", params: [{ textValue: "41" }] }],
    });
    assert.is(batch, undefined, batch?.message);
    const { responses, error } = await session(client, [
      { statement: { sql: "select pg_backend_pid()" } },
      { statement: { sql: "select pg_sleep(0.01), pg_backend_pid()" } },
      { commit: {} },
    ]);
    assert.is(error, undefined, error?.message);
    const pids = responses.flatMap((r) => r.rows?.rows.map((row) => row.values.at(-1)) ?? []);
    assert.is(pids.length, 2);
    assert.is(pids[0], pids[1], "a session's statements run on one server connection");
  });

  t("nothing an Execute leaves in its session reaches the next request", async () => {
    const pids: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      for (const sql of TAINTS) {
        await execute(round % 2 ? client : other, { sql });
        pids.push(...(await assertNoTraces(sql)));
      }
    }
    assert.ok(new Set(pids).size >= 2, `only backends ${[...new Set(pids)]} were used`);
    assert.ok(
      pids.some((pid, i) => i > 0 && pid !== pids[i - 1]),
      "consecutive requests landed on one server connection only",
    );
  });

  t("nothing an ExecuteBatch leaves in its session reaches the next request", async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const error = await executeBatch(round % 2 ? client : other, {
        statements: [...TAINTS, "execute pgb_leak_stmt"].map((sql) => ({ sql })),
      });
      assert.is(error, undefined, error?.message);
      await assertNoTraces("a batch");
    }
  });

  t(
    "nothing a Session leaves in its session reaches the next request, committed or rolled back",
    async () => {
      for (let round = 0; round < ROUNDS; round++) {
        const ending = round % 2 ? { commit: {} } : { rollback: {} };
        const { error } = await session(round % 3 ? client : other, [
          ...TAINTS.map((sql) => ({ statement: { sql } })),
          ending,
        ]);
        assert.is(error, undefined, error?.message);
        await assertNoTraces(`a session ending with ${Object.keys(ending)[0]}`);
      }
    },
  );

  t("nothing a failed Execute took before its error reaches the next request", async () => {
    // The divisor is computed per row, so the lock is taken before the error (1 / 0 would fail at planning).
    const failing =
      "select pg_advisory_lock(4243), set_config('x.y', 'leaked', false), 1 / (random() * 0)::int";
    for (let round = 0; round < ROUNDS; round++) {
      // Another caller keeps the server pool busy, so the failed request's
      // server connection is wanted by someone else the moment it is free.
      const busy = Promise.all(
        Array.from({ length: 6 }, () => execute(other, { sql: "select pg_sleep(0.005)" })),
      );
      const errors = await Promise.all([client, other, client].map((c) => executeError(c, { sql: failing })));
      for (const error of errors) assert.is(error.error?.sqlstate, "22012");
      await busy;
      await assertNoTraces("an Execute that failed after taking a session lock");
    }
  });

  t(
    "a failed Execute resets the server connection it ran on even when another caller takes it first",
    async () => {
      // Caller A's Execute takes a session lock on server connection S1, then
      // fails. While it runs, B holds S2 and C waits for a server, so S1 is
      // wanted by someone else the moment A's transaction ends. A's ROLLBACK
      // and DISCARD ALL go out in one round trip (engine.ts rollback()), so
      // the reset cannot miss S1; two round trips could have.
      const failing = executeError(client, {
        sql: "select pg_advisory_lock(4245), pg_sleep(0.5), 1 / (random() * 0)::int",
      });
      await eventually(async () => (await runningStatements(admin, "%4245%")) > 0, 5000, "A's statement");
      const connect = async (url: string) => {
        const direct = new pg.Client(url);
        await direct.connect();
        atEnd(() => direct.end());
        return direct;
      };
      const b = await connect(bouncer.url);
      const c = await connect(bouncer.url);
      const console_ = await connect(bouncer.adminUrl);
      const holding = b.query("select pg_sleep(1.5)");
      await eventually(async () => (await runningStatements(admin, "select pg_sleep(1.5)")) > 0, 5000, "B");
      const waiting = c.query("select pg_sleep(0.2)");
      await eventually(
        async () => (await console_.query("show pools")).rows.some((r) => Number(r.cl_waiting) > 0),
        5000,
        "C to wait for a server connection",
      );
      assert.is((await failing).error?.sqlstate, "22012");
      await Promise.all([holding, waiting]);
      const locks = await admin.query(`select pid from pg_locks where ${OUR_LOCKS}`);
      // Leave no lock for the tests after this one, whatever happened.
      for (const { pid } of locks.rows) await admin.query("select pg_terminate_backend($1)", [pid]);
      assert.is(locks.rows.length, 0, "the failed Execute's session lock outlived it");
    },
  );

  t("nothing a failed ExecuteBatch or Session took before its error reaches the next request", async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const statements = [...TAINTS, "select 1 / (random() * 0)::int"].map((sql) => ({ sql }));
      const failed = await executeBatch(round % 2 ? client : other, { statements });
      assert.is(failed?.error?.sqlstate, "22012");
      await assertNoTraces("a failed batch");
      const { error } = await session(round % 2 ? other : client, [
        ...statements.map((statement) => ({ statement })),
        { commit: {} },
      ]);
      assert.is(error?.error?.sqlstate, "22012");
      await assertNoTraces("a failed session");
    }
  });

  t("a stream stopped at max_rows leaves nothing in the session", async () => {
    for (let round = 0; round < ROUNDS; round++) {
      // max_rows stops the portal early: the transaction ends with rows still unread.
      const result = await execute(round % 2 ? client : other, {
        sql: "select pg_advisory_lock(4244) from generate_series(1, 100000)",
        options: { maxRows: "10" },
      });
      assert.ok(result.footer?.truncated);
      await assertNoTraces("a stream stopped at max_rows");
    }
  });

  t("statements that cannot work through PgBouncer get a client error, not a hang", async () => {
    for (const sql of ["copy (select 1) to stdout", "discard all", "begin", "commit"]) {
      const error = await executeError(client, { sql });
      assert.ok(isClientError(error), `${sql}: status ${error.code} ${error.details}`);
    }
    assert.is((await traces(client)).work_mem, "4MB");
  });

  t.run();
}
