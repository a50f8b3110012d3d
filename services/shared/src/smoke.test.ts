import pg from "pg";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { database } from "../../../test/helpers.js";

const t = suite("embedded database");
t("answers a query", async () => {
  const { url } = await database();
  const client = new pg.Client(url);
  await client.connect();
  const r = await client.query("select 1 as one");
  await client.end();
  assert.equal(r.rows, [{ one: 1 }]);
});
t.run();
