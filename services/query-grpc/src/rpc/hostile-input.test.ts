// Caller mistakes, however extreme, get a precise status (INVALID_ARGUMENT
// with PostgreSQL's SQLSTATE), never a server or retry status, and leave
// query-grpc healthy for the next caller.
import { credentials, type ServiceError, status } from "@grpc/grpc-js";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  HealthClient,
  HealthCheckResponse_ServingStatus as Serving,
} from "../../../../proto/gen/grpc/health/v1/health.js";
import { ExecuteRequest, ExecuteResponse } from "../../../../proto/gen/querygate/v1/query.js";
import { atEnd, execute, executeError, grpcClient, startGrpc } from "../../../../test/helpers.js";

const t = suite("hostile input");
let client: ReturnType<typeof grpcClient>;
let health: HealthClient;

t.before(async () => {
  const server = await startGrpc();
  client = grpcClient(server.target);
  health = new HealthClient(server.target, credentials.createInsecure());
  atEnd(async () => health.close());
});

async function stillHealthy() {
  const next = await execute(client, { sql: "select 1" });
  assert.equal(next.rows, [["1"]]);
  const serving = await new Promise<number>((resolve, reject) =>
    health.check({ service: "" }, (error, response) => (error ? reject(error) : resolve(response.status))),
  );
  assert.is(serving, Serving.SERVING);
}

t("forty statements nested too deeply for the parser each fail alone with 54001", async () => {
  const deep = `select 1${"+1".repeat(10_000)}`;
  for (let i = 0; i < 40; i++) {
    const error = await executeError(client, { sql: deep });
    assert.is(error.code, status.INVALID_ARGUMENT);
    assert.is(error.error?.sqlstate, "54001");
  }
  await stillHealthy();
});

t(
  "a statement wider than the token budget is refused unparsed with 54001, and parsing it costs no memory",
  async () => {
    // 900 KB of `select 1,1,...`: parsing it took the parser's thread 5 s and 330 MB it never gave back.
    const wide = `select ${"1,".repeat(450_000)}1`;
    const before = process.memoryUsage.rss();
    for (let i = 0; i < 3; i++) {
      const error = await executeError(client, { sql: wide });
      assert.is(error.code, status.INVALID_ARGUMENT);
      assert.is(error.error?.sqlstate, "54001");
      assert.match(error.details, "PARSE_MAX_TOKENS");
    }
    const grewMb = (process.memoryUsage.rss() - before) / 1024 / 1024;
    assert.ok(grewMb < 60, `query-grpc grew ${grewMb.toFixed(0)} MB`);
    await stillHealthy();
  },
);

t("a long statement whose length is its literals runs, however long", async () => {
  const result = await execute(client, { sql: `select length('${"x".repeat(900_000)}') as n` });
  assert.equal(result.rows, [["900000"]]);
});

t("a statement just inside the token budget is classified and runs", async () => {
  const result = await execute(client, { sql: `select 1 where 1 in (${"1,".repeat(45_000)}1)` });
  assert.equal(result.rows, [["1"]]);
});

t("a statement of two thousand terms is classified and runs", async () => {
  const result = await execute(client, { sql: `select 1${"+1".repeat(2000)}` });
  assert.equal(result.rows, [["2001"]]);
});

t("deep parentheses are refused or run, and never hurt the next caller", async () => {
  for (const depth of [1000, 5000, 50_000]) {
    const sql = `select ${"(".repeat(depth)}1${")".repeat(depth)}`;
    const outcome = await execute(client, { sql }).then(
      () => status.OK,
      (error: { code: number }) => error.code,
    );
    assert.ok([status.OK, status.INVALID_ARGUMENT].includes(outcome), `depth ${depth}: ${outcome}`);
  }
  await stillHealthy();
});

t("a wrong parameter count is INVALID_ARGUMENT, not a connection failure", async () => {
  const error = await executeError(client, { sql: "select $1::int + $2::int", params: [{ intValue: "1" }] });
  assert.is(error.code, status.INVALID_ARGUMENT);
  assert.is(error.error?.sqlstate, "08P01");
  assert.match(error.details, /takes 2 parameters/);
  await stillHealthy();
});

t("more parameters than the protocol can count are refused, not wrapped", async () => {
  const params = Array.from({ length: 65_537 }, () => ({ intValue: "1" }));
  const error = await executeError(client, { sql: "select $1::int", params });
  assert.is(error.code, status.INVALID_ARGUMENT);
  assert.is(error.error?.sqlstate, "54023");
  await stillHealthy();
});

t("a NUL character in the SQL text is refused with 22021", async () => {
  const error = await executeError(client, { sql: "select 1\u0000; drop table x" });
  assert.is(error.code, status.INVALID_ARGUMENT);
  assert.is(error.error?.sqlstate, "22021");
  await stillHealthy();
});

t("program limits PostgreSQL reports (too many columns, too deep) are INVALID_ARGUMENT", async () => {
  const columns = Array.from({ length: 10_000 }, (_, i) => `${i} as c${i}`).join(", ");
  const wide = await executeError(client, { sql: `select ${columns}` });
  assert.is(wide.code, status.INVALID_ARGUMENT);
  assert.is(wide.error?.sqlstate, "54011");
  const deepJson = await executeError(client, {
    sql: "select $1::jsonb",
    params: [{ textValue: `${"[".repeat(100_000)}${"]".repeat(100_000)}` }],
  });
  assert.is(deepJson.code, status.INVALID_ARGUMENT);
  assert.is(deepJson.error?.sqlstate, "54001");
  await stillHealthy();
});

t("wide rows go out in messages a default gRPC client can receive", async () => {
  // 20 rows of 600 kB: as one first batch of 100 rows that was a 12 MB message,
  // over grpc-js' and grpcurl's 4 MiB default receive limit.
  const result = await execute(client, { sql: "select repeat('x', 600000) from generate_series(1, 20)" });
  assert.is(result.rows.length, 20);
  for (const message of result.messages) {
    const bytes = (message.rows?.rows ?? []).reduce((n, row) => n + (row.values[0]?.length ?? 0), 0);
    assert.ok(bytes <= 2 * 1024 * 1024, `a message carried ${bytes} bytes of values`);
  }
});

t("invalid UTF-8 in a request's strings is refused with 22021, not replaced", async () => {
  const encoded = Buffer.from(
    ExecuteRequest.encode(
      ExecuteRequest.fromPartial({ sql: "select $1::text", params: [{ textValue: "ZZZZ" }] }),
    ).finish(),
  );
  const at = encoded.indexOf("ZZZZ");
  encoded.set([0x61, 0xff, 0xfe, 0x62], at); // not UTF-8: grpc-js would have made it "a\ufffd\ufffdb"
  const code = await new Promise<{ code: number; sqlstate: string | undefined }>((resolve) => {
    const call = client.makeServerStreamRequest(
      "/querygate.v1.QueryService/Execute",
      (bytes: Buffer) => bytes,
      (bytes: Buffer) => ExecuteResponse.decode(bytes),
      encoded,
    );
    call.on("data", () => {});
    call.on("error", (error: ServiceError) =>
      resolve({ code: error.code, sqlstate: error.metadata.get("sqlstate")[0]?.toString() }),
    );
    call.on("end", () => resolve({ code: status.OK, sqlstate: undefined }));
  });
  assert.equal(code, { code: status.INVALID_ARGUMENT, sqlstate: "22021" });
  await stillHealthy();
});

t("an error quoting a huge statement still reaches the caller, its text cut short", async () => {
  const error = await executeError(client, { sql: `select '${"'".repeat(224_037)}' as v` });
  assert.is(error.code, status.INVALID_ARGUMENT);
  assert.is(error.error?.sqlstate, "42601");
  assert.ok((error.error?.message.length ?? 0) < 2000, "the message is clipped");
  await stillHealthy();
});

t.run();
