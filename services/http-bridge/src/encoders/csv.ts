// PostgreSQL text form → CSV, exactly as PostgreSQL's own
// `COPY (query) TO STDOUT WITH (FORMAT csv, HEADER)` writes it, so a file
// fetched through querygate diffs clean against one made with psql. The rules
// are those of copyto.c's CopyAttributeOutCSV with COPY's defaults (delimiter
// ",", quote and escape `"`, NULL as the empty string):
// - NULL is nothing at all, unquoted; an empty string is `""` (it equals the NULL string);
// - a value is quoted when it holds a comma, a quote, CR or LF, and a quote inside is doubled;
// - `\.` alone is quoted when it is the only column (it would read as COPY's old end-of-data line);
// - nothing else is quoted: leading spaces, "NULL" and backslashes pass as they are;
// - column names in the header follow the same rules; every line ends with LF.
// Values are PostgreSQL's text forms as query-grpc streams them, so numbers,
// timestamps, arrays and composites print as COPY prints them.
import type { StreamedFormat } from "./streamed-format.js";

export interface CsvEncoder {
  /** The header line, column names in order. */
  header(): string;
  /** One row's line. */
  row(values: readonly string[], nullColumns: readonly number[]): string;
}

const needsQuotes = /[",\r\n]/;

function field(text: string, singleColumn: boolean): string {
  if (text === "" || (singleColumn && text === "\\.")) return `"${text}"`;
  if (!needsQuotes.test(text)) return text;
  return `"${text.includes('"') ? text.replace(/"/g, '""') : text}"`;
}

export function csvEncoder(columns: ReadonlyArray<{ name: string }>): CsvEncoder {
  const single = columns.length === 1;
  const width = columns.length;
  return {
    header: () => `${columns.map((c) => field(c.name, single)).join(",")}\n`,
    row(values, nullColumns) {
      let line = "";
      for (let i = 0; i < width; i++) {
        if (i > 0) line += ",";
        if (nullColumns.length > 0 && nullColumns.includes(i)) continue;
        line += field(values[i] ?? "", single);
      }
      return `${line}\n`;
    },
  };
}

export const csvFormat: StreamedFormat = {
  contentType: "text/csv; charset=utf-8; header=present",
  name: "csv",
  encoder(columns) {
    const csv = csvEncoder(columns);
    return {
      start: () => Buffer.from(csv.header()),
      rows(rows) {
        let text = "";
        for (const row of rows) text += csv.row(row.values, row.nullColumns);
        return Buffer.from(text);
      },
      end: () => new Uint8Array(0),
    };
  },
};
