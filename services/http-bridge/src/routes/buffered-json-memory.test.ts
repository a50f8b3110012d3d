// A buffered JSON result is held as the bytes it will be sent as, not as a
// string per row: a result near MAX_JSON_RESPONSE_BYTES must not cost the
// bridge many times its size (1M rows, 65 MB of JSON, once took 1.2 GB).
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { startStack } from "../../../../test/helpers.js";

const t = suite("http-bridge buffered JSON memory");

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

/** What this process keeps alive: the V8 heap and Buffers' memory, after a full collection. */
function liveAfterGc(): number {
  gc();
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.arrayBuffers;
}

for (const rowMode of ["object", "array"] as const) {
  t(
    `a 200k-row buffered JSON result (${rowMode} rows) keeps live memory within twice its body while it is built`,
    async () => {
      const { url } = await startStack();
      const query = "select g as id, md5(g::text) as digest from generate_series(1, 200000) g";
      const post = () =>
        fetch(`${url}/query`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ query, rowMode }),
        });
      // Warm: the first call's connections, parser and caches are not the result.
      await (await post()).text();
      const baseline = liveAfterGc();
      let peak = 0;
      let samples = 0;
      const sampler = setInterval(() => {
        peak = Math.max(peak, liveAfterGc() - baseline);
        samples++;
      }, 50);
      let response: Response;
      try {
        // The bridge answers once the whole body is built: sample until then.
        response = await post();
      } finally {
        clearInterval(sampler);
      }
      const body = await response.text();
      assert.is(response.status, 200, body.slice(0, 300));
      const parsed = JSON.parse(body) as { result: unknown[]; rowCount: number };
      assert.is(parsed.result.length, 200_000);
      assert.is(parsed.rowCount, 200_000);
      assert.ok(samples > 0, "the sampler ran while the result was built");
      assert.ok(
        peak < 2 * body.length,
        `live memory grew ${(peak / 2 ** 20).toFixed(1)} MiB for a ${(body.length / 2 ** 20).toFixed(1)} MiB body`,
      );
    },
  );
}

t.run();
