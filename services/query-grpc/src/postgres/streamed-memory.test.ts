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
});

for (const readOnly of [false, true]) {
  // Read-only: one Execute for the whole result, PostgreSQL held back on its socket while the caller is slow.
  const how = readOnly ? "read-only, in one trip" : "read-write, in batches";
  t(`rows already sent are not kept while the rest of a large Execute result streams (${how})`, async () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const heapAfterGc = async () => {
      // Collect from a later task, so nothing of the current job pins what it touched.
      await new Promise((resolve) => setImmediate(resolve));
      gc();
      return process.memoryUsage().heapUsed;
    };
    const before = await heapAfterGc();
    const call = client.execute(
      ExecuteRequest.fromPartial({
        sql: `select repeat('x', ${ROW_BYTES}) from generate_series(1, ${ROWS})`,
        options: { readOnly },
      }),
    );
    let received = 0;
    let paused = false;
    call.on("data", (message: ExecuteResponse) => {
      received += message.rows?.rows.length ?? 0;
      if (!paused && received >= PAUSE_AT) {
        paused = true;
        call.pause();
      }
    });
    const ended = new Promise<void>((resolve) => call.on("status", () => resolve()));
    call.on("error", () => {});
    await eventually(() => paused, 60_000, `${PAUSE_AT} rows to arrive`);
    const grown = (await heapAfterGc()) - before;
    call.cancel();
    await ended;
    // Keeping the rows sent so far would be at least PAUSE_AT * ROW_BYTES (120 MB).
    const limit = (PAUSE_AT * ROW_BYTES) / 3;
    assert.ok(
      grown < limit,
      `the heap grew by ${Math.round(grown / 1e6)} MB with ${received} rows of ${ROW_BYTES} bytes sent (limit ${Math.round(limit / 1e6)} MB)`,
    );
    // The cancelled call's connection came back fit (POOL_MAX 1): the next call runs on it.
    const next = await execute(client, { sql: "select 1", options: { readOnly } });
    assert.equal(next.rows, [["1"]]);
  });
}

t("a result of wide rows costs a few messages of memory while its reader is paused", async () => {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  const heapAfterGc = async () => {
    await new Promise((resolve) => setImmediate(resolve));
    gc();
    return process.memoryUsage().heapUsed;
  };
  const before = await heapAfterGc();
  // 400 rows of 500 kB: 200 MB, fewer rows than one batch (2,000) holds.
  const call = client.execute(
    ExecuteRequest.fromPartial({
      sql: "select repeat('x', 500000) from generate_series(1, 400)",
      options: { readOnly: true },
    }),
  );
  let received = 0;
  call.on("data", (message: ExecuteResponse) => {
    received += message.rows?.rows.length ?? 0;
    if (received > 0) call.pause();
  });
  const ended = new Promise<void>((resolve) => call.on("status", () => resolve()));
  call.on("error", () => {});
  await eventually(() => received > 0, 30_000, "the first rows to arrive");
  // Time for whatever would pile up to pile up.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const grown = (await heapAfterGc()) - before;
  call.cancel();
  await ended;
  const limit = 60e6;
  assert.ok(
    grown < limit,
    `the heap grew by ${Math.round(grown / 1e6)} MB with ${received} rows received (limit 60 MB)`,
  );
  const next = await execute(client, { sql: "select 1", options: { readOnly: true } });
  assert.equal(next.rows, [["1"]]);
});

t.run();
