// hashFileOffThread (lib/checksum.ts): a file's hash on a worker thread, paced by the caller's
// own reader, stopped by its signal.
// deno: yes
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createHash } from "node:crypto";
import { statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { hashFileOffThread } from "../lib/mod.ts";
import { HASH_OFF_THREAD } from "../lib/checksum.ts";
import { cleanupTmp, tmp } from "./helpers.ts";
import { seededBytes } from "../tasks/drills/fixtures.ts";

test.after.each(() => cleanupTmp());

test("the hash and identity of a file, from a worker thread", async () => {
  const path = join(tmp(), "f.bin");
  const bytes = seededBytes("hash-thread", 5 << 20);
  writeFileSync(path, bytes);
  const d = await hashFileOffThread(path);
  assert.is(d.digest, createHash("sha256").update(bytes).digest("hex"));
  assert.is(d.bytes, bytes.length);
  assert.is(d.ino, Number(statSync(path).ino));
  assert.is((await hashFileOffThread(path, { algorithm: "md5" })).digest, createHash("md5").update(bytes).digest("hex"));
});

test("paced, the thread stays within aheadMiB of the caller's reader until the caller moves on", async () => {
  assert.ok(HASH_OFF_THREAD, "this runtime hashes on a worker thread");
  const path = join(tmp(), "f.bin");
  const bytes = seededBytes("hash-pace", 40 << 20);
  writeFileSync(path, bytes);
  const pace = new Int32Array(new SharedArrayBuffer(4));
  let done = false;
  const p = hashFileOffThread(path, { pace, aheadMiB: 8 }).finally(() => (done = true));
  await sleep(400); // unpaced, 40 MiB are hashed in a fraction of this
  assert.is(done, false, "held at 8 MiB ahead of a reader at 0");
  Atomics.store(pace, 0, 1000);
  Atomics.notify(pace, 0);
  assert.is((await p).digest, createHash("sha256").update(bytes).digest("hex"));
});

test("an aborted signal stops the thread and rejects with its reason, before or during the hash", async () => {
  const path = join(tmp(), "f.bin");
  writeFileSync(path, seededBytes("hash-abort", 1 << 20));
  const before = new AbortController();
  before.abort(new Error("stop now"));
  await hashFileOffThread(path, { signal: before.signal }).then(() => assert.unreachable("resolved"), (e) => assert.is((e as Error).message, "stop now"));
  const during = new AbortController();
  const pace = new Int32Array(new SharedArrayBuffer(4));
  const p = hashFileOffThread(path, { signal: during.signal, pace, aheadMiB: 0 }); // held at its first MiB
  await sleep(100);
  during.abort(new Error("stop later"));
  await p.then(() => assert.unreachable("resolved"), (e) => assert.is((e as Error).message, "stop later"));
});

test("a file that cannot be read rejects with its code", async () => {
  await hashFileOffThread(join(tmp(), "missing")).then(() => assert.unreachable("resolved"), (e) => assert.is((e as NodeJS.ErrnoException).code, "ENOENT"));
});

test.run();
