// What a streamed result format (CSV, Arrow) must provide to the route that
// writes it: bytes for the start, for each batch of rows as it arrives, and
// for the end. The route owns the HTTP side (status, trailers, cutting the
// connection on an error); the format only turns rows into bytes.
import type { Column, Row } from "../../../../proto/gen/querygate/v1/query.js";

export interface StreamedEncoder {
  /** Written once, after the result header arrived. */
  start(): Uint8Array;
  /** One batch of rows; may throw an EncodeError for a value the format cannot hold. */
  rows(rows: readonly Row[]): Uint8Array;
  /** Written once, after the footer, when the result is whole. */
  end(): Uint8Array;
}

export interface StreamedFormat {
  contentType: string;
  /** Label for the rows metric. */
  name: string;
  encoder(columns: readonly Column[]): StreamedEncoder;
}

/** A value the format cannot represent without loss: the stream is cut, never filled with a guess. */
export class EncodeError extends Error {
  override name = "EncodeError";
}
