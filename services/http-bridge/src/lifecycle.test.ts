// The bridge's graceful stop (what SIGTERM triggers in main.ts): /readyz fails
// at once so no new traffic is routed here, new connections are refused, a
// request on a kept-alive connection is answered with `connection: close`,
// and what is already under way (an NDJSON stream included) is delivered to
// its last byte before the server closes. No caller may get a socket error for
// an insert that committed.
import { randomUUID } from "node:crypto";
import { Agent, get as httpGet, request as httpRequest } from "node:http";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  adminClient,
  eventually,
  runningStatements,
  startBridgeFor,
  startGrpc,
} from "../../../test/helpers.js";

const t = suite("http-bridge lifecycle");

t("on shutdown /readyz is refused at once and an in-flight NDJSON stream still completes", async () => {
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
  // A probe comes on a new connection (a kept-alive one would get a 503 "draining").
  const readyz = await new Promise((resolve) =>
    httpGet(`${bridge.url}/readyz`, { agent: false }, (res) => resolve(res.statusCode)).on(
      "error",
      (error: NodeJS.ErrnoException) => resolve(error.code),
    ),
  );
  assert.is(readyz, "ECONNREFUSED");

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

type Outcome =
  | { token: string; afterClose: boolean; status: number; connection: string | undefined }
  | { token: string; afterClose: boolean; error: string };

/** One POST /query over `agent`; a socket error is an outcome too, with its code. */
function insert(url: string, agent: Agent, token: string, afterClose: boolean): Promise<Outcome> {
  const body = JSON.stringify({ query: "insert into bridge_drain (token) values ($1)", params: [token] });
  return new Promise((resolve) => {
    const req = httpRequest(`${url}/query`, {
      method: "POST",
      agent,
      headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
    });
    req.on("response", (res) => {
      res.resume();
      res.on("end", () =>
        resolve({ token, afterClose, status: res.statusCode ?? 0, connection: res.headers.connection }),
      );
      res.on("error", (error: NodeJS.ErrnoException) =>
        resolve({ token, afterClose, error: error.code ?? error.message }),
      );
    });
    req.on("error", (error: NodeJS.ErrnoException) =>
      resolve({ token, afterClose, error: error.code ?? error.message }),
    );
    req.end(body);
  });
}

t(
  "keep-alive clients inserting through a shutdown get an answer for every insert that committed",
  async () => {
    const admin = await adminClient();
    await admin.query("create table bridge_drain (token text primary key)");
    const grpc = await startGrpc();
    const bridge = await startBridgeFor(grpc.target);

    const outcomes: Outcome[] = [];
    let closeStarted = false;
    const client = async () => {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      try {
        for (;;) {
          const outcome = await insert(bridge.url, agent, randomUUID(), closeStarted);
          outcomes.push(outcome);
          // A refused connection means the listener is gone: nothing more can reach this bridge.
          if ("error" in outcome && outcome.error === "ECONNREFUSED") return;
        }
      } finally {
        agent.destroy();
      }
    };
    const clients = Array.from({ length: 6 }, client);
    await eventually(() => outcomes.length >= 60, 10_000, "inserts to flow");

    closeStarted = true;
    const closed = bridge.close(5000);
    const fresh = await insert(bridge.url, new Agent({ keepAlive: false }), randomUUID(), true);
    outcomes.push(fresh);
    await closed;
    await Promise.all(clients);

    const stored = new Set(
      (await admin.query<{ token: string }>("select token from bridge_drain")).rows.map((r) => r.token),
    );
    const answered = outcomes.filter((o) => "status" in o && o.status === 200).map((o) => o.token);
    const failedButStored = outcomes.filter(
      (o) => !("status" in o && o.status === 200) && stored.has(o.token),
    );
    assert.equal(failedButStored, [], "no caller got an error for an insert that committed");
    assert.is(stored.size, answered.length, "every committed insert was answered 200");
    for (const token of answered) assert.ok(stored.has(token), `answered insert ${token} is stored`);

    assert.equal(
      fresh,
      { ...fresh, error: "ECONNREFUSED" },
      "a new connection after close() began is refused",
    );
    assert.ok(
      outcomes.some((o) => "status" in o && o.connection === "close"),
      "requests in flight when close() began are answered with connection: close",
    );
    const servedAfterClose = outcomes.filter((o) => o.afterClose && "status" in o);
    for (const o of servedAfterClose) {
      assert.is("status" in o && o.status, 200, "a request on a kept-alive connection is served");
      assert.is("status" in o && o.connection, "close", "…and told to close the connection");
    }
    const errors = outcomes.filter((o) => "error" in o).map((o) => ("error" in o ? o.error : ""));
    for (const code of errors)
      assert.ok(["ECONNREFUSED", "ECONNRESET"].includes(code), `a connection-level error, not ${code}`);
  },
);

t("a request that outlives the grace period is cut and its statement cancelled", async () => {
  const admin = await adminClient();
  const grpc = await startGrpc();
  const bridge = await startBridgeFor(grpc.target);
  const sleeping = postQueryRaw(bridge.url, "select pg_sleep(30) /* bridge-outlives-grace */");
  await eventually(
    async () => (await runningStatements(admin, "%bridge-outlives-grace%")) === 1,
    5000,
    "the statement to run",
  );
  await bridge.close(300);
  assert.is(await sleeping, "ECONNRESET");
  await eventually(
    async () => (await runningStatements(admin, "%bridge-outlives-grace%")) === 0,
    5000,
    "the cut request's statement to be cancelled",
  );
});

function postQueryRaw(url: string, query: string): Promise<number | string> {
  return new Promise((resolve) => {
    const req = httpRequest(`${url}/query`, { method: "POST", agent: false });
    req.on("response", (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
    req.end(JSON.stringify({ query }));
  });
}

t.run();
