// Hostile clients of the node:http2 gRPC server, on real HTTP/2 over loopback:
// a graceful shutdown must finish whatever state the clients left their sessions in.
import http2 from "node:http2";
import { suite } from "uvu";
import { HealthCheckRequest, HealthCheckResponse } from "../../../../../proto/gen/grpc/health/v1/health.js";
import { atEnd, eventually } from "../../../../../test/helpers.js";
import type { ServerWritableCall, ServiceHandlers } from "../../rpc/server-call.js";
import { listen } from "../listener.js";
import { GrpcServer, type GrpcServerOptions } from "./server.js";

const t = suite("hostile clients of gRPC on node:http2");

const codec = {
  requestSerialize: (v: HealthCheckRequest) => Buffer.from(HealthCheckRequest.encode(v).finish()),
  requestDeserialize: (b: Buffer) => HealthCheckRequest.decode(b),
  responseSerialize: (v: HealthCheckResponse) => Buffer.from(HealthCheckResponse.encode(v).finish()),
  responseDeserialize: (b: Buffer) => HealthCheckResponse.decode(b),
};
const Echo = {
  stream: {
    path: "/test.Echo/Stream",
    requestStream: false as const,
    responseStream: true as const,
    ...codec,
  },
};
type Call = ServerWritableCall<HealthCheckRequest, HealthCheckResponse>;

async function start(handlers: ServiceHandlers<typeof Echo>, options: Partial<GrpcServerOptions> = {}) {
  const server = new GrpcServer({ maxReceiveBytes: 1024, idleTimeoutMs: 60_000, ...options });
  server.addService(Echo, handlers);
  const listener = await listen((socket) => server.accept(socket), "127.0.0.1", 0, 5000);
  atEnd(async () => {
    await listener.close();
    server.forceShutdown();
  });
  return { port: listener.port, server };
}

const request = (session: http2.ClientHttp2Session) => {
  const stream = session.request({
    ":method": "POST",
    ":path": Echo.stream.path,
    "content-type": "application/grpc",
    te: "trailers",
  });
  stream.on("error", () => {});
  return stream;
};

t("tryShutdown completes when a client had already sent GOAWAY on a session with a call open", async () => {
  let seen: Call | undefined;
  const { port, server } = await start({
    stream: (call) => {
      seen = call;
    },
  });
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on("error", () => {});
  const stream = request(session);
  const body = Buffer.from(HealthCheckRequest.encode({ service: "" }).finish());
  const framed = Buffer.alloc(5 + body.length);
  framed.writeUInt32BE(body.length, 1);
  body.copy(framed, 5);
  stream.end(framed);
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

t.run();
