// The two things a web Response cannot say, done on the Node response that
// @hono/node-server hands us as c.env.outgoing: HTTP trailers after the last
// chunk, and an abnormal end of a chunked body. Everything else in the bridge
// stays on Hono's Context; this file is the only one that reaches past it.
import type { HttpBindings } from "@hono/node-server";
import type { Context } from "hono";

type RawContext = Context<{ Bindings: Partial<HttpBindings> }>;

/**
 * Sends `trailers` after the last chunk. Must run before the body stream
 * closes (node-server ends the response right after), and the names must be
 * announced in the response's `Trailer` header. Without a Node response (in
 * `app.request()`) there is nowhere to put them, and nothing happens.
 */
export function addTrailers(c: RawContext, trailers: Record<string, string>): void {
  const outgoing = c.env?.outgoing;
  if (outgoing && !outgoing.destroyed) outgoing.addTrailers(trailers);
}

/**
 * Ends the response so that no client can take it for a whole one: the
 * connection is destroyed before the terminating zero-length chunk, which
 * every HTTP/1.1 client reports as a transfer error (curl: "transfer closed
 * with outstanding read data remaining"). Returns false when there is no Node
 * response, so the caller can error the body stream instead.
 */
export function cutResponse(c: RawContext): boolean {
  const outgoing = c.env?.outgoing;
  if (!outgoing) return false;
  outgoing.destroy();
  return true;
}

/**
 * For a response that holds memory until it is sent: `gone` aborts when the
 * caller is gone, and `over` settles once the response was sent whole or is
 * gone. The connection's close counts as both: it is the only sign a
 * response queued behind another on a pipelined connection ever gets (Node
 * closes neither it nor its request's signal). The listeners go once it is
 * over. Without a Node response (in `app.request()`) there is only the
 * request's signal, and `over` is undefined.
 */
export function responseLifetime(c: RawContext): { gone: AbortSignal; over: Promise<void> | undefined } {
  const outgoing = c.env?.outgoing;
  const socket = c.env?.incoming?.socket;
  if (!outgoing || !socket) return { gone: c.req.raw.signal, over: undefined };
  const closed = new AbortController();
  let settle = () => {};
  const over = new Promise<void>((resolve) => {
    settle = resolve;
  });
  const end = () => {
    socket.off("close", lost);
    outgoing.off("finish", end);
    outgoing.off("close", end);
    settle();
  };
  const lost = () => {
    closed.abort();
    end();
  };
  socket.once("close", lost);
  outgoing.once("finish", end);
  outgoing.once("close", end);
  if (socket.destroyed) lost();
  return { gone: AbortSignal.any([c.req.raw.signal, closed.signal]), over };
}
