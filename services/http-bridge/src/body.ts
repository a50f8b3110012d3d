// The POST body's bytes, at most MAX_BODY_BYTES of them, read without ever
// asking @hono/node-server for a web Request (`c.req.raw.body`, which is what
// hono's bodyLimit reads). Building one runs undici's Request constructor,
// which follows the request's AbortSignal and files it in a
// FinalizationRegistry: the signal, and everything listening on it, then stays
// reachable until V8 has collected that Request *and* later run the
// registry's cleanup. Under steady load that lags without bound and an idle
// process runs no GC at all, so every request's gRPC call stayed in memory
// (74 MB → 1.36 GB RSS after 120k requests).
import type { HttpBindings } from "@hono/node-server";
import type { Context } from "hono";

/** Under @hono/node-server the Node request is there; under `app.request()` in tests it is not. */
export type BodyBindings = { Bindings: Partial<HttpBindings> };

/** The body, or undefined when it is larger than `maxBytes`. */
export async function readBody<E extends BodyBindings>(
  c: Context<E>,
  maxBytes: number,
): Promise<Uint8Array | undefined> {
  const declared = c.req.header("content-length");
  if (declared !== undefined) {
    // Node's parser holds the body to its declared length, so reading it whole is bounded.
    if (Number(declared) > maxBytes) return undefined;
    return new Uint8Array(await c.req.arrayBuffer());
  }
  // Chunked: count as the bytes arrive. Leaving the loop early must not destroy
  // the Node request: the 413 still has to be written to its socket.
  const incoming = c.env?.incoming;
  const chunks: AsyncIterable<Uint8Array> | null = incoming
    ? { [Symbol.asyncIterator]: () => incoming.iterator({ destroyOnReturn: false }) }
    : (c.req.raw.body as AsyncIterable<Uint8Array> | null);
  const kept: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of chunks ?? []) {
    size += chunk.byteLength;
    if (size > maxBytes) return undefined;
    kept.push(chunk);
  }
  return Buffer.concat(kept);
}
