// CI guard: regenerating proto/gen from the .proto files must change nothing,
// so the committed generated code always matches the schema.
import { execFileSync } from "node:child_process";

execFileSync("node", ["--import", "tsx", "scripts/gen.ts"], { stdio: "inherit" });
const diff = execFileSync("git", ["status", "--porcelain", "--", "proto/gen"], { encoding: "utf8" });
if (diff.trim()) {
  console.error(`proto/gen is out of date with proto/*.proto; run \`npm run gen\` and commit:\n${diff}`);
  process.exit(1);
}
console.log("proto/gen matches the .proto files");
