// Property-based fuzzing of the bridge's POST /query: whatever a client sends,
// the answer is a result or a 4xx, never a 5xx, and the services keep
// working afterwards. Inputs are in inputs.ts, the invariant in check.ts.
import fc from "fast-check";
import { suite } from "uvu";
import { assertHttp, property, rawPost } from "./check.js";
import {
  deepJsonBody,
  deepSql,
  invalidUtf8Body,
  jsonBody,
  labelled,
  oddHeaders,
  oddTextBody,
  show,
  tokenSql,
  tooManyParams,
  wrongParamCount,
} from "./inputs.js";

const t = suite("fuzzing the bridge's POST /query");

t(
  "any JSON value, or a query or batch body with fields of the wrong type, is answered with a result or a 4xx",
  async () => {
    await property(jsonBody, 150, async (body, { bridgePort }) => {
      assertHttp(await rawPost(bridgePort, body.value), "mistake-or-valid");
    });
  },
);

t(
  "JSON nested up to 100,000 levels deep, anywhere in the body, is answered with a result or a 4xx",
  async () => {
    await property(deepJsonBody, 40, async (body, { bridgePort }) => {
      assertHttp(await rawPost(bridgePort, body.value), "mistake-or-valid");
    });
  },
);

t(
  "huge strings, NUL, lone surrogates and odd unicode in the SQL or a parameter are answered with a result or a 4xx",
  async () => {
    await property(oddTextBody, 60, async (body, { bridgePort }) => {
      assertHttp(await rawPost(bridgePort, body.value), "mistake-or-valid");
    });
  },
);

t("a body that is not valid UTF-8 is answered with a result or a 4xx", async () => {
  await property(invalidUtf8Body, 60, async (body, { bridgePort }) => {
    assertHttp(await rawPost(bridgePort, body.value), "mistake-or-valid");
  });
});

t("SQL nested 1,000 to 20,000 levels deep is answered with a result or a 4xx", async () => {
  await property(deepSql, 30, async (sql, { bridgePort }) => {
    assertHttp(await rawPost(bridgePort, JSON.stringify({ query: sql.value })), "mistake-or-valid");
  });
});

t("random SQL tokens are answered with a result or a 4xx", async () => {
  await property(
    tokenSql.map((sql) => labelled(sql, show(sql))),
    150,
    async (sql, { bridgePort }) => {
      assertHttp(await rawPost(bridgePort, JSON.stringify({ query: sql.value })), "mistake-or-valid");
    },
  );
});

t("the wrong number of parameters is answered with a 4xx", async () => {
  await property(wrongParamCount, 40, async (c, { bridgePort }) => {
    const body = JSON.stringify({ query: c.value.sql, params: c.value.params });
    assertHttp(await rawPost(bridgePort, body), "mistake");
  });
});

t("more than 65,535 parameters is answered with a 4xx", async () => {
  await property(tooManyParams, 10, async (c, { bridgePort }) => {
    const body = JSON.stringify({ query: c.value.sql, params: c.value.params });
    assertHttp(await rawPost(bridgePort, body), "mistake");
  });
});

t(
  "odd x-request-id, authorization and content-type headers are answered with a result or a 4xx",
  async () => {
    await property(
      fc.tuple(oddHeaders, fc.boolean()),
      80,
      async ([headers, withJsonType], { bridgePort }) => {
        const sent: Array<[string, string | Buffer]> =
          withJsonType && !headers.value.some(([n]) => n === "content-type")
            ? [["content-type", "application/json"], ...headers.value]
            : headers.value;
        assertHttp(await rawPost(bridgePort, '{"query":"select 1"}', sent), "mistake-or-valid");
      },
    );
  },
);

t.run();
