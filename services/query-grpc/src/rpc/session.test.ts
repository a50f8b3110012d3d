import { type ClientDuplexStream, Metadata, type ServiceError, status } from "@grpc/grpc-js";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  type DeepPartial,
  IsolationLevel,
  QueryError,
  type QueryServiceClient,
  SessionRequest,
  type SessionResponse,
} from "../../../../proto/gen/querygate/v1/query.js";
import {
  adminClient,
  eventually,
  execute,
  executeError,
  GatheredError,
  grpcClient,
  startGrpc,
} from "../../../../test/helpers.js";
import { roles, TOKENS } from "../../../../test/roles.js";

const t = suite("Session over gRPC");
let client: QueryServiceClient;
let admin: Awaited<ReturnType<typeof adminClient>>;

interface StatementResult {
  columns: string[];
  rows: Array<Array<string | null>>;
  commandTag: string;
}

/** A Session stream driven message by message, as a test reads it. */
class TestSession {
  readonly call: ClientDuplexStream<SessionRequest, SessionResponse>;
  private readonly received: SessionResponse[] = [];
  private ended = false;
  private failure: GatheredError | undefined;
  private wake: () => void = () => {};

  constructor(target: QueryServiceClient, metadata = new Metadata(), options: { deadline?: Date } = {}) {
    this.call = target.session(metadata, options);
    this.call.on("data", (message: SessionResponse) => {
      this.received.push(message);
      this.wake();
    });
    this.call.on("error", (error: ServiceError) => {
      const bin = error.metadata?.get("querygate-error-bin")[0];
      const detail = bin ? QueryError.decode(bin as Buffer) : undefined;
      this.failure = new GatheredError(error.code, error.details, detail, error.metadata);
      this.ended = true;
      this.wake();
    });
    this.call.on("end", () => {
      this.ended = true;
      this.wake();
    });
  }

  send(message: DeepPartial<SessionRequest>): this {
    this.call.write(SessionRequest.fromPartial(message));
    return this;
  }

  statement(sql: string, params: string[] = []): this {
    return this.send({ statement: { sql, params: params.map((p) => ({ textValue: p })) } });
  }

  /** The next message; rejects with the status if the stream ends first. */
  async next(): Promise<SessionResponse> {
    for (;;) {
      const message = this.received.shift();
      if (message) return message;
      if (this.ended) throw this.failure ?? new Error("the session ended without an error");
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  /** One statement's result: header, row batches, footer. */
  async result(): Promise<StatementResult> {
    const header = await this.next();
    assert.ok(header.header, `expected a header, got ${JSON.stringify(header)}`);
    const rows: Array<Array<string | null>> = [];
    for (;;) {
      const message = await this.next();
      if (message.rows) {
        for (const row of message.rows.rows) {
          const values: Array<string | null> = [...row.values];
          for (const i of row.nullColumns) values[i] = null;
          rows.push(values);
        }
        continue;
      }
      assert.ok(message.footer, `expected rows or a footer, got ${JSON.stringify(message)}`);
      return {
        columns: header.header?.columns.map((c) => c.name) ?? [],
        rows,
        commandTag: message.footer?.commandTag ?? "",
      };
    }
  }

  /** The transaction's outcome, then the end of the stream with status OK. */
  async outcome(): Promise<boolean> {
    const message = await this.next();
    assert.ok(message.outcome, `expected the outcome, got ${JSON.stringify(message)}`);
    await this.closed();
    assert.is(this.failure, undefined);
    return message.outcome?.committed ?? false;
  }

  /** The status that ended the stream, skipping any messages before it. */
  async error(): Promise<GatheredError> {
    await this.closed();
    if (!this.failure) throw new Error("expected the session to fail, but it ended OK");
    return this.failure;
  }

  private async closed(): Promise<void> {
    while (!this.ended) {
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }
}

async function names(): Promise<string[]> {
  return (await admin.query("select name from session_items order by name")).rows.map((r) => r.name);
}

/** querygate's pooled connections by state, e.g. { idle: 1 }. */
async function poolStates(): Promise<Record<string, number>> {
  const result = await admin.query(
    "select state, count(*)::int as n from pg_stat_activity where application_name like 'querygate %' group by state",
  );
  return Object.fromEntries(result.rows.map((r) => [r.state, r.n]));
}

async function connectionIdleAgain(): Promise<void> {
  await eventually(
    async () => {
      const states = await poolStates();
      return Object.keys(states).every((s) => s === "idle");
    },
    5000,
    "querygate's connections to be idle, outside any transaction",
  );
}

t.before(async () => {
  // One pooled connection: whatever a session leaves behind, the next user sees.
  const server = await startGrpc({ POOL_MAX: "1" });
  client = grpcClient(server.target);
  admin = await adminClient();
  await admin.query("create table session_items (name text primary key)");
});

t.after.each(async () => {
  await admin.query("truncate session_items");
});

t("statements run in one transaction and commit makes them visible", async () => {
  const session = new TestSession(client)
    .send({ begin: {} })
    .statement("insert into session_items values ($1)", ["one"])
    .statement("select name, txid_current() is not null from session_items");
  assert.is((await session.result()).commandTag, "INSERT 0 1");
  // The session sees its own write; nobody else does yet.
  assert.equal((await session.result()).rows, [["one", "t"]]);
  assert.equal(await names(), []);
  session.send({ commit: {} });
  assert.is(await session.outcome(), true);
  assert.equal(await names(), ["one"]);
});

t("rollback undoes the session's statements and says it did not commit", async () => {
  const session = new TestSession(client).statement("insert into session_items values ('gone')");
  await session.result();
  session.send({ rollback: {} });
  assert.is(await session.outcome(), false);
  assert.equal(await names(), []);
});

t("a client that closes its side without commit or rollback gets a rollback", async () => {
  const session = new TestSession(client).statement("insert into session_items values ('gone')");
  await session.result();
  session.call.end();
  assert.is(await session.outcome(), false);
  assert.equal(await names(), []);
});

t("a failing statement ends the session with its error and index, and rolls back", async () => {
  const session = new TestSession(client)
    .statement("insert into session_items values ('before')")
    .statement("select 1 / 0");
  await session.result();
  const error = await session.error();
  assert.is(error.code, status.INVALID_ARGUMENT);
  assert.is(error.error?.sqlstate, "22012");
  assert.is(error.error?.statementIndex, 1);
  assert.equal(await names(), []);
  await connectionIdleAgain();
});

t("a client that cancels mid-transaction gets it rolled back and the connection idle again", async () => {
  const session = new TestSession(client).statement("insert into session_items values ('cancelled')");
  await session.result();
  assert.equal(await poolStates(), { "idle in transaction": 1 });
  session.call.cancel();
  assert.is((await session.error()).code, status.CANCELLED);
  await connectionIdleAgain();
  assert.equal(await names(), []);
  // The row lock is gone: the same key can be written at once.
  await execute(client, { sql: "insert into session_items values ('cancelled')" });
  assert.equal(await names(), ["cancelled"]);
});

t("a session's settings and temporary tables never reach the next user of its connection", async () => {
  const session = new TestSession(client)
    .statement("set search_path to information_schema")
    .statement("set work_mem to '7MB'")
    .statement("create temporary table session_scratch (x int)")
    .statement("select pg_backend_pid(), current_setting('search_path'), current_setting('work_mem')");
  for (let i = 0; i < 3; i++) await session.result();
  const [pid, searchPath, workMem] = (await session.result()).rows[0] ?? [];
  assert.is(searchPath, "information_schema");
  assert.is(workMem, "7MB");
  session.send({ commit: {} });
  assert.is(await session.outcome(), true);

  const next = await execute(client, {
    sql: "select pg_backend_pid(), current_setting('search_path'), current_setting('work_mem'), to_regclass('pg_temp.session_scratch') is null",
  });
  const defaults = await admin.query(
    "select current_setting('search_path') as s, current_setting('work_mem') as w",
  );
  // The same connection (pool of one), with nothing of the session left.
  assert.equal(next.rows, [[pid ?? "", defaults.rows[0].s, defaults.rows[0].w, "t"]]);
});

t("a session advisory lock is released as soon as the session ends, committed or rolled back", async () => {
  for (const end of [{ commit: {} }, { rollback: {} }]) {
    const session = new TestSession(client).statement("select pg_advisory_lock(4343)");
    await session.result();
    session.send(end);
    await session.outcome();
    const held = await admin.query(
      "select count(*)::int as n from pg_locks where locktype = 'advisory' and objid = 4343",
    );
    assert.is(held.rows[0].n, 0, JSON.stringify(end));
  }
});

t("begin sets isolation and read only; a write then fails with 25006", async () => {
  const session = new TestSession(client)
    .send({ begin: { isolation: IsolationLevel.ISOLATION_LEVEL_SERIALIZABLE, readOnly: true } })
    .statement("select current_setting('transaction_isolation'), current_setting('transaction_read_only')")
    .statement("insert into session_items values ('read-only')");
  assert.equal((await session.result()).rows, [["serializable", "on"]]);
  const error = await session.error();
  assert.is(error.code, status.PERMISSION_DENIED);
  assert.is(error.error?.sqlstate, "25006");
  assert.is(error.error?.statementIndex, 1);
});

t("transaction control comes as messages: COMMIT as SQL, or a late begin, is refused", async () => {
  const sql = await new TestSession(client).statement("commit").error();
  assert.is(sql.code, status.INVALID_ARGUMENT);
  assert.is(sql.error?.statementIndex, 0);
  const late = new TestSession(client).statement("select 1").send({ begin: {} });
  await late.result();
  assert.is((await late.error()).code, status.INVALID_ARGUMENT);
  await connectionIdleAgain();
});

t("a session with nothing in it commits nothing, without touching the database", async () => {
  const session = new TestSession(client).send({ begin: {} }).send({ commit: {} });
  assert.is(await session.outcome(), true);
});

t("if the connection breaks while COMMIT is in flight, the outcome is reported unknown", async () => {
  await admin.query(`
    create table slow_commit (x int);
    create function slow_commit_check() returns trigger language plpgsql as $$
      begin perform pg_sleep(30); return null; end $$;
    create constraint trigger slow_commit_sleep after insert on slow_commit
      deferrable initially deferred for each row execute function slow_commit_check();
  `);
  const session = new TestSession(client).statement("insert into slow_commit values (1)");
  await session.result();
  session.send({ commit: {} });
  let pid: number | undefined;
  await eventually(
    async () => {
      const commit = await admin.query(
        "select pid from pg_stat_activity where query = 'COMMIT' and state = 'active' and application_name like 'querygate %'",
      );
      pid = commit.rows[0]?.pid;
      return pid !== undefined;
    },
    5000,
    "COMMIT to be running its deferred trigger",
  );
  await admin.query("select pg_terminate_backend($1)", [pid]);
  const error = await session.error();
  assert.is(error.code, status.UNAVAILABLE);
  assert.is(error.error?.kind, "commit_unknown");
  // The pool replaces the broken connection.
  assert.equal((await execute(client, { sql: "select 1" })).rows, [["1"]]);
});

t("a session idle past SESSION_IDLE_TIMEOUT_MS is rolled back and frees its connection", async () => {
  const idle = grpcClient((await startGrpc({ POOL_MAX: "1", SESSION_IDLE_TIMEOUT_MS: "300" })).target);
  const session = new TestSession(idle).statement("insert into session_items values ('idle')");
  await session.result();
  const error = await session.error();
  assert.is(error.code, status.DEADLINE_EXCEEDED);
  assert.is(error.error?.kind, "timeout");
  assert.match(error.details, /idle/);
  await connectionIdleAgain();
  assert.equal(await names(), []);
});

t("a session past SESSION_MAX_LIFETIME_MS is ended, even mid-statement", async () => {
  const short = grpcClient((await startGrpc({ POOL_MAX: "1", SESSION_MAX_LIFETIME_MS: "1000" })).target);
  const error = await new TestSession(short).statement("select pg_sleep(30) /* lifetime */").error();
  assert.is(error.code, status.DEADLINE_EXCEEDED);
  assert.match(error.details, /lifetime/);
  await connectionIdleAgain();
});

t(
  "beyond MAX_SESSIONS a session is refused with RESOURCE_EXHAUSTED; one-shot queries still run",
  async () => {
    const capped = grpcClient((await startGrpc({ POOL_MAX: "2", MAX_SESSIONS: "1" })).target);
    const first = new TestSession(capped).statement("select 1");
    await first.result();
    const refused = await new TestSession(capped).statement("select 1").error();
    assert.is(refused.code, status.RESOURCE_EXHAUSTED);
    assert.is(refused.error?.kind, "overloaded");
    assert.equal((await execute(capped, { sql: "select 2" })).rows, [["2"]]);
    first.send({ commit: {} });
    assert.is(await first.outcome(), true);
    const after = new TestSession(capped).statement("select 3");
    assert.equal((await after.result()).rows, [["3"]]);
    after.send({ commit: {} });
    assert.is(await after.outcome(), true);
  },
);

t("Session authenticates like Execute and runs as the caller's role", async () => {
  const fixture = await roles();
  const secured = grpcClient((await startGrpc(fixture.env)).target);
  const missing = await new TestSession(secured).statement("select 1").error();
  assert.is(missing.code, status.UNAUTHENTICATED);
  const metadata = new Metadata();
  metadata.set("authorization", `Bearer ${TOKENS.writer}`);
  const session = new TestSession(secured, metadata).statement("select current_user");
  assert.equal((await session.result()).rows, [["writer"]]);
  session.send({ rollback: {} });
  assert.is(await session.outcome(), false);
  // Execute's refusals hold in a session too.
  const reader = new Metadata();
  reader.set("authorization", `Bearer ${TOKENS.selectOnly}`);
  const refused = await new TestSession(secured, reader).statement("delete from app.items").error();
  assert.is(refused.code, status.INVALID_ARGUMENT);
  assert.is((await executeError(secured, { sql: "select 1" })).code, status.UNAUTHENTICATED);
});

t.run();
