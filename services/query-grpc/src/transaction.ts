// The transaction every request runs in: how it is opened (caller's role,
// access mode, isolation, limits), the check before it commits, and how a
// failure in either is reported. Shared by Execute, ExecuteBatch and Session.
import type { FailedIn } from "./cursor.js";
import { fromDatabaseError, QueryFailure } from "./errors.js";

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
    // Every value is escaped here, never caller text spliced in raw.
    `SELECT ${values.map(([name, value]) => `pg_catalog.set_config(${quoteLiteral(name)}, ${quoteLiteral(value)}, true)`).join(", ")}`,
  ];
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

const ROLE_REFUSALS = new Set(["22023", "42704", "42501", "28000"]);

/** A failure in querygate's own set-up or guard is about the caller's role, not its SQL. */
export function transactionFailure(
  error: unknown,
  failedIn: FailedIn | undefined,
  role: string | undefined,
): QueryFailure {
  const failure = fromDatabaseError(error);
  if (failure.kind !== "sql") return failure;
  // Only the role in the set-up can be refused for the caller's sake (no such
  // role, not a member); anything else there (shutdown, lost connection) is what it is.
  if (failedIn === "setup" && ROLE_REFUSALS.has(failure.pg?.sqlstate ?? "")) {
    return new QueryFailure(
      "forbidden",
      `cannot run as role "${role ?? ""}": ${failure.message}`,
      failure.pg,
    );
  }
  if (failedIn === "guard") {
    return new QueryFailure(
      "forbidden",
      `the statement switched away from role "${role ?? ""}"; its transaction was rolled back`,
      { sqlstate: "42501" },
    );
  }
  return failure;
}

export function quoteLiteral(value: string): string {
  return `'${value.replace(/'/g, "''").replace(/\0/g, "")}'`;
}
