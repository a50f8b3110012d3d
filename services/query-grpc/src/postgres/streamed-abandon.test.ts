// A streamed statement whose rows are no longer wanted (the caller went away,
// the batch grew past its limit) must give its connection back at once: the
// rows still coming are dropped and PostgreSQL is cancelled, as the one-trip
// read does. Since statements that may write, ExecuteBatch and Session stream
// (Exchange.take pauses the socket while the reader is slower), a ROLLBACK
// sent behind a paused exchange is never answered: the connection is held
// for the settle timeout, then destroyed.
import { status } from "@grpc/grpc-js";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  ExecuteBatchRequest,
  ExecuteRequest,
  type ExecuteResponse,
  SessionRequest,
} from "../../../../proto/gen/querygate/v1/query.js";
import {
  adminClient,
  eventually,
  execute,
  grpcClient,
  runningStatements,
  startGrpc,
} from "../../../../test/helpers.js";
import { metric } from "../../../../test/replica-client.js";

const t = suite("abandoned streamed statements");

let client: ReturnType<typeof grpcClient>;
let metricsPort: number;
let admin: Awaited<ReturnType<typeof adminClient>>;

t.before(async () => {
  const server = await startGrpc({ POOL_MAX: "1", BATCH_MAX_RESPONSE_BYTES: "1000000" });
  client = grpcClient(server.target);
  metricsPort = server.metricsPort;
  admin = await adminClient();
  await execute(client, { sql: "create table if not exists streamed_abandon_sink (n int)" });
});

/** Starts `sql`, stops reading after the first rows, cancels; returns ms from the cancel until `select 1` ran (POOL_MAX 1). */
async function cancelWhilePaused(sql: string, readOnly: boolean): Promise<number> {
  const call = client.execute(ExecuteRequest.fromPartial({ sql, options: { readOnly } }));
  let paused = false;
  call.on("data", (message: ExecuteResponse) => {
    if (!paused && (message.rows?.rows.length ?? 0) > 0) {
      paused = true;
      call.pause();
    }
  });
  const ended = new Promise<void>((resolve) => call.on("status", () => resolve()));
  call.on("error", () => {});
  return cancelOncePaused(call, () => paused, ended);
}

/**
 * Once `paused` holds, lets the server's writes and PostgreSQL's socket fill
 * up, cancels `call`, and returns how long after the cancel the one pooled
 * connection served the next call.
 */
async function cancelOncePaused(
  call: { cancel(): void },
  paused: () => boolean,
  ended: Promise<void>,
): Promise<number> {
  await eventually(paused, 30_000, "the first rows");
  await new Promise((resolve) => setTimeout(resolve, 300));
  const cancelled = performance.now();
  call.cancel();
  await ended;
  const next = await execute(client, { sql: "select 1", options: { readOnly: true } });
  assert.equal(next.rows, [["1"]]);
  return performance.now() - cancelled;
}

const WIDE = "repeat('x', 100000)";

t("a cancelled read-only read that streams frees its connection at once (control)", async () => {
  const ms = await cancelWhilePaused(`select ${WIDE} /* abandon-read */ from generate_series(1, 5000)`, true);
  assert.ok(ms < 1000, `the next call waited ${Math.round(ms)} ms`);
});

t("a cancelled write whose RETURNING streams frees its connection at once", async () => {
  const ms = await cancelWhilePaused(
    `with written as (insert into streamed_abandon_sink select g from generate_series(1, 2000) g returning n) select ${WIDE} /* abandon-write */ from written`,
    false,
  );
  // PostgreSQL sends a finished write's RETURNING from its store and no cancel
  // stops that: the 200 MB still come, and are dropped. Well under the 2 s settle timeout all the same.
  assert.ok(ms < 1500, `the next call waited ${Math.round(ms)} ms for the one pooled connection`);
});

t("a batch whose results outgrow its limit answers, and frees its connection, at once", async () => {
  const started = performance.now();
  const code = await new Promise<number>((resolve) =>
    client.executeBatch(
      ExecuteBatchRequest.fromPartial({
        statements: [{ sql: `select ${WIDE} /* abandon-batch */ from generate_series(1, 100000)` }],
      }),
      (error) => resolve(error?.code ?? status.OK),
    ),
  );
  const ms = performance.now() - started;
  assert.equal(code, status.RESOURCE_EXHAUSTED);
  assert.ok(ms < 1000, `the batch answered after ${Math.round(ms)} ms`);
  // PostgreSQL shows the cancelled backend idle a moment after the answer on a
  // loaded machine; left running, the statement (10 GB of rows) would stay active far longer.
  await eventually(
    async () => (await runningStatements(admin, "%abandon-batch%")) === 0,
    2000,
    "the statement to stop running",
  );
});

t("a session whose reader pauses mid-statement, then cancels, frees its connection at once", async () => {
  const call = client.session();
  let paused = false;
  call.on("data", (message: { rows?: { rows: unknown[] } }) => {
    if (!paused && (message.rows?.rows.length ?? 0) > 0) {
      paused = true;
      call.pause();
    }
  });
  const ended = new Promise<void>((resolve) => call.on("status", () => resolve()));
  call.on("error", () => {});
  call.write(
    SessionRequest.fromPartial({
      statement: { sql: `select ${WIDE} /* abandon-session */ from generate_series(1, 5000)` },
    }),
  );
  const ms = await cancelOncePaused(call, () => paused, ended);
  assert.ok(ms < 1000, `the next call waited ${Math.round(ms)} ms for the one pooled connection`);
});

t("the connection an abandoned stream closed is replaced before the next caller asks", async () => {
  const call = client.execute(
    ExecuteRequest.fromPartial({ sql: `select ${WIDE} /* abandon-spare */ from generate_series(1, 5000)` }),
  );
  let firstRows = false;
  call.on("data", () => {
    firstRows = true;
  });
  const ended = new Promise<void>((resolve) => call.on("status", () => resolve()));
  call.on("error", () => {});
  await eventually(() => firstRows, 30_000, "the first rows");
  const abandoned = await admin.query(
    "select pid from pg_stat_activity where query like '%abandon-spare%' and pid <> pg_backend_pid()",
  );
  assert.equal(abandoned.rowCount, 1, "the streaming statement's backend");
  call.cancel();
  await ended;
  // POOL_MAX is 1: the pool holds one idle connection again, a new one, with no call since.
  await eventually(
    async () => (await metric(metricsPort, 'querygate_pool_connections{state="idle"}')) === 1,
    5000,
    "an idle connection in the pool",
  );
  // Its backend leaves pg_stat_activity as it exits, which a loaded machine may show a moment late.
  await eventually(
    async () =>
      (await admin.query("select 1 from pg_stat_activity where pid = $1", [abandoned.rows[0].pid]))
        .rowCount === 0,
    5000,
    "the abandoned statement's connection to be closed, not reused",
  );
});

t.run();
