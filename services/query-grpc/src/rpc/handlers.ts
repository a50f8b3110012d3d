// The QueryService: which handler serves which RPC.
import type { ServerWritableStream } from "@grpc/grpc-js";
import type {
  ExecuteRequest,
  ExecuteResponse,
  QueryServiceServer,
} from "../../../../proto/gen/querygate/v1/query.js";
import { executeBatchHandler } from "./batch.js";
import type { QueryServiceDeps } from "./deps.js";
import { abort, handleExecute } from "./execute.js";
import { registryHandlers } from "./registry.js";
import { sessionHandler } from "./session.js";

export function queryServiceHandlers(deps: QueryServiceDeps): QueryServiceServer {
  return {
    execute(call: ServerWritableStream<ExecuteRequest, ExecuteResponse>) {
      const controller = new AbortController();
      const done = handleExecute(call, deps, controller);
      deps.track(done, (reason) => abort(controller, reason, "shutdown", deps.metrics));
    },
    executeBatch: executeBatchHandler(deps),
    session: sessionHandler(deps),
    ...registryHandlers(deps),
  };
}
