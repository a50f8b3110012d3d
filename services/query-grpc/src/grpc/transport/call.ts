// One gRPC call on one HTTP/2 stream: what rpc/server-call.ts promises the
// handlers, done as grpc-js 1.14's server does it (server-interceptors.js),
// except for the writes. grpc-js hands each message to a Writable that waits
// for the previous one's callback, so a small answer went out as headers,
// one DATA write per message, then the trailers. Here framed messages go
// straight to the stream, corked until the tick ends, and the trailers are
// asked for at once: an answer written and ended in one tick leaves as one
// socket write (headers and every message) and the trailers' (Node sends
// trailers only once the stream's data has gone out).
import { EventEmitter } from "node:events";
import http2 from "node:http2";
import { gunzipSync, inflateSync } from "node:zlib";
import { Metadata, status } from "@grpc/grpc-js";
import {
  encodeGrpcMessage,
  FrameError,
  frameMessage,
  MessageFrames,
} from "../../../../shared/src/grpc-framing.js";
import type {
  CallStatus,
  MethodShape,
  ServerDuplexCall,
  ServerUnaryCall,
  ServerWritableCall,
} from "../../rpc/server-call.js";

/** What grpc-js answers with: responses are never compressed; requests may be, with these. */
const RESPONSE_HEADERS = {
  ":status": 200,
  "content-type": "application/grpc+proto",
  "grpc-accept-encoding": "identity,deflate,gzip",
  "grpc-encoding": "identity",
} as const;

/** Request headers that are transport, not metadata (as grpc-js removes them). */
const NOT_METADATA = [
  "grpc-timeout",
  "grpc-encoding",
  "grpc-accept-encoding",
  "accept-encoding",
  "te",
  "content-type",
];

const DEADLINE = /(\d{1,8})\s*([HMSmun])/;
const UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };
/** setTimeout's longest delay; a longer grpc-timeout is a deadline no timer needs to watch. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Above this a message goes to the stream as its 5-byte prefix and itself, rather than copied. */
const COPY_BELOW = 64 * 1024;

/** The trailers-only answer: one HEADERS frame that ends the stream. */
export function respondTrailersOnly(stream: http2.ServerHttp2Stream, callStatus: CallStatus): void {
  if (stream.destroyed || stream.closed || stream.headersSent) return;
  stream.respond({ ...RESPONSE_HEADERS, ...trailersOf(callStatus) }, { endStream: true });
}

/**
 * A compressed request message, as grpc-js takes them: gzip and deflate, the
 * result held to the receive limit. Synchronous, so messages stay in order;
 * the limit bounds the time as well as the memory.
 */
function decompress(body: Buffer, encoding: string, maxBytes: number): Buffer {
  const inflate = encoding === "gzip" ? gunzipSync : encoding === "deflate" ? inflateSync : undefined;
  if (!inflate) {
    // The spec's answer to a flag with identity, grpc-js's to an encoding it lacks.
    throw new FrameError(
      encoding === "identity" ? status.INTERNAL : status.UNIMPLEMENTED,
      `Received message compressed with unsupported encoding "${encoding}"`,
    );
  }
  try {
    return inflate(body, { maxOutputLength: maxBytes });
  } catch (error) {
    if ((error as { code?: string }).code === "ERR_BUFFER_TOO_LARGE") {
      throw new FrameError(
        status.RESOURCE_EXHAUSTED,
        `Received message that decompresses to a size larger than ${maxBytes}`,
      );
    }
    throw new FrameError(status.INTERNAL, "Failed to decompress message");
  }
}

function trailersOf({ code, details, metadata }: CallStatus): http2.OutgoingHttpHeaders {
  return {
    "grpc-status": String(code),
    "grpc-message": encodeGrpcMessage(details),
    ...metadata?.toHttp2Headers(),
  };
}

/**
 * Node refuses headers it cannot send (a value it finds invalid, a stream it
 * has just closed) by throwing, in the middle of a handler's callback: the
 * stream is reset instead, the client sees the call fail, the process stays.
 */
function guarded(stream: http2.ServerHttp2Stream, send: () => void): void {
  try {
    send();
  } catch {
    if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
  }
}

export class Http2Call<Req, Res>
  extends EventEmitter
  implements ServerUnaryCall<Req>, ServerWritableCall<Req, Res>, ServerDuplexCall<Req, Res>
{
  /** The one request message of a unary or server-streaming call; unset for a bidi call. */
  request!: Req;
  readonly metadata: Metadata;
  private deadline = Number.POSITIVE_INFINITY;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private readonly frames: MessageFrames;
  private headersSent = false;
  private statusSent = false;
  private cancelNotified = false;
  private corked = false;
  /** Bidi reading: messages held while paused, and whether the client half-closed. */
  private paused = false;
  private readonly held: Req[] = [];
  private halfClosed = false;
  private endEmitted = false;

  constructor(
    private readonly stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    private readonly method: MethodShape<Req, Res>,
    maxReceiveBytes: number,
    /** Each request message as it is decoded; a bidi call's go to "data" instead when unset. */
    private readonly onMessage: ((message: Req) => void) | undefined,
    /** The client half-closed (a unary call runs its handler then); "end" for a bidi call when unset. */
    private readonly onHalfClose: (() => void) | undefined,
  ) {
    super();
    const metadata = Metadata.fromHttp2Headers(headers);
    for (const key of NOT_METADATA) metadata.remove(key);
    this.metadata = metadata;
    const encoding = String(headers["grpc-encoding"] ?? "identity");
    this.frames = new MessageFrames(maxReceiveBytes, (body) => decompress(body, encoding, maxReceiveBytes));
    const timeout = headers["grpc-timeout"];
    if (timeout !== undefined) this.startDeadline(String(timeout));
    stream.on("data", (chunk: Buffer) => this.receive(chunk));
    stream.on("end", () => this.halfClose());
    stream.on("drain", () => super.emit("drain"));
    // A reset by the client, a lost connection, a forced shutdown: the caller is gone.
    stream.once("close", () => this.notifyCancelled());
  }

  get cancelled(): boolean {
    return this.cancelNotified || this.stream.destroyed || this.stream.closed;
  }

  getDeadline(): number {
    return this.deadline;
  }

  sendMetadata(metadata: Metadata): void {
    if (this.headersSent || this.cancelled) return;
    this.headersSent = true;
    guarded(this.stream, () =>
      this.stream.respond({ ...RESPONSE_HEADERS, ...metadata.toHttp2Headers() }, { waitForTrailers: true }),
    );
  }

  write(message: Res, sent?: () => void): boolean {
    if (this.cancelled || this.statusSent) return true;
    let bytes: Buffer;
    try {
      bytes = this.method.responseSerialize(message);
    } catch {
      this.sendStatus({ code: status.INTERNAL, details: "Error serializing response" });
      return true;
    }
    this.sendMetadata(new Metadata());
    if (!this.corked) {
      // Everything written in this tick leaves in one writev, with the headers if they wait too.
      this.corked = true;
      this.stream.cork();
      process.nextTick(() => this.uncork());
    }
    const done = sent && ((error?: Error | null) => error || sent());
    if (bytes.length < COPY_BELOW) return this.stream.write(frameMessage(bytes), done);
    const prefix = Buffer.allocUnsafe(5);
    prefix[0] = 0;
    prefix.writeUInt32BE(bytes.length, 1);
    this.stream.write(prefix);
    return this.stream.write(bytes, done);
  }

  end(trailer?: Metadata): void {
    this.sendStatus({ code: status.OK, details: "OK", metadata: trailer });
  }

  /** grpc-js's way to end a call with an error: `emit("error", status)`. */
  override emit(event: string | symbol, ...args: unknown[]): boolean {
    if (event !== "error") return super.emit(event, ...args);
    const error = (args[0] ?? {}) as Partial<CallStatus>;
    this.sendStatus({
      code: typeof error.code === "number" ? error.code : status.UNKNOWN,
      details: error.details ?? "Unknown error",
      metadata: error.metadata,
    });
    return true;
  }

  pause(): this {
    this.paused = true;
    this.stream.pause();
    return this;
  }

  resume(): this {
    this.paused = false;
    while (!this.paused && this.held.length > 0) super.emit("data", this.held.shift());
    if (this.paused) return this;
    if (!this.cancelled) this.stream.resume();
    this.maybeEmitEnd();
    return this;
  }

  /** Ends the call with this status: trailers after what was written, or trailers-only. */
  sendStatus(callStatus: CallStatus): void {
    if (this.statusSent || this.cancelled) return;
    this.statusSent = true;
    clearTimeout(this.deadlineTimer);
    if (!this.headersSent) {
      guarded(this.stream, () => respondTrailersOnly(this.stream, callStatus));
      this.notifyCancelled();
      return;
    }
    this.stream.once("wantTrailers", () => {
      if (!this.stream.destroyed)
        guarded(this.stream, () => this.stream.sendTrailers(trailersOf(callStatus)));
      this.notifyCancelled();
    });
    // end() uncorks: the last messages, the end of the data and the trailers go together.
    this.corked = false;
    this.stream.end();
  }

  private uncork(): void {
    if (!this.corked) return;
    this.corked = false;
    if (!this.stream.destroyed) this.stream.uncork();
  }

  private startDeadline(header: string): void {
    const match = DEADLINE.exec(header);
    if (!match) {
      // As grpc-js: after the handler had its chance to attach listeners.
      process.nextTick(() =>
        this.sendStatus({ code: status.INTERNAL, details: `Invalid grpc-timeout value "${header}"` }),
      );
      return;
    }
    const timeoutMs = Number(match[1]) * (UNIT_MS[match[2] as string] ?? 1);
    this.deadline = Date.now() + timeoutMs;
    if (timeoutMs > MAX_TIMER_MS) return;
    this.deadlineTimer = setTimeout(
      () => this.sendStatus({ code: status.DEADLINE_EXCEEDED, details: "Deadline exceeded" }),
      timeoutMs,
    );
  }

  private receive(chunk: Buffer): void {
    if (this.statusSent || this.cancelled) return;
    let messages: Buffer[];
    try {
      messages = this.frames.push(chunk);
    } catch (error) {
      const frameError = error as FrameError;
      this.sendStatus({ code: frameError.code ?? status.INTERNAL, details: frameError.message });
      return;
    }
    for (const bytes of messages) {
      let message: Req;
      try {
        message = this.method.requestDeserialize(bytes);
      } catch {
        this.sendStatus({ code: status.INTERNAL, details: "Error deserializing request" });
        return;
      }
      if (this.statusSent) return;
      if (this.onMessage) this.onMessage(message);
      else if (this.paused || this.held.length > 0) this.held.push(message);
      else super.emit("data", message);
    }
  }

  private halfClose(): void {
    this.halfClosed = true;
    if (this.statusSent || this.cancelled) return;
    if (this.onHalfClose) this.onHalfClose();
    else this.maybeEmitEnd();
  }

  private maybeEmitEnd(): void {
    if (!this.halfClosed || this.endEmitted || this.paused || this.held.length > 0) return;
    this.endEmitted = true;
    super.emit("end");
  }

  /** Once per call, on the next tick as grpc-js does: the handler sees "cancelled" and stops. */
  private notifyCancelled(): void {
    if (this.cancelNotified) return;
    this.cancelNotified = true;
    clearTimeout(this.deadlineTimer);
    process.nextTick(() => super.emit("cancelled"));
    // Whatever the client still sends is read and dropped, so its flow control does not stall the session.
    if (!this.stream.destroyed) this.stream.resume();
  }
}
