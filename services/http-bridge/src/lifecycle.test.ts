// The bridge's graceful stop (what SIGTERM triggers in main.ts): /readyz fails
// at once so no new traffic is routed here, and an NDJSON stream already under
// way is delivered to its last line before the server closes.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { startBridgeFor, startGrpc } from "../../../test/helpers.js";

const t = suite("http-bridge lifecycle");

t("on shutdown /readyz fails at once and an in-flight NDJSON stream still completes", async () => {
  const grpc = await startGrpc();
  const bridge = await startBridgeFor(grpc.target);
  assert.is((await fetch(`${bridge.url}/readyz`)).status, 200);

  const response = await fetch(`${bridge.url}/query`, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/x-ndjson" },
    body: JSON.stringify({ query: "select g, pg_sleep(0.2)::text as slept from generate_series(1, 5) g" }),
  });
  assert.is(response.status, 200);
  const body = response.text();

  const closed = bridge.close(10_000);
  const readyz = await fetch(`${bridge.url}/readyz`);
  assert.is(readyz.status, 503);

  const lines = (await body)
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line));
  assert.ok(lines[0].header, "header first");
  assert.equal(
    lines.filter((l) => l.row).map((l) => l.row.g),
    [1, 2, 3, 4, 5],
  );
  assert.is(lines.at(-1).footer.rowCount, 5);
  await closed;
  const afterClose = await fetch(`${bridge.url}/healthz`).then(
    () => "answered",
    () => "refused",
  );
  assert.is(afterClose, "refused");
});

t.run();
