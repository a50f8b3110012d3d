// The console's DOM-free logic, in Node, where it runs without a browser:
// the highlighter never loses a character and knows PostgreSQL's quoting, a
// position lands on the right character, and the NDJSON reader keeps every
// row however the network cuts the stream.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { highlightHtml, indexOfPosition, lineAndColumn, tokenize } from "./page/highlight.js";
import { type QueryErrorBody, type ResultFooter, RowStore, readResult } from "./page/result-stream.js";

const t = suite("console page logic");

const kinds = (sql: string) => tokenize(sql).map((token) => [token.kind, sql.slice(token.from, token.to)]);

t("tokens cover the text exactly, in order, whatever it holds", () => {
  for (const sql of [
    "select 1",
    "select 'it''s', E'a\\'b', \"Quoted \"\"x\"\"\" from t -- end",
    "select $tag$ a $$ b $tag$, $$x$$, $1 /* a /* nested */ comment */ + 1.5e3",
    "unterminated 'string",
    "🙂 é ß ∑",
  ]) {
    let at = 0;
    for (const token of tokenize(sql)) {
      assert.is(token.from, at, sql);
      assert.ok(token.to > token.from, sql);
      at = token.to;
    }
    assert.is(at, sql.length, sql);
  }
});

t("strings, quoted names, dollar quotes and nested comments are single tokens", () => {
  assert.equal(kinds("'it''s'"), [["string", "'it''s'"]]);
  assert.equal(kinds("E'a\\'b'"), [["string", "E'a\\'b'"]]);
  assert.equal(kinds('"a""b"'), [["quoted", '"a""b"']]);
  assert.equal(kinds("$f$ select 'x' $f$"), [["string", "$f$ select 'x' $f$"]]);
  assert.equal(kinds("/* a /* b */ c */"), [["comment", "/* a /* b */ c */"]]);
  assert.equal(kinds("Select x"), [
    ["keyword", "Select"],
    ["space", " "],
    ["identifier", "x"],
  ]);
  assert.equal(kinds("$1"), [["parameter", "$1"]]);
});

t("the highlighted HTML escapes markup and shows the same text", () => {
  const html = highlightHtml("select '<b>&' from x");
  assert.not.match(html, /<b>/);
  const text = html
    .replace(/<[^>]+>/g, "")
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&amp;/g, "&");
  assert.is(text, "select '<b>&' from x\n");
});

t("the error mark wraps the token at the position, or a space at the end of the text", () => {
  assert.match(highlightHtml("select * fro x", 9), /<mark class="error-at">fro<\/mark>/);
  assert.match(highlightHtml("select * fromm", 11), /fr<mark class="error-at">omm<\/mark>/);
  assert.match(highlightHtml("select (", 8), /<mark class="error-at"> <\/mark>\n$/);
});

t("PostgreSQL's character position maps to the string index, past surrogate pairs", () => {
  const sql = "select '🙂',\n  (2 +)";
  assert.is(indexOfPosition(sql, 1), 0);
  assert.is(indexOfPosition(sql, 19), sql.indexOf(")"));
  assert.is(indexOfPosition("abc", 99), 3);
  assert.equal(lineAndColumn(sql, sql.indexOf(")")), { line: 2, column: 7 });
});

/** A ReadableStream that hands over `text` as UTF-8 in pieces of `size` bytes. */
function streamOf(text: string, size: number): ReadableStream<Uint8Array> {
  const bytes = new TextEncoder().encode(text);
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(at, at + size));
      at += size;
    },
  });
}

async function read(ndjson: string, size: number) {
  const rows = new RowStore();
  const seen: { columns: string[]; footer?: ResultFooter; error?: QueryErrorBody; batches: number } = {
    columns: [],
    batches: 0,
  };
  await readResult(streamOf(ndjson, size), rows, {
    onHeader: (columns) => {
      seen.columns = columns.map((c) => c.name);
    },
    onRows: () => {
      seen.batches++;
    },
    onFooter: (footer) => {
      seen.footer = footer;
    },
    onError: (error) => {
      seen.error = error;
    },
  });
  return { rows, seen, values: Array.from({ length: rows.count }, (_, i) => rows.values(i)) };
}

const columns =
  '{"header":{"columns":[{"name":"n","type":"integer","typeOid":23},{"name":"s","type":"text","typeOid":25}]}}';

t("rows survive any cut of the stream, multi-byte characters included", async () => {
  const lines = [columns];
  for (let i = 1; i <= 50; i++) lines.push(JSON.stringify({ row: { n: i, s: `é🙂 ${i}` } }));
  lines.push('{"footer":{"command":"SELECT","rowCount":50}}');
  const ndjson = `${lines.join("\n")}\n`;
  for (const size of [1, 2, 3, 7, 64, 100_000]) {
    const { seen, values } = await read(ndjson, size);
    assert.equal(seen.columns, ["n", "s"]);
    assert.is(values.length, 50, `pieces of ${size} bytes`);
    assert.equal(values[0], [1, "é🙂 1"]);
    assert.equal(values[49], [50, "é🙂 50"]);
    assert.equal(seen.footer, { command: "SELECT", rowCount: 50 });
  }
});

t("rows as arrays keep columns of the same name apart; object rows are read by column name", async () => {
  const header =
    '{"header":{"columns":[{"name":"a","type":"integer","typeOid":23},{"name":"a","type":"integer","typeOid":23}]}}';
  const arrays = await read(`${header}\n{"row":[1,2]}\n{"footer":{"command":"SELECT","rowCount":1}}\n`, 5);
  assert.equal(arrays.values, [[1, 2]]);
  const objects = await read(`${columns}\n{"row":{"s":null,"n":7}}\n`, 5);
  assert.equal(objects.values, [[7, null]]);
});

t("an error line after some rows is reported, and the rows before it are kept", async () => {
  const { seen, values } = await read(
    `${columns}\n{"row":{"n":1,"s":"x"}}\n{"error":{"code":"22012","message":"division by zero"}}\n`,
    4,
  );
  assert.is(values.length, 1);
  assert.is(seen.error?.code, "22012");
  assert.is(seen.footer, undefined);
});

t("the row store grows past its first capacity without losing rows", async () => {
  const lines = [columns];
  for (let i = 0; i < 5000; i++) lines.push(`{"row":{"n":${i},"s":"r"}}`);
  const { rows } = await read(`${lines.join("\n")}\n`, 4096);
  assert.is(rows.count, 5000);
  assert.equal(rows.values(4999), [4999, "r"]);
  assert.equal(rows.values(1024), [1024, "r"]);
});

t.run();
