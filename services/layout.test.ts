// The folders of each service are its pipeline, read top to bottom: a file
// imports only from its own folder, from a folder later in the pipeline, or
// from the few shared files at the top (configuration, errors, metrics). So
// there is no import circle, and a folder's name says what depends on it.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { circles, folderEdges, importGraph } from "../test/imports.js";

const t = suite("service layout");

const PIPELINES: Record<string, { order: string[]; shared: string[] }> = {
  "services/query-grpc/src": {
    // main.ts starts the server; grpc/ serves calls to rpc/ handlers, which
    // authenticate, classify and run them on PostgreSQL, and encode the results.
    order: [".", "grpc", "rpc", "auth", "sql", "postgres", "results"],
    shared: ["config.ts", "errors.ts", "metrics.ts", "statement-kinds.ts"],
  },
  "services/http-bridge/src": {
    order: [".", "routes", "request", "encoders", "upstream"],
    shared: ["config.ts", "errors.ts", "metrics.ts"],
  },
};

for (const [root, { order, shared }] of Object.entries(PIPELINES)) {
  t(`${root} has no import circle`, () => {
    assert.equal(circles(importGraph(root)), []);
  });

  t(`${root} imports flow one way along its pipeline`, () => {
    const graph = importGraph(root);
    const wrong: string[] = [];
    for (const [file, targets] of graph) {
      const from = file.includes("/") ? file.slice(0, file.indexOf("/")) : ".";
      const fromShared = from === "." && shared.includes(file);
      for (const target of targets) {
        const to = target.includes("/") ? target.slice(0, target.indexOf("/")) : ".";
        if (to === "." && shared.includes(target)) {
          continue; // everyone may use the shared files
        }
        if (fromShared) wrong.push(`${file} -> ${target} (shared files import nothing of the pipeline)`);
        else if (!order.includes(to)) wrong.push(`${file} -> ${target} (folder not in the pipeline)`);
        else if (from !== to && order.indexOf(to) < order.indexOf(from)) wrong.push(`${file} -> ${target}`);
      }
    }
    assert.equal(wrong, []);
  });

  t(`${root} has every source folder in its pipeline`, () => {
    const folders = new Set(
      [...importGraph(root).keys()].map((f) => (f.includes("/") ? (f.split("/")[0] as string) : ".")),
    );
    assert.equal(
      [...folders].filter((f) => !order.includes(f)),
      [],
    );
  });
}

t("the import graph sees a circle when there is one", () => {
  const graph = new Map([
    ["a.ts", ["b.ts"]],
    ["b.ts", ["c.ts"]],
    ["c.ts", ["a.ts"]],
  ]);
  assert.equal(circles(graph), [["a.ts", "b.ts", "c.ts"]]);
  assert.ok(folderEdges(new Map([["x/a.ts", ["y/b.ts"]]])).has("x -> y"));
});

t.run();
