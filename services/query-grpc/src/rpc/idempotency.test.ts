// The ledger behind a low-privilege login role, installed by `npm run
// migrate` (scripts/migrate.ts) as the database owner: querygate's login role
// writes it through the SECURITY DEFINER functions, callers' roles cannot.
import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import type { QueryServiceClient } from "../../../../proto/gen/querygate/v1/query.js";
import { adminClient, execute, executeError, grpcClient, startGrpc } from "../../../../test/helpers.js";
import { as, roles, TOKENS } from "../../../../test/roles.js";
import { migrate } from "../postgres/ledger.js";

const t = suite("idempotency ledger behind the login role");

let client: QueryServiceClient;

t.before(async () => {
  const fixture = await roles();
  await migrate(await adminClient(), "authenticator");
  client = grpcClient((await startGrpc(fixture.env)).target);
});

function keyed(token: string, key: string) {
  const metadata = as(token);
  metadata.set("idempotency-key", key);
  return metadata;
}

t("a caller's write with a key runs once; the retry is a replay", async () => {
  const key = randomUUID();
  const insert = {
    sql: "insert into app.items (name) values ($1) returning name",
    params: [{ textValue: key }],
  };
  const first = await execute(client, insert, keyed(TOKENS.writer, key));
  const again = await execute(client, insert, keyed(TOKENS.writer, key));
  assert.equal(again.rows, first.rows);
  const admin = await adminClient();
  assert.is((await admin.query("select 1 from app.items where name = $1", [key])).rowCount, 1);
  assert.is(
    (await admin.query("select caller from querygate.idempotency_keys where key = $1", [key])).rows[0]
      ?.caller,
    "ingest",
  );
});

t("a caller's own SQL may not write the ledger, so it cannot forge another caller's replay", async () => {
  const forged = await executeError(
    client,
    { sql: "select querygate.idempotency_claim('reporting', 'forged', 'x', 60, 0)" },
    as(TOKENS.writer),
  );
  assert.is(forged.code, status.PERMISSION_DENIED, forged.details);
});

t.run();
