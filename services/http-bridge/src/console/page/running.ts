// The panel of the caller's running queries (GET /queries), each with a Kill
// button (DELETE /queries/{id}). Polled while the page is visible. A bridge
// without the registry answers 404: the panel then hides and stops asking
// until the next Run, which asks once more.
import { errorOf, headers } from "./api.js";

interface RunningQuery {
  /** GET /queries names it requestId; id is accepted too. */
  requestId?: string;
  id?: string;
  state?: string;
  waitEvent?: string;
  startedAt?: string;
  durationMs?: number;
  fingerprint?: string;
}

const POLL_MS = 2000;

export class RunningQueries {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private available = true;

  constructor(
    private readonly panel: HTMLElement,
    private readonly list: HTMLElement,
    private readonly note: HTMLElement,
  ) {
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.refresh();
    });
  }

  /** Asks now (and keeps polling), also after a 404 earlier: the bridge may have been upgraded. */
  wake(): void {
    this.available = true;
    this.refresh();
  }

  async refresh(): Promise<void> {
    clearTimeout(this.timer);
    if (!this.available) return;
    let response: Response;
    try {
      response = await fetch("queries", { headers: headers({ accept: "application/json" }) });
    } catch {
      this.show([], "cannot reach the bridge");
      this.schedule();
      return;
    }
    if (response.status === 404) {
      this.available = false;
      this.panel.hidden = true;
      return;
    }
    if (!response.ok) this.show([], (await errorOf(response)).message);
    else this.show(((await response.json()) as { queries?: RunningQuery[] }).queries ?? [], "");
    this.schedule();
  }

  private schedule(): void {
    if (document.visibilityState === "visible") this.timer = setTimeout(() => this.refresh(), POLL_MS);
  }

  private show(queries: RunningQuery[], problem: string): void {
    this.panel.hidden = false;
    this.note.textContent = problem || (queries.length === 0 ? "none running" : "");
    this.list.replaceChildren(...queries.map((q) => this.item(q)));
  }

  private item(query: RunningQuery): HTMLElement {
    const id = query.requestId ?? query.id ?? "";
    const item = document.createElement("li");
    const what = document.createElement("code");
    what.textContent = query.fingerprint || id;
    const facts = document.createElement("span");
    facts.className = "facts";
    const seconds = query.durationMs === undefined ? "" : `${(query.durationMs / 1000).toFixed(1)} s`;
    facts.textContent = [query.state, query.waitEvent, seconds].filter(Boolean).join(" · ");
    const kill = document.createElement("button");
    kill.type = "button";
    kill.textContent = "Kill";
    kill.title = `cancel ${id}`;
    kill.addEventListener("click", async () => {
      kill.disabled = true;
      await killQuery(id);
      await this.refresh();
    });
    item.append(what, facts, kill);
    return item;
  }
}

/** DELETE /queries/{id}: 200 when it was cancelled, 404 when it was not running (both fine here). */
export async function killQuery(id: string): Promise<void> {
  await fetch(`queries/${encodeURIComponent(id)}`, { method: "DELETE", headers: headers() }).catch(() => {});
}
