// What of an HTTP request travels to query-grpc as gRPC metadata: the
// caller's credentials, the request id, a read-your-writes token and an
// idempotency key. Every route that calls query-grpc builds it here.
import { Metadata } from "@grpc/grpc-js";
import { forwardIdempotencyKey } from "../upstream/grpc-client.js";
import { forwardLsn, LSN_HEADER } from "./lsn-header.js";

export function callMetadata(header: (name: string) => string | undefined, requestId: string): Metadata {
  const metadata = new Metadata();
  const authorization = header("authorization");
  if (authorization) metadata.set("authorization", authorization);
  metadata.set("x-request-id", requestId);
  forwardLsn(header(LSN_HEADER), metadata);
  forwardIdempotencyKey(metadata, header("idempotency-key"));
  return metadata;
}
