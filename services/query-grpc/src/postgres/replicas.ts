// Whether the read replica (DATABASE_READ_URL) is worth sending reads to, and
// how far behind the primary it replays. A short circuit breaker: the first
// read that cannot reach the replica opens it (that read is retried on the
// primary), and from then on reads go straight to the primary, paying no
// failed connect each, until a probe on the replica's own control connection
// answers again. The same probe samples replication lag for the metrics.
import type { Logger } from "../../../shared/src/logger.js";
import type { ControlConnection } from "./control.js";

/** The statement run after a write's COMMIT whose value is its read-your-writes token. */
export const COMMIT_POSITION_SQL = "SELECT pg_catalog.pg_current_wal_insert_lsn()::text";

/** pg_lsn's text form: two hexadecimal halves. */
const LSN = /^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/;

export function isLsn(text: string): boolean {
  return LSN.test(text);
}

/** A pg_lsn as a number of bytes into the WAL. */
export function lsnBytes(text: string): bigint {
  const [high, low] = text.split("/");
  return (BigInt(`0x${high}`) << 32n) + BigInt(`0x${low}`);
}

export interface ReplicaSample {
  /** The replica answered its probe. */
  up: boolean;
  /** Seconds since the last replayed commit while WAL waits to be replayed; 0 once caught up. */
  lagSeconds: number | undefined;
  /** WAL bytes between the primary's current position and the replica's replay position. */
  lagBytes: number | undefined;
}

export interface ReplicaHealthOptions {
  replica: ControlConnection;
  primary: ControlConnection;
  intervalMs: number;
  logger: Logger;
  onSample: (sample: ReplicaSample) => void;
}

export class ReplicaHealth {
  private up = false;
  private timer: NodeJS.Timeout | undefined;
  private probing: Promise<void> | undefined;

  constructor(private readonly options: ReplicaHealthOptions) {}

  /** False while the breaker is open: reads go to the primary without trying the replica. */
  get available(): boolean {
    return this.up;
  }

  /** A read found the replica unreachable: stop sending reads there until a probe succeeds. */
  markDown(reason: string): void {
    if (!this.up) return;
    this.up = false;
    this.options.logger.warn({ err: reason }, "read replica unreachable: reads go to the primary");
  }

  /** First probe now (so a replica that is up serves the first read), then every interval. */
  async start(): Promise<void> {
    await this.probe();
    this.timer = setInterval(() => void this.probe(), this.options.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.probing;
  }

  /** One probe at a time; a slow replica must not pile them up. */
  probe(): Promise<void> {
    this.probing ??= this.sample().finally(() => {
      this.probing = undefined;
    });
    return this.probing;
  }

  private async sample(): Promise<void> {
    const { replica, primary, logger, onSample } = this.options;
    let replay: string | null;
    let lagSeconds: number | undefined;
    try {
      const { rows } = await replica.query<{ replay: string | null; lag: number | null }>(
        `SELECT pg_catalog.pg_last_wal_replay_lsn()::text AS replay,
                CASE WHEN pg_catalog.pg_last_wal_receive_lsn() = pg_catalog.pg_last_wal_replay_lsn() THEN 0
                     ELSE extract(epoch FROM now() - pg_catalog.pg_last_xact_replay_timestamp())::float8 END AS lag`,
      );
      replay = rows[0]?.replay ?? null;
      lagSeconds = rows[0]?.lag ?? undefined;
    } catch (error) {
      this.markDown((error as Error).message);
      onSample({ up: false, lagSeconds: undefined, lagBytes: undefined });
      return;
    }
    if (!this.up) logger.info("read replica reachable: reads go to it again");
    this.up = true;
    let lagBytes: number | undefined;
    if (replay !== null) {
      try {
        const { rows } = await primary.query<{ lsn: string }>(
          "SELECT pg_catalog.pg_current_wal_lsn()::text AS lsn",
        );
        const current = rows[0]?.lsn;
        if (current) lagBytes = Math.max(0, Number(lsnBytes(current) - lsnBytes(replay)));
      } catch {
        // The primary's own health check reports it; the lag is just unknown meanwhile.
      }
    }
    onSample({ up: true, lagSeconds, lagBytes });
  }
}
