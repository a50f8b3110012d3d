import { z } from "zod";
import { env, isLoopback, parseConfig } from "../../shared/src/config.js";

const schema = z
  .object({
    HOST: env.string("127.0.0.1"),
    PORT: env.port(5000),
    /** grpc-js target of query-grpc; `dns:///name:port` spreads calls over every address. */
    QUERY_GRPC_TARGET: env.string("127.0.0.1:50051"),
    /** Largest accepted request body, in bytes. */
    MAX_BODY_BYTES: env.int(1024 * 1024, 1024, 256 * 1024 * 1024),
    /** Largest buffered JSON response, in bytes; past it the caller is told to stream (NDJSON) or page. */
    MAX_JSON_RESPONSE_BYTES: env.int(64 * 1024 * 1024, 1024, 2 * 1024 * 1024 * 1024),
    /** JSON that all buffered responses may hold together while they are assembled; past it they wait. */
    MAX_BUFFERED_JSON_BYTES: env.int(128 * 1024 * 1024, 64 * 1024, 16 * 1024 * 1024 * 1024),
    /** Declares that query-grpc enforces credentials, so listening beyond loopback is safe. */
    UPSTREAM_AUTH: env.bool(false),
    /** Explicit opt-in to listen beyond loopback with no credentials anywhere. */
    ALLOW_UNAUTHENTICATED: env.bool(false),
    SHUTDOWN_GRACE_MS: env.int(20_000, 0, 3_600_000),
    /** A response whose caller takes none of its waiting bytes for this long is cut; 0: never. */
    SEND_TIMEOUT_MS: env.int(60_000, 0, 3_600_000),
    LOG_LEVEL: env.logLevel().default("info"),
  })
  .refine((c) => isLoopback(c.HOST) || c.UPSTREAM_AUTH || c.ALLOW_UNAUTHENTICATED, {
    path: ["HOST"],
    message:
      "listening beyond loopback needs UPSTREAM_AUTH=true (query-grpc enforces credentials) or ALLOW_UNAUTHENTICATED=true",
  });

export type BridgeConfig = z.infer<typeof schema>;

export function loadConfig(source: Record<string, string | undefined>): Readonly<BridgeConfig> {
  return parseConfig(schema, source);
}
