// What a finished request leaves behind in the bridge: nothing. Each request's
// AbortSignal (the one @hono/node-server gives the app) must carry no listener
// once the answer is out, however the call ended, and no gRPC call object may
// outlive its request: a listener left behind held the whole call, and the
// signal itself was kept reachable by undici's FinalizationRegistry, so the
// bridge grew by ~13 KB per request and never shrank.
import { getEventListeners } from "node:events";
import { request as httpRequest } from "node:http";
import type { AddressInfo } from "node:net";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { serve } from "@hono/node-server";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { atEnd, eventually, postQuery, silentLogger, startGrpc } from "../../../../test/helpers.js";
import { BufferBudget } from "../encoders/buffer-budget.js";
import { BridgeMetrics } from "../metrics.js";
import { createApp } from "../routes/app.js";
import { type ExecuteCall, ExecuteClient } from "./execute-call.js";
import { createUpstream } from "./grpc-client.js";

const t = suite("http-bridge request lifetime");

/** The bridge app behind the real @hono/node-server, keeping each request's signal and gRPC call. */
async function instrumentedBridge(target: string) {
  const upstream = createUpstream(target);
  const executeClient = new ExecuteClient(target);
  const calls: Array<WeakRef<ExecuteCall>> = [];
  const execute = executeClient.execute.bind(executeClient);
  executeClient.execute = (...args: Parameters<typeof execute>) => {
    const call = execute(...args);
    calls.push(new WeakRef(call));
    return call;
  };
  const app = createApp({
    upstream,
    executeClient,
    logger: silentLogger,
    metrics: new BridgeMetrics(),
    maxBodyBytes: 1024 * 1024,
    maxJsonResponseBytes: 4096,
    jsonBudget: new BufferBudget(1024 * 1024),
    ready: () => true,
  });
  let lastSignal: AbortSignal | undefined;
  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const s = serve(
      {
        fetch: (request, env) => {
          lastSignal = request.signal;
          return app.fetch(request, env);
        },
        hostname: "127.0.0.1",
        port: 0,
      },
      () => resolve(s),
    );
  });
  atEnd(async () => {
    await new Promise((resolve) => {
      server.close(resolve);
      if ("closeAllConnections" in server) server.closeAllConnections();
    });
    upstream.close();
    executeClient.close();
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, calls, signal: () => lastSignal! };
}

let bridge: Awaited<ReturnType<typeof instrumentedBridge>>;

t.before(async () => {
  const grpc = await startGrpc();
  bridge = await instrumentedBridge(grpc.target);
});

async function expectNoListenerLeft(what: string) {
  const signal = bridge.signal();
  await eventually(
    () => getEventListeners(signal, "abort").length === 0,
    3000,
    `no abort listener left on the signal of ${what} (has ${getEventListeners(signal, "abort").length})`,
  );
}

const NDJSON = { accept: "application/x-ndjson" };

t("a finished request leaves no abort listener on its signal, however its call ended", async () => {
  const cases: Array<[string, unknown, Record<string, string>, number]> = [
    ["buffered JSON", { query: "select 1 as one" }, {}, 200],
    ["a SQL error", { query: "select 1 fro m" }, {}, 400],
    ["a result over the JSON limit", { query: "select repeat('x', 10000) as big" }, {}, 413],
    ["NDJSON", { query: "select g from generate_series(1, 50) g" }, NDJSON, 200],
    ["an NDJSON error before the header", { query: "selec 1" }, NDJSON, 400],
    [
      "an NDJSON error after rows",
      { query: "select 10 / (300 - g) from generate_series(1, 500) g" },
      NDJSON,
      200,
    ],
    ["a batch", { statements: [{ query: "select 1" }, { query: "select 2" }] }, {}, 200],
    ["a failing batch", { statements: [{ query: "select 1" }, { query: "selec 2" }] }, {}, 400],
  ];
  for (const [what, body, headers, status] of cases) {
    const response = await postQuery(bridge.url, body, headers);
    assert.is(response.status, status, `${what}: ${response.text}`);
    await expectNoListenerLeft(what);
  }
});

t("a chunked body (no content-length) leaves no abort listener either", async () => {
  const status = await new Promise<number>((resolve, reject) => {
    const req = httpRequest(`${bridge.url}/query`, {
      method: "POST",
      headers: { "content-type": "application/json" },
    });
    req.on("response", (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.write('{"query":');
    req.end('"select 1"}');
  });
  assert.is(status, 200);
  await expectNoListenerLeft("a chunked request");
});

t("a client that leaves mid-stream leaves no abort listener", async () => {
  const abort = new AbortController();
  const response = await fetch(`${bridge.url}/query`, {
    method: "POST",
    headers: { "content-type": "application/json", ...NDJSON },
    body: JSON.stringify({ query: "select g, pg_sleep(0.01)::text from generate_series(1, 10000) g" }),
    signal: abort.signal,
  });
  await response.body!.getReader().read();
  abort.abort();
  await expectNoListenerLeft("an abandoned stream");
});

t("after 2,000 requests no gRPC call of a finished request survives a full garbage collection", async () => {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  const before = bridge.calls.length;
  let sent = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (sent++ < 2000) {
        const response = await postQuery(bridge.url, { query: "select $1::int as id", params: [sent] });
        if (response.status !== 200) assert.unreachable(response.text);
      }
    }),
  );
  // A WeakRef holds its target until the current job ends: collect from a later task.
  await new Promise((resolve) => setImmediate(resolve));
  gc();
  const alive = bridge.calls.slice(before).filter((ref) => ref.deref() !== undefined).length;
  assert.ok(alive < 20, `${alive} of ${bridge.calls.length - before} calls still reachable`);
});

t.run();
