// Download the statement's result as CSV or Arrow: the same POST /query with
// another Accept, saved as a file. The bridge encodes it (the table's rows are
// JSON, not the bytes a CSV or Arrow reader wants), so this runs the statement
// again. An answer of another type (a bridge that cannot make the format yet
// sends JSON) is reported, not saved under the wrong name.
import { errorOf, postQuery, requestId } from "./api.js";
import type { QueryErrorBody } from "./result-stream.js";

export const FORMATS = {
  csv: { accept: "text/csv", extension: "csv" },
  arrow: { accept: "application/vnd.apache.arrow.stream", extension: "arrow" },
} as const;

export type Format = keyof typeof FORMATS;

export async function download(sql: string, format: Format): Promise<QueryErrorBody | undefined> {
  const { accept, extension } = FORMATS[format];
  let response: Response;
  try {
    response = await postQuery({ sql, accept, id: requestId() });
  } catch (error) {
    return { code: "network", message: String(error) };
  }
  if (!response.ok) return errorOf(response);
  const type = (response.headers.get("content-type") ?? "").split(";")[0]?.trim();
  if (type !== accept) {
    await response.body?.cancel();
    return { code: "unsupported_format", message: `the bridge answered ${type || "no type"}, not ${accept}` };
  }
  let blob: Blob;
  try {
    blob = await response.blob();
  } catch (error) {
    // CSV and Arrow end the response abnormally when the statement fails midway.
    return { code: "incomplete_result", message: `the result was cut short: ${String(error)}` };
  }
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = `result.${extension}`;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
  return undefined;
}
