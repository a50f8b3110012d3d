// Pass or fail, and why, from what the soak saw. Each check is one line that
// names what broke and by how much, so the summary can be pasted into a note.
//
// Memory: a process leaks when, over the second half of the run (after
// start-up, JIT and the heap's first growth are done), its memory keeps
// rising. The slope is a Theil–Sen fit (the median of all pairwise slopes),
// which one GC sawtooth or one late heap expansion cannot drag the way a
// least-squares line can. It fails when the slope exceeds SLOPE_MB_PER_MIN
// AND the rise it implies over the second half exceeds RISE_MB, or when memory
// at the end is RATIO × what it was a quarter into the run and RISE_MB more
// (growth in steps). A second half under MIN_JUDGED_SECONDS is not judged:
// V8 grows its heap lazily between major collections, and over 15 s that
// looks like a leak (in a 30 s run both services "grow" 50+ MB).
// Calibration on 2 busy cores, 2-minute runs: query-grpc under 188k requests
// hovers at 200 ± 20 MB (Theil–Sen +5 MB/min); PostgreSQL's private memory
// stays flat; the bridge's leak is ~12–16 KiB per request, so even 30 req/s
// through it is ~25 MB/min, and at 1,500 req/s it is ~900 MB/min.

import { NO_ANSWER_MS } from "./clients.js";
import type { Tally } from "./load.js";
import { PROCESSES, type ProcessName, type Sample, ZOMBIE_GRACE_MS, type Zombie } from "./sampler.js";

export const SLOPE_MB_PER_MIN = 10;
export const RISE_MB = 20;
export const RATIO = 1.5;
/** A second half shorter than this cannot tell a leak from V8 growing its heap lazily: the trend is shown, not judged. */
export const MIN_JUDGED_SECONDS = 45;

export interface Check {
  name: string;
  ok: boolean;
  line: string;
  /** Not a failure, but worth reading. */
  warn?: boolean;
}

export interface Ledger {
  acked: number;
  ackedMissing: string[];
  failed: number;
  failedPresent: string[];
  unknown: number;
  /** Tokens whose row is there more than once: a retried write that ran twice. */
  duplicated: string[];
}

export interface MemoryTrend {
  name: ProcessName;
  slopeMbPerMin: number;
  riseMb: number;
  afterWarmupMb: number;
  endMb: number;
  /** Growth over the second half per request through the process, KiB; NaN when it did not grow. */
  kibPerRequest: number;
  leaking: boolean;
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length / 2;
  return sorted.length === 0
    ? Number.NaN
    : sorted.length % 2
      ? sorted[Math.floor(mid)]!
      : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

/** Median of pairwise slopes, per second. */
function theilSen(points: Array<[number, number]>): number {
  const slopes: number[] = [];
  for (let i = 0; i < points.length; i++)
    for (let j = i + 1; j < points.length; j++) {
      const [x1, y1] = points[i]!;
      const [x2, y2] = points[j]!;
      if (x2 !== x1) slopes.push((y2 - y1) / (x2 - x1));
    }
  return median(slopes);
}

export function memoryTrend(samples: Sample[], name: ProcessName): MemoryTrend | undefined {
  const end = samples[samples.length - 1];
  if (!end) return undefined;
  const secondHalf = samples.filter((s) => s.t >= end.t / 2);
  if (secondHalf.length < 4) return undefined;
  const slopePerSecond = theilSen(secondHalf.map((s) => [s.t, s.memory[name]]));
  const halfSeconds = end.t - secondHalf[0]!.t;
  const riseMb = slopePerSecond * halfSeconds;
  const warm = samples.filter((s) => s.t >= end.t / 4).slice(0, 3);
  const afterWarmupMb = median(warm.map((s) => s.memory[name]));
  const endMb = median(samples.slice(-3).map((s) => s.memory[name]));
  const through = name === "http-bridge" ? "bridge" : "grpc";
  const requests = end.through[through] - secondHalf[0]!.through[through];
  const slopeMbPerMin = slopePerSecond * 60;
  return {
    name,
    slopeMbPerMin,
    riseMb,
    afterWarmupMb,
    endMb,
    kibPerRequest: riseMb > 0 && requests > 0 ? (riseMb * 1024) / requests : Number.NaN,
    leaking:
      (slopeMbPerMin > SLOPE_MB_PER_MIN && riseMb > RISE_MB) ||
      (endMb > RATIO * afterWarmupMb && endMb - afterWarmupMb > RISE_MB),
  };
}

const fmt = (n: number, digits = 0) =>
  n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
const plus = (n: number) => `${n >= 0 ? "+" : ""}${fmt(n)}`;

function memoryCheck(samples: Sample[]): Check {
  const trends = PROCESSES.map((name) => memoryTrend(samples, name)).filter((t) => t !== undefined);
  if (trends.length === 0) return { name: "memory", ok: true, warn: true, line: "too few samples to judge" };
  const halfSeconds = samples[samples.length - 1]!.t / 2;
  const judged = halfSeconds >= MIN_JUDGED_SECONDS;
  const parts = trends.map((t) => {
    const perRequest =
      t.leaking && Number.isFinite(t.kibPerRequest) ? `, ~${fmt(t.kibPerRequest, 1)} KiB/request` : "";
    const flag = t.leaking ? (judged ? " LEAK" : " rising") : "";
    return `${t.name} ${plus(t.riseMb)} MB (${plus(t.slopeMbPerMin)} MB/min${perRequest}; ${fmt(t.afterWarmupMb)}→${fmt(t.endMb)} MB)${flag}`;
  });
  if (!judged)
    return {
      name: "memory",
      ok: true,
      warn: true,
      line: `not judged, the second half (${fmt(halfSeconds)} s) is under ${MIN_JUDGED_SECONDS} s: ${parts.join("; ")}`,
    };
  return { name: "memory", ok: trends.every((t) => !t.leaking), line: `second half: ${parts.join("; ")}` };
}

function fiveXxCheck(tally: Tally): Check {
  const blamed: string[] = [];
  for (const [kind, t] of tally.byKind) {
    const counted = t.expect === "mistake" ? t.fiveXx : t.fiveHundred;
    if (counted === 0) continue;
    const why = t.expect === "mistake" ? "caller mistake" : "500";
    blamed.push(`${kind} (${why}) ${counted}× e.g. ${t.first5xx ?? ""}`);
  }
  return blamed.length === 0
    ? { name: "5xx", ok: true, line: "no 500s, no 5xx for a caller's mistake" }
    : { name: "5xx", ok: false, line: blamed.join(" | ") };
}

function zombieCheck(zombies: Map<string, Zombie>): Check {
  if (zombies.size === 0)
    return {
      name: "zombies",
      ok: true,
      line: `no statement outlived its client by more than ${ZOMBIE_GRACE_MS / 1000} s`,
    };
  const byKind = new Map<string, { n: number; late: number; state: string }>();
  for (const z of zombies.values()) {
    const k = byKind.get(z.kind) ?? { n: 0, late: 0, state: z.state };
    k.n++;
    k.late = Math.max(k.late, z.lateMs);
    byKind.set(z.kind, k);
  }
  const parts = [...byKind].map(
    ([kind, k]) => `${kind} ${k.n}× (${k.state}, up to ${fmt(k.late / 1000, 1)} s after the client left)`,
  );
  return {
    name: "zombies",
    ok: false,
    line: `${zombies.size} statement(s) kept running without a client: ${parts.join("; ")}`,
  };
}

function ledgerCheck(ledger: Ledger): Check {
  const ok =
    ledger.ackedMissing.length === 0 && ledger.failedPresent.length === 0 && ledger.duplicated.length === 0;
  const line =
    `${fmt(ledger.acked)} acknowledged (${ledger.ackedMissing.length} missing${ledger.ackedMissing.length ? `: ${ledger.ackedMissing.slice(0, 3).join(", ")}` : ""}), ` +
    `${fmt(ledger.failed)} reported failed (${ledger.failedPresent.length} present anyway${ledger.failedPresent.length ? `: ${ledger.failedPresent.slice(0, 3).join(", ")}` : ""}), ${fmt(ledger.unknown)} unknown, ${ledger.duplicated.length} written twice${ledger.duplicated.length ? `: ${ledger.duplicated.slice(0, 3).join(", ")}` : ""}`;
  return { name: "writes", ok, line };
}

function processCheck(samples: Sample[], deadAtEnd: ProcessName[]): Check {
  const dead = new Set([...samples.flatMap((s) => s.dead), ...deadAtEnd]);
  const firstSeen = (name: ProcessName) => samples.find((s) => s.dead.includes(name))?.t;
  return dead.size === 0
    ? { name: "processes", ok: true, line: "all three alive to the end" }
    : {
        name: "processes",
        ok: false,
        line: [...dead]
          .map((n) => `${n} died${firstSeen(n) !== undefined ? ` (gone at ${fmt(firstSeen(n)!)} s)` : ""}`)
          .join("; "),
      };
}

function answersCheck(tally: Tally): Check {
  const wrong = [...tally.byKind]
    .filter(([, t]) => t.problems > 0)
    .map(([kind, t]) => `${kind} ${t.problems}× (${t.firstProblem})`);
  return wrong.length === 0
    ? { name: "answers", ok: true, line: "every answer complete and right" }
    : { name: "answers", ok: false, line: wrong.join("; ") };
}

/** A request that was fine answered with a 4xx: the server blamed the caller for its own failure. */
function refusedCheck(tally: Tally): Check {
  const parts = [...tally.byKind]
    .filter(([, t]) => t.expect !== "mistake" && t.refused > 0)
    .map(([kind, t]) => {
      const example = [...t.examples].find(([, e]) => e.statusClass === "4xx")?.[1].text ?? "";
      return `${kind} ${t.refused}× (${example.slice(0, 100)})`;
    });
  return parts.length === 0
    ? { name: "refused", ok: true, line: "no valid request was refused as the caller's mistake" }
    : { name: "refused", ok: false, line: parts.join("; ") };
}

/** No request may go unanswered: each kind has an answer (or a timeout of its own) well within NO_ANSWER_MS. */
function hungCheck(tally: Tally): Check {
  const parts = [...tally.byKind]
    .filter(([, t]) => t.classes["no-answer"] > 0)
    .map(([kind, t]) => `${kind} ${t.classes["no-answer"]}×`);
  return parts.length === 0
    ? { name: "hung", ok: true, line: `every request was answered within ${NO_ANSWER_MS / 1000} s` }
    : {
        name: "hung",
        ok: false,
        line: `requests unanswered after ${NO_ANSWER_MS / 1000} s: ${parts.join(", ")}`,
      };
}

/** select 1 beside the load, every sample: when it first failed and how often. */
function canaryCheck(samples: Sample[]): Check {
  const failed = samples.filter((s) => s.canary !== undefined);
  if (failed.length === 0)
    return { name: "canary", ok: true, line: "select 1 answered through both paths in every sample" };
  const first = failed[0]!;
  return {
    name: "canary",
    ok: false,
    line: `select 1 failed in ${failed.length} of ${samples.length} samples, first at ${fmt(first.t)} s: ${first.canary}`,
  };
}

/** Valid requests that did not succeed for other reasons: overload, timeouts, broken connections. A hint, not a failure. */
function otherCheck(tally: Tally): Check {
  const parts: string[] = [];
  for (const [kind, t] of tally.byKind) {
    if (t.expect !== "valid") continue;
    const bad = [...t.labels].filter(
      ([label]) => label !== "200" && label !== "OK" && t.examples.get(label)?.statusClass !== "4xx",
    );
    if (bad.length) parts.push(`${kind}: ${bad.map(([l, n]) => `${l} ×${n}`).join(", ")}`);
  }
  return parts.length === 0
    ? { name: "other", ok: true, line: "no valid request met overload, a timeout or a broken connection" }
    : { name: "other", ok: true, warn: true, line: `valid requests not answered 2xx — ${parts.join("; ")}` };
}

/** The bridge's buffered JSON budget once the load is over: every share given back. */
export interface BufferedJson {
  heldBytes: number;
  waits: number;
}

function bufferedJsonCheck(buffered: BufferedJson): Check {
  const ok = buffered.heldBytes === 0 && buffered.waits > 0;
  const line = ok
    ? `results waited for the budget ${fmt(buffered.waits)}×, and every share was given back`
    : buffered.waits > 0
      ? `${fmt(buffered.heldBytes)} bytes still held after the load (a share never given back; NaN: no metric)`
      : "no result ever waited for the budget: the soak did not reach it";
  return { name: "budget", ok, line };
}

/** Responses the bridge cut for not being read, and the requests that stopped reading. */
export interface SendTimeouts {
  cuts: number;
  nonReaders: number;
}

function sendTimeoutCheck({ cuts, nonReaders }: SendTimeouts): Check {
  const ok = nonReaders > 0 && cuts === nonReaders;
  const line = ok
    ? `the bridge cut each of the ${fmt(nonReaders)} callers that stopped reading, and no other`
    : nonReaders === 0
      ? "no caller stopped reading: the soak did not try it"
      : `${fmt(cuts)} responses cut for ${fmt(nonReaders)} callers that stopped reading (NaN: no metric)`;
  return { name: "unread", ok, line };
}

export function verdict(input: {
  samples: Sample[];
  tally: Tally;
  zombies: Map<string, Zombie>;
  ledger: Ledger;
  deadAtEnd: ProcessName[];
  bufferedJson: BufferedJson;
  sendTimeouts: SendTimeouts;
}): Check[] {
  return [
    memoryCheck(input.samples),
    fiveXxCheck(input.tally),
    zombieCheck(input.zombies),
    ledgerCheck(input.ledger),
    processCheck(input.samples, input.deadAtEnd),
    answersCheck(input.tally),
    refusedCheck(input.tally),
    hungCheck(input.tally),
    canaryCheck(input.samples),
    otherCheck(input.tally),
    bufferedJsonCheck(input.bufferedJson),
    sendTimeoutCheck(input.sendTimeouts),
  ];
}
