// query-grpc with a read replica (issue 13), on a real primary and streaming
// standby: read-only requests land on the standby and writes on the primary;
// a write's answer carries its commit position, and a read presenting it is
// served by the primary while the standby has not replayed it (replay
// paused), by the standby once it has; the lag metrics move while replay is
// held back; and a standby that stops answering sends reads to the primary,
// transparently, without making query-grpc unready. Each server is reached
// through a relay, so a test can make it go away as a stopped server does.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { IsolationLevel } from "../proto/gen/querygate/v1/query.js";
import { Serving } from "../services/query-grpc/src/grpc/health.js";
import { eventually, grpcClient, postQuery, startBridgeFor } from "./helpers.js";
import { type Relay, startRelay } from "./relay.js";
import { metric, run, runBatch, runSession, startGrpcOn } from "./replica-client.js";
import { type StandbyPair, startStandbyPair } from "./standby.js";

const t = suite("read replicas");

let pair: StandbyPair;
let replicaRelay: Relay;
let grpc: Awaited<ReturnType<typeof startGrpcOn>>;
let client: ReturnType<typeof grpcClient>;

const WHERE = "select pg_is_in_recovery()::text as on_standby";
const readOnly = { readOnly: true };

/** Runs `sql` read-only, with `token`; answers whether it ran on the standby and its other columns. */
async function readOn(sql: string, token?: string): Promise<{ standby: boolean; rows: string[] }> {
  const { rows } = await run(
    client,
    { sql: `select pg_is_in_recovery(), (${sql})::text`, options: readOnly },
    token,
  );
  return { standby: rows[0]?.[0] === "t", rows: rows.map((r) => r[1] ?? "") };
}

t.before(async () => {
  pair = await startStandbyPair().catch((error: Error) => {
    console.error(`starting the standby pair failed: ${error.message}`);
    throw error;
  });
  const primaryRelay = await startRelay(Number(new URL(pair.primaryUrl).port));
  replicaRelay = await startRelay(Number(new URL(pair.standbyUrl).port));
  grpc = await startGrpcOn({
    DATABASE_URL: primaryRelay.via(pair.primaryUrl),
    DATABASE_READ_URL: replicaRelay.via(pair.standbyUrl),
    REPLICA_PROBE_INTERVAL_MS: "200",
  });
  client = grpcClient(grpc.target);
  await run(client, { sql: "create table notes (id int, body text)" });
});

t.after(async () => {
  await grpc?.close();
  await pair?.stop();
});

t("a read-only request runs on the standby and everything else on the primary", async () => {
  const read = await run(client, { sql: WHERE, options: readOnly });
  assert.equal(read.rows, [["true"]], "a read-only Execute ran on the standby");
  const plain = await run(client, { sql: WHERE });
  assert.equal(plain.rows, [["false"]], "an Execute not asked read-only ran on the primary");
  const write = await run(client, {
    sql: "insert into notes values (1, 'one') returning pg_is_in_recovery()::text",
  });
  assert.equal(write.rows, [["false"]]);
  const batch = await runBatch(client, { statements: [{ sql: WHERE }], options: readOnly });
  assert.equal(batch.rows, [["true"]], "a read-only ExecuteBatch ran on the standby");
});

t("a write's answer carries its commit position, which the standby reaches", async () => {
  const write = await run(client, { sql: "insert into notes values (2, 'two')" });
  assert.match(write.lsn ?? "", /^[0-9A-F]+\/[0-9A-F]+$/);
  await pair.waitForReplay(write.lsn as string);
  const batch = await runBatch(client, { statements: [{ sql: "insert into notes values (3, 'three')" }] });
  assert.match(batch.lsn ?? "", /^[0-9A-F]+\/[0-9A-F]+$/, "ExecuteBatch's commit carries one too");
  const read = await run(client, { sql: WHERE, options: readOnly });
  assert.is(read.lsn, undefined, "a read has no commit position");
});

t("fetching the commit position leaves the connection fit for the next request", async () => {
  const pid = async () =>
    (await run(client, { sql: "insert into notes values (0, 'pid') returning pg_backend_pid()::text" }))
      .rows[0]?.[0];
  const first = await pid();
  assert.is(await pid(), first, "the second write reused the first one's connection");
});

t(
  "while replay is paused a read with the write's token runs on the primary and sees it; without, the standby does not",
  async () => {
    await pair.pauseReplay();
    try {
      const write = await run(client, { sql: "insert into notes values (4, 'four')" });
      const token = write.lsn as string;
      const withToken = await readOn("select count(*) from notes where id = 4", token);
      assert.equal(
        withToken,
        { standby: false, rows: ["1"] },
        "the token's read ran on the primary and saw the row",
      );
      const without = await readOn("select count(*) from notes where id = 4");
      assert.equal(
        without,
        { standby: true, rows: ["0"] },
        "a read without the token ran on the lagging standby",
      );
      assert.ok(
        (await metric(grpc.metricsPort, 'querygate_read_retries_total{reason="replica_behind"}')) >= 1,
      );

      // The lag metrics move while replay is held back.
      await eventually(
        async () =>
          (await metric(grpc.metricsPort, "querygate_replica_lag_bytes")) > 0 &&
          (await metric(grpc.metricsPort, "querygate_replica_lag_seconds")) > 0,
        10_000,
        "the lag metrics to show the paused standby behind",
      );
    } finally {
      await pair.resumeReplay();
    }
  },
);

t("once the standby has replayed the write, a read with its token runs there", async () => {
  const write = await run(client, { sql: "insert into notes values (5, 'five')" });
  await pair.waitForReplay(write.lsn as string);
  const read = await readOn("select body from notes where id = 5", write.lsn);
  assert.equal(read, { standby: true, rows: ["five"] });
  await eventually(
    async () => (await metric(grpc.metricsPort, "querygate_replica_lag_bytes")) === 0,
    10_000,
    "the lag in bytes to return to 0",
  );
});

t(
  "a read-only Session runs on the standby; a committed write Session answers with its position",
  async () => {
    const read = await runSession(client, [
      { begin: { readOnly: true } },
      { statement: { sql: WHERE } },
      { commit: {} },
    ]);
    assert.equal(read.rows, [["true"]]);
    assert.is(read.lsn, undefined);
    const write = await runSession(client, [
      { statement: { sql: "insert into notes values (8, 'eight') returning pg_is_in_recovery()::text" } },
      { commit: {} },
    ]);
    assert.equal(write.rows, [["false"]]);
    assert.match(write.lsn ?? "", /^[0-9A-F]+\/[0-9A-F]+$/);
  },
);

t(
  "a token read under repeatable read goes to the primary, whose snapshot cannot predate the check",
  async () => {
    const write = await run(client, { sql: "insert into notes values (9, 'nine')" });
    await pair.waitForReplay(write.lsn as string);
    const options = { readOnly: true, isolation: IsolationLevel.ISOLATION_LEVEL_REPEATABLE_READ };
    const withToken = await runBatch(client, { statements: [{ sql: WHERE }], options }, write.lsn);
    assert.equal(withToken.rows, [["false"]]);
    const without = await runBatch(client, { statements: [{ sql: WHERE }], options });
    assert.equal(without.rows, [["true"]], "without a token repeatable read is fine on the standby");
  },
);

t(
  "a recovery conflict on the standby after the header went out is retried on the primary, with one header",
  async () => {
    // A stand-in for a recovery conflict: 40001 raised on the standby only, once the columns are described.
    const created = await run(client, {
      sql: `create function conflicted() returns int language plpgsql as $$
          begin
            if pg_is_in_recovery() then
              raise exception 'canceling statement due to conflict with recovery' using errcode = '40001';
            end if;
            return 1;
          end $$`,
    });
    await pair.waitForReplay(created.lsn as string);
    const before = await metric(grpc.metricsPort, 'querygate_read_retries_total{reason="40001"}');
    for (const call of [
      () => run(client, { sql: "select conflicted() as n", options: readOnly }),
      () =>
        runSession(client, [
          { begin: { readOnly: true } },
          { statement: { sql: "select conflicted() as n" } },
        ]),
    ]) {
      const answer = await call();
      assert.equal(answer.rows, [["1"]], "the primary answered");
      assert.is(answer.headers, 1, "the caller saw one header");
    }
    assert.is(await metric(grpc.metricsPort, 'querygate_read_retries_total{reason="40001"}'), before + 2);
  },
);

t("a malformed token is refused as the caller's mistake", async () => {
  const error = await run(client, { sql: WHERE, options: readOnly }, "yesterday").then(
    () => undefined,
    (e: { code: number; kind?: string }) => e,
  );
  assert.is(error?.kind, "invalid_request");
});

t("the bridge maps the token both ways as the Querygate-Lsn header", async () => {
  const bridge = await startBridgeFor(grpc.target);
  await pair.pauseReplay();
  try {
    const write = await postQuery(bridge.url, { query: "insert into notes values (6, 'six')" });
    assert.is(write.status, 200);
    const token = write.headers.get("querygate-lsn");
    assert.match(token ?? "", /^[0-9A-F]+\/[0-9A-F]+$/);
    const read = await postQuery(
      bridge.url,
      {
        query: "select pg_is_in_recovery()::text as standby, count(*)::int as n from notes where id = 6",
        readOnly: true,
      },
      { "querygate-lsn": token as string },
    );
    assert.equal(
      read.body.result,
      [{ standby: "false", n: 1 }],
      "the token's read was served by the primary",
    );
    const batch = await postQuery(bridge.url, {
      statements: [{ query: "insert into notes values (7, 'seven')" }],
    });
    assert.match(batch.headers.get("querygate-lsn") ?? "", /^[0-9A-F]+\/[0-9A-F]+$/);
  } finally {
    await pair.resumeReplay();
  }
});

t("when the standby stops answering, reads go to the primary and query-grpc stays serving", async () => {
  const fallbacksBefore = await metric(grpc.metricsPort, 'querygate_reads_total{target="fallback"}');
  replicaRelay.refuse();
  try {
    // The first read after the standby went away fails there and is retried on the primary.
    const went = performance.now();
    const first = await readOn("select 1");
    const firstMs = performance.now() - went;
    assert.equal(first, { standby: false, rows: ["1"] });
    const next = performance.now();
    await readOn("select 1");
    console.log(
      `  standby gone: first read ${firstMs.toFixed(1)} ms (failed there, retried on the primary), the next ${(performance.now() - next).toFixed(1)} ms (breaker open)`,
    );
    await eventually(
      async () => (await metric(grpc.metricsPort, "querygate_replica_up")) === 0,
      10_000,
      "the replica to be reported down",
    );
    for (let i = 0; i < 4; i++) assert.equal(await readOn("select 1"), { standby: false, rows: ["1"] });
    assert.ok(
      (await metric(grpc.metricsPort, 'querygate_reads_total{target="fallback"}')) >= fallbacksBefore + 6,
      "each read counted as a fallback",
    );
    assert.is(grpc.health.status, Serving.SERVING, "the primary still serves: health stays SERVING");
  } finally {
    replicaRelay.accept();
  }
  await eventually(async () => (await readOn("select 1")).standby, 10_000, "reads to return to the standby");
});

t.run();
