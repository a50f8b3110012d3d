// Proves the primary + streaming standby harness (standby.ts) that the read
// replica and failover tests stand on: the standby really replays the
// primary's WAL, replay can be held back so a test can see a lagging
// replica, and promote() leaves one primary that lost no commit — after a
// crash too, when the standby is synchronous.
import pg from "pg";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { eventually } from "./helpers.js";
import { type StandbyPair, startStandbyPair } from "./standby.js";

const t = suite("standby");

let pair: StandbyPair;
// Every id whose insert the primary acknowledged, in order.
const committed: number[] = [];

async function on<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/** Inserts a row on the primary; resolves with the WAL position just after its commit. */
async function commitRow(id: number): Promise<string> {
  return on(pair.primaryUrl, async (client) => {
    await client.query("insert into notes (id) values ($1)", [id]);
    committed.push(id);
    const { rows } = await client.query<{ lsn: string }>("select pg_current_wal_lsn()::text as lsn");
    return rows[0]!.lsn;
  });
}

async function idsOn(url: string): Promise<number[]> {
  return on(url, async (client) => {
    const { rows } = await client.query<{ id: number }>("select id from notes order by id");
    return rows.map((row) => row.id);
  });
}

t.before(async () => {
  pair = await startStandbyPair().catch((error: Error) => {
    // uvu drops a hook's error: say why every test of the suite fails.
    console.error(`starting the standby pair failed: ${error.message}`);
    throw error;
  });
  await on(pair.primaryUrl, (client) => client.query("create table notes (id int primary key)"));
});

t.after(async () => {
  await pair?.stop();
});

t("a row committed on the primary becomes visible on the standby", async () => {
  const lsn = await commitRow(1);
  await pair.waitForReplay(lsn);
  assert.equal(await idsOn(pair.standbyUrl), [1]);
});

t("the standby refuses writes while it streams", async () => {
  const error = await on(pair.standbyUrl, (client) =>
    client.query("insert into notes (id) values (-1)").then(
      () => undefined,
      (e: pg.DatabaseError) => e,
    ),
  );
  assert.is(error?.code, "25006", "read_only_sql_transaction");
});

t(
  "while replay is paused a new row is not visible on the standby, which replays behind the primary",
  async () => {
    await pair.pauseReplay();
    const lsn = await commitRow(2);
    // The WAL has reached the standby: only replay holds the row back.
    await on(pair.standbyUrl, (client) =>
      eventually(
        async () => {
          const { rows } = await client.query<{ received: boolean }>(
            "select pg_last_wal_receive_lsn() >= $1::pg_lsn as received",
            [lsn],
          );
          return rows[0]!.received;
        },
        30_000,
        "the standby to receive the row's WAL",
      ),
    );
    assert.equal(await idsOn(pair.standbyUrl), [1]);
    const behind = await on(pair.standbyUrl, async (client) => {
      const { rows } = await client.query<{ behind: boolean }>(
        "select pg_last_wal_replay_lsn() < $1::pg_lsn as behind",
        [lsn],
      );
      return rows[0]!.behind;
    });
    assert.ok(behind, "the standby's replay position is behind the primary's");

    await pair.resumeReplay();
    await pair.waitForReplay(lsn);
    assert.equal(await idsOn(pair.standbyUrl), [1, 2]);
  },
);

t("after promote() the standby takes writes and has every row committed before", async () => {
  for (let id = 3; id <= 20; id++) await commitRow(id);
  await pair.promote();

  const inRecovery = await on(pair.standbyUrl, async (client) => {
    const { rows } = await client.query<{ recovering: boolean }>("select pg_is_in_recovery() as recovering");
    return rows[0]!.recovering;
  });
  assert.is(inRecovery, false);
  assert.equal(await idsOn(pair.standbyUrl), committed);
  await on(pair.standbyUrl, (client) => client.query("insert into notes (id) values (21)"));
  assert.equal(await idsOn(pair.standbyUrl), [...committed, 21]);
});

t.run();

// Issue 13's failover test promotes mid-load after a crash: only a
// synchronous standby is sure to hold every commit the primary acknowledged.
const sync = suite("synchronous standby");

let syncPair: StandbyPair;

sync.before(async () => {
  syncPair = await startStandbyPair({ synchronous: true });
  await on(syncPair.primaryUrl, (client) => client.query("create table notes (id int primary key)"));
});

sync.after(async () => {
  await syncPair?.stop();
});

sync("the primary counts the standby as synchronous", async () => {
  const states = await on(syncPair.primaryUrl, async (client) => {
    const { rows } = await client.query<{ sync_state: string }>("select sync_state from pg_stat_replication");
    return rows.map((row) => row.sync_state);
  });
  assert.equal(states, ["sync"]);
});

sync(
  "after the primary crashes mid-load, the promoted standby has every commit it acknowledged",
  async () => {
    const attempted = new Set<number>();
    const acknowledged: number[] = [];
    // Four writers that insert until the crash ends their connections.
    const writers = [0, 1, 2, 3].map(async (writer) => {
      const client = new pg.Client({ connectionString: syncPair.primaryUrl });
      client.on("error", () => {}); // the crash, reported again by the next query
      await client.connect();
      for (let id = writer * 100_000; ; id++) {
        attempted.add(id);
        try {
          await client.query("insert into notes (id) values ($1)", [id]);
        } catch {
          break;
        }
        acknowledged.push(id);
      }
      await client.end().catch(() => {});
    });
    await eventually(() => acknowledged.length >= 100, 30_000, "100 acknowledged commits");
    await syncPair.promote("immediate");
    await Promise.all(writers);

    const present = new Set(await idsOn(syncPair.standbyUrl));
    assert.equal(
      acknowledged.filter((id) => !present.has(id)),
      [],
      "no acknowledged commit is missing",
    );
    // A commit whose answer the crash cut off may be there or not; nothing else may.
    assert.equal(
      [...present].filter((id) => !attempted.has(id)),
      [],
    );
  },
);

sync.run();
