// lib/retry.ts: attempts, which failures are retried, backoff bounds, deadline, abort. No lab.
// Run: node --import=tsx test/retry.test.ts
// deno: yes
import { test } from "uvu";
import * as assert from "uvu/assert";
import { InterruptedError } from "../lib/errors.ts";
import { backoffDelay, retry } from "../lib/retry.ts";

const never = new AbortController().signal;
const quick = { baseMs: 1, maxMs: 2, signal: never };

test("retry returns the first success and passes the attempt number", async () => {
  const seen: number[] = [];
  const r = await retry(async (n) => {
    seen.push(n);
    if (n < 3) throw new Error(`fail ${n}`);
    return "ok";
  }, { ...quick, attempts: 5 });
  assert.is(r, "ok");
  assert.equal(seen, [1, 2, 3]);
});

test("retry throws the last failure once the attempts run out", async () => {
  let calls = 0;
  const err = await retry(async (n) => {
    calls++;
    throw new Error(`fail ${n}`);
  }, { ...quick, attempts: 4 }).catch((e) => e);
  assert.is(calls, 4);
  assert.is(err.message, "fail 4");
});

test("retry does not repeat a failure that is not retryable", async () => {
  let calls = 0;
  const err = await retry(async () => {
    calls++;
    throw Object.assign(new Error("denied"), { status: 403 });
  }, { ...quick, attempts: 5, retryable: (e) => (e as { status: number }).status >= 500 }).catch((e) => e);
  assert.is(calls, 1);
  assert.is(err.message, "denied");
});

test("onRetry hears each failure with its attempt and a pause within the bounds", async () => {
  const heard: [string, number, number][] = [];
  await retry(async (n) => {
    if (n < 4) throw new Error(`f${n}`);
  }, { attempts: 4, baseMs: 2, maxMs: 5, signal: never, onRetry: (e, n, ms) => heard.push([(e as Error).message, n, ms]) });
  assert.equal(heard.map(([m, n]) => [m, n]), [["f1", 1], ["f2", 2], ["f3", 3]]);
  for (const [, , ms] of heard) assert.ok(ms >= 1 && ms <= 5, `pause ${ms}`);
});

test("backoffDelay doubles from baseMs up to maxMs, and jitter keeps it between half and all", () => {
  const exact = [1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, { baseMs: 100, maxMs: 1000, jitter: false }));
  assert.equal(exact, [100, 200, 400, 800, 1000, 1000]);
  for (let i = 0; i < 200; i++) {
    const d = backoffDelay(3, { baseMs: 100, maxMs: 1000 });
    assert.ok(d >= 200 && d <= 400, `jittered ${d}`);
  }
});

test("maxElapsedMs stops retrying once the time is used up", async () => {
  let calls = 0;
  const err = await retry(async () => {
    calls++;
    throw new Error("down");
  }, { attempts: Infinity, baseMs: 5, maxMs: 5, maxElapsedMs: 30, signal: never }).catch((e) => e);
  assert.is(err.message, "down");
  assert.ok(calls >= 2, `${calls} calls`);
});

test("an abort during a pause ends the retries with the signal's reason", async () => {
  const ac = new AbortController();
  let calls = 0;
  const p = retry(async () => {
    calls++;
    if (calls === 1) setTimeout(() => ac.abort(new InterruptedError("SIGINT")), 5);
    throw new Error("down");
  }, { attempts: 10, baseMs: 60_000, maxMs: 60_000, signal: ac.signal }).catch((e) => e);
  const err = await p;
  assert.instance(err, InterruptedError);
  assert.is(calls, 1);
});

test("an aborted signal stops retry before the first attempt, and after a failure", async () => {
  const ac = new AbortController();
  ac.abort(new InterruptedError("SIGTERM"));
  let calls = 0;
  const err = await retry(async () => void calls++, { signal: ac.signal }).catch((e) => e);
  assert.instance(err, InterruptedError);
  assert.is(calls, 0);
  const ac2 = new AbortController();
  const err2 = await retry(async () => {
    ac2.abort(new InterruptedError("SIGINT"));
    throw new Error("down");
  }, { ...quick, attempts: 5, signal: ac2.signal }).catch((e) => e);
  assert.instance(err2, InterruptedError, "the interrupt, not the failure it cut short");
});

test.run();
