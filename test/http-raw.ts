// POST /query through node:http rather than fetch, for the tests of streamed
// formats: fetch hides HTTP trailers and blurs a connection cut mid-body into
// a generic error, and those two are exactly what CSV and Arrow promise.
import { request } from "node:http";

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** The body bytes that arrived, also when the transfer was cut. */
  body: Buffer;
  /** Trailers after the last chunk; empty when the transfer was cut. */
  trailers: Record<string, string | undefined>;
  /** True when the body ended normally (the last chunk arrived), false when the connection was cut. */
  complete: boolean;
}

export function postRaw(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<RawResponse> {
  const payload = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}/query`,
      {
        method: "POST",
        headers: { "content-type": "application/json", "content-length": payload.length, ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        let settled = false;
        const settle = (complete: boolean) => {
          if (settled) return;
          settled = true;
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks),
            trailers: complete ? (res.trailers as Record<string, string | undefined>) : {},
            complete,
          });
        };
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => settle(true));
        // A cut connection: "aborted" on the message, then an error or close without "end".
        res.on("aborted", () => settle(false));
        res.on("error", () => settle(false));
        res.on("close", () => settle(res.complete));
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}
