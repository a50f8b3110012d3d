// The services under test run as child processes, as in production, so their
// CPU and memory are their own and the load generator does not share their
// event loop.
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { credentials, Metadata } from "@grpc/grpc-js";
import {
  HealthClient,
  HealthCheckResponse_ServingStatus as Serving,
} from "../proto/gen/grpc/health/v1/health.js";
import { freePort } from "../scripts/embedded-postgres.js";

export interface Service {
  process: ChildProcess;
  port: number;
  stop(): Promise<void>;
}

export async function startService(
  entry: string,
  env: Record<string, string>,
  nodeArgs: string[] = [],
): Promise<Service> {
  // The compiled code, as production runs it (npm run bench builds it first).
  const compiled = join("dist", entry.replace(/\.ts$/, ".js"));
  const child = spawn(process.execPath, [...nodeArgs, compiled], {
    env: { ...process.env, NODE_ENV: "production", ...env },
    stdio: ["ignore", "ignore", "inherit"],
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    process: child,
    port: Number(env.GRPC_PORT ?? env.PORT),
    async stop() {
      child.kill("SIGTERM");
      await exited;
    },
  };
}

export async function startQueryGrpc(databaseUrl: string, nodeArgs: string[] = []): Promise<Service> {
  const port = await freePort();
  const service = await startService(
    "services/query-grpc/src/main.ts",
    {
      DATABASE_URL: databaseUrl,
      GRPC_PORT: String(port),
      METRICS_PORT: String(await freePort()),
      SHUTDOWN_GRACE_MS: "1000",
    },
    nodeArgs,
  );
  await until(() => serving(`127.0.0.1:${port}`), 30_000, "query-grpc to serve");
  return service;
}

export async function startBridge(grpcPort: number): Promise<Service> {
  const port = await freePort();
  const service = await startService("services/http-bridge/src/main.ts", {
    PORT: String(port),
    QUERY_GRPC_TARGET: `127.0.0.1:${grpcPort}`,
    SHUTDOWN_GRACE_MS: "1000",
  });
  await until(
    async () => (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.ok === true,
    30_000,
    "the bridge to answer",
  );
  return service;
}

function serving(target: string): Promise<boolean> {
  const client = new HealthClient(target, credentials.createInsecure());
  return new Promise((resolve) => {
    client.check({ service: "" }, new Metadata(), { deadline: Date.now() + 1000 }, (error, response) => {
      client.close();
      resolve(!error && response?.status === Serving.SERVING);
    });
  });
}

async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Forgets a process's peak resident set size, so the next reading covers one phase only. */
export function resetPeakRss(pid: number): void {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, "5");
  } catch {
    // Not Linux or not permitted: the peak then covers the whole run.
  }
}

/** Peak resident set size in MB since start or the last reset. */
export function peakRssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return kb / 1024;
}
