// The bench's results: their shape (as written to bench/results.json), the
// targets from issue 4, and the table printed at the end of a run.
import type { LoadResult } from "./load.js";

export interface StreamStats {
  rows: number;
  reps: number;
  /** Median over the reps. */
  rowsPerSecond: number;
  firstRowMs: number;
  allRowsPerSecond: number[];
  /** Peak RSS of query-grpc (and the bridge) over the reps, MiB. */
  grpcPeakRssMb?: number;
  bridgePeakRssMb?: number;
  /** CPU time per 1,000 rows, ms, by process (client, query-grpc, bridge, postgres). */
  cpuMsPerKRows?: Record<string, number>;
}

export interface SmallStats extends LoadResult {
  /** CPU time per request, µs, by process (client, query-grpc, bridge, postgres). */
  cpuUsPerRequest?: Record<string, number>;
}

export interface FirstRowStats {
  reps: number;
  medianMs: number;
  p90Ms: number;
  maxMs: number;
}

export interface Results {
  mode: "full" | "quick";
  date: string;
  machine: Record<string, string | number>;
  sizes: Record<string, number>;
  notes: string[];
  loadSeconds?: number;
  bulk?: { pg: StreamStats; grpc: StreamStats; ndjson: StreamStats };
  small?: { pg: SmallStats; grpc: SmallStats; bridge: SmallStats };
  firstRow?: {
    fewRows: { pg: FirstRowStats; grpc: FirstRowStats; ndjson: FirstRowStats };
    allRows: { pg: FirstRowStats; grpc: FirstRowStats; ndjson: FirstRowStats };
    /** Tries that failed because an earlier call's cancel reached their statement. */
    staleCancels: number;
  };
  big?: { rows: number; rowsPerSecond: number; seconds: number; firstRowMs: number; grpcPeakRssMb: number };
  targets: Target[];
  profiles?: string[];
  wallSeconds?: number;
}

export interface Target {
  name: string;
  value: number;
  unit: string;
  /** "≥ 0.8", "< 10" */
  goal: string;
  pass: boolean;
}

export function targetsOf(r: Results): Target[] {
  const targets: Target[] = [];
  const atLeast = (name: string, value: number, goal: number) =>
    targets.push({ name, value, unit: "×", goal: `≥ ${goal}`, pass: value >= goal });
  const below = (name: string, value: number, goal: number, unit: string) =>
    targets.push({ name, value, unit, goal: `< ${goal}`, pass: value < goal });
  if (r.bulk) {
    atLeast("bulk gRPC rows/s vs direct pg cursor", r.bulk.grpc.rowsPerSecond / r.bulk.pg.rowsPerSecond, 0.8);
    atLeast(
      "bulk bridge NDJSON rows/s vs direct pg cursor",
      r.bulk.ndjson.rowsPerSecond / r.bulk.pg.rowsPerSecond,
      0.6,
    );
  }
  if (r.small) {
    atLeast("small queries gRPC req/s vs direct pg pool", r.small.grpc.perSecond / r.small.pg.perSecond, 0.6);
    atLeast(
      "small queries bridge req/s vs direct pg pool",
      r.small.bridge.perSecond / r.small.pg.perSecond,
      0.4,
    );
    below("small queries gRPC p99", r.small.grpc.p99Ms, 10, "ms");
    below("small queries bridge p99", r.small.bridge.p99Ms, 10, "ms");
  }
  if (r.firstRow) {
    below("first row via gRPC, 10-row result (median)", r.firstRow.fewRows.grpc.medianMs, 20, "ms");
    below(
      `first row via gRPC, ${count(r.sizes.bigRows ?? 0)}-row result (median)`,
      r.firstRow.allRows.grpc.medianMs,
      20,
      "ms",
    );
  }
  if (r.big)
    below(`query-grpc peak RSS streaming ${count(r.big.rows)} rows`, r.big.grpcPeakRssMb, 150, "MiB");
  return targets;
}

// ---- the printed table ----

export function formatResults(r: Results): string {
  const out: string[] = [];
  const m = r.machine;
  out.push(
    `querygate bench (${r.mode === "quick" ? "QUICK: smaller sizes, shorter runs, indicative only" : "full"}) ${r.date}`,
    `${m.cpuModel}, ${m.cores} cores, ${m.memoryGb} GB; node ${m.node}; PostgreSQL ${m.postgres}; load average ${m.loadAverageStart} at start, ${m.loadAverageEnd} at end`,
  );
  if (Number(m.loadAverageStart) > 0.5) {
    out.push(
      "Other work was running when the bench started: expect noise, run it again before trusting a ratio.",
    );
  }
  out.push("");
  const target = (prefix: string) => r.targets.find((t) => t.name.startsWith(prefix));
  const verdict = (t: Target | undefined) =>
    t
      ? `${t.value.toFixed(2)}${t.unit === "×" ? "×" : ` ${t.unit}`} ${t.goal} ${t.pass ? "PASS" : "FAIL"}`
      : "";

  if (r.bulk) {
    const b = r.bulk;
    const w = [22, 11, 10, 11, 11, 0];
    out.push(`Bulk stream: ${count(b.pg.rows)} rows × 5 columns, median of ${b.pg.reps}`);
    out.push(row(["", "rows/s", "first row", "q-grpc RSS", "bridge RSS", "ratio vs pg  target"], w));
    out.push(
      row(["direct pg (pg-cursor)", count(b.pg.rowsPerSecond), ms(b.pg.firstRowMs), "", "", "1.00"], w),
    );
    out.push(
      row(
        [
          "gRPC",
          count(b.grpc.rowsPerSecond),
          ms(b.grpc.firstRowMs),
          mb(b.grpc.grpcPeakRssMb),
          "",
          verdict(target("bulk gRPC")),
        ],
        w,
      ),
    );
    out.push(
      row(
        [
          "bridge NDJSON",
          count(b.ndjson.rowsPerSecond),
          ms(b.ndjson.firstRowMs),
          mb(b.ndjson.grpcPeakRssMb),
          mb(b.ndjson.bridgePeakRssMb),
          verdict(target("bulk bridge")),
        ],
        w,
      ),
    );
    out.push(
      `  rows/s of each rep: pg ${b.pg.allRowsPerSecond.map(count).join(", ")}; gRPC ${b.grpc.allRowsPerSecond.map(count).join(", ")}; NDJSON ${b.ndjson.allRowsPerSecond.map(count).join(", ")}`,
      `  CPU ms per 1k rows: pg ${cpuLine(b.pg.cpuMsPerKRows, 2)}; gRPC ${cpuLine(b.grpc.cpuMsPerKRows, 2)}; NDJSON ${cpuLine(b.ndjson.cpuMsPerKRows, 2)}`,
      "",
    );
  }

  if (r.small) {
    const s = r.small;
    const w = [22, 11, 10, 10, 0];
    out.push(
      `Small queries: primary-key lookup, ${r.sizes.callers} concurrent callers, ${r.sizes.smallSeconds} s each`,
    );
    out.push(row(["", "req/s", "p50", "p99", "ratio vs pg  target       p99 target"], w));
    out.push(row(["direct pg (pg.Pool)", count(s.pg.perSecond), ms(s.pg.p50Ms), ms(s.pg.p99Ms), "1.00"], w));
    for (const [name, key, label] of [
      ["gRPC", "grpc", "gRPC"],
      ["bridge JSON", "bridge", "bridge"],
    ] as const) {
      const l = s[key];
      const speed = verdict(target(`small queries ${label} req/s`));
      const tail = passFail(target(`small queries ${label} p99`));
      out.push(row([name, count(l.perSecond), ms(l.p50Ms), ms(l.p99Ms), `${speed}   ${tail}`], w));
    }
    out.push(
      `  CPU µs per request: pg ${cpuLine(s.pg.cpuUsPerRequest, 0)}; gRPC ${cpuLine(s.grpc.cpuUsPerRequest, 0)}; bridge ${cpuLine(s.bridge.cpuUsPerRequest, 0)}`,
      "",
    );
  }

  if (r.firstRow) {
    const f = r.firstRow;
    const w = [22, 20, 20, 0];
    out.push(
      `Time to first row: median (p90) of ${f.fewRows.grpc.reps} tries; the big one is abandoned after its first row`,
    );
    out.push(row(["", "10 rows", `${count(r.sizes.bigRows ?? 0)} rows`, "target < 20 ms"], w));
    const line = (name: string, few: FirstRowStats, all: FirstRowStats, verdicts = "") =>
      row(
        [name, `${ms(few.medianMs)} (${ms(few.p90Ms)})`, `${ms(all.medianMs)} (${ms(all.p90Ms)})`, verdicts],
        w,
      );
    out.push(line("direct pg (pg-cursor)", f.fewRows.pg, f.allRows.pg));
    out.push(
      line(
        "gRPC",
        f.fewRows.grpc,
        f.allRows.grpc,
        `${passFail(target("first row via gRPC, 10-row"))} / ${passFail(target(`first row via gRPC, ${count(r.sizes.bigRows ?? 0)}`))}`,
      ),
    );
    out.push(line("bridge NDJSON", f.fewRows.ndjson, f.allRows.ndjson), "");
  }

  if (r.big) {
    out.push(
      `Whole ${count(r.big.rows)}-row stream via gRPC: ${count(r.big.rowsPerSecond)} rows/s, ${r.big.seconds.toFixed(1)} s, first row ${ms(r.big.firstRowMs)}`,
      `  query-grpc peak RSS ${mb(r.big.grpcPeakRssMb)}: ${verdict(target("query-grpc peak RSS"))}`,
      "",
    );
  }

  const passed = r.targets.filter((t) => t.pass).length;
  out.push(`Targets: ${passed}/${r.targets.length} pass`);
  for (const t of r.targets) out.push(`  ${t.pass ? "PASS" : "FAIL"}  ${t.name}: ${verdict(t)}`);
  for (const note of r.notes) out.push(`Note: ${note}`);
  return out.join("\n");
}

function passFail(t: Target | undefined): string {
  return t ? (t.pass ? "PASS" : "FAIL") : "-";
}

function cpuLine(cpu: Record<string, number> | undefined, digits: number): string {
  if (!cpu) return "-";
  const parts = Object.entries(cpu).map(([name, value]) => `${name} ${value.toFixed(digits)}`);
  const total = Object.values(cpu).reduce((a, b) => a + b, 0);
  return `${parts.join(" + ")} = ${total.toFixed(digits)}`;
}

function row(cells: string[], w: number[]): string {
  return cells
    .map((cell, i) => {
      const width = w[i] ?? 0;
      return i === 0 ? cell.padEnd(width) : width > 0 ? cell.padStart(width) : `  ${cell}`;
    })
    .join(" ")
    .trimEnd();
}

export function count(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

function ms(n: number | undefined): string {
  return n === undefined || n < 0 ? "-" : `${n < 10 ? n.toFixed(2) : n.toFixed(1)} ms`;
}

function mb(n: number | undefined): string {
  return n === undefined ? "" : `${n.toFixed(0)} MiB`;
}
