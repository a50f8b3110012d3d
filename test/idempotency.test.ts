// Exactly-once writes over an unreliable network: a write whose COMMIT
// reached PostgreSQL but whose answer was lost (test/relay.ts cuts the
// connection right after COMMIT went out) is retried with the same
// idempotency key, runs nothing the second time, and its recorded outcome
// comes back marked as a replay. Over gRPC (Execute, ExecuteBatch) and HTTP.
import { randomUUID } from "node:crypto";
import { Metadata, status } from "@grpc/grpc-js";
import type pg from "pg";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  type ExecuteBatchRequest,
  ExecuteBatchResponse,
  type QueryServiceClient,
} from "../proto/gen/querygate/v1/query.js";
import { within } from "./fault-calls.js";
import {
  adminClient,
  database,
  eventually,
  execute,
  executeError,
  grpcClient,
  postQuery,
  startBridgeFor,
  startGrpc,
} from "./helpers.js";
import { type Relay, startRelay } from "./relay.js";

const t = suite("idempotency keys");

let admin: pg.Client;
let relay: Relay;
let client: QueryServiceClient;
let bridgeUrl: string;

t.before(async () => {
  admin = await adminClient();
  await admin.query("create table idem_rows (token text primary key)");
  await admin.query("create table idem_counter (n int not null); insert into idem_counter values (0)");
  const db = await database();
  relay = await startRelay(db.port);
  const grpc = await startGrpc({
    DATABASE_URL: relay.via(db.url),
    CONNECT_TIMEOUT_MS: "1000",
    POOL_MAX: "4",
    IDEMPOTENCY_WAIT_MS: "200",
    IDEMPOTENCY_CLEANUP_INTERVAL_MS: "200",
  });
  client = grpcClient(grpc.target);
  bridgeUrl = (await startBridgeFor(grpc.target)).url;
});

function keyed(key: string): Metadata {
  const metadata = new Metadata();
  metadata.set("idempotency-key", key);
  return metadata;
}

async function rowsOf(token: string): Promise<number> {
  return (await admin.query("select 1 from idem_rows where token like $1", [`${token}%`])).rowCount ?? 0;
}

/** Starts `write`, loses the answer to its COMMIT after it committed, and returns what the caller saw. */
async function loseCommitAnswer<T>(
  write: () => Promise<T>,
  committed: () => Promise<boolean>,
): Promise<unknown> {
  const trapped = relay.trapNextCommit("forward");
  const answered = write().then(
    (value) => value as unknown,
    (error: unknown) => error,
  );
  const commit = await within(trapped, 5000, "the write's COMMIT to reach the relay");
  await eventually(committed, 5000, "the write to be committed");
  commit.cut();
  return within(answered, 10_000, "the write's first answer");
}

t(
  "Execute: COMMIT's answer is lost; the retry with the same key writes nothing and replays the outcome",
  async () => {
    const token = randomUUID();
    const key = `execute-${token}`;
    const sql = "insert into idem_rows values ($1) returning token";
    const params = [{ textValue: token }];
    const first = await loseCommitAnswer(
      () => execute(client, { sql, params }, keyed(key)),
      async () => (await rowsOf(token)) === 1,
    );
    assert.ok(first instanceof Error, "the first answer was lost");

    const replay = await new Promise<{ headers: Metadata; rows: string[][] }>((resolve, reject) => {
      const rows: string[][] = [];
      let headers = new Metadata();
      const call = client.execute({ sql, params, options: undefined }, keyed(key));
      call.on("metadata", (metadata: Metadata) => {
        headers = metadata;
      });
      call.on("data", (message) => {
        for (const row of message.rows?.rows ?? []) rows.push(row.values);
      });
      call.on("error", reject);
      call.on("end", () => resolve({ headers, rows }));
    });
    assert.equal(replay.headers.get("idempotent-replayed"), ["true"]);
    assert.equal(replay.rows, [[token]], "the recorded RETURNING rows");
    assert.is(await rowsOf(token), 1, "exactly one row");
  },
);

t("ExecuteBatch: the retry after a lost COMMIT answer replays every statement's result", async () => {
  const token = randomUUID();
  const key = `batch-${token}`;
  const request: ExecuteBatchRequest = {
    statements: [
      {
        sql: "insert into idem_rows values ($1)",
        params: [{ textValue: `${token}-a` }],
        maxRows: "0",
        timeoutMs: 0,
      },
      {
        sql: "insert into idem_rows values ($1)",
        params: [{ textValue: `${token}-b` }],
        maxRows: "0",
        timeoutMs: 0,
      },
    ],
    options: undefined,
  };
  const batch = () =>
    new Promise<{ response: ExecuteBatchResponse; headers: Metadata }>((resolve, reject) => {
      let headers = new Metadata();
      const call = client.executeBatch(request, keyed(key), (error, response) =>
        error ? reject(error) : resolve({ response: response as ExecuteBatchResponse, headers }),
      );
      call.on("metadata", (metadata: Metadata) => {
        headers = metadata;
      });
    });
  const first = await loseCommitAnswer(batch, async () => (await rowsOf(token)) === 2);
  assert.ok(first instanceof Error, "the first answer was lost");
  const retried = await batch();
  assert.equal(retried.headers.get("idempotent-replayed"), ["true"]);
  assert.equal(
    retried.response.results.map((r) => r.footer?.commandTag),
    ["INSERT 0 1", "INSERT 0 1"],
  );
  assert.is(await rowsOf(token), 2, "each row once");
  assert.ok(ExecuteBatchResponse.encode(retried.response).finish().length > 0);
});

t(
  "POST /query: the retry after a lost COMMIT answer says Idempotent-Replayed and there is one row",
  async () => {
    const token = randomUUID();
    const body = { query: "insert into idem_rows values ($1) returning token", params: [token] };
    const headers = { "idempotency-key": `http-${token}` };
    const first = (await loseCommitAnswer(
      () => postQuery(bridgeUrl, body, headers),
      async () => (await rowsOf(token)) === 1,
    )) as { status: number };
    assert.is(first.status, 502, "commit_unknown");
    const retried = await postQuery(bridgeUrl, body, headers);
    assert.is(retried.status, 200, retried.text);
    assert.is(retried.headers.get("idempotent-replayed"), "true");
    assert.equal(retried.body.result, [{ token }]);
    assert.is(await rowsOf(token), 1);
    const again = await postQuery(bridgeUrl, { ...body, params: [`${token}-other`] }, headers);
    assert.is(again.status, 422, "the same key for another body");
    assert.is(await rowsOf(token), 1);
  },
);

t("the same key with a different request is refused (FAILED_PRECONDITION) and runs nothing", async () => {
  const token = randomUUID();
  await execute(
    client,
    { sql: "insert into idem_rows values ($1)", params: [{ textValue: token }] },
    keyed(token),
  );
  const other = `${token}-other`;
  const refused = await executeError(
    client,
    { sql: "insert into idem_rows values ($1)", params: [{ textValue: other }] },
    keyed(token),
  );
  assert.is(refused.code, status.FAILED_PRECONDITION);
  assert.is(refused.error?.kind, "idempotency_mismatch");
  assert.is(await rowsOf(other), 0);
});

t(
  "an Idempotency-Key gRPC metadata cannot carry (non-ASCII, a control byte) is a 400 over HTTP, for a statement and a batch, and runs nothing",
  async () => {
    for (const key of ["cl\u00e9", "a\u00a0b", "tab\there"]) {
      const token = randomUUID();
      const single = await postQuery(
        bridgeUrl,
        { query: "insert into idem_rows values ($1)", params: [token] },
        { "idempotency-key": key },
      );
      assert.is(single.status, 400, `${JSON.stringify(key)}: ${single.text}`);
      assert.is(single.body?.error?.code, "invalid_request");
      const batch = await postQuery(
        bridgeUrl,
        { statements: [{ query: "insert into idem_rows values ($1)", params: [`${token}-b`] }] },
        { "idempotency-key": key },
      );
      assert.is(batch.status, 400, `${JSON.stringify(key)}: ${batch.text}`);
      assert.is((await rowsOf(token)) + (await rowsOf(`${token}-b`)), 0);
    }
  },
);

t(
  "a retry while the first run is still going answers ABORTED after a bounded wait, then replays",
  async () => {
    const token = randomUUID();
    const request = {
      sql: "insert into idem_rows select $1 from pg_sleep(1.5)",
      params: [{ textValue: token }],
    };
    const first = execute(client, request, keyed(token));
    await eventually(
      async () =>
        (
          await admin.query(
            "select 1 from pg_stat_activity where query like '%pg_sleep(1.5)%' and state = 'active' and pid <> pg_backend_pid()",
          )
        ).rowCount === 1,
      5000,
      "the first run to be running",
    );
    const busy = await executeError(client, request, keyed(token));
    assert.is(busy.code, status.ABORTED, busy.details);
    assert.is(busy.error?.kind, "idempotency_in_progress");
    await first;
    const replayed = await execute(client, request, keyed(token));
    assert.is(replayed.footer?.commandTag, "INSERT 0 1");
    assert.is(await rowsOf(token), 1);
  },
);

t("an expired key is cleaned up and then runs anew", async () => {
  const key = `counter-${randomUUID()}`;
  const bump = { sql: "update idem_counter set n = n + 1 returning n", params: [] };
  const first = await execute(client, bump, keyed(key));
  const replayed = await execute(client, bump, keyed(key));
  assert.equal(replayed.rows, first.rows, "a replay, not a second update");
  await admin.query(
    "update querygate.idempotency_keys set expires_at = now() - interval '1 second' where key = $1",
    [key],
  );
  await eventually(
    async () =>
      (await admin.query("select 1 from querygate.idempotency_keys where key = $1", [key])).rowCount === 0,
    5000,
    "the periodic cleanup to delete the expired key",
  );
  const anew = await execute(client, bump, keyed(key));
  assert.is(Number(anew.rows[0]?.[0]), Number(first.rows[0]?.[0]) + 1);
});

t("a read-only request ignores its key: it commits nothing, so it is always safe to repeat", async () => {
  const key = `read-${randomUUID()}`;
  const readOnly = { sql: "select 1", params: [], options: { readOnly: true } };
  await execute(client, readOnly, keyed(key));
  assert.is(
    (await admin.query("select 1 from querygate.idempotency_keys where key = $1", [key])).rowCount,
    0,
  );
});

t.run();
