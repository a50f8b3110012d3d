import { suite } from "uvu";
import * as assert from "uvu/assert";
import { adminClient, type JsonBody, postQuery, startStack } from "../../../../test/helpers.js";
import { bearer, roles, TOKENS } from "../../../../test/roles.js";
import { skewStatements, writeSkew } from "../../../../test/write-skew.js";

const t = suite("POST /query with statements (batch)");
let url: string;
let admin: Awaited<ReturnType<typeof adminClient>>;

async function ids(): Promise<number[]> {
  return (await admin.query("select id from http_batch order by id")).rows.map((r) => r.id);
}

t.before(async () => {
  url = (await startStack()).url;
  admin = await adminClient();
  await admin.query("create table http_batch (id int primary key, tags text[])");
});

t("each statement's result comes back in order, shaped like the single-statement answer", async () => {
  const response = await postQuery(url, {
    statements: [
      { query: "insert into http_batch values ($1, $2)", params: [1, ["a", "b"]] },
      { query: "update http_batch set tags = tags || $1::text where id = $2", params: ["c", 1] },
      { query: "select id, tags from http_batch order by id" },
    ],
  });
  assert.is(response.status, 200, response.text);
  const [insert, update, select] = response.body.results as JsonBody[];
  assert.equal(insert, { result: "OK", columns: [], command: "INSERT", rowCount: 1 });
  assert.equal(update, { result: "OK", columns: [], command: "UPDATE", rowCount: 1 });
  assert.equal(select.result, [{ id: 1, tags: ["a", "b", "c"] }]);
  assert.equal(
    select.columns.map((c: JsonBody) => c.name),
    ["id", "tags"],
  );
  assert.is(select.command, "SELECT");
  assert.is(select.rowCount, 1);
  assert.equal(await ids(), [1]);
});

t("the single-statement body keeps working beside it", async () => {
  const response = await postQuery(url, { query: "select count(*)::int as n from http_batch" });
  assert.is(response.status, 200);
  assert.equal(response.body.result, [{ n: 1 }]);
});

t("a failing statement rolls back the batch and its index is in the error", async () => {
  const response = await postQuery(url, {
    statements: [
      { query: "insert into http_batch values (2, null)" },
      { query: "insert into http_batch values (1, null)" },
    ],
  });
  assert.is(response.status, 409);
  assert.is(response.body.error.code, "23505");
  assert.is(response.body.error.statementIndex, 1);
  assert.not.ok(response.body.error.retryable);
  assert.equal(await ids(), [1]);
});

t("isolation and readOnly reach the transaction; a write in a read-only batch is 403 (25006)", async () => {
  const response = await postQuery(url, {
    statements: [
      {
        query:
          "select current_setting('transaction_isolation') as iso, current_setting('transaction_read_only') as ro",
      },
    ],
    isolation: "repeatable read",
    readOnly: true,
  });
  assert.equal(response.body.results[0].result, [{ iso: "repeatable read", ro: "on" }]);
  const refused = await postQuery(url, {
    statements: [{ query: "insert into http_batch values (3, null)" }],
    readOnly: true,
  });
  assert.is(refused.status, 403);
  assert.is(refused.body.error.code, "25006");
  assert.is(refused.body.error.statementIndex, 0);
});

t("a malformed batch is a 400 that names the field", async () => {
  for (const body of [
    { statements: [] },
    { statements: [{ params: [1] }] },
    { statements: [{ query: "select 1" }], isolation: "snapshot" },
  ]) {
    const response = await postQuery(url, body);
    assert.is(response.status, 400, JSON.stringify(body));
    assert.match(response.body.error.message, /statements|isolation/);
  }
});

t("a serialization failure between two batches is 409 and says the whole batch may be retried", async () => {
  const responses = await writeSkew((doctor) =>
    postQuery(url, {
      statements: skewStatements(doctor).map(({ sql, params }) => ({ query: sql, params })),
      isolation: "serializable",
    }),
  );
  const statuses = responses.map((r) => r.status).sort();
  assert.equal(statuses, [200, 409]);
  const failed = responses.find((r) => r.status === 409);
  assert.is(failed?.body.error.code, "40001");
  assert.is(failed?.body.error.grpcStatus, "ABORTED");
  assert.ok(failed?.body.error.retryable);
  assert.match(failed?.body.error.hint, /retried as a whole/);
});

t("credentials pass through: no token is 401, a token runs as its role", async () => {
  const fixture = await roles();
  const secured = (await startStack(fixture.env)).url;
  const missing = await postQuery(secured, { statements: [{ query: "select 1" }] });
  assert.is(missing.status, 401);
  const allowed = await postQuery(
    secured,
    { statements: [{ query: "select current_user as who" }] },
    bearer(TOKENS.reader),
  );
  assert.equal(allowed.body.results[0].result, [{ who: "reader" }]);
});

t.run();
