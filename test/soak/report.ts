// What the soak prints: a table of the samples (time, memory per process,
// req/s, statuses by class), one sparkline of memory per process, the
// answers by request kind, and an SVG of memory over time under .data/soak/.
import { writeFileSync } from "node:fs";
import { CLASSES, type Tally } from "./load.js";
import { PROCESSES, type Sample } from "./sampler.js";
import type { Check } from "./verdict.js";

const pad = (text: string | number, width: number) => String(text).padStart(width);

/** At most `rows` samples, evenly spread, always with the last. */
function thin(samples: Sample[], rows: number): Sample[] {
  if (samples.length <= rows) return samples;
  const step = samples.length / rows;
  const picked = Array.from({ length: rows - 1 }, (_, i) => samples[Math.floor(i * step)]!);
  return [...picked, samples[samples.length - 1]!];
}

export function sampleTable(samples: Sample[], rows = 16): string {
  const header = `${pad("t s", 5)} ${pad("bridge MB", 10)} ${pad("grpc MB", 8)} ${pad("pg MB", 6)} ${pad("heap b/g", 10)} ${pad("req/s", 6)}  ${CLASSES.map((c) => pad(c, 10)).join("")}  select 1`;
  const lines = thin(samples, rows).map((s) => {
    const heap = `${Number.isNaN(s.heap["http-bridge"]) ? "-" : s.heap["http-bridge"].toFixed(0)}/${Number.isNaN(s.heap["query-grpc"]) ? "-" : s.heap["query-grpc"].toFixed(0)}`;
    return `${pad(s.t.toFixed(0), 5)} ${pad(s.memory["http-bridge"].toFixed(0), 10)} ${pad(s.memory["query-grpc"].toFixed(0), 8)} ${pad(s.memory.postgres.toFixed(0), 6)} ${pad(heap, 10)} ${pad(s.perSecond.toFixed(0), 6)}  ${CLASSES.map((c) => pad(s.classes[c], 10)).join("")}  ${s.canary ? "FAILED" : "ok"}${s.dead.length ? `  DEAD: ${s.dead.join(", ")}` : ""}`;
  });
  return [header, ...lines].join("\n");
}

const BARS = "▁▂▃▄▅▆▇█";

export function sparklines(samples: Sample[]): string {
  return PROCESSES.map((name) => {
    const values = samples.map((s) => s.memory[name]);
    const low = Math.min(...values);
    const high = Math.max(...values);
    const line = values
      .map((v) => BARS[high === low ? 0 : Math.round(((v - low) / (high - low)) * (BARS.length - 1))])
      .join("");
    return `${name.padEnd(12)} ${line}  ${low.toFixed(0)}–${high.toFixed(0)} MB`;
  }).join("\n");
}

export function kindTable(tally: Tally): string {
  const rows = [...tally.byKind].sort(([a], [b]) => a.localeCompare(b));
  const lines = rows.map(([kind, t]) => {
    const labels = [...t.labels]
      .sort((a, b) => b[1] - a[1])
      .map(([l, n]) => `${l} ×${n}`)
      .join(", ");
    const count = [...t.labels.values()].reduce((a, b) => a + b, 0);
    return `  ${kind.padEnd(28)} ${t.expect.padEnd(8)} ${`${(t.totalMs / count).toFixed(0)} ms`.padStart(8)}  ${labels}`;
  });
  // What the unexpected answers said: 5xx anywhere, 4xx or broken connections where the request was fine.
  const examples = rows.flatMap(([kind, t]) =>
    [...t.examples]
      .filter(
        ([label, e]) =>
          (e.statusClass === "5xx" && !(t.expect === "give-up" && label === "DEADLINE_EXCEEDED")) ||
          (t.expect !== "mistake" &&
            !(t.expect === "cancel" && label === "499") &&
            (e.statusClass === "4xx" || e.statusClass === "net-error")),
      )
      .map(([label, e]) => `  ${kind} → ${label}: ${e.text.replace(/\s+/g, " ").slice(0, 160)}`),
  );
  return [
    ...lines,
    ...(examples.length ? ["", "first answer of each unexpected status:", ...examples] : []),
  ].join("\n");
}

export function summary(checks: Check[], headline: string): string {
  const failed = checks.filter((c) => !c.ok);
  const first = `soak ${failed.length ? "FAIL" : "PASS"}: ${failed.length ? `${failed.length} check(s) failed (${failed.map((c) => c.name).join(", ")}); ` : ""}${headline}`;
  const lines = checks.map(
    (c) => `  ${(c.ok ? (c.warn ? "warn" : "ok") : "FAIL").padEnd(4)} ${c.name.padEnd(9)} ${c.line}`,
  );
  return [first, ...lines].join("\n");
}

const COLORS: Record<(typeof PROCESSES)[number], string> = {
  "http-bridge": "#d62728",
  "query-grpc": "#1f77b4",
  postgres: "#2ca02c",
};

/** Memory of each process over time, one line each, as a small standalone SVG. */
export function writeSvg(file: string, samples: Sample[], title: string): void {
  const width = 720;
  const height = 300;
  const margin = { left: 50, right: 130, top: 30, bottom: 30 };
  const maxT = Math.max(1, ...samples.map((s) => s.t));
  const maxMb = Math.max(1, ...samples.flatMap((s) => PROCESSES.map((p) => s.memory[p]))) * 1.1;
  const x = (t: number) => margin.left + (t / maxT) * (width - margin.left - margin.right);
  const y = (mb: number) => height - margin.bottom - (mb / maxMb) * (height - margin.top - margin.bottom);
  const lines = PROCESSES.map((name, i) => {
    const points = samples.map((s) => `${x(s.t).toFixed(1)},${y(s.memory[name]).toFixed(1)}`).join(" ");
    return `<polyline fill="none" stroke="${COLORS[name]}" stroke-width="2" points="${points}"/><text x="${width - margin.right + 10}" y="${margin.top + 20 * i}" fill="${COLORS[name]}">${name}</text>`;
  });
  const ticks = [0, 0.25, 0.5, 0.75, 1].map(
    (f) =>
      `<text x="${margin.left - 8}" y="${y(f * maxMb) + 4}" text-anchor="end">${(f * maxMb).toFixed(0)}</text>` +
      `<line x1="${margin.left}" x2="${width - margin.right}" y1="${y(f * maxMb)}" y2="${y(f * maxMb)}" stroke="#eee"/>`,
  );
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="${margin.left}" y="18">${title} — memory, MB (PostgreSQL: private memory of all its processes)</text>
${ticks.join("\n")}
${lines.join("\n")}
<text x="${x(maxT)}" y="${height - 8}" text-anchor="end">${maxT.toFixed(0)} s</text>
<text x="${margin.left}" y="${height - 8}">0 s</text>
</svg>
`;
  writeFileSync(file, svg);
}
