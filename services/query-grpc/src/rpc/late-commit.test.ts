// A write whose COMMIT answer arrives after the call was aborted (its
// statement timer, the session's lifetime, a shutdown) did commit: once
// COMMIT went out nothing cancels it, so the answer must say what PostgreSQL
// said. Reporting DEADLINE_EXCEEDED, "rolled back", or UNAVAILABLE
// shutting_down (which clients may retry) for a row that is there makes a
// caller write twice. The relay (test/relay.ts) holds COMMIT's answer back
// until the abort has happened, then lets it through.
import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import type pg from "pg";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { session } from "../../../../test/fault-calls.js";
import {
  adminClient,
  database,
  eventually,
  execute,
  GatheredError,
  grpcClient,
  startGrpc,
} from "../../../../test/helpers.js";
import { type Relay, startRelay } from "../../../../test/relay.js";
import { metric } from "../../../../test/replica-client.js";

const t = suite("a COMMIT answered after the call was aborted");

const LIFETIME_MS = 1000;
let admin: pg.Client;
let relay: Relay;
let dbUrl: string;

t.before(async () => {
  admin = await adminClient();
  await admin.query("create table late_commit (token text primary key)");
  const db = await database();
  dbUrl = db.url;
  relay = await startRelay(db.port);
});

async function stored(token: string): Promise<boolean> {
  return (await admin.query("select 1 from late_commit where token = $1", [token])).rowCount === 1;
}

async function outcomeOf(answer: Promise<unknown>): Promise<string> {
  try {
    await answer;
    return "OK";
  } catch (error) {
    if (!(error instanceof GatheredError)) throw error;
    return `${status[error.code]} kind=${error.error?.kind} ${error.details}`;
  }
}

t("Execute: a write committed after its statement timer fired is reported OK, not timed out", async () => {
  const grpc = await startGrpc({ DATABASE_URL: relay.via(dbUrl), POOL_MAX: "2" });
  const client = grpcClient(grpc.target);
  const timeouts = () => metric(grpc.metricsPort, 'querygate_cancellations_total{reason="timeout"}');
  const before = await timeouts();
  const token = randomUUID();
  const trapped = relay.trapNextCommit("forward");
  const answer = execute(client, {
    sql: "insert into late_commit (token) values ($1)",
    params: [{ textValue: token }],
    options: { timeoutMs: 300 },
  });
  answer.catch(() => {});
  const commit = await trapped;
  await eventually(() => stored(token), 5000, "the row to commit");
  await eventually(async () => (await timeouts()) > before, 5000, "the statement timer to fire");
  commit.release();
  assert.is(await outcomeOf(answer), "OK");
  assert.is((await answer).footer?.commandTag, "INSERT 0 1");
});

t("Execute: a write committed after shutdown aborted it is reported OK, not shutting_down", async () => {
  const grpc = await startGrpc({ DATABASE_URL: relay.via(dbUrl), POOL_MAX: "2" });
  const client = grpcClient(grpc.target);
  const shutdowns = () => metric(grpc.metricsPort, 'querygate_cancellations_total{reason="shutdown"}');
  const token = randomUUID();
  const trapped = relay.trapNextCommit("forward");
  const answer = execute(client, {
    sql: "insert into late_commit (token) values ($1)",
    params: [{ textValue: token }],
  });
  answer.catch(() => {});
  const commit = await trapped;
  await eventually(() => stored(token), 5000, "the row to commit");
  const closed = grpc.close(0);
  await eventually(async () => (await shutdowns()) > 0, 5000, "shutdown to abort the call");
  commit.release();
  assert.is(await outcomeOf(answer), "OK");
  await closed;
});

t("Session: a commit answered after the session's lifetime ran out is reported committed", async () => {
  const grpc = await startGrpc({
    DATABASE_URL: relay.via(dbUrl),
    POOL_MAX: "2",
    SESSION_MAX_LIFETIME_MS: String(LIFETIME_MS),
  });
  const client = grpcClient(grpc.target);
  const token = randomUUID();
  const trapped = relay.trapNextCommit("forward");
  const answer = session(client, [
    { statement: { sql: "insert into late_commit (token) values ($1)", params: [{ textValue: token }] } },
    { commit: {} },
  ]);
  const commit = await trapped;
  const sprungAt = Date.now();
  await eventually(() => stored(token), 5000, "the row to commit");
  // The lifetime timer was armed before COMMIT went out, in this process: it has fired by then.
  await eventually(() => Date.now() > sprungAt + LIFETIME_MS + 100, 5000, "the session's lifetime to pass");
  commit.release();
  const { responses, error } = await answer;
  const seen = error ? `${status[error.code]} kind=${error.error?.kind} ${error.details}` : "OK";
  assert.is(seen, "OK");
  assert.ok(
    responses.some((r) => r.outcome?.committed === true),
    "the outcome says committed",
  );
});

t.run();
