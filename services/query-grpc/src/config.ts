import { z } from "zod";
import { env, isLoopback, parseConfig } from "../../shared/src/config.js";
import { DEFAULT_STATEMENT_KINDS, STATEMENT_KINDS } from "./statement-kinds.js";

const schema = z
  .object({
    DATABASE_URL: z
      .string({ error: "required: a postgres:// URL of the database querygate fronts" })
      .regex(/^postgres(ql)?:\/\//, "expected a postgres:// or postgresql:// URL"),
    /**
     * Optional postgres:// URL of a read replica (or a read-only service in
     * front of several). Read-only requests run there; everything else on DATABASE_URL.
     */
    DATABASE_READ_URL: z
      .string()
      .regex(/^postgres(ql)?:\/\//, "expected a postgres:// or postgresql:// URL")
      .optional(),
    /** A replica that takes longer to accept a connection counts as down; its reads go to the primary. */
    REPLICA_CONNECT_TIMEOUT_MS: env.int(1000, 100, 600_000),
    /** How often a down replica is probed again, and replication lag sampled. */
    REPLICA_PROBE_INTERVAL_MS: env.int(1000, 100, 60_000),
    GRPC_HOST: env.string("127.0.0.1"),
    GRPC_PORT: env.port(50051),
    /** Prometheus /metrics over HTTP, on GRPC_HOST. */
    METRICS_PORT: env.port(9464),
    POOL_MAX: env.int(10, 1, 1000),
    /** Callers that may wait for a busy pool; beyond them, RESOURCE_EXHAUSTED at once. */
    POOL_MAX_WAITING: env.int(32, 0, 100_000),
    /** How long a caller may wait for a pooled connection before RESOURCE_EXHAUSTED. */
    POOL_WAIT_MS: env.int(2000, 0, 600_000),
    /** DISCARD ALL ahead of every request (pipelined), so no session state passes between callers. */
    RESET_SESSION: env.bool(true),
    /** JSON file of API keys: [{name, sha256, role, readOnly, maxStatementMs, statements}]. */
    API_KEYS_FILE: env.optionalString(),
    /** HS256 shared secret (at least 32 bytes) for JWTs. */
    JWT_SECRET_FILE: env.optionalString(),
    /** PEM public key (RSA → RS256, P-256 → ES256) for JWTs. */
    JWT_PUBLIC_KEY_FILE: env.optionalString(),
    /** JWKS (JSON) of public keys for JWTs, matched by kid. */
    JWT_JWKS_FILE: env.optionalString(),
    /** Claim (or dotted path) naming the caller's PostgreSQL role. */
    JWT_ROLE_CLAIM: env.string("role"),
    /** Boolean claim that makes the caller read-only when true. */
    JWT_READ_ONLY_CLAIM: env.string("read_only"),
    /**
     * Boolean claim that makes the caller an admin of the registry (sees and
     * cancels everyone's statements). Namespaced so a token's unrelated
     * "admin" claim grants nothing here.
     */
    JWT_ADMIN_CLAIM: env.string("querygate_admin"),
    JWT_AUDIENCE: env.optionalString(),
    JWT_ISSUER: env.optionalString(),
    JWT_CLOCK_TOLERANCE_S: env.int(30, 0, 3600),
    /** Statement kinds JWT callers may run, comma-separated. */
    JWT_STATEMENTS: z
      .string()
      .default(DEFAULT_STATEMENT_KINDS.join(","))
      .transform((v) =>
        v
          .split(",")
          .map((k) => k.trim())
          .filter(Boolean),
      )
      .pipe(
        z.array(
          z.enum(STATEMENT_KINDS, {
            error: `expected a comma-separated list of ${STATEMENT_KINDS.join(", ")}`,
          }),
        ),
      ),
    /** Explicit opt-in to listen beyond loopback with no credentials configured. */
    ALLOW_UNAUTHENTICATED: env.bool(false),
    /** How long opening a new database connection may take before callers get UNAVAILABLE. */
    CONNECT_TIMEOUT_MS: env.int(5000, 100, 600_000),
    /** Statement timeout when the caller asks for none. */
    STATEMENT_TIMEOUT_MS: env.int(30_000, 1, 86_400_000),
    /** Upper bound on any statement timeout a caller may ask for. */
    MAX_STATEMENT_TIMEOUT_MS: env.int(300_000, 1, 86_400_000),
    /** A statement whose parsing takes longer fails (54001) and the parser thread is replaced. */
    PARSE_TIMEOUT_MS: env.int(5000, 100, 600_000),
    /** A statement with more tokens outside its literals and comments fails unparsed (54001). */
    PARSE_MAX_TOKENS: env.int(100_000, 100, 10_000_000),
    /** Rows per streamed batch once the first, smaller batch has gone out. */
    BATCH_ROWS: env.int(2000, 1, 100_000),
    /** Concurrent Session streams, each holding a connection; unset = half of POOL_MAX (at least 1). */
    MAX_SESSIONS: z.coerce
      .number({ error: "expected a whole number between 1 and 1000" })
      .int("expected a whole number between 1 and 1000")
      .min(1, "expected a whole number between 1 and 1000")
      .max(1000, "expected a whole number between 1 and 1000")
      .optional(),
    /** A Session waiting this long for the client's next message is rolled back and closed. */
    SESSION_IDLE_TIMEOUT_MS: env.int(30_000, 100, 3_600_000),
    /** No Session (so no transaction of one) lives longer than this. */
    SESSION_MAX_LIFETIME_MS: env.int(300_000, 1000, 86_400_000),
    /** Most statements in one ExecuteBatch. */
    BATCH_MAX_STATEMENTS: env.int(1000, 1, 100_000),
    /**
     * Cap on an ExecuteBatch response (approximate serialized bytes). Its
     * results travel in one message; the default stays under grpc-js's 4 MiB
     * default receive limit. Past it the batch is rolled back: RESOURCE_EXHAUSTED.
     */
    BATCH_MAX_RESPONSE_BYTES: env.int(4_000_000, 1024, 1024 * 1024 * 1024),
    /** Largest gRPC request message accepted, in bytes. */
    MAX_REQUEST_BYTES: env.int(4 * 1024 * 1024, 1024, 256 * 1024 * 1024),
    /** A client connection with no call in progress for this long is closed (GOAWAY); clients reconnect. */
    GRPC_IDLE_TIMEOUT_MS: env.int(300_000, 100, 86_400_000),
    /** Interval of the database reachability check that drives grpc.health.v1. */
    HEALTH_INTERVAL_MS: env.int(2000, 100, 60_000),
    /** On SIGTERM, how long in-flight calls may run before they are cancelled. */
    SHUTDOWN_GRACE_MS: env.int(20_000, 0, 3_600_000),
    /** How long an idempotency key (and its recorded outcome) is kept. */
    IDEMPOTENCY_TTL_S: env.int(86_400, 1, 30 * 86_400),
    /** How long a retry waits for a run with the same key that is still going, before 409. */
    IDEMPOTENCY_WAIT_MS: env.int(5000, 0, 600_000),
    /** Recorded outcomes keep their rows up to this size; past it, a replay has the footer only. */
    IDEMPOTENCY_MAX_RECORD_BYTES: env.int(1024 * 1024, 0, 64 * 1024 * 1024),
    /** How often one replica deletes expired keys (a batch at a time, never waiting on a request). */
    IDEMPOTENCY_CLEANUP_INTERVAL_MS: env.int(60_000, 100, 86_400_000),
    LOG_LEVEL: env.logLevel().default("info"),
  })
  .refine((c) => credentialsConfigured(c) || isLoopback(c.GRPC_HOST) || c.ALLOW_UNAUTHENTICATED, {
    path: ["GRPC_HOST"],
    message:
      "listening beyond loopback needs credentials (API_KEYS_FILE or JWT_*_FILE) or ALLOW_UNAUTHENTICATED=true",
  })
  // Sessions hold their connection while idle: they may not take the whole pool from one-shot queries.
  .refine((c) => c.MAX_SESSIONS === undefined || c.MAX_SESSIONS <= c.POOL_MAX, {
    path: ["MAX_SESSIONS"],
    message: "must not exceed POOL_MAX",
  })
  .transform((c) => ({ ...c, MAX_SESSIONS: c.MAX_SESSIONS ?? Math.max(1, Math.floor(c.POOL_MAX / 2)) }));

export type QueryGrpcConfig = z.infer<typeof schema>;

export function loadConfig(source: Record<string, string | undefined>): Readonly<QueryGrpcConfig> {
  return parseConfig(schema, source);
}

/** True when any credential is configured: callers must then authenticate. */
export function credentialsConfigured(
  sources: Partial<
    Record<"API_KEYS_FILE" | "JWT_SECRET_FILE" | "JWT_PUBLIC_KEY_FILE" | "JWT_JWKS_FILE", string | undefined>
  >,
): boolean {
  return Boolean(
    sources.API_KEYS_FILE || sources.JWT_SECRET_FILE || sources.JWT_PUBLIC_KEY_FILE || sources.JWT_JWKS_FILE,
  );
}
