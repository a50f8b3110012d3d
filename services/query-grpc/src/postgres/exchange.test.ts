// The Exchange against a real PostgreSQL connection, for what its callers
// cannot arrange at will: the order in which one answer's messages arrive.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { adminClient, eventually } from "../../../../test/helpers.js";
import { Exchange, type Step } from "./exchange.js";

const t = suite("an exchange's streamed rows");

/** Sends `steps` on a connection of its own, the first one's rows streamed in batches of `batchRows`. */
async function streamed(steps: Step[], batchRows: number): Promise<{ exchange: Exchange; pid: number }> {
  const client = await adminClient();
  const pid = (await client.query("select pg_backend_pid() as pid")).rows[0].pid as number;
  const exchange = new Exchange(steps, "sync");
  exchange.streamRows(0, { rows: batchRows, bytes: 1 << 20 });
  client.query(exchange as never);
  return { exchange, pid };
}

const statement = (sql: string): Step => ({ sql, describe: true, rows: 0, role: "statement" });

t("a streamed step that completed is whole, even when a later step of the exchange fails", async () => {
  // PostgreSQL answers all of it at once: 150 rows, their end, then the later step's error.
  const { exchange } = await streamed(
    [statement("select g from generate_series(1, 150) g"), { sql: "select 1 / 0", role: "after" }],
    1000,
  );
  await exchange.done().catch(() => {});
  const first = await exchange.take(100);
  assert.is(first.rows.length, 100);
  assert.is(first.ended, false);
  const rest = await exchange.take(100);
  assert.equal(
    rest.rows.map((r) => r[0]),
    Array.from({ length: 50 }, (_, i) => String(101 + i)),
  );
  assert.is(rest.ended, true);
  assert.is(exchange.failedIn, "after", "the later failure is still the exchange's");
});

t("a part of a batch that arrived before the streamed step failed is not handed over", async () => {
  const { exchange } = await streamed(
    [statement("select 10 / (60 - g) from generate_series(1, 100) g")],
    1000,
  );
  await exchange.done().catch(() => {});
  const error = await exchange.take(100).then(
    () => undefined,
    (e: { code?: string }) => e,
  );
  assert.is(error?.code, "22012");
});

t("rows streamed before anyone takes them are held back from the first one", async () => {
  // 100 MB of rows, and nobody takes any for a while (as while column types are looked up).
  const { exchange, pid } = await streamed(
    [statement("select g, repeat('x', 1000) from generate_series(1, 100000) g")],
    100,
  );
  const admin = await adminClient();
  const waiting = async () =>
    (
      await admin.query(
        "select 1 from pg_stat_activity where pid = $1 and state = 'active' and wait_event = 'ClientWrite'",
        [pid],
      )
    ).rowCount === 1;
  await eventually(waiting, 5000, "PostgreSQL to wait on a full socket");
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.ok(await waiting(), "still held back");
  const buffered = exchange.results[0]?.rows.length ?? 0;
  // The paused socket's last chunk (64 kB, about 60 of these rows) may land after the pause.
  assert.ok(buffered < 1000, `${buffered} rows buffered`);
  exchange.abandonRows();
  await exchange.done();
});

t(
  "a step that cannot be serialized fails its exchange and closes the connection, even when pg submits it from its queue",
  async () => {
    const client = await adminClient();
    const lost = new Promise<void>((resolve) => client.once("end", () => resolve()));
    client.on("error", () => {});
    // Busy: pg submits the exchange later, from the socket event that ends this query.
    const before = client.query("select pg_sleep(0.2)");
    // A row count the Execute message cannot carry (uint32): pg's serializer throws.
    const exchange = new Exchange([{ ...statement("select 1"), rows: 2 ** 32 }], "sync");
    client.query(exchange as never);
    await before;
    const failure = await exchange.done().then(
      () => undefined,
      (error: unknown) => error,
    );
    assert.ok(failure instanceof Error, "the exchange failed");
    // Part of the pipeline may have been buffered: the connection is not used again.
    await lost;
  },
);

t.run();
