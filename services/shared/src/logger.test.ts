// The log output: lines are buffered, yet reach the output within a few
// flush intervals, and an idle process makes no writes at all.
import fs, { mkdtempSync, openSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { bufferedOutput } from "./logger.js";

const t = suite("log output");

/** Counts the writes sonic-boom sends to `fd` while `during` runs. */
async function writesTo(fd: number, during: () => Promise<void>): Promise<number> {
  const original = fs.write;
  let count = 0;
  fs.write = ((target: number, ...rest: unknown[]) => {
    if (target === fd) count++;
    return (original as (...args: unknown[]) => void)(target, ...rest);
  }) as typeof fs.write;
  try {
    await during();
  } finally {
    fs.write = original;
  }
  return count;
}

async function until(check: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!check() && Date.now() < end) await sleep(20);
}

t("a line shorter than the 4 KiB block is written within a few flush intervals", async () => {
  const file = join(mkdtempSync(join(tmpdir(), "qg-log-")), "out.log");
  const fd = openSync(file, "w");
  const output = bufferedOutput(fd);
  output.write('{"msg":"one line"}\n');
  assert.is(readFileSync(file, "utf8"), "", "buffered, not written at once");
  await until(() => readFileSync(file, "utf8") !== "", 2000);
  assert.is(readFileSync(file, "utf8"), '{"msg":"one line"}\n');
});

t("an idle output makes no writes once its lines are out", async () => {
  const file = join(mkdtempSync(join(tmpdir(), "qg-log-")), "out.log");
  const fd = openSync(file, "w");
  const output = bufferedOutput(fd);
  const writes = await writesTo(fd, async () => {
    output.write('{"msg":"before idling"}\n');
    await until(() => readFileSync(file, "utf8") !== "", 2000);
    // Five flush intervals with nothing to write.
    await sleep(1000);
  });
  assert.is(readFileSync(file, "utf8"), '{"msg":"before idling"}\n');
  assert.is(writes, 1, "one write for the line, none while idle");
});

t.run();
