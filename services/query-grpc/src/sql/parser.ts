// Classifies SQL in a worker thread (parser-worker.ts) so that no input can
// damage the parser for the next caller: a statement that crashes the parser,
// or keeps it busy past `timeoutMs`, fails alone with 54001 ("statement too
// complex") and the worker is replaced; statements queued behind it are sent
// to the new one. Repeated statements are answered from a small cache
// without crossing threads.
import { Worker } from "node:worker_threads";
import { QueryFailure } from "../errors.js";
import type { StatementKind } from "../statement-kinds.js";
import type { Classification } from "./classify.js";
import { literalShape } from "./literal-shape.js";
import type { ParseAnswer, ParseRequest, ParserWorkerData } from "./parser-worker.js";

export interface ParserOptions {
  /** A parse still running after this long is abandoned with its worker. */
  timeoutMs: number;
  /** Classifications kept for statements seen before (of at most CACHEABLE_CHARS). */
  cacheEntries: number;
  /** A statement with more tokens of code is refused unparsed (54001): the parser's time and memory grow with them. */
  maxTokens: number;
}

interface Pending {
  request: ParseRequest;
  resolve: (classification: Classification) => void;
  reject: (failure: QueryFailure) => void;
}

type Cached = Classification | QueryFailure;

const CACHEABLE_CHARS = 4096;
/** Beside this file: parser-worker.js once built, parser-worker.ts when run from source (tests, tsx). */
const WORKER_URL = new URL(
  `./parser-worker${import.meta.url.endsWith(".ts") ? ".ts" : ".js"}`,
  import.meta.url,
);
/**
 * The worker's new objects (a parse tree and its JSON, per statement) die at
 * once: a young generation of a few MiB holds them as well as V8's default
 * for a whole server's, and keeps RSS that much lower. Old space is left
 * unbounded, since a statement of many tokens has a large tree.
 */
const WORKER_LIMITS = { maxYoungGenerationSizeMb: 4 };
/** A worker that cannot start is retried no sooner than this. */
const RESPAWN_BACKOFF_MS = 1000;

export class SqlParser {
  private worker: Worker | undefined;
  private starting: Promise<Worker> | undefined;
  /** In the order sent; the worker answers in order, so the first is the one it is working on. */
  private inFlight: Pending[] = [];
  private timer: NodeJS.Timeout | undefined;
  private nextId = 0;
  private lastSpawnFailure = 0;
  private readonly cache = new Map<string, Cached>();
  /** Classifications answered from the cache, and those that crossed to the worker. */
  readonly counts = { cached: 0, parsed: 0 };

  constructor(private readonly options: ParserOptions) {}

  /** Starts the first worker; rejects if the parser cannot load at all. */
  async start(): Promise<void> {
    await this.ensureWorker();
  }

  async classify(sql: string, allowed: ReadonlySet<StatementKind>): Promise<Classification> {
    const kinds = [...allowed].sort();
    const cacheable = sql.length <= CACHEABLE_CHARS;
    const granted = kinds.join(",");
    const key = cacheable ? `${granted}\n=${sql}` : undefined;
    // The same statement with other literal values classifies the same (literal-shape.ts).
    const shape = cacheable ? literalShape(sql) : undefined;
    const shapeKey = shape === undefined ? undefined : `${granted}\n~${shape}`;
    const cached = this.recall(key) ?? this.recall(shapeKey);
    if (cached !== undefined) {
      this.counts.cached++;
      if (cached instanceof QueryFailure) throw cached;
      return cached;
    }
    this.counts.parsed++;
    try {
      const classification = await this.send({ id: this.nextId++, sql, allowed: kinds });
      this.remember(key, classification);
      this.remember(shapeKey, classification);
      return classification;
    } catch (error) {
      // Only the statement's own faults are cached: not a parser that broke or was down.
      const ownFault =
        error instanceof QueryFailure && (error.kind === "sql" || error.kind === "invalid_request");
      if (ownFault && error.pg?.sqlstate !== "54001") this.remember(key, error);
      throw error;
    }
  }

  /** Parses a trivial statement on the worker (never from the cache): false if the parser is down. */
  async probe(): Promise<boolean> {
    try {
      await this.send({ id: this.nextId++, sql: "select 1", allowed: ["read"] });
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    clearTimeout(this.timer);
    const worker = this.worker;
    this.worker = undefined;
    for (const pending of this.inFlight.splice(0)) pending.reject(unavailable("the server is shutting down"));
    await worker?.terminate();
  }

  /** A cached answer, moved to the end so the most recently used entries stay. */
  private recall(key: string | undefined): Cached | undefined {
    if (key === undefined) return undefined;
    const cached = this.cache.get(key);
    if (cached === undefined) return undefined;
    this.cache.delete(key);
    this.cache.set(key, cached);
    return cached;
  }

  /** Errors are remembered by exact text only: their messages quote it and point into it. */
  private remember(key: string | undefined, value: Cached): void {
    if (key === undefined || this.options.cacheEntries === 0) return;
    this.cache.set(key, value);
    if (this.cache.size > this.options.cacheEntries) {
      this.cache.delete(this.cache.keys().next().value as string);
    }
  }

  private async send(request: ParseRequest): Promise<Classification> {
    const worker = await this.ensureWorker();
    return new Promise((resolve, reject) => {
      this.inFlight.push({ request, resolve, reject });
      worker.postMessage(request);
      if (this.inFlight.length === 1) this.armTimer();
    });
  }

  private ensureWorker(): Promise<Worker> {
    if (this.worker) return Promise.resolve(this.worker);
    if (Date.now() - this.lastSpawnFailure < RESPAWN_BACKOFF_MS) {
      return Promise.reject(unavailable("the SQL parser could not be started"));
    }
    this.starting ??= this.spawn().finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  private spawn(): Promise<Worker> {
    return new Promise((resolve, reject) => {
      const workerData: ParserWorkerData = { maxTokens: this.options.maxTokens };
      const options = { workerData, resourceLimits: WORKER_LIMITS };
      const worker = WORKER_URL.pathname.endsWith(".ts")
        ? // Worker threads do not inherit tsx's loader from --import: register it first.
          new Worker(
            `import("tsx/esm/api").then((tsx) => { tsx.register(); return import(${JSON.stringify(WORKER_URL.href)}); })`,
            { eval: true, ...options },
          )
        : new Worker(WORKER_URL, options);
      const failed = (error: unknown) => {
        this.lastSpawnFailure = Date.now();
        void worker.terminate();
        reject(unavailable(`the SQL parser could not be started: ${String(error)}`));
      };
      worker.once("error", failed);
      worker.once("message", () => {
        worker.off("error", failed);
        this.lastSpawnFailure = 0;
        this.worker = worker;
        worker.on("message", (answer: ParseAnswer) => this.answer(worker, answer));
        worker.on("error", () => this.replace(worker, "the SQL parser failed on this statement"));
        worker.on("exit", () => this.replace(worker, "the SQL parser failed on this statement"));
        resolve(worker);
      });
    });
  }

  private answer(worker: Worker, answer: ParseAnswer): void {
    if (worker !== this.worker) return;
    const pending = this.inFlight.shift();
    clearTimeout(this.timer);
    if (this.inFlight.length > 0) this.armTimer();
    if (!pending || pending.request.id !== answer.id) return;
    if ("classification" in answer) pending.resolve(answer.classification);
    else if ("failure" in answer) {
      const { kind, message, pg } = answer.failure;
      pending.reject(new QueryFailure(kind, message, pg));
    } else {
      // The parser broke on this statement: its state can no longer be trusted.
      this.inFlight.unshift(pending);
      this.replace(worker, `the statement is nested too deeply for the SQL parser (${answer.fault})`);
    }
  }

  private armTimer(): void {
    const worker = this.worker;
    this.timer = setTimeout(() => {
      if (worker && worker === this.worker)
        this.replace(worker, `parsing the statement took longer than ${this.options.timeoutMs} ms`);
    }, this.options.timeoutMs);
    this.timer.unref();
  }

  /**
   * Drops `worker`: the statement it was working on fails alone (it is the
   * one that broke or stalled it), the ones queued behind go to a new worker.
   */
  private replace(worker: Worker, why: string): void {
    if (worker !== this.worker) return;
    this.worker = undefined;
    clearTimeout(this.timer);
    worker.removeAllListeners();
    worker.on("error", () => {});
    void worker.terminate();
    const [culprit, ...queued] = this.inFlight.splice(0);
    culprit?.reject(new QueryFailure("sql", `${why}; simplify it`, { sqlstate: "54001" }));
    for (const pending of queued) {
      this.send(pending.request).then(pending.resolve, (error: unknown) =>
        pending.reject(error instanceof QueryFailure ? error : unavailable(String(error))),
      );
    }
  }
}

function unavailable(message: string): QueryFailure {
  return new QueryFailure("unavailable", message);
}
