// The text-form parsers behind the Arrow encoder, value by value, including
// forms the end-to-end test does not reach (odd offsets, long decimals).
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { dateDays, INT64_MIN, timestampMicros, writeDecimal128 } from "./arrow-values.js";
import { EncodeError } from "./streamed-format.js";

const t = suite("http-bridge arrow-values");

function decimal(text: string, scale: number): bigint {
  const words = new Uint32Array(8).fill(0xdeadbeef);
  writeDecimal128(text, scale, words, 1);
  let value = 0n;
  for (let w = 7; w >= 4; w--) value = (value << 32n) | BigInt(words[w]!);
  return BigInt.asIntN(128, value);
}

t("decimals keep every digit, short and long, positive and negative", () => {
  assert.is(decimal("0", 0), 0n);
  assert.is(decimal("-1", 2), -100n);
  assert.is(decimal("-0.01", 2), -1n);
  assert.is(decimal("123456789012345", 0), 123456789012345n);
  assert.is(decimal("-4294967296.5", 1), -42949672965n);
  assert.is(decimal("99999999999999999999999999999999999999", 0), 10n ** 38n - 1n);
  assert.is(decimal("-1234567890123456789.0123456789", 10), -12345678901234567890123456789n);
});

t("NaN and Infinity are no Decimal128 and say so", () => {
  for (const text of ["NaN", "Infinity", "-Infinity"]) {
    assert.throws(
      () => decimal(text, 2),
      (e: unknown) => e instanceof EncodeError,
      text,
    );
  }
});

t("timestamps honour offsets with minutes and seconds, and both ends of the range", () => {
  assert.is(timestampMicros("1970-01-01 00:00:00"), 0n);
  assert.is(timestampMicros("1970-01-01 05:30:00+05:30"), 0n);
  assert.is(timestampMicros("1969-12-31 23:59:59.999999"), -1n);
  assert.is(timestampMicros("1970-01-01 00:00:00-00:00:15"), 15_000_000n);
  assert.is(timestampMicros("4714-11-24 00:00:00+00 BC"), -210866803200000000n);
  assert.is(timestampMicros("-infinity"), INT64_MIN);
  assert.throws(
    () => timestampMicros("Thu Feb 29 13:14:15 2024"),
    (e: unknown) => e instanceof EncodeError,
  );
});

t("dates count days from 1970 for years before 1 AD and after 9999", () => {
  assert.is(dateDays("1970-01-01"), 0);
  assert.is(dateDays("0001-01-01 BC"), -719528);
  assert.is(dateDays("10000-01-01"), 2932897);
});

t.run();
