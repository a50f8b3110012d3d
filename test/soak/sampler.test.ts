// The zombie watch finds a request's statement in pg_stat_activity by the
// request id querygate writes into application_name; if it reads the name
// wrongly it finds nothing and the soak's "no statements left running" check
// passes whatever happens. This holds the reading to query-grpc's own writer.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { applicationName } from "../../services/query-grpc/src/postgres/application-name.js";
import { requestIdIn } from "./sampler.js";

const t = suite("the soak's zombie watch");

t("reads the request id out of the application_name query-grpc writes, with and without a tag", () => {
  assert.is(requestIdIn(applicationName("soak", "soak-17", "")), "soak-17");
  assert.is(requestIdIn(applicationName("anonymous", "soak-canary-http", "nightly")), "soak-canary-http");
});

t("ignores an application_name querygate did not write", () => {
  assert.is(requestIdIn("psql"), undefined);
});

t.run();
