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
 * Settles once the Node response is over: sent whole ("finish") or gone
 * ("close"; the server gives one to a response queued on a pipelined
 * connection that closed, which Node does not). Undefined without a Node
 * response (in `app.request()`).
 */
export function responseOver(c: RawContext): Promise<void> | undefined {
  const outgoing = c.env?.outgoing;
  if (!outgoing) return undefined;
  if (outgoing.writableFinished || outgoing.closed) return Promise.resolve();
  return new Promise((resolve) => {
    const over = () => {
      outgoing.off("finish", over);
      outgoing.off("close", over);
      resolve();
    };
    outgoing.once("finish", over);
    outgoing.once("close", over);
  });
}
