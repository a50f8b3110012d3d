// POST /query with "statements": several statements in one transaction,
// through querygate.v1.QueryService/ExecuteBatch. The answer is
// {"results": [...]}, each result shaped like the single-statement answer,
// and exists only if the transaction committed. A failure names its
// statement (error.statementIndex); a serialization failure or deadlock
// (409) says the whole batch may be retried, since all of it was rolled back.
import type { Metadata, ServiceError } from "@grpc/grpc-js";
import type { Context } from "hono";
import { z } from "zod";
import {
  type ExecuteBatchRequest,
  type ExecuteBatchResponse,
  IsolationLevel,
  type QueryServiceClient,
  type StatementResult,
} from "../../../../proto/gen/querygate/v1/query.js";
import { rowEncoder } from "../encoders/json.js";
import { fromGrpcError, type HttpError, requestError, sendError } from "../errors.js";
import { callMetadata } from "../request/call-metadata.js";
import { LSN_HEADER, lsnOf } from "../request/lsn-header.js";
import { queryBody, toValue } from "../request/query-request.js";
import { cancelWhenClientLeaves, passedOnHeaders } from "../upstream/grpc-client.js";

const ISOLATION = {
  "read committed": IsolationLevel.ISOLATION_LEVEL_READ_COMMITTED,
  "repeatable read": IsolationLevel.ISOLATION_LEVEL_REPEATABLE_READ,
  serializable: IsolationLevel.ISOLATION_LEVEL_SERIALIZABLE,
} as const;

export const batchBody = z.object({
  statements: z
    .array(queryBody.pick({ query: true, params: true, maxRows: true, timeoutMs: true }), {
      error: 'statements: expected an array of {"query", "params"} objects',
    })
    .min(1, "statements: must not be empty"),
  isolation: z
    .enum(Object.keys(ISOLATION) as [keyof typeof ISOLATION], {
      error: `isolation: expected one of ${Object.keys(ISOLATION).join(", ")}`,
    })
    .optional(),
  readOnly: z.boolean().optional(),
  deferrable: z.boolean().optional(),
  maxRows: queryBody.shape.maxRows,
  timeoutMs: queryBody.shape.timeoutMs,
  applicationTag: queryBody.shape.applicationTag,
});

export type BatchBody = z.infer<typeof batchBody>;

/** A body with "statements" is a batch; anything else is the single-statement body. */
export function isBatchBody(json: unknown): boolean {
  return typeof json === "object" && json !== null && !Array.isArray(json) && "statements" in json;
}

export function toExecuteBatchRequest(body: BatchBody): ExecuteBatchRequest {
  return {
    statements: body.statements.map((statement) => ({
      sql: statement.query,
      params: statement.params.map(toValue),
      maxRows: String(statement.maxRows ?? 0),
      timeoutMs: statement.timeoutMs ?? 0,
    })),
    options: {
      isolation: body.isolation ? ISOLATION[body.isolation] : IsolationLevel.ISOLATION_LEVEL_UNSPECIFIED,
      readOnly: body.readOnly ?? false,
      deferrable: body.deferrable ?? false,
      timeoutMs: body.timeoutMs ?? 0,
      applicationTag: body.applicationTag ?? "",
      maxRows: String(body.maxRows ?? 0),
    },
  };
}

/** Validates the batch body, runs it, and answers with every result or the error. */
export async function executeBatch(
  c: Context,
  upstream: QueryServiceClient,
  json: unknown,
  requestId: string,
): Promise<Response> {
  const parsed = batchBody.safeParse(json);
  if (!parsed.success) {
    const message = parsed.error.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`).join("; ");
    return sendError(c, requestError(400, "invalid_request", message));
  }
  const metadata = callMetadata((name) => c.req.header(name), requestId);

  let headers: Record<string, string> = {};
  let response: ExecuteBatchResponse;
  let trailer: Promise<Metadata | undefined> = Promise.resolve(undefined);
  try {
    response = await new Promise((resolve, reject) => {
      const call = upstream.executeBatch(toExecuteBatchRequest(parsed.data), metadata, (error, answer) =>
        error ? reject(error) : resolve(answer as ExecuteBatchResponse),
      );
      // The trailer (a write's commit position) comes with the status.
      trailer = new Promise((got) => call.once("status", (s: { metadata?: Metadata }) => got(s.metadata)));
      // A client that goes away cancels the batch, which rolls it back unless COMMIT already ran.
      cancelWhenClientLeaves(c.req.raw.signal, call);
      headers = passedOnHeaders(call);
    });
  } catch (error) {
    return sendError(c, batchError(fromGrpcError(error as ServiceError)));
  }
  const body = `{"results":[${response.results.map(resultJson).join(",")}]}`;
  const lsn = lsnOf(await trailer);
  return c.body(body, 200, {
    ...headers,
    "content-type": "application/json",
    ...(lsn ? { [LSN_HEADER]: lsn } : {}),
  });
}

/** One statement's result, in the single-statement answer's shape. */
function resultJson(result: StatementResult): string {
  const encoder = rowEncoder(result.columns);
  const rows = result.rows.map((row) => encoder.object(row.values, row.nullColumns));
  const columns = JSON.stringify(
    result.columns.map((col) => ({ name: col.name, type: col.typeName, typeOid: col.typeOid })),
  );
  const footer = result.footer;
  const truncated = footer?.truncated ? `,"truncated":true` : "";
  return `{"result":${result.columns.length > 0 ? `[${rows.join(",")}]` : `"OK"`},"columns":${columns},"command":${JSON.stringify(footer?.command ?? "")},"rowCount":${footer?.rowCount ?? 0}${truncated}}`;
}

/** SQLSTATEs after which running the same batch again may well succeed. */
const RETRYABLE = new Set(["40001", "40P01"]);

function batchError(error: HttpError): HttpError {
  if (!RETRYABLE.has(error.body.error.code)) return error;
  const hint = "The whole batch was rolled back; it may be retried as a whole.";
  return {
    ...error,
    body: {
      error: {
        ...error.body.error,
        hint: error.body.error.hint ? `${error.body.error.hint} ${hint}` : hint,
        retryable: true,
      },
    },
  };
}
