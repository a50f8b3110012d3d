// Read-your-writes across the bridge, as header mapping only: the caller's
// Querygate-Lsn request header travels as gRPC metadata x-querygate-lsn, and
// the x-querygate-lsn trailer of a write's answer comes back as the
// Querygate-Lsn response header. What the position means, and whether it is
// well formed, is query-grpc's business.
import type { Metadata } from "@grpc/grpc-js";

export const LSN_HEADER = "querygate-lsn";
const LSN_METADATA = "x-querygate-lsn";

/**
 * Puts the caller's token into the call's metadata. gRPC metadata takes only
 * printable ASCII, so anything else is passed as a value query-grpc refuses
 * as malformed, rather than making grpc-js throw here.
 */
export function forwardLsn(header: string | undefined, metadata: Metadata): void {
  if (header === undefined || header === "") return;
  metadata.set(LSN_METADATA, /^[\x20-\x7e]{1,100}$/.test(header) ? header : "malformed");
}

/** The commit position in a call's trailing metadata, if any. */
export function lsnOf(trailer: Metadata | undefined): string | undefined {
  const value = trailer?.get(LSN_METADATA)[0];
  return typeof value === "string" && value !== "" ? value : undefined;
}
