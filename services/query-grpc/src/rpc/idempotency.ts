// Idempotency keys for Execute and ExecuteBatch: a call with an
// `idempotency-key` runs at most once per caller and key. Its transaction
// claims the key and records its outcome through the engines' ledger hook
// (postgres/ledger.ts); a retry after the first run committed runs nothing
// and gets the recorded outcome back, marked `idempotent-replayed: true`.
// Same key with another request: FAILED_PRECONDITION, kind
// "idempotency_mismatch" (HTTP 422). A retry while the first run is still
// open waits for it up to IDEMPOTENCY_WAIT_MS, then ABORTED, kind
// "idempotency_in_progress" (HTTP 409). Read-only requests commit nothing,
// so they ignore the key.
import { createHash } from "node:crypto";
import type { Metadata } from "@grpc/grpc-js";
import {
  type Column,
  ExecuteBatchResponse,
  type Row,
  StatementResult,
} from "../../../../proto/gen/querygate/v1/query.js";
import type { Caller } from "../auth/authenticate.js";
import { asFailure, QueryFailure } from "../errors.js";
import { KEY_BUSY, KEY_USED, type Ledger, type LedgerEntry } from "../postgres/ledger.js";
import type { LedgerHook, StatementOutcome } from "../postgres/transaction.js";
import { commandOf } from "../results/rows.js";

export interface Idempotency {
  /** Undefined when the ledger is not installed (see npm run migrate). */
  ledger: Ledger | undefined;
  /** Recorded outcomes keep their rows up to this many bytes; past it, only the footer. */
  maxRecordBytes: number;
}

/** An outcome as recorded: protobuf bytes, and whether its rows were left out for size. */
export interface Recorded {
  bytes: Uint8Array;
  rowsOmitted: boolean;
}

/** The caller's idempotency key, if any; a malformed one is the caller's mistake. */
export function idempotencyKeyOf(metadata: Metadata): string | undefined {
  // Read here, not through call.ts, which deps.ts (and so this file's users) already import.
  const key = metadata.get("idempotency-key")[0];
  if (typeof key !== "string" || key === "") return undefined;
  if (!/^[\x21-\x7e]{1,255}$/.test(key)) {
    throw new QueryFailure("invalid_request", "idempotency-key must be 1 to 255 printable ASCII characters");
  }
  return key;
}

/** The response metadata of a replayed outcome. */
export function markReplayed(metadata: Metadata, entry: LedgerEntry): Metadata {
  metadata.set("idempotent-replayed", "true");
  if (entry.rowsOmitted) metadata.set("idempotent-rows-omitted", "true");
  return metadata;
}

/** One call's use of the ledger: the hook for its transaction, and what a failed claim means. */
export class KeyedCall {
  readonly hook: LedgerHook;

  constructor(
    private readonly ledger: Ledger,
    private readonly caller: Caller,
    private readonly key: string,
    private readonly requestHash: string,
    outcome: (statement?: StatementOutcome) => Recorded,
  ) {
    this.hook = ledger.hook(caller.name, key, requestHash, outcome);
  }

  /**
   * After the call's transaction failed: the recorded outcome to replay when
   * its claim found the key already used by this very request; a failure
   * when the key is busy or was used for another request; undefined when
   * the failure has nothing to do with the key.
   */
  async replayFor(error: unknown): Promise<LedgerEntry | undefined> {
    const sqlstate = asFailure(error).pg?.sqlstate;
    if (sqlstate === KEY_BUSY) throw inProgress(this.key);
    if (sqlstate !== KEY_USED) return undefined;
    const entry = await this.ledger.lookup(this.caller.name, this.key).catch(() => undefined);
    // Gone (expired meanwhile) or not readable: the caller may simply retry.
    if (!entry?.outcome) throw inProgress(this.key);
    if (entry.requestHash !== this.requestHash) {
      throw new QueryFailure(
        "idempotency_mismatch",
        `idempotency key ${this.key} was used for a different request; use a new key for a new request`,
      );
    }
    return entry;
  }
}

/** The call's KeyedCall, or undefined without a key (or for read-only work, which commits nothing). */
export function keyedCall(
  idempotency: Idempotency,
  metadata: Metadata,
  caller: Caller,
  readOnly: boolean,
  method: string,
  /** The request's bytes, for its hash: encoded only when the call carries a key. */
  request: () => Uint8Array,
  outcome: (statement?: StatementOutcome) => Recorded,
): KeyedCall | undefined {
  const key = idempotencyKeyOf(metadata);
  if (key === undefined || readOnly) return undefined;
  if (!idempotency.ledger) {
    throw new QueryFailure(
      "unsupported",
      "idempotency keys need querygate's ledger, which is not installed in this database (npm run migrate)",
    );
  }
  const hash = createHash("sha256").update(method).update("\n").update(request()).digest("hex");
  return new KeyedCall(idempotency.ledger, caller, key, hash, outcome);
}

function inProgress(key: string): QueryFailure {
  return new QueryFailure(
    "idempotency_in_progress",
    `a request with idempotency key ${key} is still running; retry once it has ended`,
  );
}

/** Keeps an Execute's result as it streams out, for the ledger: rows up to the size cap. */
export class ResultRecorder {
  private columns: Column[] = [];
  private kept: Row[] = [];
  private bytes = 0;
  private omitted = false;

  constructor(private readonly maxBytes: number) {}

  header(columns: Column[]): void {
    this.columns = columns;
  }

  rows(batch: Row[]): void {
    if (this.omitted) return;
    for (const row of batch) {
      for (const value of row.values) this.bytes += value.length + 2;
      this.kept.push(row);
    }
    if (this.bytes > this.maxBytes) {
      this.omitted = true;
      this.kept = [];
    }
  }

  recorded(statement: StatementOutcome | undefined): Recorded {
    const tag = statement?.commandTag ?? "";
    const result: StatementResult = {
      columns: this.columns,
      rows: this.kept,
      footer: {
        commandTag: tag,
        command: commandOf(tag),
        rowCount: String(statement?.rowCount ?? 0),
        truncated: statement?.truncated ?? false,
        serverTimeMs: 0,
      },
    };
    return { bytes: StatementResult.encode(result).finish(), rowsOmitted: this.omitted };
  }
}

/** An ExecuteBatch response as recorded: whole, or without rows when over the cap. */
export function recordedBatch(response: ExecuteBatchResponse, maxBytes: number): Recorded {
  const bytes = ExecuteBatchResponse.encode(response).finish();
  if (bytes.length <= maxBytes) return { bytes, rowsOmitted: false };
  const bare = { ...response, results: response.results.map((r) => ({ ...r, rows: [] })) };
  return { bytes: ExecuteBatchResponse.encode(bare).finish(), rowsOmitted: true };
}
