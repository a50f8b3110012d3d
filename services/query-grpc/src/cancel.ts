// PostgreSQL's out-of-band cancel: a CancelRequest on a fresh socket naming the
// backend's process id and secret key. It needs no privileges and no free pool
// connection, so it works even when the pool is exhausted.
import { connect } from "node:net";

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
