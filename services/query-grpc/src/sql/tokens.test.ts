import { loadModule, scanSync } from "libpg-query";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { countTokens } from "./tokens.js";

const t = suite("token budget (what a statement costs the parser)");
const ALL = Number.POSITIVE_INFINITY;

t.before(async () => {
  await loadModule();
});

/** PostgreSQL's own scanner (libpg-query's scan), or undefined where it rejects the text. */
function scannerTokens(sql: string): number | undefined {
  try {
    return (scanSync(sql) as { tokens?: unknown[] }).tokens?.length ?? 0;
  } catch {
    return undefined;
  }
}

const FRAGMENTS = [
  "select",
  " ",
  "\n",
  "1",
  ",",
  "+",
  "'",
  "''",
  "\\",
  "e",
  "E",
  "x",
  "$",
  "$1",
  "$a$",
  "$$",
  "a$",
  '"',
  '""',
  "--",
  "/*",
  "*/",
  "(",
  ")",
  "U&",
  "b",
  "1.5e3",
  "é",
  "\t",
  "::",
  "-",
  "*",
  "/",
  "e''",
  "\n'",
  "\\' '",
  "E'\\'",
];

t(
  "no arrangement of quotes, dollar quotes, escapes and comments counts fewer tokens than PostgreSQL's scanner",
  () => {
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    let compared = 0;
    for (let round = 0; round < 20_000; round++) {
      let sql = "";
      const length = 1 + Math.floor(random() * 24);
      for (let i = 0; i < length; i++) sql += FRAGMENTS[Math.floor(random() * FRAGMENTS.length)];
      const scanned = scannerTokens(sql);
      if (scanned === undefined) continue;
      compared++;
      const counted = countTokens(sql, ALL);
      assert.ok(counted >= scanned, `${JSON.stringify(sql)}: counted ${counted}, the scanner saw ${scanned}`);
    }
    assert.ok(compared > 5000, `only ${compared} texts the scanner accepted`);
  },
);

t("a literal, a quoted identifier and a comment count as one token whatever their length", () => {
  const long = "x".repeat(100_000);
  assert.is(countTokens(`select '${long}'`, ALL), 2);
  assert.is(countTokens(`select "${long}"`, ALL), 2);
  assert.is(countTokens(`select $body$ ${long}, 1, 1 $body$`, ALL), 2);
  assert.is(countTokens(`select 1 -- ${long}, 1, 1`, ALL), 3);
  assert.is(countTokens(`select /* ${long} /* nested */ , 1, 1 */ 1`, ALL), 3);
  assert.is(countTokens(`select E'${long}\\', 1, 1'`, ALL), 2);
});

t("text that only looks like the start of a literal cannot hide code from the count", () => {
  const code = `${"1,".repeat(1000)}1`;
  // In a plain string a backslash is a character: the quote after it ends the string.
  assert.ok(countTokens(`select '\\', ${code}, 'x'`, ALL) > 2000);
  // e' opens an E'' string only as a token of its own, not at the end of an identifier.
  assert.ok(countTokens(`select somee'\\', ${code}, 'x'`, ALL) > 2000);
  // A $ inside an identifier is part of it, not a dollar quote.
  assert.ok(countTokens(`select a$q$ ${code} $q$`, ALL) > 2000);
  // $1 is a parameter, not a dollar quote.
  assert.ok(countTokens(`select $1, ${code}, $1`, ALL) > 2000);
  // A quote after a newline continues an E'' string, where \' does not close it (found by a hostile review).
  assert.ok(countTokens(`select e''\n'\\' ' ${code}`, ALL) > 2000);
  assert.ok(countTokens(`select e''\r'\\' ' ${code}`, ALL) > 2000);
  assert.ok(countTokens(`select E'a' -- c\n '\\' ' ${code}`, ALL) > 2000);
  // A comment closes at its own depth.
  assert.ok(countTokens(`select /* a */ ${code} /* b */`, ALL) > 2000);
});

t("counting stops just past the limit", () => {
  assert.is(countTokens(`select ${"1,".repeat(1_000_000)}1`, 500), 501);
  assert.is(countTokens("select 1", 500), 2);
});

t.run();
