// Bytes that never reached the disk: a write-back that fails (here a thin-provisioned disk
// whose backing store is full: an ext4 image on a loop device, in a 4 MiB tmpfs, so writes land
// in the page cache and fail only when flushed) fails the write, and nothing that looks complete
// is left. Also flushBehind, which flushes a file to disk while it is being written.
// Needs root (tmpfs, losetup, mount); no lab.
// deno: yes
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { closeSync, mkdirSync, openSync, readdirSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { captureToFile, flushBehind, packArchive } from "../lib/mod.ts";
import { cleanupTmp, testContext, tmp } from "./helpers.ts";
import { seededBytes } from "../tasks/drills/fixtures.ts";

const undo: string[][] = [];

function run(argv: string[]): string {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr || r.error}`);
  return r.stdout.trim();
}

/** A 55 MiB ext4 filesystem whose backing store holds 4 MiB: what it accepts beyond that fails on write-back. */
function thinDisk(): string {
  const dir = tmp();
  const back = join(dir, "back");
  const mnt = join(dir, "mnt");
  mkdirSync(back);
  mkdirSync(mnt);
  run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", back]);
  undo.push(["umount", "--lazy", back]);
  run(["truncate", "-s", "64M", join(back, "disk.img")]);
  run(["mkfs.ext4", "-q", "-F", join(back, "disk.img")]);
  const loop = run(["losetup", "--find", "--show", join(back, "disk.img")]);
  undo.push(["losetup", "-d", loop]);
  run(["mount", loop, mnt]);
  undo.push(["umount", "--lazy", mnt]);
  return mnt;
}

test.after.each(() => {
  // Lazily: a filesystem whose write-back failed can stay busy for a moment.
  for (const argv of undo.splice(0).reverse()) spawnSync(argv[0], argv.slice(1));
  cleanupTmp();
});

test("a captured file whose bytes the disk could not take fails, and leaves nothing behind", async () => {
  const disk = thinDisk();
  testContext();
  let err: Error | undefined;
  try {
    await captureToFile(join(disk, "dump.sql"), async (t) => writeFileSync(t, seededBytes("flush-1", 8 << 20)));
  } catch (e) {
    err = e as Error;
  }
  assert.ok(err, "the capture failed");
  assert.match(String((err as { code?: string }).code ?? "") + err!.message, /no space left|ENOSPC|EIO/i, err!.message);
  assert.equal(readdirSync(disk).filter((n) => n !== "lost+found"), [], "no file and no partial file is left");
});

test("flushBehind reports the write-back error it met, which the commit's fsync might not see again", async () => {
  const disk = thinDisk();
  const path = join(disk, "growing.bin");
  writeFileSync(path, "");
  const fb = flushBehind(path, { every: 1 << 20, intervalMs: 10 });
  const fd = openSync(path, "a");
  try {
    for (let i = 0; i < 8; i++) {
      writeSync(fd, seededBytes(`flush-${i}`, 1 << 20));
      await sleep(30);
    }
  } catch (e) {
    // ext4 turns itself read-only once a write-back has failed: the writer stops there.
    assert.is((e as NodeJS.ErrnoException).code, "EROFS", String(e));
  } finally {
    closeSync(fd);
  }
  await sleep(100);
  let err: NodeJS.ErrnoException | undefined;
  await fb.stop().catch((e) => (err = e));
  assert.ok(err, "stop() throws the flush's error");
  assert.match(err!.code ?? "", /^(ENOSPC|EIO)$/, String(err));
});

test("flushBehind flushes a growing file to disk while it is written, one flush at a time", async () => {
  const path = join(tmp(), "growing.bin");
  writeFileSync(path, "");
  const fb = flushBehind(path, { every: 1 << 20, intervalMs: 5 });
  const fd = openSync(path, "a");
  for (let i = 0; i < 8; i++) {
    writeSync(fd, seededBytes(`flush-${i}`, 1 << 20));
    await sleep(30);
  }
  closeSync(fd);
  for (let i = 0; i < 200 && fb.flushed < 8 << 20; i++) await sleep(10);
  assert.equal(fb.flushed, 8 << 20, "every byte was flushed before stop()");
  await fb.stop();
  await fb.stop(); // twice is harmless
});

test("a packed archive the disk could not take fails, with no archive and no sidecars left", async () => {
  const disk = thinDisk();
  const src = tmp();
  writeFileSync(join(src, "data.bin"), seededBytes("flush-7", 12 << 20)); // random: gzip keeps its size
  const { ctx } = testContext();
  let err: Error | undefined;
  try {
    await packArchive(src, join(disk, "backup.tar.gz"), { ctx, progress: false });
  } catch (e) {
    err = e as Error;
  }
  assert.ok(err, "the pack failed");
  assert.match(err!.message, /no space left|ENOSPC|EIO|I\/O error/i, err!.message);
  assert.equal(readdirSync(disk).filter((n) => n !== "lost+found"), [], "nothing is left: no archive, no sidecar, no partial file");
});

test.run();
