// PostgreSQL goes away under load and comes back: calls fail fast with
// UNAVAILABLE / HTTP 503, health says NOT_SERVING, and querygate recovers by
// itself. Uses a database of its own, since it stops it.
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import pg from "pg";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { type EmbeddedDatabase, startEmbeddedPostgres } from "../../../../scripts/embedded-postgres.js";
import {
  atEnd,
  eventually,
  execute,
  executeError,
  grpcClient,
  postQuery,
  startBridgeFor,
  startGrpc,
} from "../../../../test/helpers.js";
import { Serving } from "../grpc/health.js";

const t = suite("database outage");

let db: EmbeddedDatabase;
let server: Awaited<ReturnType<typeof startGrpc>>;
let client: ReturnType<typeof grpcClient>;
let bridgeUrl: string;

t.before(async () => {
  const dataDir = join(".data", `outage-${process.pid}`);
  db = await startEmbeddedPostgres({ dataDir });
  atEnd(async () => {
    // remove(): as root the data may live elsewhere than dataDir.
    await db.remove().catch(() => {});
  });
  server = await startGrpc({ DATABASE_URL: db.url, CONNECT_TIMEOUT_MS: "1000", POOL_MAX: "4" });
  client = grpcClient(server.target);
  bridgeUrl = (await startBridgeFor(server.target)).url;
  await execute(client, { sql: "create table ledger (id serial primary key, note text)" });
});

t(
  "while PostgreSQL is down calls fail fast, health is NOT_SERVING, and it all recovers without a restart",
  async () => {
    assert.is(server.health.status, Serving.SERVING);
    // Steady load before, during and after the outage.
    let running = true;
    const outcomes: Array<{ code: number; ms: number; kind?: string }> = [];
    const load = (async () => {
      while (running) {
        const started = Date.now();
        try {
          await execute(client, { sql: "insert into ledger (note) values ('load')" });
          outcomes.push({ code: status.OK, ms: Date.now() - started });
        } catch (error) {
          const e = error as { code: number; error?: { kind: string } };
          outcomes.push({ code: e.code, ms: Date.now() - started, kind: e.error?.kind });
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      }
    })();
    await eventually(() => outcomes.length > 5, 5000, "some load");

    await db.stop();
    await eventually(() => server.health.status === Serving.NOT_SERVING, 5000, "NOT_SERVING");
    const started = Date.now();
    const error = await executeError(client, { sql: "select 1" });
    assert.is(error.code, status.UNAVAILABLE);
    assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`);
    const response = await postQuery(bridgeUrl, { query: "select 1" });
    assert.is(response.status, 503);

    await db.start();
    await eventually(() => server.health.status === Serving.SERVING, 10_000, "SERVING again");
    await eventually(
      async () => {
        try {
          await execute(client, { sql: "select 1" });
          return true;
        } catch {
          return false;
        }
      },
      10_000,
      "queries to work again",
    );
    running = false;
    await load;

    const failed = outcomes.filter((o) => o.code !== status.OK);
    assert.ok(failed.length > 0, "the outage was felt");
    assert.ok(
      failed.every((o) => o.code === status.UNAVAILABLE),
      `codes: ${[...new Set(failed.map((o) => o.code))]}`,
    );
    assert.ok(
      failed.every((o) => o.ms < 3000),
      `slowest failure ${Math.max(...failed.map((o) => o.ms))} ms`,
    );
    // Every insert that was acknowledged is there (and nothing more): count them.
    const acknowledged = outcomes.filter((o) => o.code === status.OK).length;
    const stored = await execute(client, { sql: "select count(*) from ledger" });
    assert.is(Number(stored.rows[0]?.[0]), acknowledged);
  },
);

t(
  "a connection that breaks mid-stream ends that stream with UNAVAILABLE and the pool discards it",
  async () => {
    const admin = new pg.Client(db.url);
    await admin.connect();
    try {
      const call = executeError(client, {
        sql: "select g, pg_sleep(0.0005) from generate_series(1, 20000) g /* doomed */",
      });
      await eventually(
        async () =>
          (
            await admin.query(
              "select count(*)::int as n from pg_stat_activity where query like '%/* doomed */%' and pid <> pg_backend_pid()",
            )
          ).rows[0].n === 1,
        5000,
        "the stream to start",
      );
      await admin.query(
        "select pg_terminate_backend(pid) from pg_stat_activity where query like '%/* doomed */%' and pid <> pg_backend_pid()",
      );
      const error = await call;
      assert.is(error.code, status.UNAVAILABLE);
      assert.match(error.details, /terminat/);
      for (let i = 0; i < 6; i++) {
        const result = await execute(client, { sql: "select 1" });
        assert.equal(result.rows, [["1"]]);
      }
    } finally {
      await admin.end();
    }
  },
);

t.run();
