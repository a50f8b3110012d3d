// The fuzz suites' one invariant, and how a property is run. A caller's
// mistake is answered with a 4xx (HTTP) or a clean client-side gRPC status;
// an input that happens to be valid may get its result; nothing gets a 5xx
// other than the documented 503 "overloaded" and 504 timeout; and after every
// case both services still answer `select 1` and gRPC health says SERVING.
//
// Seed and run counts are fixed so `npm test` is repeatable; FUZZ_SEED and
// FUZZ_RUNS override them (FUZZ_RUNS sets every property's number of runs);
// FUZZ_TIME_LIMIT_MS caps each property, shrinking included (20 s).
import { connect } from "node:net";
import { status } from "@grpc/grpc-js";
import fc from "fast-check";
import { fuzzStack, type Services, stillHealthy } from "./stack.js";

export const SEED = Number(process.env.FUZZ_SEED ?? 20_260_101);
const RUNS = process.env.FUZZ_RUNS ? Number(process.env.FUZZ_RUNS) : undefined;
/** Per property, shrinking included: a failing property reports what it has by then. */
const TIME_LIMIT_MS = Number(process.env.FUZZ_TIME_LIMIT_MS ?? 20_000);

/** Runs `predicate` on `runs` inputs (FUZZ_RUNS when set), checking the services' health after each. */
export async function property<T>(
  input: fc.Arbitrary<T>,
  runs: number,
  predicate: (value: T, services: Services) => Promise<void>,
): Promise<void> {
  const stack = fuzzStack();
  await stack.services(); // healthy to begin with, whatever the property before left behind
  const restartsBefore = stack.restarts;
  // A time budget of our own rather than fast-check's interrupt plugin, which abandons a running case
  // (it goes on in the background, into the next property). Past the budget every case passes
  // without running: generation ends, and shrinking keeps the smallest counterexample found so far.
  const started = Date.now();
  let skipped = 0;
  const details = await fc.check(
    fc.asyncProperty(input, async (value) => {
      if (Date.now() - started > TIME_LIMIT_MS) {
        skipped++;
        return;
      }
      const services = await stack.services();
      await predicate(value, services);
      await stillHealthy();
    }),
    { seed: SEED, numRuns: RUNS ?? runs },
  );
  if (!details.failed) return;
  const why =
    details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
  const restarts = stack.restarts - restartsBefore;
  throw new Error(
    [
      `failed after ${details.numRuns} run(s), shrunk ${details.numShrinks} time(s)${skipped ? ` (then the ${TIME_LIMIT_MS / 1000} s budget ran out: ${skipped} case(s) not run)` : ""}`,
      `counterexample: ${details.counterexample ? fc.stringify(details.counterexample) : "none"}`,
      `answer: ${why}`,
      `replay: FUZZ_SEED=${SEED} (path ${details.counterexamplePath}); services restarted ${restarts} time(s) after one of this property's inputs broke them`,
    ].join("\n    "),
  );
}

/** Statuses that are never a fair answer to anything a caller sends. */
const NEVER_GRPC = new Set([
  status.UNKNOWN,
  status.INTERNAL,
  status.DATA_LOSS,
  status.UNAVAILABLE,
  status.UNIMPLEMENTED,
]);

export type Expect = "mistake" | "mistake-or-valid";

export function assertHttp(answer: { status: number; body: string }, expect: Expect): void {
  const { status: code, body } = answer;
  const documented = (code === 503 && body.includes('"code":"overloaded"')) || code === 504;
  if (code >= 500 && !documented) throw new Error(`answered ${code}: ${body.slice(0, 300)}`);
  if (code < 200 || (code >= 300 && code < 400)) throw new Error(`answered ${code}: ${body.slice(0, 300)}`);
  if (expect === "mistake" && code < 300)
    throw new Error(`answered ${code} to a caller's mistake: ${body.slice(0, 300)}`);
}

export function assertGrpc(answer: { code: status; details: string }, expect: Expect): void {
  if (NEVER_GRPC.has(answer.code))
    throw new Error(`answered ${status[answer.code]}: ${answer.details.slice(0, 300)}`);
  if (expect === "mistake" && answer.code === status.OK) throw new Error("answered OK to a caller's mistake");
}

/**
 * POST /query over a fresh connection, bytes as given: fetch and node:http
 * refuse to send some header values a real client can, and normalise bodies.
 */
export function rawPost(
  port: number,
  body: string | Buffer,
  headers: Array<[string, string | Buffer]> = [["content-type", "application/json"]],
): Promise<{ status: number; body: string }> {
  const payload = typeof body === "string" ? Buffer.from(body) : body;
  const head = Buffer.concat([
    Buffer.from(
      `POST /query HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\nconnection: close\r\ncontent-length: ${payload.length}\r\n`,
    ),
    ...headers.map(([name, value]) =>
      Buffer.concat([Buffer.from(`${name}: `), Buffer.from(value), Buffer.from("\r\n")]),
    ),
    Buffer.from("\r\n"),
  ]);
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    socket.setTimeout(10_000, () => socket.destroy(new Error("no answer within 10 s")));
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    // The server may answer (413, 400) and close before reading a large body: the answer still counts.
    socket.on("error", (error) => (chunks.length ? socket.destroy() : reject(error)));
    socket.on("close", () => {
      const text = Buffer.concat(chunks).toString("latin1");
      const match = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      if (!match) return reject(new Error(`no HTTP status line in ${JSON.stringify(text.slice(0, 200))}`));
      resolve({ status: Number(match[1]), body: text.slice(text.indexOf("\r\n\r\n") + 4) });
    });
    socket.write(Buffer.concat([head, payload]));
  });
}
