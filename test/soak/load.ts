// Keeps the mix going: a fixed number of callers, each starting its next
// request as soon as its last one ended, until the time or the request budget
// runs out. Every ending is tallied by status class for the sampler, by kind
// for the report, and by request id with the time it ended, which is what
// lets the zombie watch tell a statement still running for a caller who has
// already gone from one that is merely busy.
import { Metadata, type ServiceError, status } from "@grpc/grpc-js";
import { QueryError } from "../../proto/gen/querygate/v1/query.js";
import { fromGrpcError } from "../../services/http-bridge/src/errors.js";
import type { Ending } from "./clients.js";
import type { Context, Expect, Kind, Outcome } from "./mix.js";

export const CLASSES = ["2xx", "4xx", "5xx", "gave-up", "net-error", "no-answer"] as const;
export type StatusClass = (typeof CLASSES)[number];

const noCounts = () => Object.fromEntries(CLASSES.map((c) => [c, 0])) as Record<StatusClass, number>;

/**
 * The HTTP status an ending stands for. gRPC codes are mapped by the bridge's
 * own table (errors.ts), so "a 5xx" means the same thing on both paths.
 */
export function httpEquivalent(ending: Ending): number | undefined {
  if (ending.kind === "http") return ending.status;
  if (ending.kind !== "grpc") return undefined;
  if (ending.code === status.OK) return 200;
  const metadata = new Metadata();
  metadata.set(
    "querygate-error-bin",
    Buffer.from(QueryError.encode(QueryError.fromPartial({ kind: ending.errorKind })).finish()),
  );
  return fromGrpcError({ code: ending.code, details: ending.details, metadata } as ServiceError).status;
}

export function classOf(ending: Ending): StatusClass {
  if (ending.kind === "gave-up") return "gave-up";
  if (ending.kind === "net-error") return "net-error";
  if (ending.kind === "no-answer") return "no-answer";
  const code = httpEquivalent(ending) ?? 0;
  return code >= 500 ? "5xx" : code >= 400 ? "4xx" : "2xx";
}

export function labelOf(ending: Ending): string {
  if (ending.kind === "http") return String(ending.status);
  if (ending.kind === "grpc")
    return `${status[ending.code]}${ending.errorKind ? `/${ending.errorKind}` : ""}`;
  return ending.kind;
}

export interface KindTally {
  expect: Expect;
  via: "http" | "grpc";
  /** Count by status label ("200", "INVALID_ARGUMENT/sql", "gave-up", …). */
  labels: Map<string, number>;
  /** The first response body or error details seen for each label. */
  examples: Map<string, { statusClass: StatusClass; text: string }>;
  classes: Record<StatusClass, number>;
  /** 4xx other than 429 (overload): a valid request blamed on its caller. */
  refused: number;
  problems: number;
  firstProblem?: string;
  /** Endings that stand for a 5xx, and for a 500 exactly (INTERNAL, UNKNOWN and DATA_LOSS over gRPC). */
  fiveXx: number;
  fiveHundred: number;
  /** A response body or details of the first 5xx, to show in the report. */
  first5xx?: string;
  /** Sum of the requests' durations, ms. */
  totalMs: number;
}

export class Tally {
  readonly byKind = new Map<string, KindTally>();
  readonly interval: Record<StatusClass, number> = noCounts();
  readonly total: Record<StatusClass, number> = noCounts();
  /** Requests sent through each service so far. */
  readonly through = { bridge: 0, grpc: 0 };
  /** Request id → when its client saw the end (Date.now()), and its kind. */
  readonly ended = new Map<string, { at: number; kind: string }>();
  /** Requests started, and requests ended. */
  requests = 0;
  completed = 0;

  record(requestId: string, outcome: Outcome): void {
    const via = outcome.kind.startsWith("http") ? "http" : "grpc";
    const tally: KindTally = this.byKind.get(outcome.kind) ?? {
      expect: outcome.expect,
      via,
      labels: new Map(),
      examples: new Map(),
      classes: noCounts(),
      refused: 0,
      problems: 0,
      fiveXx: 0,
      fiveHundred: 0,
      totalMs: 0,
    };
    this.byKind.set(outcome.kind, tally);
    const label = labelOf(outcome.ending);
    tally.labels.set(label, (tally.labels.get(label) ?? 0) + 1);
    const statusClass = classOf(outcome.ending);
    if (!tally.examples.has(label))
      tally.examples.set(label, { statusClass, text: describe(outcome.ending) });
    tally.classes[statusClass]++;
    const code = httpEquivalent(outcome.ending);
    if (statusClass === "4xx" && code !== 429 && !(outcome.expect === "cancel" && code === 499))
      tally.refused++;
    if (statusClass === "5xx") {
      tally.fiveXx++;
      if (httpEquivalent(outcome.ending) === 500) tally.fiveHundred++;
      tally.first5xx ??= describe(outcome.ending);
    }
    tally.totalMs += outcome.ms;
    if (outcome.problem) {
      tally.problems++;
      tally.firstProblem ??= outcome.problem;
    }
    this.interval[statusClass]++;
    this.total[statusClass]++;
    this.through.grpc++;
    if (via === "http") this.through.bridge++;
    this.ended.set(requestId, { at: Date.now(), kind: outcome.kind });
    this.completed++;
  }

  /** Counts since the last call, then starts a new interval. */
  takeInterval(): Record<StatusClass, number> {
    const counts = { ...this.interval };
    for (const key of CLASSES) this.interval[key] = 0;
    return counts;
  }
}

function describe(ending: Ending): string {
  if (ending.kind === "http") return `${ending.status} ${ending.body.slice(0, 200)}`;
  if (ending.kind === "grpc")
    return `${status[ending.code]} ${ending.errorKind} ${ending.details.slice(0, 200)}`;
  if (ending.kind === "net-error") return `net-error ${ending.message}`;
  if (ending.kind === "no-answer") return `no answer within ${ending.afterMs / 1000} s`;
  return ending.kind;
}

export interface LoadOptions {
  pick: (random: () => number) => Kind;
  callers: number;
  until: number;
  maxRequests: number;
}

/** Runs the mix until `until` (performance.now()) or `maxRequests`; resolves when every caller has finished. */
export async function runLoad(ctx: Context, tally: Tally, options: LoadOptions): Promise<void> {
  let sequence = 0;
  const caller = async () => {
    while (performance.now() < options.until && sequence < options.maxRequests) {
      const requestId = `soak-${++sequence}`;
      const kind = options.pick(ctx.random);
      tally.requests++;
      const started = performance.now();
      let answer: Pick<Outcome, "ending" | "problem">;
      try {
        answer = await kind.run(ctx, requestId);
      } catch (error) {
        answer = { ending: { kind: "net-error", message: String(error) } };
      }
      tally.record(requestId, {
        kind: kind.name,
        expect: kind.expect,
        ms: performance.now() - started,
        ...answer,
      });
    }
  };
  await Promise.all(Array.from({ length: options.callers }, caller));
}
