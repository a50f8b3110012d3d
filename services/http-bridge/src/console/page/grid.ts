// The result table, virtualised: only the rows in view (plus a few) exist in
// the DOM, recycled as the caller scrolls, so a million rows scroll like ten.
// Rows have one fixed height; the scrolled-over height is capped (browsers
// stop laying out elements past a few million pixels), and past the cap the
// scroll position maps proportionally onto the rows, so the last row is
// always reachable. Column widths are fixed from the first rows, so the
// table does not jump as more arrive.
import type { ResultColumn, RowStore, RowValue } from "./result-stream.js";

const ROW_HEIGHT = 24;
const MAX_SCROLL_HEIGHT = 8_000_000;
const OVERSCAN = 4;
/** Columns are sized from this many rows: later rows are clipped with an ellipsis (full text in the tooltip). */
const SIZING_ROWS = 200;
const MIN_WIDTH_CH = 4;
const MAX_WIDTH_CH = 60;

/** int8, int2, int4, oid, float4, float8, money, numeric: right-aligned, so digits line up. */
const NUMERIC_TYPE_OIDS = new Set([20, 21, 23, 26, 700, 701, 790, 1700]);

export class Grid {
  private readonly header: HTMLElement;
  private readonly spacer: HTMLElement;
  private readonly body: HTMLElement;
  private pool: HTMLElement[] = [];
  private columns: ResultColumn[] = [];
  private rows: RowStore | undefined;
  private sized = false;
  private widths: string[] = [];
  /** Digits of the row count: the gutter widens as the count does. */
  private gutterDigits = 0;
  private frame = 0;

  constructor(private readonly scroller: HTMLElement) {
    scroller.replaceChildren();
    const table = element("div", "grid-table");
    this.header = element("div", "grid-row grid-header");
    this.spacer = element("div", "grid-spacer");
    this.body = element("div", "grid-body");
    this.spacer.append(this.body);
    table.append(this.header, this.spacer);
    scroller.append(table);
    scroller.addEventListener("scroll", () => this.refresh(), { passive: true });
    new ResizeObserver(() => this.refresh()).observe(scroller);
  }

  /** A new result: its columns, and the store its rows will arrive in. */
  reset(columns: ResultColumn[], rows: RowStore): void {
    this.columns = columns;
    this.rows = rows;
    this.sized = false;
    this.pool = [];
    this.body.replaceChildren();
    this.header.replaceChildren(element("span", "grid-cell grid-gutter", "#"));
    for (const column of columns) {
      const cell = element("span", "grid-cell grid-heading");
      cell.append(element("span", "grid-name", column.name), element("span", "grid-type", column.type));
      cell.title = `${column.name} ${column.type}`;
      this.header.append(cell);
    }
    this.setWidths(columns.map((c) => Math.max(c.name.length, c.type.length)));
    this.scroller.scrollTop = 0;
    this.scroller.scrollLeft = 0;
    this.refresh();
  }

  /** Empties the table (a statement with no columns, or an error before any). */
  clear(): void {
    this.columns = [];
    this.rows = undefined;
    this.pool = [];
    this.header.replaceChildren();
    this.body.replaceChildren();
    this.spacer.style.height = "0px";
  }

  /** Redraws on the next frame; any number of calls per frame cost one redraw. */
  refresh(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  private draw(): void {
    const rows = this.rows;
    if (!rows) return;
    if (!this.sized && rows.count > 0) this.sizeFrom(rows);
    const digits = String(rows.count).length;
    if (digits !== this.gutterDigits) {
      this.gutterDigits = digits;
      this.applyTemplate();
    }
    const total = rows.count * ROW_HEIGHT;
    const height = Math.min(total, MAX_SCROLL_HEIGHT);
    this.spacer.style.height = `${height}px`;
    const viewport = Math.max(0, this.scroller.clientHeight - this.header.offsetHeight);
    // ratio > 1 only past the cap: each scrolled pixel then covers more than a pixel of rows.
    const ratio = height > viewport ? (total - viewport) / (height - viewport) : 1;
    const scrollTop = Math.min(this.scroller.scrollTop, Math.max(0, height - viewport));
    const virtualTop = scrollTop * ratio;
    const first = Math.max(0, Math.floor(virtualTop / ROW_HEIGHT) - OVERSCAN);
    const count = Math.min(rows.count - first, Math.ceil(viewport / ROW_HEIGHT) + 2 * OVERSCAN + 1);
    this.body.style.transform = `translateY(${scrollTop - (virtualTop - first * ROW_HEIGHT)}px)`;
    this.ensurePool(Math.max(0, count));
    for (let i = 0; i < this.pool.length; i++) {
      const rowElement = this.pool[i] as HTMLElement;
      if (i >= count) {
        rowElement.hidden = true;
        continue;
      }
      rowElement.hidden = false;
      this.fill(rowElement, first + i, rows.values(first + i));
    }
  }

  private ensurePool(count: number): void {
    while (this.pool.length < count) {
      const rowElement = element("div", "grid-row");
      rowElement.append(element("span", "grid-cell grid-gutter"));
      for (const column of this.columns) {
        const numeric = NUMERIC_TYPE_OIDS.has(column.typeOid) ? " numeric" : "";
        rowElement.append(element("span", `grid-cell${numeric}`));
      }
      this.body.append(rowElement);
      this.pool.push(rowElement);
    }
  }

  private fill(rowElement: HTMLElement, index: number, values: RowValue[]): void {
    const cells = rowElement.children;
    const gutter = cells[0] as HTMLElement;
    gutter.textContent = String(index + 1);
    rowElement.dataset.row = String(index);
    for (let c = 0; c < this.columns.length; c++) {
      const cell = cells[c + 1] as HTMLElement;
      const value = values[c] ?? null;
      const text = display(value);
      if (cell.textContent !== text) cell.textContent = text;
      cell.classList.toggle("null", value === null);
      cell.title = text.length > 20 ? text.slice(0, 2000) : "";
    }
  }

  private sizeFrom(rows: RowStore): void {
    this.sized = true;
    const widths = this.columns.map((c) => Math.max(c.name.length, c.type.length));
    for (let r = 0; r < Math.min(rows.count, SIZING_ROWS); r++) {
      rows.values(r).forEach((value, c) => {
        widths[c] = Math.max(widths[c] ?? 0, display(value).length);
      });
    }
    this.setWidths(widths);
  }

  private setWidths(widthsInCh: number[]): void {
    this.widths = widthsInCh.map((w) => `${Math.min(MAX_WIDTH_CH, Math.max(MIN_WIDTH_CH, w)) + 2}ch`);
    this.applyTemplate();
  }

  private applyTemplate(): void {
    const gutter = `${Math.max(2, this.gutterDigits) + 2}ch`;
    // CSSOM, not a style attribute: allowed under the page's content security policy.
    this.scroller.style.setProperty("--grid-columns", [gutter, ...this.widths].join(" "));
  }
}

function display(value: RowValue): string {
  if (value === null) return "NULL";
  if (typeof value === "object") return JSON.stringify(value);
  const text = String(value);
  return text.includes("\n") ? text.replace(/\r?\n/g, "↵") : text;
}

function element(tag: string, className: string, text?: string): HTMLElement {
  const created = document.createElement(tag);
  created.className = className;
  if (text !== undefined) created.textContent = text;
  return created;
}
