// What h2load needs to drive query-grpc's Execute: the request as bytes on
// the wire (a gRPC frame around an encoded ExecuteRequest), a proof that those
// bytes get a row back, and the failures h2load cannot see (a gRPC error is an
// HTTP 200 whose trailers say so), read from query-grpc's /metrics.
import { connect } from "node:http2";
import { ExecuteRequest } from "../proto/gen/querygate/v1/query.js";

export const EXECUTE_PATH = "/querygate.v1.QueryService/Execute";

/** The body of an Execute call with text parameters, framed; `readOnly` asks for a read-only transaction. */
export function executeBody(sql: string, params: string[], readOnly = false): Buffer {
  return frame(
    ExecuteRequest.encode(
      ExecuteRequest.fromPartial({
        sql,
        params: params.map((textValue) => ({ textValue })),
        ...(readOnly ? { options: { readOnly: true } } : {}),
      }),
    ).finish(),
  );
}

/** gRPC's length-prefixed message: no compression flag, 4-byte big-endian length, the bytes. */
export function frame(message: Uint8Array): Buffer {
  const framed = Buffer.alloc(5 + message.length);
  framed.writeUInt32BE(message.length, 1);
  framed.set(message, 5);
  return framed;
}

/** The pre-encoded body, sent once over HTTP/2 as h2load will: it must end with grpc-status 0 and a row. */
export function executeOnce(port: number, body: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const session = connect(`http://127.0.0.1:${port}`);
    let bytes = 0;
    // A call refused at once ends in its headers (trailers-only); one that ran, in trailers.
    let status: unknown;
    let message: unknown;
    const ended = (headers: Record<string, unknown>) => {
      status ??= headers["grpc-status"];
      message ??= headers["grpc-message"];
    };
    session.on("error", reject);
    const stream = session.request({
      ":method": "POST",
      ":path": EXECUTE_PATH,
      "content-type": "application/grpc",
      te: "trailers",
    });
    stream.on("response", ended);
    stream.on("trailers", ended);
    stream.on("data", (chunk: Buffer) => {
      bytes += chunk.length;
    });
    stream.on("close", () => {
      session.close();
      if (status === "0" && bytes > 5) resolve();
      else
        reject(
          new Error(
            `Execute with h2load's body ended with grpc-status ${status}: ${decodeURIComponent(String(message))}`,
          ),
        );
    });
    stream.on("error", reject);
    stream.end(body);
  });
}

/**
 * Execute calls that query-grpc finished with a code other than OK, from its
 * /metrics. CANCELLED is left out: h2load drops the calls in flight when its
 * time is up. Throws when the counter is not there at all, so a renamed
 * metric cannot hide failures by counting none.
 */
export async function executeFailures(metricsPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  if (!/^# TYPE querygate_grpc_calls_total counter$/m.test(text))
    throw new Error(
      "query-grpc's /metrics has no querygate_grpc_calls_total: h2load's gRPC errors cannot be counted",
    );
  let failed = 0;
  for (const line of text.split("\n")) {
    const found = /^querygate_grpc_calls_total\{([^}]*)\} (\d+)/.exec(line);
    const labels = found?.[1];
    if (!labels?.includes('method="Execute"') || /code="(OK|CANCELLED)"/.test(labels)) continue;
    failed += Number(found?.[2]);
  }
  return failed;
}
