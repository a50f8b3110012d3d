// The floor phase's arithmetic and its minimal gRPC client over node:http2:
// a floor summed wrongly, or a client that took a failed call for an
// answer, would print a cost of the transport that nothing paid.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { readGrpcAnswer, startFloorServer } from "./floor-servers.js";
import { executeBody, executeOnce, frame } from "./h2load-grpc.js";
import { type FloorResults, floorSums, type GeneratorStats, type LoadgenResults } from "./report.js";

const t = suite("bench floor");

function path(tool: string, cpuUsPerRequest: Record<string, number>): GeneratorStats {
  return {
    tool,
    reps: 1,
    requests: 100,
    errors: 0,
    perSecond: 10,
    p50Ms: 1,
    p99Ms: 2,
    allPerSecond: [10],
    allP99Ms: [2],
    cpuUsPerRequest,
  };
}

const floor: FloorResults = {
  skipped: [],
  grpcJs: path("h2load", { "grpc-js server": 150, client: 40 }),
  querygateH2: path("h2load", { "querygate h2 server": 120, client: 40 }),
  honoGrpcJs: path("wrk", { "Hono + grpc-js client": 390, "query-grpc's server": 110, client: 30 }),
  honoHttp2: path("wrk", { "Hono + http2 client": 200, "query-grpc's server": 90, client: 30 }),
};

t(
  "the gRPC path's floor is query-grpc's own empty server (not grpc-js's) plus pgbench's PostgreSQL, the generator left out",
  () => {
    const loadgen: LoadgenResults = { skipped: [], pgbench: path("pgbench", { postgres: 97, client: 60 }) };
    const sums = floorSums(floor, loadgen);
    assert.equal(sums.grpc, { transportUs: 120, postgresUs: 97, totalUs: 217, targetUs: 130 });
    assert.equal(sums.bridge, { transportUs: 290, postgresUs: 97, totalUs: 387, targetUs: 250 });
    assert.equal(sums.bridgeGrpcJs, { transportUs: 500, postgresUs: 97, totalUs: 597, targetUs: 250 });
  },
);

t("without pgbench's figure a floor is the transport alone", () => {
  const sums = floorSums(floor, { skipped: ["pgbench skipped"] });
  assert.equal(sums.grpc, { transportUs: 120, totalUs: 120, targetUs: 130 });
  assert.is(sums.bridge?.postgresUs, undefined);
  assert.is(sums.bridge?.totalUs, 290);
});

t("a path that was not measured has no floor", () => {
  const sums = floorSums({ skipped: ["h2load missing"], honoHttp2: floor.honoHttp2 }, undefined);
  assert.is(sums.grpc, undefined);
  assert.is(sums.bridgeGrpcJs, undefined);
  assert.is(sums.bridge?.totalUs, 290);
});

t("an answer of two frames and grpc-status 0 reads back as its two messages", () => {
  const body = Buffer.concat([frame(Buffer.from("first")), frame(Buffer.from("second!"))]);
  const messages = readGrpcAnswer({ ":status": 200 }, { "grpc-status": "0" }, body);
  assert.equal(
    messages.map((m) => m.toString()),
    ["first", "second!"],
  );
});

t("a call that ended with a grpc-status other than 0 is an error, in trailers or trailers-only", () => {
  assert.throws(
    () =>
      readGrpcAnswer({ ":status": 200 }, { "grpc-status": "13", "grpc-message": "boom" }, Buffer.alloc(0)),
    /grpc-status 13: boom/,
  );
  assert.throws(
    () => readGrpcAnswer({ ":status": 200, "grpc-status": "14" }, undefined, Buffer.alloc(0)),
    /grpc-status 14/,
  );
});

t("an answer with no grpc-status at all, or a cut frame, is an error rather than a message", () => {
  assert.throws(
    () => readGrpcAnswer({ ":status": 200 }, undefined, frame(Buffer.from("x"))),
    /no grpc-status/,
  );
  const cut = frame(Buffer.from("truncated")).subarray(0, 8);
  assert.throws(() => readGrpcAnswer({ ":status": 200 }, { "grpc-status": "0" }, cut), /cut/);
});

t("the empty servers on grpc-js and on query-grpc's own transport both answer h2load's Execute", async () => {
  const body = executeBody("select 1", []);
  for (const kind of ["grpc-js", "querygate-h2"] as const) {
    const server = await startFloorServer(kind);
    try {
      await executeOnce(server.port, body);
    } finally {
      await server.close();
    }
  }
});

t("Hono with either client reaches the empty grpc-js server and answers the canned JSON", async () => {
  const upstream = await startFloorServer("grpc-js");
  const bridges = [
    await startFloorServer("hono-grpc-js", `127.0.0.1:${upstream.port}`),
    await startFloorServer("hono-http2", `127.0.0.1:${upstream.port}`),
  ];
  try {
    for (const bridge of bridges) {
      const response = await fetch(`http://127.0.0.1:${bridge.port}/query`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ query: "select 1" }),
      });
      assert.is(response.status, 200);
      const answer = (await response.json()) as { rowCount: number };
      assert.is(answer.rowCount, 1);
    }
  } finally {
    for (const server of [...bridges, upstream]) await server.close();
  }
});

t("Hono through a client whose upstream is gone answers 502, not the canned JSON", async () => {
  const upstream = await startFloorServer("grpc-js");
  const target = `127.0.0.1:${upstream.port}`;
  await upstream.close();
  const bridge = await startFloorServer("hono-http2", target);
  try {
    const response = await fetch(`http://127.0.0.1:${bridge.port}/query`, {
      method: "POST",
      body: JSON.stringify({ query: "select 1" }),
    });
    assert.is(response.status, 502);
  } finally {
    await bridge.close();
  }
});

t.run();
