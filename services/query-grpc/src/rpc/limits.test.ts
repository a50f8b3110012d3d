import { status } from "@grpc/grpc-js";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  adminClient,
  eventually,
  execute,
  executeError,
  grpcClient,
  postQuery,
  runningStatements,
  startBridgeFor,
  startGrpc,
} from "../../../../test/helpers.js";
import { as, bearer, roles, TOKENS } from "../../../../test/roles.js";

const t = suite("limits");

let client: ReturnType<typeof grpcClient>;
let bridgeUrl: string;
let admin: Awaited<ReturnType<typeof adminClient>>;

t.before(async () => {
  const fixture = await roles();
  const server = await startGrpc({
    ...fixture.env,
    POOL_MAX: "2",
    POOL_MAX_WAITING: "2",
    POOL_WAIT_MS: "300",
    MAX_REQUEST_BYTES: "65536",
    MAX_STATEMENT_TIMEOUT_MS: "5000",
  });
  client = grpcClient(server.target);
  bridgeUrl = (await startBridgeFor(server.target)).url;
  admin = await adminClient();
});

t(
  "a flood of 10x the pool gets quick RESOURCE_EXHAUSTED refusals and the service answers normally after",
  async () => {
    const started = Date.now();
    const outcomes = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const t0 = Date.now();
        try {
          await execute(client, { sql: `select pg_sleep(1) /* flood ${i} */` }, as(TOKENS.writer));
          return { ok: true, ms: Date.now() - t0, kind: "" };
        } catch (error) {
          const e = error as { code: number; error?: { kind: string } };
          assert.is(e.code, status.RESOURCE_EXHAUSTED);
          return { ok: false, ms: Date.now() - t0, kind: e.error?.kind ?? "" };
        }
      }),
    );
    const refused = outcomes.filter((o) => !o.ok);
    // Two run; two may wait 300 ms and are refused then; the rest are refused at once.
    assert.is(outcomes.filter((o) => o.ok).length, 2);
    assert.is(refused.length, 18);
    assert.ok(refused.every((o) => o.kind === "overloaded"));
    assert.ok(
      refused.every((o) => o.ms < 1000),
      `refusals took ${refused.map((o) => o.ms).join(",")} ms`,
    );
    assert.ok(Date.now() - started < 5000);
    const after = await execute(client, { sql: "select 1" }, as(TOKENS.writer));
    assert.equal(after.rows, [["1"]]);
  },
);

t("over HTTP an exhausted pool is 503 with Retry-After", async () => {
  const slow = [1, 2].map(() =>
    postQuery(bridgeUrl, { query: "select pg_sleep(0.8) /* busy */" }, bearer(TOKENS.writer)),
  );
  await eventually(
    async () => (await runningStatements(admin, "%/* busy */%")) === 2,
    5000,
    "both slots busy",
  );
  const waiting = [1, 2].map(() => postQuery(bridgeUrl, { query: "select 1" }, bearer(TOKENS.writer)));
  const refused = await postQuery(bridgeUrl, { query: "select 1" }, bearer(TOKENS.writer));
  assert.is(refused.status, 503);
  assert.ok(Number(refused.headers.get("retry-after")) >= 1);
  assert.is(refused.body.error.code, "overloaded");
  for (const response of await Promise.all(slow)) assert.is(response.status, 200);
  await Promise.all(waiting);
});

t("a credential's statement cap wins over a longer timeout the caller asks for", async () => {
  const started = Date.now();
  const error = await executeError(
    client,
    { sql: "select pg_sleep(3)", options: { timeoutMs: 4000 } },
    as(TOKENS.capped),
  );
  assert.is(error.code, status.DEADLINE_EXCEEDED);
  assert.ok(Date.now() - started < 2000);
});

t("the server's maximum statement time wins over a longer timeout the caller asks for", async () => {
  const result = await execute(
    client,
    { sql: "select current_setting('statement_timeout')", options: { timeoutMs: 3_600_000 } },
    as(TOKENS.writer),
  );
  assert.equal(result.rows, [["5s"]]);
});

t("a gRPC request larger than MAX_REQUEST_BYTES is RESOURCE_EXHAUSTED", async () => {
  const error = await executeError(client, { sql: `select '${"x".repeat(70_000)}'` }, as(TOKENS.writer));
  assert.is(error.code, status.RESOURCE_EXHAUSTED);
});

t.run();
