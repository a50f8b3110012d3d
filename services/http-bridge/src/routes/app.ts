// The HTTP bridge: POST /query JSON ⇄ querygate.v1.QueryService/Execute.
// It translates and streams; it holds no database connection and decides
// nothing about who may run what (query-grpc does).
//
// request → check body → translate → call gRPC (credentials passed through)
//         → encode rows (JSON, NDJSON, CSV or Arrow, chosen by Accept: negotiate.ts)
//         → write (buffered JSON, or the streamed formats as rows arrive)
import { randomUUID } from "node:crypto";
import type { Metadata, ServiceError } from "@grpc/grpc-js";
import { type Context, Hono } from "hono";
import { stream } from "hono/streaming";
import type {
  Column,
  ExecuteRequest,
  ExecuteResponse,
  QueryServiceClient,
  ResultFooter,
  Row,
} from "../../../../proto/gen/querygate/v1/query.js";
import type { Logger } from "../../../shared/src/logger.js";
import { consoleRoutes } from "../console/serve-console.js";
import { arrowFormat } from "../encoders/arrow.js";
import { type BudgetHolder, type BufferBudget, SMALL_RESULT_BYTES } from "../encoders/buffer-budget.js";
import { BufferedRows, chunkedBody } from "../encoders/buffered-rows.js";
import { csvFormat } from "../encoders/csv.js";
import { type RowEncoder, rowEncoder } from "../encoders/json.js";
import type { StreamedFormat } from "../encoders/streamed-format.js";
import { fromGrpcError, requestError, sendError } from "../errors.js";
import type { BridgeMetrics } from "../metrics.js";
import { type BodyBindings, parseBody, readBody } from "../request/body.js";
import { callMetadata } from "../request/call-metadata.js";
import { LSN_HEADER, lsnOf } from "../request/lsn-header.js";
import { queryBody, toExecuteRequest } from "../request/query-request.js";
import type { ExecuteClient } from "../upstream/execute-call.js";
import { cancelWhenClientLeaves, passedOnHeaders } from "../upstream/grpc-client.js";
import { executeBatch, isBatchBody } from "./batch.js";
import { chooseFormat, type RowMode } from "./negotiate.js";
import { responseOver } from "./raw-response.js";
import { registryRoutes } from "./registry.js";
import { streamedResponse } from "./streamed.js";

export interface BridgeDeps {
  /** grpc-js: ExecuteBatch and the registry's calls. */
  upstream: QueryServiceClient;
  /** Execute, the hot call, over bare HTTP/2. */
  executeClient: ExecuteClient;
  logger: Logger;
  metrics: BridgeMetrics;
  maxBodyBytes: number;
  maxJsonResponseBytes: number;
  /** What buffered JSON responses may hold together while they are assembled (MAX_BUFFERED_JSON_BYTES). */
  jsonBudget: BufferBudget;
  /** False once shutdown began: /readyz fails so no new traffic is routed here. */
  ready: () => boolean;
}

const NDJSON = "application/x-ndjson";

/** Set by the first middleware: the caller's x-request-id, or a fresh one. */
type BridgeEnv = BodyBindings & { Variables: { requestId: string } };

export function createApp(deps: BridgeDeps): Hono<BridgeEnv> {
  const app = new Hono<BridgeEnv>();

  // Before bodyLimit and routing, so 413s and 404s carry the id too.
  app.use(async (c, next) => {
    const requestId = requestIdOf(c.req.header("x-request-id"));
    c.set("requestId", requestId);
    c.header("x-request-id", requestId);
    await next();
  });

  app.get("/", (c) => c.json({ status: "ok", service: "querygate" }));
  app.get("/healthz", (c) => c.json({ status: "ok" }));
  app.get("/metrics", async (c) =>
    c.body(await deps.metrics.registry.metrics(), 200, { "content-type": deps.metrics.registry.contentType }),
  );
  app.get("/readyz", (c) =>
    deps.ready() ? c.json({ status: "ready" }) : c.json({ status: "draining" }, 503),
  );

  app.route("/", consoleRoutes());

  app.post("/query", async (c) => {
    const requestId = c.get("requestId");
    const bytes = await readBody(c, deps.maxBodyBytes);
    if (!bytes) {
      // The rest of the body was not read: this connection cannot carry another request.
      c.header("connection", "close");
      return sendError(
        c,
        requestError(413, "body_too_large", `request body exceeds ${deps.maxBodyBytes} bytes`),
      );
    }
    if (!acceptsBodyOf(c.req.header("content-type"))) {
      return sendError(
        c,
        requestError(
          415,
          "unsupported_media_type",
          "send the request body as JSON with content-type: application/json",
        ),
      );
    }
    const body = parseBody(bytes);
    if ("error" in body) return sendError(c, body.error);
    const { json } = body;
    if (isBatchBody(json)) return executeBatch(c, deps.upstream, json, requestId);
    const parsed = queryBody.safeParse(json);
    if (!parsed.success) {
      const message = parsed.error.issues
        .map((i) => `${i.path.join(".") || "body"}: ${i.message}`)
        .join("; ");
      return sendError(c, requestError(400, "invalid_request", message));
    }

    const metadata = callMetadata((name) => c.req.header(name), requestId);

    const request = toExecuteRequest(parsed.data);
    const format = chooseFormat(c.req.header("accept"), parsed.data.rowMode);
    switch (format.kind) {
      case "ndjson":
        return streamNdjson(c, deps, request, metadata, format.rows);
      case "csv":
        return streamFormat(c, deps, request, metadata, csvFormat);
      case "arrow":
        return streamFormat(c, deps, request, metadata, arrowFormat);
      default:
        return bufferedJson(c, deps, request, metadata, format.rows);
    }
  });

  registryRoutes(app, deps.upstream);

  app.notFound((c) =>
    sendError(c, requestError(404, "not_found", `no route for ${c.req.method} ${c.req.path}`)),
  );
  app.onError((error, c) => {
    deps.logger.error({ err: error }, "unhandled error in bridge");
    return c.json({ error: { code: "internal", message: "internal error", grpcStatus: "INTERNAL" } }, 500);
  });
  return app;
}

/**
 * The caller's id when it is a sane token, else a fresh one. Same rule as
 * query-grpc, so the id echoed here is the one in its logs and in
 * pg_stat_activity; and gRPC metadata refuses non-ASCII values outright.
 */
function requestIdOf(given: string | undefined): string {
  return given && /^[A-Za-z0-9._:-]{1,44}$/.test(given) ? given : randomUUID();
}

/**
 * The original tool read the body as JSON whatever its content-type, and its
 * users (and `curl -d`, which sends application/x-www-form-urlencoded) rely on
 * that: accept no content-type, JSON, or curl's default; refuse only other
 * explicit types, which are a client sending something else by mistake.
 */
function acceptsBodyOf(contentType: string | undefined): boolean {
  const mediaType = (contentType ?? "").split(";")[0]!.trim().toLowerCase();
  return (
    mediaType === "" || mediaType === "application/json" || mediaType === "application/x-www-form-urlencoded"
  );
}

function columnsJson(columns: Column[]): string {
  return JSON.stringify(columns.map((col) => ({ name: col.name, type: col.typeName, typeOid: col.typeOid })));
}

function footerFields(footer: ResultFooter): string {
  const truncated = footer.truncated ? `,"truncated":true` : "";
  return `"command":${JSON.stringify(footer.command)},"rowCount":${footer.rowCount}${truncated}`;
}

/** Starts the gRPC call and cancels it (and so the statement) if the HTTP client goes away. */
function startCall(c: Context, deps: BridgeDeps, request: ExecuteRequest, metadata: Metadata) {
  const call = deps.executeClient.execute(request, metadata);
  cancelWhenClientLeaves(c.req.raw.signal, call);
  return { call, headers: passedOnHeaders(call) };
}

function encodeRow(encoder: RowEncoder, rowMode: RowMode, row: Row): string {
  return rowMode === "array"
    ? encoder.array(row.values, row.nullColumns)
    : encoder.object(row.values, row.nullColumns);
}

/** The original tool's shape: {"result": [rows] | "OK", "columns", "command", "rowCount"}. */
async function bufferedJson(
  c: Context,
  deps: BridgeDeps,
  request: ExecuteRequest,
  metadata: Metadata,
  rowMode: RowMode,
) {
  // query-grpc refuses a result over the limit before anything commits; the
  // check below only backs it up (a query-grpc without max_result_bytes).
  const limited = {
    ...request,
    options: {
      ...request.options!,
      maxResultBytes: String(deps.maxJsonResponseBytes),
      maxResultBytesAsArrays: rowMode === "array",
    },
  };
  const { call, headers } = startCall(c, deps, limited, metadata);
  // The trailer (a write's commit position) arrives with the status, after the last message.
  const trailer = new Promise<Metadata | undefined>((resolve) =>
    call.once("status", (s: { metadata?: Metadata }) => resolve(s.metadata)),
  );
  let columns: Column[] = [];
  let encoder = rowEncoder([]);
  const rows = new BufferedRows();
  let footer: ResultFooter | undefined;
  // A result past SMALL_RESULT_BYTES counts against the bridge-wide budget
  // from its first rows until its last byte has gone to the socket.
  let share: BudgetHolder | undefined;
  let shareOver: Promise<void> | undefined;
  const arrival = deps.jsonBudget.arrival();
  let handedOff = false;
  try {
    try {
      for await (const message of call as AsyncIterable<ExecuteResponse>) {
        if (message.header) {
          columns = message.header.columns;
          encoder = rowEncoder(columns);
        } else if (message.rows) {
          for (const row of message.rows.rows) rows.add(encodeRow(encoder, rowMode, row));
          deps.metrics.rows.inc({ format: "json" }, message.rows.rows.length);
          if (rows.bytes > deps.maxJsonResponseBytes) {
            call.cancel();
            return sendError(c, tooLargeToBuffer(deps));
          }
          if (rows.bytes > SMALL_RESULT_BYTES) {
            if (!share) {
              share = deps.jsonBudget.holder(c.req.raw.signal, arrival);
              shareOver = responseOver(c);
            }
            // Not reading the call meanwhile: HTTP/2 flow control holds query-grpc back.
            const wait = share.holding(rows.bytes);
            if (wait) await wait;
          }
        } else if (message.footer) {
          footer = message.footer;
        }
      }
    } catch (error) {
      const failure = fromGrpcError(error as ServiceError);
      if (failure.body.error.code !== "result_too_large") return sendError(c, failure);
      // query-grpc's refusal, in the bridge's terms; its own words (which say so
      // when a statement that cannot write had finished and committed) as detail.
      return sendError(c, tooLargeToBuffer(deps, failure.body.error.message));
    }
    if (!footer)
      return sendError(c, requestError(502, "incomplete_result", "query-grpc ended the result early"));
    const result = columns.length > 0 ? rows.array() : `"OK"`;
    const rest = `,"columns":${columnsJson(columns)},${footerFields(footer)}}`;
    const lsn = lsnOf(await trailer);
    const responseHeaders = {
      ...headers,
      "content-type": "application/json",
      ...(lsn ? { [LSN_HEADER]: lsn } : {}),
    };
    if (typeof result === "string") return c.body(`{"result":${result}${rest}`, 200, responseHeaders);
    // What is left unsent stays counted: a caller who reads slowly holds its
    // share until the socket has taken the last byte, or SEND_TIMEOUT_MS cut it.
    const held = share;
    const nodeResponse = shareOver !== undefined;
    void shareOver?.then(() => held?.release());
    const { body, length } = chunkedBody(
      [Buffer.from(`{"result":`), ...result, Buffer.from(rest)],
      (left) => {
        // The last chunk read is still in the socket until the response is over.
        if (left > 0) held?.sending(left);
        else if (!nodeResponse) held?.release();
      },
    );
    handedOff = true;
    return c.body(body, 200, { ...responseHeaders, "content-length": String(length) });
  } finally {
    if (!handedOff) share?.release();
  }
}

/** The 413 for a result over MAX_JSON_RESPONSE_BYTES, saying what to do instead; `detail`: query-grpc's account. */
function tooLargeToBuffer(deps: BridgeDeps, detail?: string) {
  const error = requestError(
    413,
    "result_too_large",
    `result exceeds ${deps.maxJsonResponseBytes} bytes of buffered JSON; stream it with accept: ${NDJSON} or page with maxRows`,
  );
  if (detail) error.body.error.detail = detail;
  return error;
}

/**
 * Starts the call and waits for its first message. An error before it (the
 * statement never produced a result) is a normal HTTP error response.
 */
async function openStream(c: Context, deps: BridgeDeps, request: ExecuteRequest, metadata: Metadata) {
  const { call, headers } = startCall(c, deps, request, metadata);
  const messages = (call as AsyncIterable<ExecuteResponse>)[Symbol.asyncIterator]();
  try {
    return { call, messages, headers, first: await messages.next() };
  } catch (error) {
    return sendError(c, fromGrpcError(error as ServiceError));
  }
}

/**
 * NDJSON: {"header":{"columns":[…]}} first, then {"row":{…}} per row as they
 * arrive, then {"footer":{…}}. Its HTTP headers go out before the call ends,
 * so a write's commit position (a trailer) cannot reach them: use buffered JSON for writes. Errors before the header get a normal HTTP
 * error; an error after it ends the stream with an {"error":{…}} line.
 */
async function streamNdjson(
  c: Context,
  deps: BridgeDeps,
  request: ExecuteRequest,
  metadata: Metadata,
  rowMode: RowMode,
) {
  const opened = await openStream(c, deps, request, metadata);
  if (opened instanceof Response) return opened;
  const { messages, first, headers } = opened;
  c.header("content-type", NDJSON);
  for (const [name, value] of Object.entries(headers)) c.header(name, value);
  // A client that leaves mid-stream aborts the request's signal, which
  // startCall listens to; no second listener here (hono's onAbort cannot be
  // taken back, and would hold the call for as long as the stream object lives).
  return stream(c, async (out) => {
    let encoder = rowEncoder([]);
    let next = first;
    try {
      while (!next.done) {
        const message = next.value;
        if (message.header) {
          encoder = rowEncoder(message.header.columns);
          await out.write(`{"header":{"columns":${columnsJson(message.header.columns)}}}\n`);
        } else if (message.rows) {
          let chunk = "";
          for (const row of message.rows.rows) chunk += `{"row":${encodeRow(encoder, rowMode, row)}}\n`;
          deps.metrics.rows.inc({ format: "ndjson" }, message.rows.rows.length);
          await out.write(chunk);
        } else if (message.footer) {
          await out.write(`{"footer":{${footerFields(message.footer)}}}\n`);
        }
        next = await messages.next();
      }
    } catch (error) {
      const { body } = fromGrpcError(error as ServiceError);
      await out.write(`${JSON.stringify(body)}\n`).catch(() => {});
    }
  });
}

/**
 * CSV or Arrow (streamed.ts). As with NDJSON, an error before the result
 * header is a normal HTTP error; after it, the response is cut.
 */
async function streamFormat(
  c: Context,
  deps: BridgeDeps,
  request: ExecuteRequest,
  metadata: Metadata,
  format: StreamedFormat,
) {
  const opened = await openStream(c, deps, request, metadata);
  if (opened instanceof Response) return opened;
  const { call, messages, first } = opened;
  const requestId = c.get("requestId");
  return streamedResponse(c, format, {
    messages,
    first,
    cancel: () => call.cancel(),
    onRows: (count) => deps.metrics.rows.inc({ format: format.name }, count),
    onCut: (error) => {
      const reason =
        (error as ServiceError).code === undefined ? error : fromGrpcError(error as ServiceError).body;
      deps.logger.info({ requestId, format: format.name, reason }, "streamed result cut short");
    },
  });
}
