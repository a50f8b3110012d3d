// Starts the bridge's HTTP server from its configuration. Tests start it on port 0.
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { serve } from "@hono/node-server";
import type { Logger } from "../../shared/src/logger.js";
import type { BridgeConfig } from "./config.js";
import { BufferBudget } from "./encoders/buffer-budget.js";
import { BridgeMetrics } from "./metrics.js";
import { createApp } from "./routes/app.js";
import { SendTimeout } from "./send-timeout.js";
import { ExecuteClient } from "./upstream/execute-call.js";
import { createUpstream } from "./upstream/grpc-client.js";

export interface BridgeServer {
  readonly port: number;
  /**
   * Stops the bridge (what SIGTERM runs). At once: /readyz fails, the listener
   * closes (new connections are refused), idle kept-alive connections are
   * closed, and every answer not yet started says `connection: close`. A
   * request that still arrives on a kept-alive connection is served, not
   * refused: nothing about it is wrong, the caller gets its answer instead of a
   * 503 it may not retry, and each connection carries at most one more
   * request, so draining stays bounded. Whatever is in flight gets `graceMs` to
   * finish; only what outlives that is cut.
   */
  close(graceMs?: number): Promise<void>;
}

/** Each connection's responses not yet closed, oldest first. */
const openResponses = new WeakMap<Socket, Set<ServerResponse>>();

/**
 * Node never closes a response queued behind another on a pipelined
 * connection when that connection goes, nor aborts its request's signal:
 * its call would run on, and what it holds (a budget share, a watch) stay
 * forever. When the connection closes, each such response gets the "close"
 * a disconnect gives the one in front. One listener per connection, however
 * many requests it carries.
 */
function closeWithConnection(req: IncomingMessage, res: ServerResponse): void {
  const socket = req.socket;
  let open = openResponses.get(socket);
  if (!open) {
    const responses = new Set<ServerResponse>();
    open = responses;
    openResponses.set(socket, responses);
    socket.once("close", () => {
      for (const queued of responses) if (!queued.socket && !queued.writableFinished) queued.emit("close");
      responses.clear();
    });
  }
  const responses = open;
  responses.add(res);
  res.once("close", () => responses.delete(res));
}

export async function startBridge(config: Readonly<BridgeConfig>, logger: Logger): Promise<BridgeServer> {
  const upstream = createUpstream(config.QUERY_GRPC_TARGET);
  const executeClient = new ExecuteClient(config.QUERY_GRPC_TARGET);
  let draining = false;
  const metrics = new BridgeMetrics();
  const jsonBudget = new BufferBudget(config.MAX_BUFFERED_JSON_BYTES, () => metrics.bufferedJsonWaits.inc());
  metrics.bufferedJsonHeld(() => jsonBudget.held);
  const app = createApp({
    upstream,
    executeClient,
    logger,
    metrics,
    maxBodyBytes: config.MAX_BODY_BYTES,
    maxJsonResponseBytes: config.MAX_JSON_RESPONSE_BYTES,
    jsonBudget,
    ready: () => !draining,
  });
  const server = await new Promise<Server>((resolve) => {
    const s = serve({ fetch: app.fetch, hostname: config.HOST, port: config.PORT }, () =>
      resolve(s as Server),
    );
  });
  const unanswered = new Set<ServerResponse>();
  const sendTimeout = new SendTimeout(config.SEND_TIMEOUT_MS, (res) => {
    metrics.sendTimeouts.inc();
    logger.warn(
      { method: res.req.method, url: res.req.url, sendTimeoutMs: config.SEND_TIMEOUT_MS },
      "caller stopped reading its response: cut",
    );
  });
  // Ahead of Hono's listener, which may write a response before returning.
  server.prependListener("request", (req: IncomingMessage, res: ServerResponse) => {
    metrics.observe(req, res);
    if (draining) res.setHeader("connection", "close");
    unanswered.add(res);
    sendTimeout.watch(res);
    closeWithConnection(req, res);
    res.on("close", () => {
      unanswered.delete(res);
      // A stream whose headers went out before draining began left its connection open: close it now it is idle.
      if (draining) server.closeIdleConnections();
    });
  });
  const port = (server.address() as AddressInfo).port;
  logger.info({ host: config.HOST, port, upstream: config.QUERY_GRPC_TARGET }, "http-bridge listening");
  if (!config.UPSTREAM_AUTH) {
    logger.warn(
      { host: config.HOST, allowUnauthenticated: config.ALLOW_UNAUTHENTICATED },
      "query-grpc credentials not declared (UPSTREAM_AUTH=false): listening on loopback only unless ALLOW_UNAUTHENTICATED",
    );
  }

  return {
    port,
    async close(graceMs = 0) {
      draining = true;
      for (const res of unanswered) if (!res.headersSent) res.setHeader("connection", "close");
      // Stops listening and closes idle connections; calls back once the last connection has ended.
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      let timer: NodeJS.Timeout | undefined;
      const graceOver = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, graceMs);
      });
      await Promise.race([closed, graceOver]);
      clearTimeout(timer);
      if (unanswered.size > 0) logger.warn({ cut: unanswered.size }, "grace period over: cutting responses");
      server.closeAllConnections();
      await closed;
      sendTimeout.close();
      upstream.close();
      executeClient.close();
      logger.info("http-bridge stopped");
    },
  };
}
