// The bridge's one gRPC client to query-grpc.
import { credentials } from "@grpc/grpc-js";
import { QueryServiceClient } from "../../../proto/gen/querygate/v1/query.js";

export function createUpstream(target: string): QueryServiceClient {
  return new QueryServiceClient(target, credentials.createInsecure(), {
    // Results stream in batches; no single message should hit the 4 MiB default,
    // but a wide row could, so allow larger messages from our own backend.
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
    "grpc.keepalive_time_ms": 30_000,
    "grpc.service_config": JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] }),
  });
}
