// The servers of the bench's floor phase: each layer of querygate's two paths
// with nothing behind it (no database, no querygate code), so the bench can
// show what HTTP/2, grpc-js and Hono alone cost on this machine. The bench
// runs each as a child process of its own, so its CPU is read from /proc
// apart from the others':
//   node --import tsx bench/floor-servers.ts KIND [UPSTREAM]   prints "listening PORT"
// Tests start them in-process. The grpc-js server and client take the
// options query-grpc's server and the bridge's client use, and pass raw
// buffers, so protobuf is not part of the figure.
import { type ClientHttp2Session, connect, createServer, type ServerHttp2Session } from "node:http2";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  type ClientReadableStream,
  credentials,
  type MethodDefinition,
  makeGenericClientConstructor,
  Server,
  ServerCredentials,
  type ServerWritableStream,
} from "@grpc/grpc-js";
import { type ServerType, serve } from "@hono/node-server";
import { Hono } from "hono";
import { UPSTREAM_CHANNEL_OPTIONS } from "../services/http-bridge/src/upstream/grpc-client.js";
import { loadConfig } from "../services/query-grpc/src/config.js";
import { listen } from "../services/query-grpc/src/grpc/listener.js";
import { GrpcServer } from "../services/query-grpc/src/grpc/transport/server.js";
import { EXECUTE_PATH, frame } from "./h2load-grpc.js";

export const FLOOR_KINDS = [
  "grpc-js",
  "querygate-h2",
  "http2",
  "hono",
  "hono-grpc-js",
  "hono-http2",
] as const;
export type FloorKind = (typeof FLOOR_KINDS)[number];

export interface FloorServer {
  readonly port: number;
  close(): Promise<void>;
}

/** What every empty gRPC handler answers: one message about the size of the lookup's row. */
const REPLY = Buffer.alloc(40, 1);

/** What the Hono servers answer: the bridge's buffered JSON for the 3-column lookup, canned. */
const CANNED_ANSWER = {
  result: [{ id: "4242", label: "label-4242", amount: "42.42" }],
  columns: [
    { name: "id", type: "int8" },
    { name: "label", type: "text" },
    { name: "amount", type: "numeric" },
  ],
  command: "SELECT",
  rowCount: 1,
};

const identity = (bytes: Buffer) => bytes;
/** Execute's path and shape (server streaming), with the messages left as bytes. */
const RAW_EXECUTE: MethodDefinition<Buffer, Buffer> = {
  path: EXECUTE_PATH,
  requestStream: false,
  responseStream: true,
  requestSerialize: identity,
  requestDeserialize: identity,
  responseSerialize: identity,
  responseDeserialize: identity,
};

export async function startFloorServer(kind: FloorKind, upstream?: string): Promise<FloorServer> {
  switch (kind) {
    case "grpc-js":
      return emptyGrpcJsServer();
    case "querygate-h2":
      return emptyQuerygateH2Server();
    case "http2":
      return emptyHttp2Server();
    case "hono":
      return honoServer(undefined);
    case "hono-grpc-js":
      return honoServer(grpcJsUpstream(required(upstream, kind)));
    case "hono-http2":
      return honoServer(http2Upstream(required(upstream, kind)));
  }
}

function required(upstream: string | undefined, kind: FloorKind): string {
  if (!upstream) throw new Error(`${kind} needs the upstream's host:port`);
  return upstream;
}

/** query-grpc's server options (grpc/server.ts), with its configuration's defaults. */
function queryGrpcServerOptions() {
  const config = loadConfig({ DATABASE_URL: "postgres://floor.invalid/unused" });
  return {
    "grpc.max_receive_message_length": config.MAX_REQUEST_BYTES,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.max_connection_idle_ms": config.GRPC_IDLE_TIMEOUT_MS,
    "grpc.enable_channelz": 0,
  };
}

async function emptyGrpcJsServer(): Promise<FloorServer> {
  const server = new Server(queryGrpcServerOptions());
  server.addService(
    { Execute: RAW_EXECUTE },
    {
      Execute: (call: ServerWritableStream<Buffer, Buffer>) => {
        call.write(REPLY);
        call.end();
      },
    },
  );
  const port = await new Promise<number>((done, fail) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, bound) =>
      error ? fail(error) : done(bound),
    ),
  );
  return {
    port,
    close: async () => server.forceShutdown(),
  };
}

/** query-grpc's own gRPC server (grpc/transport, on node:http2) and listener, with its default options. */
async function emptyQuerygateH2Server(): Promise<FloorServer> {
  const config = loadConfig({ DATABASE_URL: "postgres://floor.invalid/unused" });
  const server = new GrpcServer({
    maxReceiveBytes: config.MAX_REQUEST_BYTES,
    idleTimeoutMs: config.GRPC_IDLE_TIMEOUT_MS,
  });
  server.addService(
    { Execute: { ...RAW_EXECUTE, requestStream: false as const, responseStream: true as const } },
    {
      Execute: (call) => {
        call.write(REPLY);
        call.end();
      },
    },
  );
  const listener = await listen((socket) => server.accept(socket), "127.0.0.1", 0, 10_000);
  return {
    port: listener.port,
    close: async () => {
      await listener.close();
      server.forceShutdown();
    },
  };
}

/** node:http2 answering as a gRPC server does: headers, one framed message, grpc-status in trailers. */
async function emptyHttp2Server(): Promise<FloorServer> {
  const server = createServer();
  const framedReply = frame(REPLY);
  server.on("stream", (stream) => {
    stream.on("error", () => stream.destroy());
    // Read the request to its end, as grpc-js does before it calls a unary-request handler.
    stream.on("data", () => {});
    stream.on("end", () => {
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(framedReply);
    });
  });
  const sessions = new Set<ServerHttp2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const address = server.address();
  return {
    port: typeof address === "object" && address ? address.port : 0,
    close: () =>
      new Promise<void>((done) => {
        for (const session of sessions) session.destroy();
        server.close(() => done());
      }),
  };
}

/** A gRPC client of the empty server: sends one request message, resolves with the reply's messages. */
interface Upstream {
  call(message: Buffer): Promise<Buffer[]>;
  close(): void;
}

function grpcJsUpstream(target: string): Upstream {
  const Client = makeGenericClientConstructor({ Execute: RAW_EXECUTE }, "QueryService");
  const client = new Client(target, credentials.createInsecure(), UPSTREAM_CHANNEL_OPTIONS);
  const execute = client.Execute as (message: Buffer) => ClientReadableStream<Buffer>;
  return {
    call: (message) =>
      new Promise((done, fail) => {
        const messages: Buffer[] = [];
        const call = execute.call(client, message);
        call.on("data", (reply: Buffer) => messages.push(reply));
        // grpc-js emits a failed status as "error" before the stream's "end".
        call.on("error", fail);
        call.on("end", () => done(messages));
      }),
    close: () => client.close(),
  };
}

/** The least a gRPC call over node:http2 takes: one session, a framed request, the status checked. */
function http2Upstream(target: string): Upstream {
  let session: ClientHttp2Session | undefined;
  const open = () => {
    if (session && !session.closed && !session.destroyed) return session;
    const opened = connect(`http://${target}`);
    // A failed session fails its streams (see "close" below); the next call opens a new one.
    opened.on("error", () => {});
    opened.once("close", () => {
      if (session === opened) session = undefined;
    });
    session = opened;
    return opened;
  };
  return {
    call: (message) =>
      new Promise((done, fail) => {
        const stream = open().request({
          ":method": "POST",
          ":path": EXECUTE_PATH,
          "content-type": "application/grpc",
          te: "trailers",
        });
        let headers: ResponseHeaders = {};
        let trailers: ResponseHeaders | undefined;
        const chunks: Buffer[] = [];
        stream.on("response", (received) => {
          headers = received;
        });
        stream.on("trailers", (received) => {
          trailers = received;
        });
        stream.on("data", (chunk: Buffer) => chunks.push(chunk));
        stream.on("error", fail);
        // "close" comes last however the stream ended, reset and refused included.
        stream.on("close", () => {
          try {
            done(readGrpcAnswer(headers, trailers, Buffer.concat(chunks)));
          } catch (error) {
            fail(error);
          }
        });
        stream.end(frame(message));
      }),
    close: () => session?.close(),
  };
}

/** Headers or trailers as node:http2 hands them over (`:status` is a number). */
type ResponseHeaders = Record<string, string | string[] | number | undefined>;

/**
 * A gRPC response's messages, or an error unless it ended with grpc-status 0
 * (in its trailers, or in its headers when it is trailers-only) and every
 * length-prefixed message arrived whole.
 */
export function readGrpcAnswer(
  headers: ResponseHeaders,
  trailers: ResponseHeaders | undefined,
  body: Buffer,
): Buffer[] {
  if (headers[":status"] !== undefined && headers[":status"] !== 200)
    throw new Error(`gRPC call answered HTTP ${headers[":status"]}`);
  const status = trailers?.["grpc-status"] ?? headers["grpc-status"];
  if (status === undefined) throw new Error("gRPC call ended with no grpc-status");
  if (status !== "0") {
    const message = trailers?.["grpc-message"] ?? headers["grpc-message"];
    throw new Error(
      `gRPC call ended with grpc-status ${status}: ${decodeURIComponent(String(message ?? ""))}`,
    );
  }
  const messages: Buffer[] = [];
  for (let at = 0; at < body.length; ) {
    if (body.length - at < 5) throw new Error("gRPC message cut inside its 5-byte prefix");
    const length = body.readUInt32BE(at + 1);
    if (body.length - at - 5 < length) throw new Error(`gRPC message cut: ${length} bytes announced`);
    messages.push(body.subarray(at + 5, at + 5 + length));
    at += 5 + length;
  }
  return messages;
}

/** POST /query: reads the JSON body, calls the upstream (if any) with the SQL, answers canned JSON. */
async function honoServer(upstream: Upstream | undefined): Promise<FloorServer> {
  const app = new Hono();
  app.post("/query", async (c) => {
    const body = await c.req.json<{ query?: unknown }>();
    if (typeof body.query !== "string") return c.json({ error: "query must be a string" }, 400);
    if (upstream) {
      try {
        await upstream.call(Buffer.from(body.query));
      } catch (error) {
        return c.json({ error: (error as Error).message }, 502);
      }
    }
    return c.json(CANNED_ANSWER);
  });
  let server: ServerType | undefined;
  const port = await new Promise<number>((done) => {
    server = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: 0 }, (info) => done(info.port));
  });
  return {
    port,
    close: () =>
      new Promise<void>((done) => {
        upstream?.close();
        if (server && "closeAllConnections" in server) server.closeAllConnections();
        server ? server.close(() => done()) : done();
      }),
  };
}

// Run as a child process by the floor phase: start one server, say its port, stop on SIGTERM.
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [kind, upstream] = process.argv.slice(2);
  if (!FLOOR_KINDS.includes(kind as FloorKind)) {
    process.stderr.write(`usage: floor-servers.ts ${FLOOR_KINDS.join("|")} [UPSTREAM host:port]\n`);
    process.exit(2);
  }
  const server = await startFloorServer(kind as FloorKind, upstream);
  // Nothing to flush or finish: the load has stopped when the bench stops its servers.
  process.once("SIGTERM", () => process.exit(0));
  process.stdout.write(`listening ${server.port}\n`);
}
