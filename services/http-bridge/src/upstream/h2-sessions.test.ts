// The connections behind the bridge's Execute client: `dns:///` targets, calls
// spread over every address, and a server that drains (GOAWAY) losing no call.
// Two servers behind one name would need /etc/hosts (root), so that test keeps
// the real query-grpc servers and sessions and injects only the name lookup.
import { Metadata, type ServerWritableStream } from "@grpc/grpc-js";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ExecuteRequest, ExecuteResponse } from "../../../../proto/gen/querygate/v1/query.js";
import { freePort } from "../../../../scripts/embedded-postgres.js";
import {
  atEnd,
  eventually,
  postQuery,
  startBridgeFor,
  startGrpc,
  testQueryServer,
} from "../../../../test/helpers.js";
import { type ExecuteCall, ExecuteClient } from "./execute-call.js";
import { type Lookup, parseTarget } from "./h2-sessions.js";

const t = suite("http-bridge HTTP/2 sessions");

function client(target: string, lookup?: Lookup) {
  const c = new ExecuteClient(target, lookup ? { lookup } : {});
  atEnd(async () => c.close());
  return c;
}

async function run(c: ExecuteClient, sql = "select 1"): Promise<ExecuteResponse[]> {
  const messages: ExecuteResponse[] = [];
  const call: ExecuteCall = c.execute(ExecuteRequest.fromPartial({ sql }), new Metadata());
  for await (const m of call) messages.push(m);
  return messages;
}

async function executeCalls(host: string, metricsPort: number): Promise<number> {
  const text = await (await fetch(`http://${host}:${metricsPort}/metrics`)).text();
  let total = 0;
  for (const match of text.matchAll(/^querygate_grpc_calls_total\{[^}]*method="Execute"[^}]*\} (\d+)/gm))
    total += Number(match[1]);
  return total;
}

t("targets are read as grpc-js reads them", () => {
  assert.equal(parseTarget("dns:///query-grpc-headless:50051"), {
    dns: "query-grpc-headless",
    port: "50051",
  });
  assert.equal(parseTarget("dns:localhost:7"), { dns: "localhost", port: "7" });
  assert.equal(parseTarget("ipv4:127.0.0.1:1,127.0.0.2:2"), { addresses: ["127.0.0.1:1", "127.0.0.2:2"] });
  assert.equal(parseTarget("127.0.0.1:50051"), { addresses: ["127.0.0.1:50051"] });
});

t("a dns:/// target naming localhost serves queries and batches through the bridge", async () => {
  const grpc = await startGrpc();
  const bridge = await startBridgeFor(`dns:///localhost:${grpc.port}`);
  const one = await postQuery(bridge.url, { query: "select 1 as one" });
  assert.is(one.status, 200, one.text);
  assert.equal(one.body.result, [{ one: 1 }]);
  const batch = await postQuery(bridge.url, { statements: [{ query: "select 1" }, { query: "select 2" }] });
  assert.is(batch.status, 200, batch.text);
});

t("two query-grpc servers behind one dns:/// name get calls in turn", async () => {
  const port = await freePort();
  const a = await startGrpc({ GRPC_HOST: "127.0.0.1", GRPC_PORT: String(port) });
  const b = await startGrpc({ GRPC_HOST: "127.0.0.2", GRPC_PORT: String(port) });
  const looked: string[] = [];
  const c = client(`dns:///query-grpc-headless:${port}`, async (host) => {
    looked.push(host);
    return ["127.0.0.1", "127.0.0.2"];
  });
  // Until both sessions are up a call takes whichever is ready.
  await eventually(
    async () => {
      await run(c);
      return (
        (await executeCalls("127.0.0.1", a.metricsPort)) > 0 &&
        (await executeCalls("127.0.0.2", b.metricsPort)) > 0
      );
    },
    10_000,
    "both servers to get a call",
  );
  const before = [
    await executeCalls("127.0.0.1", a.metricsPort),
    await executeCalls("127.0.0.2", b.metricsPort),
  ];
  for (let i = 0; i < 10; i++) assert.is((await run(c)).length, 3);
  const after = [
    await executeCalls("127.0.0.1", a.metricsPort),
    await executeCalls("127.0.0.2", b.metricsPort),
  ];
  assert.equal([after[0]! - before[0]!, after[1]! - before[1]!], [5, 5]);
  assert.ok(
    looked.every((h) => h === "query-grpc-headless"),
    looked.join(),
  );
});

t("a server that drains (GOAWAY) finishes its calls in flight, and later calls go to another", async () => {
  const HEADER = ExecuteResponse.fromPartial({ header: { columns: [] } });
  const FOOTER = ExecuteResponse.fromPartial({ footer: { command: "SELECT", rowCount: "0" } });
  const held: Array<ServerWritableStream<ExecuteRequest, ExecuteResponse>> = [];
  let drainingServed = 0;
  let otherServed = 0;
  const answer = (call: ServerWritableStream<ExecuteRequest, ExecuteResponse>) => {
    call.write(HEADER);
    call.write(FOOTER);
    call.end();
  };
  const draining = await testQueryServer((call) => {
    drainingServed++;
    if (call.request.sql !== "hold") return answer(call);
    call.write(HEADER);
    held.push(call);
  });
  const other = await testQueryServer((call) => {
    otherServed++;
    answer(call);
  });
  const c = client(`ipv4:${draining.target},${other.target}`);
  await eventually(
    async () => (await run(c)).length === 2 && drainingServed > 0 && otherServed > 0,
    5000,
    "both sessions to be up",
  );
  // With both up, calls alternate: of two, one is held by the server about to drain.
  const inFlight = [run(c, "hold"), run(c, "hold")];
  await eventually(() => held.length === 1, 5000, "one call held by the draining server");
  const servedBefore = drainingServed;
  const otherBefore = otherServed;

  let drained = false;
  draining.server.tryShutdown(() => {
    drained = true;
  });
  const later = await Promise.all(Array.from({ length: 20 }, () => run(c)));
  assert.ok(
    later.every((m) => m.length === 2),
    "every call after the GOAWAY succeeded",
  );
  assert.is(drainingServed, servedBefore, "the draining server got no new call");
  assert.is(otherServed, otherBefore + 20);
  assert.not.ok(drained, "the held call keeps the draining server's session open");

  held[0]!.write(FOOTER);
  held[0]!.end();
  for (const result of await Promise.all(inFlight)) assert.equal(result, [HEADER, FOOTER]);
  await eventually(() => drained, 5000, "the draining server to finish shutting down");
});

t.run();
