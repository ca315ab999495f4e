// lib/limit.ts: limit(n) and mapLimit: at most n in flight, order of results, failures
// settled, abort stops new work. No lab.
// Run: node --import=tsx test/limit.test.ts
// deno: yes
import { test } from "uvu";
import * as assert from "uvu/assert";
import { InterruptedError } from "../lib/errors.ts";
import { failures, limit, mapLimit } from "../lib/limit.ts";

const never = new AbortController().signal;
const tick = () => new Promise((r) => setImmediate(r));

/** A task gate: tasks wait until released; counts how many run at once. */
function tracker() {
  let running = 0;
  let peak = 0;
  return {
    async run<T>(value: T, ticks = 3): Promise<T> {
      running++;
      peak = Math.max(peak, running);
      for (let i = 0; i < ticks; i++) await tick();
      running--;
      return value;
    },
    peak: () => peak,
  };
}

test("limit(n) runs at most n tasks at once and every task runs", async () => {
  const t = tracker();
  const run = limit(3);
  const out = await Promise.all(Array.from({ length: 20 }, (_, i) => run(() => t.run(i, (i % 4) + 1))));
  assert.equal(out, Array.from({ length: 20 }, (_, i) => i));
  assert.is(t.peak(), 3);
});

test("limit(n) shared by two loops caps them together, and a failed task frees its slot", async () => {
  const t = tracker();
  const run = limit(2);
  const a = Array.from({ length: 5 }, (_, i) => run(() => (i === 1 ? Promise.reject(new Error("x")) : t.run(i))));
  const b = Array.from({ length: 5 }, (_, i) => run(() => t.run(10 + i)));
  const settled = await Promise.allSettled([...a, ...b]);
  assert.is(settled.filter((s) => s.status === "rejected").length, 1);
  assert.is(t.peak(), 2);
});

test("mapLimit returns results in input order, failures settled beside successes", async () => {
  const t = tracker();
  const items = [5, 1, 4, 2, 3, 0];
  const results = await mapLimit(items, 2, async (x, i) => {
    if (x === 4) throw new Error(`item ${i} failed`);
    return t.run(x * 10, x);
  }, { signal: never });
  assert.equal(results.map((r) => (r.ok ? r.value : (r.error as Error).message)), [50, 10, "item 2 failed", 20, 30, 0]);
  assert.is(t.peak(), 2);
  assert.equal(failures(results).map((e) => (e as Error).message), ["item 2 failed"]);
});

test("mapLimit takes any iterable and an empty list", async () => {
  assert.equal(await mapLimit([], 4, async () => 1, { signal: never }), []);
  const r = await mapLimit(new Set(["a", "b"]), 8, async (s) => s.toUpperCase(), { signal: never });
  assert.equal(r, [{ ok: true, value: "A" }, { ok: true, value: "B" }]);
});

test("mapLimit starts nothing new once the signal aborts and settles the rest with its reason", async () => {
  const ac = new AbortController();
  const started: number[] = [];
  const results = await mapLimit(Array.from({ length: 10 }, (_, i) => i), 2, async (i) => {
    started.push(i);
    if (i === 2) ac.abort(new InterruptedError("SIGINT"));
    await tick();
    return i;
  }, { signal: ac.signal });
  assert.equal(started, [0, 1, 2], "items 3.. never started");
  assert.equal(results.slice(0, 3).map((r) => r.ok), [true, true, true], "started items finish");
  for (const r of results.slice(3)) assert.ok(!r.ok && r.error instanceof InterruptedError);
});

test.run();
