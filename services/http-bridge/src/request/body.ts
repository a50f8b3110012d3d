// The POST body → a JSON value, or the precise 4xx that says what is wrong
// with it. Every check here runs before anything recurses into the value or
// a byte reaches gRPC:
// - at most MAX_BODY_BYTES (413), read without building an undici Request
//   (below, why);
// - UTF-8, decoded strictly: a lenient decoder turns bad bytes into U+FFFD,
//   and the caller's data would change without an error;
// - JSON, nested at most MAX_JSON_DEPTH deep: JSON.parse copes with any depth
//   but JSON.stringify and the array-literal encoder recurse, and 200k levels
//   overflowed the stack (a 500);
// - no lone UTF-16 surrogate (a "\ud800" escape) in any string or key:
//   protobuf would encode it as U+FFFD, another silent change.
//
// Why not `c.req.raw.body` (what hono's bodyLimit reads): asking
// @hono/node-server for the web Request builds one, and undici's Request
// constructor follows the request's AbortSignal and files it in a
// FinalizationRegistry. The signal, and everything listening on it, then
// stays reachable until V8 has collected that Request *and* later run the
// registry's cleanup; under steady load that lagged without bound, an idle
// process runs no GC at all, and every request's gRPC call stayed in memory
// (74 MB → 1.36 GB RSS after 120k requests).
import type { HttpBindings } from "@hono/node-server";
import type { Context } from "hono";
import { type HttpError, requestError } from "../errors.js";

/** Deeper than any PostgreSQL array (6 dimensions) or sane jsonb document, shallow enough to recurse. */
export const MAX_JSON_DEPTH = 512;

/** Under @hono/node-server the Node request is there; under `app.request()` in tests it is not. */
export type BodyBindings = { Bindings: Partial<HttpBindings> };

/** The body, or undefined when it is larger than `maxBytes`. */
export async function readBody<E extends BodyBindings>(
  c: Context<E>,
  maxBytes: number,
): Promise<Uint8Array | undefined> {
  const declared = c.req.header("content-length");
  if (declared !== undefined) {
    if (Number(declared) > maxBytes) {
      // Read and drop a body of sane size before answering 413: a client still
      // sending it would otherwise meet a closed socket (EPIPE) instead of the 413.
      if (Number(declared) <= DRAIN_LIMIT_BYTES) await drain(c);
      return undefined;
    }
    // Node's parser holds the body to its declared length, so reading it whole is bounded.
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

/** Bodies up to this size are read to their end before a 413; larger ones are cut off. */
const DRAIN_LIMIT_BYTES = 64 * 1024 * 1024;

async function drain<E extends BodyBindings>(c: Context<E>): Promise<void> {
  const incoming = c.env?.incoming;
  if (!incoming) return;
  try {
    for await (const _ of incoming.iterator({ destroyOnReturn: false })) {
      // dropped
    }
  } catch {
    // the client went away: nothing to answer
  }
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });
/** What String.prototype.isWellFormed (ES2024) tests: a lone surrogate is a code point of category Cs. */
const loneSurrogate = /\p{Cs}/u;

/** The body as JSON, or the 400 that names what is wrong with it. */
export function parseBody(bytes: Uint8Array): { json: unknown } | { error: HttpError } {
  let text: string;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    return { error: requestError(400, "invalid_encoding", "request body is not valid UTF-8") };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { error: requestError(400, "invalid_json", "request body is not valid JSON") };
  }
  const problem = checkValue(json);
  return problem ? { error: problem } : { json };
}

interface Frame {
  value: unknown;
  depth: number;
  parent: Frame | undefined;
  key: string;
}

/** Depth and surrogates, walked with an explicit stack: this is the check that must not overflow. */
function checkValue(root: unknown): HttpError | undefined {
  const stack: Frame[] = [{ value: root, depth: 0, parent: undefined, key: "" }];
  for (let frame = stack.pop(); frame; frame = stack.pop()) {
    const { value, depth } = frame;
    if (typeof value === "string") {
      if (loneSurrogate.test(value)) return surrogateError(frame, "string");
      continue;
    }
    if (typeof value !== "object" || value === null) continue;
    if (depth >= MAX_JSON_DEPTH) {
      return requestError(
        400,
        "invalid_request",
        `${pathOf(frame)}: JSON nested deeper than ${MAX_JSON_DEPTH} levels`,
      );
    }
    const entries = Array.isArray(value) ? value.entries() : Object.entries(value);
    for (const [key, child] of entries) {
      const next = { value: child, depth: depth + 1, parent: frame, key: String(key) };
      if (typeof key === "string" && loneSurrogate.test(key)) return surrogateError(next, "key");
      if (typeof child === "object" || typeof child === "string") stack.push(next);
    }
  }
  return undefined;
}

function surrogateError(frame: Frame, what: "string" | "key"): HttpError {
  return requestError(
    400,
    "invalid_encoding",
    `${pathOf(frame)}: ${what} holds a lone UTF-16 surrogate (a \\uD800-\\uDFFF escape without its pair); send valid Unicode`,
  );
}

/** "params.0.name", the way zod's messages name a field; a deep path keeps its first steps. */
function pathOf(frame: Frame): string {
  const keys: string[] = [];
  for (let f: Frame | undefined = frame; f?.parent; f = f.parent) keys.push(f.key);
  keys.reverse();
  if (keys.length === 0) return "body";
  return keys.length > 8 ? `${keys.slice(0, 8).join(".")}.…` : keys.join(".");
}
