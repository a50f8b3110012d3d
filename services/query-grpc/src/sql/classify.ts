// Classifies a request's SQL with PostgreSQL's own parser (libpg-query) before
// anything runs: how many statements, which kind (read, write, ddl, ...), and a
// fingerprint without literal values for the audit log. Refuses what a gateway
// must not run: several statements in one Execute, transaction control that
// would escape the request's transaction, changes of role or of the limits
// querygate set, COPY over the wire, and kinds the caller was not granted.
import { createHash } from "node:crypto";
import { loadModule, parseSync } from "libpg-query";
import { QueryFailure } from "../errors.js";
import type { StatementKind } from "../statement-kinds.js";
import { countTokens } from "./tokens.js";

export interface Classification {
  /** Distinct kinds in the order met; [] for an empty statement. */
  kinds: StatementKind[];
  /** Hex fingerprint: equal for statements that differ only in literal values or layout. */
  fingerprint: string;
  /** How many parameters the statement takes: its highest $n (PostgreSQL wants exactly that many). */
  parameters: number;
}

/**
 * The parser itself failed (its WebAssembly stack overflowed, or worse), not
 * the statement's syntax: the parser's state can no longer be trusted.
 * parser.ts answers the caller and replaces the parser.
 */
export class ParserFault extends Error {
  override name = "ParserFault";
}

/** The parser is WebAssembly: load it once before serving. */
export function loadParser(): Promise<void> {
  return loadModule();
}

/**
 * Settings a caller's SQL may not change, with SET or set_config(): who the
 * caller is, whether it may write, and how long it may run.
 */
const PROTECTED_SETTINGS = new Set([
  "role",
  "session_authorization",
  "transaction_read_only",
  "default_transaction_read_only",
  "transaction",
  "session characteristics",
  "statement_timeout",
  "transaction_timeout",
  "lock_timeout",
  "idle_in_transaction_session_timeout",
  "idle_session_timeout",
]);

/** Functions that run SQL text given as a value: the parser cannot see inside them. */
const SQL_TEXT_FUNCTIONS = new Set([
  "query_to_xml",
  "query_to_xmlschema",
  "query_to_xml_and_xmlschema",
  "dblink",
  "dblink_exec",
  "dblink_open",
  "dblink_send_query",
]);

type Node = Record<string, unknown>;

/** `maxTokens`: a statement with more tokens of code (tokens.ts) is refused before it is parsed. */
export function classify(
  sql: string,
  allowed: ReadonlySet<StatementKind>,
  maxTokens = Number.POSITIVE_INFINITY,
): Classification {
  if (sql.includes("\0")) {
    // PostgreSQL would cut the text at the NUL and run the rest: refuse it whole.
    throw new QueryFailure("sql", "the SQL text contains a NUL character (0x00)", { sqlstate: "22021" });
  }
  // A token is at least a character: only a longer text can be over.
  if (sql.length > maxTokens && countTokens(sql, maxTokens) > maxTokens) {
    throw new QueryFailure(
      "sql",
      `the statement has more than ${maxTokens} tokens outside its literals and comments, past what the SQL parser takes (PARSE_MAX_TOKENS); send its values as parameters, or split it over several statements (ExecuteBatch)`,
      { sqlstate: "54001" },
    );
  }
  let statements: Node[];
  try {
    statements = (parseSync(sql).stmts ?? []).map((s) => (s as { stmt: Node }).stmt);
  } catch (error) {
    if ((error as { sqlDetails?: unknown }).sqlDetails === undefined) {
      throw new ParserFault(error instanceof Error ? error.message : String(error));
    }
    throw parseError(error);
  }
  if (statements.length > 1) {
    throw new QueryFailure(
      "invalid_request",
      `send one statement per Execute (got ${statements.length}); ExecuteBatch runs several in one transaction`,
    );
  }
  const kinds: StatementKind[] = [];
  const facts = survey(statements);
  const statement = statements[0];
  if (statement) {
    const kind = kindOf(statement, facts.modifies);
    if (facts.refused) throw facts.refused;
    if (!allowed.has(kind)) {
      throw new QueryFailure(
        "invalid_request",
        `${describe(statement)} is a "${kind}" statement, which this credential may not run (allowed: ${[...allowed].join(", ")})`,
      );
    }
    kinds.push(kind);
  }
  return { kinds, fingerprint: facts.fingerprint, parameters: facts.parameters };
}

/** `modifies`: the tree holds an INSERT, UPDATE, DELETE or MERGE (a data-modifying WITH). */
function kindOf(statement: Node, modifies: boolean): StatementKind {
  const [type, body] = entry(statement);
  switch (type) {
    case "SelectStmt":
      if ((body as Node).intoClause) return "ddl";
      return modifies ? "write" : "read";
    case "InsertStmt":
    case "UpdateStmt":
    case "DeleteStmt":
    case "MergeStmt":
    case "TruncateStmt":
    case "CallStmt":
      return "write";
    case "ExplainStmt": {
      const explain = body as { query: Node; options?: Node[] };
      // EXPLAIN ANALYZE runs the statement: it is whatever it explains. Plain
      // EXPLAIN only plans, which reads nothing but the catalog.
      return explainAnalyzes(explain.options) ? kindOf(explain.query, modifies) : "read";
    }
    case "CopyStmt": {
      const copy = body as { filename?: string; is_program?: boolean };
      if (copy.filename !== undefined || copy.is_program) return "server_file";
      throw new QueryFailure(
        "invalid_request",
        "COPY to or from the client is not supported through querygate; use SELECT or INSERT",
      );
    }
    case "TransactionStmt":
      throw new QueryFailure(
        "invalid_request",
        "transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, ...) would escape the request's own transaction; use ExecuteBatch or Session",
      );
    case "VariableSetStmt": {
      const set = body as { kind?: string; name?: string };
      if (set.kind === "VAR_RESET_ALL" || PROTECTED_SETTINGS.has((set.name ?? "").toLowerCase())) {
        throw new QueryFailure(
          "invalid_request",
          `${set.kind === "VAR_RESET_ALL" ? "RESET ALL" : `changing ${set.name}`} is not allowed: querygate sets the caller's role, access mode and limits`,
        );
      }
      return "utility";
    }
    case "DoStmt":
      return "anonymous_code";
    case "AlterSystemStmt":
    case "LoadStmt":
    case "CheckPointStmt":
      return "system";
    default:
      if (
        /^(Create|Alter|Drop|Grant|Comment|Rename|Define|Composite|Index|View|Rule|Reassign|Sec|Import|Refresh|Reindex)/.test(
          type,
        )
      )
        return "ddl";
      return "utility";
  }
}

/** Why a call may not run: it changes a protected setting, or runs SQL text the parser cannot see. */
function refusedCall(call: { funcname?: Node[]; args?: Node[] }): QueryFailure | undefined {
  const name = ((call.funcname?.at(-1) as { String?: { sval?: string } })?.String?.sval ?? "").toLowerCase();
  if (SQL_TEXT_FUNCTIONS.has(name)) {
    return new QueryFailure(
      "invalid_request",
      `${name}() runs SQL text querygate cannot inspect; it is not allowed`,
    );
  }
  if (name === "set_config") {
    const setting = constantString(call.args?.[0]);
    if (
      setting === undefined ||
      PROTECTED_SETTINGS.has(setting.toLowerCase()) ||
      setting.startsWith("request.")
    ) {
      return new QueryFailure(
        "invalid_request",
        `set_config(${setting === undefined ? "<computed name>" : `'${setting}'`}, ...) is not allowed: querygate sets the caller's role, access mode, limits and request.* settings`,
      );
    }
  }
  return undefined;
}

function explainAnalyzes(options: Node[] | undefined): boolean {
  return (options ?? []).some((option) => {
    const def = (option as { DefElem?: { defname?: string; arg?: Node } }).DefElem;
    if (def?.defname !== "analyze") return false;
    const value = def.arg ? (constantString(def.arg) ?? JSON.stringify(def.arg)) : "true";
    return !/false|off|"ival":0|^0$/.test(value);
  });
}

function entry(node: Node): [string, unknown] {
  const [pair] = Object.entries(node);
  return pair ?? ["", {}];
}

function constantString(node: unknown): string | undefined {
  const constant = (node as { A_Const?: { sval?: { sval?: string } }; String?: { sval?: string } }) ?? {};
  return constant.A_Const?.sval?.sval ?? constant.String?.sval;
}

/** "INSERT", "CREATE TABLE", ... from a parse node's type, for messages. */
function describe(statement: Node): string {
  const [type] = entry(statement);
  return type
    .replace(/Stmt$/, "")
    .replace(/([a-z])([A-Z])/g, "$1 $2")
    .toUpperCase();
}

/**
 * A syntax error as PostgreSQL would report it: SQLSTATE 42601, 1-based
 * character position. libpg-query's cursorPosition already counts characters
 * (code points, as PostgreSQL's scanner does), from 0; reading it as bytes put
 * the position before the error whenever non-ASCII text preceded it.
 */
function parseError(error: unknown): QueryFailure {
  const offset = (error as { sqlDetails?: { cursorPosition?: number } }).sqlDetails?.cursorPosition;
  const message = error instanceof Error ? error.message : String(error);
  const position = offset === undefined ? undefined : offset + 1;
  return new QueryFailure("sql", message, { sqlstate: "42601", position });
}

interface Survey {
  /** A hex hash of the tree without literal values and source positions. */
  fingerprint: string;
  /** The highest $n. */
  parameters: number;
  /** An INSERT, UPDATE, DELETE or MERGE anywhere in the tree. */
  modifies: boolean;
  /** The first call, depth first, that may not run. */
  refused?: QueryFailure;
}

const MODIFYING = new Set(["InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"]);
/** Hashed a chunk at a time: one update per token cost more than the parse. */
const HASH_CHUNK_CHARS = 1 << 16;

/**
 * Everything classify() needs from the tree, in one depth-first pass: the
 * calls it refuses, the highest parameter, whether data is modified, and a
 * fingerprint, so `id = 1` and `id = 2` (and any whitespace) hash alike.
 * Computed from the tree we already have (libpg-query's own fingerprint() and
 * normalize() cost another parse each and grow WebAssembly memory without
 * bound), and iteratively, since a tree is as deep as the caller's SQL is
 * nested ("1+1+...+1" overflowed the JavaScript stack of a recursive walk).
 * One pass matters: a statement's size is the caller's choice, and four walks
 * took four times the parse's own time.
 */
function survey(statements: Node[]): Survey {
  const found: Survey = { fingerprint: "", parameters: 0, modifies: false };
  const hash = createHash("sha256");
  let text = "";
  const pending: unknown[] = [statements];
  while (pending.length > 0) {
    const node = pending.pop();
    if (node instanceof Punctuation) {
      text += node.text;
    } else if (Array.isArray(node)) {
      text += "[";
      pending.push(CLOSE_ARRAY);
      for (let i = node.length - 1; i >= 0; i--) pending.push(node[i], COMMA);
    } else if (node !== null && typeof node === "object") {
      text += "{";
      pending.push(CLOSE_OBJECT);
      const keys = Object.keys(node);
      for (let i = keys.length - 1; i >= 0; i--) {
        const key = keys[i] as string;
        if (key === "location") continue;
        const value = (node as Node)[key];
        pending.push(key === "A_Const" ? LITERAL : value, keyPunctuation(key), COMMA);
        // A node's type is its one key, capitalised: seen before its subtree, as depth first.
        const first = key.charCodeAt(0);
        if (first < 65 || first > 90) continue;
        if (key === "FuncCall") found.refused ??= refusedCall(value as Node);
        else if (key === "ParamRef")
          found.parameters = Math.max(found.parameters, (value as { number?: number }).number ?? 0);
        else if (MODIFYING.has(key)) found.modifies = true;
      }
    } else {
      text += JSON.stringify(node) ?? "null";
    }
    if (text.length >= HASH_CHUNK_CHARS) {
      hash.update(text);
      text = "";
    }
  }
  found.fingerprint = hash.update(text).digest("hex").slice(0, 16);
  return found;
}

/** Structure written into the fingerprint, told apart from the tree's own strings. */
class Punctuation {
  constructor(readonly text: string) {}
}
const COMMA = new Punctuation(",");
const CLOSE_ARRAY = new Punctuation("]");
const CLOSE_OBJECT = new Punctuation("}");
const LITERAL = new Punctuation("?");
/** `"key":` for each field name the parser uses (a few hundred), made once. */
const KEYS = new Map<string, Punctuation>();
function keyPunctuation(key: string): Punctuation {
  let punctuation = KEYS.get(key);
  if (punctuation === undefined) {
    punctuation = new Punctuation(`${JSON.stringify(key)}:`);
    if (KEYS.size < 4096) KEYS.set(key, punctuation);
  }
  return punctuation;
}
