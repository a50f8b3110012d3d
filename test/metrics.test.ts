// Both services expose Prometheus metrics: after a few requests the series an
// operator needs are there, with the values those requests imply.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ExecuteRequest } from "../proto/gen/querygate/v1/query.js";
import {
  adminClient,
  eventually,
  execute,
  executeError,
  postQuery,
  runningStatements,
  startStack,
} from "./helpers.js";

const t = suite("metrics");

/** The value of one series, e.g. `querygate_grpc_calls_total{method="Execute",code="OK"}`. */
function value(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  let found = false;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    total += Number(line.slice(line.lastIndexOf(" ") + 1));
    found = true;
  }
  if (!found) throw new Error(`no series ${name} ${JSON.stringify(labels)}`);
  return total;
}

t("query-grpc and the bridge report calls, latency, rows, bytes, pool and cancellations", async () => {
  const stack = await startStack();
  await execute(stack.client, { sql: "select g from generate_series(1, 250) g" });
  await executeError(stack.client, { sql: "select * from no_such_table" });
  const call = stack.client.execute(ExecuteRequest.fromPartial({ sql: "select pg_sleep(10) /* metrics */" }));
  call.on("error", () => {});
  const admin = await adminClient();
  await eventually(
    async () => (await runningStatements(admin, "%/* metrics */%")) === 1,
    5000,
    "the sleep to run",
  );
  call.cancel();
  await postQuery(stack.url, { query: "select 1 as one" });
  await postQuery(stack.url, { query: "select 1" }, { accept: "application/x-ndjson" });

  const grpc = `http://127.0.0.1:${stack.grpc.metricsPort}/metrics`;
  await eventually(
    async () =>
      value(await (await fetch(grpc)).text(), "querygate_cancellations_total", { reason: "client" }) === 1,
    5000,
    "the cancellation to be counted",
  );
  const text = await (await fetch(grpc)).text();
  assert.is(value(text, "querygate_grpc_calls_total", { method: "Execute", code: "INVALID_ARGUMENT" }), 1);
  assert.ok(value(text, "querygate_grpc_calls_total", { method: "Execute", code: "OK" }) >= 3);
  assert.ok(value(text, "querygate_grpc_call_duration_seconds_count", { method: "Execute" }) >= 4);
  assert.ok(value(text, "querygate_rows_streamed_total", { method: "Execute" }) >= 252);
  assert.ok(value(text, "querygate_response_bytes_total", { method: "Execute" }) > 250 * 3);
  assert.is(value(text, "querygate_pool_waiting"), 0);
  assert.ok(value(text, "querygate_pool_connections", { state: "idle" }) >= 1);
  assert.is(value(text, "querygate_sessions_active"), 0);
  assert.ok(value(text, "process_resident_memory_bytes") > 0);

  const bridge = await (await fetch(`${stack.url}/metrics`)).text();
  assert.is(
    value(bridge, "querygate_http_requests_total", { route: "/query", method: "POST", status: "200" }),
    2,
  );
  assert.ok(value(bridge, "querygate_http_request_duration_seconds_count", { route: "/query" }) >= 2);
  assert.is(value(bridge, "querygate_http_rows_total", { format: "json" }), 1);
  assert.is(value(bridge, "querygate_http_rows_total", { format: "ndjson" }), 1);
});

t.run();
