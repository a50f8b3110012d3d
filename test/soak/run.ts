// `npm run soak`: querygate under steady mixed load for minutes, not for one
// request — the bugs that need thirty or a hundred thousand requests to show
// (a few KB kept per request, a statement nobody cancelled, a row acknowledged
// but lost) are invisible to the test suite. Starts PostgreSQL, query-grpc and
// the bridge as separate processes (dist/, built by the npm script), runs the
// mix (kinds.ts, kinds-features.ts) through both services, samples memory, statuses and
// pg_stat_activity, then checks what it saw and exits 1 on any failure.
//
//   npm run soak                    about 2 minutes
//   npm run soak -- --quick         about 30 seconds
//   npm run soak -- --minutes 10    longer
//   options: --callers N (24), --seed N (1), --max-requests N (2,000,000),
//            --only 'http select,grpc cancel' (a part of the mix, to chase one bug)
import { mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import pg from "pg";
import { bridgeClient, grpcClient } from "./clients.js";
import { ITEMS, KINDS, STOPS_READING } from "./kinds.js";
import { FEATURE_KINDS, KEYED_TABLE } from "./kinds-features.js";
import { runLoad, Tally } from "./load.js";
import { chooser, seeded, type WriteOutcome } from "./mix.js";
import { kindTable, sampleTable, sparklines, summary, writeSvg } from "./report.js";
import { Sampler, ZOMBIE_GRACE_MS } from "./sampler.js";
import { alive, metricValue, postmasterPid, startStack } from "./stack.js";
import { type Ledger, verdict } from "./verdict.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const { values: args } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    minutes: { type: "string" },
    callers: { type: "string", default: "24" },
    seed: { type: "string", default: "1" },
    "max-requests": { type: "string", default: "2000000" },
    only: { type: "string" },
  },
});
const seconds = args.minutes ? Number(args.minutes) * 60 : args.quick ? 30 : 120;
const callers = Number(args.callers);
const seed = Number(args.seed);
if (!(seconds > 0) || !(callers > 0) || !Number.isInteger(seed)) {
  console.error("usage: npm run soak -- [--quick | --minutes N] [--callers N] [--seed N] [--max-requests N]");
  process.exit(2);
}

const workDir = join(root, ".data", "soak");
mkdirSync(join(workDir, "logs"), { recursive: true });
const say = (line: string) => process.stdout.write(`· ${line}\n`);

say(`starting embedded PostgreSQL, query-grpc and http-bridge (logs in ${join(".data", "soak", "logs")})`);
const stack = await startStack(root, workDir);
for (const signal of ["SIGINT", "SIGTERM"] as const)
  process.on(signal, () => void stack.stop().finally(() => process.exit(130)));
// However this process ends, the services must not outlive it (a stuck query-grpc spins a core).
process.on("exit", () => {
  for (const pid of [stack.grpc.pid, stack.bridge.pid]) {
    if (alive(pid)) process.kill(pid, "SIGKILL");
  }
});
const admin = new pg.Client(stack.db.url);
admin.on("error", () => {}); // PostgreSQL going away is seen by the liveness check, not as a crash here
await admin.connect();
await admin.query(`create table soak_items (id int primary key, label text not null);
  insert into soak_items select g, 'item ' || g from generate_series(1, ${ITEMS}) g;
  create table soak_writes (token text primary key, via text not null, at timestamptz not null default now());
  create table ${KEYED_TABLE} (token text not null, via text not null);`);

const writes = new Map<string, WriteOutcome>();
const tally = new Tally();
const ctx = {
  bridge: bridgeClient(stack.bridge.port, callers),
  grpc: grpcClient(stack.grpc.port),
  random: seeded(seed),
  wrote: (token: string, outcome: WriteOutcome) => writes.set(token, outcome),
};
const startedAt = performance.now();
const sampler = new Sampler(stack, admin, tally, startedAt, postmasterPid(stack.db.dataDir), ctx.grpc);
sampler.start((s) => {
  if (Math.round(s.t) % 10 > 1) return;
  const mem = `bridge ${s.memory["http-bridge"].toFixed(0)} MB, grpc ${s.memory["query-grpc"].toFixed(0)} MB, pg ${s.memory.postgres.toFixed(0)} MB`;
  const trouble = `${s.dead.length ? `  DEAD ${s.dead.join(", ")}` : ""}${s.canary ? `  select 1 failed: ${s.canary.slice(0, 80)}` : ""}`;
  say(
    `${s.t.toFixed(0).padStart(4)} s  ${s.perSecond.toFixed(0).padStart(5)} req/s  ${mem}  5xx ${s.classes["5xx"]}  zombies so far ${sampler.zombies.size}${trouble}`,
  );
});

say(`load: ${callers} callers for ${seconds} s, seed ${seed}`);
let exitCode = 1;
try {
  await runLoad(ctx, tally, {
    pick: chooser([...KINDS, ...FEATURE_KINDS], args.only?.split(",") ?? []),
    callers,
    until: startedAt + seconds * 1000,
    maxRequests: Number(args["max-requests"]),
  });
  const loadSeconds = (performance.now() - startedAt) / 1000;
  sampler.stop();
  await sampler.sample();
  // Every request has ended for its client; anything of theirs still in PostgreSQL past the grace is a zombie.
  await new Promise((r) => setTimeout(r, ZOMBIE_GRACE_MS + 1000));
  await sampler.watchZombies();
  const ledger = await checkWrites(admin, writes);
  const deadAtEnd = sampler.dead();
  const bridgeMetrics = `http://127.0.0.1:${stack.bridge.port}/metrics`;
  const bufferedJson = {
    heldBytes: await metricValue(bridgeMetrics, "querygate_http_buffered_json_bytes"),
    waits: await metricValue(bridgeMetrics, "querygate_http_buffered_json_waits_total"),
  };
  const stopped = tally.byKind.get(`http ${STOPS_READING}`);
  const sendTimeouts = {
    cuts: await metricValue(bridgeMetrics, "querygate_http_send_timeouts_total"),
    nonReaders: stopped ? [...stopped.labels.values()].reduce((a, b) => a + b, 0) : 0,
  };

  const checks = verdict({
    samples: sampler.samples,
    tally,
    zombies: sampler.zombies,
    ledger,
    deadAtEnd,
    bufferedJson,
    sendTimeouts,
  });
  const svg = join(workDir, "memory.svg");
  writeSvg(svg, sampler.samples, `soak ${new Date().toISOString().slice(0, 16)}`);
  console.log(
    `\n${sampleTable(sampler.samples)}\n\nmemory over the run:\n${sparklines(sampler.samples)}\n\nanswers by kind:\n${kindTable(tally)}`,
  );
  for (const z of [...sampler.zombies.values()].slice(0, 5))
    console.log(
      `zombie ${z.requestId} (${z.kind}) ${z.state}, ${(z.lateMs / 1000).toFixed(1)} s after its client left: ${z.query}`,
    );
  const headline = `${seconds >= 60 ? `${(seconds / 60).toFixed(1)} min` : `${seconds} s`}, ${callers} callers, seed ${seed}, ${tally.requests.toLocaleString("en-US")} requests (${(tally.requests / loadSeconds).toFixed(0)}/s); plot ${join(".data", "soak", "memory.svg")}`;
  console.log(`\n${summary(checks, headline)}`);
  exitCode = checks.every((c) => c.ok) ? 0 : 1;
} finally {
  sampler.stop();
  ctx.grpc.close();
  ctx.bridge.agent.destroy();
  await admin.end().catch(() => {});
  await stack.stop();
}
process.exit(exitCode);

/** Compares what querygate said about each insert with what the tables hold: present once when acknowledged, never twice. */
async function checkWrites(client: pg.Client, outcomes: Map<string, WriteOutcome>): Promise<Ledger> {
  const counts = new Map(
    (
      await client.query<{ token: string; n: number }>(
        `select token, count(*)::int as n from (select token from soak_writes union all select token from ${KEYED_TABLE}) t group by token`,
      )
    ).rows.map((r) => [r.token, r.n]),
  );
  const ledger: Ledger = {
    acked: 0,
    ackedMissing: [],
    failed: 0,
    failedPresent: [],
    unknown: 0,
    duplicated: [],
  };
  for (const [token, outcome] of outcomes) {
    const present = counts.has(token);
    if ((counts.get(token) ?? 0) > 1) ledger.duplicated.push(token);
    if (outcome === "acked") {
      ledger.acked++;
      if (!present) ledger.ackedMissing.push(token);
    } else if (outcome === "failed") {
      ledger.failed++;
      if (present) ledger.failedPresent.push(token);
    } else ledger.unknown++;
  }
  return ledger;
}
