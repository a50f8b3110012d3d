// The import graph of a service's source: which of its files import which,
// so a test can hold the layout to its rule (imports flow one way, no circles).
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

export type ImportGraph = Map<string, string[]>;

/** Every non-test .ts file under `root`, with the files under `root` it imports (paths relative to root). */
export function importGraph(root: string): ImportGraph {
  const graph: ImportGraph = new Map();
  for (const file of sourceFiles(root)) {
    const text = readFileSync(join(root, file), "utf8");
    const targets: string[] = [];
    for (const match of text.matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g)) {
      const target = relative(
        root,
        resolve(dirname(join(root, file)), (match[1] ?? "").replace(/\.js$/, ".ts")),
      );
      if (!target.startsWith("..")) targets.push(target);
    }
    graph.set(file, targets);
  }
  return graph;
}

function sourceFiles(root: string, under = ""): string[] {
  const files: string[] = [];
  for (const name of readdirSync(join(root, under))) {
    const path = join(under, name);
    if (statSync(join(root, path)).isDirectory()) files.push(...sourceFiles(root, path));
    else if (name.endsWith(".ts") && !name.endsWith(".test.ts")) files.push(path);
  }
  return files;
}

/** Each import circle once, as the files along it. */
export function circles(graph: ImportGraph): string[][] {
  const found: string[][] = [];
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (file: string) => {
    state.set(file, "open");
    stack.push(file);
    for (const next of graph.get(file) ?? []) {
      if (state.get(next) === "open") found.push(stack.slice(stack.indexOf(next)));
      else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(file, "done");
  };
  for (const file of [...graph.keys()].sort()) if (!state.has(file)) visit(file);
  return found;
}

/** Imports from one folder to another, as "from -> to" of the folders ("." for the top). */
export function folderEdges(graph: ImportGraph): Set<string> {
  const edges = new Set<string>();
  for (const [file, targets] of graph) {
    for (const target of targets) {
      const from = dirname(file);
      const to = dirname(target);
      if (from !== to) edges.add(`${from} -> ${to}`);
    }
  }
  return edges;
}
