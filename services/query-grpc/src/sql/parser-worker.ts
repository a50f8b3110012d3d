// The thread that owns libpg-query. The parser is WebAssembly compiled from
// PostgreSQL's C: a statement nested deeply enough overflows its stack, and
// after that its memory can no longer be trusted (later parses failed with
// "memory access out of bounds", or spun forever). Here, such a failure costs
// this thread, which parser.ts then replaces, never the server.
import { parentPort, workerData } from "node:worker_threads";
import { QueryFailure } from "../errors.js";
import type { StatementKind } from "../statement-kinds.js";
import { classify, loadParser, ParserFault } from "./classify.js";

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
  | { id: number; classification: ReturnType<typeof classify> }
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
