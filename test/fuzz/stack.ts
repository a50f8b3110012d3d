// The services the fuzz suite attacks, run as child processes from source
// (tsx) against the test run's PostgreSQL. Not in-process like the other
// suites: an input that breaks a service (a WebAssembly parser whose stack
// is corrupted, a crash) must break only that service, not the test runner
// and every suite after this one — and "the process died" must be something
// a property can see. A broken stack is started afresh before the next case,
// so each case, shrinking included, meets healthy services.
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, mkdirSync, openSync } from "node:fs";
import { join } from "node:path";
import { credentials, Metadata, status } from "@grpc/grpc-js";
import { HealthCheckResponse_ServingStatus, HealthClient } from "../../proto/gen/grpc/health/v1/health.js";
import { ExecuteRequest, QueryServiceClient } from "../../proto/gen/querygate/v1/query.js";
import { freePort } from "../../scripts/embedded-postgres.js";
import { atEnd, database, eventually } from "../helpers.js";

const LOG_DIR = join(".data", "fuzz");

class Child {
  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
  ) {}

  static start(name: "query-grpc" | "http-bridge", env: Record<string, string>): Child {
    mkdirSync(LOG_DIR, { recursive: true });
    const log = openSync(join(LOG_DIR, `${name}.log`), "a");
    const child = spawn(process.execPath, ["--import", "tsx", join("services", name, "src", "main.ts")], {
      env: { ...process.env, LOG_LEVEL: "error", SHUTDOWN_GRACE_MS: "0", ...env },
      stdio: ["ignore", log, log],
    });
    closeSync(log);
    return new Child(name, child);
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  get exit(): string {
    return `exit code ${this.child.exitCode ?? "-"}, signal ${this.child.signalCode ?? "-"}`;
  }

  async stop(): Promise<void> {
    if (!this.alive) return;
    const exited = new Promise((resolve) => this.child.once("exit", resolve));
    this.child.kill("SIGKILL");
    await exited;
  }
}

export interface Services {
  bridgeUrl: string;
  bridgePort: number;
  grpcTarget: string;
  client: QueryServiceClient;
}

class FuzzStack {
  private grpc?: Child;
  private bridge?: Child;
  private health?: HealthClient;
  private current?: Services;
  /** Set when a case left the services unhealthy: the next case gets new ones. */
  broken = false;
  restarts = 0;

  async services(): Promise<Services> {
    if (this.current && !this.broken) return this.current;
    if (this.current) this.restarts++;
    await this.stop();
    const grpcPort = await freePort();
    const bridgePort = await freePort();
    this.grpc = Child.start("query-grpc", {
      DATABASE_URL: (await database()).url,
      GRPC_PORT: String(grpcPort),
      METRICS_PORT: "0",
      STATEMENT_TIMEOUT_MS: "5000",
    });
    this.bridge = Child.start("http-bridge", {
      PORT: String(bridgePort),
      QUERY_GRPC_TARGET: `127.0.0.1:${grpcPort}`,
    });
    const grpcTarget = `127.0.0.1:${grpcPort}`;
    this.health = new HealthClient(grpcTarget, credentials.createInsecure());
    const client = new QueryServiceClient(grpcTarget, credentials.createInsecure(), {
      "grpc.max_send_message_length": 64 * 1024 * 1024,
    });
    this.current = { bridgeUrl: `http://127.0.0.1:${bridgePort}`, bridgePort, grpcTarget, client };
    await eventually(async () => (await this.problem()) === undefined, 30_000, "the fuzz services to start");
    this.broken = false;
    return this.current;
  }

  /**
   * Why the services are not healthy, or undefined when they are: both
   * processes alive, gRPC health SERVING, and `select 1` answered through the
   * bridge and straight over gRPC.
   */
  async problem(): Promise<string | undefined> {
    const { grpc, bridge, health, current } = this;
    if (!grpc || !bridge || !health || !current) return "not started";
    if (!grpc.alive) return `query-grpc died (${grpc.exit})`;
    if (!bridge.alive) return `http-bridge died (${bridge.exit})`;
    const serving = await new Promise<string>((resolve) =>
      health.check({ service: "" }, new Metadata(), { deadline: Date.now() + 3000 }, (error, response) =>
        resolve(
          error
            ? `health check failed: ${status[error.code]}`
            : HealthCheckResponse_ServingStatus[response.status],
        ),
      ),
    );
    if (serving !== "SERVING") return `gRPC health says ${serving}`;
    const viaGrpc = await selectOneOverGrpc(current.client);
    if (viaGrpc) return `select 1 over gRPC: ${viaGrpc}`;
    try {
      const response = await fetch(`${current.bridgeUrl}/query`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: '{"query":"select 1 as one"}',
        signal: AbortSignal.timeout(3000),
      });
      const text = await response.text();
      if (response.status !== 200 || !text.includes('"result":[{"one":1}]'))
        return `select 1 through the bridge: ${response.status} ${text.slice(0, 200)}`;
    } catch (error) {
      return `select 1 through the bridge: ${(error as Error).message}`;
    }
    return undefined;
  }

  async stop(): Promise<void> {
    this.current?.client.close();
    this.health?.close();
    await Promise.all([this.bridge?.stop(), this.grpc?.stop()]);
    this.current = undefined;
  }
}

function selectOneOverGrpc(client: QueryServiceClient): Promise<string | undefined> {
  return new Promise((resolve) => {
    const values: string[] = [];
    const call = client.execute(ExecuteRequest.fromPartial({ sql: "select 1" }), new Metadata(), {
      deadline: Date.now() + 3000,
    });
    call.on("data", (message) => {
      for (const row of message.rows?.rows ?? []) values.push(...row.values);
    });
    call.on("error", (error: Error & { code: number; details: string }) =>
      resolve(`${status[error.code]} ${error.details}`),
    );
    call.on("end", () => resolve(values.join() === "1" ? undefined : `answered ${JSON.stringify(values)}`));
  });
}

let stack: FuzzStack | undefined;

/** The one fuzz stack of this test run, shared by the fuzz suites and stopped at the end. */
export function fuzzStack(): FuzzStack {
  if (!stack) {
    const created = new FuzzStack();
    atEnd(() => created.stop());
    stack = created;
  }
  return stack;
}

/** Fails the case if the services are not healthy after it, and marks them for a restart. */
export async function stillHealthy(): Promise<void> {
  const current = fuzzStack();
  const problem = await current.problem();
  if (problem) {
    current.broken = true;
    throw new Error(`after this input the services are not healthy: ${problem}`);
  }
}
