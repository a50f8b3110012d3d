// scripts/post_query.sh, the original tool's client script, against a running
// bridge: the create/insert/select flow works and the SQL reaches PostgreSQL
// byte for byte, quotes and newlines included.
import { execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { type JsonBody, startStack } from "../test/helpers.js";

const t = suite("scripts/post_query.sh");
const run = promisify(execFile);
let port: string;

function hasCurl(): boolean {
  try {
    execFileSync("bash", ["-c", "command -v curl"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

async function postQuery(sql: string): Promise<JsonBody> {
  const { stdout } = await run("bash", ["scripts/post_query.sh", "127.0.0.1", port, sql]);
  return JSON.parse(stdout);
}

if (!hasCurl()) {
  console.log("scripts/post_query.sh tests skipped: curl is not installed");
  t.skip("post_query.sh needs curl", () => {});
} else {
  t.before(async () => {
    const { bridge } = await startStack();
    port = String(bridge.port);
  });

  t("the original tool's create, insert and select flow works through the script", async () => {
    const created = await postQuery(
      "create table script_account (id_user serial primary key, username varchar(50) not null)",
    );
    assert.equal(created.result, "OK");
    assert.is(created.command, "CREATE TABLE");
    const inserted = await postQuery("insert into script_account (username) values ('pmbrull')");
    assert.is(inserted.command, "INSERT");
    assert.is(inserted.rowCount, 1);
    const selected = await postQuery("select * from script_account");
    assert.equal(selected.result, [{ id_user: 1, username: "pmbrull" }]);
  });

  t("quotes, backslashes, tabs and newlines in the SQL reach PostgreSQL unchanged", async () => {
    const text = `say "hi"\nit's\ta back\\slash`;
    const selected = await postQuery(`select '${text.replace(/'/g, "''")}' as said,\n  2 as two`);
    assert.equal(selected.result, [{ said: text, two: 2 }]);
  });

  t("a failing statement prints the bridge's JSON error", async () => {
    const failed = await postQuery("select * from no_such_table_for_the_script");
    assert.is(failed.error.code, "42P01");
  });
}

t.run();
