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

t("a short text value encodes exactly as JSON.stringify would, whatever its characters", () => {
  const text = encoderFor(25);
  const values = [
    "",
    "plain",
    "2024-01-01 12:34:56+00",
    'a "quote"',
    "back\\slash",
    "tab\there",
    "\u007f del",
  ];
  // Every code unit below 0x80 and the edges of the surrogate range, alone and inside text.
  for (let unit = 0; unit < 0x80; unit++)
    values.push(String.fromCharCode(unit), `a${String.fromCharCode(unit)}b`);
  values.push("\u2028", "é", "\ud83d\ude00", "\ud800", "x\udfff", "\ud7ff\ue000", "\ufeff");
  for (const value of values) assert.is(text(value), JSON.stringify(value), JSON.stringify(value));
});

t.run();
