// Buffered JSON's rows are held as encoded chunks of bounded size, and the
// chunks read back as exactly the JSON array a string per row would make.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { BufferedRows, chunkedBody } from "./buffered-rows.js";

const t = suite("buffered JSON rows");

const rowsOf = (n: number) =>
  Array.from({ length: n }, (_, i) =>
    JSON.stringify([i, i % 7 === 0 ? "zürich ☃ 東京" : "x".repeat(i % 50)]),
  );

t("a small result stays one string, the same as joining its rows", () => {
  const rows = new BufferedRows();
  const json = rowsOf(10);
  for (const row of json) rows.add(row);
  assert.is(rows.array(), `[${json.join(",")}]`);
});

t(
  "a large result is held as encoded chunks of at most about 64 KiB that read back as the same array, multi-byte text included",
  async () => {
    const rows = new BufferedRows();
    const json = rowsOf(50_000);
    for (const row of json) rows.add(row);
    const expected = `[${json.join(",")}]`;
    const chunks = rows.array();
    assert.ok(Array.isArray(chunks), "a large result is chunks, not one string");
    for (const chunk of chunks as Buffer[])
      assert.ok(chunk.length < 80 * 1024, `a chunk of ${chunk.length} bytes`);
    const { body, length } = chunkedBody(chunks as Buffer[]);
    const sent = Buffer.from(await new Response(body).arrayBuffer());
    assert.is(length, Buffer.byteLength(expected));
    assert.is(sent.toString("utf8"), expected);
    assert.equal(JSON.parse(sent.toString("utf8")).length, 50_000);
  },
);

t(
  "the body says how many bytes it still holds after each read, and 0 once read to its end or cancelled",
  async () => {
    const chunks = () => [Buffer.alloc(100), Buffer.alloc(200), Buffer.alloc(300)];
    const heard: number[] = [];
    const { body } = chunkedBody(chunks(), (left) => heard.push(left));
    const reader = body.getReader();
    while (!(await reader.read()).done) {}
    // Each chunk read counts until the next read: it is still on its way to the socket.
    assert.equal(heard, [600, 500, 300, 0]);
    const cancelled: number[] = [];
    const second = chunkedBody(chunks(), (left) => cancelled.push(left)).body.getReader();
    await second.read();
    await second.cancel();
    assert.is(cancelled[cancelled.length - 1], 0);
  },
);

t.run();
