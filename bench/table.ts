// The table printed at the end of a run: every phase as ratios against
// direct PostgreSQL in the same run, CPU per row or request by process (the
// client's own shown apart, outside the servers' total), and each target of
// issue 12 beside the figure it judges.
import {
  count,
  type FirstRowStats,
  type FloorResults,
  type FloorSum,
  type GeneratorStats,
  type LoadgenResults,
  type Results,
  serversCpu,
  type Target,
} from "./report.js";

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
    out.push(`  query-grpc peak RSS over both: ${verdict(target("query-grpc peak RSS streaming"))}`);
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
      `Small queries: primary-key lookup, ${r.sizes.callers} concurrent callers of the node client, ${r.sizes.smallSeconds} s each`,
    );
    out.push(row(["", "req/s", "p50", "p99", "ratio vs pg  target"], w));
    out.push(row(["direct pg (pg.Pool)", count(s.pg.perSecond), ms(s.pg.p50Ms), ms(s.pg.p99Ms), "1.00"], w));
    out.push(
      row(
        [
          "gRPC",
          count(s.grpc.perSecond),
          ms(s.grpc.p50Ms),
          ms(s.grpc.p99Ms),
          verdict(target("small queries gRPC req/s")),
        ],
        w,
      ),
    );
    out.push(
      row(
        [
          "bridge JSON",
          count(s.bridge.perSecond),
          ms(s.bridge.p50Ms),
          ms(s.bridge.p99Ms),
          verdict(target("small queries bridge req/s")),
        ],
        w,
      ),
    );
    out.push(
      "  CPU µs per request, servers + PostgreSQL (the client's own in brackets, not counted):",
      `    pg      ${cpuLine(s.pg.cpuUsPerRequest, 0)}`,
      `    gRPC    ${cpuLine(s.grpc.cpuUsPerRequest, 0)}   ${goal(target("small queries gRPC path CPU"))}`,
      `    bridge  ${cpuLine(s.bridge.cpuUsPerRequest, 0)}   ${goal(target("small queries bridge path CPU"))}`,
      "",
    );
  }

  if (r.loadgen) out.push(...loadgenTable(r.loadgen, r, target, verdict), "");
  if (r.floor) out.push(...floorTable(r.floor, r), "");

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
      `  query-grpc peak RSS ${mb(r.big.grpcPeakRssMb)}: ${verdict(target(`query-grpc peak RSS streaming ${count(r.big.rows)} rows`))}`,
      "",
    );
  }

  const passed = r.targets.filter((t) => t.pass).length;
  out.push(`Targets: ${passed}/${r.targets.length} pass`);
  for (const t of r.targets) out.push(`  ${t.pass ? "PASS" : "FAIL"}  ${t.name}: ${verdict(t)}`);
  for (const note of r.notes) out.push(`Note: ${note}`);
  return out.join("\n");
}

type Find = (prefix: string) => Target | undefined;

const LOADGEN_ROWS = [
  ["pgbench", "direct PostgreSQL (pgbench)"],
  ["pgbenchWrapped", "PostgreSQL, querygate's SQL"],
  ["flask", "Flask (gunicorn, wrk)"],
  ["bridge", "bridge (wrk, Flask's body)"],
  ["bridgeParams", "bridge (wrk, $1 + params)"],
  ["grpc", "gRPC Execute (h2load)"],
  ["grpcReadOnly", "gRPC read-only (h2load)"],
] as const;

function loadgenTable(
  l: LoadgenResults,
  r: Results,
  target: Find,
  verdict: (t: Target | undefined) => string,
): string[] {
  const measured = LOADGEN_ROWS.flatMap(([key, label]) => {
    const stats = l[key];
    return stats ? [{ key, label, stats }] : [];
  });
  if (measured.length === 0) return l.skipped;
  const out = [
    `Small queries from independent load generators: 3-column lookup, ${r.sizes.callers} connections, ${r.sizes.smallSeconds} s × ${measured[0]?.stats.reps} rep(s)`,
  ];
  const w = [28, 9, 10, 10, 11, 9, 0];
  out.push(row(["", "req/s", "p50", "p99", "vs pgbench", "vs Flask", "target"], w));
  const ratio = (stats: GeneratorStats, base: GeneratorStats | undefined) =>
    base ? (stats.perSecond / base.perSecond).toFixed(2) : "-";
  const goals: Record<string, string> = {
    bridge: [target("loadgen bridge (wrk) req/s"), target("loadgen bridge (wrk) p99")]
      .filter((t) => t !== undefined)
      .map((t) => (t.unit === "ms" ? `p99 ${verdict(t)}` : verdict(t)))
      .join("; "),
    grpc: verdict(target("loadgen gRPC (h2load) req/s")),
  };
  for (const { key, label, stats } of measured) {
    const cells = [count(stats.perSecond), ms(stats.p50Ms), ms(stats.p99Ms)];
    out.push(row([label, ...cells, ratio(stats, l.pgbench), ratio(stats, l.flask), goals[key] ?? ""], w));
  }
  out.push(
    `  req/s of each rep: ${measured.map(({ key, stats }) => `${key} ${stats.allPerSecond.map(count).join(", ")}`).join("; ")}`,
  );
  const failing = measured.filter(({ stats }) => stats.errors > 0);
  if (failing.length > 0)
    out.push(`  errors: ${failing.map(({ key, stats }) => `${key} ${stats.errors}`).join("; ")}`);
  const cpuGoals: Record<string, string> = {
    bridge: goal(target("loadgen bridge path (wrk) CPU")),
    grpc: goal(target("loadgen gRPC path (h2load) CPU")),
  };
  out.push("  CPU µs per request, servers + PostgreSQL (the generator's own in brackets, not counted):");
  for (const { key, stats } of measured)
    out.push(
      `    ${key.padEnd(15)}${cpuLine(stats.cpuUsPerRequest, 0, stats.tool)}   ${cpuGoals[key] ?? ""}`.trimEnd(),
    );
  const sampled = measured.filter(({ stats }) => stats.onCpu);
  if (sampled.length > 0) out.push("  On-CPU µs per request (perf), by who asked for the work:");
  for (const { key, stats } of sampled)
    for (const [name, byOwner] of Object.entries(stats.onCpu ?? {}))
      out.push(...onCpuLines(`${key}, ${name}`, byOwner));
  for (const line of l.skipped) out.push(`  ${line}`);
  return out;
}

/** The largest owners of a process's CPU per request, then the rest in one figure. */
function onCpuLines(label: string, byOwner: Record<string, number>): string[] {
  const owners = Object.entries(byOwner).sort((a, b) => b[1] - a[1]);
  const total = owners.reduce((sum, [, us]) => sum + us, 0);
  const shown = owners.slice(0, 10);
  const rest = owners.slice(10).reduce((sum, [, us]) => sum + us, 0);
  return [
    `    ${label}: ${total.toFixed(0)} µs`,
    ...shown.map(([owner, us]) => `      ${us.toFixed(0).padStart(5)}  ${owner}`),
    ...(rest > 0 ? [`      ${rest.toFixed(0).padStart(5)}  ${owners.length - shown.length} others`] : []),
  ];
}

const FLOOR_ROWS = [
  ["grpcJs", "grpc-js server, empty handler"],
  ["querygateH2", "query-grpc's node:http2 gRPC server, empty handler"],
  ["http2", "node:http2 server, empty handler"],
  ["hono", "Hono HTTP server, canned JSON"],
  ["honoGrpcJs", "Hono → grpc-js client → query-grpc's empty server"],
  ["honoHttp2", "Hono → node:http2 client → query-grpc's empty server"],
] as const;

function floorTable(f: FloorResults, r: Results): string[] {
  const measured = FLOOR_ROWS.flatMap(([key, label]) => {
    const stats = f[key];
    return stats ? [{ key, label, stats }] : [];
  });
  if (measured.length === 0) return f.skipped;
  const out = [
    `Transport floor: empty servers, no database, no querygate code; ${r.sizes.callers} connections, ${r.sizes.smallSeconds} s × ${measured[0]?.stats.reps} rep(s)`,
  ];
  const w = [48, 9, 10, 10];
  out.push(row(["", "req/s", "p50", "p99"], w));
  for (const { label, stats } of measured)
    out.push(row([label, count(stats.perSecond), ms(stats.p50Ms), ms(stats.p99Ms)], w));
  const failing = measured.filter(({ stats }) => stats.errors > 0);
  if (failing.length > 0)
    out.push(`  errors: ${failing.map(({ key, stats }) => `${key} ${stats.errors}`).join("; ")}`);
  out.push("  CPU µs per request, every server of the path (the generator's own in brackets, not counted):");
  for (const { key, stats } of measured)
    out.push(`    ${key.padEnd(11)}${cpuLine(stats.cpuUsPerRequest, 0, stats.tool)}`);
  const sums = f.sums;
  if (sums?.grpc) out.push(`  gRPC path floor: ${floorLine("query-grpc's empty server", sums.grpc)}`);
  if (sums?.bridge)
    out.push(
      `  bridge path floor: ${floorLine("Hono + node:http2 client + query-grpc's server", sums.bridge)}`,
    );
  if (sums?.bridgeGrpcJs)
    out.push(
      `  bridge path floor, grpc-js client: ${floorLine("Hono + grpc-js client + query-grpc's server", sums.bridgeGrpcJs)}`,
    );
  const anyFloor = sums && (sums.grpc ?? sums.bridge ?? sums.bridgeGrpcJs);
  if (anyFloor && anyFloor.postgresUs === undefined)
    out.push("  (no PostgreSQL in the floors: the loadgen phase did not measure pgbench in this run)");
  for (const line of f.skipped) out.push(`  ${line}`);
  return out;
}

/** "grpc-js server 118 + PostgreSQL (pgbench) 97 = 215 µs; issue 12's target 130 µs, for information" */
function floorLine(transport: string, sum: FloorSum): string {
  const postgres = sum.postgresUs === undefined ? "" : ` + PostgreSQL (pgbench) ${sum.postgresUs.toFixed(0)}`;
  return `${transport} ${sum.transportUs.toFixed(0)}${postgres} = ${sum.totalUs.toFixed(0)} µs; issue 12's target ${sum.targetUs} µs, for information`;
}

/** "≤ 130 FAIL": the goal and verdict, for a line that already shows the value. */
function goal(t: Target | undefined): string {
  return t ? `${t.goal} ${t.pass ? "PASS" : "FAIL"}` : "";
}

function passFail(t: Target | undefined): string {
  return t ? (t.pass ? "PASS" : "FAIL") : "-";
}

/** "query-grpc 198 + postgres 114 = 312 (client 119)": the total is the servers' alone. */
function cpuLine(cpu: Record<string, number> | undefined, digits: number, clientName = "client"): string {
  if (!cpu) return "-";
  const servers = Object.entries(cpu).filter(([name]) => name !== "client");
  const parts = servers.map(([name, value]) => `${name} ${value.toFixed(digits)}`);
  const client = cpu.client === undefined ? "" : ` (${clientName} ${cpu.client.toFixed(digits)})`;
  return `${parts.join(" + ")} = ${serversCpu(cpu).toFixed(digits)}${client}`;
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

function ms(n: number | undefined): string {
  return n === undefined || n < 0 ? "-" : `${n < 10 ? n.toFixed(2) : n.toFixed(1)} ms`;
}

function mb(n: number | undefined): string {
  return n === undefined ? "" : `${n.toFixed(0)} MiB`;
}
