// What execute-call.ts must do as grpc-js did for the bridge: decode gRPC's
// framing however HTTP/2 cuts it, keep query-grpc's error details, retry only
// what cannot have run, and cancel for real. Servers that misbehave on purpose
// are real grpc-js servers started here; the error case runs the real query-grpc.
import { Metadata, type ServiceError, status } from "@grpc/grpc-js";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  type DeepPartial,
  ExecuteRequest,
  ExecuteResponse,
  QueryError,
} from "../../../../proto/gen/querygate/v1/query.js";
import { atEnd, eventually, startGrpc, testQueryServer } from "../../../../test/helpers.js";
import { roles } from "../../../../test/roles.js";
import { fromGrpcError } from "../errors.js";
import { type ExecuteCall, ExecuteClient } from "./execute-call.js";
import { passedOnHeaders } from "./grpc-client.js";

const t = suite("http-bridge Execute over node:http2");

function client(target: string) {
  const c = new ExecuteClient(target);
  atEnd(async () => c.close());
  return c;
}

function call(c: ExecuteClient, sql = "select 1", metadata = new Metadata()): ExecuteCall {
  return c.execute(ExecuteRequest.fromPartial({ sql }), metadata);
}

async function gather(running: ExecuteCall): Promise<ExecuteResponse[]> {
  const messages: ExecuteResponse[] = [];
  for await (const message of running) messages.push(message);
  return messages;
}

async function failure(running: ExecuteCall): Promise<ServiceError> {
  try {
    await gather(running);
  } catch (error) {
    return error as ServiceError;
  }
  throw new Error("expected the call to fail");
}

const message = (m: DeepPartial<ExecuteResponse>) => ExecuteResponse.fromPartial(m);
const HEADER = message({ header: { columns: [{ name: "n", typeName: "int4", typeOid: 23 }] } });
const FOOTER = message({ footer: { command: "SELECT", commandTag: "SELECT 1", rowCount: "1" } });
const rows = (...values: string[]) => message({ rows: { rows: values.map((v) => ({ values: [v] })) } });

t("a trailers-only refusal from query-grpc keeps its kind and SQLSTATE fields", async () => {
  const grpc = await startGrpc((await roles()).env);
  const error = await failure(call(client(grpc.target)));
  assert.is(error.code, status.UNAUTHENTICATED);
  const bin = error.metadata.get("querygate-error-bin")[0];
  assert.instance(bin, Buffer);
  assert.is(QueryError.decode(bin as Buffer).kind, "unauthenticated");
  const http = fromGrpcError(error);
  assert.is(http.status, 401);
  assert.is(http.body.error.code, "unauthenticated");
});

t("response headers come as a metadata event first, and trailers with the status last", async () => {
  const server = await testQueryServer((c) => {
    c.sendMetadata(headerMetadata());
    c.write(HEADER);
    const trailer = new Metadata();
    trailer.set("querygate-lsn", "0/16B3748");
    c.end(trailer);
  });
  const running = call(client(server.target));
  const passed = passedOnHeaders(running);
  const statusSeen = new Promise<Metadata>((resolve) =>
    running.once("status", (s: { metadata: Metadata }) => resolve(s.metadata)),
  );
  assert.equal(await gather(running), [HEADER]);
  assert.equal(passed, { "Idempotent-Replayed": "true" });
  assert.equal((await statusSeen).get("querygate-lsn"), ["0/16B3748"]);
});

function headerMetadata(): Metadata {
  const m = new Metadata();
  m.set("idempotent-replayed", "true");
  return m;
}

t("trailers that arrive while the reader is behind lose none of the messages before them", async () => {
  let sent = false;
  const server = await testQueryServer((c) => {
    c.write(HEADER);
    // 40 small messages fit in one flow-control window: all of them and the trailers arrive at once.
    for (let i = 0; i < 40; i++) c.write(rows(String(i).padStart(1000, "0")));
    c.write(FOOTER);
    c.end();
    c.on("finish", () => {
      sent = true;
    });
  });
  const running = call(client(server.target));
  await eventually(() => sent, 3000, "the server to send everything");
  // The client reads nothing meanwhile: its buffer fills and the HTTP/2 stream pauses with messages still in it.
  await new Promise((resolve) => setTimeout(resolve, 200));
  const messages = await gather(running);
  assert.is(messages.length, 42);
  assert.equal(messages.at(-1), FOOTER);
});

t("UNAVAILABLE before any headers, twice, then OK: one success after three attempts", async () => {
  let attempts = 0;
  const server = await testQueryServer((c) => {
    attempts++;
    if (attempts <= 2) {
      c.emit("error", { code: status.UNAVAILABLE, details: "not ready yet" });
      return;
    }
    c.write(HEADER);
    c.write(FOOTER);
    c.end();
  });
  assert.equal(await gather(call(client(server.target))), [HEADER, FOOTER]);
  assert.is(attempts, 3);
});

t("UNAVAILABLE every time gives up after five attempts", async () => {
  let attempts = 0;
  const server = await testQueryServer((c) => {
    attempts++;
    c.emit("error", { code: status.UNAVAILABLE, details: "never ready" });
  });
  const error = await failure(call(client(server.target)));
  assert.is(error.code, status.UNAVAILABLE);
  assert.is(error.details, "never ready");
  assert.is(attempts, 5);
});

t("UNAVAILABLE after response headers is not retried: the statement may have run", async () => {
  let attempts = 0;
  const server = await testQueryServer((c) => {
    attempts++;
    c.sendMetadata(new Metadata());
    c.write(HEADER);
    setImmediate(() => c.emit("error", { code: status.UNAVAILABLE, details: "lost the database" }));
  });
  const error = await failure(call(client(server.target)));
  assert.is(error.code, status.UNAVAILABLE);
  assert.is(attempts, 1);
});

t(
  "UNAVAILABLE with the server's pushback -1 is not retried: query-grpc says the SQL may have run",
  async () => {
    let attempts = 0;
    const server = await testQueryServer((c) => {
      attempts++;
      const metadata = new Metadata();
      metadata.set("grpc-retry-pushback-ms", "-1");
      c.emit("error", { code: status.UNAVAILABLE, details: "commit answer lost", metadata });
    });
    const error = await failure(call(client(server.target)));
    assert.is(error.code, status.UNAVAILABLE);
    assert.is(attempts, 1);
  },
);

t("UNAVAILABLE with a pushback of 0 ms is retried at once", async () => {
  let attempts = 0;
  const server = await testQueryServer((c) => {
    attempts++;
    if (attempts === 1) {
      const metadata = new Metadata();
      metadata.set("grpc-retry-pushback-ms", "0");
      c.emit("error", { code: status.UNAVAILABLE, details: "try again", metadata });
      return;
    }
    c.write(FOOTER);
    c.end();
  });
  assert.equal(await gather(call(client(server.target))), [FOOTER]);
  assert.is(attempts, 2);
});

t("cancel() mid-stream resets the stream and the server sees the call cancelled", async () => {
  let cancelled = false;
  const server = await testQueryServer((c) => {
    c.on("cancelled", () => {
      cancelled = true;
    });
    c.write(HEADER);
    c.write(rows("1"));
  });
  const running = call(client(server.target));
  const codes: number[] = [];
  running.once("status", (s: { code: number }) => codes.push(s.code));
  const messages = running[Symbol.asyncIterator]();
  assert.equal((await messages.next()).value, HEADER);
  running.cancel();
  const error = await messages.next().then(
    () => undefined,
    (e: ServiceError) => e,
  );
  // A message already buffered may come first; the end is CANCELLED either way.
  assert.equal(codes, [status.CANCELLED]);
  if (error) assert.is(error.code, status.CANCELLED);
  await eventually(() => cancelled, 3000, "the server to see the call cancelled");
});

t("a consumer that stops iterating cancels the call instead of leaving it paused", async () => {
  let cancelled = false;
  const server = await testQueryServer((c) => {
    c.on("cancelled", () => {
      cancelled = true;
    });
    c.write(HEADER);
  });
  for await (const first of call(client(server.target))) {
    assert.equal(first, HEADER);
    break;
  }
  await eventually(() => cancelled, 3000, "the server to see the call cancelled");
});

t("a call nobody reads holds at most a few decoded messages; the rest waits in HTTP/2", async () => {
  const big = rows(...Array.from({ length: 70 }, (_, i) => `${i}${"x".repeat(1000)}`));
  const server = await testQueryServer((c) => {
    c.write(HEADER);
    for (let i = 0; i < 20; i++) c.write(big);
    c.write(FOOTER);
    c.end();
  });
  const running = call(client(server.target));
  const messages = running[Symbol.asyncIterator]();
  assert.equal((await messages.next()).value, HEADER);
  await new Promise((resolve) => setTimeout(resolve, 300));
  // Decoded rows weigh several times their bytes; at 16 queued (grpc-js's
  // figure) twelve waiting calls ran a 128 MiB heap out of memory.
  assert.ok(running.readableLength <= 3, `${running.readableLength} decoded messages queued while paused`);
  let rest = 0;
  for (;;) {
    const next = await messages.next();
    if (next.done) break;
    rest += 1;
  }
  assert.is(rest, 21, "every batch and the footer still arrive");
});

t.run();
