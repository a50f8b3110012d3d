// Closed-loop load: N callers, each sending its next request as soon as the
// previous one answered, for a fixed time.

export interface LoadResult {
  requests: number;
  errors: number;
  seconds: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export async function closedLoop(
  callers: number,
  durationMs: number,
  once: (caller: number) => Promise<unknown>,
): Promise<LoadResult> {
  const latencies: number[] = [];
  let errors = 0;
  let firstError: unknown;
  const started = performance.now();
  await runFor(callers, durationMs, once, (ms, error) => {
    if (error === undefined) latencies.push(ms);
    else {
      errors++;
      firstError ??= error;
    }
  });
  const seconds = (performance.now() - started) / 1000;
  if (latencies.length === 0) throw new Error(`every request failed: ${String(firstError)}`);
  latencies.sort((a, b) => a - b);
  return {
    requests: latencies.length,
    errors,
    seconds,
    perSecond: latencies.length / seconds,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    maxMs: latencies[latencies.length - 1] ?? 0,
  };
}

async function runFor(
  callers: number,
  durationMs: number,
  once: (caller: number) => Promise<unknown>,
  record: (ms: number, error?: unknown) => void,
): Promise<void> {
  const until = performance.now() + durationMs;
  const caller = async (id: number) => {
    while (performance.now() < until) {
      const started = performance.now();
      try {
        await once(id);
        record(performance.now() - started);
      } catch (error) {
        record(performance.now() - started, error);
      }
    }
  };
  await Promise.all(Array.from({ length: callers }, (_, id) => caller(id)));
}

/** Nearest-rank percentile of ascending values. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[rank] ?? Number.NaN;
}

export function median(values: readonly number[]): number {
  return percentile(
    [...values].sort((a, b) => a - b),
    0.5,
  );
}
