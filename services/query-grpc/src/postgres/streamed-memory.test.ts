// A streamed result must cost query-grpc a few batches of memory, whatever
// its size: rows already handed to the caller may not stay reachable from the
// engine while the rest streams. A one-statement transaction keeps its one
// Exchange for the whole statement, so whatever that exchange keeps of each
// batch adds up with the result.
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ExecuteRequest, type ExecuteResponse } from "../../../../proto/gen/querygate/v1/query.js";
import { eventually, execute, grpcClient, startGrpc } from "../../../../test/helpers.js";

const t = suite("memory of a streamed result");

const ROWS = 100_000;
const ROW_BYTES = 2000;
const PAUSE_AT = 60_000;

let client: ReturnType<typeof grpcClient>;

t.before(async () => {
  const server = await startGrpc({ POOL_MAX: "1" });
  client = grpcClient(server.target);
  await execute(client, { sql: "create table if not exists streamed_memory_sink (n int)" });
});

/** The heap in use after a full collection, taken from a later task so nothing of the current job pins what it touched. */
async function heapAfterGc(): Promise<number> {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  await new Promise((resolve) => setImmediate(resolve));
  gc();
  return process.memoryUsage().heapUsed;
}

/**
 * Runs `sql` and pauses reading once `pauseAt` rows arrived; returns how much
 * the heap grew by then (`settleMs` later), and cancels the call.
 */
async function grownWhilePaused(
  sql: string,
  readOnly: boolean,
  pauseAt: number,
  settleMs: number,
): Promise<{ grown: number; received: number }> {
  const before = await heapAfterGc();
  const call = client.execute(ExecuteRequest.fromPartial({ sql, options: { readOnly } }));
  let received = 0;
  let paused = false;
  call.on("data", (message: ExecuteResponse) => {
    received += message.rows?.rows.length ?? 0;
    if (!paused && received >= pauseAt) {
      paused = true;
      call.pause();
    }
  });
  const ended = new Promise<void>((resolve) => call.on("status", () => resolve()));
  call.on("error", () => {});
  await eventually(() => paused, 60_000, `${pauseAt} rows to arrive`);
  await new Promise((resolve) => setTimeout(resolve, settleMs));
  const grown = (await heapAfterGc()) - before;
  call.cancel();
  await ended;
  // The cancelled call's connection came back fit (POOL_MAX 1): the next call runs on it.
  const next = await execute(client, { sql: "select 1", options: { readOnly } });
  assert.equal(next.rows, [["1"]]);
  return { grown, received };
}

for (const readOnly of [false, true]) {
  // Read-only: one Execute for the whole result, PostgreSQL held back on its socket while the caller is slow.
  const how = readOnly ? "read-only, in one trip" : "read-write, in batches";
  t(`rows already sent are not kept while the rest of a large Execute result streams (${how})`, async () => {
    const sql = `select repeat('x', ${ROW_BYTES}) from generate_series(1, ${ROWS})`;
    const { grown, received } = await grownWhilePaused(sql, readOnly, PAUSE_AT, 0);
    // Keeping the rows sent so far would be at least PAUSE_AT * ROW_BYTES (120 MB).
    const limit = (PAUSE_AT * ROW_BYTES) / 3;
    assert.ok(
      grown < limit,
      `the heap grew by ${Math.round(grown / 1e6)} MB with ${received} rows of ${ROW_BYTES} bytes sent (limit ${Math.round(limit / 1e6)} MB)`,
    );
  });
}

// 150 rows of 1 MB: fewer rows than the first batch (100) and one more (2,000) hold.
const WIDE_ROWS = "repeat('x', 1000000) from generate_series(1, 150) as g";
for (const [how, sql, readOnly] of [
  ["a read-only read, in one trip", `select ${WIDE_ROWS}`, true],
  // A statement that may write reads its rows before COMMIT goes out, in a round trip of its own.
  [
    "a write's RETURNING, before its COMMIT",
    `with written as (insert into streamed_memory_sink select g from generate_series(1, 150) as g returning n) select repeat('x', 1000000) from written`,
    false,
  ],
] as const) {
  t(`a result of wide rows costs a few messages of memory while its reader is paused (${how})`, async () => {
    // A second for whatever would pile up to pile up.
    const { grown, received } = await grownWhilePaused(sql, readOnly, 1, 1000);
    assert.ok(
      grown < 60e6,
      `the heap grew by ${Math.round(grown / 1e6)} MB with ${received} rows received (limit 60 MB)`,
    );
  });
}

t.run();
