// What the soak watches while the load runs. Every ~2 s: each process's
// memory, whether it is still alive, requests per second and statuses by
// class. Every ~1 s, separately and more often so that a short-lived stray is
// not missed: pg_stat_activity rows of querygate's pool whose request has
// already ended for its client — a statement (or an open transaction) left
// running with nobody waiting for it.
import type pg from "pg";
import type { QueryServiceClient } from "../../proto/gen/querygate/v1/query.js";
import { parseApplicationName } from "../../services/query-grpc/src/postgres/application-name.js";
import { type Bridge, bridgeClient, execute, post } from "./clients.js";
import { labelOf, type Tally } from "./load.js";
import { alive, heapUsedMb, postgresMb, rssMb, type Stack } from "./stack.js";

export const PROCESSES = ["http-bridge", "query-grpc", "postgres"] as const;
export type ProcessName = (typeof PROCESSES)[number];

export interface Sample {
  /** Seconds since the load started. */
  t: number;
  /** MiB: VmRSS of each service, RssAnon summed over PostgreSQL's processes. */
  memory: Record<ProcessName, number>;
  /** MiB of V8 heap in use, NaN when /metrics did not answer. */
  heap: Record<"http-bridge" | "query-grpc", number>;
  perSecond: number;
  classes: ReturnType<Tally["takeInterval"]>;
  /** Requests sent through each service so far, to turn memory growth into bytes per request. */
  through: { bridge: number; grpc: number };
  dead: ProcessName[];
  /** What was wrong with `select 1` through the bridge and over gRPC, if anything (overload and slowness aside). */
  canary?: string;
}

export interface Zombie {
  requestId: string;
  kind: string;
  state: string;
  query: string;
  /** How long after its client saw the end the statement was still there, ms. */
  lateMs: number;
}

/** A select 1 may wait for the pool (2 s) on a busy machine; unanswered for this long, the service is stuck. */
const CANARY_PATIENCE_MS = 10_000;

/** A request's backend may take a moment to notice its caller left; beyond this it is a zombie. */
export const ZOMBIE_GRACE_MS = 2000;

export class Sampler {
  readonly samples: Sample[] = [];
  readonly zombies = new Map<string, Zombie>();
  private readonly timers: NodeJS.Timeout[] = [];
  private lastAt = performance.now();
  private lastRequests = 0;
  private readonly postmaster: number;
  /** Its own connection each time: the canary tests the bridge, not the state of the load's keep-alive sockets. */
  private readonly canaryBridge: Bridge;

  constructor(
    private readonly stack: Stack,
    private readonly admin: pg.Client,
    private readonly tally: Tally,
    private readonly startedAt: number,
    postmaster: number,
    private readonly grpc: QueryServiceClient,
  ) {
    this.postmaster = postmaster;
    this.canaryBridge = bridgeClient(stack.bridge.port, 0);
  }

  start(onSample: (sample: Sample) => void): void {
    this.timers.push(setInterval(() => void this.sample().then(onSample), 2000));
    this.timers.push(setInterval(() => void this.watchZombies(), 1000));
  }

  stop(): void {
    for (const timer of this.timers) clearInterval(timer);
  }

  async sample(): Promise<Sample> {
    const now = performance.now();
    const requests = this.tally.completed;
    const perSecond = ((requests - this.lastRequests) * 1000) / (now - this.lastAt);
    this.lastAt = now;
    this.lastRequests = requests;
    const { grpc, bridge, grpcMetricsPort } = this.stack;
    const [bridgeHeap, grpcHeap] = await Promise.all([
      heapUsedMb(`http://127.0.0.1:${bridge.port}/metrics`),
      heapUsedMb(`http://127.0.0.1:${grpcMetricsPort}/metrics`),
    ]);
    const sample: Sample = {
      t: (now - this.startedAt) / 1000,
      memory: {
        "http-bridge": rssMb(bridge.pid),
        "query-grpc": rssMb(grpc.pid),
        postgres: postgresMb(this.postmaster),
      },
      heap: { "http-bridge": bridgeHeap, "query-grpc": grpcHeap },
      perSecond,
      classes: this.tally.takeInterval(),
      through: { ...this.tally.through },
      dead: this.dead(),
      canary: this.canaryNews(),
    };
    this.samples.push(sample);
    return sample;
  }

  private canaryRunning: Promise<void> | undefined;
  private canaryStartedAt = 0;
  private canaryProblem: string | undefined;

  /**
   * The canary's news for this sample: what its last finished round found,
   * or that its current round has waited too long. Starts the next round when
   * the last one is done, so a hung service delays no sample.
   */
  private canaryNews(): string | undefined {
    const news = this.canaryProblem;
    this.canaryProblem = undefined;
    if (this.canaryRunning) {
      const waited = Date.now() - this.canaryStartedAt;
      return (
        news ??
        (waited > CANARY_PATIENCE_MS ? `select 1 unanswered for ${(waited / 1000).toFixed(0)} s` : undefined)
      );
    }
    this.canaryStartedAt = Date.now();
    this.canaryRunning = this.canary().then((problem) => {
      this.canaryProblem = problem;
      this.canaryRunning = undefined;
    });
    return news;
  }

  /**
   * `select 1` through both paths, beside the load: a service that still
   * runs but answers nothing right (a parser left broken by some earlier
   * input) shows here, at the time it broke.
   */
  private async canary(): Promise<string | undefined> {
    const [http, grpc] = await Promise.all([
      post(this.canaryBridge, '{"query":"select 1 as one"}', {
        requestId: "soak-canary-http",
        noAnswerMs: CANARY_PATIENCE_MS,
      }),
      execute(
        this.grpc,
        { sql: "select 1" },
        { requestId: "soak-canary-grpc", noAnswerMs: CANARY_PATIENCE_MS },
      ),
    ]);
    // Overload (503, RESOURCE_EXHAUSTED) and slowness are documented answers to a busy server, not breakage.
    const busy = (label: string) =>
      /^(504|gave-up|RESOURCE_EXHAUSTED\/overloaded|DEADLINE_EXCEEDED)/.test(label);
    const problems: string[] = [];
    const httpRight =
      http.kind === "http" && http.status === 200 && http.body.includes('"result":[{"one":1}]');
    const httpOverloaded =
      http.kind === "http" && http.status === 503 && http.body.includes('"code":"overloaded"');
    if (!httpRight && !httpOverloaded && !busy(labelOf(http)))
      problems.push(`http ${labelOf(http)}${http.kind === "http" ? ` ${http.body.slice(0, 120)}` : ""}`);
    const grpcRight = grpc.ending.kind === "grpc" && grpc.ending.code === 0 && grpc.rows === 1;
    if (!grpcRight && !busy(labelOf(grpc.ending)))
      problems.push(
        `grpc ${labelOf(grpc.ending)}${grpc.ending.kind === "grpc" ? ` ${grpc.ending.details.slice(0, 120)}` : ""}`,
      );
    return problems.length ? problems.join("; ") : undefined;
  }

  dead(): ProcessName[] {
    const pids: Record<ProcessName, number> = {
      "http-bridge": this.stack.bridge.pid,
      "query-grpc": this.stack.grpc.pid,
      postgres: this.postmaster,
    };
    return PROCESSES.filter((name) => !alive(pids[name]));
  }

  /**
   * querygate names each request's transaction "querygate[:tag] <hash>/<request id>"
   * (application_name, local to the transaction): a row with that name that
   * is not idle belongs to a request still in progress inside PostgreSQL.
   */
  async watchZombies(): Promise<void> {
    let rows: Array<{ application_name: string; state: string; query: string }>;
    try {
      const result = await this.admin.query(
        "select application_name, state, left(query, 80) as query from pg_stat_activity where application_name like 'querygate% %' and state <> 'idle'",
      );
      rows = result.rows;
    } catch {
      return; // PostgreSQL gone: the liveness check reports it
    }
    const now = Date.now();
    for (const row of rows) {
      const requestId = requestIdIn(row.application_name) ?? "";
      const ended = this.tally.ended.get(requestId);
      if (!ended || now - ended.at <= ZOMBIE_GRACE_MS) continue;
      const known = this.zombies.get(requestId);
      const lateMs = now - ended.at;
      if (known) known.lateMs = Math.max(known.lateMs, lateMs);
      else
        this.zombies.set(requestId, {
          requestId,
          kind: ended.kind,
          state: row.state,
          query: row.query,
          lateMs,
        });
    }
  }
}

/**
 * The request id in an application_name, read by query-grpc's own parser:
 * the name is "querygate[:tag] <caller hash>/<request id>" since the
 * registry, and a reader of its own would silently stop matching (and the
 * zombie watch see nothing) the next time the format changes.
 */
export function requestIdIn(applicationName: string): string | undefined {
  return parseApplicationName(applicationName)?.requestId;
}
