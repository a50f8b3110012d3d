import { suite } from "uvu";
import * as assert from "uvu/assert";
import { BufferBudget } from "./buffer-budget.js";

const t = suite("the bridge-wide budget for buffered JSON");

const live = () => new AbortController().signal;

t("growth that fits is granted at once, without a promise", () => {
  const budget = new BufferBudget(1000);
  const a = budget.holder(live());
  const b = budget.holder(live());
  assert.is(a.holding(400), undefined);
  assert.is(b.holding(600), undefined);
  assert.is(budget.held, 1000);
  a.release();
  b.release();
  assert.is(budget.held, 0);
});

t(
  "a response being sent gives its bytes back as they go, never takes more, and lets a waiting one on",
  async () => {
    const budget = new BufferBudget(1000);
    const sending = budget.holder(live());
    const waiting = budget.holder(live());
    sending.holding(900);
    const wait = waiting.holding(400);
    assert.ok(wait, "900 + 400 is past the budget");
    sending.sending(2000);
    assert.is(budget.held, 900, "a body larger than its count takes nothing more");
    sending.sending(700);
    assert.is(budget.held, 700, "700 + 400 is still past the budget: the waiting one still waits");
    sending.sending(500);
    await wait;
    assert.is(budget.held, 900, "500 left to send, and the 400 granted");
    sending.release();
    waiting.release();
    assert.is(budget.held, 0);
  },
);

t("a younger response past the budget waits until an older one gives its bytes back", async () => {
  let waits = 0;
  const budget = new BufferBudget(1000, () => {
    waits += 1;
  });
  const older = budget.holder(live());
  const younger = budget.holder(live());
  older.holding(800);
  let granted = false;
  const wait = younger.holding(300);
  assert.ok(wait, "past the budget the younger response must wait");
  void wait?.then(() => {
    granted = true;
  });
  await Promise.resolve();
  assert.is(granted, false);
  assert.is(budget.held, 800);
  older.release();
  await wait;
  assert.is(granted, true);
  assert.is(budget.held, 300);
  assert.is(waits, 1);
  younger.release();
  assert.is(budget.held, 0);
});

t("the oldest response always goes on, so responses that all want more cannot block each other", async () => {
  const budget = new BufferBudget(1000);
  const oldest = budget.holder(live());
  const second = budget.holder(live());
  oldest.holding(500);
  second.holding(500);
  const secondWaits = second.holding(900);
  assert.ok(secondWaits);
  // Over the budget, and still granted: it is the oldest.
  assert.is(oldest.holding(2000), undefined);
  assert.is(budget.held, 2500);
  oldest.release();
  await secondWaits;
  assert.is(budget.held, 900);
  second.release();
  assert.is(budget.held, 0);
});

t("a response whose caller left stops waiting, and its bytes go back when it is released", async () => {
  const budget = new BufferBudget(1000);
  const held = budget.holder(live());
  held.holding(1000);
  const leaving = new AbortController();
  const waiter = budget.holder(leaving.signal);
  const wait = waiter.holding(100);
  assert.ok(wait);
  leaving.abort();
  await wait;
  waiter.release();
  waiter.release(); // twice is harmless
  assert.is(budget.held, 1000);
  held.release();
  assert.is(budget.held, 0);
});

t("releasing a response that is still waiting settles its wait and counts nothing for it", async () => {
  const budget = new BufferBudget(1000);
  const held = budget.holder(live());
  held.holding(900);
  const waiter = budget.holder(live());
  waiter.holding(50);
  const wait = waiter.holding(500);
  assert.ok(wait);
  waiter.release();
  await wait;
  assert.is(budget.held, 900);
  held.release();
  assert.is(budget.held, 0);
});

t.run();
