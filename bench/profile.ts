// Summarises a V8 .cpuprofile (node --cpu-prof): the functions that spent
// the most time themselves (self time), as a share of the busy time (idle
// excluded). Also runnable on its own: node --import tsx bench/profile.ts FILE...
import { readFileSync } from "node:fs";
import { relative } from "node:path";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface SelfTime {
  name: string;
  where: string;
  ms: number;
  share: number;
}

export function topSelfTime(file: string, count = 15): { busyMs: number; top: SelfTime[] } {
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byNode = new Map(profile.nodes.map((n) => [n.id, n]));
  const totals = new Map<string, SelfTime>();
  let busyUs = 0;
  profile.samples.forEach((id, i) => {
    const frame = byNode.get(id)?.callFrame;
    const us = profile.timeDeltas[i] ?? 0;
    if (!frame || frame.functionName === "(idle)") return;
    busyUs += us;
    const where = frame.url ? `${shortUrl(frame.url)}:${frame.lineNumber + 1}` : "";
    const key = `${frame.functionName}@${where}`;
    const entry = totals.get(key) ?? { name: frame.functionName || "(anonymous)", where, ms: 0, share: 0 };
    entry.ms += us / 1000;
    totals.set(key, entry);
  });
  const top = [...totals.values()].sort((a, b) => b.ms - a.ms).slice(0, count);
  for (const entry of top) entry.share = busyUs > 0 ? entry.ms / (busyUs / 1000) : 0;
  return { busyMs: busyUs / 1000, top };
}

function shortUrl(url: string): string {
  const path = url.replace(/^file:\/\//, "");
  const modules = path.lastIndexOf("node_modules/");
  if (modules >= 0) return path.slice(modules + "node_modules/".length);
  return path.startsWith("/") ? relative(process.cwd(), path) : path;
}

export function formatProfile(file: string, count = 15): string {
  const { busyMs, top } = topSelfTime(file, count);
  const lines = [`${relative(process.cwd(), file)}: ${(busyMs / 1000).toFixed(1)} s busy; top self time:`];
  for (const entry of top) {
    lines.push(
      `  ${(entry.share * 100).toFixed(1).padStart(5)}%  ${entry.ms.toFixed(0).padStart(7)} ms  ${entry.name}  ${entry.where}`,
    );
  }
  return lines.join("\n");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const file of process.argv.slice(2)) console.log(formatProfile(file));
}
