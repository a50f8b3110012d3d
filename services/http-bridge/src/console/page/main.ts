// The console page's wiring: one run at a time, from Run (or Ctrl/Cmd-Enter)
// through the NDJSON stream into the table, to its footer, error or cancel.
// Each run carries its own x-request-id, which is what Cancel and the
// running-queries panel name it by.
import { credential, errorOf, postQuery, requestId } from "./api.js";
import { download, type Format } from "./download.js";
import { Editor } from "./editor.js";
import { Grid } from "./grid.js";
import { indexOfPosition, lineAndColumn } from "./highlight.js";
import { type QueryErrorBody, type ResultFooter, RowStore, readResult } from "./result-stream.js";
import { killQuery, RunningQueries } from "./running.js";

const NDJSON = "application/x-ndjson";

function byId<T extends HTMLElement>(id: string): T {
  return document.getElementById(id) as T;
}

const editor = new Editor(byId<HTMLTextAreaElement>("sql"), byId("highlight"));
const grid = new Grid(byId("results"));
const runButton = byId<HTMLButtonElement>("run");
const cancelButton = byId<HTMLButtonElement>("cancel");
const status = byId("status");
const errorPanel = byId("error");
const running = new RunningQueries(byId("running"), byId("running-list"), byId("running-note"));
const tokenInput = byId<HTMLInputElement>("token");

interface Run {
  id: string;
  controller: AbortController;
  sql: string;
  /** Where `sql` starts in the editor's text (Run sends the selection if there is one). */
  offset: number;
  /** The editor's whole text when Run was pressed: a position is marked only if it is still the same. */
  text: string;
  startedAt: number;
  firstRowMs?: number;
  rows: RowStore;
  cancelled: boolean;
  footer?: ResultFooter;
  error?: QueryErrorBody;
}

let current: Run | undefined;
let statusFrame = 0;
/** Counts runs, on the status element too (data-run), so a test can wait for one particular run. */
let runs = 0;

async function run(): Promise<void> {
  if (current) return;
  const { sql, offset } = editor.statement();
  if (sql.trim() === "") return;
  editor.clearMark();
  showError(undefined);
  const state: Run = {
    id: requestId(),
    controller: new AbortController(),
    sql,
    offset,
    text: editor.text,
    startedAt: performance.now(),
    rows: new RowStore(),
    cancelled: false,
  };
  current = state;
  status.dataset.run = String(++runs);
  setRunning(true);
  grid.clear();
  setStatus("running", "running…");
  try {
    const response = await postQuery({ sql, accept: NDJSON, id: state.id, signal: state.controller.signal });
    running.wake();
    if (!response.ok || !response.body) {
      state.error = await errorOf(response);
    } else {
      await readResult(response.body, state.rows, {
        onHeader: (columns) => (columns.length > 0 ? grid.reset(columns, state.rows) : grid.clear()),
        onRows: () => {
          state.firstRowMs ??= performance.now() - state.startedAt;
          grid.refresh();
          scheduleStatus(state);
        },
        onFooter: (footer) => {
          state.footer = footer;
        },
        onError: (error) => {
          state.error = error;
        },
      });
    }
  } catch (error) {
    if (!state.cancelled) state.error = { code: "network", message: String(error) };
  } finally {
    current = undefined;
    setRunning(false);
    finish(state);
    running.refresh();
  }
}

function cancel(): void {
  const state = current;
  if (!state) return;
  state.cancelled = true;
  // Both: the registry's DELETE stops the statement by its id, and leaving
  // the request makes the bridge cancel it too (all there is without the registry).
  void killQuery(state.id);
  state.controller.abort();
}

function finish(state: Run): void {
  const elapsed = formatMs(performance.now() - state.startedAt);
  const rows = `${state.rows.count.toLocaleString("en-US")} rows`;
  const firstRow = state.firstRowMs === undefined ? "" : ` · first row ${formatMs(state.firstRowMs)}`;
  if (state.cancelled) {
    setStatus("cancelled", `cancelled after ${elapsed} · ${rows} kept`, state);
  } else if (state.error) {
    setStatus(
      "error",
      `failed after ${elapsed}${state.rows.count ? ` · ${rows} before the error` : ""}`,
      state,
    );
    showError(state.error, state);
  } else if (state.footer) {
    // The footer's count: rows returned, or rows an INSERT/UPDATE/DELETE touched.
    const count = `${state.footer.rowCount.toLocaleString("en-US")} rows`;
    const truncated = state.footer.truncated ? " (truncated by maxRows)" : "";
    setStatus("done", `${state.footer.command} · ${count}${truncated}${firstRow} · ${elapsed}`, state);
  } else {
    setStatus("error", `the result ended without its footer after ${rows}: it is incomplete`, state);
  }
  grid.refresh();
}

function scheduleStatus(state: Run): void {
  if (statusFrame) return;
  statusFrame = requestAnimationFrame(() => {
    statusFrame = 0;
    if (current === state) setStatus("running", `${state.rows.count.toLocaleString("en-US")} rows…`, state);
  });
}

function setStatus(name: string, text: string, state?: Run): void {
  status.dataset.state = name;
  status.dataset.rows = String(state?.rows.count ?? 0);
  if (state?.firstRowMs !== undefined) status.dataset.firstRowMs = String(Math.round(state.firstRowMs));
  else delete status.dataset.firstRowMs;
  status.textContent = text;
}

function setRunning(on: boolean): void {
  runButton.disabled = on;
  cancelButton.disabled = !on;
}

function formatMs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

/** Fills (or hides) the error panel; marks the position in the editor if the text is still what ran. */
function showError(error: QueryErrorBody | undefined, state?: Run): void {
  errorPanel.hidden = !error;
  errorPanel.replaceChildren();
  if (!error) return;
  const add = (name: string, value: string | undefined) => {
    if (!value) return;
    const row = document.createElement("div");
    row.className = `error-${name}`;
    const label = document.createElement("b");
    label.textContent = `${name}: `;
    row.append(label, value);
    errorPanel.append(row);
  };
  const code = document.createElement("code");
  code.className = "sqlstate";
  code.textContent = error.code;
  const message = document.createElement("span");
  message.className = "error-message";
  message.textContent = error.message;
  errorPanel.append(code, " ", message);
  add("detail", error.detail);
  add("hint", error.hint);
  if (error.position && state) {
    const index = state.offset + indexOfPosition(state.sql, error.position);
    const { line, column } = lineAndColumn(state.text, index);
    add("position", `line ${line}, column ${column}`);
    if (editor.text === state.text) editor.markError(index);
  }
}

async function save(format: Format): Promise<void> {
  const { sql } = editor.statement();
  if (sql.trim() === "") return;
  showError(undefined);
  const error = await download(sql, format);
  if (error) showError(error);
}

runButton.addEventListener("click", () => void run());
cancelButton.addEventListener("click", cancel);
for (const button of document.querySelectorAll<HTMLButtonElement>("button[data-format]"))
  button.addEventListener("click", () => void save(button.dataset.format as Format));
document.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key === "Enter") {
    event.preventDefault();
    void run();
  } else if (event.key === "Escape" && current) {
    cancel();
  }
});
tokenInput.value = credential.get();
tokenInput.addEventListener("input", () => credential.set(tokenInput.value));
setRunning(false);
setStatus("idle", "ready");
running.refresh();
document.body.dataset.ready = "true";
