// One Execute call to query-grpc as gRPC over a bare `node:http2` stream
// (sessions from h2-sessions.ts): the bridge's hot call, taken off grpc-js
// because its per-call machinery cost more CPU than the rest of the bridge.
// It keeps what the routes relied on from grpc-js: an object-mode Readable of
// ExecuteResponse messages (async iteration, and backpressure down to HTTP/2
// flow control), a "metadata" event before the first message, a "status"
// event last, errors shaped like grpc-js's ServiceError (fromGrpcError reads
// them), cancel() as RST_STREAM CANCEL, and the retry policy of SERVICE_CONFIG.
import http2 from "node:http2";
import { Readable } from "node:stream";
import { Metadata, type ServiceError, status } from "@grpc/grpc-js";
import { ExecuteRequest, ExecuteResponse } from "../../../../proto/gen/querygate/v1/query.js";
import { decodeGrpcMessage, FrameError, MessageFrames } from "../../../shared/src/grpc-framing.js";
import { MAX_RESULT_MESSAGE_BYTES, SERVICE_CONFIG } from "./grpc-client.js";
import { H2Sessions, parseTarget, type SessionOptions } from "./h2-sessions.js";

export interface CallStatus {
  code: status;
  details: string;
  metadata: Metadata;
}

const PATH = "/querygate.v1.QueryService/Execute";

/** SERVICE_CONFIG stays the one statement of the policy (and of why it is safe). */
const RETRY = (() => {
  const policy = SERVICE_CONFIG.methodConfig[0]!.retryPolicy;
  return {
    maxAttempts: policy.maxAttempts,
    initialMs: Number.parseFloat(policy.initialBackoff) * 1000,
    maxMs: Number.parseFloat(policy.maxBackoff) * 1000,
    multiplier: policy.backoffMultiplier,
  };
})();

/** grpc-js's mapping of an HTTP status that came without a grpc-status. */
const CODE_FOR_HTTP: Record<number, status> = {
  400: status.INTERNAL,
  401: status.UNAUTHENTICATED,
  403: status.PERMISSION_DENIED,
  404: status.UNIMPLEMENTED,
  429: status.UNAVAILABLE,
  502: status.UNAVAILABLE,
  503: status.UNAVAILABLE,
  504: status.UNAVAILABLE,
};

function statusOf(headers: http2.IncomingHttpHeaders): CallStatus {
  const metadata = Metadata.fromHttp2Headers(headers);
  metadata.remove("grpc-status");
  metadata.remove("grpc-message");
  const details = decodeGrpcMessage(String(headers["grpc-message"] ?? ""));
  const code = Number(headers["grpc-status"]);
  return {
    code: Number.isInteger(code) && code >= 0 && code <= 16 ? code : status.UNKNOWN,
    details,
    metadata,
  };
}

function failed(code: status, details: string): CallStatus {
  return { code, details, metadata: new Metadata() };
}

/** What grpc-js makes of a stream that closed without a grpc-status (subchannel-call.ts). */
function statusOfClosedStream(
  stream: http2.ClientHttp2Stream,
  session: http2.ClientHttp2Session,
): CallStatus {
  const code = stream.rstCode;
  if (session.destroyed) return failed(status.UNAVAILABLE, "Connection dropped");
  if (code === http2.constants.NGHTTP2_REFUSED_STREAM)
    return failed(status.UNAVAILABLE, "Stream refused by server");
  if (code === http2.constants.NGHTTP2_CANCEL) return failed(status.CANCELLED, "Call cancelled");
  if (code === http2.constants.NGHTTP2_ENHANCE_YOUR_CALM) {
    return failed(status.RESOURCE_EXHAUSTED, "Bandwidth exhausted or memory limit exceeded");
  }
  if (code === http2.constants.NGHTTP2_NO_ERROR) {
    return failed(status.INTERNAL, "Received RST_STREAM with code 0 (Call ended without gRPC status)");
  }
  return failed(status.INTERNAL, `Received RST_STREAM with code ${code}`);
}

/** The Execute call the routes iterate; see the file comment. */
export class ExecuteCall extends Readable {
  private stream: http2.ClientHttp2Stream | undefined;
  private attempts = 0;
  private nextBackoffMs = RETRY.initialMs;
  private retryTimer: NodeJS.Timeout | undefined;
  private headersReceived = false;
  private paused = false;
  private done = false;

  constructor(
    private readonly sessions: H2Sessions,
    private readonly frame: Buffer,
    private readonly headers: http2.OutgoingHttpHeaders,
  ) {
    // Two decoded messages, then the HTTP/2 stream pauses and the rest waits
    // as raw bytes within its flow-control window. Decoded rows weigh several
    // times their bytes on the heap: at grpc-js's 16 (batches of 2,000 rows),
    // twelve buffered JSON calls waiting on the budget ran a bridge with a
    // 128 MiB heap out of memory; at two it peaked at 229 MiB RSS and stayed up.
    super({ objectMode: true, highWaterMark: 2 });
    this.attempt();
  }

  /** Stops the call: RST_STREAM CANCEL, which makes query-grpc cancel the statement. */
  cancel(): void {
    if (this.done) return;
    clearTimeout(this.retryTimer);
    this.stream?.close(http2.constants.NGHTTP2_CANCEL);
    this.finish(failed(status.CANCELLED, "Cancelled on client"));
  }

  override _read(): void {
    if (!this.paused) return;
    this.paused = false;
    this.stream?.resume();
  }

  /** A consumer that stops reading (breaks out of `for await`) ends the call instead of leaving it paused. */
  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.cancel();
    callback(error);
  }

  private attempt(): void {
    this.attempts++;
    this.headersReceived = false;
    const session = this.sessions.ready();
    if (session) this.open(session);
    else {
      this.sessions.pick().then(
        (picked) => this.open(picked),
        (error: Error) => this.settle(failed(status.UNAVAILABLE, error.message)),
      );
    }
  }

  private open(session: http2.ClientHttp2Session): void {
    if (this.done) return;
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request(this.headers, { endStream: false });
    } catch (error) {
      // Closing, or out of stream ids: nothing was sent, so another session may take the call.
      this.sessions.retire(session);
      this.settle(failed(status.UNAVAILABLE, (error as Error).message));
      return;
    }
    this.stream = stream;
    const frames = new MessageFrames(MAX_RESULT_MESSAGE_BYTES);
    let ended: CallStatus | undefined;
    // Set when what follows cannot be messages (not a gRPC answer, a broken frame). Not by the
    // trailers: Node emits them on arrival, before DATA still waiting behind a paused stream.
    let discard = false;
    stream.on("response", (headers, flags) => {
      const httpStatus = Number(headers[":status"]);
      const httpFailure = () =>
        failed(CODE_FOR_HTTP[httpStatus] ?? status.UNKNOWN, `Received HTTP status code ${httpStatus}`);
      // Trailers-only (a refusal before any result): no headers, so the attempt is not committed.
      if ((flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0 || "grpc-status" in headers) {
        if ("grpc-status" in headers) ended = statusOf(headers);
        else ended = httpStatus !== 200 ? httpFailure() : failed(status.UNKNOWN, "No status received");
        return;
      }
      this.headersReceived = true;
      if (httpStatus !== 200) {
        ended = httpFailure();
        discard = true;
        return;
      }
      this.emit("metadata", Metadata.fromHttp2Headers(headers));
    });
    stream.on("data", (chunk: Buffer) => {
      if (this.done || discard) return;
      try {
        for (const bytes of frames.push(chunk)) {
          if (!this.push(ExecuteResponse.decode(bytes))) this.paused = true;
        }
      } catch (error) {
        ended =
          error instanceof FrameError
            ? failed(error.code, error.message)
            : failed(status.INTERNAL, `Failed to parse server response: ${(error as Error).message}`);
        discard = true;
        stream.close(http2.constants.NGHTTP2_CANCEL);
        return;
      }
      if (this.paused) stream.pause();
    });
    stream.on("trailers", (trailers) => {
      ended ??= statusOf(trailers);
    });
    // Its details are in rstCode and the session's state, read on close.
    stream.on("error", () => {});
    stream.on("close", () => {
      if (this.stream === stream) this.stream = undefined;
      if (this.done) return;
      if (ended?.code === status.OK && frames.partial)
        ended = failed(status.INTERNAL, "the last message was cut short");
      this.settle(ended ?? statusOfClosedStream(stream, session));
    });
    stream.end(this.frame);
  }

  /**
   * The attempt's outcome: retried when the policy allows (see SERVICE_CONFIG),
   * else the call's. As in grpc-js (gRFC A6), the server's
   * grpc-retry-pushback-ms decides when it is present: a delay, or anything
   * else (query-grpc sends -1 for every failure but shutting_down) for "do
   * not retry" — a lost COMMIT answer is UNAVAILABLE before any headers.
   */
  private settle(outcome: CallStatus): void {
    if (this.done) return;
    const pushback = outcome.metadata.get("grpc-retry-pushback-ms")[0];
    const pushbackMs = typeof pushback === "string" && /^\d+$/.test(pushback) ? Number(pushback) : undefined;
    const retryable =
      outcome.code === status.UNAVAILABLE &&
      !this.headersReceived &&
      this.attempts < RETRY.maxAttempts &&
      (pushback === undefined || pushbackMs !== undefined);
    if (retryable) {
      const delay = pushbackMs ?? Math.random() * this.nextBackoffMs;
      if (pushbackMs === undefined)
        this.nextBackoffMs = Math.min(this.nextBackoffMs * RETRY.multiplier, RETRY.maxMs);
      else this.nextBackoffMs = RETRY.initialMs;
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.attempt();
      }, delay);
      return;
    }
    this.finish(outcome);
  }

  /** Ends the Readable as grpc-js does: end of messages, then the error (if any), then "status". */
  private finish(outcome: CallStatus): void {
    if (this.done) return;
    this.done = true;
    if (!this.destroyed) {
      this.push(null);
      if (outcome.code !== status.OK && this.listenerCount("error") > 0)
        this.emit("error", callError(outcome));
    }
    this.emit("status", outcome);
  }
}

function callError(outcome: CallStatus): ServiceError {
  const error = new Error(`${outcome.code} ${status[outcome.code]}: ${outcome.details}`);
  return Object.assign(error, outcome);
}

/** Execute over h2-sessions; the other methods stay on grpc-js (grpc-client.ts). */
export class ExecuteClient {
  private readonly sessions: H2Sessions;
  /** As grpc-js: a `dns:` target's name, not the pod address, so a mesh or proxy routes by the service. */
  private readonly authority: string | undefined;

  constructor(target: string, options: SessionOptions = {}) {
    this.sessions = new H2Sessions(target, options);
    const parsed = parseTarget(target);
    this.authority = "dns" in parsed ? `${parsed.dns}:${parsed.port}` : undefined;
  }

  execute(request: ExecuteRequest, metadata: Metadata): ExecuteCall {
    const payload = ExecuteRequest.encode(request).finish();
    const frame = Buffer.allocUnsafe(5 + payload.length);
    frame[0] = 0;
    frame.writeUInt32BE(payload.length, 1);
    frame.set(payload, 5);
    const headers: http2.OutgoingHttpHeaders = {
      ...metadata.toHttp2Headers(),
      ":method": "POST",
      ":path": PATH,
      "content-type": "application/grpc",
      te: "trailers",
    };
    if (this.authority) headers[":authority"] = this.authority;
    return new ExecuteCall(this.sessions, frame, headers);
  }

  close(): void {
    this.sessions.close();
  }
}
