// A caller that stops reading its answer is cut after SEND_TIMEOUT_MS without
// progress; one that reads slowly, or waits long for its first byte, is not.
// These run the whole stack with an 800 ms send timeout, over raw sockets so
// that "not reading" means the kernel buffers fill and stay full.
import { connect, type Socket } from "node:net";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  adminClient,
  bridgeMetric,
  eventually,
  type JsonBody,
  postQuery,
  rawQueryRequest,
  runningStatements,
  startStack,
} from "../../../test/helpers.js";

const t = suite("send timeout");

const SEND_TIMEOUT_MS = 800;
/** Room for one of the 30 MB answers below, not for two. */
const BUDGET = 40 * 1024 * 1024;
let url: string;
let port: number;
let admin: Awaited<ReturnType<typeof adminClient>>;

t.before(async () => {
  const stack = await startStack(
    {},
    { SEND_TIMEOUT_MS: String(SEND_TIMEOUT_MS), MAX_BUFFERED_JSON_BYTES: String(BUDGET) },
  );
  url = stack.url;
  port = stack.bridge.port;
  admin = await adminClient();
});

const metric = (name: string) => bridgeMetric(url, name);

const cuts = () => metric("querygate_http_send_timeouts_total");

/** About 30 MB of JSON, far past what the kernel's socket buffers take. */
const BIG = (tag: string) => `select g, repeat('x', 1000) as v /* ${tag} */ from generate_series(1, 30000) g`;

/**
 * POST /query on a raw socket, paused: nothing is read until `resume`
 * (flowing), or until the test calls read() (not flowing).
 */
function request(
  sql: string,
  { accept = "application/json", flowing = true } = {},
): { socket: Socket; received: () => Buffer } {
  const socket = connect(port, "127.0.0.1");
  socket.pause();
  socket.write(rawQueryRequest(sql, { accept, connection: "close" }));
  const chunks: Buffer[] = [];
  if (flowing) socket.on("data", (chunk: Buffer) => chunks.push(chunk));
  socket.on("error", () => {});
  return { socket, received: () => Buffer.concat(chunks) };
}

function closed(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.closed) resolve();
    else socket.once("close", () => resolve());
  });
}

t("a caller who stops reading is cut, its statement stopped, and the next caller is served", async () => {
  const before = await cuts();
  const json = request(BIG("never-read-json"));
  const ndjson = request(BIG("never-read-ndjson"), { accept: "application/x-ndjson" });
  await eventually(async () => (await cuts()) >= before + 2, 15_000, "both responses to be cut");
  // The streamed one held a statement in PostgreSQL while its caller did not read.
  await eventually(
    async () => (await runningStatements(admin, "%never-read-ndjson%")) === 0,
    5000,
    "the abandoned NDJSON statement to stop",
  );
  for (const { socket, received } of [json, ndjson]) {
    socket.resume();
    await closed(socket);
    const text = received().toString("latin1");
    assert.match(text, /^HTTP\/1\.1 200/);
    assert.ok(text.length < 30_000_000, `only part of the answer arrived (${text.length} bytes)`);
  }
  const next = await postQuery(url, { query: "select 1 as n" });
  assert.is(next.status, 200);
  assert.equal(next.body.result, [{ n: 1 }]);
});

/** Reads 64 KiB every 5 ms, about 12 MB/s, until the connection closes; returns the JSON body. */
async function readSlowly(socket: Socket): Promise<JsonBody> {
  const chunks: Buffer[] = [];
  const reading = setInterval(() => {
    const chunk = (socket.read(65536) ?? socket.read()) as Buffer | null;
    if (chunk) chunks.push(chunk);
  }, 5);
  await closed(socket);
  clearInterval(reading);
  const text = Buffer.concat(chunks).toString("latin1");
  return JSON.parse(text.slice(text.indexOf("\r\n\r\n") + 4));
}

t("a caller who reads slowly, its buffers never empty, gets it all", async () => {
  const before = await cuts();
  // The kernel's buffers (a few MB) stay full, so bytes wait in the bridge
  // for seconds on end, yet some go out within every SEND_TIMEOUT_MS.
  const body = await readSlowly(request(BIG("slow-reader"), { flowing: false }).socket);
  assert.is(body.result.length, 30_000);
  assert.is(body.result[29_999].g, 30_000);
  assert.is(await cuts(), before);
});

t("a caller who reads slowly one 20 MB value, written to the socket in one piece, gets it all", async () => {
  const before = await cuts();
  // One write for the whole value: only libuv's queue shows it going out.
  const body = await readSlowly(request("select repeat('w', 20000000) as v", { flowing: false }).socket);
  assert.is(body.result[0].v.length, 20_000_000);
  assert.is(await cuts(), before);
});

t(
  "a caller who stops reading keeps the budget its unsent JSON holds until it is cut; the answer behind it waits, then arrives whole",
  async () => {
    const waitsBefore = await metric("querygate_http_buffered_json_waits_total");
    const cutsBefore = await cuts();
    const unread = request(BIG("unread-budget"), { flowing: false });
    // Its first bytes: the body was assembled and handed to the socket.
    await new Promise((resolve) => unread.socket.once("readable", resolve));
    const behind = await postQuery(url, { query: BIG("behind") });
    assert.is(behind.status, 200);
    assert.is(behind.body.result.length, 30_000);
    assert.ok(
      (await metric("querygate_http_buffered_json_waits_total")) > waitsBefore,
      "the answer behind must have waited for the share of the one not read",
    );
    assert.ok((await cuts()) > cutsBefore, "it went on once the caller that stopped reading was cut");
    unread.socket.destroy();
    await eventually(
      async () => (await metric("querygate_http_buffered_json_bytes")) === 0,
      5000,
      "the budget to be given back",
    );
  },
);

t("a statement that runs longer than the timeout before its first byte is not cut", async () => {
  const before = await cuts();
  const answer = await postQuery(url, { query: "select 'late' as v from pg_sleep(1.5)" });
  assert.is(answer.status, 200);
  assert.equal(answer.body.result, [{ v: "late" }]);
  assert.is(await cuts(), before);
});

t.run();
