// The one place where a gRPC status from query-grpc (or a problem with the
// HTTP request itself) becomes an HTTP status and a JSON error body.
import { type ServiceError, status } from "@grpc/grpc-js";
import type { Context } from "hono";
import { QueryError } from "../../../proto/gen/querygate/v1/query.js";

/** gRPC code → HTTP status, after connect-es's table; FAILED_PRECONDITION is 409 here: it always means a conflict with the data. */
const httpStatusForCode: Record<number, number> = {
  [status.OK]: 200,
  [status.CANCELLED]: 499,
  [status.UNKNOWN]: 500,
  [status.INVALID_ARGUMENT]: 400,
  [status.DEADLINE_EXCEEDED]: 504,
  [status.NOT_FOUND]: 404,
  [status.ALREADY_EXISTS]: 409,
  [status.PERMISSION_DENIED]: 403,
  [status.RESOURCE_EXHAUSTED]: 429,
  [status.FAILED_PRECONDITION]: 409,
  [status.ABORTED]: 409,
  [status.OUT_OF_RANGE]: 400,
  [status.UNIMPLEMENTED]: 501,
  [status.INTERNAL]: 500,
  [status.UNAVAILABLE]: 503,
  [status.DATA_LOSS]: 500,
  [status.UNAUTHENTICATED]: 401,
};

/**
 * A status without querygate-error-bin was made by grpc-js itself, on either
 * side, not by query-grpc's code. Its RESOURCE_EXHAUSTED always means a
 * message over a size limit (the bridge's receive limit, or query-grpc's
 * MAX_REQUEST_BYTES): nothing is overloaded, and waiting or retrying cannot help.
 */
const kindOfGrpcJsStatus: Record<number, string> = {
  [status.RESOURCE_EXHAUSTED]: "too_large",
};

/** Some failure kinds refine their gRPC code's status. */
const httpStatusForKind: Record<string, number> = {
  // RESOURCE_EXHAUSTED
  too_large: 413,
  overloaded: 503,
  // UNAVAILABLE, but not "retry shortly": the COMMIT may have happened.
  commit_unknown: 502,
  // FAILED_PRECONDITION: the Idempotency-Key was used for a different body.
  idempotency_mismatch: 422,
};

export interface HttpError {
  status: number;
  headers: Record<string, string>;
  body: {
    error: {
      /** SQLSTATE when PostgreSQL raised the error, otherwise a querygate code such as "unavailable". */
      code: string;
      message: string;
      detail?: string;
      hint?: string;
      position?: number;
      /** The gRPC status name behind the HTTP status, e.g. "INVALID_ARGUMENT". */
      grpcStatus: string;
      /** A batch's failing statement, 0-based. */
      statementIndex?: number;
      /** True when running the same batch again may succeed (serialization failure, deadlock). */
      retryable?: boolean;
      /** commit_unknown: the transaction to ask GET /transactions/{id} about. */
      transactionId?: string;
    };
  };
}

/** An error the bridge raises about the HTTP request itself, before any gRPC call. */
export function requestError(httpStatus: number, code: string, message: string): HttpError {
  const grpcStatus = httpStatus === 413 ? "RESOURCE_EXHAUSTED" : "INVALID_ARGUMENT";
  return { status: httpStatus, headers: {}, body: { error: { code, message, grpcStatus } } };
}

export function fromGrpcError(error: ServiceError): HttpError {
  const bin = error.metadata?.get("querygate-error-bin")[0];
  const detail = bin instanceof Buffer ? QueryError.decode(bin) : undefined;
  const code = error.code ?? status.UNKNOWN;
  const kind = detail ? detail.kind : (kindOfGrpcJsStatus[code] ?? "");
  const httpStatus = httpStatusForKind[kind] ?? httpStatusForCode[code] ?? 500;
  const headers: Record<string, string> = {};
  if (httpStatus === 401) headers["www-authenticate"] = "Bearer";
  if (httpStatus === 503 || httpStatus === 429) headers["retry-after"] = "1";
  const grpcStatus = status[code] ?? "UNKNOWN";
  return {
    status: httpStatus,
    headers,
    body: {
      error: {
        code: detail?.sqlstate || kind || grpcStatus.toLowerCase(),
        // grpc-js's own failures (connection refused, ...) carry their text in details.
        message: detail?.message || error.details || "request failed",
        ...(detail?.detail ? { detail: detail.detail } : {}),
        ...(detail?.hint ? { hint: detail.hint } : {}),
        ...(detail?.position ? { position: detail.position } : {}),
        grpcStatus,
        ...(detail?.statementIndex !== undefined ? { statementIndex: detail.statementIndex } : {}),
        ...(detail?.transactionId ? { transactionId: detail.transactionId } : {}),
      },
    },
  };
}

/** Answers with `error`: its status, headers and JSON body. */
export function sendError(c: Context, error: HttpError): Response {
  for (const [name, value] of Object.entries(error.headers)) c.header(name, value);
  return c.json(error.body, error.status as 400);
}
