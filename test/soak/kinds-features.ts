// The soak's kinds for what landed with the Flask-tool work, the streamed
// formats and the registry: lookups with their values in the SQL text (the
// parse cache classifies them by literal-free shape, so a wrong cache hit
// would show as a wrong row), CSV and Arrow streams read whole or abandoned,
// writes retried with an Idempotency-Key, and statements cancelled by id.
// Memory, cancel and drain bugs in these paths only show under load, which is
// why they are here and not only in the services' tests.
import { Agent } from "node:http";
import { connect } from "node:net";
import { type Bridge, type Ending, post } from "./clients.js";
import { ENDLESS, ITEMS, json, rowsProblem, SLEEP, TEN_K } from "./kinds.js";
import { between, type Kind, overGrpc, overHttp, succeeded, writeOutcome } from "./mix.js";

const CSV = { accept: "text/csv" };
const ARROW = { accept: "application/vnd.apache.arrow.stream" };
/** No primary key, unlike soak_writes: a write that ran twice leaves two rows, which the final check counts. */
export const KEYED_TABLE = "soak_keyed_writes";
const KEYED_INSERT = `insert into ${KEYED_TABLE} (token, via) values ($1, $2) returning token`;

const status = (ending: Ending | undefined) => (ending?.kind === "http" ? ending.status : undefined);
const header = (ending: Ending, name: string) =>
  ending.kind === "http" ? [ending.headers?.[name]].flat()[0] : undefined;

/** A whole streamed result ends with trailers; its row count must be the one asked for. */
const trailerProblem = (ending: Ending, rows: number) => {
  if (ending.kind !== "http" || ending.status !== 200) return undefined;
  const count = ending.trailers?.["querygate-row-count"];
  return count === String(rows)
    ? undefined
    : `querygate-row-count trailer ${count ?? "absent"}, expected ${rows}`;
};

const literalLookups: Kind[] = [
  overHttp("literal lookup", 8, "valid", (ctx) => {
    const id = between(ctx, 1, ITEMS);
    return {
      body: json({ query: `select id, label from soak_items where id = ${id}` }),
      check: (b) =>
        b.includes(`{"id":${id},"label":"item ${id}"}`) ? undefined : `wrong row: ${b.slice(0, 120)}`,
    };
  }),
  overHttp("literal string lookup", 2, "valid", (ctx) => {
    const id = between(ctx, 1, ITEMS);
    return {
      body: json({ query: `select id from soak_items where label = 'item ${id}'` }),
      check: (b) => (b.includes(`"result":[{"id":${id}}]`) ? undefined : `wrong row: ${b.slice(0, 120)}`),
    };
  }),
  overGrpc("literal lookup", 3, "valid", (ctx) => ({
    request: { sql: `select id, label from soak_items where id = ${between(ctx, 1, ITEMS)}` },
    check: rowsProblem(1),
  })),
  // Request ids are [A-Za-z0-9-], safe inside a literal: the same shape as every other literal insert.
  overHttp("literal insert", 2, "valid", (_, id) => ({
    body: json({ query: `insert into soak_writes (token, via) values ('${id}', 'literal')` }),
    writes: true,
  })),
];

const formats: Kind[] = [
  overHttp("csv 10k", 2, "valid", () => ({
    body: json({ query: TEN_K }),
    headers: CSV,
    check: (b) => {
      const lines = b.split("\n");
      return lines[0] === "g,h" && lines.length === 10_002 && lines[10_001] === ""
        ? undefined
        : `CSV of ${lines.length} lines, header ${lines[0]?.slice(0, 40)}`;
    },
    checkEnding: (ending) => trailerProblem(ending, 10_000),
  })),
  overHttp("arrow 10k", 2, "valid", () => ({
    body: json({ query: TEN_K }),
    headers: ARROW,
    checkEnding: (ending) => trailerProblem(ending, 10_000),
  })),
  overHttp("csv abandoned", 1, "give-up", () => ({
    body: json({ query: ENDLESS }),
    headers: CSV,
    giveUpOnFirstChunk: true,
  })),
  overHttp("arrow abandoned", 1, "give-up", () => ({
    body: json({ query: ENDLESS }),
    headers: ARROW,
    giveUpOnFirstChunk: true,
  })),
];

const keyed = (requestId: string, key: string, suffix = "") => ({
  requestId: `${requestId}${suffix}`,
  headers: { "idempotency-key": key },
});

const idempotency: Kind[] = [
  {
    name: "http idempotent twice",
    weight: 3,
    expect: "valid",
    run: async (ctx, requestId) => {
      const key = `soak-key-${requestId}`;
      const body = json({ query: KEYED_INSERT, params: [requestId, "keyed"] });
      const first = await post(ctx.bridge, body, keyed(requestId, key));
      const again = await post(ctx.bridge, body, keyed(requestId, key, ".r"));
      // The retry decides: replayed or run anew, the row is there once; only when both failed may it be absent.
      const outcomes = [writeOutcome(first), writeOutcome(again)];
      ctx.wrote(
        requestId,
        outcomes.includes("acked") ? "acked" : outcomes.includes("unknown") ? "unknown" : "failed",
      );
      let problem: string | undefined;
      if (succeeded(first) && succeeded(again)) {
        if (header(again, "idempotent-replayed") !== "true")
          problem = "retry answered without Idempotent-Replayed";
        else if (first.kind === "http" && again.kind === "http" && first.body !== again.body)
          problem = `replay differs: ${again.body.slice(0, 120)}`;
      } else if (succeeded(first)) problem = `retry of a committed write answered ${status(again)}`;
      return { ending: succeeded(first) ? again : first, problem };
    },
  },
  {
    name: "http key reused, new body",
    weight: 1,
    expect: "mistake",
    run: async (ctx, requestId) => {
      const key = `soak-key-${requestId}`;
      const body = json({ query: KEYED_INSERT, params: [requestId, "keyed"] });
      const other = json({ query: KEYED_INSERT, params: [`${requestId}.b`, "keyed other"] });
      const first = await post(ctx.bridge, body, keyed(requestId, key));
      const second = await post(ctx.bridge, other, keyed(requestId, key, ".b"));
      ctx.wrote(requestId, writeOutcome(first));
      ctx.wrote(`${requestId}.b`, status(second) === 422 ? "failed" : writeOutcome(second));
      const problem =
        succeeded(first) && status(second) !== 422
          ? `same key, another body answered ${status(second)}, expected 422`
          : undefined;
      return { ending: second, problem };
    },
  },
];

/**
 * The registry's calls get connections of their own: a caller's cancel must
 * never wait behind the mix's pool. A new one each: a kept-alive socket sits
 * idle between cancels, and a DELETE sent on it just as the bridge's 5 s
 * keep-alive timeout closes it is reset (ECONNRESET; once in a CI soak), a
 * race of the client's pool, not of the bridge.
 */
const registryAgent = new Agent({ keepAlive: false });
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * pg_sleep(10) through the bridge, then DELETE /queries/{id} until the
 * registry finds it (404 until its statement runs) or the call has ended.
 * A 200 must end the call with 499, grpcStatus CANCELLED; a call that ran
 * into its statement timeout while every DELETE said 404 means the registry
 * never saw a statement that ran for seconds.
 */
const cancelById: Kind = {
  name: "http cancel by id",
  weight: 2,
  expect: "cancel",
  run: async (ctx, requestId) => {
    let callEnded = false;
    const call = post(ctx.bridge, json({ query: SLEEP }), { requestId }).finally(() => {
      callEnded = true;
    });
    const registry: Bridge = { url: ctx.bridge.url, agent: registryAgent };
    let cancel: Ending | undefined;
    for (let attempt = 1; !callEnded; attempt++) {
      cancel = await post(registry, "", {
        requestId: `${requestId}.c${attempt}`,
        method: "DELETE",
        path: `/queries/${requestId}`,
      });
      if (status(cancel) !== 404) break;
      await pause(25);
    }
    const ending = await call;
    const cancelled = status(cancel) === 200;
    let problem: string | undefined;
    if (cancel && status(cancel) !== 200 && status(cancel) !== 404)
      problem = `DELETE answered ${cancel.kind === "http" ? `${cancel.status} ${cancel.body.slice(0, 100)}` : cancel.kind === "net-error" ? `net-error ${cancel.message}` : cancel.kind}`;
    else if (cancelled && !(status(ending) === 499 && whenCancelled(ending)))
      problem = `cancelled by id, but the call ended ${ending.kind === "http" ? `${ending.status} ${ending.body.slice(0, 100)}` : ending.kind}`;
    else if (!cancelled && status(ending) === 504)
      problem = "every DELETE said 404 while the statement ran to its timeout";
    else if (cancelled && cancel?.kind === "http" && !cancel.body.includes('"cancelled":true'))
      problem = `DELETE 200 without "cancelled":true: ${cancel.body.slice(0, 100)}`;
    return { ending, problem };
  },
};

/**
 * Two requests pipelined on one connection, which closes while the first
 * still runs: by then the second, a 0.6 MB result, is assembled and queued
 * behind it. Node neither closes a queued response nor aborts its request's
 * signal, so its budget share stayed taken for good (and a slower statement
 * ran on): the budget check sees every share come back.
 */
const pipelinedThenGone: Kind = {
  name: "http pipelined, gone while the first runs",
  weight: 0.5,
  expect: "give-up",
  run: async (ctx, requestId) => {
    const socket = connect(Number(new URL(ctx.bridge.url).port), "127.0.0.1");
    socket.on("error", () => {});
    const requests: Array<[string, string]> = [
      [requestId, "select pg_sleep(1)"],
      [`${requestId}.b`, "select g, repeat('p', 1000) as pad from generate_series(1, 600) g"],
    ];
    for (const [id, sql] of requests) {
      const body = json({ query: sql });
      socket.write(
        `POST /query HTTP/1.1\r\nhost: soak\r\ncontent-type: application/json\r\nx-request-id: ${id}\r\n` +
          `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
    }
    await pause(400);
    socket.destroy();
    return { ending: { kind: "gave-up" } };
  },
};

const whenCancelled = (ending: Ending) =>
  ending.kind === "http" && ending.body.includes('"grpcStatus":"CANCELLED"');

export const FEATURE_KINDS: readonly Kind[] = [
  ...literalLookups,
  ...formats,
  ...idempotency,
  cancelById,
  pipelinedThenGone,
];
