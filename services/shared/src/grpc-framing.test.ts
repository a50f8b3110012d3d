// gRPC's framing and grpc-message coding, as the bridge's client and
// query-grpc's server both rely on: messages come out whole however HTTP/2
// cuts the DATA, limits are enforced from the length alone, and a
// grpc-message survives the trip whatever its characters.
import { status } from "@grpc/grpc-js";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { type DeepPartial, ExecuteResponse } from "../../../proto/gen/querygate/v1/query.js";
import {
  decodeGrpcMessage,
  encodeGrpcMessage,
  FrameError,
  frameMessage,
  MessageFrames,
} from "./grpc-framing.js";

const t = suite("gRPC framing");

const MAX = 1024 * 1024 * 1024;
const message = (m: DeepPartial<ExecuteResponse>) => ExecuteResponse.fromPartial(m);
const HEADER = message({ header: { columns: [{ name: "n", typeName: "int4", typeOid: 23 }] } });
const FOOTER = message({ footer: { command: "SELECT", commandTag: "SELECT 1", rowCount: "1" } });
const rows = (...values: string[]) => message({ rows: { rows: values.map((v) => ({ values: [v] })) } });
const framed = (...messages: ExecuteResponse[]) =>
  Buffer.concat(messages.map((m) => frameMessage(ExecuteResponse.encode(m).finish())));

const decoded = (frames: Buffer[]) => frames.map((f) => ExecuteResponse.decode(f));

t("messages cut into 1-byte chunks are decoded whole and in order", () => {
  const wire = framed(HEADER, rows("1", "2"), message({ rows: { rows: [] } }), FOOTER);
  const frames = new MessageFrames(MAX);
  const out: Buffer[] = [];
  for (let i = 0; i < wire.length; i++) out.push(...frames.push(wire.subarray(i, i + 1)));
  assert.equal(decoded(out), [HEADER, rows("1", "2"), message({ rows: { rows: [] } }), FOOTER]);
  assert.not.ok(frames.partial);
});

t("several messages in one chunk, and one split across two, all come out", () => {
  const wire = framed(HEADER, rows("a"), rows("b"), FOOTER);
  const frames = new MessageFrames(MAX);
  const cut = wire.length - 7;
  const first = frames.push(wire.subarray(0, cut));
  assert.is(first.length, 3);
  assert.ok(frames.partial, "the footer has begun");
  const second = frames.push(wire.subarray(cut));
  assert.equal(decoded([...first, ...second]), [HEADER, rows("a"), rows("b"), FOOTER]);
});

t("a 16 MiB message over 16 KiB chunks is decoded byte for byte", () => {
  const big = rows("x".repeat(16 * 1024 * 1024));
  const wire = framed(big, FOOTER);
  const frames = new MessageFrames(MAX);
  const out: Buffer[] = [];
  for (let at = 0; at < wire.length; at += 16 * 1024)
    out.push(...frames.push(wire.subarray(at, at + 16 * 1024)));
  const [first, second] = decoded(out);
  assert.is(first?.rows?.rows[0]?.values[0]?.length, 16 * 1024 * 1024);
  assert.equal(second, FOOTER);
});

t("a message over the size limit is RESOURCE_EXHAUSTED from its length alone", () => {
  const frames = new MessageFrames(1024);
  const header = Buffer.from([0, 0, 0, 8, 0]);
  const error = (() => {
    try {
      frames.push(header);
    } catch (e) {
      return e;
    }
  })();
  assert.instance(error, FrameError);
  assert.is((error as FrameError).code, status.RESOURCE_EXHAUSTED);
});

t("a length prefix alone does not make the receiver hold the size it announces", () => {
  const frames = new MessageFrames(256 * 1024 * 1024);
  const before = process.memoryUsage().arrayBuffers;
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(200 * 1024 * 1024, 1);
  assert.equal(frames.push(Buffer.concat([prefix, Buffer.from("a few bytes")])), []);
  const grown = process.memoryUsage().arrayBuffers - before;
  assert.ok(grown < 1024 * 1024, `${grown} bytes held for 11 bytes received`);
  assert.ok(frames.partial);
});

t("a compressed frame (none was offered) is INTERNAL", () => {
  assert.throws(
    () => new MessageFrames(MAX).push(Buffer.from([1, 0, 0, 0, 0])),
    (e: unknown) => e instanceof FrameError && e.code === status.INTERNAL,
  );
});

t("a compressed message goes through the caller's decompressor; plain ones do not", () => {
  const seen: number[] = [];
  const frames = new MessageFrames(MAX, (body) => {
    seen.push(body.length);
    return Buffer.from("inflated");
  });
  const compressed = frameMessage(Buffer.from("xyz"));
  compressed[0] = 1;
  const out = frames.push(Buffer.concat([frameMessage(Buffer.from("plain")), compressed]));
  assert.equal(
    out.map((b) => b.toString()),
    ["plain", "inflated"],
  );
  assert.equal(seen, [3]);
});

t("frameMessage writes the flag and the big-endian length before the bytes", () => {
  assert.equal([...frameMessage(Buffer.from([7, 8, 9]))], [0, 0, 0, 0, 3, 7, 8, 9]);
});

t("grpc-message is printable ASCII on the wire and decodes to the text sent", () => {
  for (const text of ["plain", "100% sure", "naïve ✓ — 日本", 'quote " and\nnewline\n', "a%zz"]) {
    const wire = encodeGrpcMessage(text);
    assert.ok(/^[\x20-\x7e]*$/.test(wire), wire);
    assert.is(decodeGrpcMessage(wire), text);
  }
});

t("a lone surrogate does not throw: it travels as U+FFFD", () => {
  assert.is(decodeGrpcMessage(encodeGrpcMessage("bad \ud800 half")), "bad \ufffd half");
});

t("a grpc-message that is not percent-encoded after all stays as sent", () => {
  assert.is(decodeGrpcMessage("50% off"), "50% off");
});

t.run();
