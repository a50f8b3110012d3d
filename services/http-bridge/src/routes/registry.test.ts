// GET /queries, DELETE /queries/{id}, GET /transactions/{xid} through the
// bridge, with two query-grpc replicas behind two bridges on one database:
// a statement posted through one is listed and cancelled through the other.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  adminClient,
  eventually,
  type JsonBody,
  postQuery,
  startBridgeFor,
  startGrpc,
} from "../../../../test/helpers.js";
import { bearer, roles, TOKENS } from "../../../../test/roles.js";

const t = suite("bridge: the registry over HTTP");

let one: string;
let other: string;

t.before(async () => {
  const fixture = await roles();
  one = (await startBridgeFor((await startGrpc(fixture.env)).target)).url;
  other = (await startBridgeFor((await startGrpc(fixture.env)).target)).url;
});

async function send(
  url: string,
  method: string,
  token: string,
): Promise<{ status: number; body: JsonBody; headers: Headers }> {
  const response = await fetch(url, { method, headers: bearer(token) });
  return { status: response.status, body: await response.json(), headers: response.headers };
}

t(
  "a statement posted through one bridge is listed and cancelled through the other; its POST ends 499",
  async () => {
    const posted = postQuery(
      one,
      { query: "select pg_sleep(30)" },
      { ...bearer(TOKENS.writer), "x-request-id": "http-long-1" },
    );
    await eventually(
      async () =>
        (await send(`${other}/queries`, "GET", TOKENS.writer)).body.queries?.some(
          (q: JsonBody) => q.requestId === "http-long-1",
        ),
      5000,
      "the statement to be listed",
    );
    const listed = await send(`${other}/queries`, "GET", TOKENS.writer);
    assert.is(listed.status, 200);
    assert.ok(listed.headers.get("x-request-id"), "the listing has a request id of its own");
    assert.not.ok(JSON.stringify(listed.body).includes("pg_sleep"), "no SQL text");

    assert.is((await send(`${other}/queries/http-long-1`, "DELETE", TOKENS.reader)).status, 403);
    const cancelled = await send(`${other}/queries/http-long-1`, "DELETE", TOKENS.writer);
    assert.is(cancelled.status, 200);
    assert.equal(cancelled.body, { cancelled: true });

    const ended = await posted;
    assert.is(ended.status, 499, ended.text);
    assert.is(ended.body.error.grpcStatus, "CANCELLED");
    assert.is(ended.headers.get("x-request-id"), "http-long-1");
  },
);

t("DELETE /queries/{id} of a request that is not running answers 404", async () => {
  const missing = await send(`${other}/queries/nothing-here`, "DELETE", TOKENS.writer);
  assert.is(missing.status, 404);
  assert.is(missing.body.error.code, "not_found");
});

t("GET /transactions/{xid} says whether a transaction committed", async () => {
  const admin = await adminClient();
  await admin.query("begin");
  const xid = (await admin.query("select pg_current_xact_id()::text as xid")).rows[0].xid as string;
  await admin.query("commit");
  const answer = await send(`${other}/transactions/${xid}`, "GET", TOKENS.reader);
  assert.equal(answer.body, { transactionId: xid, state: "committed" });
  assert.is((await send(`${other}/transactions/nope`, "GET", TOKENS.reader)).status, 400);
});

t.run();
