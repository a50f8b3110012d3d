// gRPC's message framing on HTTP/2 DATA frames, for execute-call.ts: apart
// because it is pure bytes (unit-tested on its own against chunk cuts) and
// the call file is about the call's lifecycle.
import { status } from "@grpc/grpc-js";
import { MAX_RESULT_MESSAGE_BYTES } from "./grpc-client.js";

export class FrameError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
  }
}

/**
 * gRPC's length-prefixed messages (1 flag byte, 4 bytes big-endian length)
 * out of DATA chunks that split and join them anywhere. A message inside one
 * chunk is a view of it; only one spread over chunks is copied, once.
 */
export class MessageFrames {
  private readonly header = Buffer.alloc(5);
  private headerBytes = 0;
  private body: Buffer | undefined;
  private bodyBytes = 0;

  constructor(private readonly maxBytes = MAX_RESULT_MESSAGE_BYTES) {}

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
        // No compression is offered (no grpc-accept-encoding), so a set flag is a broken peer.
        if (this.header[0] !== 0)
          throw new FrameError(status.INTERNAL, "received a compressed or malformed message frame");
        if (length > this.maxBytes) {
          throw new FrameError(
            status.RESOURCE_EXHAUSTED,
            `Received message larger than max (${length} vs. ${this.maxBytes})`,
          );
        }
        if (length <= chunk.length - at) {
          messages.push(chunk.subarray(at, at + length));
          at += length;
          continue;
        }
        this.body = Buffer.allocUnsafe(length);
        this.bodyBytes = 0;
      }
      const take = Math.min(this.body.length - this.bodyBytes, chunk.length - at);
      chunk.copy(this.body, this.bodyBytes, at, at + take);
      this.bodyBytes += take;
      at += take;
      if (this.bodyBytes === this.body.length) {
        messages.push(this.body);
        this.body = undefined;
      }
    }
    return messages;
  }

  /** True while a message has begun but not ended: a stream that ends now was cut. */
  get partial(): boolean {
    return this.headerBytes > 0 || this.body !== undefined;
  }
}
