// The thread that owns libpg-query. The parser is WebAssembly compiled from
// PostgreSQL's C: a statement nested deeply enough overflows its stack, and
// after that its memory can no longer be trusted (later parses failed with
// "memory access out of bounds", or spun forever). Here, such a failure costs
// this thread, which parser.ts then replaces, never the server.
import v8 from "node:v8";
import { parentPort, workerData } from "node:worker_threads";
import { QueryFailure } from "../errors.js";
import type { StatementKind } from "../statement-kinds.js";
import type { Classification } from "./classify.js";

// The parser runs on V8's baseline WebAssembly compiler alone. By default V8
// also recompiles its hot functions with the optimizing one, and that tier-up
// left a bare process about 17 MiB larger for good (compiled code and compiler
// memory), to make a parse about a fifth faster: most statements are answered
// from parser.ts's cache and never parse. The flag is the process's, read when
// a module compiles, so it is set before classify.js loads libpg-query (whose
// import starts the compile); no other code in query-grpc runs WebAssembly.
v8.setFlagsFromString("--liftoff-only");
const { classify, loadParser, ParserFault } = await import("./classify.js");

/** What the worker is started with (parser.ts). */
export interface ParserWorkerData {
  maxTokens: number;
}

export interface ParseRequest {
  id: number;
  sql: string;
  allowed: StatementKind[];
}

export type ParseAnswer =
  | { id: number; classification: Classification }
  | { id: number; failure: { kind: QueryFailure["kind"]; message: string; pg: QueryFailure["pg"] } }
  | { id: number; fault: string };

const port = parentPort;
if (!port) throw new Error("parser-worker.ts runs as a worker thread");

const { maxTokens } = workerData as ParserWorkerData;
await loadParser();
port.on("message", ({ id, sql, allowed }: ParseRequest) => {
  let answer: ParseAnswer;
  try {
    answer = { id, classification: classify(sql, new Set(allowed), maxTokens) };
  } catch (error) {
    if (error instanceof QueryFailure) {
      answer = { id, failure: { kind: error.kind, message: error.message, pg: error.pg } };
    } else {
      answer = { id, fault: error instanceof ParserFault ? error.message : String(error) };
    }
  }
  port.postMessage(answer);
});
port.postMessage({ ready: true });
