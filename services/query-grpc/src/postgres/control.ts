// One connection of its own, outside the pool, for querygate's own small
// queries (reachability checks, type names). It never waits behind callers'
// statements and reconnects by itself after the database comes back.
import pg from "pg";
import { isServerError } from "../errors.js";

export class ControlConnection {
  private client: Promise<pg.Client> | undefined;
  /** One query at a time: node-postgres is phasing out queued queries on a client. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly config: pg.ClientConfig) {}

  query<R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<pg.QueryResult<R>> {
    const run = this.queue.then(() => this.run<R>(text, values));
    this.queue = run.catch(() => {});
    return run;
  }

  private async run<R extends pg.QueryResultRow>(
    text: string,
    values: unknown[],
  ): Promise<pg.QueryResult<R>> {
    const client = await this.connect();
    try {
      return await client.query<R>(text, values);
    } catch (error) {
      if (!isServerError(error)) this.drop(client);
      throw error;
    }
  }

  async close(): Promise<void> {
    const pending = this.client;
    this.client = undefined;
    if (pending) await (await pending.catch(() => undefined))?.end().catch(() => {});
  }

  private connect(): Promise<pg.Client> {
    if (!this.client) {
      const client = new pg.Client({ ...this.config, application_name: "querygate-control" });
      client.on("error", () => this.drop(client));
      this.client = client.connect().then(
        () => client,
        (error) => {
          this.client = undefined;
          client.end().catch(() => {});
          throw error;
        },
      );
    }
    return this.client;
  }

  private drop(client: pg.Client): void {
    this.client = undefined;
    client.end().catch(() => {});
  }
}
