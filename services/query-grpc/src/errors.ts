// Every failure becomes a QueryFailure where it happens; toGrpcStatus() is the
// one place that turns it into a gRPC status code and trailing metadata.
import { Metadata, status } from "@grpc/grpc-js";
import { QueryError } from "../../../proto/gen/querygate/v1/query.js";

/**
 * What went wrong, independent of PostgreSQL. `sql` means PostgreSQL rejected
 * the statement and the SQLSTATE decides the code; the others decide it alone.
 */
export type FailureKind =
  | "sql"
  | "invalid_request"
  | "unauthenticated"
  | "forbidden"
  | "timeout"
  | "cancelled"
  | "overloaded"
  | "too_large"
  /** The result passed the caller's max_result_bytes: stopped before it could commit. */
  | "result_too_large"
  | "unavailable"
  | "commit_unknown"
  | "shutting_down"
  /** A read carrying a read-your-writes token reached a replica that has not replayed it yet (retried on the primary). */
  | "replica_behind"
  /** The registry has no such running request. */
  | "not_found"
  /** An idempotency key already used for a different request. */
  | "idempotency_mismatch"
  /** An idempotency key held by a request that has not ended yet. */
  | "idempotency_in_progress"
  /** A feature this deployment lacks (the idempotency ledger is not installed). */
  | "unsupported"
  /** The connection broke while COMMIT was in flight: committed or not, nobody can say. */
  | "internal";

export interface PgFields {
  sqlstate: string;
  detail?: string | undefined;
  hint?: string | undefined;
  position?: number | undefined;
}

export class QueryFailure extends Error {
  override name = "QueryFailure";
  constructor(
    readonly kind: FailureKind,
    message: string,
    readonly pg?: PgFields,
    /** ExecuteBatch and Session: which statement (0-based) failed. */
    readonly statementIndex?: number,
    /** commit_unknown: the transaction's id (xid8, decimal), for TransactionStatus. */
    readonly transactionId?: string,
  ) {
    super(message);
  }
}

/** The shape of errors that node-postgres raises for an ErrorResponse. */
interface PgDatabaseError {
  code?: unknown;
  message: string;
  detail?: string;
  hint?: string;
  position?: string;
}

/**
 * True for an ErrorResponse from PostgreSQL (it has a SQLSTATE and a
 * severity), false for socket errors, whose codes (EPIPE, ...) can look alike.
 */
export function isServerError(error: unknown): boolean {
  const e = error as { code?: unknown; severity?: unknown; errno?: unknown } | null;
  return (
    typeof e?.code === "string" &&
    /^[0-9A-Z]{5}$/.test(e.code) &&
    typeof e.severity === "string" &&
    e.errno === undefined
  );
}

export function pgFields(error: unknown): PgFields | undefined {
  const e = error as PgDatabaseError;
  if (!isServerError(e)) return undefined;
  const position = e.position ? Number(e.position) : undefined;
  return { sqlstate: e.code as string, detail: e.detail, hint: e.hint, position };
}

/**
 * Classifies an error thrown while talking to PostgreSQL. Errors without a
 * SQLSTATE are connection-level (refused, reset, timed out): the database is
 * unavailable, not the caller's fault.
 */
export function fromDatabaseError(error: unknown): QueryFailure {
  if (error instanceof QueryFailure) return error;
  const fields = pgFields(error);
  const message = error instanceof Error ? error.message : String(error);
  if (!fields) return new QueryFailure("unavailable", `database unavailable: ${message}`);
  return new QueryFailure("sql", message, fields);
}

/** gRPC code for a SQLSTATE, by exact code first, then by class (first two characters). */
function codeForSqlstate(sqlstate: string): status {
  switch (sqlstate) {
    case "23505": // unique_violation
      return status.ALREADY_EXISTS;
    case "42501": // insufficient_privilege
    case "25006": // read_only_sql_transaction
      return status.PERMISSION_DENIED;
    case "40001": // serialization_failure
    case "40P01": // deadlock_detected
    case "55P03": // lock_not_available
      return status.ABORTED;
    case "57014": // query_canceled: our cancels are mapped before this; what is left is statement_timeout
      return status.DEADLINE_EXCEEDED;
    case "08P01": // protocol_violation: PostgreSQL's word for a wrong parameter count, the caller's mistake
      return status.INVALID_ARGUMENT;
    case "57P01": // admin_shutdown
    case "57P02": // crash_shutdown
    case "57P03": // cannot_connect_now
      return status.UNAVAILABLE;
  }
  switch (sqlstate.slice(0, 2)) {
    case "08": // connection exception
      return status.UNAVAILABLE;
    case "23": // integrity constraint violation
    case "2B": // dependent privilege descriptors still exist / dependent objects
    case "25": // invalid transaction state
    case "44": // with check option violation
    case "P0": // raised by PL/pgSQL
      return status.FAILED_PRECONDITION;
    case "40": // transaction rollback
    case "72": // snapshot too old
      return status.ABORTED;
    case "28": // invalid authorization specification
      return status.PERMISSION_DENIED;
    case "53": // insufficient resources (disk, memory, connections) on the server
      return status.RESOURCE_EXHAUSTED;
    // 54 program limit exceeded (too many columns, too deep, too complex) falls
    // through to INVALID_ARGUMENT: the same statement fails the same way again.
    case "57": // operator intervention
      return status.UNAVAILABLE;
    case "58": // system error
    case "XX": // internal error
    case "F0": // configuration file error
      return status.INTERNAL;
    default:
      // 22 data exception, 42 syntax/undefined object, 0A unsupported, 21, 26, 34, 3D, 3F, ...:
      // the statement or its parameters are wrong.
      return status.INVALID_ARGUMENT;
  }
}

const codeForKind: Record<Exclude<FailureKind, "sql">, status> = {
  invalid_request: status.INVALID_ARGUMENT,
  unauthenticated: status.UNAUTHENTICATED,
  forbidden: status.PERMISSION_DENIED,
  timeout: status.DEADLINE_EXCEEDED,
  cancelled: status.CANCELLED,
  overloaded: status.RESOURCE_EXHAUSTED,
  too_large: status.RESOURCE_EXHAUSTED,
  result_too_large: status.RESOURCE_EXHAUSTED,
  unavailable: status.UNAVAILABLE,
  commit_unknown: status.UNAVAILABLE,
  shutting_down: status.UNAVAILABLE,
  replica_behind: status.UNAVAILABLE,
  not_found: status.NOT_FOUND,
  idempotency_mismatch: status.FAILED_PRECONDITION,
  idempotency_in_progress: status.ABORTED,
  unsupported: status.UNIMPLEMENTED,
  internal: status.INTERNAL,
};

export interface GrpcStatus {
  code: status;
  details: string;
  metadata: Metadata;
}

/**
 * Texts travel in HTTP/2 trailers, which clients cap (grpc-js: 8 KiB of
 * metadata by default); PostgreSQL quotes the caller's SQL in some messages
 * ("unterminated quoted string at or near ..."), so a 200 kB statement made a
 * trailer no client would take, and the call never ended for the caller.
 */
const MAX_TEXT = 1000;

function clip(text: string): string {
  return text.length <= MAX_TEXT
    ? text
    : `${text.slice(0, MAX_TEXT)}… (${text.length - MAX_TEXT} more characters)`;
}

/** The one mapping from a failure to what a gRPC caller sees. */
export function toGrpcStatus(failure: QueryFailure): GrpcStatus {
  const code =
    failure.kind === "sql" && failure.pg
      ? codeForSqlstate(failure.pg.sqlstate)
      : (codeForKind[failure.kind as Exclude<FailureKind, "sql">] ?? status.INTERNAL);
  const metadata = new Metadata();
  const error = QueryError.fromPartial({
    sqlstate: failure.pg?.sqlstate ?? "",
    message: clip(failure.message),
    detail: clip(failure.pg?.detail ?? ""),
    hint: clip(failure.pg?.hint ?? ""),
    position: failure.pg?.position ?? 0,
    kind: failure.kind,
    statementIndex: failure.statementIndex,
    transactionId: failure.transactionId ?? "",
  });
  metadata.set("querygate-error-bin", Buffer.from(QueryError.encode(error).finish()));
  if (failure.pg) metadata.set("sqlstate", failure.pg.sqlstate);
  metadata.set("querygate-error-kind", failure.kind);
  // Clients with a retry policy (the bridge) may retry only a call refused
  // before any SQL ran because this replica is shutting down; for everything
  // else the server says: do not retry.
  if (failure.kind !== "shutting_down") metadata.set("grpc-retry-pushback-ms", "-1");
  const message = clip(failure.message);
  const details = failure.pg ? `${message} (SQLSTATE ${failure.pg.sqlstate})` : message;
  return { code, details, metadata };
}

/** Anything thrown that is not already a QueryFailure is a bug in querygate. */
export function asFailure(error: unknown): QueryFailure {
  if (error instanceof QueryFailure) return error;
  return new QueryFailure("internal", "internal error");
}
