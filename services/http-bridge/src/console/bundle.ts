// Turns the console's browser sources (page/: TypeScript, CSS, one HTML file)
// into the three files the bridge serves. `npm run build` writes them next to
// the compiled bridge; a bridge run from source (tests, tsx) calls this in
// process instead. esbuild is a devDependency: only those two paths load this
// module, never a built bridge, so production needs nothing but node_modules'
// runtime dependencies.
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

export interface ConsoleFile {
  name: string;
  body: Uint8Array;
}

const PAGE = new URL("./page/", import.meta.url);

export async function bundleConsole(): Promise<ConsoleFile[]> {
  const result = await build({
    entryPoints: ["main.ts", "console.css"].map((name) => fileURLToPath(new URL(name, PAGE))),
    bundle: true,
    minify: true,
    format: "esm",
    target: "es2022",
    write: false,
    outdir: "/out",
    entryNames: "console",
    legalComments: "none",
    logLevel: "silent",
  });
  const files: ConsoleFile[] = [{ name: "index.html", body: await readFile(new URL("index.html", PAGE)) }];
  for (const output of result.outputFiles) {
    files.push({ name: output.path.slice(output.path.lastIndexOf("/") + 1), body: output.contents });
  }
  return files;
}
