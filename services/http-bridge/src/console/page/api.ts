// The console's side of the bridge's HTTP API: the caller's credential on
// every request, ids for runs, and error bodies read the one way the bridge
// writes them. URLs are relative to the page, so a path prefix in front of
// the bridge (an ingress, kubectl proxy) needs no configuration.
import type { QueryErrorBody } from "./result-stream.js";

const TOKEN_KEY = "querygate.token";

/** The pasted API key or JWT, kept for this tab only (sessionStorage: gone when the tab closes). */
export const credential = {
  get(): string {
    return sessionStorage.getItem(TOKEN_KEY) ?? "";
  },
  set(token: string): void {
    const bare = token.trim().replace(/^bearer\s+/i, "");
    if (bare) sessionStorage.setItem(TOKEN_KEY, bare);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
};

export function headers(extra: Record<string, string> = {}): Record<string, string> {
  const token = credential.get();
  return token ? { ...extra, authorization: `Bearer ${token}` } : extra;
}

/** A v4 UUID for x-request-id; crypto.randomUUID needs a secure context, getRandomValues does not. */
export function requestId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = ((bytes[6] as number) & 0x0f) | 0x40;
  bytes[8] = ((bytes[8] as number) & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export interface QueryRequest {
  sql: string;
  accept: string;
  id: string;
  signal?: AbortSignal;
}

export function postQuery({ sql, accept, id, signal }: QueryRequest): Promise<Response> {
  return fetch("query", {
    method: "POST",
    headers: headers({ "content-type": "application/json", accept, "x-request-id": id }),
    // rowMode "array": column order and duplicate names survive; a bridge that
    // does not know the field ignores it and sends objects, which the console reads too.
    body: JSON.stringify({ query: sql, rowMode: "array" }),
    signal,
  });
}

/** The error in a non-2xx answer, whatever its body turned out to be. */
export async function errorOf(response: Response): Promise<QueryErrorBody> {
  const text = await response.text().catch(() => "");
  try {
    const body = JSON.parse(text) as { error?: QueryErrorBody };
    if (body.error?.message) return body.error;
  } catch {}
  return { code: `http_${response.status}`, message: text.trim() || response.statusText || "request failed" };
}
