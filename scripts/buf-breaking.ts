// Fails when the .proto files break wire or source compatibility with what is
// committed on main. Skipped (with a message) while main has no proto module yet.
import { execFileSync } from "node:child_process";

function onMain(path: string): boolean {
  try {
    execFileSync("git", ["cat-file", "-e", `main:${path}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

if (!onMain("proto/buf.yaml")) {
  console.log("buf breaking: main has no proto/buf.yaml yet, nothing to compare against");
} else {
  execFileSync("node_modules/.bin/buf", ["breaking", "proto", "--against", ".git#branch=main,subdir=proto"], {
    stdio: "inherit",
  });
  console.log("buf breaking: no breaking change against main");
}
