// gRPC's wire format on HTTP/2, as pure bytes and strings: the length-prefixed
// message framing of DATA frames and the percent-encoding of grpc-message.
// Shared by the bridge's node:http2 client (execute-call.ts) and query-grpc's
// node:http2 server (grpc/transport), so both sides frame alike.
import { status } from "@grpc/grpc-js";

export class FrameError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
  }
}

/** A compressed message where none was offered (no grpc-accept-encoding): a broken peer. */
const refuseCompressed = (): Buffer => {
  throw new FrameError(status.INTERNAL, "received a compressed or malformed message frame");
};

/**
 * gRPC's length-prefixed messages (1 flag byte, 4 bytes big-endian length)
 * out of DATA chunks that split and join them anywhere. A message inside one
 * chunk is a view of it; one spread over chunks is kept as the parts that
 * arrived and joined once whole, so a length prefix alone never makes the
 * receiver hold the memory it announces.
 */
export class MessageFrames {
  private readonly header = Buffer.alloc(5);
  private headerBytes = 0;
  private body: Buffer[] | undefined;
  private bodyBytes = 0;
  private bodyLength = 0;
  private flagged = false;

  constructor(
    private readonly maxBytes: number,
    /** A message with the compressed flag set, decompressed; throws a FrameError to refuse it. */
    private readonly decompress: (message: Buffer) => Buffer = refuseCompressed,
  ) {}

  /** The messages `chunk` completes, in order; a partial one waits for the next chunk. */
  push(chunk: Buffer): Buffer[] {
    const messages: Buffer[] = [];
    let at = 0;
    while (at < chunk.length) {
      if (!this.body) {
        const take = Math.min(5 - this.headerBytes, chunk.length - at);
        chunk.copy(this.header, this.headerBytes, at, at + take);
        this.headerBytes += take;
        at += take;
        if (this.headerBytes < 5) break;
        this.headerBytes = 0;
        const length = this.header.readUInt32BE(1);
        this.flagged = this.header[0] !== 0;
        if (length > this.maxBytes) {
          throw new FrameError(
            status.RESOURCE_EXHAUSTED,
            `Received message larger than max (${length} vs. ${this.maxBytes})`,
          );
        }
        if (length <= chunk.length - at) {
          messages.push(this.complete(chunk.subarray(at, at + length)));
          at += length;
          continue;
        }
        this.body = [];
        this.bodyBytes = 0;
        this.bodyLength = length;
      }
      const take = Math.min(this.bodyLength - this.bodyBytes, chunk.length - at);
      this.body.push(Buffer.from(chunk.subarray(at, at + take)));
      this.bodyBytes += take;
      at += take;
      if (this.bodyBytes === this.bodyLength) {
        messages.push(this.complete(Buffer.concat(this.body, this.bodyLength)));
        this.body = undefined;
      }
    }
    return messages;
  }

  private complete(message: Buffer): Buffer {
    return this.flagged ? this.decompress(message) : message;
  }

  /** True while a message has begun but not ended: a stream that ends now was cut. */
  get partial(): boolean {
    return this.headerBytes > 0 || this.body !== undefined;
  }
}

/** One message as it travels: uncompressed flag, length, bytes. */
export function frameMessage(message: Uint8Array): Buffer {
  const framed = Buffer.allocUnsafe(message.length + 5);
  framed[0] = 0;
  framed.writeUInt32BE(message.length, 1);
  framed.set(message, 5);
  return framed;
}

/**
 * grpc-message as the gRPC HTTP/2 spec has it: percent-encoded UTF-8. grpc-js
 * sends encodeURI(details), which encodes more than the spec asks (spaces,
 * quotes) but decodes the same; a lone surrogate, which encodeURI refuses,
 * becomes U+FFFD rather than an exception in the middle of ending a call.
 */
export function encodeGrpcMessage(details: string): string {
  try {
    return encodeURI(details);
  } catch {
    return encodeURI(details.replace(/[\uD800-\uDFFF]/g, "\uFFFD"));
  }
}

/** The text of a grpc-message; one that is not percent-encoded after all stays as sent. */
export function decodeGrpcMessage(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}
