// How much buffered JSON the whole bridge holds at once. Each buffered response
// is capped (MAX_JSON_RESPONSE_BYTES), but callers running such results side
// by side would add up past the pod's memory: the kernel then kills the
// bridge and every call in flight with it, writes mid-COMMIT included.
//
// A response over the budget waits instead of failing. Failing it would mean
// cancelling a statement that may be committing, so the caller could not be
// told whether it wrote. Waiting stops reading the call, and HTTP/2 flow
// control slows query-grpc's cursor down, as a slow client does. The oldest
// holder, by when its request arrived, always goes on, so responses that
// each wait for more cannot block one another (nor two pipelined on one
// connection, where the later cannot be sent before the earlier): the
// bridge holds at most the budget plus one response.
//
// A response holds its share until its last byte has gone to the socket,
// less what it has sent so far: the budget is what the bridge holds, and a
// caller that stops reading cannot pile unsent bodies up past it. Such a
// caller makes others wait at worst until SEND_TIMEOUT_MS cuts it. What
// small results hold (under SMALL_RESULT_BYTES) is not counted: that costs
// nothing per lookup.

/** What a response may hold before it counts against the budget: one BufferedRows chunk. */
export const SMALL_RESULT_BYTES = 64 * 1024;

export class BufferBudget {
  private heldBytes = 0;
  private arrivals = 0;
  /** The holders waiting for bytes (at most one grow each), among those below. */
  private readonly waiting = new Set<BudgetHolder>();
  /** Every holder still holding or waiting. */
  private readonly holders = new Set<BudgetHolder>();

  constructor(
    readonly limitBytes: number,
    /** Called each time a response has to wait (a metric counts them). */
    private readonly onWait: () => void = () => {},
  ) {}

  /** Bytes held by every response now. */
  get held(): number {
    return this.heldBytes;
  }

  /**
   * A place in line, taken when a request arrives. A response that asks for
   * its share later is still older than the ones behind it: on a pipelined
   * connection the later response cannot be sent before it, so it must not
   * be the one that always goes on.
   */
  arrival(): number {
    this.arrivals += 1;
    return this.arrivals;
  }

  /** A response's share, to grow as its rows arrive, shrink as it is sent, and give back at the end. */
  holder(signal: AbortSignal, arrival = this.arrival()): BudgetHolder {
    const holder = new BudgetHolder(this, signal, arrival);
    this.holders.add(holder);
    return holder;
  }

  /** True when `holder` may take `bytes` more now. */
  fits(holder: BudgetHolder, bytes: number): boolean {
    return this.heldBytes + bytes <= this.limitBytes || this.oldest() === holder;
  }

  private oldest(): BudgetHolder | undefined {
    let oldest: BudgetHolder | undefined;
    for (const holder of this.holders) if (!oldest || holder.arrival < oldest.arrival) oldest = holder;
    return oldest;
  }

  add(bytes: number): void {
    this.heldBytes += bytes;
  }

  countWait(): void {
    this.onWait();
  }

  /** `holder` is done: its bytes go back, and the responses waiting get another look, oldest first. */
  remove(holder: BudgetHolder, bytes: number): void {
    if (!this.holders.delete(holder)) return;
    this.heldBytes -= bytes;
    this.retryWaiting();
  }

  /** Bytes came back (a response done, or sending): the responses waiting get another look, oldest first. */
  retryWaiting(): void {
    // Called for every chunk sent: nothing to do in the usual case, nobody waiting.
    if (this.waiting.size === 0) return;
    for (const waiting of [...this.waiting].sort((a, b) => a.arrival - b.arrival)) waiting.retry();
  }

  /** `holder` waits for bytes (true) or no longer does (false). */
  setWaiting(holder: BudgetHolder, waiting: boolean): void {
    if (waiting) this.waiting.add(holder);
    else this.waiting.delete(holder);
  }
}

export class BudgetHolder {
  private bytes = 0;
  private pending: { bytes: number; resolve: () => void } | undefined;

  constructor(
    private readonly budget: BufferBudget,
    private readonly signal: AbortSignal,
    readonly arrival: number,
  ) {}

  /**
   * The response now holds `total` bytes. Undefined when the growth fits at
   * once (no promise made); otherwise a promise that settles once it does,
   * or once the caller has gone (the abort then ends the call anyway).
   */
  holding(total: number): Promise<void> | undefined {
    const bytes = total - this.bytes;
    if (bytes <= 0 || this.budget.fits(this, bytes)) {
      this.take(bytes);
      return undefined;
    }
    this.budget.countWait();
    return new Promise((resolve) => {
      const done = () => {
        this.signal.removeEventListener("abort", done);
        this.pending = undefined;
        this.budget.setWaiting(this, false);
        resolve();
      };
      if (this.signal.aborted) return done();
      this.signal.addEventListener("abort", done);
      this.pending = { bytes, resolve: done };
      this.budget.setWaiting(this, true);
    });
  }

  /** Called by the budget when bytes were given back: a waiting grow takes its bytes if they fit now. */
  retry(): void {
    const pending = this.pending;
    if (!pending || !this.budget.fits(this, pending.bytes)) return;
    this.take(pending.bytes);
    pending.resolve();
  }

  /**
   * Sending: `left` bytes of the response are still held. Never grows the
   * share (the body's bytes can outnumber the characters counted while it
   * was assembled); what it gives back may let a waiting response go on.
   */
  sending(left: number): void {
    const bytes = Math.min(left, this.bytes) - this.bytes;
    if (bytes === 0) return;
    this.take(bytes);
    this.budget.retryWaiting();
  }

  /** Gives every byte back; safe to call more than once. */
  release(): void {
    const pending = this.pending;
    this.pending = undefined;
    this.budget.setWaiting(this, false);
    this.budget.remove(this, this.bytes);
    this.bytes = 0;
    pending?.resolve();
  }

  private take(bytes: number): void {
    this.bytes += bytes;
    this.budget.add(bytes);
  }
}
