// What the node:http2 gRPC server must do as grpc-js's did, on real HTTP/2 over
// loopback, with grpc-js clients and raw node:http2 ones: trailers-only
// answers, deadlines, cancellation, limits, metadata and grpc-message coding,
// idle sessions; and the reason it exists: an answer leaves in few socket writes.
import http2 from "node:http2";
import { connect, type Socket } from "node:net";
import { Duplex } from "node:stream";
import { gzipSync } from "node:zlib";
import {
  credentials,
  Metadata,
  makeGenericClientConstructor,
  type ServiceError,
  status,
} from "@grpc/grpc-js";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { HealthCheckRequest, HealthCheckResponse } from "../../../../../proto/gen/grpc/health/v1/health.js";
import { atEnd, eventually } from "../../../../../test/helpers.js";
import type { ServerWritableCall, ServiceHandlers } from "../../rpc/server-call.js";
import { listen } from "../listener.js";
import { GrpcServer, type GrpcServerOptions } from "./server.js";

const t = suite("gRPC on node:http2");

/** A test service made of health messages: `service` in, `status` out. */
const codec = {
  requestSerialize: (v: HealthCheckRequest) => Buffer.from(HealthCheckRequest.encode(v).finish()),
  requestDeserialize: (b: Buffer) => HealthCheckRequest.decode(b),
  responseSerialize: (v: HealthCheckResponse) => Buffer.from(HealthCheckResponse.encode(v).finish()),
  responseDeserialize: (b: Buffer) => HealthCheckResponse.decode(b),
};
const Echo = {
  unary: {
    path: "/test.Echo/Unary",
    requestStream: false as const,
    responseStream: false as const,
    ...codec,
  },
  stream: {
    path: "/test.Echo/Stream",
    requestStream: false as const,
    responseStream: true as const,
    ...codec,
  },
  bidi: { path: "/test.Echo/Bidi", requestStream: true as const, responseStream: true as const, ...codec },
  bytes: {
    path: "/test.Echo/Bytes",
    requestStream: false as const,
    responseStream: true as const,
    requestSerialize: (b: Buffer) => b,
    requestDeserialize: (b: Buffer) => b,
    responseSerialize: (b: Buffer) => b,
    responseDeserialize: (b: Buffer) => b,
  },
};
type Call = ServerWritableCall<HealthCheckRequest, HealthCheckResponse>;

interface Started {
  port: number;
  server: GrpcServer;
  client: EchoClient;
}

/** What makeGenericClientConstructor builds for Echo, as these tests call it. */
interface EchoClient {
  close(): void;
  unary(...args: unknown[]): NodeJS.EventEmitter;
  stream(...args: unknown[]): NodeJS.EventEmitter & { cancel(): void };
  bidi(...args: unknown[]): NodeJS.EventEmitter & { write(m: HealthCheckRequest): void; end(): void };
}

async function start(
  handlers: Partial<ServiceHandlers<typeof Echo>>,
  options: Partial<GrpcServerOptions> = {},
  wrap: (socket: Socket) => Duplex = (socket) => socket,
): Promise<Started> {
  const server = new GrpcServer({ maxReceiveBytes: 1024, idleTimeoutMs: 60_000, ...options });
  const never = () => {};
  server.addService(Echo, { unary: never, stream: never, bidi: never, bytes: never, ...handlers });
  const listener = await listen((socket) => server.accept(wrap(socket)), "127.0.0.1", 0, 5000);
  const Constructor = makeGenericClientConstructor(Echo, "Echo");
  const generic = new Constructor(`127.0.0.1:${listener.port}`, credentials.createInsecure());
  const method = (name: string) => {
    const call = generic[name];
    if (!call) throw new Error(`no client method ${name}`);
    return (...args: unknown[]) => call.apply(generic, args);
  };
  const client: EchoClient = {
    close: () => generic.close(),
    unary: method("unary"),
    stream: method("stream"),
    bidi: method("bidi"),
  };
  atEnd(async () => {
    client.close();
    await listener.close();
    server.forceShutdown();
  });
  return { port: listener.port, server, client };
}

function unary(
  client: Started["client"],
  request: HealthCheckRequest,
  metadata = new Metadata(),
): Promise<{
  error: ServiceError | null;
  response?: HealthCheckResponse;
  headers?: Metadata;
  trailers?: Metadata;
}> {
  return new Promise((resolve) => {
    let headers: Metadata | undefined;
    let trailers: Metadata | undefined;
    const call = client.unary(
      request,
      metadata,
      (error: ServiceError | null, response?: HealthCheckResponse) =>
        setImmediate(() => resolve({ error, response, headers, trailers })),
    ) as NodeJS.EventEmitter;
    call.on("metadata", (m: Metadata) => {
      headers = m;
    });
    call.on("status", (s: { metadata: Metadata }) => {
      trailers = s.metadata;
    });
  });
}

/** A raw HTTP/2 request: the response headers, the trailers (if any) and the body. */
function raw(port: number, headers: http2.OutgoingHttpHeaders, body?: Buffer) {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on("error", () => {});
  const stream = session.request(headers);
  stream.end(body);
  return new Promise<{
    headers: http2.IncomingHttpHeaders;
    trailers?: http2.IncomingHttpHeaders;
    data: Buffer;
  }>((resolve, reject) => {
    let response: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders | undefined;
    const chunks: Buffer[] = [];
    stream.on("response", (h) => {
      response = h;
    });
    stream.on("trailers", (h) => {
      trailers = h;
    });
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("error", reject);
    stream.on("close", () => {
      session.close();
      resolve({ headers: response, trailers, data: Buffer.concat(chunks) });
    });
  });
}

/** Calls Echo.stream, reading and ignoring its messages; resolves with its status. */
function streamStatus(client: EchoClient): Promise<{ code: number }> {
  const call = client.stream({ service: "" }, new Metadata()) as NodeJS.EventEmitter;
  call.on("data", () => {});
  call.on("error", () => {});
  return new Promise((resolve) => call.on("status", resolve));
}

const frame = (message: Uint8Array) => {
  const out = Buffer.alloc(5 + message.length);
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
};

t("an unknown method is answered trailers-only with UNIMPLEMENTED", async () => {
  const { port } = await start({});
  const answer = await raw(port, {
    ":method": "POST",
    ":path": "/test.Echo/Nope",
    "content-type": "application/grpc",
    te: "trailers",
  });
  assert.is(answer.headers[":status"], 200);
  assert.is(answer.headers["grpc-status"], String(status.UNIMPLEMENTED));
  assert.match(String(answer.headers["grpc-message"]), /Nope/);
  assert.is(answer.trailers, undefined, "no second HEADERS frame");
  assert.is(answer.data.length, 0);
});

t("a request that is not gRPC is refused with HTTP 415", async () => {
  const { port } = await start({});
  const answer = await raw(port, {
    ":method": "POST",
    ":path": "/test.Echo/Unary",
    "content-type": "text/plain",
  });
  assert.is(answer.headers[":status"], 415);
});

t("a unary call with two request messages is UNIMPLEMENTED, as grpc-js answers", async () => {
  let ran = false;
  const { port } = await start({
    unary: (_call, callback) => {
      ran = true;
      callback(null, { status: 1 });
    },
  });
  const one = frame(HealthCheckRequest.encode({ service: "a" }).finish());
  const answer = await raw(
    port,
    { ":method": "POST", ":path": "/test.Echo/Unary", "content-type": "application/grpc", te: "trailers" },
    Buffer.concat([one, one]),
  );
  assert.is(answer.headers["grpc-status"], String(status.UNIMPLEMENTED));
  assert.not.ok(ran);
});

t("a unary call with no request message is UNIMPLEMENTED and its handler never runs", async () => {
  let ran = false;
  const { port } = await start({
    unary: (_call, callback) => {
      ran = true;
      callback(null, { status: 1 });
    },
  });
  const answer = await raw(port, {
    ":method": "POST",
    ":path": "/test.Echo/Unary",
    "content-type": "application/grpc",
    te: "trailers",
  });
  assert.is(answer.headers["grpc-status"], String(status.UNIMPLEMENTED));
  assert.not.ok(ran);
});

t("a passed grpc-timeout ends the call DEADLINE_EXCEEDED and the handler sees cancelled", async () => {
  let seen: Call | undefined;
  let cancelledEvents = 0;
  let deadline: Date | number = 0;
  const { client } = await start({
    stream: (call) => {
      seen = call;
      deadline = call.getDeadline();
      call.sendMetadata(new Metadata());
      call.on("cancelled", () => cancelledEvents++);
    },
  });
  const before = Date.now();
  const error = await new Promise<ServiceError>((resolve) => {
    const call = client.stream({ service: "" }, new Metadata(), {
      deadline: Date.now() + 300,
    }) as NodeJS.EventEmitter;
    call.on("data", () => {});
    call.on("error", resolve);
  });
  assert.is(error.code, status.DEADLINE_EXCEEDED);
  assert.ok(
    typeof deadline === "number" && deadline > before && deadline <= before + 400,
    `deadline ${deadline}`,
  );
  await eventually(() => cancelledEvents === 1, 2000, "the handler to see cancelled");
  assert.ok(seen?.cancelled);
});

t("a call without grpc-timeout has an infinite deadline", async () => {
  let deadline: Date | number = 0;
  const { client } = await start({
    unary: (call, callback) => {
      deadline = call.getDeadline();
      callback(null, { status: 1 });
    },
  });
  await unary(client, { service: "" });
  assert.is(deadline, Number.POSITIVE_INFINITY);
});

t("a client's cancel (RST_STREAM) is 'cancelled' once, and later writes are dropped quietly", async () => {
  let seen: Call | undefined;
  let cancelledEvents = 0;
  const { client } = await start({
    stream: (call) => {
      seen = call;
      call.on("cancelled", () => cancelledEvents++);
      call.write({ status: 1 });
    },
  });
  const call = client.stream({ service: "" }, new Metadata()) as NodeJS.EventEmitter & { cancel(): void };
  call.on("error", () => {});
  await new Promise((resolve) => call.once("data", resolve));
  call.cancel();
  await eventually(() => cancelledEvents === 1, 2000, "cancelled");
  assert.ok(seen?.cancelled);
  assert.ok(seen?.write({ status: 2 }), "a write after cancel neither throws nor asks to wait");
  seen?.end();
  seen?.emit("error", { code: status.INTERNAL, details: "late" });
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.is(cancelledEvents, 1);
});

t("an oversized request is RESOURCE_EXHAUSTED, and the next call is served", async () => {
  const { client } = await start(
    {
      unary: (call, callback) => callback(null, { status: call.request.service.length > 0 ? 1 : 2 }),
    },
    { maxReceiveBytes: 100 },
  );
  const big = await unary(client, { service: "x".repeat(200) });
  assert.is(big.error?.code, status.RESOURCE_EXHAUSTED);
  const small = await unary(client, { service: "y" });
  assert.is(small.error, null);
  assert.is(small.response?.status, 1);
});

t("a client that compresses its requests (gzip, as grpc-js offers) is served as by grpc-js", async () => {
  const { port } = await start({
    unary: (call, callback) => callback(null, { status: call.request.service.length }),
  });
  const Constructor = makeGenericClientConstructor(Echo, "Echo");
  const generic = new Constructor(`127.0.0.1:${port}`, credentials.createInsecure(), {
    "grpc.default_compression_algorithm": 2,
  });
  atEnd(async () => generic.close());
  const answer = await new Promise<{ error: ServiceError | null; response?: HealthCheckResponse }>(
    (resolve) =>
      generic.unary?.(
        { service: "x".repeat(500) },
        (error: ServiceError | null, response?: HealthCheckResponse) => resolve({ error, response }),
      ),
  );
  assert.is(answer.error, null);
  assert.is(answer.response?.status, 500);
});

const compressedCall = (port: number, encoding: string, body: Buffer) => {
  const framed = frame(body);
  framed[0] = 1;
  return raw(
    port,
    {
      ":method": "POST",
      ":path": "/test.Echo/Unary",
      "content-type": "application/grpc",
      "grpc-encoding": encoding,
      te: "trailers",
    },
    framed,
  );
};

t(
  "a compressed message in an encoding not offered is UNIMPLEMENTED, one inflating past the limit RESOURCE_EXHAUSTED",
  async () => {
    const { port } = await start(
      { unary: (_call, callback) => callback(null, { status: 1 }) },
      { maxReceiveBytes: 1000 },
    );
    const brotli = await compressedCall(port, "br", Buffer.from([1, 2, 3]));
    assert.is(brotli.headers["grpc-status"], String(status.UNIMPLEMENTED));
    const bomb = await compressedCall(port, "gzip", gzipSync(Buffer.alloc(100_000)));
    assert.is(bomb.headers["grpc-status"], String(status.RESOURCE_EXHAUSTED));
  },
);

t("grpc-message is percent-encoded on the wire and decodes to the text sent (non-ASCII, '%')", async () => {
  const details = 'naïve 100% ✓ — "quoted"\nsecond line';
  const { port, client } = await start({
    unary: (_call, callback) => callback({ code: status.FAILED_PRECONDITION, details }),
  });
  const answer = await unary(client, { service: "" });
  assert.is(answer.error?.code, status.FAILED_PRECONDITION);
  assert.is(answer.error?.details, details);
  const wire = await raw(
    port,
    { ":method": "POST", ":path": "/test.Echo/Unary", "content-type": "application/grpc", te: "trailers" },
    frame(HealthCheckRequest.encode({ service: "" }).finish()),
  );
  const message = String(wire.headers["grpc-message"]);
  assert.ok(/^[\x20-\x7e]*$/.test(message), `printable ASCII only: ${message}`);
  assert.is(decodeURIComponent(message), details);
});

t("-bin metadata arrives as bytes, and goes back as bytes in headers and trailers", async () => {
  const bytes = Buffer.from([0, 1, 2, 254, 255, 10, 13]);
  let received: unknown;
  let stripped: string[] = [];
  const { client } = await start({
    unary: (call, callback) => {
      received = call.metadata.get("x-thing-bin")[0];
      stripped = ["grpc-timeout", "te", "content-type", "grpc-accept-encoding"].filter(
        (key) => call.metadata.get(key).length > 0,
      );
      const headers = new Metadata();
      headers.set("x-head-bin", bytes);
      call.sendMetadata(headers);
      const trailer = new Metadata();
      trailer.set("x-tail-bin", bytes);
      trailer.set("x-tail", "plain");
      callback(null, { status: 1 }, trailer);
    },
  });
  const metadata = new Metadata();
  metadata.set("x-thing-bin", bytes);
  const answer = await new Promise<Awaited<ReturnType<typeof unary>>>((resolve) => {
    let headers: Metadata | undefined;
    const call = client.unary(
      { service: "" },
      metadata,
      { deadline: Date.now() + 5000 },
      (error: ServiceError | null, response?: HealthCheckResponse) =>
        setImmediate(() => resolve({ error, response, headers, trailers })),
    ) as NodeJS.EventEmitter;
    let trailers: Metadata | undefined;
    call.on("metadata", (m: Metadata) => {
      headers = m;
    });
    call.on("status", (s: { metadata: Metadata }) => {
      trailers = s.metadata;
    });
  });
  assert.is(answer.error, null);
  assert.instance(received, Buffer);
  assert.equal([...(received as Buffer)], [...bytes]);
  assert.equal(stripped, [], "transport headers are not metadata");
  assert.equal(answer.headers?.get("x-head-bin")[0], bytes);
  assert.equal(answer.trailers?.get("x-tail-bin")[0], bytes);
  assert.is(answer.trailers?.get("x-tail")[0], "plain");
});

t("a bidi call reads the client's messages in order, pauses, and ends after its half-close", async () => {
  const { client } = await start({
    bidi: (call) => {
      let n = 0;
      call.on("data", (message) => {
        n += 1;
        call.write({ status: message.service.length });
        if (n === 2) {
          call.pause();
          setTimeout(() => call.resume(), 50);
        }
      });
      call.on("end", () => {
        const trailer = new Metadata();
        trailer.set("x-count", String(n));
        call.end(trailer);
      });
    },
  });
  const call = client.bidi(new Metadata()) as NodeJS.EventEmitter & {
    write(m: HealthCheckRequest): void;
    end(): void;
  };
  const got: number[] = [];
  call.on("data", (m: HealthCheckResponse) => got.push(m.status));
  const ended = new Promise<{ code: number; metadata: Metadata }>((resolve) => call.on("status", resolve));
  for (const service of ["a", "bb", "ccc", "dddd"]) call.write({ service });
  call.end();
  const final = await ended;
  assert.is(final.code, status.OK);
  assert.is(final.metadata.get("x-count")[0], "4");
  assert.equal(got, [1, 2, 3, 4]);
});

t(
  "a connection that dribbles its preface a byte at a time is closed after the handshake time, not the idle timeout",
  async () => {
    const { port } = await start({}, { handshakeMs: 300, idleTimeoutMs: 60_000 });
    const socket = connect(port, "127.0.0.1");
    socket.on("error", () => {});
    const opened = Date.now();
    let closedAt: number | undefined;
    socket.on("close", () => {
      closedAt = Date.now();
    });
    // A valid preface, one byte per 100 ms: complete only after 2.4 s.
    const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    let sent = 0;
    const dribble = setInterval(() => {
      if (sent < preface.length && socket.writable) socket.write(preface.subarray(sent, ++sent));
    }, 100);
    await eventually(() => closedAt !== undefined || Date.now() - opened > 2000, 3000, "the socket to close");
    clearInterval(dribble);
    socket.destroy();
    assert.ok(closedAt !== undefined, "still open 2 s into a dribbled preface");
    assert.ok((closedAt as number) - opened >= 250, `closed after ${(closedAt as number) - opened} ms`);
  },
);

t("a session that ends its handshake in time is not closed by the handshake timer", async () => {
  const { port } = await start({}, { handshakeMs: 200 });
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on("error", () => {});
  await new Promise((resolve) => session.once("remoteSettings", resolve));
  await new Promise((resolve) => setTimeout(resolve, 400));
  assert.not.ok(session.closed || session.destroyed, "still open after the handshake time");
  session.close();
});

t("a session with no stream for the idle timeout is sent GOAWAY and closed", async () => {
  const { port } = await start({}, { idleTimeoutMs: 300 });
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on("error", () => {});
  let goaway = false;
  session.on("goaway", () => {
    goaway = true;
  });
  const opened = Date.now();
  await new Promise((resolve) => session.on("close", resolve));
  assert.ok(goaway, "GOAWAY came first");
  assert.ok(Date.now() - opened >= 250, "not before the idle timeout");
});

t("a session is not closed for idleness while a call is open on it", async () => {
  let seen: Call | undefined;
  const { client } = await start(
    {
      stream: (call) => {
        seen = call;
        call.write({ status: 1 });
      },
    },
    { idleTimeoutMs: 200 },
  );
  const status_ = streamStatus(client);
  await new Promise((resolve) => setTimeout(resolve, 600));
  assert.not.ok(seen?.cancelled, "still open after three idle timeouts");
  seen?.end();
  assert.is((await status_).code, status.OK);
});

t("a handler that throws is UNKNOWN and the server keeps serving", async () => {
  let calls = 0;
  const { client } = await start({
    unary: (_call, callback) => {
      calls += 1;
      if (calls === 1) throw new Error("boom");
      callback(null, { status: 1 });
    },
  });
  assert.is((await unary(client, { service: "" })).error?.code, status.UNKNOWN);
  assert.is((await unary(client, { service: "" })).response?.status, 1);
});

t("the server announces a bounded number of concurrent streams per session", async () => {
  const { port } = await start({});
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on("error", () => {});
  const settings = await new Promise<http2.Settings>((resolve) => session.once("remoteSettings", resolve));
  session.close();
  assert.is(settings.maxConcurrentStreams, 1000);
});

t(
  "a reader that stops reading makes write() return false within its flow-control window, and drain follows",
  async () => {
    const message = Buffer.alloc(8 * 1024, 7);
    let written = 0;
    let refused = false;
    let drained = false;
    const { port } = await start({
      bytes: (call) => {
        const pump = () => {
          if (written >= 10_000) return call.end();
          written += 1;
          if (call.write(message)) return setImmediate(pump);
          refused = true;
          call.on("drain", () => {
            drained = true;
            call.end();
          });
        };
        pump();
      },
    });
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", () => {});
    const stream = session.request({
      ":method": "POST",
      ":path": "/test.Echo/Bytes",
      "content-type": "application/grpc",
      te: "trailers",
    });
    stream.end(frame(Buffer.from("go")));
    stream.pause();
    await eventually(() => refused, 5000, "write() to report backpressure");
    // 64 KiB of stream window, the client's and the server's stream buffers: a few dozen 8 KiB messages.
    assert.ok(written < 100, `refused only after ${written} messages`);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.not.ok(drained, "no drain while nobody reads");
    stream.on("data", () => {});
    stream.resume();
    await eventually(() => drained, 5000, "drain once the client reads");
    session.close();
  },
);

/** The server's side of a connection, counting the writes HTTP/2 makes to it. */
class CountingSocket extends Duplex {
  writes = 0;
  constructor(private readonly socket: Socket) {
    super();
    socket.on("data", (chunk) => {
      if (!this.push(chunk)) socket.pause();
    });
    socket.on("end", () => this.push(null));
    socket.on("close", () => this.destroy());
    socket.on("error", (error) => this.destroy(error));
  }
  override _read() {
    this.socket.resume();
  }
  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void) {
    this.writes += 1;
    this.socket.write(chunk, done);
  }
  override _writev(chunks: Array<{ chunk: Buffer }>, done: (error?: Error | null) => void) {
    this.writes += 1;
    this.socket.write(Buffer.concat(chunks.map((c) => c.chunk)), done);
  }
  override _final(done: () => void) {
    this.socket.end(done);
  }
}

t("an answer written and ended in one tick leaves in at most 2 socket writes", async () => {
  const sockets: CountingSocket[] = [];
  const { client } = await start(
    {
      stream: (call) => {
        call.sendMetadata(new Metadata());
        for (let i = 0; i < 3; i++) call.write({ status: i });
        const trailer = new Metadata();
        trailer.set("x-lsn", "0/1");
        call.end(trailer);
      },
    },
    {},
    (socket) => {
      const counting = new CountingSocket(socket);
      sockets.push(counting);
      return counting;
    },
  );
  const run = () =>
    new Promise<number>((resolve, reject) => {
      let messages = 0;
      const call = client.stream({ service: "" }, new Metadata()) as NodeJS.EventEmitter;
      call.on("data", () => messages++);
      call.on("error", reject);
      call.on("status", () => resolve(messages));
    });
  assert.is(await run(), 3, "warm-up: the connection and its SETTINGS");
  await new Promise((resolve) => setTimeout(resolve, 50));
  const before = sockets[0]?.writes ?? 0;
  assert.is(await run(), 3);
  await new Promise((resolve) => setTimeout(resolve, 50));
  const writes = (sockets[0]?.writes ?? 0) - before;
  assert.is(sockets.length, 1);
  assert.ok(writes >= 1 && writes <= 2, `${writes} socket writes for headers, 3 messages and trailers`);
});

t("tryShutdown lets an open call finish, then the session closes", async () => {
  let seen: Call | undefined;
  const { server, client } = await start({
    stream: (call) => {
      seen = call;
      call.write({ status: 1 });
    },
  });
  const ended = streamStatus(client);
  await eventually(() => seen !== undefined, 2000, "the call to start");
  let shut = false;
  server.tryShutdown(() => {
    shut = true;
  });
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.not.ok(shut, "waits for the open call");
  seen?.end();
  assert.is((await ended).code, status.OK);
  await eventually(() => shut, 2000, "the shutdown to complete");
});

t("tryShutdown completes when a client had already sent GOAWAY on a session with a call open", async () => {
  let seen: Call | undefined;
  const { port, server } = await start({
    stream: (call) => {
      seen = call;
    },
  });
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on("error", () => {});
  const stream = session.request({
    ":method": "POST",
    ":path": Echo.stream.path,
    "content-type": "application/grpc",
    te: "trailers",
  });
  stream.on("error", () => {});
  stream.end(frame(HealthCheckRequest.encode({ service: "" }).finish()));
  stream.resume();
  await eventually(() => seen !== undefined, 2000, "the call to start");
  // A client closing its channel: GOAWAY(NO_ERROR), the open call may finish.
  session.close();
  await new Promise((resolve) => setTimeout(resolve, 100));
  let shut = false;
  server.tryShutdown(() => {
    shut = true;
  });
  seen?.end();
  await eventually(() => shut, 3000, "the graceful shutdown to report done once the call ended");
});

t("forceShutdown cancels open calls", async () => {
  let seen: Call | undefined;
  let cancelled = 0;
  const { server, client } = await start({
    stream: (call) => {
      seen = call;
      call.on("cancelled", () => cancelled++);
      call.write({ status: 1 });
    },
  });
  const ended = streamStatus(client);
  await eventually(() => seen !== undefined, 2000, "the call to start");
  server.forceShutdown();
  assert.is.not((await ended).code, status.OK);
  await eventually(() => cancelled === 1, 2000, "cancelled");
});

t.run();
