// On-CPU profiles (`npm run bench -- --perf`): Linux perf samples a service
// only while it runs on a CPU, kernel included. V8's --cpu-prof samples
// wall time: on two busy cores a process preempted inside a syscall is
// charged to that syscall for as long as it waits (query-grpc's socket
// writes showed as a quarter of its profile, and were a tenth of its CPU).
// Each sample's cost goes to the nearest frame, from the leaf up, that names
// who asked for it: a module, a folder of ours, or the HTTP/2 stack (node's
// streams, buffers and events count for whoever called them); kernel work
// and V8's garbage collector are counted apart. Combined with the CPU
// the bench measured per request, the shares give µs per request.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";

/** perf's sampling rate while a path runs: enough samples in 10 s, little overhead. */
const SAMPLE_HZ = 499;

class OnCpuRecording {
  private readonly exited: Promise<void>;

  private constructor(private readonly child: ChildProcess) {
    this.exited = new Promise((resolve) => child.once("exit", () => resolve()));
  }

  /** perf record of one process, with call stacks, into `file`. */
  static start(perf: string, pid: number, file: string): OnCpuRecording {
    const child = spawn(perf, ["record", "-q", `-F${SAMPLE_HZ}`, "-g", "-p", String(pid), "-o", file], {
      stdio: "ignore",
    });
    return new OnCpuRecording(child);
  }

  /** perf writes its file on SIGINT. */
  async stop(): Promise<void> {
    if (this.child.exitCode === null) this.child.kill("SIGINT");
    await this.exited;
  }
}

/**
 * One recording per process that has a pid, into `dir`; `shares()` stops them
 * and reads each one's shares by owner, keyed by the process's name.
 */
export function sampleOnCpu(
  { perf, dir }: { perf: string; dir: string },
  label: string,
  sources: ReadonlyArray<{ name: string; pid?: number }>,
): { shares(): Promise<Record<string, Record<string, number>>> } {
  const recordings = sources.flatMap(({ name, pid }) => {
    if (!pid) return [];
    const file = join(dir, `${label}-${name}.perf.data`);
    return [{ name, file, recording: OnCpuRecording.start(perf, pid, file) }];
  });
  return {
    async shares() {
      const byProcess: Record<string, Record<string, number>> = {};
      for (const { name, file, recording } of recordings) {
        await recording.stop();
        byProcess[name] = await onCpuShares(perf, file);
      }
      return byProcess;
    },
  };
}

/** Each category's share of a recording's samples, largest first. */
async function onCpuShares(perf: string, file: string): Promise<Record<string, number>> {
  const { stdout } = await promisify(execFile)(perf, ["script", "-i", file], {
    maxBuffer: 1 << 30,
  });
  return sharesOf(foldPerfScript(stdout));
}

/** A sample's stack, leaf first: each frame's symbol and the object it is in. */
export interface Frame {
  symbol: string;
  object: string;
}

/** `perf script` output: one stack per sample, frames leaf first. */
export function foldPerfScript(text: string): Frame[][] {
  const stacks: Frame[][] = [];
  let current: Frame[] | undefined;
  for (const line of text.split("\n")) {
    if (line.trim() === "") {
      if (current?.length) stacks.push(current);
      current = undefined;
    } else if (/^\s/.test(line)) {
      // "\t  ffffffff816dbc19 vfs_read+0x129 ([kernel.kallsyms])"
      const match = /^\s*[0-9a-f]+\s+(.*?)(?:\+0x[0-9a-f]+)?\s+\((.*)\)$/.exec(line);
      if (match) current?.push({ symbol: match[1] ?? "", object: match[2] ?? "" });
    } else {
      current = [];
    }
  }
  if (current?.length) stacks.push(current);
  return stacks;
}

const GC =
  /^v8::internal::(Heap|Scavenger|ScavengerCollector|MarkCompact|MinorMarkSweep|ConcurrentMarking|Sweeper|ArrayBufferSweeper|MemoryAllocator|GCTracer|IncrementalMarking)|ScavengeVisitor|Evacuat/;

/** Who a frame names, or undefined to look further up. */
export function ownerOf(frame: Frame): string | undefined {
  const { symbol } = frame;
  if (symbol.startsWith("nghttp2_") || symbol.startsWith("node::http2::"))
    return "HTTP/2 (nghttp2, node's C++)";
  if (!symbol.startsWith("JS:")) return undefined;
  const ours = /\/dist\/(services\/[^/]+\/src|proto\/gen)\/(?:([^/]+)\/)?/.exec(symbol);
  if (ours)
    return ours[1] === "proto/gen" ? "protobuf (ts-proto)" : `${ours[1]?.split("/")[1]}: ${ours[2] ?? "."}/`;
  const module = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(symbol);
  if (module) return module[1];
  if (/node:internal\/http2/.test(symbol)) return "node http2 (JS)";
  if (/node:(_http_|internal\/http)/.test(symbol)) return "node http (JS)";
  return undefined;
}

/** node's own JS: charged to whoever called it, or to the event loop when nobody did. */
const NODE_CORE = "node core JS with no caller above it (event loop, microtasks, socket reads)";

export function sharesOf(stacks: Frame[][]): Record<string, number> {
  const counts = new Map<string, number>();
  for (const stack of stacks) {
    const leaf = stack[0];
    let owner: string | undefined;
    if (leaf?.object === "[kernel.kallsyms]") owner = "kernel (syscalls, TCP on loopback, wakeups)";
    else if (stack.some((frame) => GC.test(frame.symbol))) owner = "V8 garbage collection";
    else
      owner =
        stack.map(ownerOf).find((name) => name !== undefined) ??
        (stack.some((frame) => frame.symbol.startsWith("JS:") && frame.symbol.includes(" node:"))
          ? NODE_CORE
          : "V8 / node runtime (no JS caller)");
    counts.set(owner, (counts.get(owner) ?? 0) + 1);
  }
  const total = stacks.length || 1;
  return Object.fromEntries(
    [...counts.entries()].sort((a, b) => b[1] - a[1]).map(([name, count]) => [name, count / total]),
  );
}
