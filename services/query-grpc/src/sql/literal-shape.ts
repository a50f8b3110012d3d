// The shape of a statement with its literal values taken out, so that the
// same SQL sent again with other values (`... where id = 41`, `... = 42`, the
// way the Flask tool's callers write it) is classified from the parse cache
// instead of crossing to the parser thread every time.
//
// Sound only because classification does not depend on literal values,
// except where this refuses to make a shape at all: set_config()'s setting
// name and EXPLAIN's options. So the scanner is deliberately timid: it
// replaces plain numbers and plain '...' strings in code, copies quoted
// identifiers and $n as they are, and gives up (undefined: cache by the
// exact text only) at anything whose lexing depends on more than it knows:
// comments, dollar quotes, E'' / U&'' / B'' / X'' strings, backslashes
// (standard_conforming_strings), NUL, numbers with exponents, radix prefixes
// or underscores.
const LITERAL_SENSITIVE = /set_config|explain/i;

export function literalShape(sql: string): string | undefined {
  if (LITERAL_SENSITIVE.test(sql) || sql.includes("\\") || sql.includes("\0")) return undefined;
  let shape = "";
  let changed = false;
  let i = 0;
  while (i < sql.length) {
    const c = sql[i] as string;
    const before = i > 0 ? (sql[i - 1] as string) : " ";
    if (c === "-" && sql[i + 1] === "-") return undefined;
    if (c === "/" && sql[i + 1] === "*") return undefined;
    if (c === "$") {
      // $n is a parameter; anything else here starts a dollar quote.
      let end = i + 1;
      while (end < sql.length && isDigit(sql[end] as string)) end++;
      if (end === i + 1 || isWordChar(sql[end] ?? " ") || sql[end] === "$") return undefined;
      shape += sql.slice(i, end);
      i = end;
      continue;
    }
    if (c === '"') {
      // A quoted identifier: its name matters, copied as is ("" escapes a quote).
      if (before === "&") return undefined;
      const end = closing(sql, i, '"');
      if (end === undefined) return undefined;
      shape += sql.slice(i, end + 1);
      i = end + 1;
      continue;
    }
    if (c === "'") {
      // Only a plain string: a letter or & before it makes it E'', U&'', B'', X'' or N''.
      if (isWordChar(before) || before === "&") return undefined;
      const end = closing(sql, i, "'");
      if (end === undefined) return undefined;
      shape += "''";
      changed ||= end !== i + 1;
      i = end + 1;
      continue;
    }
    if (isDigit(c) && !isWordChar(before) && before !== "." && before !== "$") {
      let end = i;
      while (end < sql.length && isDigit(sql[end] as string)) end++;
      if (sql[end] === "." && isDigit(sql[end + 1] ?? " ")) {
        end++;
        while (end < sql.length && isDigit(sql[end] as string)) end++;
      }
      const after = sql[end] ?? " ";
      if (isWordChar(after) || after === "." || after === "$") return undefined;
      shape += "0";
      changed ||= sql.slice(i, end) !== "0";
      i = end;
      continue;
    }
    shape += c;
    i++;
  }
  return changed ? shape : undefined;
}

/** Index of the quote that closes the one at `start` (a doubled quote escapes it), or undefined. */
function closing(sql: string, start: number, quote: string): number | undefined {
  let i = start + 1;
  for (;;) {
    const at = sql.indexOf(quote, i);
    if (at === -1) return undefined;
    if (sql[at + 1] === quote) {
      i = at + 2;
      continue;
    }
    return at;
  }
}

function isDigit(c: string): boolean {
  return c >= "0" && c <= "9";
}

/** What continues an identifier or keyword for PostgreSQL's lexer: letters, digits, _, any non-ASCII. */
function isWordChar(c: string): boolean {
  const code = c.charCodeAt(0);
  return (
    (code >= 48 && code <= 57) ||
    (code >= 65 && code <= 90) ||
    (code >= 97 && code <= 122) ||
    code === 95 ||
    code > 127
  );
}
