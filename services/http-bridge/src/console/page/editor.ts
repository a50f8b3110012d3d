// The SQL editor: a plain <textarea> (so typing, undo, selection, IME and
// screen readers all behave as the browser makes them) with transparent text,
// over a <pre> that shows the same text highlighted. The two share font,
// padding and scroll position, so the caret sits on the coloured letters.
import { highlightHtml } from "./highlight.js";

export class Editor {
  /** String index of the error mark, while the text is what was run. */
  private markAt: number | undefined;

  constructor(
    private readonly textarea: HTMLTextAreaElement,
    private readonly overlay: HTMLElement,
  ) {
    textarea.addEventListener("input", () => {
      this.markAt = undefined;
      this.render();
    });
    textarea.addEventListener("scroll", () => this.syncScroll());
    this.render();
  }

  get text(): string {
    return this.textarea.value;
  }

  set text(value: string) {
    this.textarea.value = value;
    this.markAt = undefined;
    this.render();
  }

  /** What Run sends: the selection when there is one, else everything; and where it starts. */
  statement(): { sql: string; offset: number } {
    const { selectionStart, selectionEnd, value } = this.textarea;
    if (selectionEnd > selectionStart && value.slice(selectionStart, selectionEnd).trim() !== "")
      return { sql: value.slice(selectionStart, selectionEnd), offset: selectionStart };
    return { sql: value, offset: 0 };
  }

  /** Marks the token at a string index and puts the caret there. */
  markError(index: number): void {
    this.markAt = Math.min(index, this.textarea.value.length);
    this.render();
    this.textarea.focus();
    // Focused, the textarea scrolls to its caret; the overlay follows.
    this.textarea.setSelectionRange(this.markAt, this.markAt);
    this.syncScroll();
  }

  clearMark(): void {
    if (this.markAt === undefined) return;
    this.markAt = undefined;
    this.render();
  }

  private render(): void {
    this.overlay.innerHTML = highlightHtml(this.textarea.value, this.markAt);
    this.syncScroll();
  }

  private syncScroll(): void {
    const pre = this.overlay.parentElement as HTMLElement;
    pre.scrollTop = this.textarea.scrollTop;
    pre.scrollLeft = this.textarea.scrollLeft;
  }
}
