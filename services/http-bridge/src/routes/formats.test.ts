// Choosing a format with Accept (and rowMode), and the promise every streamed
// format keeps: a result cut short never looks like a whole one.
import { RecordBatchReader } from "apache-arrow";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  adminClient,
  eventually,
  postQuery,
  runningStatements,
  startStack,
} from "../../../../test/helpers.js";
import { postRaw } from "../../../../test/http-raw.js";

const t = suite("http-bridge formats");
let url: string;
let admin: Awaited<ReturnType<typeof adminClient>>;
const ARROW = "application/vnd.apache.arrow.stream";
/** Fails at row 3000, well after the first batches went out. */
const FAILS_LATE = "select g, 10 / (3000 - g) as q from generate_series(1, 5000) g";

t.before(async () => {
  url = (await startStack()).url;
  admin = await adminClient();
});

t('rowMode "array" gives JSON rows as arrays in column order, keeping duplicate names', async () => {
  const response = await postQuery(url, {
    query: "select 1 as a, 'x' as a, null::int as b",
    rowMode: "array",
  });
  assert.is(response.status, 200, response.text);
  assert.equal(response.body.result, [[1, "x", null]]);
  assert.equal(
    response.body.columns.map((c: { name: string }) => c.name),
    ["a", "a", "b"],
  );
  const objects = await postQuery(url, { query: "select 1 as a, 2 as b" });
  assert.equal(objects.body.result, [{ a: 1, b: 2 }], "without rowMode rows stay objects");
});

t("an Accept parameter rows=array gives NDJSON and JSON rows as arrays", async () => {
  const ndjson = await postQuery(
    url,
    { query: "select g, g::text as s from generate_series(1, 2) g" },
    { accept: "application/x-ndjson; rows=array" },
  );
  assert.equal(
    ndjson.body.filter((line: { row?: unknown }) => line.row).map((line: { row: unknown }) => line.row),
    [
      [1, "1"],
      [2, "2"],
    ],
  );
  const json = await postQuery(url, { query: "select 1 as one" }, { accept: "application/json;rows=array" });
  assert.equal(json.body.result, [[1]]);
  const bodyWins = await postQuery(
    url,
    { query: "select 1 as one", rowMode: "object" },
    { accept: "application/json; rows=array" },
  );
  assert.equal(bodyWins.body.result, [{ one: 1 }], "rowMode in the body beats the Accept parameter");
});

t("a rowMode that is neither object nor array is a 400 that names it", async () => {
  const response = await postQuery(url, { query: "select 1", rowMode: "columns" });
  assert.is(response.status, 400);
  assert.match(response.body.error.message, /rowMode/);
});

t("an Accept the bridge does not know, or a wildcard, keeps the original JSON answer", async () => {
  for (const accept of ["*/*", "text/html", "application/xml, text/plain;q=0.5", "text/csv;q=0"]) {
    const response = await postQuery(url, { query: "select 1 as one" }, { accept });
    assert.is(response.status, 200, accept);
    assert.match(response.headers.get("content-type") ?? "", /application\/json/, accept);
    assert.equal(response.body.result, [{ one: 1 }], accept);
  }
  const preferred = await postRaw(
    url,
    { query: "select 1 as one" },
    { accept: "application/json;q=0.5, text/csv" },
  );
  assert.match(String(preferred.headers["content-type"]), /^text\/csv/, "the highest q wins");
});

t("a whole CSV result ends with trailers carrying its row count, command and truncation", async () => {
  const response = await postRaw(
    url,
    { query: "select g from generate_series(1, 10) g", maxRows: 3 },
    { accept: "text/csv" },
  );
  assert.ok(response.complete);
  assert.is(response.body.toString(), "g\n1\n2\n3\n");
  assert.match(String(response.headers.trailer), /querygate-row-count/);
  assert.equal(response.trailers, {
    "querygate-row-count": "3",
    "querygate-command": "SELECT",
    "querygate-truncated": "true",
  });
});

for (const [name, accept] of [
  ["CSV", "text/csv"],
  ["Arrow", ARROW],
] as const) {
  t(
    `a ${name} result that fails after rows went out ends in a transfer error, without trailers`,
    async () => {
      const response = await postRaw(url, { query: FAILS_LATE }, { accept });
      assert.is(response.status, 200);
      assert.ok(response.body.length > 0, "rows were sent before the error");
      assert.not.ok(response.complete, "the client sees the transfer cut, not a normal end");
      assert.equal(response.trailers, {});
      const after = await postQuery(url, { query: "select 'still here' as s" });
      assert.equal(after.body.result, [{ s: "still here" }], "the bridge keeps serving");
    },
  );

  t(
    `a ${name} request that fails before any row is an ordinary HTTP error with PostgreSQL's fields`,
    async () => {
      const response = await postRaw(url, { query: "select 1 fro m" }, { accept });
      assert.is(response.status, 400);
      assert.ok(response.complete);
      assert.is(JSON.parse(response.body.toString()).error.code, "42601");
    },
  );
}

t(
  "the rows an Arrow reader got from a cut stream are fewer than the result, and it cannot tell by itself",
  async () => {
    // Why the cut matters: the partial bytes parse as a valid, shorter stream.
    const response = await postRaw(url, { query: FAILS_LATE }, { accept: ARROW });
    let rows = 0;
    try {
      for (const batch of RecordBatchReader.from(response.body)) rows += batch.numRows;
    } catch {
      // a batch cut in half may not parse; the rows before it did
    }
    assert.ok(rows < 3000, `${rows} rows`);
    assert.not.ok(response.complete);
  },
);

t(
  "a value Arrow cannot hold (NaN in a numeric(5,1) column) cuts the stream instead of guessing",
  async () => {
    const response = await postRaw(
      url,
      { query: "select x from (values (1.5::numeric(5,1)), ('NaN'::numeric(5,1))) v(x)" },
      { accept: ARROW },
    );
    assert.is(response.status, 200);
    assert.not.ok(response.complete);
    assert.equal(response.trailers, {});
  },
);

t("a client that leaves a CSV stream gets its statement cancelled", async () => {
  const abort = new AbortController();
  const response = await fetch(`${url}/query`, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "text/csv" },
    body: JSON.stringify({
      query: "select g, pg_sleep(0.005)::text as slept from generate_series(1, 100000) g /* csv-abort */",
    }),
    signal: abort.signal,
  });
  assert.is(response.status, 200);
  const first = await response.body!.getReader().read();
  assert.ok(first.value && first.value.length > 0, "a first chunk arrives");
  await eventually(async () => (await runningStatements(admin, "%csv-abort%")) === 1, 5000, "the statement");
  abort.abort();
  await eventually(async () => (await runningStatements(admin, "%csv-abort%")) === 0, 5000, "the cancel");
});

t.run();
