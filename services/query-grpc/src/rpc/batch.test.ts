import { Metadata, type ServiceError, status } from "@grpc/grpc-js";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  type DeepPartial,
  ExecuteBatchRequest,
  type ExecuteBatchResponse,
  IsolationLevel,
  QueryError,
  type QueryServiceClient,
} from "../../../../proto/gen/querygate/v1/query.js";
import { adminClient, GatheredError, grpcClient, startGrpc } from "../../../../test/helpers.js";
import { roles, TOKENS } from "../../../../test/roles.js";
import { skewStatements, writeSkew } from "../../../../test/write-skew.js";

const t = suite("ExecuteBatch over gRPC");
let client: QueryServiceClient;
let admin: Awaited<ReturnType<typeof adminClient>>;

function executeBatch(
  target: QueryServiceClient,
  request: DeepPartial<ExecuteBatchRequest>,
  metadata: Metadata = new Metadata(),
): Promise<ExecuteBatchResponse> {
  return new Promise((resolve, reject) => {
    target.executeBatch(ExecuteBatchRequest.fromPartial(request), metadata, (error, response) => {
      if (!error) return resolve(response as ExecuteBatchResponse);
      const bin = (error as ServiceError).metadata?.get("querygate-error-bin")[0];
      const detail = bin ? QueryError.decode(bin as Buffer) : undefined;
      reject(new GatheredError(error.code, error.details, detail, error.metadata));
    });
  });
}

async function batchError(
  target: QueryServiceClient,
  request: DeepPartial<ExecuteBatchRequest>,
  metadata?: Metadata,
): Promise<GatheredError> {
  try {
    await executeBatch(target, request, metadata);
  } catch (error) {
    if (error instanceof GatheredError) return error;
    throw error;
  }
  throw new Error("expected the batch to fail, but it succeeded");
}

function values(response: ExecuteBatchResponse, index: number): string[][] {
  return (response.results[index]?.rows ?? []).map((row) => row.values);
}

async function idsIn(table: string): Promise<number[]> {
  return (await admin.query(`select id from ${table} order by id`)).rows.map((r) => r.id);
}

t.before(async () => {
  const server = await startGrpc();
  client = grpcClient(server.target);
  admin = await adminClient();
  await admin.query("create table batch_items (id int primary key, name text)");
});

t("every statement's result comes back in order, and they commit together", async () => {
  const response = await executeBatch(client, {
    statements: [
      { sql: "insert into batch_items values (1, 'a') returning id" },
      { sql: "insert into batch_items values ($1, $2)", params: [{ intValue: "2" }, { textValue: "b" }] },
      { sql: "select name from batch_items where id <= 2 order by id" },
    ],
  });
  assert.is(response.results.length, 3);
  assert.equal(values(response, 0), [["1"]]);
  assert.is(response.results[1]?.footer?.commandTag, "INSERT 0 1");
  assert.is(response.results[1]?.footer?.rowCount, "1");
  assert.equal(response.results[1]?.columns, []);
  assert.equal(
    response.results[2]?.columns.map((c) => [c.name, c.typeName]),
    [["name", "text"]],
  );
  assert.equal(values(response, 2), [["a"], ["b"]]);
  assert.is(response.results[2]?.footer?.commandTag, "SELECT 2");
  assert.equal(await idsIn("batch_items"), [1, 2]);
});

t("a failing third statement leaves the first two undone and is named in the error", async () => {
  const error = await batchError(client, {
    statements: [
      { sql: "insert into batch_items values (10, 'x')" },
      { sql: "insert into batch_items values (11, 'y')" },
      { sql: "insert into batch_items values (1, 'duplicate')" },
      { sql: "insert into batch_items values (12, 'never runs')" },
    ],
  });
  assert.is(error.code, status.ALREADY_EXISTS);
  assert.is(error.error?.sqlstate, "23505");
  assert.is(error.error?.statementIndex, 2);
  assert.equal(await idsIn("batch_items"), [1, 2]);
});

t("isolation, read only and deferrable are applied to the batch's transaction", async () => {
  const settings = {
    sql: "select current_setting('transaction_isolation'), current_setting('transaction_read_only'), current_setting('transaction_deferrable')",
  };
  const cases: Array<[IsolationLevel, boolean, string[]]> = [
    [IsolationLevel.ISOLATION_LEVEL_UNSPECIFIED, false, ["read committed", "off", "off"]],
    [IsolationLevel.ISOLATION_LEVEL_READ_COMMITTED, false, ["read committed", "off", "off"]],
    [IsolationLevel.ISOLATION_LEVEL_REPEATABLE_READ, false, ["repeatable read", "off", "off"]],
    [IsolationLevel.ISOLATION_LEVEL_SERIALIZABLE, true, ["serializable", "on", "on"]],
  ];
  for (const [isolation, readOnly, expected] of cases) {
    const response = await executeBatch(client, {
      statements: [settings, settings],
      options: { isolation, readOnly, deferrable: readOnly },
    });
    assert.equal(values(response, 0), [expected], IsolationLevel[isolation]);
    assert.equal(values(response, 1), [expected], IsolationLevel[isolation]);
  }
});

t("a read-only batch refuses writes with 25006 and commits nothing", async () => {
  const error = await batchError(client, {
    statements: [{ sql: "select 1" }, { sql: "insert into batch_items values (20, 'ro')" }],
    options: { readOnly: true },
  });
  assert.is(error.code, status.PERMISSION_DENIED);
  assert.is(error.error?.sqlstate, "25006");
  assert.is(error.error?.statementIndex, 1);
  assert.equal(await idsIn("batch_items"), [1, 2]);
});

t("transaction control in a batch is refused before anything runs", async () => {
  const error = await batchError(client, {
    statements: [{ sql: "insert into batch_items values (30, 'x')" }, { sql: "commit" }],
  });
  assert.is(error.code, status.INVALID_ARGUMENT);
  assert.is(error.error?.statementIndex, 1);
  assert.equal(await idsIn("batch_items"), [1, 2]);
  const empty = await batchError(client, { statements: [] });
  assert.is(empty.code, status.INVALID_ARGUMENT);
});

t("max_rows truncates each statement on its own, and says so", async () => {
  const response = await executeBatch(client, {
    statements: [
      { sql: "select g from generate_series(1, 10) g", maxRows: "3" },
      { sql: "select g from generate_series(1, 3) g" },
      { sql: "select g from generate_series(1, 2) g" },
    ],
    options: { maxRows: "2" },
  });
  assert.equal(values(response, 0), [["1"], ["2"], ["3"]]);
  assert.ok(response.results[0]?.footer?.truncated);
  assert.equal(values(response, 1), [["1"], ["2"]]);
  assert.ok(response.results[1]?.footer?.truncated);
  assert.is(response.results[1]?.footer?.rowCount, "2");
  // Exactly max_rows rows is not a truncation.
  assert.equal(values(response, 2), [["1"], ["2"]]);
  assert.not.ok(response.results[2]?.footer?.truncated);
});

t("a statement's timeout applies to that statement and fails the batch", async () => {
  const error = await batchError(client, {
    statements: [{ sql: "select 1" }, { sql: "select pg_sleep(5)", timeoutMs: 200 }],
  });
  assert.is(error.code, status.DEADLINE_EXCEEDED);
  assert.is(error.error?.statementIndex, 1);
});

t("two serializable batches in a write skew: one commits, the other is ABORTED with 40001", async () => {
  const outcomes = await writeSkew(async (doctor) => {
    const statements = skewStatements(doctor).map(({ sql, params }) => ({
      sql,
      params: params.map((p) => ({ textValue: String(p) })),
    }));
    try {
      await executeBatch(client, {
        statements,
        options: { isolation: IsolationLevel.ISOLATION_LEVEL_SERIALIZABLE },
      });
      return "committed";
    } catch (error) {
      const e = error as GatheredError;
      return `${e.code}:${e.error?.sqlstate}`;
    }
  });
  assert.equal(outcomes.sort(), ["committed", `${status.ABORTED}:40001`].sort());
  const onCall = await admin.query("select count(*)::int as n from skew.oncall where on_call");
  assert.is(onCall.rows[0].n, 1);
});

t("results beyond BATCH_MAX_RESPONSE_BYTES fail the batch and commit nothing", async () => {
  const small = grpcClient((await startGrpc({ BATCH_MAX_RESPONSE_BYTES: "10000" })).target);
  const error = await batchError(small, {
    statements: [
      { sql: "insert into batch_items values (40, 'big')" },
      { sql: "select repeat('x', 100) from generate_series(1, 500)" },
    ],
  });
  assert.is(error.code, status.RESOURCE_EXHAUSTED);
  assert.is(error.error?.kind, "too_large");
  assert.is(error.error?.statementIndex, 1);
  assert.equal(await idsIn("batch_items"), [1, 2]);
});

t("ExecuteBatch authenticates like Execute and runs as the caller's role", async () => {
  const fixture = await roles();
  const secured = grpcClient((await startGrpc(fixture.env)).target);
  const missing = await batchError(secured, { statements: [{ sql: "select 1" }] });
  assert.is(missing.code, status.UNAUTHENTICATED);
  const metadata = new Metadata();
  metadata.set("authorization", `Bearer ${TOKENS.writer}`);
  const response = await executeBatch(secured, { statements: [{ sql: "select current_user" }] }, metadata);
  assert.equal(values(response, 0), [["writer"]]);
  const reader = new Metadata();
  reader.set("authorization", `Bearer ${TOKENS.reader}`);
  const denied = await batchError(
    secured,
    { statements: [{ sql: "select 1" }, { sql: "insert into app.items (name) values ('no')" }] },
    reader,
  );
  assert.is(denied.code, status.PERMISSION_DENIED);
  assert.is(denied.error?.statementIndex, 1);
});

t.run();
