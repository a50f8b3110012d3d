// Bounded admission to the connection pool. At most `slots` statements run at
// once; up to `maxWaiting` more wait at most `waitMs` for a slot. Everyone else
// is refused at once with RESOURCE_EXHAUSTED (HTTP 503 + Retry-After), so a
// flood turns into quick refusals instead of a growing queue and memory.
import { QueryFailure } from "../errors.js";

interface Waiter {
  resolve: (release: () => void) => void;
  reject: (error: unknown) => void;
  timer: NodeJS.Timeout;
  signal: AbortSignal;
  onAbort: () => void;
}

export class Admission {
  private active = 0;
  private readonly queue: Waiter[] = [];

  constructor(
    private readonly slots: number,
    private readonly maxWaiting: number,
    private readonly waitMs: number,
  ) {}

  get running(): number {
    return this.active;
  }

  get waiting(): number {
    return this.queue.length;
  }

  /** Resolves with a release function once the caller may use a connection. */
  acquire(signal: AbortSignal): Promise<() => void> {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (this.active < this.slots) {
      this.active++;
      return Promise.resolve(this.releaser());
    }
    if (this.queue.length >= this.maxWaiting) {
      return Promise.reject(
        new QueryFailure(
          "overloaded",
          `all ${this.slots} database connections are busy and ${this.maxWaiting} callers are waiting; retry shortly`,
        ),
      );
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        signal,
        timer: setTimeout(() => {
          this.remove(waiter);
          reject(
            new QueryFailure(
              "overloaded",
              `no database connection became free within ${this.waitMs} ms; retry shortly`,
            ),
          );
        }, this.waitMs),
        onAbort: () => {
          this.remove(waiter);
          reject(signal.reason);
        },
      };
      signal.addEventListener("abort", waiter.onAbort, { once: true });
      this.queue.push(waiter);
    });
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.queue.shift();
      if (next) {
        clearTimeout(next.timer);
        next.signal.removeEventListener("abort", next.onAbort);
        next.resolve(this.releaser()); // the slot passes straight to the next waiter
      } else {
        this.active--;
      }
    };
  }

  private remove(waiter: Waiter): void {
    const index = this.queue.indexOf(waiter);
    if (index >= 0) this.queue.splice(index, 1);
    clearTimeout(waiter.timer);
    waiter.signal.removeEventListener("abort", waiter.onAbort);
  }
}
