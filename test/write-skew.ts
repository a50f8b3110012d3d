// A real write skew for the retry tests: two serializable transactions each
// count the doctors on call, then take a different one off call; together
// they would leave nobody on call. PostgreSQL's SSI commits one and fails the
// other with 40001. An advisory lock held here is the barrier that makes both
// read before either writes, without sleeping.
import { adminClient, eventually } from "./helpers.js";

const BARRIER = 4711;

/** The statements of one side of the skew, taking `doctor` off call. */
export function skewStatements(doctor: string): Array<{ sql: string; params: Array<string | number> }> {
  return [
    { sql: "select count(*) from skew.oncall where on_call", params: [] },
    { sql: "select pg_advisory_xact_lock_shared($1::int8)", params: [BARRIER] },
    { sql: "update skew.oncall set on_call = false where doctor = $1", params: [doctor] },
  ];
}

/** Runs both sides at once (each `run` should resolve with its outcome, not throw) and returns both outcomes. */
export async function writeSkew<T>(run: (doctor: string) => Promise<T>): Promise<T[]> {
  const admin = await adminClient();
  await admin.query(`
    create schema if not exists skew;
    create table if not exists skew.oncall (doctor text primary key, on_call bool not null);
    truncate skew.oncall;
    insert into skew.oncall values ('alice', true), ('bob', true);
  `);
  await admin.query("select pg_advisory_lock($1::int8)", [BARRIER]);
  let runs: Array<Promise<T>> = [];
  try {
    runs = ["alice", "bob"].map(run);
    await eventually(
      async () => {
        const waiting = await admin.query(
          "select count(*)::int as n from pg_locks where locktype = 'advisory' and objid = $1 and not granted",
          [BARRIER],
        );
        return waiting.rows[0].n === 2;
      },
      15_000,
      "both transactions to read and wait at the barrier",
    );
  } finally {
    await admin.query("select pg_advisory_unlock($1::int8)", [BARRIER]);
  }
  return Promise.all(runs);
}
