// ListQueries, CancelQuery and TransactionStatus: the registry's three RPCs.
// What runs is read from pg_stat_activity (postgres/registry.ts), so a
// caller behind a load balancer sees and cancels its statements whichever
// replica it reaches. A caller sees only its own statements (by the caller
// hash in application_name) and never any SQL text, only fingerprints; an
// admin credential sees everyone's.
import {
  type CancelQueryRequest,
  type CancelQueryResponse,
  type ListQueriesRequest,
  type ListQueriesResponse,
  type RunningQuery,
  TransactionState,
  type TransactionStatusRequest,
  type TransactionStatusResponse,
} from "../../../../proto/gen/querygate/v1/query.js";
import { auditLogger, type Logger } from "../../../shared/src/logger.js";
import type { Authenticator, Caller } from "../auth/authenticate.js";
import { asFailure, fromDatabaseError, QueryFailure, toGrpcStatus } from "../errors.js";
import { callerHash, type NamedRequest, parseApplicationName } from "../postgres/application-name.js";
import type { Registry, RunningBackend } from "../postgres/registry.js";
import type { SqlParser } from "../sql/parser.js";
import { STATEMENT_KINDS } from "../statement-kinds.js";
import { firstValue, requestIdMetadata, requestIdOf } from "./call.js";
import type { ServerUnaryCall, UnaryHandler } from "./server-call.js";

export interface RegistryDeps {
  authenticator: Authenticator;
  parser: SqlParser;
  registry: Registry;
  logger: Logger;
}

type Named = RunningBackend & { named: NamedRequest };

const EVERY_KIND = new Set(STATEMENT_KINDS);

const STATES: Record<string, TransactionState> = {
  committed: TransactionState.TRANSACTION_STATE_COMMITTED,
  aborted: TransactionState.TRANSACTION_STATE_ABORTED,
  "in progress": TransactionState.TRANSACTION_STATE_IN_PROGRESS,
};

export function registryHandlers(deps: RegistryDeps): {
  listQueries: UnaryHandler<ListQueriesRequest, ListQueriesResponse>;
  cancelQuery: UnaryHandler<CancelQueryRequest, CancelQueryResponse>;
  transactionStatus: UnaryHandler<TransactionStatusRequest, TransactionStatusResponse>;
} {
  return {
    listQueries: unary(deps, "ListQueries", async (caller, request: ListQueriesRequest) => {
      if (request.caller && request.caller !== caller.name && !caller.admin) {
        throw new QueryFailure("forbidden", "only an admin credential may list another caller's statements");
      }
      const only = request.caller || (caller.admin ? undefined : caller.name);
      const hash = only === undefined ? undefined : callerHash(only);
      const running = (await backends(deps)).filter((b) => hash === undefined || b.named.callerHash === hash);
      return { queries: await Promise.all(running.map((b) => describe(deps.parser, b))) };
    }),

    cancelQuery: unary(deps, "CancelQuery", async (caller, request: CancelQueryRequest) => {
      const id = request.requestId;
      if (!id) throw new QueryFailure("invalid_request", "request_id is empty");
      const matching = (await backends(deps)).filter((b) => b.named.requestId === id);
      if (matching.length === 0)
        throw new QueryFailure("not_found", `no statement of request ${id} is running`);
      // Request ids are the callers' own choice, so two callers may share one: each cancels only its own.
      const mine = callerHash(caller.name);
      const allowed = matching.filter((b) => caller.admin || b.named.callerHash === mine);
      if (allowed.length === 0) throw new QueryFailure("forbidden", `request ${id} is another caller's`);
      let cancelled = false;
      for (const backend of allowed) {
        if (await deps.registry.cancel(backend.pid, backend.applicationName).catch(databaseFailure)) {
          cancelled = true;
        }
      }
      // A session between statements (idle in transaction) has no statement to cancel.
      if (!cancelled) throw new QueryFailure("not_found", `request ${id} has no statement running right now`);
      return { cancelled };
    }),

    transactionStatus: unary(
      deps,
      "TransactionStatus",
      async (_caller, request: TransactionStatusRequest) => {
        if (!/^[0-9]{1,20}$/.test(request.transactionId)) {
          throw new QueryFailure(
            "invalid_request",
            "transaction_id must be a transaction id (xid8) in decimal",
          );
        }
        const state = await deps.registry.transactionStatus(request.transactionId).catch(databaseFailure);
        return { state: STATES[state] ?? TransactionState.TRANSACTION_STATE_UNSPECIFIED };
      },
    ),
  };
}

/** Authenticates, runs `work`, answers; one audit line per call. */
function unary<Req, Res>(
  deps: RegistryDeps,
  method: string,
  work: (caller: Caller, request: Req) => Promise<Res>,
): UnaryHandler<Req, Res> {
  return (call: ServerUnaryCall<Req>, callback) => {
    const requestId = requestIdOf(call.metadata);
    call.sendMetadata(requestIdMetadata(requestId));
    let caller: Caller | undefined;
    void (async () => {
      caller = await deps.authenticator.authenticate(firstValue(call.metadata, "authorization"));
      return work(caller, call.request);
    })().then(
      (response) => {
        auditLogger(deps.logger).info({ method, requestId, caller: caller?.name, outcome: "OK" }, "request");
        callback(null, response);
      },
      (error: unknown) => {
        const failure = asFailure(error);
        if (failure.kind === "internal") deps.logger.error({ err: error }, `${method} failed unexpectedly`);
        auditLogger(deps.logger).info(
          { method, requestId, caller: caller?.name, outcome: failure.kind },
          "request",
        );
        callback(toGrpcStatus(failure));
      },
    );
  };
}

function databaseFailure(error: unknown): never {
  throw fromDatabaseError(error);
}

async function backends(deps: RegistryDeps): Promise<Named[]> {
  const rows = await deps.registry.running().catch(databaseFailure);
  const named: Named[] = [];
  for (const row of rows) {
    const parsed = parseApplicationName(row.applicationName);
    if (parsed) named.push({ ...row, named: parsed });
  }
  return named;
}

async function describe(parser: SqlParser, backend: Named): Promise<RunningQuery> {
  return {
    requestId: backend.named.requestId,
    state: backend.state,
    waitEventType: backend.waitEventType,
    waitEvent: backend.waitEvent,
    startedAt: backend.startedAt,
    durationMs: backend.durationMs,
    fingerprint: await fingerprintOf(parser, backend.query),
    callerHash: backend.named.callerHash,
    transactionStartedAt: backend.transactionStartedAt,
    applicationTag: backend.named.tag,
  };
}

/** Literal-free, so no caller's values leak; "" when the text does not parse (cut at track_activity_query_size). */
async function fingerprintOf(parser: SqlParser, sql: string): Promise<string> {
  if (!sql.trim()) return "";
  try {
    return (await parser.classify(sql, EVERY_KIND)).fingerprint;
  } catch {
    return "";
  }
}
