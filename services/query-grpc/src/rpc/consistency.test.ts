// The retry decision over the failures it must tell apart: only a read-only
// request, only before any of its result went out, only for failures that
// say the server or the connection was the problem — and never a write.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { QueryFailure } from "../errors.js";
import { retryDecision } from "./consistency.js";

const t = suite("read retry decision");

const sql = (sqlstate: string) => new QueryFailure("sql", `failed with ${sqlstate}`, { sqlstate });
const read = { readOnly: true, delivered: false, on: "replica" as const };

t("a read that lost its replica connection runs again on the primary", () => {
  assert.is(retryDecision(new QueryFailure("unavailable", "connection refused"), read), "primary");
});

t("a read that lost its primary connection runs again on a fresh connection", () => {
  assert.is(retryDecision(new QueryFailure("unavailable", "reset"), { ...read, on: "primary" }), "fresh");
  assert.is(retryDecision(sql("08006"), { ...read, on: "primary" }), "fresh");
});

t("shutdown, crash, starting up, a demoted node and recovery conflicts are retried", () => {
  for (const code of ["57P01", "57P02", "57P03", "25006", "40001", "40P01", "57P04", "08000", "08003"]) {
    assert.is(retryDecision(sql(code), read), "primary", code);
  }
});

t("a statement timeout, a syntax error, a unique violation or a permission error is not retried", () => {
  for (const code of ["57014", "42601", "23505", "42501", "22012", "53300"]) {
    assert.is(retryDecision(sql(code), read), undefined, code);
  }
});

t("a read whose rows already reached the caller is never retried", () => {
  assert.is(retryDecision(new QueryFailure("unavailable", "reset"), { ...read, delivered: true }), undefined);
  assert.is(retryDecision(sql("40001"), { ...read, delivered: true }), undefined);
});

t("a write is never retried, whatever failed", () => {
  const write = { readOnly: false, delivered: false, on: "primary" as const };
  assert.is(retryDecision(new QueryFailure("unavailable", "reset"), write), undefined);
  assert.is(retryDecision(sql("57P01"), write), undefined);
  assert.is(retryDecision(sql("40001"), write), undefined);
});

t("a lost COMMIT answer is never retried", () => {
  const unknown = new QueryFailure("commit_unknown", "may have committed");
  assert.is(retryDecision(unknown, read), undefined);
  assert.is(retryDecision(unknown, { ...read, on: "primary" }), undefined);
});

t("a replica behind the caller's token sends the read to the primary, and only from a replica", () => {
  const behind = new QueryFailure("replica_behind", "not yet replayed");
  assert.is(retryDecision(behind, read), "primary");
  assert.is(retryDecision(behind, { ...read, on: "primary" }), undefined);
});

t("cancellations, timeouts and overload are the caller's or the server's limits, not retried", () => {
  for (const kind of ["cancelled", "timeout", "overloaded", "shutting_down", "forbidden"] as const) {
    assert.is(retryDecision(new QueryFailure(kind, kind), read), undefined, kind);
  }
});

t.run();
