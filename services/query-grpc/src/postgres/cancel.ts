// PostgreSQL's out-of-band cancel: a CancelRequest on a fresh socket naming the
// backend's process id and secret key. It needs no privileges and no free pool
// connection, so it works even when the pool is exhausted.
//
// One CancelRequest is not enough. PostgreSQL drops a cancel that lands while
// the backend is still reading the statement (before it starts executing), so
// a cancel sent a moment after the statement can be lost and the statement
// then runs to its end with nobody waiting for it. stopStatement() repeats the
// cancel while the statement is still running and, as a last resort, closes
// the connection; every abort path (Execute, ExecuteBatch, Session) uses it.
import { connect } from "node:net";
import type pg from "pg";
import { isServerError } from "../errors.js";

const CANCEL_REQUEST_CODE = 80877102;

export interface BackendKey {
  host: string;
  port: number;
  processID: number;
  secretKey: number;
}

export function sendCancelRequest(key: BackendKey, timeoutMs = 2000): Promise<void> {
  return new Promise((resolve) => {
    const packet = Buffer.alloc(16);
    packet.writeInt32BE(16, 0);
    packet.writeInt32BE(CANCEL_REQUEST_CODE, 4);
    packet.writeInt32BE(key.processID, 8);
    packet.writeInt32BE(key.secretKey, 12);
    const socket = connect({ host: key.host, port: key.port });
    socket.setTimeout(timeoutMs, () => socket.destroy());
    socket.on("connect", () => socket.end(packet));
    socket.on("error", () => socket.destroy());
    socket.on("close", () => resolve());
  });
}

export function backendKey(client: pg.PoolClient): BackendKey {
  const c = client as unknown as { host: string; port: number; processID: number; secretKey: number };
  return { host: c.host, port: c.port, processID: c.processID, secretKey: c.secretKey };
}

/** Delays between repeated cancels; their sum stays well under any settle timeout. */
const RETRY_DELAYS_MS = [25, 50, 100, 200, 400, 800];

/**
 * Stops whatever `client` is running for a caller who went away: cancels now,
 * again while `busy()` stays true, and destroys the connection if it is still
 * busy after `settleMs` (PostgreSQL then ends the statement when it next
 * writes to the closed socket, or at client_connection_check_interval if the
 * database sets it). Returns a function
 * that ends the retries once the statement has settled.
 */
export function stopStatement(client: pg.PoolClient, busy: () => boolean, settleMs: number): () => void {
  const key = backendKey(client);
  const started = Date.now();
  let attempt = 0;
  let timer: NodeJS.Timeout | undefined;
  const tick = () => {
    if (!busy()) return;
    if (Date.now() - started >= settleMs) {
      const stream = (client as unknown as { connection?: { stream?: { destroy(e?: Error): void } } })
        .connection?.stream;
      stream?.destroy(new Error("statement did not stop after cancel; connection closed"));
      return;
    }
    void sendCancelRequest(key);
    const delay = RETRY_DELAYS_MS[Math.min(attempt++, RETRY_DELAYS_MS.length - 1)] ?? 800;
    timer = setTimeout(tick, Math.min(delay, Math.max(1, settleMs - (Date.now() - started))));
  };
  tick();
  return () => clearTimeout(timer);
}

/**
 * True for PostgreSQL's query_canceled (57014): a cancel from outside
 * (CancelQuery on any replica, pg_cancel_backend) or statement_timeout. A
 * canceller may send again, and a late cancel would hit whatever runs next on
 * the backend, so the engines discard such a connection, as after their own cancel.
 */
export function cancelledInDatabase(error: unknown): boolean {
  return isServerError(error) && (error as { code: string }).code === "57014";
}
