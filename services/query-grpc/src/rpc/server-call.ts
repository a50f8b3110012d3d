// What a handler may do with its gRPC call, and nothing more: the transport
// (grpc/transport) implements it. Stated here, beside the handlers, so that
// rpc/ depends on no server machinery; grpc-js's Metadata stays the data type
// of headers and trailers (it is only a data structure).
import type { Metadata, status } from "@grpc/grpc-js";

/** How a call ends with an error: its code, its text, its trailing metadata. */
export interface CallStatus {
  code: status;
  details: string;
  metadata?: Metadata;
}

type CancelledListener = () => void;

/** What every call has: the caller's metadata, the deadline, cancellation. */
export interface ServerCallBase {
  readonly metadata: Metadata;
  /** Milliseconds since the epoch when the caller gives up; Infinity without one. */
  getDeadline(): number;
  /** True once the call ended for the caller: cancelled, past its deadline, or its status sent. */
  readonly cancelled: boolean;
  /** "cancelled" is emitted once, when the caller goes away or the deadline passes. */
  on(event: "cancelled", listener: CancelledListener): this;
  off(event: "cancelled", listener: CancelledListener): this;
  /** The response headers; sent once, at the latest with the first message. Later calls do nothing. */
  sendMetadata(metadata: Metadata): void;
}

export interface ServerUnaryCall<Req> extends ServerCallBase {
  readonly request: Req;
}

export type UnaryCallback<Res> = (error: CallStatus | null, response?: Res, trailer?: Metadata) => void;

/** The sending side of a streaming call. */
export interface ServerWriter<Res> extends ServerCallBase {
  /**
   * Queues a message; false once the stream holds more than it should, then
   * "drain" follows. `sent` runs once the message went out; never for a call
   * that was cancelled.
   */
  write(message: Res, sent?: () => void): boolean;
  on(event: "cancelled" | "drain", listener: () => void): this;
  off(event: "cancelled" | "drain", listener: () => void): this;
  /** Ends the call with OK and these trailers. */
  end(trailer?: Metadata): void;
  /** Ends the call with an error status (grpc-js's shape: the status is emitted as "error"). */
  emit(event: "error", status: CallStatus): boolean;
}

export interface ServerWritableCall<Req, Res> extends ServerWriter<Res> {
  readonly request: Req;
}

/** Both sides of a bidirectional call: the client's messages arrive as "data", its half-close as "end". */
export interface ServerDuplexCall<Req, Res> extends ServerWriter<Res> {
  on(event: "cancelled" | "drain" | "end", listener: () => void): this;
  on(event: "data", listener: (message: Req) => void): this;
  off(event: "cancelled" | "drain" | "end", listener: () => void): this;
  off(event: "data", listener: (message: Req) => void): this;
  /** Stops "data" until resume(); the client then waits in its HTTP/2 flow control. */
  pause(): this;
  resume(): this;
}

export type UnaryHandler<Req, Res> = (call: ServerUnaryCall<Req>, callback: UnaryCallback<Res>) => void;
export type ServerStreamingHandler<Req, Res> = (call: ServerWritableCall<Req, Res>) => void;
export type DuplexHandler<Req, Res> = (call: ServerDuplexCall<Req, Res>) => void;

/** The shape of a method in a generated service definition (ts-proto's, for grpc-js). */
export interface MethodShape<Req, Res> {
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
  requestDeserialize(bytes: Buffer): Req;
  responseSerialize(message: Res): Buffer;
}

type HandlerOf<M> =
  M extends MethodShape<infer Req, infer Res>
    ? M["requestStream"] extends true
      ? M["responseStream"] extends true
        ? DuplexHandler<Req, Res>
        : never
      : M["responseStream"] extends true
        ? ServerStreamingHandler<Req, Res>
        : UnaryHandler<Req, Res>
    : never;

/** A handler for every method of a service definition, typed by its call shape. */
export type ServiceHandlers<S> = { [K in keyof S]: HandlerOf<S[K]> };
