import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import type { QueryFailure } from "../errors.js";
import { STATEMENT_KINDS, type StatementKind } from "../statement-kinds.js";
import { SqlParser } from "./parser.js";

const t = suite("SQL parser thread and its cache");
const all = new Set<StatementKind>(STATEMENT_KINDS);
const readOnly = new Set<StatementKind>(["read"]);
let parser: SqlParser;

t.before(async () => {
  parser = new SqlParser({ timeoutMs: 5000, cacheEntries: 100, maxTokens: 100_000 });
  await parser.start();
});
t.after(() => parser.close());

t("a statement sent again with other literal values is classified from the cache", async () => {
  const first = await parser.classify("select id, label from bench_lookup where id = 17", all);
  const parsed = parser.counts.parsed;
  for (let id = 18; id < 40; id++) {
    const again = await parser.classify(`select id, label from bench_lookup where id = ${id}`, all);
    assert.equal(again, first);
  }
  assert.is(parser.counts.parsed, parsed, "no literal variant crossed to the parser thread");
});

t("a refused kind stays refused for every literal variant", async () => {
  for (const id of [1, 2, 3]) {
    const failure = await parser.classify(`insert into t values (${id}, 'x${id}')`, readOnly).then(
      () => undefined,
      (error: QueryFailure) => error,
    );
    assert.ok(failure, `insert ${id} was refused`);
    assert.match(failure?.message ?? "", /write/);
  }
});

t("set_config's setting name is never answered from another's classification", async () => {
  await parser.classify("select set_config('search_path', 'public', true)", all);
  const failure = await parser.classify("select set_config('role', 'postgres', true)", all).then(
    () => undefined,
    (error: QueryFailure) => error,
  );
  assert.ok(failure, "changing role with set_config was refused");
});

t("a syntax error is reported at its own position, not a cached variant's", async () => {
  const error = (sql: string) =>
    parser.classify(sql, all).then(
      () => undefined,
      (e: QueryFailure) => e,
    );
  const short = await error("select 1 from where id = 1");
  const long = await error("select 100000 from where id = 1");
  assert.ok(short?.pg?.position && long?.pg?.position);
  assert.is.not(short?.pg?.position, long?.pg?.position);
});

t(
  "the parser thread grows by a few MiB over its first 300 statements, not by a recompiled parser",
  async () => {
    // In a process of its own, so the figure is the parser's alone. V8's
    // optimizing tier-up of the WebAssembly parser added 26-43 MiB here;
    // without it the growth was 9-10 MiB.
    const script = `
    import { SqlParser } from ${JSON.stringify(new URL("./parser.ts", import.meta.url).href)};
    const parser = new SqlParser({ timeoutMs: 5000, cacheEntries: 0, maxTokens: 100000 });
    const mib = () => process.memoryUsage().rss / 1048576;
    await parser.start();
    const started = mib();
    const kinds = new Set(["read", "write"]);
    for (let i = 0; i < 300; i++) {
      await parser.classify(i % 2 ? "select a, b from t where id = " + i + " and x in (select y from z)"
        : "insert into t (id, v) values (" + i + ", 'x') on conflict (id) do update set v = excluded.v returning *", kinds);
    }
    console.log(mib() - started);
    await parser.close();`;
    const { stdout } = await promisify(execFile)(process.execPath, [
      "--import",
      "tsx",
      "--input-type=module",
      "--eval",
      script,
    ]);
    const grown = Number(stdout.trim());
    assert.ok(grown < 18, `the parser thread grew by ${grown.toFixed(1)} MiB`);
  },
);

t.run();
