// query-grpc and the bridge as child processes, run from the compiled dist/
// as production runs them, so their memory and CPU can be read from /proc
// apart from the bench's own client work.
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { credentials, Metadata } from "@grpc/grpc-js";
import { HealthCheckResponse_ServingStatus, HealthClient } from "../proto/gen/grpc/health/v1/health.js";
import { freePort } from "../scripts/embedded-postgres.js";
import { HTTP_BRIDGE_NODE_FLAGS } from "../services/http-bridge/src/node-flags.js";
import { QUERY_GRPC_NODE_FLAGS } from "../services/query-grpc/src/node-flags.js";

export interface ServiceOptions {
  /** The checkout whose dist/ to run. */
  root: string;
  /** Where stdout/stderr (pino's JSON logs) go. */
  logDir: string;
  /** When set, the child writes a V8 CPU profile here on exit. */
  profileDir?: string;
  /** Distinguishes profiles and logs of the same service in different phases. */
  label: string;
  /** Node writes /tmp/perf-PID.map, so perf can name the JIT's functions (bench/oncpu.ts). */
  perfMap?: boolean;
}

export class Service {
  private readonly exited: Promise<number | null>;

  private constructor(
    readonly name: string,
    readonly port: number,
    private readonly child: ChildProcess,
    private readonly perfMap: boolean,
  ) {
    this.exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
  }

  static async start(
    name: "query-grpc" | "http-bridge",
    env: Record<string, string>,
    options: ServiceOptions,
  ): Promise<Service> {
    const port = await freePort();
    const script = join(options.root, "dist", "services", name, "src", "main.js");
    const profile = options.profileDir
      ? [
          "--cpu-prof",
          `--cpu-prof-dir=${options.profileDir}`,
          `--cpu-prof-name=${options.label}-${name}.cpuprofile`,
        ]
      : [];
    const logFile = join(options.logDir, `${options.label}-${name}.log`);
    const log = openSync(logFile, "w");
    const portVariable = name === "query-grpc" ? "GRPC_PORT" : "PORT";
    const nodeFlags = [
      ...(name === "query-grpc" ? queryGrpcFlags() : HTTP_BRIDGE_NODE_FLAGS),
      // --perf-basic-prof also turns on V8's log, by default isolate-*.log in the working directory.
      ...(options.perfMap
        ? [
            "--perf-basic-prof",
            "--no-logfile-per-isolate",
            `--logfile=${join(options.logDir, `${options.label}-${name}-v8.log`)}`,
          ]
        : []),
    ];
    const child = spawn(process.execPath, [...nodeFlags, ...profile, script], {
      cwd: options.root,
      env: { ...process.env, ...env, [portVariable]: String(port), SHUTDOWN_GRACE_MS: "0" },
      stdio: ["ignore", log, log],
    });
    closeSync(log);
    const service = new Service(name, port, child, options.perfMap === true);
    const ready = name === "query-grpc" ? grpcServing(port) : bridgeReady(port);
    await Promise.race([
      ready(15_000),
      service.exited.then((code) => {
        throw new Error(`${name} exited with ${code} while starting; see ${logFile}`);
      }),
    ]);
    return service;
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  /** SIGTERM (so a CPU profile gets written), then SIGKILL if it lingers. */
  async stop(): Promise<void> {
    await stopChild(this.child, this.exited, 10_000);
    if (this.perfMap) rmSync(`/tmp/perf-${this.pid}.map`, { force: true });
  }
}

/**
 * query-grpc's production node flags, or BENCH_QG_FLAGS in their place (set,
 * even to "", to measure another runtime setting; README).
 */
export function queryGrpcFlags(): string[] {
  const override = process.env.BENCH_QG_FLAGS;
  if (override === undefined) return [...QUERY_GRPC_NODE_FLAGS];
  return override.split(" ").filter((flag) => flag !== "");
}

function grpcServing(port: number) {
  return async (timeoutMs: number) => {
    const client = new HealthClient(`127.0.0.1:${port}`, credentials.createInsecure());
    try {
      await poll(timeoutMs, `query-grpc on ${port} to serve`, () => {
        return new Promise<boolean>((resolve) => {
          client.check({ service: "" }, new Metadata(), { deadline: Date.now() + 1000 }, (error, response) =>
            resolve(!error && response.status === HealthCheckResponse_ServingStatus.SERVING),
          );
        });
      });
    } finally {
      client.close();
    }
  };
}

function bridgeReady(port: number) {
  return (timeoutMs: number) =>
    poll(timeoutMs, `http-bridge on ${port} to be ready`, async () => {
      try {
        return (await fetch(`http://127.0.0.1:${port}/readyz`)).ok;
      } catch {
        return false;
      }
    });
}

async function poll(timeoutMs: number, what: string, check: () => Promise<boolean>): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

// ---- what a process costs, from /proc ----

const CLOCK_TICKS_PER_SECOND = 100;

/** User + system CPU seconds the process has used so far. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the parenthesised command name; utime and stime are the 14th and 15th overall.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
}

function statusKb(pid: number, key: "VmRSS" | "VmHWM"): number {
  const match = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return match ? Number(match[1]) : 0;
}

/**
 * Peak resident memory of one process over a stretch of work. The kernel's
 * high-water mark (VmHWM) is reset at the start (clear_refs 5) so earlier
 * phases do not count; RSS is also polled in case the reset is not allowed.
 */
export class PeakMemory {
  private polled = 0;
  private readonly timer: NodeJS.Timeout;
  private readonly resetWorked: boolean;

  constructor(private readonly pid: number) {
    try {
      writeFileSync(`/proc/${pid}/clear_refs`, "5");
      this.resetWorked = true;
    } catch {
      this.resetWorked = false;
    }
    this.sample();
    this.timer = setInterval(() => this.sample(), 50);
  }

  private sample(): void {
    this.polled = Math.max(this.polled, statusKb(this.pid, "VmRSS"));
  }

  /** Peak RSS in MiB since construction. */
  stop(): number {
    clearInterval(this.timer);
    this.sample();
    const peakKb = this.resetWorked ? Math.max(statusKb(this.pid, "VmHWM"), this.polled) : this.polled;
    return peakKb / 1024;
  }
}

/** Something whose CPU use can be read: a process, or a group of them. */
export interface CpuSource {
  name: string;
  /** User + system CPU seconds used so far. */
  seconds(): number;
  /** Set for one process, which an on-CPU profile can then sample. */
  pid?: number;
}

export function processCpu(name: string, pid: number): CpuSource {
  return { name, pid, seconds: () => cpuSeconds(pid) };
}

/** This process: the bench's clients and the direct-pg baseline. */
export const clientCpu: CpuSource = {
  name: "client",
  seconds: () => {
    const usage = process.cpuUsage();
    return (usage.user + usage.system) / 1e6;
  },
};

/**
 * PostgreSQL: the postmaster, its live children (backends, background
 * workers), and children that already exited (the postmaster's cutime/cstime).
 */
export function postgresCpu(dataDir: string): CpuSource {
  return treeCpu("postgres", postmasterPid(dataDir));
}

export function postmasterPid(dataDir: string): number {
  return Number(readFileSync(join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
}

/**
 * A process and its children, live or exited: gunicorn's master and its
 * workers are paid for as one server, like the postmaster and its backends.
 */
export function treeCpu(name: string, root: number): CpuSource {
  return {
    name,
    seconds: () => {
      let total = 0;
      for (const { pid, fields } of processTree(root)) {
        total += Number(fields[11]) + Number(fields[12]);
        if (pid === root) total += Number(fields[13]) + Number(fields[14]);
      }
      return total / CLOCK_TICKS_PER_SECOND;
    },
  };
}

/**
 * Children of the bench that have exited and been reaped (cutime + cstime of
 * this process): a load generator's CPU, read once it has finished. Services
 * the bench started are still running, so they do not count here.
 */
export function reapedChildrenCpu(name: string): CpuSource {
  return {
    name,
    seconds: () => {
      const stat = readFileSync("/proc/self/stat", "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return (Number(fields[13]) + Number(fields[14])) / CLOCK_TICKS_PER_SECOND;
    },
  };
}

/**
 * `root` and its live children, each with the fields of /proc/PID/stat after
 * the command name (fields[1] is the parent's pid). The soak reads memory
 * through it too.
 */
export function processTree(root: number): Array<{ pid: number; fields: string[] }> {
  const found: Array<{ pid: number; fields: string[] }> = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue; // exited while we looked
    }
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const pid = Number(entry);
    if (pid === root || Number(fields[1]) === root) found.push({ pid, fields });
  }
  return found;
}

/** CPU used by each source between construction and stop(), in seconds, by name. */
export class CpuMeter {
  private readonly before: number[];

  constructor(private readonly sources: CpuSource[]) {
    this.before = sources.map((s) => s.seconds());
  }

  stop(): Record<string, number> {
    return Object.fromEntries(this.sources.map((s, i) => [s.name, s.seconds() - (this.before[i] ?? 0)]));
  }
}

/** SIGTERM, then SIGKILL if `child` has not exited `graceMs` later; resolves once it exited. */
export async function stopChild(
  child: ChildProcess,
  exited: Promise<unknown>,
  graceMs: number,
): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}
