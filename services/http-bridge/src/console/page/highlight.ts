// SQL → highlighted HTML for the editor's overlay, and PostgreSQL's error
// `position` → where to mark it. A tokenizer of PostgreSQL's lexical rules
// (quotes, E'' escapes, dollar quotes, nested comments), not a parser: it only
// has to colour what the caller typed and never lose or reorder a character.
// No DOM here, so it is tested in Node.

export type TokenKind =
  | "keyword"
  | "identifier"
  | "quoted"
  | "string"
  | "number"
  | "comment"
  | "parameter"
  | "operator"
  | "space";

export interface Token {
  kind: TokenKind;
  from: number;
  to: number;
}

// Common reserved and statement words; anything else is an identifier (colouring only).
const KEYWORDS = new Set(
  `all alter analyze and any array as asc begin between by case cast check column commit constraint
  copy create cross current_date current_time current_timestamp current_user default delete desc
  distinct do drop else end except exists explain false fetch filter first for foreign from full
  function grant group having if ilike in index inner insert intersect interval into is join key
  last lateral left like limit materialized not null nulls offset on only or order outer over
  partition primary recursive references returning revoke right rollback row rows schema select
  set show table then to true truncate union unique update using vacuum values view when where
  window with`.split(/\s+/),
);

const IDENT_START = /[A-Za-z_\u0080-\uffff]/;
const IDENT_PART = /[A-Za-z0-9_$\u0080-\uffff]/;
const OPERATOR = /[+\-*/<>=~!@#%^&|`?]/;

export function tokenize(sql: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  const push = (kind: TokenKind, to: number) => {
    tokens.push({ kind, from: i, to });
    i = to;
  };
  while (i < sql.length) {
    const c = sql[i] as string;
    const next = sql[i + 1] ?? "";
    if (/\s/.test(c)) {
      let j = i + 1;
      while (j < sql.length && /\s/.test(sql[j] as string)) j++;
      push("space", j);
    } else if (c === "-" && next === "-") {
      const end = sql.indexOf("\n", i);
      push("comment", end === -1 ? sql.length : end);
    } else if (c === "/" && next === "*") {
      push("comment", blockCommentEnd(sql, i));
    } else if (c === "'") {
      push("string", quotedEnd(sql, i + 1, "'", false));
    } else if ((c === "E" || c === "e") && next === "'") {
      push("string", quotedEnd(sql, i + 2, "'", true));
    } else if (c === '"') {
      push("quoted", quotedEnd(sql, i + 1, '"', false));
    } else if (c === "$" && /[0-9]/.test(next)) {
      let j = i + 1;
      while (j < sql.length && /[0-9]/.test(sql[j] as string)) j++;
      push("parameter", j);
    } else if (c === "$" && dollarTag(sql, i) !== undefined) {
      const tag = dollarTag(sql, i) as string;
      const close = sql.indexOf(tag, i + tag.length);
      push("string", close === -1 ? sql.length : close + tag.length);
    } else if (/[0-9]/.test(c) || (c === "." && /[0-9]/.test(next))) {
      push("number", numberEnd(sql, i));
    } else if (IDENT_START.test(c)) {
      let j = i + 1;
      while (j < sql.length && IDENT_PART.test(sql[j] as string)) j++;
      push(KEYWORDS.has(sql.slice(i, j).toLowerCase()) ? "keyword" : "identifier", j);
    } else if (OPERATOR.test(c)) {
      let j = i + 1;
      while (j < sql.length && OPERATOR.test(sql[j] as string)) j++;
      push("operator", j);
    } else {
      // ( ) , ; [ ] : . and anything unforeseen, one character at a time.
      push("operator", i + 1);
    }
  }
  return tokens;
}

/** PostgreSQL's block comments nest. An unterminated one runs to the end, as the server reads it. */
function blockCommentEnd(sql: string, from: number): number {
  let depth = 0;
  let i = from;
  while (i < sql.length) {
    if (sql.startsWith("/*", i)) {
      depth++;
      i += 2;
    } else if (sql.startsWith("*/", i)) {
      depth--;
      i += 2;
      if (depth === 0) return i;
    } else i++;
  }
  return sql.length;
}

/** The index after the closing quote; a doubled quote is one quote, and in E'' strings so is \'. */
function quotedEnd(sql: string, from: number, quote: string, backslashEscapes: boolean): number {
  let i = from;
  while (i < sql.length) {
    const c = sql[i];
    if (backslashEscapes && c === "\\") i += 2;
    else if (c === quote && sql[i + 1] === quote) i += 2;
    else if (c === quote) return i + 1;
    else i++;
  }
  return sql.length;
}

/** `$tag$` or `$$` opening a dollar-quoted string at `from`, else undefined. */
function dollarTag(sql: string, from: number): string | undefined {
  const match = /^\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/.exec(sql.slice(from, from + 64));
  return match?.[0];
}

function numberEnd(sql: string, from: number): number {
  const match =
    /^(?:0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|(?:[0-9][0-9_]*)?\.?[0-9_]*(?:[eE][+-]?[0-9]+)?)/.exec(
      sql.slice(from),
    );
  return from + Math.max(1, match?.[0].length ?? 1);
}

/**
 * PostgreSQL's `position` (1-based, in characters) → an index into the
 * JavaScript string (UTF-16 code units), so an emoji before the error does
 * not shift the mark. Past the end (an error "at end of input") is the end.
 */
export function indexOfPosition(sql: string, position: number): number {
  let index = 0;
  let characters = 1;
  while (characters < position && index < sql.length) {
    const code = sql.charCodeAt(index);
    index += code >= 0xd800 && code <= 0xdbff && index + 1 < sql.length ? 2 : 1;
    characters++;
  }
  return index;
}

/** Line and column (both 1-based) of a string index, for the error panel. */
export function lineAndColumn(sql: string, index: number): { line: number; column: number } {
  const before = sql.slice(0, index);
  const lineStart = before.lastIndexOf("\n") + 1;
  return { line: before.split("\n").length, column: Array.from(before.slice(lineStart)).length + 1 };
}

const ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;" };

function escapeHtml(text: string): string {
  return text.replace(/[&<>]/g, (c) => ESCAPES[c] as string);
}

/** Beyond this, colouring every keystroke would lag: the text is shown plain. */
const HIGHLIGHT_LIMIT = 200_000;

/**
 * The overlay's HTML. `markAt` (a string index) wraps the token starting
 * there, or containing it, in <mark>; at the end of the text it marks a space,
 * so "syntax error at end of input" is visible too.
 */
export function highlightHtml(sql: string, markAt?: number): string {
  const tokens: Token[] =
    sql.length > HIGHLIGHT_LIMIT ? [{ kind: "space", from: 0, to: sql.length }] : tokenize(sql);
  let html = "";
  let marked = markAt === undefined;
  for (const token of tokens) {
    const text = sql.slice(token.from, token.to);
    if (!marked && markAt !== undefined && markAt < token.to && token.kind !== "space") {
      const start = Math.max(markAt, token.from);
      html += span(token.kind, text.slice(0, start - token.from));
      html += `<mark class="error-at">${span(token.kind, text.slice(start - token.from))}</mark>`;
      marked = true;
    } else if (!marked && markAt !== undefined && markAt < token.to) {
      // An error at white space: mark the one character, the rest stays plain.
      const at = Math.max(markAt, token.from) - token.from;
      html += `${escapeHtml(text.slice(0, at))}<mark class="error-at">${escapeHtml(text[at] === "\n" ? " \n" : (text[at] as string))}</mark>${escapeHtml(text.slice(at + 1))}`;
      marked = true;
    } else {
      html += span(token.kind, text);
    }
  }
  if (!marked) html += `<mark class="error-at"> </mark>`;
  // A trailing newline in a textarea opens a line the <pre> would not show.
  return `${html}\n`;
}

function span(kind: TokenKind, text: string): string {
  if (text === "") return "";
  return kind === "space" || kind === "identifier"
    ? escapeHtml(text)
    : `<span class="t-${kind}">${escapeHtml(text)}</span>`;
}
