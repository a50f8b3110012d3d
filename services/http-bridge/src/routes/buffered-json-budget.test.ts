// Buffered JSON responses share one budget (MAX_BUFFERED_JSON_BYTES): past it
// a response waits for others to finish rather than failing, because failing
// would cancel a write that may be committing. These run the whole stack
// with a 256 KiB budget and results of about 620 KB each.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { eventually, postQuery, startStack } from "../../../../test/helpers.js";

const t = suite("buffered JSON over the bridge-wide budget");

const BUDGET = 256 * 1024;
let url: string;

t.before(async () => {
  ({ url } = await startStack({}, { MAX_BUFFERED_JSON_BYTES: String(BUDGET) }));
  await postQuery(url, { query: "create table budget_writes (token text, n int, v text)" });
});

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
  if (!line) throw new Error(`no ${name} in the bridge's /metrics`);
  return Number(line.slice(line.lastIndexOf(" ") + 1));
}

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
    await eventually(
      async () => (await metric("querygate_http_buffered_json_bytes")) === 0,
      5000,
      "the budget to be given back",
    );
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
    await eventually(
      async () => (await metric("querygate_http_buffered_json_bytes")) === 0,
      5000,
      "the budget to be given back",
    );
    const again = await postQuery(url, { query: bigRead(7) });
    assert.is(again.status, 200, again.text.slice(0, 300));
    assert.is(again.body.result.length, 600);
  },
);

t.run();
