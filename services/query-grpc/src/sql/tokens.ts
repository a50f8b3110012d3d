// How many tokens the parser would build a tree from: what a statement costs
// to classify. libpg-query's time and memory grow with the tokens outside
// literals and comments, not with the text's length: 900 KB of
// `select 1,1,1,...` took 5 s of the parser's thread and 330 MB that
// WebAssembly never gives back, where a 900 KB string literal takes 50 ms.
// So the budget counts what PostgreSQL's scanner would see as code and skips
// what it would see as one literal, one quoted identifier or a comment.
//
// It may count more than the scanner (a number such as 1.5e3 counts as three,
// each operator character as one), never less: a region is skipped only where
// PostgreSQL's own rules (scan.l) make it a literal or a comment, so no text
// can hide code from the budget inside something it takes for a string.

const QUOTE = 39; // '
const DOUBLE_QUOTE = 34; // "
const DOLLAR = 36; // $
const BACKSLASH = 92;

/** Counts tokens until `limit` is passed (then returns limit + 1): the caller only needs to know it is over. */
export function countTokens(sql: string, limit: number): number {
  let tokens = 0;
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (isBlank(c)) {
      i++;
      continue;
    }
    if (++tokens > limit) return tokens;
    if (c === 45 && sql.charCodeAt(i + 1) === 45) {
      i = endOfLine(sql, i);
    } else if (c === 47 && sql.charCodeAt(i + 1) === 42) {
      i = endOfComment(sql, i);
    } else if (c === QUOTE) {
      i = endOfString(sql, i + 1, false);
    } else if (c === DOUBLE_QUOTE) {
      i = endOfString(sql, i + 1, false, DOUBLE_QUOTE);
    } else if (c === DOLLAR) {
      i = afterDollar(sql, i);
    } else if (isDigit(c)) {
      // A number (a letter after it is junk PostgreSQL rejects); a $ after it starts a token of its own.
      while (i < n && (isDigit(sql.charCodeAt(i)) || identStart(sql.charCodeAt(i)))) i++;
    } else if (identStart(c)) {
      const start = i;
      while (i < n && identCont(sql.charCodeAt(i))) i++;
      // E'...': the one string whose backslash escapes a quote. Only a bare e
      // or E makes one: `somee'...'` is an identifier, then a plain string.
      if (i - start === 1 && (c === 69 || c === 101) && sql.charCodeAt(i) === QUOTE) {
        i = endOfString(sql, i + 1, true);
        // A quote after a newline continues the E'' string, backslashes and all
        // (scan.l's quotecontinue): rather than follow that rule to the letter,
        // every character left counts as a token, which can only count more.
        if (sql.charCodeAt(afterBlanks(sql, i)) === QUOTE) return tokens + nonBlank(sql, i, limit - tokens);
      }
    } else {
      i++; // an operator or punctuation character: one token each
    }
  }
  return tokens;
}

/** The first index from `from` that is not whitespace or a comment. */
function afterBlanks(sql: string, from: number): number {
  let i = from;
  while (i < sql.length) {
    const c = sql.charCodeAt(i);
    if (isBlank(c)) i++;
    else if (c === 45 && sql.charCodeAt(i + 1) === 45) i = endOfLine(sql, i);
    else if (c === 47 && sql.charCodeAt(i + 1) === 42) i = endOfComment(sql, i);
    else return i;
  }
  return i;
}

/** Characters from `from` that are not whitespace, counted to just past `limit`: no token is shorter. */
function nonBlank(sql: string, from: number, limit: number): number {
  let count = 0;
  for (let i = from; i < sql.length && count <= limit; i++) if (!isBlank(sql.charCodeAt(i))) count++;
  return count;
}

/** After the closing quote (a doubled quote stays inside); `escapes`: E'' strings, where \' does too. */
function endOfString(sql: string, from: number, escapes: boolean, quote = QUOTE): number {
  let i = from;
  while (i < sql.length) {
    const c = sql.charCodeAt(i);
    if (escapes && c === BACKSLASH) i += 2;
    else if (c === quote) {
      if (sql.charCodeAt(i + 1) !== quote) return i + 1;
      i += 2;
    } else i++;
  }
  return i; // unterminated: the scanner rejects it there
}

/** At the newline that ends a -- comment (or the text's end). */
function endOfLine(sql: string, from: number): number {
  let i = from;
  while (i < sql.length && sql.charCodeAt(i) !== 10 && sql.charCodeAt(i) !== 13) i++;
  return i;
}

/** After a comment: PostgreSQL's /* comments nest. */
function endOfComment(sql: string, from: number): number {
  let depth = 0;
  let i = from;
  while (i < sql.length) {
    const c = sql.charCodeAt(i);
    const next = sql.charCodeAt(i + 1);
    if (c === 47 && next === 42) {
      depth++;
      i += 2;
    } else if (c === 42 && next === 47) {
      i += 2;
      if (--depth === 0) return i;
    } else i++;
  }
  return i;
}

/** At a `$` that starts a token: $1 (a parameter), $tag$...$tag$ (a literal), or an operator character. */
function afterDollar(sql: string, at: number): number {
  let i = at + 1;
  if (isDigit(sql.charCodeAt(i))) {
    while (isDigit(sql.charCodeAt(i))) i++;
    return i;
  }
  // dolq_start, then dolq_cont: a tag never holds a `$`, so the first $tag$ after it closes it.
  if (identStart(sql.charCodeAt(i))) {
    i++;
    while (identStart(sql.charCodeAt(i)) || isDigit(sql.charCodeAt(i))) i++;
  }
  if (sql.charCodeAt(i) !== DOLLAR) return at + 1;
  const tag = sql.slice(at, i + 1);
  const end = sql.indexOf(tag, i + 1);
  return end === -1 ? sql.length : end + tag.length;
}

/** PostgreSQL's space: [ \t\n\r\f\v]. */
function isBlank(c: number): boolean {
  return c === 32 || (c >= 9 && c <= 13);
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/** [A-Za-z_] and anything past ASCII, as PostgreSQL's ident_start (and dolq_start). */
function identStart(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c >= 128;
}

/** ident_cont: ident_start, digits and `$`. */
function identCont(c: number): boolean {
  return identStart(c) || isDigit(c) || c === DOLLAR;
}
