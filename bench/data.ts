// The bench's tables, loaded fresh into its ephemeral PostgreSQL each run.
//
// bench_rows holds the big result: int8, text, numeric, timestamptz, bool,
// no index. Streams read it with a plain sequential scan (LIMIT for the
// smaller sizes), so the first rows come straight off the first pages
// whatever the result's size, unlike generate_series in FROM, which
// materialises the whole set before the first row.
// bench_lookup is the same shape with a primary key, for the small queries.
import type pg from "pg";

export const COLUMNS = "id, label, amount, at, flag";

const ROW = `i, 'row-' || i, (i % 100000) * 0.01, timestamptz '2024-01-01 00:00:00+00' + i * interval '1 second', i % 3 = 0`;

export async function loadTables(admin: pg.Client, bigRows: number, lookupRows: number): Promise<void> {
  const create = (name: string, key: string) =>
    `create unlogged table ${name} (id int8 not null ${key}, label text not null, amount numeric not null, at timestamptz not null, flag bool not null)`;
  await admin.query(create("bench_rows", ""));
  await admin.query(`insert into bench_rows select ${ROW} from generate_series(1, $1::int8) i`, [bigRows]);
  await admin.query(create("bench_lookup", "primary key"));
  await admin.query(`insert into bench_lookup select ${ROW} from generate_series(1, $1::int8) i`, [
    lookupRows,
  ]);
  // Sets hint bits and statistics now, so the first stream does not pay for them.
  await admin.query("vacuum (freeze, analyze) bench_rows, bench_lookup");
}

/** A statement returning the first `rows` rows of bench_rows. */
export function streamSql(rows: number, bigRows: number): string {
  return rows >= bigRows
    ? `select ${COLUMNS} from bench_rows`
    : `select ${COLUMNS} from bench_rows limit ${rows}`;
}

export const LOOKUP_SQL = `select ${COLUMNS} from bench_lookup where id = $1`;

/**
 * The lookup of the original Flask tool (shared/peers/lookup.lua): three
 * columns of bench_lookup. The loadgen phase sends it to every path, with the
 * id written into the text as the Flask tool's callers do, or as `$1`.
 */
export function peerLookupSql(id: string): string {
  return `select id, label, amount from bench_lookup where id = ${id}`;
}
