// query-grpc's TCP listener, in front of the gRPC server. The server closes
// idle HTTP/2 sessions (as grpc.max_connection_idle_ms did), but a connection
// that never sends the HTTP/2 preface is no session yet: under grpc-js 2,000
// such sockets stayed open for good. Here a connection must send its first
// bytes within `handshakeMs`, or it is closed; then it is handed on.
import { createServer, type Server as NetServer, type Socket } from "node:net";

export interface Listener {
  readonly port: number;
  /** Stops accepting connections; those already handed on are the server's to close. */
  close(): Promise<void>;
}

export async function listen(
  accept: (socket: Socket) => void,
  host: string,
  port: number,
  handshakeMs: number,
): Promise<Listener> {
  const tcp: NetServer = createServer((socket) => {
    socket.on("error", () => socket.destroy());
    const timer = setTimeout(() => socket.destroy(), handshakeMs);
    socket.once("data", (first) => {
      clearTimeout(timer);
      // Put the bytes back: HTTP/2 reads the preface from the socket's buffer.
      socket.pause();
      socket.unshift(first);
      accept(socket);
    });
    socket.once("close", () => clearTimeout(timer));
  });
  await new Promise<void>((resolve, reject) => {
    tcp.once("error", reject);
    tcp.listen(port, host, () => {
      tcp.off("error", reject);
      resolve();
    });
  });
  const address = tcp.address();
  return {
    port: typeof address === "object" && address ? address.port : port,
    // Not waiting for close's callback: it fires only once the server has closed every connection.
    close: async () => {
      tcp.close();
    },
  };
}
