// A caller's mistake gets a precise 4xx from the bridge, never a 5xx or an
// invitation to retry, and never a silently changed value: bodies nested too
// deep, bytes that are not UTF-8, lone UTF-16 surrogates, a result too large
// to buffer, and grpc-js's own message-size limits. After each, the bridge
// still answers the next query.
import { credentials, type ServiceError, status } from "@grpc/grpc-js";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ExecuteRequest, QueryServiceClient } from "../../../../proto/gen/querygate/v1/query.js";
import { atEnd, type JsonBody, postQuery, startBridgeFor, startStack } from "../../../../test/helpers.js";
import { fromGrpcError } from "../errors.js";

const t = suite("http-bridge caller mistakes");
let url: string;
let grpcTarget: string;

t.before(async () => {
  const stack = await startStack();
  url = stack.url;
  grpcTarget = stack.grpc.target;
});

/** POST /query with these exact bytes as the body. */
async function postBytes(bytes: Uint8Array, headers: Record<string, string> = {}) {
  const response = await fetch(`${url}/query`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: bytes,
  });
  const text = await response.text();
  let body: JsonBody;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: response.status, headers: response.headers, body, text };
}

const utf8 = (text: string) => new TextEncoder().encode(text);

async function stillServing(target = url) {
  const next = await postQuery(target, { query: "select 1 as one" });
  assert.is(next.status, 200, `the next query after a bad one: ${next.text}`);
  assert.equal(next.body.result, [{ one: 1 }]);
}

const DEPTH = 200_000;
const deepArray = `${"[".repeat(DEPTH)}${"]".repeat(DEPTH)}`;
// 150,000 levels of {"a": still fit the 1 MiB body limit.
const deepObject = `${'{"a":'.repeat(150_000)}1${"}".repeat(150_000)}`;

t(
  "a body nested 150,000–200,000 levels deep is a 400 that says how deep it may be, wherever the nesting is",
  async () => {
    const bodies = {
      "an array parameter": `{"query":"select $1","params":[${deepArray}]}`,
      "an object parameter": `{"query":"select $1::jsonb","params":[${deepObject}]}`,
      "the whole body": deepArray,
      "an unknown field": `{"query":"select 1","extra":${deepObject}}`,
      "a batch statement's parameter": `{"statements":[{"query":"select $1","params":[${deepArray}]}]}`,
    };
    for (const [where, body] of Object.entries(bodies)) {
      const response = await postBytes(utf8(body));
      assert.is(response.status, 400, `${where}: ${response.status} ${response.text.slice(0, 200)}`);
      assert.is(response.body.error.code, "invalid_request", where);
      assert.match(response.body.error.message, /nested deeper than \d+ levels/, where);
      await stillServing();
    }
  },
);

t("a parameter nested as deep as PostgreSQL allows still runs", async () => {
  const sixDimensions = [[[[[[1]]]]]];
  const response = await postQuery(url, {
    query: "select $1::int[] as a, $2::jsonb #>> '{a,a,a,a,a,a,a,a,a,a}' as j",
    params: [sixDimensions, JSON.parse(`${'{"a":'.repeat(10)}"deep"${"}".repeat(10)}`)],
  });
  assert.is(response.status, 200, response.text);
  assert.equal(response.body.result, [{ a: [[[[[[1]]]]]], j: "deep" }]);
});

t("bytes that are not UTF-8 are a 400 invalid_encoding, not replaced with U+FFFD", async () => {
  const bad = {
    "a lone continuation byte in the query": [0x80],
    "an invalid lead byte": [0xff, 0xfe],
    "a truncated sequence": [0xe2, 0x82],
    "an overlong encoding": [0xc0, 0xaf],
  };
  for (const [what, bytes] of Object.entries(bad)) {
    for (const [prefix, suffix] of [
      [`{"query":"select '`, `' as s"}`],
      [`{"query":"select $1::text as s","params":["`, `"]}`],
    ]) {
      const body = new Uint8Array([...utf8(prefix!), ...bytes, ...utf8(suffix!)]);
      const response = await postBytes(body);
      assert.is(response.status, 400, `${what}: ${response.text}`);
      assert.is(response.body.error.code, "invalid_encoding", what);
      assert.match(response.body.error.message, /UTF-8/);
    }
  }
  await stillServing();
});

t(
  "a lone surrogate escape anywhere in the body is a 400 invalid_encoding; a surrogate pair is a character",
  async () => {
    const bodies = {
      query: String.raw`{"query":"select '\ud800' as s"}`,
      "a string parameter": String.raw`{"query":"select $1::text","params":["a\udc00b"]}`,
      "a string in an array parameter": String.raw`{"query":"select $1::text[]","params":[["ok","\ud83d"]]}`,
      "an object parameter's key": String.raw`{"query":"select $1::jsonb","params":[{"\udfff":1}]}`,
      "a batch statement": String.raw`{"statements":[{"query":"select '\ud800'"}]}`,
    };
    for (const [where, body] of Object.entries(bodies)) {
      const response = await postBytes(utf8(body));
      assert.is(response.status, 400, `${where}: ${response.text}`);
      assert.is(response.body.error.code, "invalid_encoding", where);
      assert.match(response.body.error.message, /surrogate/, where);
      await stillServing();
    }
    const pair = await postBytes(
      utf8(String.raw`{"query":"select $1::text as s","params":["\ud83d\ude00"]}`),
    );
    assert.is(pair.status, 200, pair.text);
    assert.equal(pair.body.result, [{ s: "😀" }]);
  },
);

t("a 100 MB value is a 413 result_too_large as buffered JSON and streams whole as NDJSON", async () => {
  const query = "select repeat('x', 100000000) as big";
  const buffered = await postQuery(url, { query });
  assert.is(buffered.status, 413, buffered.text.slice(0, 300));
  assert.is(buffered.body.error.code, "result_too_large");
  assert.is(buffered.headers.get("retry-after"), null);
  await stillServing();

  const streamed = await postQuery(url, { query }, { accept: "application/x-ndjson" });
  assert.is(streamed.status, 200, streamed.text.slice(0, 300));
  const lines = streamed.text.split("\n");
  assert.is(lines.length, 4, "header, one row, footer, and the final newline");
  assert.is(lines[1]!.length, `{"row":{"big":""}}`.length + 100_000_000);
  assert.ok(lines[1]!.startsWith(`{"row":{"big":"xxxx`));
  assert.equal(JSON.parse(lines[2]!), { footer: { command: "SELECT", rowCount: 1 } });
  await stillServing();
});

t("grpc-js's own RESOURCE_EXHAUSTED on the bridge's client is a 413 without Retry-After", async () => {
  // A client with a small receive limit: the error is grpc-js's, query-grpc sent a normal row.
  const client = new QueryServiceClient(grpcTarget, credentials.createInsecure(), {
    "grpc.max_receive_message_length": 1024,
  });
  atEnd(async () => client.close());
  const error = await new Promise<ServiceError>((resolve, reject) => {
    const call = client.execute(ExecuteRequest.fromPartial({ sql: "select repeat('x', 5000)" }));
    call.on("data", () => {});
    call.on("error", resolve);
    call.on("end", () => reject(new Error("expected the call to fail")));
  });
  assert.is(error.code, status.RESOURCE_EXHAUSTED, error.details);
  const http = fromGrpcError(error);
  assert.is(http.status, 413, JSON.stringify(http));
  assert.is(http.body.error.code, "too_large");
  assert.equal(http.headers, {});
});

t(
  "a request over query-grpc's MAX_REQUEST_BYTES, refused by its grpc-js, is a 413 without Retry-After",
  async () => {
    const { grpc } = await startStack({ MAX_REQUEST_BYTES: "1024" });
    const bridge = await startBridgeFor(grpc.target);
    const response = await postQuery(bridge.url, { query: `select 1 /* ${"x".repeat(4096)} */` });
    assert.is(response.status, 413, response.text);
    assert.is(response.body.error.code, "too_large");
    assert.is(response.body.error.grpcStatus, "RESOURCE_EXHAUSTED");
    assert.is(response.headers.get("retry-after"), null);
    await stillServing(bridge.url);
  },
);

t(
  "a write whose RETURNING rows pass the buffered JSON limit is a 413 that committed nothing, whether one row or the 3,000th passes it",
  async () => {
    const { url: small } = await startStack({}, { MAX_JSON_RESPONSE_BYTES: "4096" });
    await postQuery(small, { query: "create table over_limit (id serial primary key, v text)" });
    // 40 rows are one batch, held back until COMMIT (the bridge's own check once
    // answered 413 after it); 3,000 pass the limit mid-stream.
    for (const rows of [40, 3000]) {
      const insert = `insert into over_limit (v) select repeat('x', 100) from generate_series(1, ${rows}) returning v`;
      const response = await postQuery(small, { query: insert });
      assert.is(response.status, 413, response.text.slice(0, 300));
      assert.is(response.body.error.code, "result_too_large");
      assert.ok(response.body.error.message.includes("accept: application/x-ndjson"), response.text);
      assert.is(response.headers.get("retry-after"), null);
    }
    const count = await postQuery(small, { query: "select count(*)::int as n from over_limit" });
    assert.equal(count.body.result, [{ n: 0 }]);
    const fits = await postQuery(small, { query: "insert into over_limit (v) values ('x') returning v" });
    assert.is(fits.status, 200, fits.text);
    await stillServing(small);
  },
);

t("rows asked for as arrays count against the buffered JSON limit without their column names", async () => {
  const { url: small } = await startStack({}, { MAX_JSON_RESPONSE_BYTES: "4096" });
  // 60 rows of one short value under a 60-character name: about 4,100 bytes as
  // objects, past the limit; about 400 as arrays.
  const query = `select 'v' as ${"n".repeat(60)} from generate_series(1, 60)`;
  const objects = await postQuery(small, { query });
  assert.is(objects.status, 413, objects.text.slice(0, 300));
  assert.is(objects.body.error.code, "result_too_large");
  const arrays = await postQuery(small, { query, rowMode: "array" });
  assert.is(arrays.status, 200, arrays.text.slice(0, 300));
  assert.is(arrays.body.result.length, 60);
  assert.equal(arrays.body.result[0], ["v"]);
});

t.run();
