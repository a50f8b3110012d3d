// Connections that carry no calls do not stay open forever: a flood of idle
// TCP connections (or HTTP/2 sessions a client forgot) is closed after
// GRPC_IDLE_TIMEOUT_MS, so it cannot pin file descriptors and memory.
import http2 from "node:http2";
import { connect, type Socket } from "node:net";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { eventually, execute, grpcClient, startGrpc } from "../../../../test/helpers.js";

const t = suite("idle connections");

t("idle TCP connections and idle HTTP/2 sessions are closed after the idle timeout", async () => {
  const server = await startGrpc({ GRPC_IDLE_TIMEOUT_MS: "500" });
  const sockets: Socket[] = [];
  let closed = 0;
  for (let i = 0; i < 200; i++) {
    const socket = connect(server.port, "127.0.0.1");
    socket.on("error", () => {});
    socket.on("close", () => closed++);
    sockets.push(socket);
  }
  const sessions = Array.from({ length: 5 }, () => http2.connect(`http://${server.target}`));
  let sessionsClosed = 0;
  for (const session of sessions) {
    session.on("error", () => {});
    session.on("close", () => sessionsClosed++);
  }
  await eventually(
    () => closed === sockets.length && sessionsClosed === sessions.length,
    10_000,
    "idle connections to be closed",
  );
  // A client with calls to make just connects again.
  const client = grpcClient(server.target);
  assert.equal((await execute(client, { sql: "select 1" })).rows, [["1"]]);
});

t.run();
