// The figures docs/console.md shows: its screenshot (docs/console.png) and
// the console's time to first row for a million-row result, measured in the
// browser, plus the page's size. Runs the whole stack on an embedded
// PostgreSQL, like the tests:
//   node --import tsx services/http-bridge/src/console/test-support/console-figures.ts
import { gzipSync } from "node:zlib";
import { adminClient, startStack, stopAll } from "../../../../../test/helpers.js";
import { consoleAssets } from "../assets.js";
import { CHROMIUM, ConsoleTab, launchChromium } from "./browser.js";

const SCREENSHOT = new URL("../../../../../docs/console.png", import.meta.url);
const MILLION = "select g as n, 'row ' || g as label from generate_series(1, 1000000) g";
const RUNS = 3;

const browser = await launchChromium();
if (!browser) throw new Error(`no Chromium at ${CHROMIUM}`);
try {
  const { url } = await startStack();
  const admin = await adminClient();
  await admin.query(`
    create table if not exists orders (id serial primary key, customer text not null, amount numeric(10,2),
      placed timestamptz not null, tags text[], details jsonb);
    truncate orders restart identity;
    insert into orders (customer, amount, placed, tags, details)
    select (array['Ada','Grace','Edsger','Barbara','Ken','Margaret'])[1 + g * 7 % 6], (g * 7919 % 90000) / 100.0,
      timestamptz '2026-11-30 09:00+00' + g * interval '7 minutes', array['web', (array['eu','us','apac'])[1 + g % 3]],
      case when g % 4 = 0 then null else jsonb_build_object('items', g % 5 + 1, 'gift', g % 3 = 0) end
    from generate_series(1, 5000) g`);
  await admin.end();

  const tab = await ConsoleTab.open(browser, url);
  await tab.page.setViewportSize({ width: 1100, height: 620 });
  await tab.run(
    "-- the biggest orders of the last day\nselect id, customer, amount, placed, tags, details\n  from orders\n where placed > timestamptz '2026-11-30 12:00+00'\n order by amount desc",
  );
  await tab.page.screenshot({ path: SCREENSHOT.pathname });
  console.log(`screenshot: ${SCREENSHOT.pathname}`);

  for (let i = 0; i < RUNS; i++) {
    await tab.run(MILLION);
    const firstRow = await tab.statusNumber("firstRowMs");
    await tab.page.$eval("#results", (results) => results.scrollTo(0, results.scrollHeight));
    await tab.page.waitForSelector('.grid-row[data-row="999999"]:not([hidden])');
    const domRows = await tab.page.$$eval(".grid-row", (rows) => rows.length);
    console.log(
      `1M rows: first row ${firstRow} ms; ${await tab.status()}; ${domRows} rows in the DOM at the end`,
    );
  }
  await tab.close();

  let bytes = 0;
  let gzipped = 0;
  for (const [name, asset] of await consoleAssets()) {
    bytes += asset.body.byteLength;
    gzipped += gzipSync(asset.body).byteLength;
    console.log(`${name}: ${asset.body.byteLength} B`);
  }
  console.log(`page: ${bytes} B (${gzipped} B gzipped)`);
} finally {
  await browser.close();
  await stopAll();
}
process.exit(0);
