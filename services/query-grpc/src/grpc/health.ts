// grpc.health.v1.Health: SERVING only while the database answers and the
// process is not shutting down. Kubernetes' native gRPC probes call Check.
import { status } from "@grpc/grpc-js";
import {
  type HealthCheckRequest,
  type HealthCheckResponse,
  type HealthService,
  HealthCheckResponse_ServingStatus as Serving,
} from "../../../../proto/gen/grpc/health/v1/health.js";
import { QueryServiceService } from "../../../../proto/gen/querygate/v1/query.js";
import type { ServerWritableCall, ServiceHandlers } from "../rpc/server-call.js";

export { Serving };

/** The names Check answers for: "" is the server as a whole. */
export const HEALTH_SERVICES = ["", QueryServiceService.execute.path.split("/")[1] as string];

export class HealthState {
  private current = Serving.NOT_SERVING;
  private shuttingDown = false;
  private readonly watchers = new Set<(s: Serving) => void>();

  get status(): Serving {
    return this.current;
  }

  /** Records the latest database check; ignored once shutdown began. */
  setDatabaseReachable(reachable: boolean): void {
    if (this.shuttingDown) return;
    this.update(reachable ? Serving.SERVING : Serving.NOT_SERVING);
  }

  beginShutdown(): void {
    this.shuttingDown = true;
    this.update(Serving.NOT_SERVING);
  }

  watch(listener: (s: Serving) => void): () => void {
    this.watchers.add(listener);
    return () => this.watchers.delete(listener);
  }

  private update(next: Serving): void {
    if (next === this.current) return;
    this.current = next;
    for (const listener of this.watchers) listener(next);
  }
}

export function healthHandlers(state: HealthState): ServiceHandlers<typeof HealthService> {
  const known = (service: string) => HEALTH_SERVICES.includes(service);
  return {
    check(call, callback) {
      if (!known(call.request.service)) {
        callback({
          code: status.NOT_FOUND,
          details: `unknown service ${JSON.stringify(call.request.service)}`,
        });
        return;
      }
      callback(null, { status: state.status });
    },
    watch(call: ServerWritableCall<HealthCheckRequest, HealthCheckResponse>) {
      const send = (s: Serving) =>
        call.write({ status: known(call.request.service) ? s : Serving.SERVICE_UNKNOWN });
      send(state.status);
      const stop = state.watch(send);
      call.on("cancelled", stop);
    },
    list(_call, callback) {
      callback(null, {
        statuses: Object.fromEntries(HEALTH_SERVICES.map((s) => [s, { status: state.status }])),
      });
    },
  };
}
