// unpackArchive after a failed write: node-tar's UnpackSync closes the file's descriptor at the
// error but would go on writing the entry's later pieces to that number and close it again at
// the entry's end, when the number may already be another file's. This test watches every
// descriptor operation (node:fs patched in this process; Node only) during an unpack onto a
// full 1 MiB tmpfs and counts those on a descriptor that was closed and not opened again.
// Needs root (tmpfs); no lab.
import { test } from "uvu";
import * as assert from "uvu/assert";
import fs from "node:fs";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { packArchive, unpackArchive } from "../lib/mod.ts";
import { cleanupTmp, testContext, tmp } from "./helpers.ts";
import { seededBytes } from "../tasks/drills/fixtures.ts";

test.after.each(() => cleanupTmp());

type Fn = (...a: unknown[]) => unknown;

/** Runs f with node:fs's descriptor calls watched; returns the calls made on a descriptor closed since it was opened. */
async function watchFds(f: () => Promise<unknown>): Promise<string[]> {
  const closed = new Set<number>();
  const stale: string[] = [];
  const saved = new Map<string, Fn>();
  const wrap = (name: string, how: (orig: Fn) => Fn) => {
    const orig = (fs as unknown as Record<string, Fn>)[name];
    saved.set(name, orig);
    (fs as unknown as Record<string, Fn>)[name] = how(orig);
  };
  const onFd = (name: string) => (orig: Fn) => (fd: unknown, ...rest: unknown[]) => {
    if (typeof fd === "number" && closed.has(fd)) stale.push(`${name}(${fd})`);
    return orig(fd, ...rest);
  };
  wrap("openSync", (orig) => (...a: unknown[]) => {
    const fd = orig(...a) as number;
    closed.delete(fd);
    return fd;
  });
  wrap("closeSync", (orig) => (fd: unknown) => {
    if (typeof fd === "number" && closed.has(fd)) stale.push(`closeSync(${fd})`);
    try {
      return orig(fd);
    } finally {
      if (typeof fd === "number") closed.add(fd);
    }
  });
  for (const n of ["writeSync", "futimesSync", "fchownSync", "fchmodSync"]) wrap(n, onFd(n));
  try {
    await f().catch(() => {});
  } finally {
    for (const [n, orig] of saved) (fs as unknown as Record<string, Fn>)[n] = orig;
  }
  return stale;
}

test("a write that fails ends its entry and the unpack: no later write, mtime or close reaches a descriptor already closed", async () => {
  testContext();
  const root = tmp();
  const src = join(root, "src");
  fs.mkdirSync(src);
  // On a disk already full: one entry whose only write fails and which ends in the same piece
  // of tar, then small ones that node-tar would go on creating in that piece, reusing its number.
  fs.writeFileSync(join(src, "a-big.bin"), seededBytes("fds-big", 20 << 10));
  for (let i = 0; i < 20; i++) fs.writeFileSync(join(src, `b-${i}.txt`), `small ${i}\n`);
  const archive = join(root, "x.tar.gz");
  await packArchive(src, archive);
  const mnt = join(root, "small");
  fs.mkdirSync(mnt);
  if (spawnSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt]).status !== 0) throw new Error("cannot mount a tmpfs (root needed)");
  try {
    try {
      fs.writeFileSync(join(mnt, "fill"), Buffer.alloc(2 << 20)); // to the brim
    } catch (e) {
      assert.is((e as NodeJS.ErrnoException).code, "ENOSPC");
    }
    let err: Error | undefined;
    const stale = await watchFds(() => unpackArchive(archive, join(mnt, "t")).catch((e) => (err = e)));
    assert.ok(err, "the unpack failed");
    assert.match(err!.message, /no space left/);
    assert.equal(stale, [], "no call on a descriptor after it was closed");
    assert.equal(fs.readdirSync(mnt), ["fill"], "nothing restored, no staging left");
  } finally {
    spawnSync("umount", ["--lazy", mnt]);
  }
});

test.run();
