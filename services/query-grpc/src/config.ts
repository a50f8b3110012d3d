import { z } from "zod";
import { env, parseConfig } from "../../shared/src/config.js";

const schema = z.object({
  DATABASE_URL: z
    .string({ error: "required: a postgres:// URL of the database querygate fronts" })
    .regex(/^postgres(ql)?:\/\//, "expected a postgres:// or postgresql:// URL"),
  GRPC_HOST: env.string("127.0.0.1"),
  GRPC_PORT: env.port(50051),
  POOL_MAX: env.int(10, 1, 1000),
  /** How long opening a new database connection may take before callers get UNAVAILABLE. */
  CONNECT_TIMEOUT_MS: env.int(5000, 100, 600_000),
  /** Statement timeout when the caller asks for none. */
  STATEMENT_TIMEOUT_MS: env.int(30_000, 1, 86_400_000),
  /** Upper bound on any statement timeout a caller may ask for. */
  MAX_STATEMENT_TIMEOUT_MS: env.int(300_000, 1, 86_400_000),
  /** Rows per streamed batch once the first, smaller batch has gone out. */
  BATCH_ROWS: env.int(2000, 1, 100_000),
  /** Largest gRPC request message accepted, in bytes. */
  MAX_REQUEST_BYTES: env.int(4 * 1024 * 1024, 1024, 256 * 1024 * 1024),
  /** Interval of the database reachability check that drives grpc.health.v1. */
  HEALTH_INTERVAL_MS: env.int(2000, 100, 60_000),
  /** On SIGTERM, how long in-flight calls may run before they are cancelled. */
  SHUTDOWN_GRACE_MS: env.int(20_000, 0, 3_600_000),
  LOG_LEVEL: env.logLevel().default("info"),
});

export type QueryGrpcConfig = z.infer<typeof schema>;

export function loadConfig(source: Record<string, string | undefined>): Readonly<QueryGrpcConfig> {
  return parseConfig(schema, source);
}
