// A result streamed as CSV or Arrow: bytes go out as row batches arrive from
// query-grpc, pulled by the client's pace (the body stream asks for the next
// batch only once the socket has taken the last), so memory stays bounded by
// one batch whatever the result's size.
//
// Neither format has a place for an error or an end marker a client would
// check (an Arrow stream may legally stop after any batch; a CSV file after
// any line), so a cut-short result must not look whole: on an error after the
// first byte the connection is destroyed before the closing chunk (a transfer
// error in every client), and a whole result ends with trailers carrying its
// row count, command and truncation, announced in the `Trailer` header.
import type { Context } from "hono";
import type { Column, ExecuteResponse, ResultFooter } from "../../../../proto/gen/querygate/v1/query.js";
import type { StreamedEncoder, StreamedFormat } from "../encoders/streamed-format.js";
import { addTrailers, cutResponse } from "./raw-response.js";

export const RESULT_TRAILERS = ["querygate-row-count", "querygate-command", "querygate-truncated"] as const;

export interface StreamedResult {
  /** The gRPC messages still to read; the first one has been read already. */
  messages: AsyncIterator<ExecuteResponse>;
  first: IteratorResult<ExecuteResponse>;
  /** Stops the gRPC call (and so the statement) when the client goes away. */
  cancel: () => void;
  onRows: (count: number) => void;
  /** Why a result was cut; the client only sees the cut. */
  onCut: (error: unknown) => void;
}

export function streamedResponse(c: Context, format: StreamedFormat, result: StreamedResult): Response {
  const { messages, cancel, onRows, onCut } = result;
  let next: IteratorResult<ExecuteResponse> | undefined = result.first;
  let encoder: StreamedEncoder | undefined;
  let footer: ResultFooter | undefined;

  const body = new ReadableStream<Uint8Array>({
    // Each pull writes one message's bytes, or ends the body; a message that
    // makes no bytes (an empty batch) moves on to the next one.
    async pull(controller) {
      try {
        for (;;) {
          const current: IteratorResult<ExecuteResponse> = next ?? (await messages.next());
          next = undefined;
          if (current.done) {
            if (!encoder || !footer) throw new Error("query-grpc ended the result without a footer");
            controller.enqueue(encoder.end());
            addTrailers(c, trailersOf(footer));
            controller.close();
            return;
          }
          const bytes = step(current.value);
          if (bytes && bytes.byteLength > 0) {
            controller.enqueue(bytes);
            return;
          }
        }
      } catch (error) {
        cancel();
        onCut(error);
        // The Node response gone, node-server cancels this stream itself; else the error ends the body.
        if (!cutResponse(c)) controller.error(error);
      }
    },
    cancel() {
      cancel();
    },
  });

  function step(message: ExecuteResponse): Uint8Array | undefined {
    if (message.header) {
      encoder = format.encoder(message.header.columns as Column[]);
      return encoder.start();
    }
    if (message.rows) {
      if (!encoder) throw new Error("query-grpc sent rows before the result header");
      const bytes = encoder.rows(message.rows.rows);
      onRows(message.rows.rows.length);
      return bytes;
    }
    if (message.footer) footer = message.footer;
    return undefined;
  }

  return c.body(body, 200, {
    "content-type": format.contentType,
    // Trailers need a chunked body; node-server would otherwise give a short result a content-length.
    "transfer-encoding": "chunked",
    trailer: RESULT_TRAILERS.join(", "),
  });
}

function trailersOf(footer: ResultFooter): Record<(typeof RESULT_TRAILERS)[number], string> {
  return {
    "querygate-row-count": String(footer.rowCount),
    "querygate-command": footer.command,
    "querygate-truncated": String(footer.truncated),
  };
}
