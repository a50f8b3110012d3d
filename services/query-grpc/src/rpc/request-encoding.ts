// Protobuf strings must be UTF-8, but the generated decoders turn invalid
// bytes into U+FFFD: a caller's SQL or parameter would be changed without an
// error. Requests are decoded with a reader that notices; the handlers then
// refuse such a message with 22021, as PostgreSQL refuses invalid text. Bytes
// that are no protobuf message at all are marked too, and refused with
// INVALID_ARGUMENT: a deserializer that threw would make grpc-js answer
// INTERNAL, a server fault, for the caller's mistake.
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { QueryFailure } from "../errors.js";

const INVALID_TEXT = Symbol("invalid UTF-8 in a string field");
const UNDECODABLE = Symbol("not a protobuf message of the expected type");
const strict = new TextDecoder("utf-8", { fatal: true });
const lenient = new TextDecoder("utf-8");

/** Wraps a generated request deserializer so messages with invalid UTF-8 are marked. */
export function markingInvalidText<T>(deserialize: (bytes: Buffer) => T): (bytes: Buffer) => T {
  return (bytes) => {
    let invalid = false;
    const reader = new BinaryReader(bytes, (data) => {
      try {
        return strict.decode(data);
      } catch {
        invalid = true;
        return lenient.decode(data);
      }
    });
    let message: T;
    try {
      // The generated decode() takes a reader as readily as bytes.
      message = deserialize(reader as unknown as Buffer);
    } catch {
      message = deserialize(Buffer.alloc(0));
      Object.defineProperty(message, UNDECODABLE, { value: true });
      return message;
    }
    if (invalid && message !== null && typeof message === "object") {
      Object.defineProperty(message, INVALID_TEXT, { value: true });
    }
    return message;
  };
}

/** Throws for a request that was not protobuf, or whose strings were not valid UTF-8 (22021). */
export function refuseBadEncoding(message: object): void {
  if ((message as { [UNDECODABLE]?: boolean })[UNDECODABLE]) {
    throw new QueryFailure("invalid_request", "the request message is not valid protobuf for this method");
  }
  if ((message as { [INVALID_TEXT]?: boolean })[INVALID_TEXT]) {
    throw new QueryFailure("sql", "a string in the request (SQL or a text parameter) is not valid UTF-8", {
      sqlstate: "22021",
    });
  }
}
