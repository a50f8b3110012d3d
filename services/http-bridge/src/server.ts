// Starts the bridge's HTTP server from its configuration. Tests start it on port 0.
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import type { Logger } from "../../shared/src/logger.js";
import { createApp } from "./app.js";
import type { BridgeConfig } from "./config.js";
import { BridgeMetrics } from "./metrics.js";
import { createUpstream } from "./upstream.js";

export interface BridgeServer {
  readonly port: number;
  /** /readyz fails at once, in-flight responses get `graceMs` to finish, then the server stops. */
  close(graceMs?: number): Promise<void>;
}

export async function startBridge(config: Readonly<BridgeConfig>, logger: Logger): Promise<BridgeServer> {
  const upstream = createUpstream(config.QUERY_GRPC_TARGET);
  let ready = true;
  let inFlight = 0;
  const metrics = new BridgeMetrics();
  const app = createApp({
    upstream,
    logger,
    metrics,
    maxBodyBytes: config.MAX_BODY_BYTES,
    maxJsonResponseBytes: config.MAX_JSON_RESPONSE_BYTES,
    ready: () => ready,
  });
  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const s = serve({ fetch: app.fetch, hostname: config.HOST, port: config.PORT }, () => resolve(s));
  });
  server.on("request", (req, res) => {
    metrics.observe(req, res);
    inFlight++;
    res.on("close", () => inFlight--);
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
      ready = false;
      const until = Date.now() + graceMs;
      while (inFlight > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        if ("closeAllConnections" in server) server.closeAllConnections();
      });
      upstream.close();
      logger.info("http-bridge stopped");
    },
  };
}
