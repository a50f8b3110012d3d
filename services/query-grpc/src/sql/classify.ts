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

export function classify(sql: string, allowed: ReadonlySet<StatementKind>): Classification {
  if (sql.includes("\0")) {
    // PostgreSQL would cut the text at the NUL and run the rest: refuse it whole.
    throw new QueryFailure("sql", "the SQL text contains a NUL character (0x00)", { sqlstate: "22021" });
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
  const statement = statements[0];
  if (statement) {
    const kind = kindOf(statement);
    checkCalls(statement);
    if (!allowed.has(kind)) {
      throw new QueryFailure(
        "invalid_request",
        `${describe(statement)} is a "${kind}" statement, which this credential may not run (allowed: ${[...allowed].join(", ")})`,
      );
    }
    kinds.push(kind);
  }
  return { kinds, fingerprint: fingerprint(statements), parameters: highestParameter(statements) };
}

function kindOf(statement: Node): StatementKind {
  const [type, body] = entry(statement);
  switch (type) {
    case "SelectStmt":
      if ((body as Node).intoClause) return "ddl";
      return modifiesData(body) ? "write" : "read";
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
      return explainAnalyzes(explain.options) ? kindOf(explain.query) : "read";
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

/** Rejects calls that change protected settings or run SQL text the parser cannot see. */
function checkCalls(statement: Node): void {
  walk(statement, (type, body) => {
    if (type !== "FuncCall") return;
    const call = body as { funcname?: Node[]; args?: Node[] };
    const name = (
      (call.funcname?.at(-1) as { String?: { sval?: string } })?.String?.sval ?? ""
    ).toLowerCase();
    if (SQL_TEXT_FUNCTIONS.has(name)) {
      throw new QueryFailure(
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
        throw new QueryFailure(
          "invalid_request",
          `set_config(${setting === undefined ? "<computed name>" : `'${setting}'`}, ...) is not allowed: querygate sets the caller's role, access mode, limits and request.* settings`,
        );
      }
    }
  });
}

function modifiesData(node: unknown): boolean {
  let found = false;
  walk(node, (type) => {
    if (type === "InsertStmt" || type === "UpdateStmt" || type === "DeleteStmt" || type === "MergeStmt")
      found = true;
  });
  return found;
}

function explainAnalyzes(options: Node[] | undefined): boolean {
  return (options ?? []).some((option) => {
    const def = (option as { DefElem?: { defname?: string; arg?: Node } }).DefElem;
    if (def?.defname !== "analyze") return false;
    const value = def.arg ? (constantString(def.arg) ?? JSON.stringify(def.arg)) : "true";
    return !/false|off|"ival":0|^0$/.test(value);
  });
}

/**
 * Calls visit(type, body) for every node, depth first. Iterative: a parse
 * tree is as deep as the caller's SQL is nested, and "1+1+...+1" with a few
 * thousand terms overflowed the JavaScript stack of a recursive walk.
 */
function walk(root: unknown, visit: (type: string, body: unknown) => void): void {
  const pending: unknown[] = [root];
  while (pending.length > 0) {
    const node = pending.pop();
    if (node instanceof Visit) {
      visit(node.type, node.body);
      continue;
    }
    if (node === null || typeof node !== "object") continue;
    if (Array.isArray(node)) {
      for (let i = node.length - 1; i >= 0; i--) pending.push(node[i]);
      continue;
    }
    const entries = Object.entries(node);
    for (let i = entries.length - 1; i >= 0; i--) {
      const [key, value] = entries[i] as [string, unknown];
      pending.push(value); // its subtree is walked right after its own visit
      if (/^[A-Z]/.test(key)) pending.push(new Visit(key, value));
    }
  }
}

/** A node's type and body, queued in walk() so visits keep depth-first order. */
class Visit {
  constructor(
    readonly type: string,
    readonly body: unknown,
  ) {}
}

function highestParameter(statements: Node[]): number {
  let highest = 0;
  walk(statements, (type, body) => {
    if (type === "ParamRef") highest = Math.max(highest, (body as { number?: number }).number ?? 0);
  });
  return highest;
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

/**
 * A hash of the parse tree without literal values and source positions, so
 * `id = 1` and `id = 2` (and any whitespace) fingerprint alike. Computed from
 * the tree we already have (libpg-query's own fingerprint() and normalize()
 * cost another parse each and grow WebAssembly memory without bound), and
 * iteratively, since JSON.stringify recurses as deep as the tree.
 */
function fingerprint(statements: Node[]): string {
  const hash = createHash("sha256");
  const pending: unknown[] = [statements];
  while (pending.length > 0) {
    const node = pending.pop();
    if (node instanceof Punctuation) {
      hash.update(node.text);
    } else if (Array.isArray(node)) {
      hash.update("[");
      pending.push(CLOSE_ARRAY);
      for (let i = node.length - 1; i >= 0; i--) pending.push(node[i], COMMA);
    } else if (node !== null && typeof node === "object") {
      hash.update("{");
      pending.push(CLOSE_OBJECT);
      const entries = Object.entries(node).filter(([key]) => key !== "location");
      for (let i = entries.length - 1; i >= 0; i--) {
        const [key, value] = entries[i] as [string, unknown];
        pending.push(key === "A_Const" ? LITERAL : value, new Punctuation(`${JSON.stringify(key)}:`), COMMA);
      }
    } else {
      hash.update(JSON.stringify(node) ?? "null");
    }
  }
  return hash.digest("hex").slice(0, 16);
}

/** Structure written into the fingerprint, told apart from the tree's own strings. */
class Punctuation {
  constructor(readonly text: string) {}
}
const COMMA = new Punctuation(",");
const CLOSE_ARRAY = new Punctuation("]");
const CLOSE_OBJECT = new Punctuation("}");
const LITERAL = new Punctuation("?");
