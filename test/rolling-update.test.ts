// A rolling update on loopback, as Kubernetes would run it with maxSurge 1:
// two query-grpc replicas behind one bridge (a static list of four addresses
// stands in for a headless Service's DNS), steady mixed reads and inserts
// through the bridge, and each replica replaced in turn: start the new one,
// wait until it serves traffic, then shut the old one down gracefully.
// Expected: no failed request, and every acknowledged insert in the table
// exactly once.
import { randomUUID } from "node:crypto";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { freePort } from "../scripts/embedded-postgres.js";
import { adminClient, eventually, postQuery, startBridgeFor, startGrpc } from "./helpers.js";

const t = suite("rolling update");

type Replica = Awaited<ReturnType<typeof startGrpc>> & { host: string };

async function callsServed(replica: Replica): Promise<number> {
  const text = await (await fetch(`http://${replica.host}:${replica.metricsPort}/metrics`)).text();
  let total = 0;
  for (const match of text.matchAll(/^querygate_grpc_calls_total\{[^}]*\} (\d+)/gm))
    total += Number(match[1]);
  return total;
}

t("replacing both replicas under load fails no request and loses or doubles no write", async () => {
  const admin = await adminClient();
  await admin.query("create table rollout (id bigserial primary key, token text not null)");
  const port = await freePort();
  const hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"];
  const replicaAt = async (host: string): Promise<Replica> => ({
    ...(await startGrpc({ GRPC_HOST: host, GRPC_PORT: String(port) })),
    host,
  });
  const bridge = await startBridgeFor(`ipv4:${hosts.map((h) => `${h}:${port}`).join(",")}`);

  let a = await replicaAt("127.0.0.1");
  let b = await replicaAt("127.0.0.2");

  const acknowledged: string[] = [];
  const failures: string[] = [];
  let requests = 0;
  let running = true;
  const worker = async (n: number) => {
    for (let i = 0; running; i++) {
      requests++;
      if (i % 2 === 0) {
        const token = randomUUID();
        const response = await postQuery(bridge.url, {
          query: "insert into rollout (token) values ($1)",
          params: [token],
        });
        if (response.status === 200) acknowledged.push(token);
        else failures.push(`insert ${response.status} ${response.text}`);
      } else {
        const response = await postQuery(bridge.url, { query: "select count(*) from rollout" });
        if (response.status !== 200) failures.push(`select ${response.status} ${response.text}`);
      }
      if (n < 0) break;
    }
  };
  const load = Promise.all(Array.from({ length: 6 }, (_, n) => worker(n)));

  await eventually(
    async () => (await callsServed(a)) > 0 && (await callsServed(b)) > 0,
    10_000,
    "both replicas to serve",
  );
  // Replace a with c, then b with d.
  const c = await replicaAt("127.0.0.3");
  await eventually(async () => (await callsServed(c)) > 0, 15_000, "the new replica c to get traffic");
  await a.close(5000);
  const d = await replicaAt("127.0.0.4");
  await eventually(async () => (await callsServed(d)) > 0, 15_000, "the new replica d to get traffic");
  await b.close(5000);
  await new Promise((resolve) => setTimeout(resolve, 500));
  running = false;
  await load;
  [a, b] = [c, d];

  const rows = await admin.query<{ token: string; n: number }>(
    "select token, count(*)::int as n from rollout group by token",
  );
  const stored = new Map(rows.rows.map((r) => [r.token, r.n]));
  const missing = acknowledged.filter((token) => !stored.has(token));
  const doubled = [...stored].filter(([, n]) => n > 1);
  console.log(
    `  rolling update: ${requests} requests, ${failures.length} failed, ${acknowledged.length} acknowledged inserts, ${missing.length} lost, ${doubled.length} duplicated`,
  );
  assert.equal(failures, []);
  assert.equal(missing, []);
  assert.equal(doubled, []);
  assert.ok(requests > 100, `only ${requests} requests ran`);
});

t.run();
