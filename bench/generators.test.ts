// How the bench reads its load generators' reports, on outputs in the shape
// wrk 4.1 (with bench/lookup.lua), h2load 1.52 and pgbench 15 print: a
// misread count here would put a wrong ratio in the table with no error.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { readH2load, readPgbench, readWrk } from "./generators.js";

const t = suite("bench generators");

t("wrk: an answer that is not 2xx counts as an error, not as a request", () => {
  const run = readWrk(
    [
      "Running 10s test @ http://127.0.0.1:5000",
      "  2 threads and 32 connections",
      "wrk-result requests=1000 duration_us=10000000 p50_us=7400 p99_us=12100 connect=0 read=2 write=0 status=10 timeout=1",
    ].join("\n"),
  );
  assert.is(run.requests, 990);
  assert.is(run.errors, 13);
  assert.is(run.perSecond, 99);
  assert.is(run.p50Ms, 7.4);
  assert.is(run.p99Ms, 12.1);
});

t("wrk: output without lookup.lua's result line is refused rather than read as zero", () => {
  assert.throws(() => readWrk("Running 10s test @ http://127.0.0.1:5000\n"), /wrk-result/);
});

t("h2load: latencies come from its per-request log, and a non-2xx line there is an error", () => {
  const out = [
    "finished in 2.00s, 2.00 req/s, 1.00KB/s",
    "requests: 5 total, 5 started, 5 done, 4 succeeded, 1 failed, 0 errored, 0 timeout",
  ].join("\n");
  const log = [
    "1700000000000000\t200\t1000",
    "1700000000001000\t200\t3000",
    "1700000000002000\t200\t2000",
    "1700000000003000\t200\t4000",
    "1700000000004000\t503\t500",
    "",
  ].join("\n");
  const run = readH2load(out, log);
  assert.is(run.requests, 4);
  assert.is(run.errors, 2); // "1 failed" in the summary, and the 503 line
  assert.is(run.seconds, 2);
  assert.is(run.perSecond, 2);
  assert.is(run.p50Ms, 2);
  assert.is(run.p99Ms, 4);
});

t("pgbench: p50 and p99 come from every thread's log", () => {
  const out = [
    "number of transactions actually processed: 4",
    "number of failed transactions: 0 (0.000%)",
    "tps = 2.000000 (without initial connection time)",
  ].join("\n");
  const logs = [
    "0 0 1000 0 1700000000 1\n0 1 2000 0 1700000000 2\n",
    "1 0 4000 0 1700000000 3\n1 1 3000 0 1700000000 4\n",
  ];
  const run = readPgbench(out, logs, 2);
  assert.is(run.requests, 4);
  assert.is(run.errors, 0);
  assert.is(run.perSecond, 2);
  assert.is(run.p50Ms, 2);
  assert.is(run.p99Ms, 4);
});

t("pgbench: a run that finished no transaction reads as zero requests, though pgbench prints no tps", () => {
  // As printed by a 2 s warm-up that spent its time connecting on a busy machine.
  const out = [
    "pgbench (15.18 (Debian 15.18-0+deb12u1), server 18.4)",
    "transaction type: lookup.sql",
    "query mode: extended",
    "number of clients: 32",
    "number of threads: 2",
    "maximum number of tries: 1",
    "duration: 2 s",
    "number of transactions actually processed: 0",
    "number of failed transactions: 0 (NaN%)",
  ].join("\n");
  const run = readPgbench(out, [], 2);
  assert.is(run.requests, 0);
  assert.is(run.perSecond, 0);
  assert.is(run.seconds, 2);
});

t.run();
