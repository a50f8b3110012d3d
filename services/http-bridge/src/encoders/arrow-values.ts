// PostgreSQL text forms → the numbers Arrow stores, for the types arrow.ts
// maps to something other than Utf8. The texts are what PostgreSQL prints
// with its defaults (DateStyle ISO, bytea_output hex), which is what
// query-grpc streams; a text that does not parse is an EncodeError, so a
// stream is cut rather than given a wrong value.
//
// Both infinities, which Arrow has no word for, become the extremes of the
// storage type, as PostgreSQL stores them: ±infinity dates are the int32
// limits, ±infinity timestamps the int64 limits.
import { EncodeError } from "./streamed-format.js";

export const INT64_MAX = 2n ** 63n - 1n;
export const INT64_MIN = -(2n ** 63n);
const INT32_MAX = 2 ** 31 - 1;
const INT32_MIN = -(2 ** 31);

/** Days between 1970-01-01 and a proleptic Gregorian date (year 0 = 1 BC), for any year. */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yearOfEra = y - era * 400;
  const dayOfYear = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const dayOfEra = yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) + dayOfYear;
  return era * 146097 + dayOfEra - 719468;
}

/** PostgreSQL writes year N BC as "N BC"; the proleptic calendar counts it as 1 - N. */
function yearOf(digits: string, bc: string | undefined): number {
  const year = Number(digits);
  return bc ? 1 - year : year;
}

const DATE = /^(\d{4,})-(\d\d)-(\d\d)( BC)?$/;

/** `2024-02-29`, `0044-03-15 BC`, `infinity` → days since 1970-01-01. */
export function dateDays(text: string): number {
  const m = DATE.exec(text);
  if (m) return daysFromCivil(yearOf(m[1]!, m[4]), Number(m[2]), Number(m[3]));
  if (text === "infinity") return INT32_MAX;
  if (text === "-infinity") return INT32_MIN;
  throw new EncodeError(`not an ISO date: ${JSON.stringify(text)}`);
}

const TIMESTAMP =
  /^(\d{4,})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(?:([+-])(\d\d)(?::(\d\d))?(?::(\d\d))?)?( BC)?$/;

/**
 * `2024-02-29 13:14:15.123456+02`, `… BC`, `infinity` → microseconds since
 * 1970-01-01 UTC (a timestamp without time zone counts its wall clock as UTC,
 * as Arrow's zone-less timestamps do).
 */
export function timestampMicros(text: string): bigint {
  const m = TIMESTAMP.exec(text);
  if (!m) {
    if (text === "infinity") return INT64_MAX;
    if (text === "-infinity") return INT64_MIN;
    throw new EncodeError(`not an ISO timestamp: ${JSON.stringify(text)}`);
  }
  const days = daysFromCivil(yearOf(m[1]!, m[12]), Number(m[2]), Number(m[3]));
  let seconds = days * 86_400 + Number(m[4]) * 3600 + Number(m[5]) * 60 + Number(m[6]);
  if (m[8]) {
    const offset = Number(m[9]) * 3600 + Number(m[10] ?? 0) * 60 + Number(m[11] ?? 0);
    seconds -= m[8] === "-" ? -offset : offset;
  }
  const fraction = m[7] ? Number(m[7].padEnd(6, "0")) : 0;
  return BigInt(seconds) * 1_000_000n + BigInt(fraction);
}

const NUMERIC = /^(-?)(\d+)(?:\.(\d+))?$/;
const TWO_32 = 2 ** 32;

/**
 * Writes a numeric's text as a Decimal128 of `scale` into `words` (four
 * little-endian 32-bit words per value, two's complement) at `index`.
 * NaN and ±Infinity have no Decimal128 form: an EncodeError.
 */
export function writeDecimal128(text: string, scale: number, words: Uint32Array, index: number): void {
  const m = NUMERIC.exec(text);
  if (!m) throw new EncodeError(`numeric ${text} has no Decimal128 form; cast the column to text`);
  const fraction = m[3] ?? "";
  if (fraction.length > scale) throw new EncodeError(`numeric ${text} has more than ${scale} decimals`);
  const digits = m[2]! + fraction.padEnd(scale, "0");
  const at = index * 4;
  if (digits.length <= 15) {
    // Safe as a double: split without BigInt, the common case by far.
    const n = m[1] ? -Number(digits) : Number(digits);
    const high = Math.floor(n / TWO_32);
    words[at] = n - high * TWO_32;
    words[at + 1] = high >>> 0;
    words[at + 2] = words[at + 3] = n < 0 ? 0xffffffff : 0;
    return;
  }
  let value = BigInt.asUintN(128, BigInt(m[1] + digits));
  for (let w = 0; w < 4; w++) {
    words[at + w] = Number(value & 0xffffffffn);
    value >>= 32n;
  }
}

/** bytea's hex text (`\x00ff`) → the bytes, written into `into` at `offset`; returns the byte count. */
export function writeBytea(text: string, into: Buffer, offset: number): number {
  if (!text.startsWith("\\x") || text.length % 2 !== 0)
    throw new EncodeError("bytea is not in hex form (bytea_output must be hex)");
  const written = into.write(text.slice(2), offset, "hex");
  if (written !== byteaLength(text)) throw new EncodeError("bytea's hex text holds a non-hex digit");
  return written;
}

/** The byte length writeBytea will need. */
export function byteaLength(text: string): number {
  return (text.length - 2) / 2;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A uuid's text → its 16 bytes, written into `into` at `offset`. */
export function writeUuid(text: string, into: Buffer, offset: number): void {
  if (!UUID.test(text)) throw new EncodeError(`not a uuid: ${JSON.stringify(text)}`);
  into.write(text.replace(/-/g, ""), offset, "hex");
}
