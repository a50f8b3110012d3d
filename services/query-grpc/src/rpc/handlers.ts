// The QueryService: which handler serves which RPC.
import type {
  ExecuteRequest,
  ExecuteResponse,
  QueryServiceService,
} from "../../../../proto/gen/querygate/v1/query.js";
import { executeBatchHandler } from "./batch.js";
import type { QueryServiceDeps } from "./deps.js";
import { abort, handleExecute } from "./execute.js";
import { registryHandlers } from "./registry.js";
import type { ServerWritableCall, ServiceHandlers } from "./server-call.js";
import { sessionHandler } from "./session.js";

export function queryServiceHandlers(deps: QueryServiceDeps): ServiceHandlers<typeof QueryServiceService> {
  return {
    execute(call: ServerWritableCall<ExecuteRequest, ExecuteResponse>) {
      const controller = new AbortController();
      const done = handleExecute(call, deps, controller);
      deps.track(done, (reason) => abort(controller, reason, "shutdown", deps.metrics));
    },
    executeBatch: executeBatchHandler(deps),
    session: sessionHandler(deps),
    ...registryHandlers(deps),
  };
}
