// The kinds of statement a credential may be allowed to run. The classifier
// (classify.ts) sorts every request into these with PostgreSQL's own parser.
export const STATEMENT_KINDS = [
  /** SELECT, VALUES, TABLE without data-modifying parts; EXPLAIN without ANALYZE of anything. */
  "read",
  /** INSERT, UPDATE, DELETE, MERGE, TRUNCATE, CALL, data-modifying CTEs. */
  "write",
  /** CREATE / ALTER / DROP / GRANT / COMMENT and the like. */
  "ddl",
  /** SET (not role or limits), SHOW, VACUUM, ANALYZE, LOCK, LISTEN/NOTIFY, PREPARE, ... */
  "utility",
  /** DO blocks: anonymous code that can run any SQL text, so off by default. */
  "anonymous_code",
  /** COPY to or from a server file or program. */
  "server_file",
  /** ALTER SYSTEM, LOAD, CHECKPOINT: the server itself. */
  "system",
] as const;

export type StatementKind = (typeof STATEMENT_KINDS)[number];

/** What a credential may run when its entry does not say. */
export const DEFAULT_STATEMENT_KINDS: readonly StatementKind[] = ["read", "write", "ddl", "utility"];
