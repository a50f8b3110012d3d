// "Survive production", reading: a PostgreSQL of this file's own is stopped
// (`-m fast`: sessions closed) or killed (`-m immediate`: a crash, recovery
// on restart) while a result streams over gRPC or as NDJSON through the
// bridge, and while the pool sits idle. Expected: streams end with
// UNAVAILABLE (never INTERNAL/UNKNOWN, never a hang), calls while it is down
// fail fast with UNAVAILABLE / 503 + Retry-After, health follows the
// database, and after the restart everything works without intervention.
import { type ServiceError, status } from "@grpc/grpc-js";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ExecuteRequest, type ExecuteResponse } from "../proto/gen/querygate/v1/query.js";
import type { StopMode } from "./disposable-postgres.js";
import { Serving, toGathered, untilHealth, within } from "./fault-calls.js";
import { type FaultStack, startFaultStack } from "./fault-stack.js";
import { eventually, execute, executeError, type GatheredError, postQuery } from "./helpers.js";

const t = suite("PostgreSQL stopped or killed under reads");

const POOL_MAX = 4;
const BIG = "select g, md5(g::text) from generate_series(1, 10000000) g";
let stack: FaultStack;

t.before(async () => {
  stack = await startFaultStack("faults-reads", { POOL_MAX: String(POOL_MAX) });
});

// A test that failed half-way must not leave the next one without a database.
t.after.each(() => stack.ensureUp());

/** Execute with rows counted, not kept; `ended` settles with the status (undefined: OK). */
function stream(sql: string) {
  const seen = { rows: 0, footer: false };
  const call = stack.client.execute(ExecuteRequest.fromPartial({ sql }));
  call.on("data", (message: ExecuteResponse) => {
    seen.rows += message.rows?.rows.length ?? 0;
    if (message.footer) seen.footer = true;
  });
  const ended = new Promise<GatheredError | undefined>((resolve) => {
    call.on("error", (error: ServiceError) => resolve(toGathered(error)));
    call.on("end", () => resolve(undefined));
  });
  return { seen, ended };
}

const MODES: StopMode[] = ["fast", "immediate"];

for (const mode of MODES) {
  t(
    `an Execute streaming a large result ends with UNAVAILABLE when PostgreSQL is stopped (${mode}), and the service recovers`,
    async () => {
      const call = stream(BIG);
      await eventually(() => call.seen.rows > 0, 5000, "the first rows");
      await stack.goDown(mode);
      const error = await within(call.ended, 10_000, "the stream to end");
      assert.ok(error, "the stream failed");
      assert.is(status[error.code], "UNAVAILABLE", error.details);
      assert.not.ok(call.seen.footer, "no footer: the result is incomplete");
      await stack.comeBack();
    },
  );

  t(
    `an NDJSON stream through the bridge ends with an UNAVAILABLE error line when PostgreSQL is stopped (${mode})`,
    async () => {
      const response = await fetch(`${stack.bridgeUrl}/query`, {
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/x-ndjson" },
        body: JSON.stringify({ query: BIG }),
        signal: AbortSignal.timeout(15_000),
      });
      assert.is(response.status, 200);
      const reader = (response.body as ReadableStream<Uint8Array>).getReader();
      const decoder = new TextDecoder();
      let text = "";
      let down: Promise<void> | undefined;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        text += decoder.decode(value, { stream: true });
        down ??= text.includes(`{"row":`) ? stack.goDown(mode) : undefined;
        // Only the tail is needed once rows flow: keep memory flat however long it streams.
        if (down && text.length > 1 << 20) text = text.slice(-(1 << 16));
      }
      await down;
      const last = JSON.parse(text.trim().split("\n").at(-1) as string);
      assert.is(last.error?.grpcStatus, "UNAVAILABLE", JSON.stringify(last));
      assert.not.ok(text.includes(`{"footer":`), "no footer: the result is incomplete");
      await stack.comeBack();
    },
  );

  t(
    `connections idle in the pool when PostgreSQL is stopped (${mode}) never reach a caller after it is back`,
    async () => {
      // Fill the pool, then leave every connection idle.
      const sleeps = Array.from({ length: POOL_MAX }, () =>
        execute(stack.client, { sql: "select pg_sleep(0.2)" }),
      );
      await Promise.all(sleeps);
      const idle = () =>
        stack.direct(async (c) => {
          const result = await c.query(
            "select count(*)::int as n from pg_stat_activity where application_name = 'querygate' and state = 'idle'",
          );
          return result.rows[0].n as number;
        });
      assert.is(await idle(), POOL_MAX);
      await stack.goDown(mode);

      const refused = await within(
        executeError(stack.client, { sql: "select 1" }),
        5000,
        "Execute while down",
      );
      assert.is(status[refused.code], "UNAVAILABLE", refused.details);
      const viaBridge = await within(
        postQuery(stack.bridgeUrl, { query: "select 1" }),
        5000,
        "POST while down",
      );
      assert.is(viaBridge.status, 503);
      assert.is(viaBridge.headers.get("retry-after"), "1");

      await stack.db.start();
      await untilHealth(stack.health, Serving.SERVING, 10_000);
      // The very first calls after the restart, more of them than the pool holds, all at once.
      const first = await Promise.allSettled([
        ...Array.from({ length: 2 * POOL_MAX }, () => execute(stack.client, { sql: "select 1" })),
        ...Array.from({ length: POOL_MAX }, () =>
          postQuery(stack.bridgeUrl, { query: "select 1" }).then((r) => {
            if (r.status !== 200) throw new Error(`bridge answered ${r.status} ${r.text}`);
          }),
        ),
      ]);
      const failed = first.filter((r) => r.status === "rejected").map((r) => String(r.reason));
      assert.equal(failed, [], "no call after the restart failed");
    },
  );
}

t.run();
