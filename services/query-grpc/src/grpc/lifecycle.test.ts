// SIGTERM to a real query-grpc process: health flips at once, new calls are
// refused before any SQL runs, in-flight streams finish within the grace
// period, what outlives it is cancelled in PostgreSQL, and the process exits 0.
import { type ChildProcess, spawn } from "node:child_process";
import { credentials, Metadata, status } from "@grpc/grpc-js";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  HealthClient,
  HealthCheckResponse_ServingStatus as Serving,
} from "../../../../proto/gen/grpc/health/v1/health.js";
import { freePort } from "../../../../scripts/embedded-postgres.js";
import {
  adminClient,
  atEnd,
  database,
  eventually,
  execute,
  executeError,
  grpcClient,
  runningStatements,
} from "../../../../test/helpers.js";

const t = suite("query-grpc lifecycle");

interface Replica {
  process: ChildProcess;
  target: string;
  exited: Promise<number | null>;
}

async function startReplica(env: Record<string, string>): Promise<Replica> {
  const port = await freePort();
  const child = spawn(process.execPath, ["--import", "tsx", "services/query-grpc/src/main.ts"], {
    env: {
      ...process.env,
      DATABASE_URL: (await database()).url,
      GRPC_PORT: String(port),
      METRICS_PORT: "0",
      HEALTH_INTERVAL_MS: "200",
      LOG_LEVEL: "warn",
      ...env,
    },
    stdio: ["ignore", "ignore", "inherit"],
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  atEnd(async () => {
    child.kill("SIGKILL");
  });
  const target = `127.0.0.1:${port}`;
  await eventually(async () => (await healthOf(target)) === Serving.SERVING, 20_000, "the replica to serve");
  return { process: child, target, exited };
}

function healthOf(target: string): Promise<Serving | "down"> {
  const client = new HealthClient(target, credentials.createInsecure());
  return new Promise((resolve) => {
    client.check({ service: "" }, new Metadata(), { deadline: Date.now() + 1000 }, (error, response) => {
      client.close();
      resolve(error ? "down" : (response?.status ?? "down"));
    });
  });
}

t("SIGTERM: NOT_SERVING at once, new calls UNAVAILABLE, the in-flight stream completes, exit 0", async () => {
  const replica = await startReplica({ SHUTDOWN_GRACE_MS: "10000" });
  const client = grpcClient(replica.target);
  const inFlight = execute(client, { sql: "select g from generate_series(1, 3) g, pg_sleep(1.5)" });
  const admin = await adminClient();
  await eventually(
    async () => (await runningStatements(admin, "%pg_sleep(1.5)%")) === 1,
    5000,
    "the stream to start",
  );

  replica.process.kill("SIGTERM");
  await eventually(async () => (await healthOf(replica.target)) === Serving.NOT_SERVING, 1000, "NOT_SERVING");
  const refused = await executeError(client, { sql: "select 1" });
  assert.is(refused.code, status.UNAVAILABLE);
  assert.is(refused.error?.kind, "shutting_down");

  const result = await inFlight;
  assert.equal(result.rows, [["1"], ["2"], ["3"]]);
  assert.is(await replica.exited, 0);
});

t("SIGTERM: a statement that outlives the grace period is cancelled in PostgreSQL, then exit 0", async () => {
  const replica = await startReplica({ SHUTDOWN_GRACE_MS: "300" });
  const client = grpcClient(replica.target);
  const call = executeError(client, { sql: "select pg_sleep(30) /* outlives grace */" });
  const admin = await adminClient();
  await eventually(
    async () => (await runningStatements(admin, "%outlives grace%")) === 1,
    5000,
    "the statement to start",
  );
  replica.process.kill("SIGTERM");
  const error = await call;
  assert.is(error.code, status.UNAVAILABLE);
  assert.match(error.details, /shut down/);
  assert.is(await replica.exited, 0);
  await eventually(
    async () => (await runningStatements(admin, "%outlives grace%")) === 0,
    5000,
    "the statement to stop",
  );
});

t("a bad configuration value stops startup with one line naming the variable, exit 2", async () => {
  const child = spawn(process.execPath, ["--import", "tsx", "services/query-grpc/src/main.ts"], {
    env: { ...process.env, DATABASE_URL: "postgres://x@127.0.0.1/x", POOL_MAX: "lots" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (chunk) => {
    stderr += chunk;
  });
  const code = await new Promise((resolve) => child.once("exit", resolve));
  assert.is(code, 2);
  assert.match(stderr, /POOL_MAX: expected a whole number between 1 and 1000 \(got "lots"\)/);
  assert.is(stderr.trim().split("\n").length, 1);
});

t.run();
