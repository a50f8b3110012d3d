// One HTTP/2 connection carries many calls (the bridge multiplexes its
// callers onto a few sessions; a grpc-js channel is one session). Results
// waiting for slow readers are queued in their streams, which node:http2
// counts against the session's maxSessionMemory: past it, every new call on
// the connection is refused (RST_STREAM ENHANCE_YOUR_CALM, which clients read
// as RESOURCE_EXHAUSTED). grpc-js's server set no such limit
// (Number.MAX_SAFE_INTEGER).
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ExecuteRequest } from "../../../../proto/gen/querygate/v1/query.js";
import { eventually, execute, grpcClient, startGrpc } from "../../../../test/helpers.js";

const t = suite("session memory");

t("slow readers of large results on a connection do not get its next call refused", async () => {
  const SLOW = 40;
  const server = await startGrpc({ POOL_MAX: String(SLOW + 2) });
  const client = grpcClient(server.target);
  let paused = 0;
  const calls = Array.from({ length: SLOW }, () => {
    const call = client.execute(
      ExecuteRequest.fromPartial({
        sql: "select repeat('x', 1000000) from generate_series(1, 50)",
        options: { readOnly: true },
      }),
    );
    let first = true;
    call.on("data", () => {
      if (first) {
        first = false;
        paused++;
        call.pause();
      }
    });
    call.on("error", () => {});
    return call;
  });
  await eventually(() => paused === SLOW, 30_000, "every slow reader to get its first rows");
  await new Promise((resolve) => setTimeout(resolve, 1000));
  try {
    const next = await execute(client, { sql: "select 1", options: { readOnly: true } });
    assert.equal(next.rows, [["1"]]);
  } finally {
    for (const call of calls) call.cancel();
  }
});

t.run();
