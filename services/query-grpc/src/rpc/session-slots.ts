// How many Session streams may be open at once: each holds a connection and
// an admission slot for as long as it lasts, so they are counted apart.
import { QueryFailure } from "../errors.js";

/** At most `max` concurrent sessions; the next one is refused at once, before it takes anything else. */
export class SessionSlots {
  private active = 0;

  constructor(readonly max: number) {}

  get open(): number {
    return this.active;
  }

  /** Takes a slot and returns its release, or throws RESOURCE_EXHAUSTED. */
  enter(): () => void {
    if (this.active >= this.max) {
      throw new QueryFailure(
        "overloaded",
        `all ${this.max} sessions are in use; retry shortly, or use ExecuteBatch`,
      );
    }
    this.active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.active--;
    };
  }
}
