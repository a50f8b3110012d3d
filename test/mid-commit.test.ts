// The connection to PostgreSQL dies while COMMIT is in flight. A relay
// between query-grpc and the database (test/relay.ts) makes the timing exact:
// either COMMIT reaches PostgreSQL and commits but its answer is lost, or the
// connection is cut just before COMMIT is sent. A client that follows the
// status must never be told "retry" (UNAVAILABLE / 503 + Retry-After) for a
// write that committed: it would write twice. Only "commit_unknown"
// (UNAVAILABLE with that kind / HTTP 502 without Retry-After) is honest then.
// Every route's answer also names the transaction, so the caller can ask
// TransactionStatus what became of it.
import { randomUUID } from "node:crypto";
import type pg from "pg";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import type { QueryServiceClient } from "../proto/gen/querygate/v1/query.js";
import { type Answered, ROUTES, type Route, type Write, within, writeRoutes } from "./fault-calls.js";
import {
  adminClient,
  database,
  eventually,
  execute,
  grpcClient,
  startBridgeFor,
  startGrpc,
} from "./helpers.js";
import { type CommitTrap, type Relay, startRelay } from "./relay.js";

const t = suite("connection lost while COMMIT is in flight");

let admin: pg.Client;
let relay: Relay;
let client: QueryServiceClient;
let bridgeUrl: string;
let writes: Record<Route, Write>;

t.before(async () => {
  admin = await adminClient();
  await admin.query("create table mid_commit (token text primary key, via text not null)");
  const db = await database();
  relay = await startRelay(db.port);
  const grpc = await startGrpc({
    DATABASE_URL: relay.via(db.url),
    CONNECT_TIMEOUT_MS: "1000",
    POOL_MAX: "2",
  });
  client = grpcClient(grpc.target);
  bridgeUrl = (await startBridgeFor(grpc.target)).url;
  writes = writeRoutes(client, bridgeUrl, "mid_commit");
});

async function stored(token: string): Promise<boolean> {
  return (await admin.query("select 1 from mid_commit where token = $1", [token])).rowCount === 1;
}

/** Writes one row with the relay's trap set on its COMMIT; returns the token and the answer. */
async function writeThroughTrap(
  write: Write,
  trap: CommitTrap,
): Promise<{ token: string; answered: Answered }> {
  const token = randomUUID();
  const trapped = relay.trapNextCommit(trap);
  const answered = write(token);
  const commit = await within(trapped, 5000, "the write's COMMIT to reach the relay");
  if (trap === "forward") {
    // The connection dies only once the COMMIT has certainly happened.
    await eventually(() => stored(token), 5000, "the row to be committed");
    commit.cut();
  }
  return { token, answered: await within(answered, 10_000, "the write's answer") };
}

/** The broken connection was dropped: the next statement gets a good one. */
async function stillServes(): Promise<void> {
  assert.equal((await execute(client, { sql: "select 1" })).rows, [["1"]]);
}

for (const name of ROUTES) {
  const write: Write = (token) => writes[name](token);
  t(
    `${name}: COMMIT reached PostgreSQL but its answer was lost — the caller is told commit_unknown, not retry`,
    async () => {
      const { token, answered } = await writeThroughTrap(write, "forward");
      assert.ok(await stored(token), "the row committed");
      assert.is(answered.answer, "unknown", `committed, but the caller saw: ${answered.seen}`);
      // The answer names the transaction, so the caller can ask TransactionStatus what became of it.
      assert.match(answered.seen, /transaction id is \d+|"transactionId":"\d+"/);
      if (answered.retryAfter !== undefined) assert.is(answered.retryAfter, null, "no Retry-After");
      await stillServes();
    },
  );

  t(
    `${name}: the connection was cut before COMMIT was sent — nothing committed, and the answer says so or is unknown`,
    async () => {
      const { token, answered } = await writeThroughTrap(write, "withhold");
      assert.ok(
        answered.answer === "retry-safe" || answered.answer === "unknown",
        `the caller saw: ${answered.seen}`,
      );
      assert.not.ok(await stored(token), "the row was not committed");
      await stillServes();
    },
  );
}

t.run();
