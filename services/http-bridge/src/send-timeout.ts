// Cuts a response whose caller stopped reading it. Such a response holds its
// socket, whatever of its body is not yet sent (up to MAX_JSON_RESPONSE_BYTES
// of JSON), and for a streamed format its gRPC call and PostgreSQL
// connection, with no end: Node's HTTP server has no send timeout. Like
// nginx's send_timeout, the time runs only while bytes wait to be sent and
// none of them goes out; a statement that takes long before its first row
// waits with nothing to send and is never cut.
import type { ServerResponse } from "node:http";
import type { Socket } from "node:net";

/** What a watched response had sent when it was last seen moving. */
interface Progress {
  sent: number;
  /** Bytes libuv still had to hand to the kernel. */
  queued: number;
  since: number;
}

/** libuv's count of bytes not yet taken by the kernel: it falls within one large write. */
function queuedInLibuv(socket: Socket): number {
  const handle = (socket as Socket & { _handle?: { writeQueueSize?: number } })._handle;
  return handle?.writeQueueSize ?? 0;
}

export class SendTimeout {
  private readonly watched = new Map<ServerResponse, Progress>();
  private readonly timer: NodeJS.Timeout | undefined;

  /** `timeoutMs` 0: never cut. `onCut` runs once per response cut. */
  constructor(
    private readonly timeoutMs: number,
    private readonly onCut: (res: ServerResponse) => void,
  ) {
    if (timeoutMs <= 0) return;
    this.timer = setInterval(() => this.sweep(), Math.max(10, Math.floor(timeoutMs / 4)));
    this.timer.unref();
  }

  watch(res: ServerResponse): void {
    if (this.timer === undefined) return;
    this.watched.set(res, { sent: -1, queued: -1, since: performance.now() });
    res.once("close", () => this.watched.delete(res));
  }

  close(): void {
    clearInterval(this.timer);
    this.watched.clear();
  }

  private sweep(): void {
    const now = performance.now();
    for (const [res, progress] of this.watched) {
      const socket = res.socket;
      if (!socket || socket.destroyed) continue;
      const waiting = socket.writableLength;
      // bytesWritten counts bytes queued as well as sent: less what waits, it
      // grows each time a write has gone whole to the kernel. Within one large
      // write (a wide row, a batch of MBs) only libuv's queue shows progress.
      const sent = socket.bytesWritten - waiting;
      const queued = queuedInLibuv(socket);
      if (waiting === 0 || sent !== progress.sent || queued !== progress.queued) {
        progress.sent = sent;
        progress.queued = queued;
        progress.since = now;
      } else if (now - progress.since >= this.timeoutMs) {
        this.watched.delete(res);
        this.onCut(res);
        socket.destroy();
      }
    }
  }
}
