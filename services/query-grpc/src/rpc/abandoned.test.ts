// Statements whose callers gave up must not keep running: a cancel that lands
// while the connection is still being opened, or before PostgreSQL has read
// the statement, used to be lost, and the statement then held its pooled
// connection to the end (pg_sleep(20) kept a pool of 4 busy for 20 s).
import http2 from "node:http2";
import { status } from "@grpc/grpc-js";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ExecuteRequest } from "../../../../proto/gen/querygate/v1/query.js";
import {
  adminClient,
  database,
  eventually,
  execute,
  framedExecute,
  grpcClient,
  rawExecute,
  runningStatements,
  startGrpc,
} from "../../../../test/helpers.js";
import { type Relay, startRelay } from "../../../../test/slow-relay.js";

const t = suite("abandoned statements");
let client: ReturnType<typeof grpcClient>;
let target: string;
let admin: Awaited<ReturnType<typeof adminClient>>;

t.before(async () => {
  const server = await startGrpc({ POOL_MAX: "4", POOL_MAX_WAITING: "1000", POOL_WAIT_MS: "5000" });
  target = server.target;
  client = grpcClient(target);
  admin = await adminClient();
});

t("sixty callers that give up within a second leave no statement running", async () => {
  // No deadline: like curl -m 1, the client just goes away (a deadline would also set statement_timeout).
  const codes = await Promise.all(
    Array.from({ length: 60 }, (_, i) =>
      givesUp(client, "select pg_sleep(20) /* gave-up */", 20 + ((i * 17) % 1000)),
    ),
  );
  for (const code of codes) assert.ok([status.CANCELLED, status.RESOURCE_EXHAUSTED].includes(code));
  await eventually(
    async () => (await runningStatements(admin, "%gave-up-%")) === 0,
    3000,
    "every abandoned pg_sleep to be cancelled",
  );
  const next = await execute(client, { sql: "select 1" }, undefined, {
    deadline: new Date(Date.now() + 2000),
  });
  assert.equal(next.rows, [["1"]]);
});

t("a thousand streams reset five milliseconds after they start leave the pool free", async () => {
  // Raw HTTP/2, as a load tool or a crashing client sends it: request, then RST_STREAM.
  const frame = framedExecute("select pg_sleep(20) /* reset-early */");
  const session = http2.connect(`http://${target}`);
  const closed: Array<Promise<void>> = [];
  for (let i = 0; i < 1000; i++) {
    const stream = rawExecute(session);
    closed.push(new Promise((resolve) => stream.on("close", () => resolve())));
    stream.end(frame);
    setTimeout(() => stream.close(http2.constants.NGHTTP2_CANCEL), 5);
  }
  await Promise.all(closed);
  session.close();
  await eventually(
    async () => (await runningStatements(admin, "%reset-early%")) === 0,
    3000,
    "every reset stream's statement to be cancelled",
  );
  const next = await execute(client, { sql: "select 2" }, undefined, {
    deadline: new Date(Date.now() + 2000),
  });
  assert.equal(next.rows, [["2"]]);
});

t("a caller who gives up while its connection is still opening runs nothing", async () => {
  const relay = await startRelay((await database()).port);
  relay.connectDelayMs = 300;
  const server = await startGrpc({ DATABASE_URL: await relayUrl(relay) });
  const slow = grpcClient(server.target);
  assert.is(await givesUp(slow, "select pg_sleep(20) /* slow-connect */", 100), status.CANCELLED);
  // The connection opens after the caller left: the statement must never start.
  await new Promise((resolve) => setTimeout(resolve, 600));
  assert.is(await runningStatements(admin, "%slow-connect%"), 0);
  await relay.close();
});

t("a cancel sent before the statement reaches PostgreSQL still stops it", async () => {
  const relay = await startRelay((await database()).port);
  const server = await startGrpc({ DATABASE_URL: await relayUrl(relay), POOL_MAX: "1" });
  const slow = grpcClient(server.target);
  await execute(slow, { sql: "select 1" }); // the pooled connection is open
  // The statement now takes 300 ms to reach PostgreSQL; a cancel (a new connection) arrives at once,
  // finds the backend idle, and PostgreSQL drops it.
  relay.delayOpenConnections(300);
  assert.is(await givesUp(slow, "select pg_sleep(20) /* early-cancel */", 50), status.CANCELLED);
  await eventually(
    async () => (await runningStatements(admin, "%early-cancel%")) === 0,
    3000,
    "the statement to be cancelled once it started",
  );
  await relay.close();
});

/** Starts `sql` and cancels the call after `ms`; resolves with the status the client saw. */
function givesUp(on: ReturnType<typeof grpcClient>, sql: string, ms: number): Promise<number> {
  const call = on.execute(ExecuteRequest.fromPartial({ sql }));
  setTimeout(() => call.cancel(), ms);
  return new Promise((resolve) => {
    call.on("data", () => {});
    call.on("error", (error: { code: number }) => resolve(error.code));
    call.on("end", () => resolve(status.OK));
  });
}

async function relayUrl(relay: Relay): Promise<string> {
  const url = new URL((await database()).url);
  url.port = String(relay.port);
  return url.toString();
}

t.run();
