// `npm run build`'s second step (after tsc): bundles the browser console into
// dist/, beside the compiled bridge, which serves those files as they are.
// Runs from source (tsx) because it needs esbuild, a devDependency.
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { BUILT_DIR, CONSOLE_FILE_NAMES } from "../services/http-bridge/src/console/assets.js";
import { bundleConsole } from "../services/http-bridge/src/console/bundle.js";

const out = fileURLToPath(new URL(`../dist/services/http-bridge/src/console/${BUILT_DIR}/`, import.meta.url));
const files = await bundleConsole();
const missing = CONSOLE_FILE_NAMES.filter((name) => !files.some((f) => f.name === name));
if (missing.length > 0) throw new Error(`console bundle lacks ${missing.join(", ")}`);
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
let bytes = 0;
for (const { name, body } of files) {
  writeFileSync(`${out}${name}`, body);
  bytes += body.byteLength;
}
console.log(
  `console: ${files.map((f) => `${f.name} ${f.body.byteLength} B`).join(", ")} (${bytes} B) in ${out}`,
);
