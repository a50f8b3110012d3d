// Drives the console in Debian's Chromium (headless, through playwright-core;
// no browser is ever downloaded). Shared by the browser tests and the script
// that takes the docs' screenshot and measures time to first row.
import { existsSync } from "node:fs";
import { type Browser, chromium, type Page, type Request } from "playwright-core";

export const CHROMIUM = "/usr/bin/chromium";

/** Chromium when it is installed, else undefined (the caller skips, saying so once). */
export async function launchChromium(): Promise<Browser | undefined> {
  if (!existsSync(CHROMIUM)) return undefined;
  return chromium.launch({ executablePath: CHROMIUM, args: ["--headless", "--no-sandbox", "--disable-gpu"] });
}

/**
 * The little of the page's globals that functions run in it use. This file is
 * compiled with Node's types, not the DOM's; and the page's policy forbids
 * evaluating strings, so such functions cannot be strings.
 */
export interface InPage {
  document: { cookie: string; getElementById(id: string): { dataset: Record<string, string | undefined> } };
  sessionStorage: { getItem(key: string): string | null };
  localStorage: { length: number };
}

export type RunState = "done" | "error" | "cancelled";

/** One console tab, with what it did that a test may want to hold against it. */
export class ConsoleTab {
  /** Requests to anywhere but the bridge (the page must make none). */
  readonly foreignRequests: string[] = [];
  /** Uncaught exceptions and console errors (a CSP violation is one). */
  readonly problems: string[] = [];

  private constructor(
    readonly page: Page,
    readonly origin: string,
  ) {
    page.on("request", (request) => {
      if (!request.url().startsWith(`${origin}/`)) this.foreignRequests.push(request.url());
    });
    page.on("pageerror", (error) => this.problems.push(error.message));
    page.on("console", (message) => {
      // Chromium logs every 4xx answer (a syntax error is a 400): those are the API working.
      if (message.type() === "error" && !message.text().startsWith("Failed to load resource"))
        this.problems.push(message.text());
    });
  }

  static async open(browser: Browser, bridgeUrl: string): Promise<ConsoleTab> {
    const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    page.setDefaultTimeout(15_000);
    const tab = new ConsoleTab(page, new URL(bridgeUrl).origin);
    await page.goto(`${bridgeUrl}/console`);
    // Set by the page's script once it is wired up.
    await page.waitForSelector("body[data-ready]", { state: "attached" });
    return tab;
  }

  /** Types `sql` into the editor and presses Ctrl-Enter; returns the POST it sent. */
  async start(sql: string): Promise<Request> {
    await this.page.fill("#sql", sql);
    await this.page.focus("#sql");
    const posted = this.page.waitForRequest((r) => r.method() === "POST" && r.url().endsWith("/query"));
    await this.page.keyboard.press("Control+Enter");
    return posted;
  }

  /** Waits for the run in progress to end (run number `after` or later), returning how. */
  async finished(after: number, timeoutMs = 30_000): Promise<RunState> {
    const handle = await this.page.waitForFunction(
      (n) => {
        const { state = "", run } = (globalThis as unknown as InPage).document.getElementById(
          "status",
        ).dataset;
        return Number(run) >= n && ["done", "error", "cancelled"].includes(state) && state;
      },
      after,
      { timeout: timeoutMs },
    );
    return (await handle.jsonValue()) as RunState;
  }

  async runNumber(): Promise<number> {
    return Number(await this.page.getAttribute("#status", "data-run"));
  }

  /** Runs `sql` to its end. */
  async run(sql: string): Promise<RunState> {
    const next = (await this.runNumber()) + 1;
    await this.start(sql);
    return this.finished(next);
  }

  status(): Promise<string> {
    return this.text("#status");
  }

  async text(selector: string): Promise<string> {
    return (await this.page.textContent(selector)) ?? "";
  }

  async statusNumber(name: "rows" | "firstRowMs"): Promise<number> {
    const attribute = name === "rows" ? "data-rows" : "data-first-row-ms";
    return Number(await this.page.getAttribute("#status", attribute));
  }

  /** Cell texts of the rendered rows, in order, without the row-number gutter. */
  renderedRows(): Promise<string[][]> {
    return this.page.$$eval(".grid-body .grid-row:not([hidden])", (rows) =>
      rows.map((row) => [...row.children].slice(1).map((cell) => cell.textContent ?? "")),
    );
  }

  /** Column headings as "name type". */
  headings(): Promise<string[]> {
    return this.page.$$eval(".grid-header .grid-heading", (cells) =>
      cells.map((cell) => [...cell.children].map((part) => part.textContent).join(" ")),
    );
  }

  close(): Promise<void> {
    return this.page.close();
  }
}
