// Arrow IPC streams from POST /query, read back with apache-arrow's own
// RecordBatchReader: every mapped type arrives as the Arrow type arrow.ts
// promises, with the value PostgreSQL had, down to the microsecond and the
// last decimal digit. (pyarrow would be a second reader, but Debian has no
// python3-pyarrow package, so it is not used.)
import { type Field, RecordBatchReader, type Table, tableFromIPC, type Vector } from "apache-arrow";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { startStack } from "../../../../test/helpers.js";
import { postRaw } from "../../../../test/http-raw.js";

const t = suite("http-bridge arrow");
let url: string;
const ARROW = "application/vnd.apache.arrow.stream";

t.before(async () => {
  url = (await startStack()).url;
});

async function arrow(query: string) {
  const response = await postRaw(url, { query }, { accept: ARROW });
  assert.is(response.status, 200, response.body.toString());
  assert.is(response.headers["content-type"], ARROW);
  assert.ok(response.complete, "the transfer ended normally");
  return response;
}

/** Microseconds since 1970 for a UTC wall-clock time, years BC included (year 0 = 1 BC). */
function micros(year: number, month: number, day: number, h = 0, m = 0, s = 0, us = 0): bigint {
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(h, m, s, 0);
  return BigInt(date.getTime()) * 1000n + BigInt(us);
}

/** A column's raw values across the table's batches, as the typed arrays Arrow stores. */
function raw(table: Table, name: string): unknown[] {
  const vector = table.getChild(name) as Vector;
  return vector.data.flatMap((d) => Array.from(d.values as ArrayLike<unknown>));
}

function decimal128(words: Uint32Array, index: number): bigint {
  let value = 0n;
  for (let w = 3; w >= 0; w--) value = (value << 32n) | BigInt(words[index * 4 + w]!);
  return BigInt.asIntN(128, value);
}

function field(table: Table, name: string): Field {
  return table.schema.fields.find((f) => f.name === name)!;
}

t("every mapped PostgreSQL type arrives as its Arrow type with the exact value", async () => {
  const { body } = await arrow(`select 1::int2 as i2, 2147483647::int4 as i4, 9223372036854775807::int8 as i8,
      (-12345678901234.5678)::numeric(20,4) as num, 12345678901234567890.000000000001::numeric as num_free,
      1.5::float4 as f4, 0.1::float8 as f8, '-Infinity'::float8 as ninf, true as b, 'é,"x"'::text as t,
      'abc'::varchar(10) as vc, '\\x00ff10'::bytea as bin, '2024-02-29'::date as d,
      '2024-02-29 13:14:15.123456+02'::timestamptz as tstz, '2024-02-29 13:14:15.123456'::timestamp as ts,
      'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid as id, '{"a": [1.10, 2]}'::json as j,
      '{"b": 1}'::jsonb as jb, array[1, null, 3]::int4[] as ia, array['x', null, '']::text[] as ta,
      '1 day 02:00'::interval as iv,
      '0044-03-15 BC'::date as d_bc, '0044-03-15 12:00:00.5 BC'::timestamp as ts_bc,
      'infinity'::timestamptz as tstz_inf, '-infinity'::date as d_ninf
    union all
    select null, null, null, null::numeric(20,4), null, null, null, null, null, null, null, null, null, null, null, null, null,
      null, '{}', null, null, null, null, null, null`);
  const table = tableFromIPC(body);
  assert.is(table.numRows, 2);
  const types = Object.fromEntries(table.schema.fields.map((f) => [f.name, String(f.type)]));
  assert.equal(types, {
    i2: "Int16",
    i4: "Int32",
    i8: "Int64",
    num: "Decimal[20e+4]",
    num_free: "Utf8",
    f4: "Float32",
    f8: "Float64",
    ninf: "Float64",
    b: "Bool",
    t: "Utf8",
    vc: "Utf8",
    bin: "Binary",
    d: "Date32<DAY>",
    tstz: "Timestamp<MICROSECOND, UTC>",
    ts: "Timestamp<MICROSECOND>",
    id: "FixedSizeBinary[16]",
    j: "Utf8",
    jb: "Utf8",
    ia: "List<Int32>",
    ta: "List<Utf8>",
    iv: "Utf8",
    d_bc: "Date32<DAY>",
    ts_bc: "Timestamp<MICROSECOND>",
    tstz_inf: "Timestamp<MICROSECOND, UTC>",
    d_ninf: "Date32<DAY>",
  });
  // Row objects would turn the ±infinity timestamps into unsafe millisecond numbers: read by column.
  const first = new Proxy({} as Record<string, unknown>, {
    get: (_, name) => table.getChild(String(name))!.get(0),
  });
  assert.is(first.i2, 1);
  assert.is(first.i4, 2147483647);
  assert.is(first.i8, 9223372036854775807n);
  assert.is(decimal128(table.getChild("num")!.data[0]!.values as Uint32Array, 0), -123456789012345678n);
  assert.is(first.num_free, "12345678901234567890.000000000001");
  assert.is(first.f4, 1.5);
  assert.is(first.f8, 0.1);
  assert.is(first.ninf, Number.NEGATIVE_INFINITY);
  assert.is(first.b, true);
  assert.is(first.t, 'é,"x"');
  assert.is(first.vc, "abc");
  assert.equal(Array.from(first.bin as Uint8Array), [0, 255, 16]);
  assert.is(raw(table, "d")[0], 19782);
  assert.is(raw(table, "tstz")[0], micros(2024, 2, 29, 11, 14, 15, 123456));
  assert.is(raw(table, "ts")[0], micros(2024, 2, 29, 13, 14, 15, 123456));
  assert.is(Buffer.from(first.id as Uint8Array).toString("hex"), "a0eebc999c0b4ef8bb6d6bb9bd380a11");
  assert.is(first.j, '{"a": [1.10, 2]}');
  assert.is(first.jb, '{"b": 1}');
  assert.equal(Array.from(first.ia as Iterable<unknown>), [1, null, 3]);
  assert.equal(Array.from(first.ta as Iterable<unknown>), ["x", null, ""]);
  assert.is(first.iv, "1 day 02:00:00");
  assert.is(raw(table, "d_bc")[0], Number(micros(-43, 3, 15) / 86_400_000_000n));
  assert.is(raw(table, "ts_bc")[0], micros(-43, 3, 15, 12, 0, 0, 500000));
  assert.is(raw(table, "tstz_inf")[0], 2n ** 63n - 1n);
  assert.is(raw(table, "d_ninf")[0], -(2 ** 31));

  for (const name of Object.keys(types)) {
    if (name !== "ia") assert.not.ok(table.getChild(name)!.isValid(1), `${name} is null in the second row`);
  }
  const empty = table.getChild("ia")!.get(1);
  assert.equal(Array.from(empty as Iterable<unknown>), [], "an empty array is an empty list, not null");
});

t("fields carry the PostgreSQL type, and uuid and json the Arrow canonical extension names", async () => {
  const { body } = await arrow(
    `select 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid as id, '{}'::jsonb as jb, '1 day'::interval as iv,
      1.5::numeric(5,1) as n`,
  );
  const table = tableFromIPC(body);
  assert.is(field(table, "id").metadata.get("ARROW:extension:name"), "arrow.uuid");
  assert.is(field(table, "jb").metadata.get("ARROW:extension:name"), "arrow.json");
  assert.is(field(table, "jb").metadata.get("postgresql.type"), "jsonb");
  assert.is(field(table, "iv").metadata.get("postgresql.type"), "interval");
  assert.is(field(table, "n").metadata.get("postgresql.type_oid"), "1700");
});

t("a 100,000-row result arrives as several record batches, every row in order", async () => {
  const { body, trailers } = await arrow("select g, g::text as s from generate_series(1, 100000) g");
  const reader = RecordBatchReader.from(body);
  let batches = 0;
  let expected = 1;
  for (const batch of reader) {
    batches++;
    const g = batch.getChild("g")!.data[0]!.values as Int32Array;
    for (let i = 0; i < batch.numRows; i++, expected++) {
      if (g[i] !== expected || batch.getChild("s")!.get(i) !== String(expected))
        assert.unreachable(`row ${expected} is ${g[i]}`);
    }
  }
  assert.is(expected - 1, 100_000);
  assert.ok(batches > 1, `${batches} record batches`);
  assert.is(trailers["querygate-row-count"], "100000");
});

t("a statement without rows is a schema with no fields and no batches", async () => {
  const { body, trailers } = await arrow("create temporary table arrow_none (id int)");
  const table = tableFromIPC(body);
  assert.is(table.schema.fields.length, 0);
  assert.is(table.numRows, 0);
  assert.is(trailers["querygate-command"], "CREATE TABLE");
});

t.run();
