// What the three RPC handlers are given: Execute's executor and limits, and
// what ExecuteBatch and Session need besides, built once from the configuration.
import type pg from "pg";
import type { Logger } from "../../../shared/src/logger.js";
import type { Authenticator } from "../auth/authenticate.js";
import type { QueryGrpcConfig } from "../config.js";
import type { QueryFailure } from "../errors.js";
import type { QueryMetrics } from "../metrics.js";
import type { Admission } from "../postgres/admission.js";
import type { Executor } from "../postgres/executor.js";
import { Transactions } from "../postgres/open-transaction.js";
import type { Registry } from "../postgres/registry.js";
import type { TypeNames } from "../postgres/type-names.js";
import type { SqlParser } from "../sql/parser.js";
import type { Idempotency } from "./idempotency.js";
import { SessionSlots } from "./session-slots.js";

export interface TransactionRpcs {
  transactions: Transactions;
  batch: {
    /** Most statements one batch may hold. */
    maxStatements: number;
    /** Cap on the approximate serialized size of a batch's results. */
    maxResponseBytes: number;
    /** Rows per Execute: the whole result is gathered anyway, so no small first batch. */
    batchRows: number;
  };
  session: {
    slots: SessionSlots;
    idleTimeoutMs: number;
    maxLifetimeMs: number;
    /** The first rows of each statement come in a small batch, so they arrive quickly. */
    firstBatchRows: number;
  };
}

/** The dependencies of ExecuteBatch and Session: Execute's, plus their own. */
export interface TransactionRpcDeps {
  authenticator: Authenticator;
  parser: SqlParser;
  limits: QueryServiceLimits;
  logger: Logger;
  /** False once shutdown began: new calls are refused before any SQL runs. */
  accepting: () => boolean;
  /** Tracks in-flight calls so shutdown can wait for them. */
  track: (done: Promise<unknown>, abort: (reason: QueryFailure) => void) => void;
  transactionRpcs: TransactionRpcs;
  idempotency: Idempotency;
}

export function createTransactionRpcs(
  config: Readonly<QueryGrpcConfig>,
  pool: pg.Pool,
  admission: Admission,
  typeNames: TypeNames,
): TransactionRpcs {
  return {
    transactions: new Transactions(pool, admission, typeNames, {
      batchRows: config.BATCH_ROWS,
      resetSession: config.RESET_SESSION,
      // A rollback or a cancelled statement that takes longer means a connection we cannot vouch for.
      settleTimeoutMs: 5000,
    }),
    batch: {
      maxStatements: config.BATCH_MAX_STATEMENTS,
      maxResponseBytes: config.BATCH_MAX_RESPONSE_BYTES,
      batchRows: config.BATCH_ROWS,
    },
    session: {
      slots: new SessionSlots(config.MAX_SESSIONS),
      idleTimeoutMs: config.SESSION_IDLE_TIMEOUT_MS,
      maxLifetimeMs: config.SESSION_MAX_LIFETIME_MS,
      firstBatchRows: Math.min(100, config.BATCH_ROWS),
    },
  };
}

export interface QueryServiceLimits {
  defaultTimeoutMs: number;
  maxTimeoutMs: number;
}

export interface QueryServiceDeps {
  authenticator: Authenticator;
  /** Classifies SQL before anything runs (parser.ts). */
  parser: SqlParser;
  executor: Executor;
  /** Idempotency keys of Execute and ExecuteBatch (idempotency.ts). */
  idempotency: Idempotency;
  /** ListQueries, CancelQuery, TransactionStatus (registry.ts). */
  registry: Registry;
  metrics: QueryMetrics;
  /** ExecuteBatch and Session (batch-service.ts, session-service.ts). */
  transactionRpcs: TransactionRpcs;
  limits: QueryServiceLimits;
  logger: Logger;
  /** False once shutdown began: new calls are refused before any SQL runs. */
  accepting: () => boolean;
  /** Tracks in-flight calls so shutdown can wait for them. */
  track: (done: Promise<unknown>, abort: (reason: QueryFailure) => void) => void;
}
