// Buffered JSON responses share one budget (MAX_BUFFERED_JSON_BYTES): past it
// a response waits for others to finish rather than failing, because failing
// would cancel a write that may be committing. These run the whole stack
// with a 256 KiB budget and results of about 620 KB each.
import { connect, type Socket } from "node:net";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  adminClient,
  bridgeMetric,
  eventually,
  type JsonBody,
  postQuery,
  rawQueryRequest,
  runningStatements,
  startStack,
} from "../../../../test/helpers.js";

const t = suite("buffered JSON over the bridge-wide budget");

const BUDGET = 256 * 1024;
let url: string;

t.before(async () => {
  ({ url } = await startStack({}, { MAX_BUFFERED_JSON_BYTES: String(BUDGET) }));
  await postQuery(url, { query: "create table budget_writes (token text, n int, v text)" });
});

const metric = (name: string) => bridgeMetric(url, name);

/** Every share of the budget comes back (the gauge reads 0) within 5 s. */
const budgetGivenBack = (what = "the budget to be given back") =>
  eventually(async () => (await metric("querygate_http_buffered_json_bytes")) === 0, 5000, what);

// pg_sleep in FROM runs once, before the rows: every statement starts its rows together.
const bigRead = (i: number) =>
  `select g as n, '${i}' || repeat('x', 1000) as v from generate_series(1, 600) g, pg_sleep(0.2)`;
const bigWrite = (token: string) =>
  `insert into budget_writes select '${token}', g, repeat('y', 1000) from generate_series(1, 600) g, pg_sleep(0.2) returning n, v`;

t(
  "results that together pass the budget wait their turn and all arrive whole; each write commits once",
  async () => {
    const waitsBefore = await metric("querygate_http_buffered_json_waits_total");
    const reads = [1, 2, 3].map((i) => postQuery(url, { query: bigRead(i) }));
    const writes = ["w1", "w2", "w3"].map((token) => postQuery(url, { query: bigWrite(token) }));
    const answers = await Promise.all([...reads, ...writes]);
    for (const [index, answer] of answers.entries()) {
      assert.is(answer.status, 200, answer.text.slice(0, 300));
      assert.is(answer.body.result.length, 600, `answer ${index}`);
      assert.is(answer.body.result[599].n, 600);
    }
    for (const [index, answer] of answers.slice(0, 3).entries())
      assert.ok(answer.body.result[0].v.startsWith(`${index + 1}xxx`), "each read got its own rows");
    const counts = await postQuery(url, {
      query: "select token, count(*)::int as rows from budget_writes group by token order by token",
    });
    assert.equal(counts.body.result, [
      { token: "w1", rows: 600 },
      { token: "w2", rows: 600 },
      { token: "w3", rows: 600 },
    ]);
    assert.ok(
      (await metric("querygate_http_buffered_json_waits_total")) > waitsBefore,
      "six results of 620 KB at once must have waited for a 256 KiB budget",
    );
    await budgetGivenBack();
  },
);

t(
  "a caller who leaves while its result waits gives its share back, and the bridge goes on serving",
  async () => {
    const waitsBefore = await metric("querygate_http_buffered_json_waits_total");
    // The older result holds 100 KB (its first batch) and then takes about 3 s for the rest.
    const slow = postQuery(url, {
      query:
        "select g as n, repeat('s', 1000) as v, pg_sleep(case when g > 100 then 0.01 else 0 end) as p from generate_series(1, 400) g",
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const leaving = new AbortController();
    const left = fetch(`${url}/query`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: bigRead(9) }),
      signal: leaving.signal,
    }).catch((error: Error) => error);
    await eventually(
      async () => (await metric("querygate_http_buffered_json_waits_total")) > waitsBefore,
      5000,
      "the younger result to wait",
    );
    leaving.abort();
    assert.instance(await left, Error);
    const quick = await postQuery(url, { query: "select 1 as one" });
    assert.equal(quick.body.result, [{ one: 1 }], "a small result does not wait for the budget");
    const older = await slow;
    assert.is(older.status, 200, older.text.slice(0, 300));
    assert.is(older.body.result.length, 400);
    await budgetGivenBack();
    const again = await postQuery(url, { query: bigRead(7) });
    assert.is(again.status, 200, again.text.slice(0, 300));
    assert.is(again.body.result.length, 600);
  },
);

/** Requests sent back to back on one connection (HTTP/1.1 pipelining). */
function pipelined(...sqls: string[]): Socket {
  const socket = connect(Number(new URL(url).port), "127.0.0.1");
  socket.on("error", () => {});
  for (const sql of sqls) socket.write(rawQueryRequest(sql));
  return socket;
}

/** The JSON bodies of the first `count` responses on `socket`, in order (each has a content-length). */
function responses(socket: Socket, count: number): Promise<Array<{ status: number; body: JsonBody }>> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const parsed: Array<{ status: number; body: JsonBody }> = [];
    // A deadlock shows as this, not as a test that never ends.
    const stuck = setTimeout(
      () => reject(new Error(`only ${parsed.length} of ${count} responses in 15 s`)),
      15_000,
    );
    socket.on("data", (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        const end = buffered.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = buffered.subarray(0, end).toString("latin1");
        const length = Number(/content-length: (\d+)/i.exec(head)?.[1]);
        if (buffered.length < end + 4 + length) return;
        const body = JSON.parse(buffered.subarray(end + 4, end + 4 + length).toString("utf8"));
        parsed.push({ status: Number(head.slice(9, 12)), body });
        buffered = buffered.subarray(end + 4 + length);
        if (parsed.length === count) {
          clearTimeout(stuck);
          return resolve(parsed);
        }
      }
    });
    socket.on("close", () => {
      clearTimeout(stuck);
      reject(new Error(`connection closed after ${parsed.length} responses`));
    });
  });
}

t("two answers pipelined on one connection, the second assembled first, both arrive whole", async () => {
  // The first starts its rows 0.5 s late: the second, which cannot be sent
  // before it, has taken its share by then. Were the second the oldest
  // holder, the first would wait for a share only the second can give back.
  const socket = pipelined(
    `select g as n, repeat('a', 1000) as v from generate_series(1, 600) g, pg_sleep(0.5)`,
    `select g as n, repeat('b', 1000) as v from generate_series(1, 600) g`,
  );
  const [first, second] = await responses(socket, 2);
  socket.destroy();
  assert.is(first?.status, 200);
  assert.is(second?.status, 200);
  assert.is(first?.body.result.length, 600);
  assert.ok(first?.body.result[0].v.startsWith("aaa"));
  assert.is(second?.body.result.length, 600);
  assert.ok(second?.body.result[0].v.startsWith("bbb"));
  await budgetGivenBack();
});

t("an answer queued behind another on a connection that closes gives its share back", async () => {
  // Node closes neither a queued response nor its request's signal when the connection goes.
  const socket = pipelined(
    "select pg_sleep(2)",
    `select g as n, repeat('q', 1000) as v from generate_series(1, 600) g`,
  );
  await eventually(
    async () => (await metric("querygate_http_buffered_json_bytes")) > 0,
    5000,
    "the queued answer to take its share",
  );
  socket.destroy();
  await budgetGivenBack("the queued answer's share to be given back");
  const after = await postQuery(url, { query: bigRead(8) });
  assert.is(after.status, 200, after.text.slice(0, 300));
  assert.is(after.body.result.length, 600);
});

t(
  "a statement queued behind another on a connection that closes is stopped, not run to its end",
  async () => {
    const admin = await adminClient();
    const socket = pipelined("select pg_sleep(10)", "select 'queued' /* queued-cancel */ from pg_sleep(10)");
    await eventually(
      async () => (await runningStatements(admin, "%queued-cancel%")) === 1,
      5000,
      "the queued statement to start",
    );
    socket.destroy();
    await eventually(
      async () => (await runningStatements(admin, "%queued-cancel%")) === 0,
      5000,
      "the queued statement to be cancelled",
    );
  },
);

t.run();
