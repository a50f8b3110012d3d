// The `formats` phase: the bulk query through the bridge in every result
// format POST /query offers (buffered JSON, NDJSON, each with object and
// array rows; CSV; Arrow), against the direct pg cursor on the same data.
// Rows/s and the bridge's peak RSS per format.
//
// Fairness: like the NDJSON client of the bulk phase, these clients read
// every byte and decode none of it (decoding Arrow or parsing CSV would
// measure the client, which competes for the same cores); each takes the row
// count from what says the result is whole — the NDJSON footer, the JSON
// body's rowCount, the querygate-row-count trailer of CSV and Arrow — and a
// result without it fails the run.
import { type Agent, request } from "node:http";
import type pg from "pg";
import { httpAgent, pgCursorStream } from "./clients.js";
import { streamSql } from "./data.js";
import { median } from "./load.js";
import { PeakMemory, type Service } from "./processes.js";
import { count } from "./report.js";

export interface FormatsContext {
  startServices(label: string, withBridge: true): Promise<{ grpc: Service; bridge?: Service }>;
  stopServices(): Promise<void>;
  admin: pg.Client;
  sizes: { bulkRows: number; bigRows: number; streamReps: number };
  batchRows: number;
  firstBatchRows: number;
  step(message: string): void;
}

interface Variant {
  accept: string;
  rowMode?: "array";
  /** The row count that proves the result whole, or undefined. */
  rowsOf(tail: string, trailers: NodeJS.Dict<string>): number | undefined;
}

const footerRows = (tail: string) => {
  const m = /"rowCount":(\d+)[,}][^\n]*\n?$/.exec(tail);
  return m ? Number(m[1]) : undefined;
};
const trailerRows = (_: string, trailers: NodeJS.Dict<string>) => {
  const n = trailers["querygate-row-count"];
  return n === undefined ? undefined : Number(n);
};

const VARIANTS: Record<string, Variant> = {
  json: { accept: "application/json", rowsOf: footerRows },
  "json-array": { accept: "application/json", rowMode: "array", rowsOf: footerRows },
  ndjson: { accept: "application/x-ndjson", rowsOf: footerRows },
  "ndjson-array": { accept: "application/x-ndjson", rowMode: "array", rowsOf: footerRows },
  csv: { accept: "text/csv", rowsOf: trailerRows },
  arrow: { accept: "application/vnd.apache.arrow.stream", rowsOf: trailerRows },
};

export interface FormatStats {
  rowsPerSecond: number;
  ratioVsPg: number;
  bridgePeakRssMb: number;
  bytesPerRow: number;
}

export interface FormatsResults {
  rows: number;
  pgRowsPerSecond: number;
  formats: Record<string, FormatStats | { skipped: string }>;
}

function readFormat(url: string, agent: Agent, sql: string, variant: Variant) {
  const started = performance.now();
  const body = JSON.stringify({ query: sql, timeoutMs: 300_000, rowMode: variant.rowMode });
  return new Promise<{ rows: number; bytes: number; ms: number }>((resolve, reject) => {
    const req = request(
      `${url}/query`,
      { method: "POST", agent, headers: { "content-type": "application/json", accept: variant.accept } },
      (res) => {
        let bytes = 0;
        let tail = "";
        res.on("data", (chunk: Buffer) => {
          bytes += chunk.length;
          tail = (tail + chunk.subarray(Math.max(0, chunk.length - 256)).toString("latin1")).slice(-256);
        });
        res.on("end", () => {
          if (res.statusCode !== 200) return reject(new Error(`bridge answered ${res.statusCode}: ${tail}`));
          const rows = variant.rowsOf(tail, res.trailers);
          if (rows === undefined) reject(new Error(`${variant.accept}: no proof the result is whole`));
          else resolve({ rows, bytes, ms: performance.now() - started });
        });
        res.on("error", reject);
        res.on("aborted", () => reject(new Error(`${variant.accept}: transfer cut`)));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

export async function formatsPhase(ctx: FormatsContext): Promise<FormatsResults> {
  const { sizes, step } = ctx;
  step(
    `formats: ${count(sizes.bulkRows)} rows, ${sizes.streamReps} rep(s) of direct pg and each bridge format`,
  );
  const { bridge } = await ctx.startServices("formats", true);
  const url = `http://127.0.0.1:${bridge!.port}`;
  const agent = httpAgent(1);
  const sql = streamSql(sizes.bulkRows, sizes.bigRows);
  const warm = streamSql(Math.min(50_000, sizes.bulkRows), sizes.bigRows);
  const cursor = () => pgCursorStream(ctx.admin, sql, ctx.batchRows, { firstBatchRows: ctx.firstBatchRows });

  for (const variant of Object.values(VARIANTS)) await readFormat(url, agent, warm, variant);
  const pgRates: number[] = [];
  const rates: Record<string, number[]> = {};
  const peaks: Record<string, number> = {};
  const bytes: Record<string, number> = {};
  const skipped: Record<string, string> = {};
  for (let rep = 0; rep < sizes.streamReps; rep++) {
    const pg = await cursor();
    pgRates.push((pg.rows / pg.totalMs) * 1000);
    for (const [name, variant] of Object.entries(VARIANTS)) {
      if (skipped[name]) continue;
      const memory = new PeakMemory(bridge!.pid);
      try {
        const result = await readFormat(url, agent, sql, variant);
        if (result.rows !== sizes.bulkRows) throw new Error(`${name} read ${result.rows} rows`);
        rates[name] = [...(rates[name] ?? []), (result.rows / result.ms) * 1000];
        bytes[name] = result.bytes / result.rows;
      } catch (error) {
        // Buffered JSON has a size cap (MAX_JSON_RESPONSE_BYTES): over it, the format is not measured.
        if (!String(error).includes("413")) throw error;
        skipped[name] = "over MAX_JSON_RESPONSE_BYTES (413)";
      } finally {
        peaks[name] = Math.max(peaks[name] ?? 0, memory.stop());
      }
    }
  }
  agent.destroy();
  await ctx.stopServices();

  const pgRowsPerSecond = median(pgRates);
  step(`  pg            ${count(pgRowsPerSecond)} rows/s`);
  const formats: FormatsResults["formats"] = {};
  for (const name of Object.keys(VARIANTS)) {
    if (skipped[name]) {
      formats[name] = { skipped: skipped[name] };
      step(`  ${name.padEnd(13)} skipped: ${skipped[name]}`);
      continue;
    }
    const rowsPerSecond = median(rates[name]!);
    formats[name] = {
      rowsPerSecond,
      ratioVsPg: rowsPerSecond / pgRowsPerSecond,
      bridgePeakRssMb: peaks[name]!,
      bytesPerRow: bytes[name]!,
    };
    step(
      `  ${name.padEnd(13)} ${count(rowsPerSecond)} rows/s (${(rowsPerSecond / pgRowsPerSecond).toFixed(2)}× pg), ` +
        `${bytes[name]!.toFixed(1)} B/row, bridge peak RSS ${peaks[name]!.toFixed(0)} MiB`,
    );
  }
  return { rows: sizes.bulkRows, pgRowsPerSecond, formats };
}
