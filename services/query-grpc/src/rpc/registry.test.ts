// The registry across replicas: two query-grpc servers, each with its own
// pool, on one database. A statement started through one is listed and
// cancelled through the other, only by its own caller or an admin.
import { type Metadata, type ServiceError, status } from "@grpc/grpc-js";
import type pg from "pg";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  type CancelQueryResponse,
  type ListQueriesResponse,
  QueryError,
  type QueryServiceClient,
  TransactionState,
  type TransactionStatusResponse,
} from "../../../../proto/gen/querygate/v1/query.js";
import {
  adminClient,
  eventually,
  execute,
  executeError,
  type GatheredError,
  grpcClient,
  startGrpc,
} from "../../../../test/helpers.js";
import { as, roles, TOKENS } from "../../../../test/roles.js";

const t = suite("registry: list and cancel any replica's statements");

let one: QueryServiceClient;
let other: QueryServiceClient;
let admin: pg.Client;

t.before(async () => {
  const fixture = await roles();
  admin = await adminClient();
  one = grpcClient((await startGrpc(fixture.env)).target);
  other = grpcClient((await startGrpc(fixture.env)).target);
});

function withId(metadata: Metadata, id: string): Metadata {
  metadata.set("x-request-id", id);
  return metadata;
}

function unary<Req, Res>(
  method: (
    request: Req,
    metadata: Metadata,
    callback: (error: ServiceError | null, response?: Res) => void,
  ) => unknown,
  client: QueryServiceClient,
  request: Req,
  metadata: Metadata,
): Promise<Res> {
  return new Promise((resolve, reject) =>
    method.call(client, request, metadata, (error, response) =>
      error ? reject(error) : resolve(response as Res),
    ),
  );
}

const list = (client: QueryServiceClient, token: string, caller = "") =>
  unary<{ caller: string }, ListQueriesResponse>(client.listQueries, client, { caller }, as(token));
const cancel = (client: QueryServiceClient, token: string, requestId: string) =>
  unary<{ requestId: string }, CancelQueryResponse>(client.cancelQuery, client, { requestId }, as(token));

async function failure(work: Promise<unknown>): Promise<ServiceError> {
  try {
    await work;
  } catch (error) {
    return error as ServiceError;
  }
  throw new Error("expected the call to fail");
}

/** Starts a long statement through `client` as `token`; resolves once the other replica lists it. */
async function startLong(client: QueryServiceClient, token: string, id: string) {
  const running = executeError(client, { sql: "select pg_sleep(30)" }, withId(as(token), id));
  await eventually(
    async () =>
      (await list(other, TOKENS.watcher)).queries.some((q) => q.requestId === id && q.state === "active"),
    5000,
    `${id} to be listed`,
  );
  // Wrapped: an async function returning a promise would wait for it.
  return { running };
}

async function backendOf(id: string): Promise<number> {
  const found = await admin.query("select pid from pg_stat_activity where application_name like $1", [
    `% %/${id}`,
  ]);
  return found.rows[0]?.pid as number;
}

t("a long statement started through one replica is listed and cancelled through the other", async () => {
  const { running } = await startLong(one, TOKENS.writer, "long-writer-1");
  const pid = await backendOf("long-writer-1");
  const listed = (await list(other, TOKENS.writer)).queries.find((q) => q.requestId === "long-writer-1");
  assert.ok(listed, "the caller sees its own statement on the other replica");
  assert.is(listed?.state, "active");
  assert.match(listed?.fingerprint ?? "", /^[0-9a-f]{8,}$/);
  assert.ok(Date.parse(listed?.startedAt ?? "") > 0, "started_at is a timestamp");
  assert.ok((listed?.durationMs ?? -1) >= 0);
  assert.not.ok(JSON.stringify(listed).includes("pg_sleep"), "no SQL text, only the fingerprint");

  const answer = await cancel(other, TOKENS.writer, "long-writer-1");
  assert.is(answer.cancelled, true);
  const ended: GatheredError = await running;
  assert.is(ended.code, status.CANCELLED, ended.details);
  assert.is(ended.error?.kind, "cancelled");
  assert.is(ended.error?.sqlstate, "57014");
  // The connection that ran it is closed, not handed to the next caller.
  await eventually(
    async () => (await admin.query("select 1 from pg_stat_activity where pid = $1", [pid])).rowCount === 0,
    5000,
    "the cancelled statement's backend to be gone",
  );
  assert.equal((await execute(one, { sql: "select 1" }, as(TOKENS.writer))).rows, [["1"]]);
});

t("another caller neither sees the statement nor may cancel it (PERMISSION_DENIED)", async () => {
  const { running } = await startLong(one, TOKENS.writer, "long-writer-2");
  const seen = (await list(other, TOKENS.reader)).queries.map((q) => q.requestId);
  assert.not.ok(seen.includes("long-writer-2"), `reporting saw ${seen}`);
  const refused = await failure(cancel(other, TOKENS.reader, "long-writer-2"));
  assert.is(refused.code, status.PERMISSION_DENIED);
  const listing = await failure(list(other, TOKENS.reader, "ingest"));
  assert.is(listing.code, status.PERMISSION_DENIED, "only an admin may ask for another caller's");
  await cancel(other, TOKENS.writer, "long-writer-2");
  assert.is((await running).code, status.CANCELLED);
});

t("cancelling a request that is not running answers NOT_FOUND", async () => {
  const missing = await failure(cancel(other, TOKENS.writer, "never-ran"));
  assert.is(missing.code, status.NOT_FOUND);
  const bin = missing.metadata.get("querygate-error-bin")[0] as Buffer;
  assert.is(QueryError.decode(bin).kind, "not_found");
});

t("an admin sees every caller's statements, filters by caller, and cancels any of them", async () => {
  const { running } = await startLong(one, TOKENS.writer, "long-writer-3");
  const all = (await list(other, TOKENS.watcher)).queries.map((q) => q.requestId);
  assert.ok(all.includes("long-writer-3"));
  const ingest = (await list(other, TOKENS.watcher, "ingest")).queries.map((q) => q.requestId);
  assert.ok(ingest.includes("long-writer-3"));
  const reporting = (await list(other, TOKENS.watcher, "reporting")).queries.map((q) => q.requestId);
  assert.not.ok(reporting.includes("long-writer-3"));
  assert.is((await cancel(other, TOKENS.watcher, "long-writer-3")).cancelled, true);
  assert.is((await running).code, status.CANCELLED);
});

t("statement_timeout still ends with DEADLINE_EXCEEDED, not CANCELLED", async () => {
  const error = await executeError(
    one,
    { sql: "select pg_sleep(5)", options: { timeoutMs: 200 } },
    as(TOKENS.writer),
  );
  assert.is(error.code, status.DEADLINE_EXCEEDED, error.details);
});

t("Execute and ExecuteBatch send the request id back in their response headers", async () => {
  const headers = await new Promise<Metadata>((resolve, reject) => {
    const call = one.execute(
      { sql: "select 1", params: [], options: undefined },
      withId(as(TOKENS.reader), "echo-1"),
    );
    call.on("metadata", resolve);
    call.on("error", reject);
    call.on("data", () => {});
  });
  assert.equal(headers.get("x-request-id"), ["echo-1"]);
  const batchHeaders = await new Promise<Metadata>((resolve, reject) => {
    const call = one.executeBatch(
      { statements: [{ sql: "select 1", params: [], maxRows: "0", timeoutMs: 0 }], options: undefined },
      withId(as(TOKENS.reader), "echo-2"),
      (error) => error && reject(error),
    );
    call.on("metadata", resolve);
  });
  assert.equal(batchHeaders.get("x-request-id"), ["echo-2"]);
});

t("TransactionStatus answers committed, aborted and unknown from pg_xact_status", async () => {
  const status_ = (xid: string) =>
    unary<{ transactionId: string }, TransactionStatusResponse>(
      other.transactionStatus,
      other,
      { transactionId: xid },
      as(TOKENS.reader),
    );
  await admin.query("begin");
  const committed = (await admin.query("select pg_current_xact_id()::text as xid")).rows[0].xid as string;
  await admin.query("commit");
  await admin.query("begin");
  const aborted = (await admin.query("select pg_current_xact_id()::text as xid")).rows[0].xid as string;
  await admin.query("rollback");
  assert.is((await status_(committed)).state, TransactionState.TRANSACTION_STATE_COMMITTED);
  assert.is((await status_(aborted)).state, TransactionState.TRANSACTION_STATE_ABORTED);
  const bad = await failure(status_("not-a-number"));
  assert.is(bad.code, status.INVALID_ARGUMENT);
});

t.run();
