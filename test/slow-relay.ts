// A TCP relay between query-grpc and the test PostgreSQL that is slow on purpose, for tests that need
// the network to misbehave in one precise way: slow to connect, or slow to
// deliver what was already sent on the connections open at that moment.
import { connect, createServer, type Socket } from "node:net";

export interface Relay {
  readonly port: number;
  /** New connections wait this long before any byte passes (a slow connect). */
  connectDelayMs: number;
  /** From now on, bytes to PostgreSQL on connections already open are held this long. */
  delayOpenConnections(ms: number): void;
  close(): Promise<void>;
}

export async function startRelay(toPort: number): Promise<Relay> {
  const open = new Set<{ inbound: Socket; delayMs: number }>();
  const relay: Relay = {
    port: 0,
    connectDelayMs: 0,
    delayOpenConnections(ms) {
      for (const connection of open) connection.delayMs = ms;
    },
    close: () =>
      new Promise((resolve) => {
        for (const { inbound } of open) inbound.destroy();
        server.close(() => resolve());
      }),
  };
  const server = createServer((inbound) => {
    const connection = { inbound, delayMs: 0 };
    open.add(connection);
    inbound.pause();
    const outbound = connect(toPort, "127.0.0.1");
    const end = () => {
      open.delete(connection);
      inbound.destroy();
      outbound.destroy();
    };
    inbound.on("error", end).on("close", end);
    outbound.on("error", end).on("close", end);
    outbound.pipe(inbound);
    inbound.on("data", (chunk) => {
      if (connection.delayMs === 0) outbound.write(chunk);
      else setTimeout(() => outbound.write(chunk), connection.delayMs);
    });
    setTimeout(() => inbound.resume(), relay.connectDelayMs);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  (relay as { port: number }).port = (server.address() as { port: number }).port;
  return relay;
}
