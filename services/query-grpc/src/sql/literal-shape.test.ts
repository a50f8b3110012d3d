import { suite } from "uvu";
import * as assert from "uvu/assert";
import { literalShape } from "./literal-shape.js";

const t = suite("literal shape (the parse cache's key for literal variants)");

t("the same statement with other numbers or strings has one shape", () => {
  const shape = literalShape("select id, label from bench_lookup where id = 41");
  assert.ok(shape);
  assert.is(literalShape("select id, label from bench_lookup where id = 99731"), shape);
  assert.is(literalShape("select id, label from bench_lookup where id = 2.5"), shape);
  const named = literalShape("select * from t where name = 'alice' and n > 3");
  assert.ok(named);
  assert.is(literalShape("select * from t where name = 'bob''s' and n > 12"), named);
});

t("identifiers, quoted identifiers and parameters are kept as they are", () => {
  assert.not.equal(
    literalShape("select c1 from t1 where id = 1"),
    literalShape("select c2 from t1 where id = 1"),
  );
  assert.not.equal(
    literalShape('select "col 1" from t where id = 1'),
    literalShape('select "col 2" from t where id = 1'),
  );
  assert.not.equal(literalShape("select $1::int + 1"), literalShape("select $2::int + 1"));
  assert.is(literalShape("select $1::int + 7"), literalShape("select $1::int + 8"));
});

t("statements whose classification reads a literal get no shape", () => {
  assert.is(literalShape("select set_config('role', 'x', true)"), undefined);
  assert.is(literalShape("select SET_CONFIG('search_path', 'x', false)"), undefined);
  assert.is(literalShape("explain (analyze 0) select 1"), undefined);
  assert.is(literalShape("EXPLAIN (ANALYZE false) select 1"), undefined);
});

t("anything the scanner cannot lex exactly as PostgreSQL does gets no shape", () => {
  for (const sql of [
    "select 1 -- a comment",
    "select 1 /* a comment */",
    "select $$dollar 1$$",
    "select $tag$x 1$tag$",
    "select E'\\x41', 1",
    "select U&'\\0041', 1",
    'select U&"\\0061" from t where id = 1',
    "select B'101', 1",
    "select X'ff', 1",
    "select N'x', 1",
    "select 'a\\' , 1",
    "select 1e5",
    "select 0x1F",
    "select 1_000",
    "select 'unterminated",
    'select "unterminated',
    "select 'a\u0000b', 1",
  ]) {
    assert.is(literalShape(sql), undefined, sql);
  }
});

t("a statement without literals needs no shape (its text is its key)", () => {
  assert.is(literalShape("select id from t where id = $1"), undefined);
});

t.run();
