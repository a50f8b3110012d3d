// The console in a real browser (Debian's Chromium, headless) against the
// whole stack: what a person does in it — run the original flow, stream and
// scroll a large result, cancel a slow statement, read a syntax error where
// it is — and that the page never reaches beyond the bridge.
import type { Browser } from "playwright-core";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { adminClient, atEnd, eventually, runningStatements, startStack } from "../../../../test/helpers.js";
import { CHROMIUM, ConsoleTab, type InPage, launchChromium } from "./test-support/browser.js";

const browser = await launchChromium();
if (!browser) {
  console.log(`console browser tests skipped: no Chromium at ${CHROMIUM} (apt-get install chromium)`);
} else {
  atEnd(() => browser.close());
  defineTests(browser);
}

function defineTests(browser: Browser) {
  const t = suite("console in Chromium");
  let url: string;
  let admin: Awaited<ReturnType<typeof adminClient>>;

  t.before(async () => {
    url = (await startStack()).url;
    admin = await adminClient();
    atEnd(() => admin.end());
  });

  /**
   * A test with a fresh console tab, held afterwards to the page's promises:
   * nothing requested beyond the bridge, no page error, no content security
   * policy violation. (In a test, not an after.each hook: uvu drops the rest
   * of a suite silently when a hook throws.)
   */
  function inTab(name: string, body: (tab: ConsoleTab) => Promise<void>) {
    t(name, async () => {
      const tab = await ConsoleTab.open(browser, url);
      try {
        await body(tab);
        assert.equal(tab.foreignRequests, [], "the page requested nothing beyond the bridge");
        assert.equal(tab.problems, [], "no page errors, no content security policy violations");
      } finally {
        await tab.close();
      }
    });
  }

  inTab(
    "select 1 shows its one value under a heading with its type, streamed as NDJSON with a request id",
    async (tab) => {
      const posted = await tab.start("select 1");
      assert.is(await tab.finished(1), "done");
      assert.is(posted.headers().accept, "application/x-ndjson");
      assert.match(
        posted.headers()["x-request-id"] ?? "",
        /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
      );
      assert.equal(JSON.parse(posted.postData() ?? "{}").query, "select 1");
      assert.equal(await tab.headings(), ["?column? integer"]);
      assert.equal(await tab.renderedRows(), [["1"]]);
      assert.match(await tab.status(), /^SELECT · 1 rows/);
    },
  );

  inTab("the original tool's flow runs in the page: create a table, insert, select the row", async (tab) => {
    assert.is(
      await tab.run(
        "create table console_account (id_user serial PRIMARY KEY, username VARCHAR(50) NOT NULL)",
      ),
      "done",
    );
    assert.match(await tab.status(), /^CREATE TABLE/);
    assert.is(await tab.run("insert into console_account (username) values ('pmbrull')"), "done");
    assert.match(await tab.status(), /^INSERT · 1 rows/);
    assert.is(await tab.run("select * from console_account"), "done");
    assert.equal(await tab.headings(), ["id_user integer", "username character varying"]);
    assert.equal(await tab.renderedRows(), [["1", "pmbrull"]]);
    // Numbers are right-aligned, by type OID (the type's name here is "integer").
    assert.is(await tab.text(".grid-body .grid-cell.numeric"), "1");
  });

  inTab(
    "100k rows stream into the table, which scrolls to the last one with only a screenful of rows in the DOM",
    async (tab) => {
      assert.is(await tab.run("select g, 'row ' || g as label from generate_series(1, 100000) g"), "done");
      assert.is(await tab.statusNumber("rows"), 100_000);
      const domRows = () => tab.page.$$eval(".grid-row", (rows) => rows.length);
      assert.ok((await domRows()) < 80, `${await domRows()} rows in the DOM`);
      await tab.page.$eval("#results", (results) => results.scrollTo(0, results.scrollHeight));
      await tab.page.waitForSelector('.grid-row[data-row="99999"]:not([hidden])');
      const last = (await tab.renderedRows()).at(-1);
      assert.equal(last, ["100000", "row 100000"]);
      assert.ok((await domRows()) < 80, `${await domRows()} rows in the DOM after scrolling`);
    },
  );

  inTab(
    "a result taller than the browser lays out (400k rows) scrolls proportionally, to its very last row",
    async (tab) => {
      assert.is(await tab.run("select g from generate_series(1, 400000) g"), "done");
      const scrollTo = (fraction: number) =>
        tab.page.$eval(
          "#results",
          (results, f) => results.scrollTo(0, (results.scrollHeight - results.clientHeight) * f),
          fraction,
        );
      const shownRows = async () => (await tab.renderedRows()).map(([g]) => Number(g));
      await scrollTo(0.5);
      await eventually(
        async () => (await shownRows()).some((g) => Math.abs(g - 200_000) < 50),
        5000,
        "the middle rows",
      );
      await scrollTo(1);
      await tab.page.waitForSelector('.grid-row[data-row="399999"]:not([hidden])');
      assert.is((await shownRows()).at(-1), 400_000);
    },
  );

  inTab(
    "Cancel stops a pg_sleep(30) at once: the page says cancelled and PostgreSQL runs it no more",
    async (tab) => {
      const posted = await tab.start("select pg_sleep(30) as console_cancel_probe");
      await eventually(
        async () => (await runningStatements(admin, "%console_cancel_probe%")) === 1,
        10_000,
        "the sleep to be running",
      );
      const deleted = tab.page.waitForRequest((r) => r.method() === "DELETE");
      await tab.page.click("#cancel");
      // Far below the sleep's 30 s: a cancel that did not reach PostgreSQL would time out here.
      assert.is(await tab.finished(1, 10_000), "cancelled");
      assert.match(await tab.status(), /^cancelled after/);
      assert.is(new URL((await deleted).url()).pathname, `/queries/${posted.headers()["x-request-id"]}`);
      await eventually(
        async () => (await runningStatements(admin, "%console_cancel_probe%")) === 0,
        10_000,
        "the sleep to be cancelled in PostgreSQL",
      );
    },
  );

  inTab(
    "a syntax error shows SQLSTATE and message, and marks its position in the editor, after an emoji too",
    async (tab) => {
      const sql = "select '🙂' as smile,\n  (2 +) as bad";
      assert.is(await tab.run(sql), "error");
      assert.is(await tab.text("#error .sqlstate"), "42601");
      assert.match(await tab.text("#error .error-message"), /syntax error at or near "\)"/);
      assert.match(await tab.text("#error .error-position"), /line 2, column 7/);
      assert.is(await tab.text("mark.error-at"), ")");
      assert.is(
        await tab.page.$eval("#sql", (textarea) => (textarea as { selectionStart: number }).selectionStart),
        sql.indexOf(")"),
      );
      // Typing clears the mark: it belonged to the text that ran.
      await tab.page.keyboard.type(" ");
      assert.is(await tab.page.$("mark.error-at"), null);
    },
  );

  inTab("an error's detail and hint are shown beside its SQLSTATE", async (tab) => {
    assert.is(await tab.run("select 'abc'::int"), "error");
    assert.is(await tab.text("#error .sqlstate"), "22P02");
    assert.is(await tab.run("select * from console_nowhere"), "error");
    assert.is(await tab.text("#error .sqlstate"), "42P01");
    assert.is(await tab.text("mark.error-at"), "console_nowhere");
    assert.is(
      await tab.run(
        "do $$ begin raise exception 'boom' using detail = 'the detail', hint = 'the hint'; end $$",
      ),
      "error",
    );
    assert.match(await tab.text("#error .error-detail"), /the detail/);
    assert.match(await tab.text("#error .error-hint"), /the hint/);
  });

  inTab("a pasted key is sent as a bearer token and kept in sessionStorage only", async (tab) => {
    await tab.page.fill("#token", "Bearer console-test-token");
    const posted = await tab.start("select 1");
    assert.is(posted.headers().authorization, "Bearer console-test-token");
    await tab.finished(1);
    const stored = await tab.page.evaluate(() => {
      const { sessionStorage, localStorage, document } = globalThis as unknown as InPage;
      return [sessionStorage.getItem("querygate.token"), localStorage.length, document.cookie];
    });
    assert.equal(stored, ["console-test-token", 0, ""]);
    await tab.page.reload();
    assert.is(await tab.page.inputValue("#token"), "console-test-token");
  });

  inTab("the downloads ask the bridge for CSV and for Arrow by Accept", async (tab) => {
    await tab.page.fill("#sql", "select 1 as one");
    for (const [format, accept] of [
      ["csv", "text/csv"],
      ["arrow", "application/vnd.apache.arrow.stream"],
    ]) {
      const posted = tab.page.waitForRequest((r) => r.method() === "POST");
      await tab.page.click(`button[data-format=${format}]`);
      const request = await posted;
      assert.is(request.headers().accept, accept);
      assert.is(JSON.parse(request.postData() ?? "{}").query, "select 1 as one");
    }
  });

  inTab("the running-queries panel shows what the bridge's GET /queries answers", async (tab) => {
    await tab.run("select 1");
    await tab.page.waitForSelector("#running:not([hidden])", { state: "attached" });
  });

  t(
    "the running-queries panel lists what GET /queries answers, and Kill sends DELETE /queries/{id}",
    async () => {
      const page = await browser.newPage();
      const killed: string[] = [];
      // The registry's contract (GET /queries, DELETE /queries/{id}), answered in the browser until the bridge has it.
      await page.route("**/queries**", (route) => {
        const request = route.request();
        if (request.method() === "DELETE") {
          killed.push(new URL(request.url()).pathname);
          return route.fulfill({ status: 200, json: { cancelled: true } });
        }
        return route.fulfill({
          json: {
            queries: [
              {
                id: "0b8c3c4e-0000-4000-8000-000000000001",
                state: "active",
                waitEvent: "PgSleep",
                startedAt: new Date().toISOString(),
                durationMs: 4200,
                fingerprint: "select pg_sleep($1)",
              },
            ],
          },
        });
      });
      await page.goto(`${url}/console`);
      await page.waitForSelector("#running:not([hidden]) li");
      assert.match(
        (await page.textContent("#running li")) ?? "",
        /select pg_sleep\(\$1\)[\s\S]*active · PgSleep · 4\.2 s/,
      );
      await page.click("#running li button");
      await eventually(() => killed.length === 1, 5000, "the kill request");
      assert.equal(killed, ["/queries/0b8c3c4e-0000-4000-8000-000000000001"]);
      await page.close();
    },
  );

  t.run();
}
