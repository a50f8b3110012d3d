// What the bridge reports to Prometheus on GET /metrics: HTTP requests by
// route and status, their duration (to the last byte, streams included), and
// rows encoded by response format, and the JSON buffered responses hold.
import type { IncomingMessage, ServerResponse } from "node:http";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { createRegistry, LATENCY_BUCKETS } from "../../shared/src/metrics.js";

const ROUTES = new Set(["/", "/query", "/healthz", "/readyz", "/metrics"]);

export class BridgeMetrics {
  readonly registry: Registry;
  readonly requests: Counter<"route" | "method" | "status">;
  readonly duration: Histogram<"route">;
  readonly rows: Counter<"format">;
  readonly bufferedJsonWaits: Counter;
  readonly sendTimeouts: Counter;

  constructor() {
    const registry = createRegistry("http-bridge");
    this.registry = registry;
    this.requests = new Counter({
      name: "querygate_http_requests_total",
      help: "Finished HTTP requests by route, method and status.",
      labelNames: ["route", "method", "status"],
      registers: [registry],
    });
    this.duration = new Histogram({
      name: "querygate_http_request_duration_seconds",
      help: "HTTP request duration until the response's last byte, by route.",
      labelNames: ["route"],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    });
    this.rows = new Counter({
      name: "querygate_http_rows_total",
      help: "Result rows encoded, by format (json, ndjson, csv or arrow).",
      labelNames: ["format"],
      registers: [registry],
    });
    this.bufferedJsonWaits = new Counter({
      name: "querygate_http_buffered_json_waits_total",
      help: "Times a buffered JSON response waited because the responses being assembled held MAX_BUFFERED_JSON_BYTES.",
      registers: [registry],
    });
    this.sendTimeouts = new Counter({
      name: "querygate_http_send_timeouts_total",
      help: "Responses cut because their caller took none of their waiting bytes for SEND_TIMEOUT_MS.",
      registers: [registry],
    });
  }

  /** Reports `held()`, the bytes buffered JSON responses hold now, on each scrape. */
  bufferedJsonHeld(held: () => number): void {
    new Gauge({
      name: "querygate_http_buffered_json_bytes",
      help: "JSON bytes held by buffered responses being assembled (results over 64 KiB).",
      registers: [this.registry],
      collect() {
        this.set(held());
      },
    });
  }

  /** Records one request when its response has been fully sent (or aborted). */
  observe(req: IncomingMessage, res: ServerResponse): void {
    const started = performance.now();
    res.once("close", () => {
      const path = (req.url ?? "/").split("?")[0] ?? "/";
      const route = ROUTES.has(path) ? path : "other";
      this.requests.inc({ route, method: req.method ?? "", status: String(res.statusCode) });
      this.duration.observe({ route }, (performance.now() - started) / 1000);
    });
  }
}
