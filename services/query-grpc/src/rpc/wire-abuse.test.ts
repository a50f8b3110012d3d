// Hostile HTTP/2 against the real query-grpc: each abuse is answered (or
// dropped) without a statement left running, and the one pooled connection
// serves the next caller at once.
import http2 from "node:http2";
import { gzipSync } from "node:zlib";
import { status } from "@grpc/grpc-js";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  adminClient,
  eventually,
  execute,
  framedExecute,
  grpcClient,
  rawExecute,
  runningStatements,
  startGrpc,
} from "../../../../test/helpers.js";

const t = suite("wire abuse");
let target: string;
let client: ReturnType<typeof grpcClient>;
let admin: Awaited<ReturnType<typeof adminClient>>;

t.before(async () => {
  const server = await startGrpc({ POOL_MAX: "1", MAX_REQUEST_BYTES: "65536" });
  target = server.target;
  client = grpcClient(target);
  admin = await adminClient();
});

function open(headers: http2.OutgoingHttpHeaders = {}) {
  const session = http2.connect(`http://${target}`);
  session.on("error", () => {});
  const stream = rawExecute(session, headers);
  const answer = new Promise<string | undefined>((resolve) => {
    let code: string | undefined;
    stream.on("response", (h) => {
      if (h["grpc-status"] !== undefined) code = String(h["grpc-status"]);
    });
    stream.on("trailers", (h) => {
      code = String(h["grpc-status"]);
    });
    stream.on("close", () => {
      session.close();
      resolve(code);
    });
  });
  return { session, stream, answer };
}

/**
 * Nothing of the abuse left running, and the pool's one connection serves the
 * next call. The bound only tells "served" from "waiting for a statement
 * timeout or a leaked connection" (30 s and more): it is not a speed target.
 */
async function healthy(tag: string) {
  await eventually(async () => (await runningStatements(admin, `%${tag}%`)) === 0, 3000, `no ${tag} running`);
  let hung: NodeJS.Timeout | undefined;
  const next = await Promise.race([
    execute(client, { sql: "select 1" }),
    new Promise<never>((_, reject) => {
      hung = setTimeout(() => reject(new Error("the next call was not served within 10 s")), 10_000);
    }),
  ]).finally(() => clearTimeout(hung));
  assert.equal(next.rows, [["1"]]);
}

t("a reset between result messages stops the statement", async () => {
  const { stream, answer } = open();
  stream.end(framedExecute("select repeat('x', 10000) /* rst-mid */ from generate_series(1, 1000000)"));
  await new Promise<void>((resolve) => stream.once("data", () => resolve()));
  stream.close(http2.constants.NGHTTP2_CANCEL);
  await answer;
  await healthy("rst-mid");
});

t("a length prefix of 4 GB is RESOURCE_EXHAUSTED", async () => {
  const { stream, answer } = open();
  const prefix = Buffer.from([0, 0xff, 0xff, 0xff, 0xff]);
  stream.end(prefix);
  assert.is(await answer, String(status.RESOURCE_EXHAUSTED));
  await healthy("nothing");
});

t("a gzip bomb is RESOURCE_EXHAUSTED", async () => {
  const { stream, answer } = open({ "grpc-encoding": "gzip" });
  stream.end(framedExecute("", 1, gzipSync(Buffer.alloc(50 * 1024 * 1024))));
  assert.is(await answer, String(status.RESOURCE_EXHAUSTED));
  await healthy("nothing");
});

t("a malformed grpc-timeout is INTERNAL and a huge one is served", async () => {
  const bad = open({ "grpc-timeout": "soon" });
  bad.stream.end(framedExecute("select 1"));
  assert.is(await bad.answer, String(status.INTERNAL));
  const huge = open({ "grpc-timeout": "99999999H" });
  huge.stream.resume();
  huge.stream.end(framedExecute("select 1"));
  assert.is(await huge.answer, String(status.OK));
});

t("a hundred metadata entries and -bin garbage are served", async () => {
  const headers: http2.OutgoingHttpHeaders = { "x-junk-bin": "%%%not base64%%%" };
  for (let i = 0; i < 100; i++) headers[`x-m${i}`] = "v";
  const { stream, answer } = open(headers);
  stream.resume();
  stream.end(framedExecute("select 1"));
  assert.is(await answer, String(status.OK));
});

t("streams that never end their request run nothing and leave with their connection", async () => {
  const session = http2.connect(`http://${target}`);
  session.on("error", () => {});
  for (let i = 0; i < 500; i++) {
    rawExecute(session).write(framedExecute("select pg_sleep(5) /* never-ends */"));
  }
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.is(await runningStatements(admin, "%never-ends%"), 0);
  session.destroy();
  await healthy("never-ends");
});

t.run();
