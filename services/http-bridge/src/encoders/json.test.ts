// The codec's own promises, value by value; app.test.ts checks whole rows end to end.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { encoderFor } from "./json.js";

const t = suite("http-bridge json-codec");

t("a text value over 1 MiB encodes exactly as JSON.stringify would, escaped or not", () => {
  const text = encoderFor(25);
  const mib = 1024 * 1024;
  for (const value of [
    "x".repeat(mib),
    `${"x".repeat(mib)}"quoted"`,
    `${"é".repeat(mib)}\\`,
    `${"y".repeat(mib)}\n\u0001`,
    `${"z".repeat(mib)}\ud83d\ude00`,
    `${"z".repeat(mib)}\ud800`,
  ]) {
    assert.is(text(value), JSON.stringify(value), value.slice(-12));
  }
});

t.run();
