// What querygate writes into PostgreSQL's application_name for each
// transaction, and how it reads it back: the registry (ListQueries,
// CancelQuery) has nothing else to go on, since it reads pg_stat_activity and
// the replicas share no state. The name says who (a hash of the caller's
// name), which request, and the caller's free-text tag if it fits:
//
//   querygate[:<tag>] <8 hex of sha256(caller name)>/<request id>
//
// A caller's own SQL can overwrite its backend's application_name (set_config
// is not privileged), so all it can ever do is claim another caller's hash
// for its own statement: that shows its own statement to, and lets it be
// cancelled by, the caller it names. It cannot make anyone else's statement
// look like its own. PostgreSQL keeps 63 bytes of the name.
import { createHash } from "node:crypto";

/** Callers seen lately, by name: the hash is taken once per caller, not per request. */
const hashes = new Map<string, string>();
const MAX_HASHES = 1000;

/** Longest request id that fits whole beside the prefix and the hash (63 - 19). */
export const MAX_REQUEST_ID_LENGTH = 44;
const MAX_NAME = 63;

export function callerHash(callerName: string): string {
  let hash = hashes.get(callerName);
  if (hash === undefined) {
    hash = createHash("sha256").update(callerName).digest("hex").slice(0, 8);
    if (hashes.size >= MAX_HASHES) hashes.clear();
    hashes.set(callerName, hash);
  }
  return hash;
}

/** The application_name of a request's transaction; the tag is shortened (or left out) to fit. */
export function applicationName(callerName: string, requestId: string, tag: string): string {
  const tail = ` ${callerHash(callerName)}/${requestId}`;
  // A space or slash in the tag would make the name ambiguous to read back.
  const clean = tag.replace(/[^\x21-\x7e]|\//g, "").slice(0, 16);
  const room = MAX_NAME - "querygate".length - tail.length - 1;
  const kept = room > 0 ? clean.slice(0, room) : "";
  return `querygate${kept ? `:${kept}` : ""}${tail}`.slice(0, MAX_NAME);
}

export interface NamedRequest {
  callerHash: string;
  requestId: string;
  tag: string;
}

const PATTERN = /^querygate(?::(\S*))? ([0-9a-f]{8})\/([A-Za-z0-9._:-]+)$/;

/** The request behind an application_name, or undefined when querygate did not write it. */
export function parseApplicationName(name: string): NamedRequest | undefined {
  const match = PATTERN.exec(name);
  if (!match) return undefined;
  return { tag: match[1] ?? "", callerHash: match[2] as string, requestId: match[3] as string };
}
