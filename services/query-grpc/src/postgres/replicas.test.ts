// The WAL positions the lag metric subtracts and the token check accepts.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { isLsn, lsnBytes } from "./replicas.js";

const t = suite("WAL positions");

t("a position's two halves make one byte offset", () => {
  assert.is(lsnBytes("0/16B3748"), 0x16b3748n);
  assert.is(lsnBytes("1/0") - lsnBytes("0/FFFFFFFF"), 1n);
});

t("only pg_lsn's text form counts as a position", () => {
  assert.ok(isLsn("0/16B3748"));
  assert.ok(isLsn("AB/CDEF0123"));
  for (const text of ["", "0/", "/1", "0/1/2", "0:1", "0/123456789", "x/1", "0/1' or 1=1"]) {
    assert.not.ok(isLsn(text), text);
  }
});

t.run();
