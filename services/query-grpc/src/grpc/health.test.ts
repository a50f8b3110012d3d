// grpc.health.v1 as Kubernetes' gRPC probes and load balancers use it:
// SERVING only while the database answers and the process is not stopping.
import { connect, createServer, type Socket } from "node:net";
import { credentials, type ServiceError, status } from "@grpc/grpc-js";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  type HealthCheckResponse,
  HealthClient,
  HealthCheckResponse_ServingStatus as Serving,
} from "../../../../proto/gen/grpc/health/v1/health.js";
import {
  atEnd,
  database,
  eventually,
  executeError,
  grpcClient,
  startGrpc,
} from "../../../../test/helpers.js";

const t = suite("gRPC health");
let target: string;

function healthClient(at: string): HealthClient {
  const client = new HealthClient(at, credentials.createInsecure());
  atEnd(async () => client.close());
  return client;
}

function check(client: HealthClient, service: string): Promise<Serving> {
  return new Promise((resolve, reject) =>
    client.check({ service }, (error, response) => (error ? reject(error) : resolve(response!.status))),
  );
}

async function checkError(client: HealthClient, service: string): Promise<ServiceError> {
  try {
    await check(client, service);
  } catch (error) {
    return error as ServiceError;
  }
  throw new Error(`expected Check(${JSON.stringify(service)}) to fail`);
}

/** A TCP relay to PostgreSQL that can stop passing bytes: a database that hangs rather than refuses. */
async function freezableRelay(to: number) {
  let frozen = false;
  const sockets = new Set<Socket>();
  const server = createServer((inbound) => {
    const outbound = connect(to, "127.0.0.1");
    for (const socket of [inbound, outbound]) {
      sockets.add(socket);
      socket.on("error", () => {});
      socket.on("close", () => {
        sockets.delete(socket);
        inbound.destroy();
        outbound.destroy();
      });
    }
    inbound.on("data", (chunk) => frozen || outbound.write(chunk));
    outbound.on("data", (chunk) => frozen || inbound.write(chunk));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  atEnd(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return {
    port: (server.address() as { port: number }).port,
    freeze: () => {
      frozen = true;
    },
  };
}

t.before(async () => {
  target = (await startGrpc()).target;
});

t("Check for the whole server and for QueryService answers SERVING", async () => {
  const client = healthClient(target);
  assert.is(await check(client, ""), Serving.SERVING);
  assert.is(await check(client, "querygate.v1.QueryService"), Serving.SERVING);
});

t("Check for a service this server does not have is NOT_FOUND", async () => {
  const error = await checkError(healthClient(target), "acme.v1.Nothing");
  assert.is(error.code, status.NOT_FOUND);
});

t(
  "with the database unreachable Check says NOT_SERVING and Execute fails UNAVAILABLE within 3 s",
  async () => {
    const orphan = await startGrpc({
      DATABASE_URL: "postgres://u:p@127.0.0.1:1/x",
      CONNECT_TIMEOUT_MS: "500",
    });
    const client = healthClient(orphan.target);
    assert.is(await check(client, ""), Serving.NOT_SERVING);
    assert.is(await check(client, "querygate.v1.QueryService"), Serving.NOT_SERVING);
    const started = Date.now();
    const error = await executeError(grpcClient(orphan.target), { sql: "select 1" });
    const elapsed = Date.now() - started;
    assert.is(error.code, status.UNAVAILABLE);
    assert.is(error.error?.kind, "unavailable");
    assert.ok(elapsed < 3000, `failed in ${elapsed} ms`);
  },
);

t("Watch streams NOT_SERVING as soon as the server begins to close", async () => {
  const server = await startGrpc();
  const watch = healthClient(server.target).watch({ service: "" });
  const seen: Serving[] = [];
  watch.on("data", (response: HealthCheckResponse) => seen.push(response.status));
  watch.on("error", () => {}); // the stream is cut when the server finally stops
  await eventually(() => seen.length > 0, 5000, "the first Watch message");
  assert.equal(seen, [Serving.SERVING]);
  const closed = server.close(5000);
  await eventually(() => seen.length > 1, 2000, "Watch to report the shutdown");
  assert.equal(seen, [Serving.SERVING, Serving.NOT_SERVING]);
  await closed;
});

t("Watch for an unknown service streams SERVICE_UNKNOWN rather than failing", async () => {
  const watch = healthClient(target).watch({ service: "acme.v1.Nothing" });
  const first = await new Promise<Serving>((resolve, reject) => {
    watch.once("data", (response: HealthCheckResponse) => resolve(response.status));
    watch.once("error", reject);
  });
  watch.cancel();
  assert.is(first, Serving.SERVICE_UNKNOWN);
});

t("a database that stops answering turns Check to NOT_SERVING", async () => {
  const relay = await freezableRelay((await database()).port);
  const server = await startGrpc({
    DATABASE_URL: `postgres://postgres:postgres@127.0.0.1:${relay.port}/postgres`,
    CONNECT_TIMEOUT_MS: "500",
    HEALTH_INTERVAL_MS: "200",
  });
  const client = healthClient(server.target);
  assert.is(await check(client, ""), Serving.SERVING);
  relay.freeze();
  await eventually(
    async () => (await check(client, "")) === Serving.NOT_SERVING,
    10_000,
    "Check to say NOT_SERVING",
  );
});

t.run();
