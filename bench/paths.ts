// How the phases driven by load generators (loadgen, floor) measure a path:
// each one checked once, warmed up, then run for a fixed time in rotated
// order with the CPU of its servers read from /proc around every run, and
// the generator's own CPU (read once it has exited) kept apart. One loop, so
// the transport floor and the real paths are measured the same way.
import type { GeneratorRun } from "./generators.js";
import { sampleOnCpu } from "./oncpu.js";
import { CpuMeter, type CpuSource, reapedChildrenCpu } from "./processes.js";
import type { GeneratorStats } from "./report.js";

export interface Path<Key extends string> {
  key: Key;
  label: string;
  /** What drives it: pgbench, wrk or h2load. */
  tool: string;
  /** The servers whose CPU the path costs. */
  cpu: CpuSource[];
  /** Before the first measured run: the answer is right (throws if not). */
  check?: () => Promise<void>;
  once(seconds: number): Promise<GeneratorRun>;
}

export interface Schedule {
  seconds: number;
  warmupSeconds: number;
  reps: number;
  step(message: string): void;
  /** Set with --perf: each path's first rep is also sampled by perf, each of its processes apart. */
  onCpu?: { perf: string; dir: string };
}

export async function measurePaths<Key extends string>(
  paths: Array<Path<Key>>,
  schedule: Schedule,
): Promise<Partial<Record<Key, GeneratorStats>>> {
  for (const path of paths) {
    await path.check?.();
    await path.once(schedule.warmupSeconds); // not counted: JIT, pools, connections
  }
  const width = Math.max(28, ...paths.map((path) => path.label.length));
  const runs = new Map<Path<Key>, Array<{ run: GeneratorRun; cpu: Record<string, number> }>>();
  const shares = new Map<Path<Key>, Record<string, Record<string, number>>>();
  for (let rep = 0; rep < schedule.reps; rep++) {
    // Rotate the order so no path always runs right after another.
    for (let k = 0; k < paths.length; k++) {
      const path = paths[(rep + k) % paths.length]!;
      const sampling =
        rep === 0 && schedule.onCpu ? sampleOnCpu(schedule.onCpu, path.key, path.cpu) : undefined;
      const meter = new CpuMeter([...path.cpu, reapedChildrenCpu("client")]);
      const run = await path.once(schedule.seconds);
      const cpu = meter.stop();
      if (sampling) shares.set(path, await sampling.shares());
      if (run.requests === 0) throw new Error(`${path.label}: no request succeeded in ${schedule.seconds} s`);
      if (run.errors > 0) schedule.step(`  ${path.label}: ${run.errors} errors`);
      schedule.step(
        `  ${path.label.padEnd(width)} ${Math.round(run.perSecond).toLocaleString("en-US")} req/s, p50 ${run.p50Ms.toFixed(2)} ms, p99 ${run.p99Ms.toFixed(2)} ms`,
      );
      runs.set(path, [...(runs.get(path) ?? []), { run, cpu }]);
    }
  }
  const results: Partial<Record<Key, GeneratorStats>> = {};
  for (const [path, done] of runs) {
    const measured = stats(path.tool, done);
    const sampled = shares.get(path);
    if (sampled) measured.onCpu = onCpuMicroseconds(sampled, measured.cpuUsPerRequest);
    results[path.key] = measured;
  }
  return results;
}

/** Each process's measured CPU per request, split by the shares perf sampled. */
function onCpuMicroseconds(
  shares: Record<string, Record<string, number>>,
  cpuUsPerRequest: Record<string, number>,
): Record<string, Record<string, number>> {
  return Object.fromEntries(
    Object.entries(shares).map(([name, byOwner]) => [
      name,
      Object.fromEntries(
        Object.entries(byOwner).map(([owner, share]) => [owner, share * (cpuUsPerRequest[name] ?? 0)]),
      ),
    ]),
  );
}

function stats(
  tool: string,
  runs: Array<{ run: GeneratorRun; cpu: Record<string, number> }>,
): GeneratorStats {
  const sum = (f: (r: GeneratorRun) => number) => runs.reduce((total, { run }) => total + f(run), 0);
  const mean = (f: (r: GeneratorRun) => number) => sum(f) / runs.length;
  const requests = sum((r) => r.requests);
  const errors = sum((r) => r.errors);
  const cpu: Record<string, number> = {};
  for (const { cpu: one } of runs)
    for (const [name, seconds] of Object.entries(one)) cpu[name] = (cpu[name] ?? 0) + seconds;
  return {
    tool,
    reps: runs.length,
    requests,
    errors,
    perSecond: requests / sum((r) => r.seconds),
    p50Ms: mean((r) => r.p50Ms),
    p99Ms: mean((r) => r.p99Ms),
    allPerSecond: runs.map(({ run }) => run.perSecond),
    allP99Ms: runs.map(({ run }) => run.p99Ms),
    cpuUsPerRequest: Object.fromEntries(
      Object.entries(cpu).map(([name, seconds]) => [name, (seconds * 1e6) / (requests + errors)]),
    ),
  };
}

/** POSTs `body` once and throws unless the answer is a 200. */
export async function postOnce(url: string, body: string): Promise<void> {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
  });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`${url} answered ${response.status} to ${body}: ${text}`);
}
