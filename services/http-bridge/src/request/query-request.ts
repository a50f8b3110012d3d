// The HTTP request body → an ExecuteRequest. Shape errors are 400s that name the field.
import { z } from "zod";
import type { ExecuteRequest, Value } from "../../../../proto/gen/querygate/v1/query.js";

const jsonParam: z.ZodType<unknown> = z.union([
  z.string(),
  z.number(),
  z.boolean(),
  z.null(),
  z.array(z.unknown()),
  z.record(z.string(), z.unknown()),
]);

export const queryBody = z.object({
  query: z.string({ error: "query: expected the SQL text as a string" }).min(1, "query: must not be empty"),
  params: z.array(jsonParam, { error: "params: expected an array of values for $1, $2, …" }).default([]),
  maxRows: z.number().int().min(0).optional(),
  timeoutMs: z
    .number()
    .int()
    .min(0)
    .max(2 ** 31 - 1)
    .optional(),
  readOnly: z.boolean().optional(),
  applicationTag: z.string().max(40).optional(),
  /** JSON and NDJSON rows as arrays in column order instead of objects. */
  rowMode: z.enum(["object", "array"], { error: 'rowMode: expected "object" or "array"' }).optional(),
});

export type QueryBody = z.infer<typeof queryBody>;

export function toExecuteRequest(body: QueryBody): ExecuteRequest {
  return {
    sql: body.query,
    params: body.params.map(toValue),
    options: {
      maxRows: String(body.maxRows ?? 0),
      timeoutMs: body.timeoutMs ?? 0,
      readOnly: body.readOnly ?? false,
      applicationTag: body.applicationTag ?? "",
      // Set by buffered JSON (routes/app.ts): the streamed formats have no limit.
      maxResultBytes: "0",
      maxResultBytesAsArrays: false,
    },
  };
}

/**
 * JSON parameter → Value: strings go as text (PostgreSQL parses them for the
 * parameter's type), integers as int, other numbers as float, booleans as
 * bool, null as NULL, arrays as PostgreSQL array literals, objects as JSON text.
 * Integers beyond 2^53 lose digits in any JSON parser: send them as strings.
 */
export function toValue(param: unknown): Value {
  if (param === null || param === undefined) return { nullValue: 0 };
  if (typeof param === "string") return { textValue: param };
  if (typeof param === "boolean") return { boolValue: param };
  if (typeof param === "number")
    return Number.isSafeInteger(param) ? { intValue: String(param) } : { floatValue: param };
  if (Array.isArray(param)) return { textValue: arrayLiteral(param) };
  return { textValue: JSON.stringify(param) };
}

function arrayLiteral(items: unknown[]): string {
  const element = (item: unknown): string => {
    if (item === null || item === undefined) return "NULL";
    if (Array.isArray(item)) return arrayLiteral(item);
    const text = typeof item === "object" ? JSON.stringify(item) : String(item);
    return `"${text.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
  };
  return `{${items.map(element).join(",")}}`;
}
