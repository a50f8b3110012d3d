// What the three RPC handlers are given: the engine and Execute's limits, and
// what ExecuteBatch and Session need besides, built once from the configuration.
import type { Logger } from "../../../shared/src/logger.js";
import type { Authenticator } from "../auth/authenticate.js";
import type { QueryGrpcConfig } from "../config.js";
import type { QueryFailure } from "../errors.js";
import type { QueryMetrics } from "../metrics.js";
import type { Registry } from "../postgres/registry.js";
import type { SqlParser } from "../sql/parser.js";
import type { Routing } from "./consistency.js";
import type { Idempotency } from "./idempotency.js";
import { SessionSlots } from "./session-slots.js";

export interface TransactionRpcs {
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
  metrics: QueryMetrics;
  /** Which pool (primary or read replica) each request runs on, with its retry. */
  routing: Routing;
  idempotency: Idempotency;
}

export function createTransactionRpcs(config: Readonly<QueryGrpcConfig>): TransactionRpcs {
  return {
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
  /** Which pool (primary or read replica) each request runs on, with its retry. */
  routing: Routing;
  /** Execute's first rows come in a small batch, so they arrive quickly whatever the result's size. */
  firstBatchRows: number;
  /** Idempotency keys of Execute and ExecuteBatch (idempotency.ts). */
  idempotency: Idempotency;
  /** ListQueries, CancelQuery, TransactionStatus (registry.ts). */
  registry: Registry;
  metrics: QueryMetrics;
  /** ExecuteBatch and Session (batch.ts, session.ts). */
  transactionRpcs: TransactionRpcs;
  limits: QueryServiceLimits;
  logger: Logger;
  /** False once shutdown began: new calls are refused before any SQL runs. */
  accepting: () => boolean;
  /** Tracks in-flight calls so shutdown can wait for them. */
  track: (done: Promise<unknown>, abort: (reason: QueryFailure) => void) => void;
}
