// The fleet's registry is PostgreSQL's own pg_stat_activity: every replica's
// transactions carry their caller and request in application_name
// (application-name.ts), so any replica can list them and cancel one with
// pg_cancel_backend, without the replicas knowing of each other. The login
// role sees its own backends (all of querygate's) in full; what is passed
// on to callers is decided in rpc/registry.ts. pg_xact_status answers
// whether a transaction committed, for callers told "commit_unknown".
import type { ControlConnection } from "./control.js";

export interface RunningBackend {
  pid: number;
  applicationName: string;
  state: string;
  waitEventType: string;
  waitEvent: string;
  startedAt: string;
  transactionStartedAt: string;
  durationMs: number;
  /** The statement's text: for fingerprinting, never for callers' eyes. */
  query: string;
}

export type TransactionState = "committed" | "aborted" | "in progress" | "unknown";

export class Registry {
  constructor(private readonly control: ControlConnection) {}

  /** Backends in a transaction of querygate's (application_name set per transaction). */
  async running(): Promise<RunningBackend[]> {
    const result = await this.control.query<RunningBackend>(
      `select pid, application_name as "applicationName", state,
              coalesce(wait_event_type, '') as "waitEventType", coalesce(wait_event, '') as "waitEvent",
              coalesce(to_json(query_start)#>>'{}', '') as "startedAt",
              coalesce(to_json(xact_start)#>>'{}', '') as "transactionStartedAt",
              coalesce(extract(epoch from clock_timestamp() - query_start) * 1000, 0)::float8 as "durationMs",
              coalesce(query, '') as query
         from pg_catalog.pg_stat_activity
        where application_name like 'querygate%' and state is distinct from 'idle' and pid <> pg_backend_pid()
        order by query_start`,
    );
    return result.rows;
  }

  /**
   * Cancels the statement `pid` runs, only if that backend still carries
   * `applicationName` and is running a statement: checked in the same
   * statement as the cancel, so a backend that has moved on to another
   * request is left alone (barring the microseconds between PostgreSQL's
   * activity snapshot and its signal). False when nothing was cancelled.
   */
  async cancel(pid: number, applicationName: string): Promise<boolean> {
    const result = await this.control.query<{ cancelled: boolean }>(
      `select pg_catalog.pg_cancel_backend(pid) as cancelled
         from pg_catalog.pg_stat_activity
        where pid = $1 and application_name = $2 and state = 'active'`,
      [pid, applicationName],
    );
    return result.rows[0]?.cancelled === true;
  }

  /** pg_xact_status of a transaction id (xid8, decimal); "unknown" once PostgreSQL has forgotten it. */
  async transactionStatus(transactionId: string): Promise<TransactionState> {
    const result = await this.control.query<{ status: string | null }>(
      "select pg_catalog.pg_xact_status($1::xid8) as status",
      [transactionId],
    );
    const status = result.rows[0]?.status;
    return status === "committed" || status === "aborted" || status === "in progress" ? status : "unknown";
  }
}
