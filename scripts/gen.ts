// Regenerates everything under proto/gen from the .proto files: the ts-proto
// TypeScript that both services import, and the binary descriptor set that
// query-grpc serves through gRPC server reflection. Never edit proto/gen by hand.
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const buf = join(root, "node_modules", ".bin", "buf");
const proto = join(root, "proto");

rmSync(join(proto, "gen"), { recursive: true, force: true });
execFileSync(buf, ["generate", "--template", "buf.gen.yaml"], { cwd: proto, stdio: "inherit" });
// Imports are included on purpose: reflection clients resolve dependencies recursively.
execFileSync(buf, ["build", "-o", join("gen", "descriptor-set.binpb")], { cwd: proto, stdio: "inherit" });
