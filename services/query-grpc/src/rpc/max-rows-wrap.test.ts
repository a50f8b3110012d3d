// max_rows is a uint64: PostgreSQL's Execute message counts rows in 32 bits,
// and the engine sends max_rows + 1. A limit the wire cannot carry made pg's
// serializer throw inside Exchange.submit(): INTERNAL, the connection's socket
// left corked mid-pipeline, its ROLLBACK never sent, the connection held for
// the 2 s settle timeout and then destroyed. Any caller can send it.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ExecuteBatchRequest, type ExecuteBatchResponse } from "../../../../proto/gen/querygate/v1/query.js";
import { execute, grpcClient, startGrpc } from "../../../../test/helpers.js";

const t = suite("max_rows past 32 bits");

let client: ReturnType<typeof grpcClient>;

t.before(async () => {
  const server = await startGrpc({ POOL_MAX: "1" });
  client = grpcClient(server.target);
  await execute(client, { sql: "create table if not exists max_rows_wrap (n int)" });
});

// 2^32 + 5: the Execute message's Int32 keeps 6 of limit + 1.
const WRAPPING = String(2 ** 32 + 5);
const TWENTY = "select g from generate_series(1, 20) as g";

t("a read-only read with max_rows of 2^32 + 5 returns all of its 20 rows", async () => {
  const result = await execute(client, { sql: TWENTY, options: { readOnly: true, maxRows: WRAPPING } });
  assert.is(result.rows.length, 20);
  assert.is(result.footer?.truncated, false);
});

t("a write's RETURNING with max_rows of 2^32 + 5 returns all of its 20 rows", async () => {
  const result = await execute(client, {
    sql: "insert into max_rows_wrap select g from generate_series(1, 20) as g returning n",
    options: { maxRows: WRAPPING },
  });
  assert.is(result.rows.length, 20);
  assert.is(result.footer?.truncated, false);
});

t("a batch statement with max_rows of 2^32 + 5 returns all of its 20 rows", async () => {
  const response = await new Promise<ExecuteBatchResponse>((resolve, reject) =>
    client.executeBatch(
      ExecuteBatchRequest.fromPartial({ statements: [{ sql: TWENTY, maxRows: WRAPPING }] }),
      (error, answer) => (error ? reject(error) : resolve(answer as ExecuteBatchResponse)),
    ),
  );
  const result = response.results[0];
  assert.is(result?.rows.length, 20);
  assert.is(result?.footer?.truncated, false);
});

t("a call with max_rows of 2^32 is answered at once and leaves the one pooled connection free", async () => {
  const started = performance.now();
  await execute(client, { sql: TWENTY, options: { maxRows: String(2 ** 32) } }).catch(() => undefined);
  const next = await execute(client, { sql: "select 1" });
  const ms = performance.now() - started;
  assert.equal(next.rows, [["1"]]);
  assert.ok(ms < 500, `the call and the next one took ${Math.round(ms)} ms`);
});

t.run();
