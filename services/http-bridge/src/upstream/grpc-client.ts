// The bridge's grpc-js client to query-grpc, for every method but Execute
// (execute-call.ts carries that one over bare HTTP/2, with this file's
// retry policy and size limit). With a `dns:///` target naming a
// Kubernetes headless Service, round_robin keeps a connection to every pod and
// spreads calls over them (a plain target would pin one HTTP/2 connection to
// one pod). Retries cover only calls refused before any statement ran.
import { credentials, type Metadata } from "@grpc/grpc-js";
import { QueryServiceClient } from "../../../../proto/gen/querygate/v1/query.js";

/**
 * Why retrying Execute on UNAVAILABLE cannot run a statement twice: grpc-js
 * retries only while no response headers have arrived, and query-grpc sends
 * the result header (so the headers) before it commits anything. A call that
 * fails with no headers — refused while shutting down, no database
 * connection, no ready replica — ran nothing that could have committed.
 * ExecuteBatch and Session are left out: they are not covered by that rule.
 */
export const SERVICE_CONFIG = {
  loadBalancingConfig: [{ round_robin: {} }],
  methodConfig: [
    {
      name: [{ service: "querygate.v1.QueryService", method: "Execute" }],
      retryPolicy: {
        maxAttempts: 5,
        initialBackoff: "0.05s",
        maxBackoff: "1s",
        backoffMultiplier: 2,
        retryableStatusCodes: ["UNAVAILABLE"],
      },
    },
  ],
};

/** PostgreSQL's largest row (1 GiB, its MaxAllocSize) plus room for the message's own framing. */
export const MAX_RESULT_MESSAGE_BYTES = 1024 * 1024 * 1024 + 16 * 1024 * 1024;

/** The grpc-js channel options of the bridge's client (the bench's floor phase uses them too). */
export const UPSTREAM_CHANNEL_OPTIONS = {
  // Results stream in batches bounded by bytes, but one row is always one
  // message, and PostgreSQL sends rows of up to 1 GiB: a smaller limit
  // turned a big value into grpc-js's RESOURCE_EXHAUSTED instead of a
  // streamed row (NDJSON) or a 413 result_too_large (buffered JSON).
  "grpc.max_receive_message_length": MAX_RESULT_MESSAGE_BYTES,
  "grpc.keepalive_time_ms": 30_000,
  "grpc.service_config": JSON.stringify(SERVICE_CONFIG),
  // A replaced pod comes back at a new address: look again soon, not after minutes of backoff.
  "grpc.initial_reconnect_backoff_ms": 200,
  "grpc.max_reconnect_backoff_ms": 2000,
  "grpc.dns_min_time_between_resolutions_ms": 1000,
  // Per-call bookkeeping nothing here reads (see query-grpc's server.ts).
  "grpc.enable_channelz": 0,
};

export function createUpstream(target: string): QueryServiceClient {
  return new QueryServiceClient(target, credentials.createInsecure(), UPSTREAM_CHANNEL_OPTIONS);
}

/**
 * What the routes use of a call, whichever client made it: grpc-js's calls
 * (batches, the registry) and execute-call.ts's Execute.
 */
export interface UpstreamCall {
  cancel(): void;
  once(event: "status", listener: () => void): unknown;
  once(event: "metadata", listener: (metadata: Metadata) => void): unknown;
}

/**
 * Cancels `call` (and so its statement) when the HTTP client goes away, and
 * takes the listener off the request's signal as soon as the call has ended,
 * however it ended (its "status" event comes last on success, error and
 * cancel alike). A listener left on the signal keeps the whole call reachable
 * for as long as the signal is, and that can be long after the request.
 */
export function cancelWhenClientLeaves(signal: AbortSignal, call: UpstreamCall): void {
  if (signal.aborted) {
    call.cancel();
    return;
  }
  const cancel = () => call.cancel();
  signal.addEventListener("abort", cancel, { once: true });
  call.once("status", () => signal.removeEventListener("abort", cancel));
}

/** Metadata of query-grpc's replies that HTTP callers get as response headers. */
const PASSED_ON = {
  "idempotent-replayed": "Idempotent-Replayed",
  "idempotent-rows-omitted": "Idempotent-Rows-Omitted",
};

/**
 * Collects the headers to pass on from `call`'s response metadata: a replay
 * of an idempotent request says so before any result arrives.
 */
export function passedOnHeaders(call: UpstreamCall): Record<string, string> {
  const headers: Record<string, string> = {};
  call.once("metadata", (metadata: Metadata) => {
    for (const [key, header] of Object.entries(PASSED_ON)) {
      const value = metadata.get(key)[0];
      if (typeof value === "string") headers[header] = value;
    }
  });
  return headers;
}

/**
 * Idempotency-Key travels as `idempotency-key` metadata; query-grpc checks and
 * keeps it. gRPC metadata takes only printable ASCII (grpc-js throws on
 * anything else, which answered 500), so a key it cannot carry is passed as
 * one query-grpc refuses as malformed (it has spaces): its 400 says why, and
 * the rule stays in one place.
 */
export function forwardIdempotencyKey(metadata: Metadata, key: string | undefined): void {
  if (key) metadata.set("idempotency-key", /^[\x20-\x7e]+$/.test(key) ? key : "not printable ASCII");
}
