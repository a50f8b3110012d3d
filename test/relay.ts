// A TCP relay on loopback between query-grpc and PostgreSQL, for faults that
// need exact timing: a connection that dies after COMMIT reached PostgreSQL
// but before its answer came back, or just before COMMIT was sent. It reads
// the client's side of the wire protocol (only message boundaries and the
// text of Parse messages), so it knows when COMMIT goes out. It can also stand
// for a database address that moves (failover: retarget()) or goes away
// (refuse()), since query-grpc keeps only a URL.
import { connect, createServer, type Socket } from "node:net";
import { atEnd } from "./helpers.js";

/**
 * What the relay does with the next COMMIT a client sends:
 * - "forward": COMMIT reaches PostgreSQL, its answer never reaches the client;
 *   the connection stays open until the test calls cut().
 * - "withhold": the connection is cut just before COMMIT would reach PostgreSQL.
 */
export type CommitTrap = "forward" | "withhold";

export interface TrappedCommit {
  /** Closes both sides of the connection that sent the COMMIT. */
  cut(): void;
  /** "forward" only: passes on the answer held back so far, late rather than lost. */
  release(): void;
}

export interface Relay {
  readonly port: number;
  /** `url` (a postgres:// URL) with its host and port replaced by the relay's. */
  via(url: string): string;
  /** Stops passing bytes either way on every connection: a database that hangs rather than refuses. */
  freeze(): void;
  /** freeze(), only for connections whose startup message contains `text` (e.g. their application_name). */
  freezeWhere(text: string): void;
  /**
   * How many times clients wrote protocol messages (not startup) so far, on
   * connections whose startup message does not contain `except` (e.g. the
   * control connection's application_name): a round trip is one such write,
   * since query-grpc writes each pipeline at once.
   */
  clientWrites(except?: string): number;
  /** Resolves when a client sends COMMIT, after the trap did its part. */
  trapNextCommit(trap: CommitTrap): Promise<TrappedCommit>;
  /** Cuts every connection; new ones go to `port` (a promoted standby). */
  retarget(port: number): void;
  /** Cuts every connection and closes new ones at once, as a stopped server does; accept() undoes it. */
  refuse(): void;
  accept(): void;
}

interface Armed {
  trap: CommitTrap;
  sprung: (commit: TrappedCommit) => void;
}

export async function startRelay(firstPort: number): Promise<Relay> {
  let to = firstPort;
  let frozen = false;
  let refusing = false;
  let armed: Armed | undefined;
  const writes = new Map<{ startup: Buffer }, number>();
  const sockets = new Set<Socket>();
  const opened: Array<{ startup: Buffer; freeze(): void }> = [];
  const cutAll = () => {
    for (const socket of sockets) socket.destroy();
  };

  const server = createServer((inbound) => {
    if (refusing) {
      inbound.destroy();
      return;
    }
    const outbound = connect(to, "127.0.0.1");
    const cut = () => {
      inbound.destroy();
      outbound.destroy();
    };
    for (const socket of [inbound, outbound]) {
      sockets.add(socket);
      socket.on("error", () => {});
      socket.on("close", () => {
        sockets.delete(socket);
        if (opened.includes(link)) opened.splice(opened.indexOf(link), 1);
        cut();
      });
    }
    const scanner = new FrontendScanner();
    let silenced = false;
    let stopped = false;
    const link = { startup: Buffer.alloc(0), freeze: () => (stopped = true) };
    opened.push(link);
    const withheld: Buffer[] = [];
    const release = () => {
      silenced = false;
      for (const chunk of withheld.splice(0)) inbound.write(chunk);
    };
    inbound.on("data", (chunk: Buffer) => {
      if (link.startup.length < 1024) link.startup = Buffer.concat([link.startup, chunk]);
      if (frozen || stopped) return;
      const commitAt = scanner.commitAt(chunk);
      if (scanner.typed) writes.set(link, (writes.get(link) ?? 0) + 1);
      if (commitAt === undefined || !armed) {
        outbound.write(chunk);
        return;
      }
      const { trap, sprung } = armed;
      armed = undefined;
      if (trap === "withhold") {
        // Whatever came before the COMMIT goes through; PostgreSQL never sees the COMMIT.
        if (commitAt > 0) outbound.write(chunk.subarray(0, commitAt), cut);
        else cut();
        sprung({ cut, release });
        return;
      }
      silenced = true;
      outbound.write(chunk);
      sprung({ cut, release });
    });
    outbound.on("data", (chunk: Buffer) => {
      if (frozen || stopped) return;
      if (silenced) withheld.push(chunk);
      else inbound.write(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  atEnd(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const port = (server.address() as { port: number }).port;
  return {
    port,
    via(url) {
      const relayed = new URL(url);
      relayed.hostname = "127.0.0.1";
      relayed.port = String(port);
      return relayed.toString();
    },
    freeze() {
      frozen = true;
    },
    clientWrites(except) {
      let total = 0;
      for (const [link, count] of writes)
        if (except === undefined || !link.startup.includes(except)) total += count;
      return total;
    },
    freezeWhere(text) {
      for (const link of opened) if (link.startup.includes(text)) link.freeze();
    },
    trapNextCommit(trap) {
      return new Promise((sprung) => {
        armed = { trap, sprung };
      });
    },
    retarget(next) {
      to = next;
      cutAll();
    },
    refuse() {
      refusing = true;
      cutAll();
    },
    accept() {
      refusing = false;
    },
  };
}

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;

/**
 * Splits what a client sends into protocol messages: untyped ones first
 * (SSL/GSS negotiation, then the startup message), typed ones after. Only a
 * Parse message's query text is looked at.
 */
class FrontendScanner {
  private pending: Buffer = Buffer.alloc(0);
  /** Stream offset of `pending`'s first byte. */
  private offset = 0;
  private startup = true;

  /** True once the startup message is behind: what follows are typed messages. */
  get typed(): boolean {
    return !this.startup;
  }

  /** Consumes `chunk`; returns where in it a Parse of COMMIT begins (negative: in an earlier chunk). */
  commitAt(chunk: Buffer): number | undefined {
    const chunkStart = this.offset + this.pending.length;
    let found: number | undefined;
    for (const message of this.messages(chunk)) {
      if (found === undefined && message.type === "P" && parsedQuery(message.body) === "COMMIT") {
        found = message.start - chunkStart;
      }
    }
    return found;
  }

  private *messages(chunk: Buffer): Generator<{ type: string; body: Buffer; start: number }> {
    this.pending = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    for (;;) {
      const header = this.startup ? 4 : 5;
      if (this.pending.length < header) return;
      const length = this.pending.readInt32BE(header - 4);
      const total = header - 4 + length;
      if (this.pending.length < total) return;
      const type = this.startup ? "" : String.fromCharCode(this.pending[0] as number);
      if (this.startup) {
        const code = this.pending.readInt32BE(4);
        this.startup = code === SSL_REQUEST || code === GSSENC_REQUEST;
      }
      yield { type, body: this.pending.subarray(header, total), start: this.offset };
      this.pending = this.pending.subarray(total);
      this.offset += total;
    }
  }
}

/** The query text of a Parse message's body: statement name, then query, each NUL-terminated. */
function parsedQuery(body: Buffer): string {
  const nameEnd = body.indexOf(0);
  const queryEnd = body.indexOf(0, nameEnd + 1);
  return body
    .subarray(nameEnd + 1, queryEnd < 0 ? undefined : queryEnd)
    .toString("utf8")
    .trim()
    .toUpperCase();
}
