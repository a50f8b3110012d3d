// The registry over HTTP: GET /queries, DELETE /queries/{id} and
// GET /transactions/{xid}, each one unary call to query-grpc (ListQueries,
// CancelQuery, TransactionStatus), credentials passed through. Which
// statements a caller may see or cancel is query-grpc's decision.
import { Metadata, type ServiceError } from "@grpc/grpc-js";
import type { Context, Hono } from "hono";
import {
  type CancelQueryRequest,
  type CancelQueryResponse,
  type ListQueriesRequest,
  type ListQueriesResponse,
  type QueryServiceClient,
  TransactionState,
  type TransactionStatusRequest,
  type TransactionStatusResponse,
} from "../../../../proto/gen/querygate/v1/query.js";
import { fromGrpcError, type HttpError } from "../errors.js";
import { cancelWhenClientLeaves } from "../upstream/grpc-client.js";

const STATE_NAMES: Record<number, string> = {
  [TransactionState.TRANSACTION_STATE_COMMITTED]: "committed",
  [TransactionState.TRANSACTION_STATE_ABORTED]: "aborted",
  [TransactionState.TRANSACTION_STATE_IN_PROGRESS]: "in progress",
};

type Unary<Req, Res> = (
  request: Req,
  metadata: Metadata,
  callback: (error: ServiceError | null, response?: Res) => void,
) => { cancel(): void; once(event: "status", listener: () => void): unknown };

// biome-ignore lint/suspicious/noExplicitAny: any Hono env carrying requestId
export function registryRoutes(app: Hono<any>, upstream: QueryServiceClient): void {
  app.get("/queries", (c) =>
    call<ListQueriesRequest, ListQueriesResponse>(
      c,
      upstream.listQueries.bind(upstream),
      { caller: c.req.query("caller") ?? "" },
      (answer) => ({
        queries: answer.queries,
      }),
    ),
  );
  app.delete("/queries/:id", (c) =>
    call<CancelQueryRequest, CancelQueryResponse>(
      c,
      upstream.cancelQuery.bind(upstream),
      { requestId: c.req.param("id") },
      (answer) => answer,
    ),
  );
  app.get("/transactions/:xid", (c) =>
    call<TransactionStatusRequest, TransactionStatusResponse>(
      c,
      upstream.transactionStatus.bind(upstream),
      { transactionId: c.req.param("xid") },
      (answer) => ({ transactionId: c.req.param("xid"), state: STATE_NAMES[answer.state] ?? "unknown" }),
    ),
  );
}

async function call<Req, Res>(
  c: Context,
  method: Unary<Req, Res>,
  request: Req,
  toJson: (answer: Res) => unknown,
): Promise<Response> {
  const metadata = new Metadata();
  const authorization = c.req.header("authorization");
  if (authorization) metadata.set("authorization", authorization);
  metadata.set("x-request-id", c.get("requestId"));
  try {
    const answer = await new Promise<Res>((resolve, reject) => {
      const pending = method(request, metadata, (error, response) =>
        error ? reject(error) : resolve(response as Res),
      );
      cancelWhenClientLeaves(c.req.raw.signal, pending as never);
    });
    return c.json(toJson(answer) as object);
  } catch (error) {
    const failure: HttpError = fromGrpcError(error as ServiceError);
    for (const [name, value] of Object.entries(failure.headers)) c.header(name, value);
    return c.json(failure.body, failure.status as 400);
  }
}
