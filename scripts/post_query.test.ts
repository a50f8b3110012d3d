// scripts/post_query.sh, the original tool's client script, against a running
// bridge, under every shell it meets: the original README runs it with `sh`
// (dash on Debian, busybox in small images), others run it with bash. The
// create/insert/select flow works, the SQL reaches PostgreSQL byte for byte
// (quotes, backslashes, newlines, tabs, control characters), and
// QUERYGATE_TOKEN is sent as a Bearer credential.
import { execFile, spawnSync } from "node:child_process";
import { promisify } from "node:util";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { type JsonBody, startStack } from "../test/helpers.js";
import { roles, TOKENS } from "../test/roles.js";

const t = suite("scripts/post_query.sh");
const run = promisify(execFile);
const SHELLS: ReadonlyArray<{ name: string; command: string[] }> = [
  { name: "dash", command: ["dash"] },
  { name: "busybox sh", command: ["busybox", "sh"] },
  { name: "bash", command: ["bash"] },
];
let port: string;
let securedPort: string;

function works(command: string[]): boolean {
  const [file, ...args] = command as [string, ...string[]];
  return spawnSync(file, [...args, "-c", "command -v curl"], { stdio: "ignore" }).status === 0;
}

async function postQuery(
  shell: string[],
  sql: string,
  target = port,
  env: Record<string, string> = {},
): Promise<JsonBody> {
  const [file, ...args] = shell as [string, ...string[]];
  const { stdout } = await run(file, [...args, "scripts/post_query.sh", "127.0.0.1", target, sql], {
    env: { ...process.env, ...env },
  });
  return JSON.parse(stdout);
}

if (!works(["sh"])) {
  console.log("scripts/post_query.sh tests skipped: curl is not installed");
  t.skip("post_query.sh needs curl", () => {});
} else {
  t.before(async () => {
    port = String((await startStack()).bridge.port);
    securedPort = String((await startStack((await roles()).env)).bridge.port);
  });

  t(
    "the original tool's create, insert and select flow works through `sh scripts/post_query.sh`",
    async () => {
      const created = await postQuery(
        ["sh"],
        "create table script_account (id_user serial primary key, username varchar(50) not null)",
      );
      assert.equal(created.result, "OK");
      assert.is(created.command, "CREATE TABLE");
      const inserted = await postQuery(["sh"], "insert into script_account (username) values ('pmbrull')");
      assert.is(inserted.command, "INSERT");
      assert.is(inserted.rowCount, 1);
      const selected = await postQuery(["sh"], "select * from script_account");
      assert.equal(selected.result, [{ id_user: 1, username: "pmbrull" }]);
    },
  );

  t("a failing statement prints the bridge's JSON error", async () => {
    const failed = await postQuery(["sh"], "select * from no_such_table_for_the_script");
    assert.is(failed.error.code, "42P01");
  });

  // Every character JSON must escape, plus some it must not touch.
  const control = Array.from({ length: 31 }, (_, i) => String.fromCharCode(i + 1)).join("");
  const text = `say "hi"\nit's\ta back\\slash \\n not a newline, \\" nor a quote, ${control} é ✓ \x7f end\n`;

  for (const shell of SHELLS) {
    if (!works(shell.command)) {
      console.log(`scripts/post_query.sh under ${shell.name} skipped: ${shell.command[0]} is not installed`);
      t.skip(`under ${shell.name}: not installed`, () => {});
      continue;
    }
    t(
      `under ${shell.name}, quotes, backslashes, newlines, tabs and control characters reach PostgreSQL unchanged`,
      async () => {
        const selected = await postQuery(
          shell.command,
          `select '${text.replace(/'/g, "''")}' as said,\n\t2 as two\n`,
        );
        assert.equal(selected.result, [{ said: text, two: 2 }]);
      },
    );

    t(
      `under ${shell.name}, QUERYGATE_TOKEN goes as a Bearer credential, and without it the bridge says 401`,
      async () => {
        const asReader = await postQuery(shell.command, "select current_user as who", securedPort, {
          QUERYGATE_TOKEN: TOKENS.reader,
        });
        assert.equal(asReader.result, [{ who: "reader" }]);
        const anonymous = await postQuery(shell.command, "select 1", securedPort, { QUERYGATE_TOKEN: "" });
        assert.is(anonymous.error.grpcStatus, "UNAUTHENTICATED");
      },
    );
  }
}

t.run();
