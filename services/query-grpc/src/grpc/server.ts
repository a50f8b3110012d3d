// Builds query-grpc from its configuration: the pools (primary, and the read
// replica's when DATABASE_READ_URL is set), their engines, and a
// gRPC server (transport/, on node:http2) carrying QueryService, Health and
// Reflection side by side.
// Tests start it in-process on port 0; main.ts starts it for real.
import pg from "pg";
import { HealthService } from "../../../../proto/gen/grpc/health/v1/health.js";
import { ServerReflectionService } from "../../../../proto/gen/grpc/reflection/v1/reflection.js";
import { QueryServiceService } from "../../../../proto/gen/querygate/v1/query.js";
import type { Logger } from "../../../shared/src/logger.js";
import { startMetricsServer } from "../../../shared/src/metrics.js";
import { Authenticator } from "../auth/authenticate.js";
import { loadCredentials } from "../auth/credentials.js";
import { credentialsConfigured, type QueryGrpcConfig } from "../config.js";
import { QueryFailure } from "../errors.js";
import { QueryMetrics } from "../metrics.js";
import { Admission } from "../postgres/admission.js";
import { ControlConnection } from "../postgres/control.js";
import { Engine } from "../postgres/engine.js";
import { openLedger } from "../postgres/ledger.js";
import { Registry } from "../postgres/registry.js";
import { ReplicaHealth } from "../postgres/replicas.js";
import { markSessionClean } from "../postgres/session-reset.js";
import { TypeNames } from "../postgres/type-names.js";
import { Routing } from "../rpc/consistency.js";
import { createTransactionRpcs } from "../rpc/deps.js";
import { queryServiceHandlers } from "../rpc/handlers.js";
import { markingInvalidText } from "../rpc/request-encoding.js";
import { SqlParser } from "../sql/parser.js";
import { HEALTH_SERVICES, HealthState, healthHandlers, Serving } from "./health.js";
import { listen } from "./listener.js";
import { descriptorIndex, reflectionHandlers } from "./reflection.js";
import { type AnyMethod, GrpcServer } from "./transport/server.js";

export interface QueryGrpcServer {
  readonly port: number;
  readonly metricsPort: number;
  readonly health: HealthState;
  /**
   * Graceful stop: health flips to NOT_SERVING, new calls are refused with
   * UNAVAILABLE, in-flight calls get `graceMs` to finish, the rest are
   * cancelled in PostgreSQL, then the pool closes.
   */
  close(graceMs?: number): Promise<void>;
}

const REFLECTION_V1ALPHA = {
  serverReflectionInfo: {
    ...ServerReflectionService.serverReflectionInfo,
    path: "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
  },
} as const;

export async function startQueryGrpc(
  config: Readonly<QueryGrpcConfig>,
  logger: Logger,
): Promise<QueryGrpcServer> {
  const authenticator = new Authenticator(
    credentialsConfigured(config) ? await loadCredentials(config) : undefined,
  );
  if (!authenticator.required) {
    logger.warn(
      { host: config.GRPC_HOST, allowUnauthenticated: config.ALLOW_UNAUTHENTICATED },
      "no credentials configured: every caller runs as the login role",
    );
  }
  const parser = new SqlParser({
    timeoutMs: config.PARSE_TIMEOUT_MS,
    cacheEntries: 2000,
    maxTokens: config.PARSE_MAX_TOKENS,
  });
  await parser.start();

  const pool = openPool(config.DATABASE_URL, config.CONNECT_TIMEOUT_MS, config, logger);
  const control = new ControlConnection({
    connectionString: config.DATABASE_URL,
    connectionTimeoutMillis: config.CONNECT_TIMEOUT_MS,
    // A database that stops answering (not just refusing) must still turn health NOT_SERVING.
    query_timeout: config.CONNECT_TIMEOUT_MS,
    keepAlive: true,
  });
  const admission = new Admission(config.POOL_MAX, config.POOL_MAX_WAITING, config.POOL_WAIT_MS);
  const metrics = new QueryMetrics(pool, admission);
  const typeNames = new TypeNames(control);
  const enginesOn = (on: pg.Pool, slots: Admission) => ({
    engine: new Engine(on, slots, typeNames, {
      batchRows: config.BATCH_ROWS,
      resetSession: config.RESET_SESSION,
      // A rollback or a cancelled statement that takes longer means a connection we cannot vouch for.
      settleTimeoutMs: 2000,
      maxMessageBytes: 1024 * 1024,
    }),
  });
  const replica = config.DATABASE_READ_URL
    ? await startReplica(config.DATABASE_READ_URL, config, control, metrics, logger)
    : undefined;
  const routing = new Routing(
    enginesOn(pool, admission),
    // Its own admission: a replica's slots mirror its own pool, and a slow replica must not queue writes.
    replica && {
      ...enginesOn(
        replica.pool,
        new Admission(config.POOL_MAX, config.POOL_MAX_WAITING, config.POOL_WAIT_MS),
      ),
      health: replica.health,
    },
    metrics,
    logger,
  );
  const transactionRpcs = createTransactionRpcs(config);

  const health = new HealthState();
  const checkDatabase = async () => {
    try {
      await control.query("select 1");
      // A parser that cannot be started again makes every call fail: not serving.
      if (!(await parser.probe())) throw new Error("the SQL parser does not answer");
      if (health.status !== Serving.SERVING) logger.info("database reachable: SERVING");
      health.setDatabaseReachable(true);
    } catch (error) {
      if (health.status === Serving.SERVING)
        logger.warn({ err: (error as Error).message }, "database unreachable: NOT_SERVING");
      health.setDatabaseReachable(false);
    }
  };
  await checkDatabase();
  const healthTimer = setInterval(checkDatabase, config.HEALTH_INTERVAL_MS);
  healthTimer.unref();

  const { ledger, note } = await openLedger(control, {
    ttlSeconds: config.IDEMPOTENCY_TTL_S,
    waitMs: config.IDEMPOTENCY_WAIT_MS,
  }).catch((error: Error) => ({ ledger: undefined, note: `idempotency keys disabled: ${error.message}` }));
  if (ledger) logger.info(note);
  else logger.warn(note);
  const cleanupTimer = setInterval(() => {
    ledger
      ?.cleanup(10_000)
      .catch((error: Error) => logger.warn({ err: error.message }, "idempotency cleanup failed"));
  }, config.IDEMPOTENCY_CLEANUP_INTERVAL_MS);
  cleanupTimer.unref();

  let accepting = true;
  const inFlight = new Map<Promise<unknown>, (reason: QueryFailure) => void>();

  // A client must start its handshake, and end it, within this long (never longer than it may stay idle).
  const handshakeMs = Math.min(10_000, config.GRPC_IDLE_TIMEOUT_MS);
  const server = new GrpcServer({
    maxReceiveBytes: config.MAX_REQUEST_BYTES,
    // Connections with no call in progress are closed, so idle ones cannot pile up.
    idleTimeoutMs: config.GRPC_IDLE_TIMEOUT_MS,
    handshakeMs,
  });
  server.addService(
    countingBytes(QueryServiceService, metrics),
    queryServiceHandlers({
      authenticator,
      parser,
      routing,
      firstBatchRows: Math.min(100, config.BATCH_ROWS),
      registry: new Registry(control),
      metrics,
      transactionRpcs,
      idempotency: { ledger, maxRecordBytes: config.IDEMPOTENCY_MAX_RECORD_BYTES },
      logger,
      limits: {
        defaultTimeoutMs: config.STATEMENT_TIMEOUT_MS,
        maxTimeoutMs: config.MAX_STATEMENT_TIMEOUT_MS,
      },
      accepting: () => accepting,
      track: (done, abort) => {
        inFlight.set(done, abort);
        void done.finally(() => inFlight.delete(done));
      },
    }),
  );
  server.addService(HealthService, healthHandlers(health));
  const serviceNames = () => [
    ...HEALTH_SERVICES.filter(Boolean),
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
  ];
  const reflection = reflectionHandlers(descriptorIndex, serviceNames);
  server.addService(ServerReflectionService, reflection);
  server.addService(REFLECTION_V1ALPHA, reflection);

  const listener = await listen(
    (socket) => server.accept(socket),
    config.GRPC_HOST,
    config.GRPC_PORT,
    handshakeMs,
  );
  const port = listener.port;
  const metricsServer = await startMetricsServer(metrics.registry, config.GRPC_HOST, config.METRICS_PORT);
  logger.info({ host: config.GRPC_HOST, port, metricsPort: metricsServer.port }, "query-grpc listening");

  return {
    port,
    metricsPort: metricsServer.port,
    health,
    async close(graceMs = 0) {
      accepting = false;
      health.beginShutdown();
      clearInterval(healthTimer);
      clearInterval(cleanupTimer);
      const all = () => Promise.allSettled([...inFlight.keys()]);
      const graceOver = new Promise((resolve) => setTimeout(resolve, graceMs).unref());
      await Promise.race([all(), graceOver]);
      for (const abort of inFlight.values()) {
        abort(new QueryFailure("shutting_down", "server shut down before the statement finished"));
      }
      await all();
      await listener.close();
      // Watch streams (health, reflection) never end on their own: give them a moment, then force.
      await Promise.race([
        new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
        new Promise((resolve) => setTimeout(resolve, 1000).unref()),
      ]);
      server.forceShutdown();
      await replica?.close();
      await Promise.all([pool.end(), control.close(), metricsServer.close(), parser.close()]);
      logger.info("query-grpc stopped");
    },
  };
}

/**
 * The same service with every response's serialized size added to the bytes
 * metric, and requests decoded strictly (request-encoding.ts).
 */
function countingBytes<S extends Record<string, AnyMethod>>(service: S, metrics: QueryMetrics): S {
  const counted: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(service)) {
    const label = { method: method.path.split("/").pop() ?? name };
    counted[name] = {
      ...method,
      requestDeserialize: markingInvalidText(method.requestDeserialize),
      responseSerialize: (value: unknown) => {
        const bytes = method.responseSerialize(value);
        metrics.bytes.inc(label, bytes.length);
        return bytes;
      },
    };
  }
  return counted as S;
}

function openPool(
  url: string,
  connectTimeoutMs: number,
  config: Readonly<QueryGrpcConfig>,
  logger: Logger,
): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: config.POOL_MAX,
    connectionTimeoutMillis: connectTimeoutMs,
    idleTimeoutMillis: 30_000,
    keepAlive: true,
    application_name: "querygate",
  });
  // An idle connection that breaks (database restart) must not crash the process;
  // the pool drops it and opens a new one on demand.
  pool.on("error", (error) => logger.warn({ err: error.message }, "idle database connection lost"));
  // A new connection's session holds nothing of anyone's yet.
  pool.on("connect", (client) => markSessionClean(client));
  return pool;
}

/**
 * The read replica's pool and its breaker. It is not part of health: while
 * it is down its reads go to the primary, which keeps serving. A short
 * connect timeout, so a replica that does not answer costs one read little.
 */
async function startReplica(
  url: string,
  config: Readonly<QueryGrpcConfig>,
  primary: ControlConnection,
  metrics: QueryMetrics,
  logger: Logger,
) {
  const pool = openPool(url, config.REPLICA_CONNECT_TIMEOUT_MS, config, logger);
  const control = new ControlConnection({
    connectionString: url,
    connectionTimeoutMillis: config.REPLICA_CONNECT_TIMEOUT_MS,
    query_timeout: config.REPLICA_CONNECT_TIMEOUT_MS,
    keepAlive: true,
  });
  const health = new ReplicaHealth({
    replica: control,
    primary,
    intervalMs: config.REPLICA_PROBE_INTERVAL_MS,
    logger,
    onSample: (sample) => {
      metrics.replicaUp.set(sample.up ? 1 : 0);
      if (sample.lagSeconds !== undefined) metrics.replicaLagSeconds.set(sample.lagSeconds);
      if (sample.lagBytes !== undefined) metrics.replicaLagBytes.set(sample.lagBytes);
    },
  });
  await health.start();
  return {
    pool,
    health,
    async close() {
      await health.stop();
      await Promise.all([pool.end(), control.close()]);
    },
  };
}
