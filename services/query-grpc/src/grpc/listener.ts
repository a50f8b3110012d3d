// query-grpc's TCP listener, in front of grpc-js. grpc-js closes idle HTTP/2
// sessions (grpc.max_connection_idle_ms), but a connection that never sends
// the HTTP/2 preface is only asked to go away, never closed: 2,000 such
// sockets stayed open for good. Here a connection must send its first bytes
// within `handshakeMs`, or it is closed; then it is handed to grpc-js.
import { createServer, type Server as NetServer } from "node:net";
import { type Server, ServerCredentials } from "@grpc/grpc-js";

export interface Listener {
  readonly port: number;
  /** Stops accepting connections; those already handed to grpc-js are its to close. */
  close(): Promise<void>;
}

export async function listen(
  grpc: Server,
  host: string,
  port: number,
  handshakeMs: number,
): Promise<Listener> {
  const injector = grpc.createConnectionInjector(ServerCredentials.createInsecure());
  const tcp: NetServer = createServer((socket) => {
    socket.on("error", () => socket.destroy());
    const timer = setTimeout(() => socket.destroy(), handshakeMs);
    socket.once("data", (first) => {
      clearTimeout(timer);
      // Put the bytes back: HTTP/2 reads the preface from the socket's buffer.
      socket.pause();
      socket.unshift(first);
      injector.injectConnection(socket);
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
    // Not waiting for close's callback: it fires only once grpc-js has closed every connection.
    close: async () => {
      tcp.close();
    },
  };
}
