// The HTTP/2 connections behind the bridge's Execute calls (execute-call.ts).
// grpc-js's per-call machinery (resolving, load-balancing and retrying call
// objects, filters, interceptors) was the largest item in the bridge's CPU
// profile, so the hot call runs on bare `node:http2` sessions kept here with
// what the grpc-js channel gave it: one session per address of a `dns:///`
// target (a headless Service: one per pod), round-robin over the ready ones,
// DNS looked at again when one fails, reconnects with backoff, keepalive pings,
// and a session that says GOAWAY leaves the rotation at once while its
// in-flight streams finish.
import { promises as dns } from "node:dns";
import http2 from "node:http2";

export type Lookup = (host: string) => Promise<string[]>;

export interface SessionOptions {
  /** Replaces DNS for `dns:` targets (tests: two servers behind one name). */
  lookup?: Lookup;
}

/** Why no session could be had: the call fails with UNAVAILABLE (and may be retried). */
export class NoSessionError extends Error {}

const RECONNECT_BACKOFF_MS = { initial: 200, max: 2000 };
const MIN_RESOLVE_INTERVAL_MS = 1000;
/** A pod set can change without any connection failing (scale up): look again now and then. */
const RESOLVE_EVERY_MS = 30_000;
const KEEPALIVE_MS = 30_000;
const KEEPALIVE_TIMEOUT_MS = 20_000;
/** As grpc-js: a connection attempt that hangs (a blackholed address) counts as failed. */
const CONNECT_TIMEOUT_MS = 20_000;

const defaultLookup: Lookup = async (host) =>
  (await dns.lookup(host, { all: true })).map((a) => (a.family === 6 ? `[${a.address}]` : a.address));

type Target = { dns: string; port: string } | { addresses: string[] };

/** grpc-js's target forms the bridge is given: `dns:///host:port`, `ipv4:a:p,b:p`, `ipv6:…`, `host:port`. */
export function parseTarget(target: string): Target {
  const dnsMatch = /^dns:(?:\/\/[^/]*\/)?(.+)$/.exec(target);
  if (dnsMatch) {
    const [, hostPort = ""] = dnsMatch;
    const at = hostPort.lastIndexOf(":");
    if (at < 0 || hostPort.endsWith("]")) return { dns: hostPort.replace(/^\[|\]$/g, ""), port: "443" };
    return { dns: hostPort.slice(0, at).replace(/^\[|\]$/g, ""), port: hostPort.slice(at + 1) };
  }
  const listMatch = /^ipv[46]:(.+)$/.exec(target);
  if (listMatch) return { addresses: (listMatch[1] ?? "").split(",").filter(Boolean) };
  return { addresses: [target] };
}

/** One address: at most one session at a time, reconnected with backoff after a failure. */
class Endpoint {
  session: http2.ClientHttp2Session | undefined;
  ready = false;
  private backoffMs = RECONNECT_BACKOFF_MS.initial;
  private retryTimer: NodeJS.Timeout | undefined;
  private pingTimer: NodeJS.Timeout | undefined;
  lastError = "";
  removed = false;

  constructor(
    readonly address: string,
    private readonly changed: (failed: boolean) => void,
  ) {}

  get connecting(): boolean {
    return this.session !== undefined && !this.ready;
  }

  connect(): void {
    if (this.session || this.retryTimer || this.removed) return;
    const session = http2.connect(`http://${this.address}`);
    this.session = session;
    const connectTimer = setTimeout(
      () => session.destroy(new Error("connect timed out")),
      CONNECT_TIMEOUT_MS,
    );
    connectTimer.unref();
    let connectedAt = 0;
    session.once("connect", () => {
      clearTimeout(connectTimer);
      if (this.session !== session) return;
      this.ready = true;
      connectedAt = Date.now();
      this.keepAlive(session);
      this.changed(false);
    });
    this.dropSession = (why: string) => {
      clearTimeout(connectTimer);
      if (this.session !== session) return;
      // A session that served a while is replaced at once; one that failed early (a refused
      // connection, a server that hangs up right after the handshake) waits out its backoff.
      const servedAWhile = this.ready && Date.now() - connectedAt >= RECONNECT_BACKOFF_MS.max;
      this.session = undefined;
      this.ready = false;
      clearInterval(this.pingTimer);
      this.lastError = why;
      // Lets in-flight streams finish (GOAWAY), or tidies up after an error.
      if (!session.closed && !session.destroyed) session.close();
      if (servedAWhile) {
        this.backoffMs = RECONNECT_BACKOFF_MS.initial;
        this.connect();
      } else this.scheduleReconnect();
      this.changed(true);
    };
    const drop = this.dropSession;
    session.on("goaway", () => drop("the server sent GOAWAY"));
    session.on("error", (error: Error) => drop(error.message));
    session.on("close", () => drop("connection closed"));
  }

  /** Takes the current session out of rotation (and replaces it) as a GOAWAY would. */
  dropSession: (why: string) => void = () => {};

  private scheduleReconnect(): void {
    if (this.removed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.connect();
    }, this.backoffMs);
    this.retryTimer.unref();
    this.backoffMs = Math.min(this.backoffMs * 2, RECONNECT_BACKOFF_MS.max);
  }

  /** A peer that vanished without a FIN (a killed node) is noticed within a ping, not at the next call's timeout. */
  private keepAlive(session: http2.ClientHttp2Session): void {
    this.pingTimer = setInterval(() => {
      const deadline = setTimeout(
        () => session.destroy(new Error("keepalive ping not acknowledged")),
        KEEPALIVE_TIMEOUT_MS,
      );
      deadline.unref();
      try {
        session.ping((error) => {
          clearTimeout(deadline);
          if (error && !session.destroyed) session.destroy(error);
        });
      } catch {
        // Closing already: the session's own events take it out of rotation.
        clearTimeout(deadline);
      }
    }, KEEPALIVE_MS);
    this.pingTimer.unref();
  }

  close(): void {
    this.removed = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    clearInterval(this.pingTimer);
    const session = this.session;
    this.session = undefined;
    this.ready = false;
    session?.close();
  }
}

export class H2Sessions {
  private readonly target: Target;
  private readonly lookup: Lookup;
  private endpoints: Endpoint[] = [];
  private next = 0;
  private started = false;
  private closed = false;
  private lastResolve = 0;
  private resolving: Promise<void> | undefined;
  private resolveTimer: NodeJS.Timeout | undefined;
  private resolveError = "";
  private waiters: Array<() => void> = [];

  constructor(target: string, options: SessionOptions = {}) {
    this.target = parseTarget(target);
    this.lookup = options.lookup ?? defaultLookup;
  }

  /**
   * A ready session, round-robin. Waits while a connection is being made;
   * fails (UNAVAILABLE for the caller) once every address has failed, as
   * grpc-js does for a call that is not wait-for-ready.
   */
  async pick(): Promise<http2.ClientHttp2Session> {
    for (;;) {
      if (this.closed) throw new NoSessionError("the bridge is shutting down");
      if (!this.started) this.start();
      const session = this.ready();
      if (session) return session;
      for (const endpoint of this.endpoints) endpoint.connect();
      // A re-resolution is waited for only when there is nothing else: with addresses known, a call does not stall on DNS.
      const firstLookup = this.resolving !== undefined && this.endpoints.length === 0;
      const pending = firstLookup || this.endpoints.some((e) => e.connecting);
      if (!pending) {
        // Every address failed: this call fails now, and the name is looked up again for the next.
        this.resolve();
        const why = this.endpoints.map((e) => `${e.address}: ${e.lastError}`).join("; ") || this.resolveError;
        throw new NoSessionError(`No connection established. Last error: ${why || "no address"}`);
      }
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /** The next ready session, round-robin, without waiting: the common case, with no promise per call. */
  ready(): http2.ClientHttp2Session | undefined {
    const count = this.endpoints.length;
    for (let i = 0; i < count; i++) {
      this.next = (this.next + 1) % count;
      const endpoint = this.endpoints[this.next]!;
      if (endpoint.ready) return endpoint.session;
    }
    return undefined;
  }

  /** Takes `session` out of rotation when it cannot start another stream (out of stream ids, closing). */
  retire(session: http2.ClientHttp2Session): void {
    this.endpoints.find((e) => e.session === session)?.dropSession("the session refused a new stream");
  }

  /** Closes every session once its streams have finished; calls after this fail. */
  close(): void {
    this.closed = true;
    clearInterval(this.resolveTimer);
    for (const endpoint of this.endpoints) endpoint.close();
    this.endpoints = [];
    this.wake();
  }

  private start(): void {
    this.started = true;
    if ("addresses" in this.target) {
      this.endpoints = this.target.addresses.map((a) => this.endpoint(a));
      return;
    }
    this.resolve();
    this.resolveTimer = setInterval(() => this.resolve(), RESOLVE_EVERY_MS);
    this.resolveTimer.unref();
  }

  private endpoint(address: string): Endpoint {
    return new Endpoint(address, (failed) => {
      if (failed) this.resolve();
      this.wake();
    });
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  /** Looks the name up again (at most once a second) and keeps one endpoint per address. */
  private resolve(): void {
    if (!("dns" in this.target) || this.resolving || this.closed) return;
    const { dns: host, port } = this.target;
    const wait = Math.max(0, this.lastResolve + MIN_RESOLVE_INTERVAL_MS - Date.now());
    this.resolving = new Promise<void>((resolve) => setTimeout(resolve, wait).unref())
      .then(() => {
        this.lastResolve = Date.now();
        return this.lookup(host);
      })
      .then(
        (hosts) => {
          if (this.closed) return;
          const addresses = new Set(hosts.map((h) => `${h}:${port}`));
          const kept = this.endpoints.filter((e) => addresses.has(e.address));
          for (const gone of this.endpoints.filter((e) => !addresses.has(e.address))) gone.close();
          const known = new Set(kept.map((e) => e.address));
          this.endpoints = [
            ...kept,
            ...[...addresses].filter((a) => !known.has(a)).map((a) => this.endpoint(a)),
          ];
          this.resolveError = "";
        },
        (error: Error) => {
          this.resolveError = `DNS resolution of ${host} failed: ${error.message}`;
        },
      )
      .finally(() => {
        this.resolving = undefined;
        this.wake();
      });
  }
}
