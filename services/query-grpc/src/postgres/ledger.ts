// The idempotency ledger: one row per (caller, key) in schema `querygate`,
// written in the caller's own transaction, so the row exists exactly when
// the caller's writes committed. All of its SQL lives here.
//
// How a transaction uses it (the engines call the hook, see LedgerHook):
// - claim, right after BEGIN and before the transaction takes the caller's
//   role: INSERT the key. A retry while the first run is still open waits on
//   the unique index (bounded by lock_timeout → QGK02); a retry after a
//   commit finds the row (→ QGK01) and the transaction aborts before any of
//   the caller's statements ran.
// - record, after the role guard and just before COMMIT: the outcome
//   (protobuf bytes) goes into the claimed row.
//
// Who may write it: the functions are SECURITY DEFINER and EXECUTE is granted
// to querygate's login role only, never to PUBLIC. Callers' own SQL runs as
// their role, which may not call them; were a caller's statement to switch
// to the login role to forge another caller's entry, the role guard rolls it
// back. So callers' roles need no grants, and none can write the ledger.
import type { ControlConnection } from "./control.js";
import { type LedgerHook, quoteLiteral, type StatementOutcome } from "./transaction.js";

/** SQLSTATEs raised by querygate.idempotency_claim. */
export const KEY_USED = "QGK01";
export const KEY_BUSY = "QGK02";

export interface LedgerEntry {
  requestHash: string;
  outcome: Buffer | null;
  rowsOmitted: boolean;
}

const MIGRATION = `
create schema if not exists querygate;
create table if not exists querygate.idempotency_keys (
  caller text not null,
  key text not null,
  request_hash text not null,
  outcome bytea,
  rows_omitted boolean not null default false,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  primary key (caller, key)
);
create index if not exists idempotency_keys_expires_at on querygate.idempotency_keys (expires_at);

create or replace function querygate.idempotency_claim(p_caller text, p_key text, p_request_hash text, p_ttl_s int, p_wait_ms int)
returns void language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  previous text := current_setting('lock_timeout');
  claimed int;
begin
  perform set_config('lock_timeout', p_wait_ms || 'ms', true);
  begin
    insert into querygate.idempotency_keys as k (caller, key, request_hash, expires_at)
    values (p_caller, p_key, p_request_hash, now() + make_interval(secs => p_ttl_s))
    on conflict (caller, key) do update
      set request_hash = excluded.request_hash, outcome = null, rows_omitted = false,
          created_at = now(), expires_at = excluded.expires_at
      where k.expires_at <= now();
    get diagnostics claimed = row_count;
  exception when lock_not_available then
    raise exception 'idempotency key % is held by a request still running', p_key using errcode = 'QGK02';
  end;
  perform set_config('lock_timeout', previous, true);
  if claimed = 0 then
    raise exception 'idempotency key % was used already', p_key using errcode = 'QGK01';
  end if;
end $$;

create or replace function querygate.idempotency_record(p_caller text, p_key text, p_outcome bytea, p_rows_omitted boolean)
returns void language sql security definer set search_path = pg_catalog, pg_temp as $$
  update querygate.idempotency_keys set outcome = p_outcome, rows_omitted = p_rows_omitted
   where caller = p_caller and key = p_key;
$$;

create or replace function querygate.idempotency_lookup(p_caller text, p_key text)
returns table (request_hash text, outcome bytea, rows_omitted boolean)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select request_hash, outcome, rows_omitted from querygate.idempotency_keys
   where caller = p_caller and key = p_key and expires_at > now();
$$;

-- One replica at a time (the advisory lock), never waiting for a row a request holds (SKIP LOCKED).
create or replace function querygate.idempotency_cleanup(p_limit int)
returns int language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  deleted int;
begin
  if not pg_try_advisory_xact_lock(hashtext('querygate.idempotency_cleanup')) then
    return 0;
  end if;
  delete from querygate.idempotency_keys where ctid in (
    select ctid from querygate.idempotency_keys where expires_at <= now()
     order by expires_at limit p_limit for update skip locked);
  get diagnostics deleted = row_count;
  return deleted;
end $$;
`;

const FUNCTIONS = [
  "querygate.idempotency_claim(text, text, text, int, int)",
  "querygate.idempotency_record(text, text, bytea, boolean)",
  "querygate.idempotency_lookup(text, text)",
  "querygate.idempotency_cleanup(int)",
];

/** The migration, then EXECUTE for `grantee` (querygate's login role) only. */
export function migrationSql(grantee: string): string {
  const role = `"${grantee.replace(/"/g, '""')}"`;
  return [
    MIGRATION,
    "revoke all on table querygate.idempotency_keys from public;",
    ...FUNCTIONS.map(
      (f) => `revoke all on function ${f} from public; grant execute on function ${f} to ${role};`,
    ),
    `grant usage on schema querygate to ${role};`,
  ].join("\n");
}

/**
 * Creates or updates the ledger, one migrator at a time. One simple-protocol
 * query is one implicit transaction: all of it happens or none.
 */
export async function migrate(client: Queryable, grantee: string): Promise<void> {
  await client.query(
    `select pg_advisory_xact_lock(hashtext('querygate.migrate'));\n${migrationSql(grantee)}`,
  );
}

interface Queryable {
  query(text: string): Promise<unknown>;
}

/**
 * The ledger, installed now if the login role may (CREATE on the database)
 * and not yet there; undefined, with the reason, when it cannot be used.
 */
export async function openLedger(
  control: ControlConnection,
  options: { ttlSeconds: number; waitMs: number },
): Promise<{ ledger: Ledger | undefined; note: string }> {
  if (!(await ledgerUsable(control))) {
    try {
      const me = await control.query<{ me: string }>("select current_user as me");
      await migrate(control, me.rows[0]?.me ?? "");
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      return {
        ledger: undefined,
        note: `idempotency keys disabled: cannot install the ledger (${reason}); run npm run migrate`,
      };
    }
    if (!(await ledgerUsable(control))) {
      return {
        ledger: undefined,
        note: "idempotency keys disabled: the login role may not execute the ledger's functions",
      };
    }
  }
  return { ledger: new Ledger(control, options), note: "idempotency ledger ready" };
}

/** True when the login role may call every ledger function. */
export async function ledgerUsable(control: ControlConnection): Promise<boolean> {
  const result = await control.query<{ usable: boolean }>(
    `select bool_and(to_regprocedure(f) is not null and has_function_privilege(to_regprocedure(f), 'execute')) as usable
       from unnest($1::text[]) as f`,
    [FUNCTIONS],
  );
  return result.rows[0]?.usable === true;
}

export class Ledger {
  constructor(
    private readonly control: ControlConnection,
    private readonly options: { ttlSeconds: number; waitMs: number },
  ) {}

  /** The hook for one request; `outcome` turns the engine's result into the bytes to record. */
  hook(
    caller: string,
    key: string,
    requestHash: string,
    outcome: (statement?: StatementOutcome) => { bytes: Uint8Array; rowsOmitted: boolean },
  ): LedgerHook {
    const who = `${quoteLiteral(caller)}, ${quoteLiteral(key)}`;
    return {
      claim: [
        `SELECT querygate.idempotency_claim(${who}, ${quoteLiteral(requestHash)}, ${Math.trunc(this.options.ttlSeconds)}, ${Math.trunc(this.options.waitMs)})`,
      ],
      record: (statement) => {
        const { bytes, rowsOmitted } = outcome(statement);
        return [
          // The caller's role may not call the ledger (see above): back to the login role, after the guard.
          "SELECT pg_catalog.set_config('role', 'none', true)",
          `SELECT querygate.idempotency_record(${who}, '\\x${Buffer.from(bytes).toString("hex")}'::bytea, ${rowsOmitted})`,
        ];
      },
    };
  }

  async lookup(caller: string, key: string): Promise<LedgerEntry | undefined> {
    const result = await this.control.query<{
      request_hash: string;
      outcome: Buffer | null;
      rows_omitted: boolean;
    }>("select request_hash, outcome, rows_omitted from querygate.idempotency_lookup($1, $2)", [caller, key]);
    const row = result.rows[0];
    return row && { requestHash: row.request_hash, outcome: row.outcome, rowsOmitted: row.rows_omitted };
  }

  /** Deletes up to `limit` expired keys; 0 while another replica is at it. */
  async cleanup(limit: number): Promise<number> {
    const result = await this.control.query<{ deleted: number }>(
      "select querygate.idempotency_cleanup($1) as deleted",
      [limit],
    );
    return result.rows[0]?.deleted ?? 0;
  }
}
