// Promotion of the standby in the middle of load (issue 13). query-grpc
// reaches the primary through a relay, as it would a service address; the
// primary stops, the standby is promoted, and the relay is pointed at it, so
// the pool reconnects to the new primary. Writers insert rows with ids of
// their own into a table without a key, so a write applied twice would show
// as two rows; a write that failed short of COMMIT is sent again by the
// writer (querygate never retries one), one whose COMMIT answer was lost
// (commit_unknown) is not. Readers run read-only statements on the replica
// path and, through a second query-grpc with no replica, on the primary
// path. In the end every acknowledged write is on the new primary exactly once.
import pg from "pg";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { eventually, grpcClient } from "./helpers.js";
import { startRelay } from "./relay.js";
import { type CallFailure, metric, run, startGrpcOn } from "./replica-client.js";
import { type StandbyPair, startStandbyPair } from "./standby.js";

const t = suite("failover under load");

let pair: StandbyPair;

t.before(async () => {
  pair = await startStandbyPair().catch((error: Error) => {
    console.error(`starting the standby pair failed: ${error.message}`);
    throw error;
  });
});

t.after(async () => {
  await pair?.stop();
});

const WRITERS = 4;
const READERS = 2;
const BEFORE = 150; // acknowledged writes before the failover
const AFTER = 150; // and after it
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

t("promoting the standby mid-load loses no acknowledged write and applies none twice", async () => {
  const relay = await startRelay(Number(new URL(pair.primaryUrl).port));
  const env = { DATABASE_URL: relay.via(pair.primaryUrl), REPLICA_PROBE_INTERVAL_MS: "200" };
  const grpc = await startGrpcOn({ ...env, DATABASE_READ_URL: pair.standbyUrl });
  const primaryOnly = await startGrpcOn(env);
  const client = grpcClient(grpc.target);
  const primaryClient = grpcClient(primaryOnly.target);
  const created = await run(client, { sql: "create table ledger (id int not null, writer int not null)" });
  // Readers on the standby must find the table: wait for the position the DDL's answer carries.
  await pair.waitForReplay(created.lsn as string);

  const counts = {
    writes: 0,
    writeFailures: 0,
    writerResends: 0,
    commitUnknown: [] as number[],
    reads: 0,
    readFailures: 0,
  };
  const failureKinds = new Map<string, number>();
  const acked: number[] = [];
  let failedOver = false;
  let ackedAfter = 0;
  let stop = false;
  let nextId = 1;

  const writer = async (w: number) => {
    while (!stop) {
      const id = nextId++;
      for (;;) {
        counts.writes++;
        try {
          await run(client, {
            sql: "insert into ledger (id, writer) values ($1, $2)",
            params: [{ intValue: String(id) }, { intValue: String(w) }],
          });
          acked.push(id);
          if (failedOver) ackedAfter++;
          break;
        } catch (error) {
          const { kind = "none", sqlstate } = error as CallFailure;
          counts.writeFailures++;
          const label = `write:${kind}${sqlstate ? `:${sqlstate}` : ""}`;
          failureKinds.set(label, (failureKinds.get(label) ?? 0) + 1);
          if (kind === "commit_unknown") {
            counts.commitUnknown.push(id);
            break;
          }
          // Failed short of COMMIT: nothing was written, so the same row may be sent again.
          counts.writerResends++;
          await pause(20);
        }
      }
    }
  };
  const reader = async (on: typeof client, path: string) => {
    while (!stop) {
      counts.reads++;
      try {
        await run(on, { sql: "select count(*) from ledger", options: { readOnly: true } });
      } catch (error) {
        counts.readFailures++;
        const { kind = "none", sqlstate } = error as CallFailure;
        const label = `read(${path}):${kind}${sqlstate ? `:${sqlstate}` : ""}`;
        failureKinds.set(label, (failureKinds.get(label) ?? 0) + 1);
        await pause(20);
      }
    }
  };

  const load = Promise.all([
    ...Array.from({ length: WRITERS }, (_, w) => writer(w)),
    ...Array.from({ length: READERS }, () => reader(client, "replica")),
    reader(primaryClient, "primary"),
  ]);
  try {
    await eventually(() => acked.length >= BEFORE, 60_000, `${BEFORE} acknowledged writes`);
    const started = Date.now();
    await pair.promote("fast");
    relay.retarget(Number(new URL(pair.standbyUrl).port));
    failedOver = true;
    const promotedMs = Date.now() - started;
    await eventually(() => ackedAfter >= AFTER, 60_000, `${AFTER} acknowledged writes after the failover`);
    console.log(`  failover: primary stopped and standby promoted in ${promotedMs} ms`);
  } finally {
    stop = true;
    await load;
  }

  const db = new pg.Client({ connectionString: pair.standbyUrl });
  await db.connect();
  const { rows } = await db
    .query<{ id: number; n: number }>("select id, count(*)::int as n from ledger group by id")
    .finally(() => db.end());
  const stored = new Map(rows.map((r) => [r.id, r.n]));
  const lost = acked.filter((id) => !stored.has(id));
  const duplicated = [...stored].filter(([, n]) => n > 1).map(([id]) => id);
  const unknownCommitted = counts.commitUnknown.filter((id) => stored.has(id)).length;
  const readRetries =
    (await metric(grpc.metricsPort, "querygate_read_retries_total")) +
    (await metric(primaryOnly.metricsPort, "querygate_read_retries_total"));
  const retriesByReason = async (port: number) => {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    return text
      .split("\n")
      .filter((l) => l.startsWith("querygate_read_retries_total{"))
      .map((l) => l.replace(/^querygate_read_retries_total\{reason="([^"]+)".*\} /, "$1="))
      .join(" ");
  };
  console.log(
    [
      `  requests: ${counts.writes} writes (${acked.length} acknowledged), ${counts.reads} reads`,
      `  failures: ${counts.writeFailures} writes, ${counts.readFailures} reads; by kind ${JSON.stringify(Object.fromEntries(failureKinds))}`,
      `  retries: ${counts.writerResends} writes re-sent by the writers (failed short of COMMIT), ${readRetries} reads retried by querygate (replica path: ${await retriesByReason(grpc.metricsPort)}; primary path: ${await retriesByReason(primaryOnly.metricsPort)})`,
      `  commit_unknown: ${counts.commitUnknown.length} (${unknownCommitted} of them had committed)`,
      `  lost acknowledged writes: ${lost.length}, duplicated writes: ${duplicated.length}`,
    ].join("\n"),
  );
  assert.equal(lost, [], "every acknowledged write is on the new primary");
  assert.equal(duplicated, [], "no write was applied twice");
  assert.ok(ackedAfter >= AFTER, "writes went on after the failover, on the promoted standby");
});

t.run();
