// Which response format POST /query answers in, from the Accept header and the
// body's rowMode. The original tool's callers send no Accept, `*/*`, or
// whatever their HTTP library puts there: anything not recognised keeps
// today's answer, buffered JSON — never a 406 that would break a script that
// has worked for years.

export type FormatKind = "json" | "ndjson" | "csv" | "arrow";
export type RowMode = "object" | "array";

export interface ResponseFormat {
  kind: FormatKind;
  /** Rows as JSON objects (the original shape) or as arrays in column order; JSON and NDJSON only. */
  rows: RowMode;
}

const MEDIA_TYPES: Record<string, FormatKind> = {
  "application/json": "json",
  "application/x-ndjson": "ndjson",
  "text/csv": "csv",
  "application/vnd.apache.arrow.stream": "arrow",
};

interface Offer {
  kind: FormatKind;
  q: number;
  rows?: RowMode;
}

/** Accept's entries that name a format, with their q and a `rows=array|object` parameter. */
function offers(accept: string): Offer[] {
  const found: Offer[] = [];
  for (const entry of accept.split(",")) {
    const [type, ...params] = entry.split(";").map((s) => s.trim().toLowerCase());
    const kind = MEDIA_TYPES[type ?? ""];
    if (!kind) continue;
    let q = 1;
    let rows: RowMode | undefined;
    for (const param of params) {
      const [name, value] = param.split("=").map((s) => s.trim());
      if (name === "q") q = Number(value);
      else if (name === "rows" && (value === "array" || value === "object")) rows = value;
    }
    if (Number.isFinite(q) && q > 0) found.push({ kind, q, rows });
  }
  return found;
}

/**
 * The recognised type with the highest q wins, ties going to the one listed
 * first; none recognised means JSON. A rowMode in the body beats the Accept
 * parameter: it is the more deliberate of the two.
 */
export function chooseFormat(accept: string | undefined, bodyRowMode: RowMode | undefined): ResponseFormat {
  let best: Offer | undefined;
  for (const offer of offers(accept ?? "")) if (!best || offer.q > best.q) best = offer;
  return { kind: best?.kind ?? "json", rows: bodyRowMode ?? best?.rows ?? "object" };
}
