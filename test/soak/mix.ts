// What a kind of request is to the soak: a name, a weight in the mix, what
// answer it expects, and how to send it. The kinds themselves are in
// kinds.ts and kinds-features.ts; this file holds what they share — how an
// answer is judged, how a write's outcome is read from it, the seeded choice
// of the next kind, and the plain one-request-over-HTTP-or-gRPC kind.
import { status } from "@grpc/grpc-js";
import type { DeepPartial, ExecuteRequest, QueryServiceClient } from "../../proto/gen/querygate/v1/query.js";
import {
  type Bridge,
  type Ending,
  type ExecuteOptions,
  type ExecuteResult,
  execute,
  post,
} from "./clients.js";

/**
 * valid: must succeed. mistake: the caller's fault, must be a 4xx (or a
 * result, when the input happens to be acceptable). give-up: the client walks
 * away (or its deadline passes) mid-statement; an answer that came before
 * that is judged as for a valid request. cancel: cancelled by id through the
 * registry mid-statement, so 499 (CANCELLED) is its right answer, not a
 * refusal; any other answer is judged as for a valid request.
 */
export type Expect = "valid" | "mistake" | "give-up" | "cancel";

export interface Outcome {
  kind: string;
  expect: Expect;
  ending: Ending;
  /** A wrong answer beyond its status: short stream, missing footer, wrong outcome. */
  problem?: string;
  ms: number;
}

/** What querygate said about a written row: committed, not committed, or not known. */
export type WriteOutcome = "acked" | "failed" | "unknown";

export interface Context {
  bridge: Bridge;
  grpc: QueryServiceClient;
  random: () => number;
  /** Records a token's fate, checked against soak_writes at the end. */
  wrote(token: string, outcome: WriteOutcome): void;
}

export interface Answer {
  ending: Ending;
  problem?: string;
}

export interface Kind {
  name: string;
  weight: number;
  expect: Expect;
  run(ctx: Context, requestId: string): Promise<Answer>;
}

export const between = (ctx: Context, low: number, high: number) =>
  low + Math.floor(ctx.random() * (high - low + 1));

export const succeeded = (ending: Ending) =>
  (ending.kind === "http" && ending.status === 200) || (ending.kind === "grpc" && ending.code === status.OK);

/** Committed only on a success; not known when the connection broke, the client left, or COMMIT's fate is unknown. */
export function writeOutcome(ending: Ending): WriteOutcome {
  if (succeeded(ending)) return "acked";
  if (ending.kind === "http") return ending.status === 502 ? "unknown" : "failed";
  if (ending.kind === "grpc") return ending.errorKind === "commit_unknown" ? "unknown" : "failed";
  return "unknown";
}

/** Runs `check` on a 200's body; other statuses are judged by the verdict, not here. */
export function whenOk(ending: Ending, check: (body: string) => string | undefined): string | undefined {
  return ending.kind === "http" && ending.status === 200 ? check(ending.body) : undefined;
}

/** NDJSON: a header line, one line per row, a footer with the row count; anything else is a problem. */
export function ndjsonProblem(body: string, rows: number): string | undefined {
  const lines = body.trimEnd().split("\n");
  const last = lines[lines.length - 1] ?? "";
  if (!lines[0]?.startsWith('{"header"')) return "NDJSON stream without a header line";
  if (!last.startsWith('{"footer"')) return `NDJSON stream ended without a footer: ${last.slice(0, 120)}`;
  if (lines.length !== rows + 2 || !last.includes(`"rowCount":${rows}`))
    return `NDJSON stream of ${lines.length - 2} rows, expected ${rows}`;
  return undefined;
}

/** Picks kinds by weight; `only` (names, or parts of names) narrows the mix to chase one bug. */
export function chooser(kinds: readonly Kind[], only: string[] = []): (random: () => number) => Kind {
  const chosen = only.length ? kinds.filter((k) => only.some((o) => k.name.includes(o))) : kinds;
  if (chosen.length === 0) throw new Error(`no request kind matches ${only.join(", ")}`);
  const total = chosen.reduce((sum, kind) => sum + kind.weight, 0);
  return (random) => {
    let at = random() * total;
    for (const kind of chosen) {
      at -= kind.weight;
      if (at < 0) return kind;
    }
    return chosen[chosen.length - 1]!;
  };
}

/** A small seeded generator (mulberry32), so a run's mix can be replayed with --seed. */
export function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---- the two ways most kinds are sent ----

export interface HttpRequest {
  body: string | Buffer;
  headers?: Record<string, string>;
  giveUpAfterMs?: number;
  giveUpOnFirstChunk?: boolean;
  stopReadingForMs?: number;
  /** Checks a 200's body; answers what is wrong with it. */
  check?: (body: string) => string | undefined;
  /** Checks the whole ending (headers, trailers); answers what is wrong with it. */
  checkEnding?: (ending: Ending) => string | undefined;
  /** The request inserts a row named by its request id. */
  writes?: boolean;
}

export function overHttp(
  name: string,
  weight: number,
  expect: Expect,
  build: (ctx: Context, id: string) => HttpRequest,
): Kind {
  return {
    name: `http ${name}`,
    weight,
    expect,
    run: async (ctx, requestId) => {
      const r = build(ctx, requestId);
      const ending = await post(ctx.bridge, r.body, { requestId, ...r });
      if (r.writes) ctx.wrote(requestId, writeOutcome(ending));
      return { ending, problem: (r.check ? whenOk(ending, r.check) : undefined) ?? r.checkEnding?.(ending) };
    },
  };
}

export interface GrpcRequest {
  request: DeepPartial<ExecuteRequest>;
  options?: Omit<ExecuteOptions, "requestId">;
  check?: (result: ExecuteResult) => string | undefined;
  writes?: boolean;
}

export function overGrpc(
  name: string,
  weight: number,
  expect: Expect,
  build: (ctx: Context, id: string) => GrpcRequest,
): Kind {
  return {
    name: `grpc ${name}`,
    weight,
    expect,
    run: async (ctx, requestId) => {
      const r = build(ctx, requestId);
      const result = await execute(ctx.grpc, r.request, { requestId, ...r.options });
      if (r.writes) ctx.wrote(requestId, writeOutcome(result.ending));
      return { ending: result.ending, problem: r.check?.(result) };
    },
  };
}
