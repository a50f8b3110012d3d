// CSV must be what PostgreSQL's own COPY ... (FORMAT csv, HEADER) writes for
// the same result, byte for byte: the corpus below runs both ways against the
// same embedded PostgreSQL and compares the bytes.
import type pg from "pg";
import { to as copyTo } from "pg-copy-streams";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { adminClient, startStack } from "../../../../test/helpers.js";
import { postRaw } from "../../../../test/http-raw.js";
import { csvEncoder } from "./csv.js";

const t = suite("http-bridge csv");
let url: string;
let admin: pg.Client;

t.before(async () => {
  url = (await startStack()).url;
  admin = await adminClient();
  await admin.query(`
    drop type if exists csv_mood cascade;
    drop type if exists csv_pair cascade;
    create type csv_mood as enum ('sad', 'happy, really');
    create type csv_pair as (n int, label text);
  `);
});

async function copyCsv(query: string): Promise<Buffer> {
  const stream = admin.query(copyTo(`COPY (${query}) TO STDOUT WITH (FORMAT csv, HEADER)`));
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function bridgeCsv(query: string) {
  const response = await postRaw(url, { query }, { accept: "text/csv" });
  assert.is(response.status, 200, response.body.toString());
  assert.match(String(response.headers["content-type"]), /^text\/csv/);
  return response;
}

/** Rows that hit every quoting rule, in every common type; one statement so COPY can run it too. */
const CORPUS = `
  select * from (values
    (1::int2, 2147483647::int4, 9223372036854775807::int8, 12345678901234567890.000000000001::numeric,
     'NaN'::numeric, 1.5::float4, 'Infinity'::float8, '-Infinity'::float4, 0.1::float8,
     'plain'::text, 'a,b'::text, 'say "hi"'::text, E'two\\nlines'::text, E'cr\\rhere'::text, ''::text,
     null::text, '\\.'::text, ' lead and trail '::text, 'NULL'::text, E'back\\\\slash'::text, 'é ünï 😀'::text,
     '\\x00ff2c22'::bytea, true, '2024-02-29'::date, '13:14:15.123456'::time,
     '2024-02-29 13:14:15.123456+02'::timestamptz, '1 year 2 mons 3 days 04:05:06.789'::interval,
     'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, E'{"a": "x,y",\\n "b": [1.10, 2]}'::json,
     '{"q": "say \\"hi\\"", "n": null}'::jsonb, array[1, null, 3]::int4[],
     array['x', null, 'NULL', 'q"z', 'c,d', '']::text[], array[[1.5, 2], [3, 4]]::numeric[],
     row(1, 'x, "y"')::csv_pair, 'happy, really'::csv_mood, 'infinity'::timestamptz, '-infinity'::date),
    (null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null,
     null, null, null, null, null, false, null, null, null, null, null, null, null, null, null, null,
     null, 'sad', null, null)
  ) as v(i2, i4, i8, num, num_nan, f4, f8_inf, f4_ninf, f8, plain, comma, quote, newline, cr, empty,
         nothing, backslash_dot, spaces, null_word, backslash, unicode, bin, b, d, tm, tstz, iv, id, j,
         jb, ia, ta, na, pair, mood, tstz_inf, d_ninf)`;

t("the type corpus as CSV is byte-identical to PostgreSQL's COPY ... (FORMAT csv, HEADER)", async () => {
  const expected = await copyCsv(CORPUS);
  const { body } = await bridgeCsv(CORPUS);
  assert.is(body.toString("utf8"), expected.toString("utf8"));
  assert.ok(body.equals(expected), "the bytes match, not only the decoded text");
});

t(
  "header names that need quoting, and a lone \\. in a one-column result, are quoted as COPY quotes them",
  async () => {
    for (const query of [
      `select 1 as "a,b", 2 as "say ""x""", 3 as "two
lines", '\\.' as "\\."`,
      `select '\\.' as "\\."`,
      `select v from (values ('\\.'), (''), (null), ('x')) t(v)`,
      "select 1 as one where false",
      "select g, repeat('x,', g % 7) as r from generate_series(1, 5000) g",
    ]) {
      const expected = await copyCsv(query);
      const { body } = await bridgeCsv(query);
      assert.is(body.toString("utf8"), expected.toString("utf8"), query);
    }
  },
);

t("the encoder quotes exactly the values COPY quotes", () => {
  const two = csvEncoder([{ name: "a" }, { name: "b" }]);
  assert.is(two.header(), "a,b\n");
  assert.is(two.row(["", "x"], []), `"",x\n`);
  assert.is(two.row(["", ""], [0, 1]), ",\n");
  assert.is(two.row(['q"z', "c,d"], []), `"q""z","c,d"\n`);
  assert.is(two.row(["a\rb", "a\nb"], []), `"a\rb","a\nb"\n`);
  assert.is(two.row(["\\.", " x "], []), "\\., x \n", "\\. is quoted only when it is a line's only field");
  const one = csvEncoder([{ name: "v" }]);
  assert.is(one.row(["\\."], []), `"\\."\n`);
  assert.is(one.row(["\\.x"], []), "\\.x\n");
});

t.run();
