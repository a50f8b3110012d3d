// query-grpc and the bridge on a PostgreSQL of the test file's own, with the
// moves every stop/kill test makes: take the database down and see health
// notice, bring it back and see everything recover by itself.
import pg from "pg";
import type { HealthClient } from "../proto/gen/grpc/health/v1/health.js";
import type { QueryServiceClient } from "../proto/gen/querygate/v1/query.js";
import { type DisposableDatabase, type StopMode, startDisposablePostgres } from "./disposable-postgres.js";
import { healthClient, Serving, untilHealth } from "./fault-calls.js";
import { eventually, execute, grpcClient, startBridgeFor, startGrpc } from "./helpers.js";

export interface FaultStack {
  db: DisposableDatabase;
  client: QueryServiceClient;
  health: HealthClient;
  bridgeUrl: string;
  /** Stops PostgreSQL and waits for health to say NOT_SERVING. */
  goDown(mode: StopMode): Promise<void>;
  /** Starts PostgreSQL again; health must say SERVING and `select 1` succeed, each within a bound. */
  comeBack(): Promise<void>;
  /** Starts PostgreSQL if a failed test left it stopped, and waits until it serves. */
  ensureUp(): Promise<void>;
  /** A direct connection to the database (not through querygate), around `work`. */
  direct<T>(work: (c: pg.Client) => Promise<T>): Promise<T>;
}

export async function startFaultStack(name: string, grpcEnv: Record<string, string>): Promise<FaultStack> {
  const db = await startDisposablePostgres(name);
  const grpc = await startGrpc({
    DATABASE_URL: db.url,
    CONNECT_TIMEOUT_MS: "1000",
    HEALTH_INTERVAL_MS: "200",
    ...grpcEnv,
  });
  const client = grpcClient(grpc.target);
  const health = healthClient(grpc.target);
  const bridgeUrl = (await startBridgeFor(grpc.target)).url;
  const stack: FaultStack = {
    db,
    client,
    health,
    bridgeUrl,
    async goDown(mode) {
      await db.stop(mode);
      await untilHealth(health, Serving.NOT_SERVING, 5000);
    },
    async comeBack() {
      await db.start();
      await untilHealth(health, Serving.SERVING, 10_000);
      await eventually(
        () =>
          execute(client, { sql: "select 1" }).then(
            () => true,
            () => false,
          ),
        10_000,
        "select 1 to succeed again",
      );
    },
    async ensureUp() {
      if (!db.running) await db.start();
      await untilHealth(health, Serving.SERVING, 10_000);
    },
    async direct(work) {
      const c = new pg.Client(db.url);
      c.on("error", () => {});
      await c.connect();
      try {
        return await work(c);
      } finally {
        await c.end().catch(() => {});
      }
    },
  };
  return stack;
}
