// The transaction every request runs in: how it is opened (caller's role,
// access mode, isolation, limits), the check before it commits, and how a
// failure in either is reported. Shared by Execute, ExecuteBatch and Session.

import { fromDatabaseError, isServerError, QueryFailure } from "../errors.js";
import type { StepRole } from "./exchange.js";

export type IsolationLevel = "read committed" | "repeatable read" | "serializable";

export interface TransactionSettings {
  timeoutMs: number;
  readOnly: boolean;
  applicationName: string;
  /** The caller's PostgreSQL role (SET LOCAL ROLE); undefined = the login role. */
  role: string | undefined;
  /** JWT claims as JSON, visible to SQL as current_setting('request.jwt.claims'). */
  claims: string | undefined;
  /** Undefined = the database's default (normally read committed). */
  isolation?: IsolationLevel | undefined;
  /** DEFERRABLE: only meaningful for serializable read-only transactions. */
  deferrable?: boolean | undefined;
  /**
   * Read-your-writes on a replica: a WAL position (pg_lsn text) the server
   * must have replayed, checked in the set-up's round trip (replicaGuard).
   */
  replayedAtLeast?: string | undefined;
  /**
   * Statements run right after a successful COMMIT, in its round trip and on
   * its connection (after DISCARD ALL, which PostgreSQL refuses as the second
   * statement after COMMIT in one pipeline); the first column of each one's
   * first row comes back to the caller of the engine. Read-your-writes tokens.
   */
  afterCommit?: readonly string[] | undefined;
  /**
   * Read the transaction's id with the set-up, so a commit_unknown answer can
   * name it (TransactionStatus looks it up). Set for statements that may write.
   */
  reportTransactionId?: boolean | undefined;
  /** A request with an idempotency key: the ledger's statements (ledger.ts). */
  ledger?: LedgerHook | undefined;
}

/**
 * The one hook through which the engines write the idempotency ledger; what
 * the statements are is ledger.ts's business.
 */
export interface LedgerHook {
  /** Run right after BEGIN, before the transaction takes the caller's role. */
  claim: string[];
  /** Run after the role guard, just before COMMIT; Execute passes its statement's outcome. */
  record(outcome?: StatementOutcome): string[];
}

export interface StatementOutcome {
  commandTag: string;
  rowCount: number;
  truncated: boolean;
}

/**
 * Statements pipelined ahead of the caller's, in the same network write:
 * forget the previous caller's session state, open the transaction, then one
 * SELECT that sets role, timeout, application name and claims for this
 * transaction only. Being a query, it also takes the transaction's first
 * snapshot, after which a READ ONLY transaction can no longer be made writable.
 */
export function transactionSetup(settings: TransactionSettings, resetSession: boolean): string[] {
  const values: Array<[string, string]> = [];
  if (settings.role !== undefined) values.push(["role", settings.role]);
  values.push(["statement_timeout", String(Math.max(1, Math.trunc(settings.timeoutMs)))]);
  values.push(["application_name", settings.applicationName.slice(0, 63)]);
  if (settings.claims !== undefined) values.push(["request.jwt.claims", settings.claims]);
  const begin = ["BEGIN"];
  if (settings.isolation) begin.push(`ISOLATION LEVEL ${settings.isolation.toUpperCase()}`);
  if (settings.readOnly) begin.push("READ ONLY");
  if (settings.deferrable) begin.push("DEFERRABLE");
  return [
    ...(resetSession ? ["DISCARD ALL"] : []),
    begin.join(" "),
    ...(settings.ledger?.claim ?? []),
    // Every value is escaped here, never caller text spliced in raw.
    `SELECT ${values.map(([name, value]) => `pg_catalog.set_config(${quoteLiteral(name)}, ${quoteLiteral(value)}, true)`).join(", ")}`,
    ...(settings.replayedAtLeast === undefined ? [] : [replicaGuard(settings.replayedAtLeast)]),
  ];
}

/** What the replica guard raises when the server has not replayed the position: division_by_zero. */
const REPLICA_BEHIND_SQLSTATE = "22012";

/**
 * Fails the set-up (22012, division by zero: no set-up statement can raise it
 * otherwise) unless this server has replayed `lsn`. A server that is not
 * replaying (a primary, a promoted standby) fails it too: the token is then
 * served by the primary pool. It runs after the snapshot-taking set_config,
 * so it is only sound where each statement takes a new snapshot (read committed).
 */
export function replicaGuard(lsn: string): string {
  return `SELECT 1 / coalesce(pg_catalog.pg_last_wal_replay_lsn() >= ${quoteLiteral(lsn)}::pg_lsn, false)::int`;
}

/**
 * Runs just before COMMIT: fails the transaction if the caller's statement
 * managed to switch role (e.g. through a function running SQL text), so
 * nothing written under another role is committed. The cast raises the error;
 * current_user keeps the planner from folding it in advance.
 */
export function roleGuard(role: string): string {
  return `SELECT CASE WHEN current_user = ${quoteLiteral(role)} THEN 0 ELSE ('querygate role guard: role changed to ' || current_user)::int END`;
}

/**
 * Gives the transaction its id at the start (a write would take one anyway)
 * and reads it, so the answer arrives long before COMMIT goes out: a
 * commit_unknown answer can then name the transaction for TransactionStatus.
 */
export const TRANSACTION_ID_SQL = "SELECT pg_catalog.pg_current_xact_id()::text";

const ROLE_REFUSALS = new Set(["22023", "42704", "42501", "28000"]);

/**
 * The one place that decides what a failure means for the caller's data,
 * given where it struck. Before the guard and COMMIT went out nothing can
 * have committed, so a lost connection is plain "unavailable" (safe to
 * retry). Once they went out, only PostgreSQL's ERROR answer proves the
 * transaction did not commit; a lost connection, a FATAL, or a shutdown may
 * come after the commit record was written, so that is "commit_unknown" —
 * unless the transaction was read-only and so had nothing to commit.
 */
export function transactionFailure(
  error: unknown,
  failedIn: StepRole | undefined,
  settings: Pick<TransactionSettings, "role" | "readOnly">,
): QueryFailure {
  // The ledger's record and COMMIT go out with the guard, in one write.
  const ending = failedIn === "guard" || failedIn === "ledger" || failedIn === "commit";
  if (ending && !provesNoCommit(error) && !settings.readOnly) {
    const message = error instanceof Error ? error.message : String(error);
    return new QueryFailure(
      "commit_unknown",
      `the database connection failed while COMMIT was in flight, so the transaction may or may not have committed; check before retrying (${message})`,
    );
  }
  const failure = fromDatabaseError(error);
  if (failure.kind !== "sql") return failure;
  if (failedIn === "setup" && failure.pg?.sqlstate === REPLICA_BEHIND_SQLSTATE) {
    return new QueryFailure(
      "replica_behind",
      "the replica has not yet replayed the write this read must see",
    );
  }
  // Only the role in the set-up can be refused for the caller's sake (no such
  // role, not a member); anything else there (shutdown, lost connection) is what it is.
  if (failedIn === "setup" && ROLE_REFUSALS.has(failure.pg?.sqlstate ?? "")) {
    return new QueryFailure(
      "forbidden",
      `cannot run as role "${settings.role ?? ""}": ${failure.message}`,
      failure.pg,
    );
  }
  if (failedIn === "guard") {
    return new QueryFailure(
      "forbidden",
      `the statement switched away from role "${settings.role ?? ""}"; its transaction was rolled back`,
      { sqlstate: "42501" },
    );
  }
  return failure;
}

/**
 * Whether an error answering the guard or COMMIT proves nothing committed: an
 * ERROR (a failed guard, 40001, a deferred constraint) does, the transaction
 * is rolled back. A FATAL or PANIC, a connection or shutdown SQLSTATE, or no
 * answer at all proves nothing.
 */
export function provesNoCommit(error: unknown): boolean {
  if (error instanceof QueryFailure || !isServerError(error)) return false;
  const { code, severity } = error as { code: string; severity: string };
  return severity === "ERROR" && !code.startsWith("08") && !code.startsWith("57P");
}

export function quoteLiteral(value: string): string {
  return `'${value.replace(/'/g, "''").replace(/\0/g, "")}'`;
}
