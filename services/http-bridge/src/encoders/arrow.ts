// PostgreSQL results → an Arrow IPC stream: the schema when the result header
// arrives, one record batch per row batch from query-grpc (so memory holds one
// batch), end-of-stream after the footer. Columns are built straight into
// Arrow's buffers from the text forms, without a row of JS objects between.
//
//   int2 / int4 / int8            → Int16 / Int32 / Int64
//   numeric(p,s) with p ≤ 38      → Decimal128(p, s)  (NaN cannot be held: the stream is cut)
//   float4 / float8               → Float32 / Float64 (NaN and ±Infinity kept)
//   bool                          → Bool
//   bytea                         → Binary
//   date                          → Date32(day)
//   timestamptz / timestamp       → Timestamp(µs, "UTC") / Timestamp(µs)
//   uuid                          → FixedSizeBinary(16), extension "arrow.uuid"
//   json / jsonb                  → Utf8, extension "arrow.json"
//   one-dimensional arrays of those → List of the element (a multi-dimensional
//                                   value, or one with bounds, cuts the stream)
//   everything else (text, varchar, numeric without typmod, interval, time, enums, …) → Utf8, PostgreSQL's text
// Every field's metadata names its PostgreSQL type (`postgresql.type`,
// `postgresql.type_oid`), so a reader can tell a jsonb from a text.
import {
  AsyncByteQueue,
  Binary,
  Bool,
  type Data,
  type DataType,
  DateDay,
  Decimal,
  Field,
  FixedSizeBinary,
  Float32,
  Float64,
  Int16,
  Int32,
  Int64,
  List,
  makeData,
  RecordBatch,
  RecordBatchStreamWriter,
  Schema,
  Struct,
  TimestampMicrosecond,
  Utf8,
} from "apache-arrow";
import { parse as parseArray } from "postgres-array";
import type { Column, Row } from "../../../../proto/gen/querygate/v1/query.js";
import {
  byteaLength,
  dateDays,
  timestampMicros,
  writeBytea,
  writeDecimal128,
  writeUuid,
} from "./arrow-values.js";
import { EncodeError, type StreamedFormat } from "./streamed-format.js";

type Texts = readonly (string | null)[];

/** How one column becomes Arrow: its type, and its Data built from one batch of text values. */
interface Codec {
  type: DataType;
  /** An Arrow canonical extension the values follow. */
  extension?: string;
  build(texts: Texts): Data;
}

function validity(texts: Texts): { nullBitmap: Uint8Array | undefined; nullCount: number } {
  let nullCount = 0;
  for (const t of texts) if (t === null) nullCount++;
  if (nullCount === 0) return { nullBitmap: undefined, nullCount };
  const nullBitmap = new Uint8Array((texts.length + 7) >> 3);
  for (let i = 0; i < texts.length; i++) if (texts[i] !== null) nullBitmap[i >> 3]! |= 1 << (i & 7);
  return { nullBitmap, nullCount };
}

type Fill<A> = (values: A, index: number, text: string) => void;

/** A fixed-width column: `width` slots of `Values` per value, filled by `fill`. */
function fixed<A extends ArrayLike<unknown>>(type: DataType, make: (n: number) => A, fill: Fill<A>): Codec {
  return {
    type,
    build(texts) {
      const data = make(texts.length);
      for (let i = 0; i < texts.length; i++) {
        const text = texts[i];
        if (text !== null && text !== undefined) fill(data, i, text);
      }
      return makeData({ type, length: texts.length, ...validity(texts), data } as never);
    },
  };
}

/** A variable-width column (Utf8, Binary): offsets into one buffer of every value's bytes. */
function variable(type: Utf8 | Binary, length: (t: string) => number, write: typeof writeUtf8): Codec {
  return {
    type,
    build(texts) {
      let total = 0;
      for (const t of texts) if (t !== null) total += length(t);
      if (total > 2 ** 31 - 1) throw new EncodeError("a batch's values exceed Arrow's 2 GiB offsets");
      const data = Buffer.allocUnsafe(total);
      const valueOffsets = new Int32Array(texts.length + 1);
      let at = 0;
      for (let i = 0; i < texts.length; i++) {
        const t = texts[i];
        if (t !== null && t !== undefined) at += write(t, data, at);
        valueOffsets[i + 1] = at;
      }
      return makeData({ type, length: texts.length, ...validity(texts), valueOffsets, data } as never);
    },
  };
}

const writeUtf8 = (text: string, into: Buffer, offset: number): number => into.write(text, offset, "utf8");
const utf8: Codec = variable(new Utf8(), Buffer.byteLength, writeUtf8);
const json: Codec = { ...utf8, extension: "arrow.json" };

const bool: Codec = {
  type: new Bool(),
  build(texts) {
    const data = new Uint8Array((texts.length + 7) >> 3);
    for (let i = 0; i < texts.length; i++) if (texts[i] === "t") data[i >> 3]! |= 1 << (i & 7);
    return makeData({ type: this.type as Bool, length: texts.length, ...validity(texts), data });
  },
};

const int = (type: Int16 | Int32, Typed: Int16ArrayConstructor | Int32ArrayConstructor) =>
  fixed(
    type,
    (n) => new Typed(n),
    (a, i, t) => {
      a[i] = Number(t);
    },
  );
const float = (type: Float32 | Float64, Typed: Float32ArrayConstructor | Float64ArrayConstructor) =>
  fixed(
    type,
    (n) => new Typed(n),
    (a, i, t) => {
      a[i] = Number(t);
    },
  );
const bigints = (type: DataType, parse: (t: string) => bigint) =>
  fixed(
    type,
    (n) => new BigInt64Array(n),
    (a, i, t) => {
      a[i] = parse(t);
    },
  );

/** numeric's typmod packs precision and a signed 11-bit scale (PostgreSQL 15+ allows negative ones). */
function decimalOf(typeModifier: number): Codec | undefined {
  if (typeModifier < 4) return undefined;
  const precision = ((typeModifier - 4) >> 16) & 0xffff;
  const scale = ((((typeModifier - 4) & 0x7ff) ^ 1024) - 1024) as number;
  if (precision < 1 || precision > 38 || scale < 0 || scale > precision) return undefined;
  return fixed(
    new Decimal(scale, precision, 128),
    (n) => new Uint32Array(n * 4),
    (a, i, t) => writeDecimal128(t, scale, a, i),
  );
}

const uuid: Codec = {
  ...fixed(
    new FixedSizeBinary(16),
    (n) => Buffer.alloc(n * 16),
    (a, i, t) => writeUuid(t, a, i * 16),
  ),
  extension: "arrow.uuid",
};

function scalarCodec(typeOid: number, typeModifier: number): Codec {
  switch (typeOid) {
    case 16:
      return bool;
    case 17:
      return variable(new Binary(), byteaLength, writeBytea);
    case 20:
      return bigints(new Int64(), BigInt);
    case 21:
      return int(new Int16(), Int16Array);
    case 23:
      return int(new Int32(), Int32Array);
    case 700:
      return float(new Float32(), Float32Array);
    case 701:
      return float(new Float64(), Float64Array);
    case 1082:
      return fixed(
        new DateDay(),
        (n) => new Int32Array(n),
        (a, i, t) => {
          a[i] = dateDays(t);
        },
      );
    case 1114:
      return bigints(new TimestampMicrosecond(), timestampMicros);
    case 1184:
      return bigints(new TimestampMicrosecond("UTC"), timestampMicros);
    case 1700:
      return decimalOf(typeModifier) ?? utf8;
    case 2950:
      return uuid;
    case 114:
    case 3802:
      return json;
    default:
      return utf8;
  }
}

/** Array type OID → element type OID, for the element types above. */
const ARRAY_ELEMENT = new Map<number, number>([
  [1000, 16],
  [1001, 17],
  [1016, 20],
  [1005, 21],
  [1007, 23],
  [1021, 700],
  [1022, 701],
  [1182, 1082],
  [1115, 1114],
  [1185, 1184],
  [1231, 1700],
  [2951, 2950],
  [199, 114],
  [3807, 3802],
  [1009, 25],
  [1015, 1043],
  [1014, 1042],
]);

function listCodec(element: Codec): Codec {
  const child = new Field("item", element.type, true, extensionMetadata(element));
  const type = new List(child);
  return {
    type,
    build(texts) {
      const valueOffsets = new Int32Array(texts.length + 1);
      const items: (string | null)[] = [];
      for (let i = 0; i < texts.length; i++) {
        const text = texts[i];
        if (text !== null && text !== undefined) {
          if (text.startsWith("["))
            throw new EncodeError(
              `an array with explicit bounds (${text.slice(0, 20)}…) has no Arrow List form`,
            );
          for (const item of parseArray(text) as unknown[]) {
            if (Array.isArray(item))
              throw new EncodeError("a multi-dimensional array has no one-level Arrow List form");
            items.push(item as string | null);
          }
        }
        valueOffsets[i + 1] = items.length;
      }
      const data = element.build(items);
      return makeData({ type, length: texts.length, ...validity(texts), valueOffsets, child: data });
    },
  };
}

function extensionMetadata(codec: Codec): Map<string, string> {
  return new Map(codec.extension ? [["ARROW:extension:name", codec.extension]] : []);
}

function codecOf(column: Column): Codec {
  const element = ARRAY_ELEMENT.get(column.typeOid);
  return element === undefined
    ? scalarCodec(column.typeOid, column.typeModifier)
    : listCodec(scalarCodec(element, column.typeModifier));
}

/** Collects what the IPC writer writes, to hand it to the HTTP body one message at a time. */
class Collected extends AsyncByteQueue {
  private chunks: Uint8Array[] = [];
  override write(value: Uint8Array): void {
    this.chunks.push(value);
  }
  take(): Uint8Array {
    const bytes = Buffer.concat(this.chunks);
    this.chunks = [];
    return bytes;
  }
}

export const arrowFormat: StreamedFormat = {
  contentType: "application/vnd.apache.arrow.stream",
  name: "arrow",
  encoder(columns) {
    const codecs = columns.map(codecOf);
    const fields = columns.map((column, i) => {
      const metadata = extensionMetadata(codecs[i]!);
      metadata.set("postgresql.type", column.typeName);
      metadata.set("postgresql.type_oid", String(column.typeOid));
      return new Field(column.name, codecs[i]!.type, true, metadata);
    });
    const schema = new Schema(fields);
    const struct = new Struct(fields);
    const sink = new Collected();
    const writer = new RecordBatchStreamWriter();
    return {
      start() {
        writer.reset(sink, schema);
        return sink.take();
      },
      rows(rows: readonly Row[]) {
        const texts: (string | null)[][] = columns.map(() => new Array(rows.length));
        for (let r = 0; r < rows.length; r++) {
          const { values, nullColumns } = rows[r]!;
          for (let c = 0; c < texts.length; c++) texts[c]![r] = values[c] ?? "";
          for (const c of nullColumns) if (c < texts.length) texts[c]![r] = null;
        }
        const children = codecs.map((codec, c) => codec.build(texts[c]!));
        const data = makeData({ type: struct, length: rows.length, nullCount: 0, children });
        writer.write(new RecordBatch(schema, data));
        return sink.take();
      },
      end() {
        writer.close();
        return sink.take();
      },
    };
  },
};
