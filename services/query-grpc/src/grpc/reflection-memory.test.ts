// Reflection is served to anyone on query-grpc's port. Its handler answers
// every request as it arrives and never pauses the stream, and a file may be
// asked for again and again: a client that sends small requests and reads no
// answers makes the server queue one file descriptor per 60-byte request.
import http2 from "node:http2";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ServerReflectionRequest } from "../../../../proto/gen/grpc/reflection/v1/reflection.js";
import { startGrpc } from "../../../../test/helpers.js";

const t = suite("reflection memory");

async function memoryAfterGc(): Promise<number> {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  await new Promise((resolve) => setImmediate(resolve));
  gc();
  const { heapUsed, arrayBuffers } = process.memoryUsage();
  return heapUsed + arrayBuffers;
}

t("a reflection client that never reads costs the server a bounded amount of memory", async () => {
  const { target } = await startGrpc();
  const body = Buffer.from(
    ServerReflectionRequest.encode(
      ServerReflectionRequest.fromPartial({ fileByFilename: "querygate/v1/query.proto" }),
    ).finish(),
  );
  const one = Buffer.alloc(5 + body.length);
  one.writeUInt32BE(body.length, 1);
  body.copy(one, 5);
  const REQUESTS = 20_000;
  const before = await memoryAfterGc();
  const session = http2.connect(`http://${target}`);
  session.on("error", () => {});
  const stream = session.request({
    ":method": "POST",
    ":path": "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "content-type": "application/grpc",
    te: "trailers",
  });
  stream.on("error", () => {});
  stream.pause(); // never reads an answer
  const sent = Buffer.concat(Array.from({ length: REQUESTS }, () => one));
  // Not awaited: a server that reads only as fast as it answers never takes it all.
  stream.write(sent);
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const grown = (await memoryAfterGc()) - before;
  session.destroy();
  assert.ok(
    grown < 50e6,
    `${Math.round(sent.length / 1e3)} kB of requests, no answer read: the server holds ${Math.round(grown / 1e6)} MB more`,
  );
});

t.run();
