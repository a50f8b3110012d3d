// What the three RPCs take from a gRPC call before any SQL runs: the request
// id, the caller's transaction settings, each statement's timeout, row limit
// and parameters.
import { randomUUID } from "node:crypto";
import { Metadata } from "@grpc/grpc-js";
import {
  IsolationLevel,
  type Statement,
  type TransactionOptions,
  type Value,
} from "../../../../proto/gen/querygate/v1/query.js";
import type { Caller } from "../auth/authenticate.js";
import { asFailure, QueryFailure } from "../errors.js";
import { applicationName, MAX_REQUEST_ID_LENGTH } from "../postgres/application-name.js";
import type { ParamValue } from "../postgres/exchange.js";
import type { IsolationLevel as SqlIsolation, TransactionSettings } from "../postgres/transaction.js";
import type { Classification } from "../sql/classify.js";
import type { SqlParser } from "../sql/parser.js";
import type { StatementKind } from "../statement-kinds.js";
import type { QueryServiceLimits } from "./deps.js";

/**
 * The caller's x-request-id when it is a sane token short enough to travel
 * whole in application_name (where the registry finds it), else a new one.
 */
export function requestIdOf(metadata: Metadata): string {
  const given = firstValue(metadata, "x-request-id");
  return given && given.length <= MAX_REQUEST_ID_LENGTH && /^[A-Za-z0-9._:-]+$/.test(given)
    ? given
    : randomUUID();
}

/** Response metadata carrying the request id, so the caller can list or cancel it. */
export function requestIdMetadata(requestId: string): Metadata {
  const metadata = new Metadata();
  metadata.set("x-request-id", requestId);
  return metadata;
}

export function firstValue(metadata: Metadata, key: string): string | undefined {
  const value = metadata.get(key)[0];
  return typeof value === "string" ? value : undefined;
}

/** Why a call's work stops when grpc-js reports it cancelled: its deadline, or the client. */
export function cancellation(deadline: number): QueryFailure {
  return deadline <= Date.now()
    ? new QueryFailure("timeout", "the call's deadline passed; its transaction was rolled back")
    : new QueryFailure("cancelled", "the caller cancelled the call; its transaction was rolled back");
}

const ISOLATION: Partial<Record<IsolationLevel, SqlIsolation>> = {
  [IsolationLevel.ISOLATION_LEVEL_READ_COMMITTED]: "read committed",
  [IsolationLevel.ISOLATION_LEVEL_REPEATABLE_READ]: "repeatable read",
  [IsolationLevel.ISOLATION_LEVEL_SERIALIZABLE]: "serializable",
};

/** The transaction a batch or session runs in, for this caller. */
export function transactionSettings(
  options: TransactionOptions | undefined,
  caller: Caller,
  requestId: string,
  limits: QueryServiceLimits,
  deadline: number,
): TransactionSettings {
  const level = options?.isolation ?? IsolationLevel.ISOLATION_LEVEL_UNSPECIFIED;
  const isolation = ISOLATION[level];
  if (level !== IsolationLevel.ISOLATION_LEVEL_UNSPECIFIED && isolation === undefined) {
    throw new QueryFailure("invalid_request", `unknown isolation level ${level}`);
  }
  return {
    timeoutMs: statementTimeoutMs(0, options, caller, limits, deadline),
    readOnly: caller.readOnly || (options?.readOnly ?? false),
    isolation,
    deferrable: options?.deferrable ?? false,
    // Lets the registry (and anyone reading pg_stat_activity) trace a statement to its request and caller.
    applicationName: applicationName(caller.name, requestId, options?.applicationTag ?? ""),
    role: caller.role,
    claims: caller.claims,
  };
}

/**
 * A statement's timeout: its own, else the transaction's, else the server
 * default; never above the credential's cap, the server's maximum, or what
 * is left of the call's deadline.
 */
export function statementTimeoutMs(
  asked: number,
  options: { timeoutMs?: number } | undefined,
  caller: Caller,
  limits: QueryServiceLimits,
  deadline: number,
): number {
  const untilDeadline = Number.isFinite(deadline)
    ? Math.max(1, deadline - Date.now())
    : Number.POSITIVE_INFINITY;
  return Math.min(
    asked || options?.timeoutMs || limits.defaultTimeoutMs,
    caller.maxStatementMs ?? Number.POSITIVE_INFINITY,
    limits.maxTimeoutMs,
    untilDeadline,
  );
}

/** A statement's row limit: its own, else the transaction's; 0 = none. */
export function maxRowsOf(statement: Statement, options: TransactionOptions | undefined): number {
  const own = Number(statement.maxRows || "0");
  const rows = own > 0 ? own : Number(options?.maxRows || "0");
  return Number.isSafeInteger(rows) && rows > 0 ? rows : 0;
}

/** PostgreSQL's wire protocol counts a statement's parameters in 16 bits. */
export const MAX_PARAMETERS = 65535;

/**
 * A call's statement, classified before anything runs: not empty, of a kind
 * the caller may run, and given exactly the parameters it takes.
 */
export async function classifyStatement(
  parser: SqlParser,
  statement: { sql: string; params: unknown[] },
  allowed: ReadonlySet<StatementKind>,
): Promise<Classification> {
  if (!statement.sql.trim()) throw new QueryFailure("invalid_request", "sql is empty");
  const classification = await parser.classify(statement.sql, allowed);
  checkParameterCount(classification, statement.params.length);
  return classification;
}

/**
 * PostgreSQL wants exactly as many values as the statement's highest $n; it
 * reports a mismatch as a protocol violation (08P01), which reads like a
 * connection failure. Checked here, it is the caller's mistake it is.
 */
function checkParameterCount(classification: Classification, given: number): void {
  if (given > MAX_PARAMETERS) {
    throw new QueryFailure(
      "sql",
      `${given} parameters were sent; PostgreSQL takes at most ${MAX_PARAMETERS} per statement`,
      { sqlstate: "54023" },
    );
  }
  const wanted = classification.parameters;
  if (given !== wanted) {
    throw new QueryFailure(
      "sql",
      `the statement takes ${wanted === 0 ? "no parameters" : wanted === 1 ? "1 parameter ($1)" : `${wanted} parameters ($1..$${wanted})`} but ${given} ${given === 1 ? "was" : "were"} sent`,
      { sqlstate: "08P01" },
    );
  }
}

/** A parameter in the form node-postgres sends: text, bytes (bytea) or NULL. */
export function toParam(value: Value): ParamValue {
  if (value.textValue !== undefined) return value.textValue;
  if (value.intValue !== undefined) return value.intValue;
  if (value.boolValue !== undefined) return value.boolValue ? "true" : "false";
  if (value.floatValue !== undefined) return floatText(value.floatValue);
  if (value.bytesValue !== undefined) return value.bytesValue;
  return null;
}

function floatText(n: number): string {
  if (Number.isNaN(n)) return "NaN";
  if (n === Number.POSITIVE_INFINITY) return "Infinity";
  if (n === Number.NEGATIVE_INFINITY) return "-Infinity";
  return String(n);
}

/**
 * PostgreSQL reports statement_timeout and a cancel from outside (CancelQuery
 * from any replica, an operator's pg_cancel_backend) alike: SQLSTATE 57014,
 * told apart only by a message that lc_messages may translate. Time tells
 * them apart instead: statement_timeout starts no earlier than the call, so
 * a 57014 before `timeoutMs` of the call have passed is not the timeout.
 */
export function cancelledFromOutside(failure: QueryFailure, ranMs: number, timeoutMs: number): QueryFailure {
  if (failure.kind !== "sql" || failure.pg?.sqlstate !== "57014" || ranMs >= timeoutMs) return failure;
  return new QueryFailure(
    "cancelled",
    "the statement was cancelled from outside (CancelQuery, or pg_cancel_backend); its transaction was rolled back",
    failure.pg,
    failure.statementIndex,
    failure.transactionId,
  );
}

/** The failure, tagged with the statement it is about. */
export function atStatement(index: number, error: unknown): QueryFailure {
  const failure = asFailure(error);
  if (failure.statementIndex !== undefined) return failure;
  return new QueryFailure(failure.kind, failure.message, failure.pg, index, failure.transactionId);
}
