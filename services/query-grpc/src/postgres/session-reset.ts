// Which pooled connections are known to carry nothing of an earlier caller's
// session (settings, temp tables, prepared statements, advisory locks,
// LISTEN). Each request ends with DISCARD ALL, so what it took does not
// outlive it (a session advisory lock held by an idle pooled backend blocked
// everyone else for the pool's idle timeout); a connection whose request
// ended that way, or that is new, needs no DISCARD ALL ahead of the next one.
// The rollback both engines end a failed transaction with lives here too,
// since it resets the session in the same round trip.
import type pg from "pg";
import { Exchange } from "./exchange.js";

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

export interface RollbackOutcome {
  /** PostgreSQL answered within the time allowed, with or without an error. */
  settled: boolean;
  /** It answered without an error: the transaction is over (and the session reset). */
  ok: boolean;
}

/**
 * ROLLBACK, then DISCARD ALL when `reset`, in one round trip: behind a
 * transaction-mode pooler a second round trip could reach another server
 * connection and leave this one's advisory locks and prepared statements in
 * place. Used by both engines (executor.ts, open-transaction.ts); `first`
 * is what the engine must settle before (its own portal), inside the same
 * time limit, its failure ignored.
 */
export async function rollbackAndReset(
  client: pg.PoolClient,
  reset: boolean,
  ms: number,
  first?: () => Promise<unknown>,
): Promise<RollbackOutcome> {
  let ok = false;
  const answered = (async () => {
    await first?.().catch(() => {});
    const ending = new Exchange([{ sql: "ROLLBACK" }, ...(reset ? [{ sql: DISCARD_ALL }] : [])]);
    client.query(ending as unknown as pg.QueryConfig);
    await ending.done();
    ok = true;
    if (reset) markSessionClean(client);
  })().then(
    () => true,
    () => true,
  );
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return { settled: await Promise.race([answered, timedOut]), ok };
  } finally {
    clearTimeout(timer);
  }
}
