// Where a request runs when there is a read replica, and what it may expect
// there. Read-only requests go to the replica unless its breaker is open; a
// read that presents a read-your-writes token (x-querygate-lsn) runs there
// only if the replica has replayed that position, checked in the set-up's own
// round trip, else on the primary. Writes always run on the primary and, when
// a replica is configured, answer with their commit's WAL position. A read
// that fails before any of its result reached the caller, in a way another
// server or connection may not repeat, is run once more (retryDecision).
import { Metadata } from "@grpc/grpc-js";
import type { Column } from "../../../../proto/gen/querygate/v1/query.js";
import type { Logger } from "../../../shared/src/logger.js";
import { asFailure, QueryFailure } from "../errors.js";
import type { QueryMetrics } from "../metrics.js";
import type { Engine } from "../postgres/engine.js";
import { COMMIT_POSITION_SQL, isLsn, type ReplicaHealth } from "../postgres/replicas.js";
import type { TransactionSettings } from "../postgres/transaction.js";

/** gRPC metadata (request) and trailer (response) carrying a commit's WAL position. */
export const LSN_KEY = "x-querygate-lsn";

/** The statement engine of one pool. */
export interface Engines {
  engine: Engine;
}

export interface ReplicaEngines extends Engines {
  health: ReplicaHealth;
}

export type Server = "primary" | "replica";

/** What to do after a read's first attempt failed: run it on the primary, on a fresh connection, or not again. */
export type Retry = "primary" | "fresh" | undefined;

/**
 * SQLSTATEs after which the same read may well succeed elsewhere:
 * 57P01-57P03 (the server shuts down, crashed, or is starting: a failover),
 * 25006 (read-only transaction: the node was demoted), and the recovery
 * conflicts of a hot standby — 40001 ("conflict with recovery", also the
 * FATAL variant), 40P01 (buffer-pin deadlock with recovery), 57P04 (database
 * dropped on the primary). 57014 is a statement timeout or our own cancel: never.
 */
const RETRYABLE_SQLSTATES = new Set(["57P01", "57P02", "57P03", "25006", "40001", "40P01", "57P04"]);

/**
 * The one place that decides whether a failed request runs again. Only a
 * read-only one (nothing it did can have persisted) that failed before any
 * row reached the caller (else the caller would see rows twice; a header
 * alone is sent once, headerOnce), and
 * only for failures that say the server or connection was the problem, not
 * the statement. A write never is: a lost COMMIT answer stays commit_unknown.
 */
export function retryDecision(
  failure: QueryFailure,
  attempt: { readOnly: boolean; delivered: boolean; on: Server },
): Retry {
  if (!attempt.readOnly || attempt.delivered) return undefined;
  const elsewhere: Retry = attempt.on === "replica" ? "primary" : "fresh";
  if (failure.kind === "replica_behind") return attempt.on === "replica" ? "primary" : undefined;
  if (failure.kind === "unavailable") return elsewhere;
  const sqlstate = failure.pg?.sqlstate;
  if (failure.kind === "sql" && sqlstate && (sqlstate.startsWith("08") || RETRYABLE_SQLSTATES.has(sqlstate)))
    return elsewhere;
  return undefined;
}

/** The token a request presents, if any; a malformed one is the caller's mistake. */
export function tokenOf(metadata: Metadata): string | undefined {
  const token = metadata.get(LSN_KEY)[0];
  if (typeof token !== "string" || token === "") return undefined;
  if (!isLsn(token)) {
    throw new QueryFailure(
      "invalid_request",
      `${LSN_KEY} must be a WAL position such as 0/16B3748 (got ${JSON.stringify(token.slice(0, 40))})`,
    );
  }
  return token;
}

/**
 * A result header that a retried statement sends again: it goes out once, and
 * a retry's header, the same columns from the other server, is dropped, so
 * the caller sees one header. A retry that answers with other columns fails
 * rather than hand the caller rows that do not fit what it was told.
 */
export function headerOnce(send: (columns: Column[]) => Promise<void>): (columns: Column[]) => Promise<void> {
  let sent: string | undefined;
  return (columns) => {
    const json = JSON.stringify(columns);
    if (sent === undefined) {
      sent = json;
      return send(columns);
    }
    if (json === sent) return Promise.resolve();
    return Promise.reject(
      new QueryFailure(
        "unavailable",
        "the statement failed, and its retry answered with other columns; retry it",
      ),
    );
  };
}

/** Trailing metadata for a successful answer: the commit's position, when there is one. */
export function lsnTrailer(lsn: string | undefined): Metadata {
  const metadata = new Metadata();
  if (lsn) metadata.set(LSN_KEY, lsn);
  return metadata;
}

export class Routing {
  constructor(
    readonly primary: Engines,
    readonly replica: ReplicaEngines | undefined,
    private readonly metrics: QueryMetrics,
    private readonly logger: Logger,
  ) {}

  /**
   * Runs `work` on the engines the request belongs on, with the settings
   * for there, and once more if retryDecision says so. `delivered` tells
   * whether any of the result has reached the caller yet.
   */
  async run<S extends TransactionSettings, T>(
    settings: S,
    token: string | undefined,
    delivered: () => boolean,
    work: (engines: Engines, settings: S) => Promise<T>,
  ): Promise<T> {
    if (!settings.readOnly) {
      // With a replica, a write's answer carries its commit's position for later reads.
      const afterCommit = this.replica ? [COMMIT_POSITION_SQL] : undefined;
      return work(this.primary, { ...settings, afterCommit });
    }
    const first = this.firstChoice(settings, token);
    try {
      const result = await work(first.engines, first.settings);
      this.metrics.reads.inc({ target: first.target });
      return result;
    } catch (error) {
      const failure = asFailure(error);
      const retry = retryDecision(failure, { readOnly: true, delivered: delivered(), on: first.on });
      if (retry === undefined) {
        this.metrics.reads.inc({ target: first.target });
        throw error;
      }
      const reason = failure.kind === "sql" ? (failure.pg?.sqlstate ?? "sql") : failure.kind;
      this.metrics.readRetries.inc({ reason });
      this.logger.info(
        { reason, on: first.on, retry },
        "read failed before any row reached the caller; retrying it once",
      );
      if (
        first.on === "replica" &&
        (failure.kind === "unavailable" || failure.pg?.sqlstate?.startsWith("57P0"))
      ) {
        this.replica?.health.markDown(failure.message);
      }
      // Behind the token is a consistency choice; anything else on the replica is a fallback.
      const target =
        first.on === "primary" ? first.target : failure.kind === "replica_behind" ? "primary" : "fallback";
      this.metrics.reads.inc({ target });
      return work(this.primary, settings);
    }
  }

  /** Where a read goes first: the replica when there is one that is up and can honour the token. */
  private firstChoice<S extends TransactionSettings>(
    settings: S,
    token: string | undefined,
  ): { on: Server; engines: Engines; settings: S; target: "replica" | "primary" | "fallback" } {
    const replica = this.replica;
    if (!replica) return { on: "primary", engines: this.primary, settings, target: "primary" };
    // A token needs each statement to take its snapshot after the guard: read committed only.
    const snapshotSafe =
      token === undefined || settings.isolation === undefined || settings.isolation === "read committed";
    if (!snapshotSafe) return { on: "primary", engines: this.primary, settings, target: "primary" };
    if (!replica.health.available)
      return { on: "primary", engines: this.primary, settings, target: "fallback" };
    return {
      on: "replica",
      engines: replica,
      settings: { ...settings, replayedAtLeast: token },
      target: "replica",
    };
  }
}
