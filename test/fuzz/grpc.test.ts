// Property-based fuzzing of query-grpc's Execute, called directly: random
// SQL, parameters of every kind and options at their limits, the wrong number
// of parameters, and request messages that are not valid protobuf at all
// (sent through a client whose serializer passes bytes through untouched).
// The answer is OK or a clean status — never INTERNAL, UNKNOWN or
// UNAVAILABLE for something the caller sent — and the services keep working.
import { Metadata, type ServiceError, status } from "@grpc/grpc-js";
import fc from "fast-check";
import { suite } from "uvu";
import {
  type DeepPartial,
  ExecuteRequest,
  type QueryServiceClient,
  type Value,
} from "../../proto/gen/querygate/v1/query.js";
import { assertGrpc, type Expect, property } from "./check.js";
import {
  anySql,
  deepSql,
  hugeString,
  labelled,
  oddString,
  show,
  tooManyParams,
  wrongParamCount,
} from "./inputs.js";

const t = suite("fuzzing query-grpc's Execute");

/** Every fuzz call answers in well under a second when all is well; one that takes this long means a stuck service. */
const CALL_DEADLINE_MS = 10_000;

/** Runs Execute to its end and answers its status; rows are read and dropped. */
function call(
  client: QueryServiceClient,
  request: DeepPartial<ExecuteRequest>,
): Promise<{ code: status; details: string }> {
  return new Promise((resolve) => {
    const stream = client.execute(ExecuteRequest.fromPartial(request), new Metadata(), {
      deadline: Date.now() + CALL_DEADLINE_MS,
    });
    stream.on("data", () => {});
    stream.on("error", (error: ServiceError) => resolve({ code: error.code, details: error.details }));
    stream.on("end", () => resolve({ code: status.OK, details: "" }));
  });
}

/** The same call with the request's bytes exactly as given. */
function callRaw(client: QueryServiceClient, bytes: Buffer): Promise<{ code: status; details: string }> {
  return new Promise((resolve) => {
    const stream = client.makeServerStreamRequest(
      "/querygate.v1.QueryService/Execute",
      (raw: Buffer) => raw,
      (raw: Buffer) => raw,
      bytes,
      new Metadata(),
      { deadline: Date.now() + CALL_DEADLINE_MS },
    );
    stream.on("data", () => {});
    stream.on("error", (error: ServiceError) => resolve({ code: error.code, details: error.details }));
    stream.on("end", () => resolve({ code: status.OK, details: "" }));
  });
}

const value: fc.Arbitrary<Value> = fc.oneof(
  fc.constant({ nullValue: 0 }),
  oddString.map((textValue) => ({ textValue })),
  hugeString.map((s) => ({ textValue: s.value.slice(0, 2_000_000) })),
  fc.boolean().map((boolValue) => ({ boolValue })),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map((v) => ({ intValue: String(v) })),
  fc.double().map((floatValue) => ({ floatValue })),
  fc.uint8Array({ maxLength: 64 }).map((a) => ({ bytesValue: Buffer.from(a) })),
);

const randomRequest = fc
  .record({
    sql: anySql,
    params: fc.array(value, { maxLength: 6 }),
    options: fc.option(
      fc.record({
        maxRows: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String),
        timeoutMs: fc.oneof(fc.constantFrom(0, 1, 2 ** 32 - 1), fc.nat({ max: 10_000 })),
        readOnly: fc.boolean(),
        applicationTag: oddString,
      }),
      { nil: undefined },
    ),
  })
  .map(({ sql, params, options }) => {
    const request = { sql: sql.value, params, options };
    return labelled(request, `sql ${sql.label}, params ${show(params)}, options ${show(options)}`);
  });

t("Execute with random SQL, parameters and options answers OK or a clean status", async () => {
  await property(randomRequest, 150, async (request, { client }) => {
    assertGrpc(await call(client, request.value), "mistake-or-valid");
  });
});

t(
  "SQL nested 1,000 to 20,000 levels deep, sent up to 64 times in a row, leaves the parser working",
  async () => {
    // Only health is asserted (stillHealthy, after each case); each answer's status is the other properties' business.
    const repeated = fc
      .tuple(deepSql, fc.noBias(fc.integer({ min: 1, max: 64 })))
      .map(([sql, times]) => labelled({ sql: sql.value, times }, `${sql.label}, ${times} time(s)`));
    await property(repeated, 25, async ({ value }, { client }) => {
      for (let i = 0; i < value.times; i++) {
        const answer = await call(client, { sql: value.sql });
        if (answer.code === status.DEADLINE_EXCEEDED || answer.code === status.UNAVAILABLE) break; // stuck: the health check says so
      }
    });
  },
);

t("Execute with the wrong number of parameters answers a client error", async () => {
  await property(wrongParamCount, 40, async (c, { client }) => {
    const params = c.value.params.map((textValue) => ({ textValue }));
    assertGrpc(await call(client, { sql: c.value.sql, params }), "mistake" satisfies Expect);
  });
});

t("Execute with more than 65,535 parameters answers a client error", async () => {
  await property(tooManyParams, 10, async (c, { client }) => {
    const params = c.value.params.map((textValue) => ({ textValue }));
    assertGrpc(await call(client, { sql: c.value.sql, params }), "mistake" satisfies Expect);
  });
});

const validBytes = (sql: string) =>
  Buffer.from(
    ExecuteRequest.encode(ExecuteRequest.fromPartial({ sql, params: [{ textValue: "x" }] })).finish(),
  );

/** Not protobuf: random bytes, a valid request cut short, one with bytes flipped, lengths past the end. */
const malformed = fc
  .oneof(
    fc.uint8Array({ minLength: 1, maxLength: 64 }).map((a) => Buffer.from(a)),
    fc.tuple(fc.string({ maxLength: 20 }), fc.nat()).map(([sql, cut]) => {
      const bytes = validBytes(`select '${sql}'`);
      return bytes.subarray(0, 1 + (cut % Math.max(1, bytes.length - 1)));
    }),
    fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })).map(([at, flip]) => {
      const bytes = Buffer.from(validBytes("select $1::text"));
      bytes[at % bytes.length]! ^= flip;
      return bytes;
    }),
    fc.constantFrom(
      Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), // sql: a length of 4 GiB
      Buffer.from([0x08, 0x01]), // sql with the varint wire type
      Buffer.from([0x12, 0x05, 0x22, 0x03]), // a Value that claims more bytes than it has
      Buffer.from([0x0f]), // wire type 7 does not exist
      Buffer.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]), // an 11-byte varint
    ),
  )
  .map((bytes) => labelled(bytes, `bytes ${bytes.toString("hex")}`));

t("Execute with a request that is not valid protobuf answers a clean status, not INTERNAL", async () => {
  await property(malformed, 100, async (bytes, { client }) => {
    assertGrpc(await callRaw(client, bytes.value), "mistake-or-valid");
  });
});

t.run();
