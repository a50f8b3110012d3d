// What the fault tests share: the three ways to write (Execute, ExecuteBatch,
// Session) as calls that settle with the caller's view of the outcome, how
// that outcome reads to a client deciding whether to retry, health checks,
// and a bound on how long anything may take to answer.
import { credentials, type Metadata, type ServiceError, status } from "@grpc/grpc-js";
import {
  HealthClient,
  HealthCheckResponse_ServingStatus as Serving,
} from "../proto/gen/grpc/health/v1/health.js";
import {
  type DeepPartial,
  ExecuteBatchRequest,
  QueryError,
  type QueryServiceClient,
  SessionRequest,
  type SessionResponse,
} from "../proto/gen/querygate/v1/query.js";
import { atEnd, eventually, execute, GatheredError, postQuery } from "./helpers.js";

export { Serving };

/**
 * How a write's answer reads to a client that follows the status:
 * - "acknowledged": it committed;
 * - "retry-safe": it did not commit, try again (gRPC UNAVAILABLE, HTTP 503 + Retry-After);
 * - "unknown": it may have committed, check first (UNAVAILABLE kind commit_unknown, HTTP 502);
 * - "other": anything else, which no database outage should produce.
 */
export type WriteAnswer = "acknowledged" | "retry-safe" | "unknown" | "other";

export function grpcAnswer(error: GatheredError | undefined): WriteAnswer {
  if (!error) return "acknowledged";
  if (error.code !== status.UNAVAILABLE) return "other";
  return error.error?.kind === "commit_unknown" ? "unknown" : "retry-safe";
}

export function httpAnswer(response: { status: number; headers: Headers; body: unknown }): WriteAnswer {
  const retryAfter = response.headers.get("retry-after");
  const code = (response.body as { error?: { code?: string } } | undefined)?.error?.code;
  if (response.status === 200) return "acknowledged";
  if (response.status === 503 && retryAfter !== null) return "retry-safe";
  if (response.status === 502 && retryAfter === null && code === "commit_unknown") return "unknown";
  return "other";
}

export interface Answered {
  answer: WriteAnswer;
  /** What the caller saw, for failure messages. */
  seen: string;
  /** HTTP only: the Retry-After header, null when absent. */
  retryAfter?: string | null;
}

/** Writes one row whose key is `token`, and says how the caller saw the outcome. */
export type Write = (token: string) => Promise<Answered>;

export const ROUTES = [
  "Execute",
  "ExecuteBatch",
  "Session commit",
  "POST /query through the bridge",
  "POST /query batch through the bridge",
] as const;
export type Route = (typeof ROUTES)[number];

/**
 * Every way a caller can write one row into `table (token text primary key,
 * via text)`: Execute, ExecuteBatch, a Session's commit, and POST /query
 * through the bridge, single and batch.
 */
export function writeRoutes(
  client: QueryServiceClient,
  bridgeUrl: string,
  table: string,
): Record<Route, Write> {
  const insert = `insert into ${table} (token, via) values ($1, $2)`;
  const grpcSeen = (error: GatheredError | undefined) =>
    error ? `${status[error.code]} kind=${error.error?.kind} ${error.details}` : "OK";
  const overHttp = async (body: unknown): Promise<Answered> => {
    const response = await postQuery(bridgeUrl, body);
    const retryAfter = response.headers.get("retry-after");
    return {
      answer: httpAnswer(response),
      seen: `${response.status} retry-after=${retryAfter} ${response.text}`,
      retryAfter,
    };
  };
  return {
    Execute: async (token) => {
      const error = await executeWrite(client, insert, [token, "Execute"]);
      return { answer: grpcAnswer(error), seen: grpcSeen(error) };
    },
    ExecuteBatch: async (token) => {
      const error = await executeBatch(client, {
        statements: [{ sql: insert, params: [{ textValue: token }, { textValue: "ExecuteBatch" }] }],
      });
      return { answer: grpcAnswer(error), seen: grpcSeen(error) };
    },
    "Session commit": async (token) => {
      const { error, responses } = await session(client, [
        { statement: { sql: insert, params: [{ textValue: token }, { textValue: "Session" }] } },
        { commit: {} },
      ]);
      if (!error && !responses.some((r) => r.outcome?.committed)) {
        return { answer: "other", seen: "the session ended without reporting its commit" };
      }
      return { answer: grpcAnswer(error), seen: grpcSeen(error) };
    },
    "POST /query through the bridge": (token) => overHttp({ query: insert, params: [token, "bridge"] }),
    "POST /query batch through the bridge": (token) =>
      overHttp({ statements: [{ query: insert, params: [token, "bridge batch"] }] }),
  };
}

export function toGathered(error: ServiceError): GatheredError {
  const bin = error.metadata?.get("querygate-error-bin")[0];
  return new GatheredError(
    error.code,
    error.details,
    bin ? QueryError.decode(bin as Buffer) : undefined,
    error.metadata as Metadata,
  );
}

/** Runs ExecuteBatch; resolves with its error, or undefined once it committed. */
export function executeBatch(
  client: QueryServiceClient,
  request: DeepPartial<ExecuteBatchRequest>,
): Promise<GatheredError | undefined> {
  return new Promise((resolve) => {
    client.executeBatch(ExecuteBatchRequest.fromPartial(request), (error) =>
      resolve(error ? toGathered(error) : undefined),
    );
  });
}

/** Sends `messages` on a Session stream; resolves with what came back and how the stream ended. */
export function session(
  client: QueryServiceClient,
  messages: Array<DeepPartial<SessionRequest>>,
): Promise<{ responses: SessionResponse[]; error: GatheredError | undefined }> {
  return new Promise((resolve) => {
    const responses: SessionResponse[] = [];
    const call = client.session();
    call.on("data", (message: SessionResponse) => responses.push(message));
    call.on("error", (error: ServiceError) => resolve({ responses, error: toGathered(error) }));
    call.on("end", () => resolve({ responses, error: undefined }));
    for (const message of messages) call.write(SessionRequest.fromPartial(message));
  });
}

/** Runs one write through Execute; resolves with its error, or undefined once it committed. */
export async function executeWrite(
  client: QueryServiceClient,
  sql: string,
  params: string[],
): Promise<GatheredError | undefined> {
  try {
    await execute(client, { sql, params: params.map((textValue) => ({ textValue })) });
    return undefined;
  } catch (error) {
    if (error instanceof GatheredError) return error;
    throw error;
  }
}

export function healthClient(target: string): HealthClient {
  const client = new HealthClient(target, credentials.createInsecure());
  atEnd(async () => client.close());
  return client;
}

/** grpc.health.v1 Check for the whole server. */
export function check(client: HealthClient): Promise<Serving> {
  return new Promise((resolve, reject) =>
    client.check({ service: "" }, (error, response) =>
      error ? reject(error) : resolve(response?.status ?? Serving.UNKNOWN),
    ),
  );
}

export async function untilHealth(client: HealthClient, wanted: Serving, timeoutMs: number): Promise<void> {
  await eventually(async () => (await check(client)) === wanted, timeoutMs, `health ${Serving[wanted]}`);
}

/** `work`, or a failure naming `what` if it has not settled within `ms`: a hang is a failure too. */
export async function within<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}
