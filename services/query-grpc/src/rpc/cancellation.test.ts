import { status } from "@grpc/grpc-js";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ExecuteRequest } from "../../../../proto/gen/querygate/v1/query.js";
import {
  adminClient,
  eventually,
  execute,
  executeError,
  grpcClient,
  runningStatements,
  startGrpc,
} from "../../../../test/helpers.js";

const t = suite("cancellation");
let client: ReturnType<typeof grpcClient>;
let admin: Awaited<ReturnType<typeof adminClient>>;

t.before(async () => {
  // One pooled connection: any connection left dirty would break the next test.
  const server = await startGrpc({ POOL_MAX: "1" });
  client = grpcClient(server.target);
  admin = await adminClient();
});

t("a client that cancels gets its statement cancelled in PostgreSQL", async () => {
  const call = client.execute(ExecuteRequest.fromPartial({ sql: "select pg_sleep(30) /* cancel-me */" }));
  const ended = new Promise<number>((resolve) => call.on("error", (e: { code: number }) => resolve(e.code)));
  await eventually(
    async () => (await runningStatements(admin, "%cancel-me%")) === 1,
    5000,
    "the statement to start",
  );
  call.cancel();
  assert.is(await ended, status.CANCELLED);
  await eventually(
    async () => (await runningStatements(admin, "%cancel-me%")) === 0,
    5000,
    "the statement to stop",
  );
});

t("a passed deadline cancels the statement and answers DEADLINE_EXCEEDED", async () => {
  const error = await executeError(client, { sql: "select pg_sleep(30) /* deadline */" }, undefined, {
    deadline: new Date(Date.now() + 300),
  });
  assert.is(error.code, status.DEADLINE_EXCEEDED);
  await eventually(
    async () => (await runningStatements(admin, "%deadline%")) === 0,
    5000,
    "the statement to stop",
  );
});

t("cancelling mid-stream stops a large result and the connection is reused cleanly", async () => {
  const call = client.execute(
    ExecuteRequest.fromPartial({ sql: "select g from generate_series(1, 5000000) g /* big */" }),
  );
  let batches = 0;
  const ended = new Promise<void>((resolve) => {
    call.on("data", () => {
      batches++;
      if (batches === 3) call.cancel();
    });
    call.on("error", () => resolve());
  });
  await ended;
  await eventually(
    async () => (await runningStatements(admin, "%/* big */%")) === 0,
    5000,
    "the statement to stop",
  );
  // With a pool of one, this only works if the connection came back idle, outside any transaction.
  const next = await execute(client, {
    sql: "select current_setting('application_name') like 'querygate %'",
  });
  assert.equal(next.rows, [["t"]]);
});

for (const readOnly of [false, true]) {
  const how = readOnly ? "read-only" : "read-write";
  t(`a reader that pauses, then cancels, stops its statement at once (${how})`, async () => {
    const tag = `paused-${how}`;
    const call = client.execute(
      ExecuteRequest.fromPartial({
        sql: `select g, repeat('x', 200) from generate_series(1, 5000000) g /* ${tag} */`,
        options: { readOnly },
      }),
    );
    call.on("error", () => {});
    let rows = 0;
    await new Promise<void>((resolve) =>
      call.on("data", (message: { rows?: { rows: unknown[] } }) => {
        rows += message.rows?.rows.length ?? 0;
        if (rows >= 10_000) {
          call.pause();
          resolve();
        }
      }),
    );
    // query-grpc now waits on the paused reader, PostgreSQL on query-grpc.
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.is(await runningStatements(admin, `%${tag}%`), 1, "running while its reader is paused");
    call.cancel();
    // Well inside the 2 s a cancel may take before the connection is closed instead.
    await eventually(
      async () => (await runningStatements(admin, `%${tag}%`)) === 0,
      1500,
      "the statement to stop",
    );
    assert.equal((await execute(client, { sql: "select 1" })).rows, [["1"]]);
  });
}

t("after many cancellations the single pooled connection still answers", async () => {
  for (let i = 0; i < 5; i++) {
    await executeError(client, { sql: "select pg_sleep(10)" }, undefined, {
      deadline: new Date(Date.now() + 50),
    });
  }
  const result = await execute(client, { sql: "select 42" });
  assert.equal(result.rows, [["42"]]);
  const idleInTransaction = await admin.query(
    "select count(*)::int as n from pg_stat_activity where state like 'idle in transaction%' and application_name like 'querygate%'",
  );
  assert.is(idleInTransaction.rows[0].n, 0);
});

t.run();
