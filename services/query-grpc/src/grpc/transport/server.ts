// A gRPC server on bare node:http2, in place of grpc-js's Server, whose
// per-call machinery cost query-grpc ~80 µs of CPU per call. It serves the
// generated service definitions as grpc-js's addService() did, and keeps what
// its options gave us: a receive limit, idle sessions closed, GOAWAY on a
// graceful shutdown and destruction on a forced one. Sockets come from
// listener.ts, which has already seen their first bytes. Clients may ping
// with no call in progress (grpc.keepalive_permit_without_calls): node:http2
// answers every PING and polices none.
import http2 from "node:http2";
import type { Duplex } from "node:stream";
import { type Metadata, status } from "@grpc/grpc-js";
import type {
  CallStatus,
  DuplexHandler,
  MethodShape,
  ServerStreamingHandler,
  ServiceHandlers,
  UnaryHandler,
} from "../../rpc/server-call.js";
import { Http2Call, respondTrailersOnly } from "./call.js";

export interface GrpcServerOptions {
  /** grpc.max_receive_message_length: a longer request message is RESOURCE_EXHAUSTED. */
  maxReceiveBytes: number;
  /** grpc.max_connection_idle_ms: a session with no stream for this long gets GOAWAY and closes. */
  idleTimeoutMs: number;
  /**
   * A session whose client has not sent its SETTINGS (the end of the HTTP/2
   * preface) this long after connecting is destroyed: one dribbling its preface
   * a byte at a time would otherwise keep its connection for the idle timeout.
   */
  handshakeMs?: number;
  /** Streams one session may have open at once (grpc-js sets no limit; a client past it waits). */
  maxConcurrentStreams?: number;
}

/**
 * The route table holds every service's handlers, so it forgets their message
 * types; addService() checked them against the definition.
 */
// biome-ignore lint/suspicious/noExplicitAny: erased message types, see above
type Erased = any;
/** Any method of any generated service definition. */
export type AnyMethod = MethodShape<Erased, Erased>;
type AnyHandler =
  | UnaryHandler<Erased, Erased>
  | ServerStreamingHandler<Erased, Erased>
  | DuplexHandler<Erased, Erased>;

interface Route {
  method: MethodShape<unknown, unknown>;
  handler: AnyHandler;
}

interface SessionState {
  streams: number;
  idleTimer: NodeJS.Timeout | undefined;
}

export class GrpcServer {
  private readonly routes = new Map<string, Route>();
  private readonly sessions = new Map<http2.ServerHttp2Session, SessionState>();
  private readonly http2: http2.Http2Server;
  private shuttingDown = false;

  constructor(private readonly options: GrpcServerOptions) {
    this.http2 = http2.createServer({
      settings: { maxConcurrentStreams: options.maxConcurrentStreams ?? 1000 },
      // Node counts the data queued in a session's streams against this, and past it refuses every
      // new stream with ENHANCE_YOUR_CALM: slow readers of large results would take the whole
      // connection (the bridge's callers share a few) with them. As grpc-js's server: no limit here;
      // row data is bounded per call by the handlers' backpressure, calls by admission.
      maxSessionMemory: Number.MAX_SAFE_INTEGER,
      // Node's defaults, stated: 64 KiB and 128 entries of request headers, whatever a client offers.
      maxHeaderListPairs: 128,
      peerMaxConcurrentStreams: 100,
      // Our own trailers are capped in errors.ts; never let Node refuse to send them.
      maxSendHeaderBlockLength: Number.MAX_SAFE_INTEGER,
    });
    this.http2.on("session", (session) => this.openSession(session));
    this.http2.on("stream", (stream, headers) => this.openStream(stream, headers));
    // A peer that breaks the protocol loses its session, never the process.
    this.http2.on("sessionError", () => {});
  }

  /** Serves every method of `service` with its handler (grpc-js's addService). */
  addService<S extends Record<string, AnyMethod>>(service: S, handlers: ServiceHandlers<S>): void {
    for (const [name, method] of Object.entries(service)) {
      const handler = (handlers as Record<string, AnyHandler | undefined>)[name];
      if (!handler) throw new Error(`no handler for ${method.path}`);
      if (method.requestStream && !method.responseStream)
        throw new Error(`client streaming is not served (${method.path})`);
      this.routes.set(method.path, { method: method as MethodShape<unknown, unknown>, handler });
    }
  }

  /** Takes a connection whose HTTP/2 preface is (or will be) in its read buffer. */
  accept(socket: Duplex): void {
    if (this.shuttingDown) {
      socket.destroy();
      return;
    }
    this.http2.emit("connection", socket);
  }

  /** Graceful: GOAWAY to every session, which closes once its streams are done. */
  tryShutdown(done: () => void): void {
    this.shuttingDown = true;
    let open = this.sessions.size;
    if (open === 0) {
      done();
      return;
    }
    const closed = () => {
      open -= 1;
      if (open === 0) done();
    };
    for (const session of this.sessions.keys()) {
      // Node's close() ignores its callback on a session already closing (a client's GOAWAY, idleness).
      if (session.closed) session.once("close", closed);
      else session.close(closed);
    }
  }

  /** Destroys every session: their calls see "cancelled". */
  forceShutdown(): void {
    this.shuttingDown = true;
    for (const session of this.sessions.keys()) session.destroy(undefined, http2.constants.NGHTTP2_CANCEL);
  }

  private openSession(session: http2.ServerHttp2Session): void {
    if (this.shuttingDown) {
      session.destroy();
      return;
    }
    const state: SessionState = { streams: 0, idleTimer: undefined };
    this.sessions.set(session, state);
    session.on("error", () => {});
    const handshake =
      this.options.handshakeMs === undefined
        ? undefined
        : setTimeout(() => session.destroy(), this.options.handshakeMs).unref();
    session.once("remoteSettings", () => clearTimeout(handshake));
    session.once("close", () => {
      clearTimeout(handshake);
      clearTimeout(state.idleTimer);
      this.sessions.delete(session);
    });
    this.armIdle(session, state);
  }

  private armIdle(session: http2.ServerHttp2Session, state: SessionState): void {
    clearTimeout(state.idleTimer);
    state.idleTimer = setTimeout(() => {
      if (state.streams === 0 && !session.closed) session.close();
    }, this.options.idleTimeoutMs);
    state.idleTimer.unref();
  }

  private openStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    // Errors on a stream end in "close", which is what the call listens to.
    stream.on("error", () => {});
    const state = this.sessions.get(stream.session as http2.ServerHttp2Session);
    if (state) {
      state.streams += 1;
      clearTimeout(state.idleTimer);
      stream.once("close", () => {
        state.streams -= 1;
        if (state.streams === 0 && stream.session && !stream.session.closed)
          this.armIdle(stream.session as http2.ServerHttp2Session, state);
      });
    }
    if (headers[":method"] !== "POST") {
      stream.respond({ ":status": 405 }, { endStream: true });
      return;
    }
    const contentType = headers["content-type"];
    if (typeof contentType !== "string" || !contentType.startsWith("application/grpc")) {
      stream.respond({ ":status": 415 }, { endStream: true });
      return;
    }
    const path = headers[":path"] ?? "";
    const route = this.routes.get(path);
    if (!route) {
      respondTrailersOnly(stream, {
        code: status.UNIMPLEMENTED,
        details: `The server does not implement the method ${path}`,
      });
      return;
    }
    if (this.shuttingDown) {
      respondTrailersOnly(stream, { code: status.UNAVAILABLE, details: "the server is shutting down" });
      return;
    }
    if (route.method.requestStream) this.startBidi(stream, headers, route);
    else this.startWithRequest(stream, headers, route);
  }

  /** Bidi: the handler runs at once and reads the client's messages as "data". */
  private startBidi(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, route: Route): void {
    const call = new Http2Call(
      stream,
      headers,
      route.method,
      this.options.maxReceiveBytes,
      undefined,
      undefined,
    );
    const bidi = route.handler as DuplexHandler<unknown, unknown>;
    run(call, () => bidi(call));
  }

  /** Unary and server streaming: exactly one request message, then the handler (as grpc-js). */
  private startWithRequest(
    stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    route: Route,
  ): void {
    const { method, handler } = route;
    let received = false;
    const call: Http2Call<unknown, unknown> = new Http2Call(
      stream,
      headers,
      method,
      this.options.maxReceiveBytes,
      (message) => {
        if (received) {
          call.sendStatus({
            code: status.UNIMPLEMENTED,
            details: `Received a second request message for server streaming method ${method.path}`,
          });
          return;
        }
        received = true;
        call.request = message;
      },
      () => {
        if (!received) {
          call.sendStatus({
            code: status.UNIMPLEMENTED,
            details: `Received no request message for server streaming method ${method.path}`,
          });
          return;
        }
        if (method.responseStream) {
          const streaming = handler as ServerStreamingHandler<unknown, unknown>;
          run(call, () => streaming(call));
          return;
        }
        const unary = handler as UnaryHandler<unknown, unknown>;
        run(call, () =>
          unary(call, (error, response, trailer) => respondUnary(call, error, response, trailer)),
        );
      },
    );
  }
}

/** A handler that throws is UNKNOWN, as in grpc-js; the process stays up. */
function run(call: Http2Call<unknown, unknown>, handler: () => void): void {
  try {
    handler();
  } catch (error) {
    call.sendStatus({
      code: status.UNKNOWN,
      details: `Server method handler threw error ${(error as Error)?.message}`,
    });
  }
}

/** As grpc-js: the error as the status, else the one response and OK with the trailer. */
function respondUnary(
  call: Http2Call<unknown, unknown>,
  error: CallStatus | null,
  response: unknown,
  trailer: Metadata | undefined,
): void {
  if (error) {
    call.emit("error", error);
    return;
  }
  call.write(response);
  call.end(trailer);
}
