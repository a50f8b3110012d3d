// Which pooled connections are known to carry nothing of an earlier caller's
// session (settings, temp tables, prepared statements, advisory locks,
// LISTEN). Each request ends with DISCARD ALL, so what it took does not
// outlive it (a session advisory lock held by an idle pooled backend blocked
// everyone else for the pool's idle timeout); a connection whose request
// ended that way, or that is new, needs no DISCARD ALL ahead of the next one.
import type pg from "pg";

const clean = new WeakSet<object>();

/** Call once the session is known to be reset (new, or after DISCARD ALL). */
export function markSessionClean(client: pg.ClientBase): void {
  clean.add(client);
}

/** True if `client` was clean; from now on it is in use and no longer counts as clean. */
export function takeSessionClean(client: pg.ClientBase): boolean {
  return clean.delete(client);
}

export const DISCARD_ALL = "DISCARD ALL";
