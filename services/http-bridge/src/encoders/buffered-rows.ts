// The rows of a buffered JSON result, held as the UTF-8 bytes they are sent
// as. Rows are joined into text a chunk at a time and each chunk encoded at
// once, so while the bridge waits for the footer it holds about the body's
// size. A string per row held three to four times that, live (the bench's
// 1M-row, 65 MB result grew the bridge to 1.2 GB, over its pod's limit).
const CHUNK_CHARS = 64 * 1024;

export class BufferedRows {
  private readonly chunks: Buffer[] = [];
  private pending: string[] = [];
  private pendingChars = 0;
  private encodedBytes = 0;

  /** One row's JSON. */
  add(json: string): void {
    this.pending.push(json);
    this.pendingChars += json.length + 1;
    if (this.pendingChars >= CHUNK_CHARS) this.encodePending();
  }

  /** The array's size so far, in bytes (rows not yet encoded counted by their length). */
  get bytes(): number {
    return this.encodedBytes + this.pendingChars;
  }

  /**
   * The rows as a JSON array: one string for a result that stayed under a
   * chunk (the usual small one, with no copying), else its encoded chunks.
   */
  array(): string | Buffer[] {
    if (this.chunks.length === 0) return `[${this.pending.join(",")}]`;
    this.encodePending();
    return [Buffer.from("["), ...this.chunks, Buffer.from("]")];
  }

  private encodePending(): void {
    if (this.pending.length === 0) return;
    const text = (this.chunks.length > 0 ? "," : "") + this.pending.join(",");
    const chunk = Buffer.from(text, "utf8");
    this.chunks.push(chunk);
    this.encodedBytes += chunk.length;
    this.pending = [];
    this.pendingChars = 0;
  }
}

/**
 * A response body of chunks and its length. Each chunk is let go once the
 * response has read it, so the memory goes as the body is sent; `onLeft`
 * hears the bytes not yet read after each read, and 0 once the body is done
 * with, read to its end or cancelled (the caller left).
 */
export function chunkedBody(
  chunks: Buffer[],
  onLeft: (bytes: number) => void = () => {},
): { body: ReadableStream<Uint8Array>; length: number } {
  let length = 0;
  for (const chunk of chunks) length += chunk.length;
  let left = length;
  let next = 0;
  const body = new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        const chunk = chunks[next];
        if (chunk === undefined) {
          onLeft(0);
          return controller.close();
        }
        chunks[next++] = EMPTY;
        left -= chunk.length;
        controller.enqueue(chunk);
        // The last chunk read is still on its way to the socket: counted until the next read.
        onLeft(left + chunk.length);
      },
      cancel() {
        chunks.fill(EMPTY);
        onLeft(0);
      },
      // No read-ahead: a chunk is taken only when the response asks for it, so
      // what is not yet read is what the response has not yet written.
    },
    { highWaterMark: 0 },
  );
  return { body, length };
}

const EMPTY = Buffer.alloc(0);
