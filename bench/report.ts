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
  /** CPU time per 1,000 rows, ms. */
  grpcCpuMsPerKRows?: number;
  bridgeCpuMsPerKRows?: number;
}

export interface SmallStats extends LoadResult {
  /** CPU time per request, µs. */
  grpcCpuUsPerRequest?: number;
  bridgeCpuUsPerRequest?: number;
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
    `${m.cpuModel}, ${m.cores} cores, ${m.memoryGb} GB; node ${m.node}; PostgreSQL ${m.postgres}; load average ${m.loadAverageStart} at start`,
    "",
  );
  const ratioOf = (name: string) => r.targets.find((t) => t.name === name);
  const verdict = (t: Target | undefined) =>
    t
      ? `${t.value.toFixed(2)}${t.unit === "×" ? "×" : ` ${t.unit}`} ${t.goal} ${t.pass ? "PASS" : "FAIL"}`
      : "";

  if (r.bulk) {
    const b = r.bulk;
    out.push(`Bulk stream: ${count(b.pg.rows)} rows × 5 columns, median of ${b.pg.reps}`);
    out.push(
      row(
        ["", "rows/s", "first row", "q-grpc RSS", "CPU/1k rows", "ratio vs pg  target"],
        [24, 11, 10, 11, 20, 0],
      ),
    );
    out.push(
      row(["direct pg (pg-cursor)", count(b.pg.rowsPerSecond), ms(b.pg.firstRowMs), "", "", "1.00"], widths),
    );
    out.push(
      row(
        [
          "gRPC",
          count(b.grpc.rowsPerSecond),
          ms(b.grpc.firstRowMs),
          mb(b.grpc.grpcPeakRssMb),
          `q-grpc ${fixed(b.grpc.grpcCpuMsPerKRows)} ms`,
          verdict(ratioOf("bulk gRPC rows/s vs direct pg cursor")),
        ],
        widths,
      ),
    );
    out.push(
      row(
        [
          "bridge NDJSON",
          count(b.ndjson.rowsPerSecond),
          ms(b.ndjson.firstRowMs),
          mb(b.ndjson.grpcPeakRssMb),
          `bridge ${fixed(b.ndjson.bridgeCpuMsPerKRows)} ms`,
          verdict(ratioOf("bulk bridge NDJSON rows/s vs direct pg cursor")),
        ],
        widths,
      ),
    );
    out.push(
      `  rows/s per rep: pg ${b.pg.allRowsPerSecond.map(count).join(", ")}; gRPC ${b.grpc.allRowsPerSecond
        .map(count)
        .join(", ")}; NDJSON ${b.ndjson.allRowsPerSecond.map(count).join(", ")}`,
      "",
    );
  }

  if (r.small) {
    const s = r.small;
    out.push(
      `Small queries: primary-key lookup, ${r.sizes.callers} concurrent callers, ${r.sizes.smallSeconds} s each`,
    );
    out.push(row(["", "req/s", "p50", "p99", "CPU/request", "ratio vs pg  target"], widths));
    out.push(
      row(["direct pg (pg.Pool)", count(s.pg.perSecond), ms(s.pg.p50Ms), ms(s.pg.p99Ms), "", "1.00"], widths),
    );
    out.push(
      row(
        [
          "gRPC",
          count(s.grpc.perSecond),
          ms(s.grpc.p50Ms),
          ms(s.grpc.p99Ms),
          `q-grpc ${fixed(s.grpc.grpcCpuUsPerRequest, 0)} µs`,
          verdict(ratioOf("small queries gRPC req/s vs direct pg pool")),
        ],
        widths,
      ),
    );
    out.push(
      row(
        [
          "bridge JSON",
          count(s.bridge.perSecond),
          ms(s.bridge.p50Ms),
          ms(s.bridge.p99Ms),
          `bridge ${fixed(s.bridge.bridgeCpuUsPerRequest, 0)} µs`,
          verdict(ratioOf("small queries bridge req/s vs direct pg pool")),
        ],
        widths,
      ),
    );
    out.push(
      `  p99 gRPC ${verdict(ratioOf("small queries gRPC p99"))}; p99 bridge ${verdict(ratioOf("small queries bridge p99"))}`,
      "",
    );
  }

  if (r.firstRow) {
    const f = r.firstRow;
    const big = count(r.sizes.bigRows ?? 0);
    out.push(
      `Time to first row: median (p90) of ${f.fewRows.grpc.reps} tries; the big one stops after its first row`,
    );
    const firstRowWidths = [24, 20, 20, 0];
    out.push(row(["", "10 rows", `${big} rows`, "target"], firstRowWidths));
    const line = (name: string, few: FirstRowStats, all: FirstRowStats, target = "") =>
      row(
        [name, `${ms(few.medianMs)} (${ms(few.p90Ms)})`, `${ms(all.medianMs)} (${ms(all.p90Ms)})`, target],
        firstRowWidths,
      );
    out.push(line("direct pg (pg-cursor)", f.fewRows.pg, f.allRows.pg));
    const fewTarget = r.targets.find((t) => t.name.startsWith("first row via gRPC, 10-row"));
    const allTarget = r.targets.find((t) => t.name.startsWith("first row via gRPC") && t !== fewTarget);
    out.push(
      line(
        "gRPC",
        f.fewRows.grpc,
        f.allRows.grpc,
        `< 20 ms: ${fewTarget?.pass ? "PASS" : "FAIL"} / ${allTarget?.pass ? "PASS" : "FAIL"}`,
      ),
    );
    out.push(line("bridge NDJSON", f.fewRows.ndjson, f.allRows.ndjson), "");
  }

  if (r.big) {
    const t = r.targets.find((x) => x.name.startsWith("query-grpc peak RSS"));
    out.push(
      `Whole ${count(r.big.rows)}-row stream via gRPC: ${count(r.big.rowsPerSecond)} rows/s, ${r.big.seconds.toFixed(1)} s, first row ${ms(r.big.firstRowMs)}; query-grpc peak RSS ${mb(r.big.grpcPeakRssMb)} (${t?.goal} MiB ${t?.pass ? "PASS" : "FAIL"})`,
      "",
    );
  }

  const passed = r.targets.filter((t) => t.pass).length;
  out.push(`Targets: ${passed}/${r.targets.length} pass`);
  for (const t of r.targets) out.push(`  ${t.pass ? "PASS" : "FAIL"}  ${t.name}: ${verdict(t)}`);
  for (const note of r.notes) out.push(`Note: ${note}`);
  return out.join("\n");
}

const widths = [24, 11, 10, 11, 20, 0];

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

function fixed(n: number | undefined, digits = 1): string {
  return n === undefined ? "-" : n.toFixed(digits);
}
