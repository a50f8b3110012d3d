// The bounded waits of a statement's life: a promise raced against the
// caller's abort, against a deadline, or against a settle timeout. They hold
// no state of their own and never leave a listener or timer behind.
import { QueryFailure } from "../errors.js";

/** True if `work` succeeded within `ms`; false if it failed or took longer. */
export async function settleWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([
      work.then(
        () => true,
        () => false,
      ),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A signal that aborts with `signal` or once `timeoutMs` passed: statement_timeout
 * restarts with every exchange, this bounds the whole statement, row reading
 * included. end() disarms it.
 */
export function withTimeout(signal: AbortSignal, timeoutMs: number): { signal: AbortSignal; end(): void } {
  const local = new AbortController();
  const stop = () => local.abort(signal.reason);
  signal.addEventListener("abort", stop);
  if (signal.aborted) stop();
  const timer = setTimeout(
    () => local.abort(new QueryFailure("timeout", `statement exceeded its ${timeoutMs} ms timeout`)),
    timeoutMs,
  );
  return {
    signal: local.signal,
    end() {
      clearTimeout(timer);
      signal.removeEventListener("abort", stop);
    },
  };
}

/** `work`, or the signal's reason as soon as it aborts. */
export function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    work.catch(() => {}); // its own failure says no more than the abort does
    return Promise.reject(signal.reason);
  }
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
