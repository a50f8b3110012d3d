// The console's files, loaded once on first request and kept in memory (they
// are a few tens of KB). A built bridge reads what `npm run build` wrote into
// public/ beside this module; a bridge run from source has no public/ and
// bundles page/ in process (see bundle.ts).
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
// A type only: erased from the compiled module, so a built bridge never loads bundle.js (nor esbuild).
import type { ConsoleFile } from "./bundle.js";

export interface ConsoleAsset {
  body: Uint8Array;
  type: string;
  etag: string;
}

/** Where `npm run build` puts the bundle, relative to this module's compiled form. */
export const BUILT_DIR = "public";
export const CONSOLE_FILE_NAMES = ["index.html", "console.js", "console.css"] as const;

const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
};

let loading: Promise<Map<string, ConsoleAsset>> | undefined;

/** The console's files by name; a failed load is retried on the next request. */
export function consoleAssets(): Promise<Map<string, ConsoleAsset>> {
  loading ??= load().catch((error: unknown) => {
    loading = undefined;
    throw error;
  });
  return loading;
}

async function load(): Promise<Map<string, ConsoleAsset>> {
  const built = new URL(`./${BUILT_DIR}/`, import.meta.url);
  const files: ConsoleFile[] = existsSync(new URL("index.html", built))
    ? await Promise.all(
        CONSOLE_FILE_NAMES.map(async (name) => ({ name, body: await readFile(new URL(name, built)) })),
      )
    : await (await import("./bundle.js")).bundleConsole();
  const assets = new Map<string, ConsoleAsset>();
  for (const { name, body } of files) {
    const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"`;
    assets.set(name, { body, etag, type: TYPES[name.slice(name.lastIndexOf(".") + 1)] ?? "" });
  }
  return assets;
}
