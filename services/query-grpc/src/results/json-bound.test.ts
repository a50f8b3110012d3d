// The bound is what makes max_result_bytes safe for a JSON client: it must
// never count a row as smaller than the bridge's JSON of it.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { rowEncoder } from "../../../http-bridge/src/encoders/json.js";
import { JsonBound } from "./json-bound.js";

const t = suite("query-grpc result JSON bound");

const columns = [
  { name: "b", typeOid: 16 },
  { name: "flags", typeOid: 1000 },
  { name: "words", typeOid: 1009 },
  { name: 'quote"d', typeOid: 25 },
  { name: "n", typeOid: 23 },
  { name: "j", typeOid: 3802 },
];
const rows: Array<Array<string | null>> = [
  ["t", "{t,f,f,f,f}", "{a,b,c}", 'he said "\\\u0001\n"', "1", '{"a": [1, 2]}'],
  ["f", "{{f,f},{f,f}}", '{"a b",NULL,"\\"",\u0001,\u0001}', "\u0000\u0001\u0002", "-2147483648", "null"],
  [null, null, null, null, null, null],
  ["t", "{}", "{\u00e9,😀}", "", "0", "[]"],
];

t("a row never takes more bytes as the bridge's JSON object than the bound counts", () => {
  const encoder = rowEncoder(columns);
  for (const row of rows) {
    const nullColumns = row.flatMap((v, i) => (v === null ? [i] : []));
    const values = row.map((v) => v ?? "");
    const json = `${encoder.object(values, nullColumns)},`;
    const bound = new JsonBound(
      columns.map((c) => c.name),
      Number.MAX_SAFE_INTEGER,
    );
    bound.add([row]);
    assert.ok(bound.bytes >= Buffer.byteLength(json), `${bound.bytes} < ${Buffer.byteLength(json)}: ${json}`);
  }
});

t("a row never takes more bytes as the bridge's JSON array than the bound for arrays counts", () => {
  const encoder = rowEncoder(columns);
  for (const row of rows) {
    const nullColumns = row.flatMap((v, i) => (v === null ? [i] : []));
    const json = `${encoder.array(
      row.map((v) => v ?? ""),
      nullColumns,
    )},`;
    const arrays = new JsonBound(
      columns.map((c) => c.name),
      Number.MAX_SAFE_INTEGER,
      true,
    );
    arrays.add([row]);
    assert.ok(
      arrays.bytes >= Buffer.byteLength(json),
      `${arrays.bytes} < ${Buffer.byteLength(json)}: ${json}`,
    );
    const objects = new JsonBound(
      columns.map((c) => c.name),
      Number.MAX_SAFE_INTEGER,
    );
    objects.add([row]);
    assert.ok(arrays.bytes < objects.bytes, "column names are not counted for arrays");
  }
});

t("rows past the limit are refused, rows within it are not", () => {
  const bound = new JsonBound(["v"], 100);
  assert.ok(bound.add([["x".repeat(80)]]));
  assert.not.ok(bound.add([["x"]]));
});

t.run();
