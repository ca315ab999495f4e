// Archives: round trips, damage, wrong keys, hostile tarballs, killed runs, full disks.
// deno: yes
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn, spawnSync } from "node:child_process";
import { randomFillSync } from "node:crypto";
import {
  chmodSync,
  chownSync,
  closeSync,
  existsSync,
  linkSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { Header } from "tar";
import { generateIdentity, identityToRecipient } from "age-encryption";
import {
  compareTrees,
  ExitCode,
  InterruptedError,
  listBackups,
  packArchive,
  RefusedError,
  unpackArchive,
  verifyArchive,
  VerifyError,
  which,
  withContext,
  type Context,
  type Progress,
} from "../lib/internal.ts";
import { cleanupTmp, testContext, tmp } from "./helpers.ts";
import { makeSampleTree, seededBytes } from "../tasks/drills/fixtures.ts";
import { hostileCorpus, writeHostile } from "./fixtures/hostile.ts";

const PASS = "correct horse battery staple";

function sample(): { src: string; backups: string; archive: string } {
  const root = tmp();
  const src = makeSampleTree(join(root, "src"));
  return { src, backups: join(root, "backups"), archive: join(root, "backups", "s.tar.gz") };
}

async function rejects<E>(p: Promise<unknown>, type: new (...a: never[]) => E, match: RegExp): Promise<E> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, type, `expected ${type.name}, got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
    assert.match((e as Error).message, match);
    return e as E;
  }
  assert.unreachable(`expected a ${type.name} matching ${match}`);
  throw new Error("unreachable");
}

/** Flips one byte in the middle of a file. */
function corrupt(path: string, at = Math.floor(statSync(path).size / 2)): void {
  const buf = readFileSync(path);
  const fd = openSync(path, "r+");
  writeSync(fd, Buffer.from([buf[at] ^ 0xff]), 0, 1, at);
  closeSync(fd);
}

/** Rewrites the tar header of one entry of an uncompressed-size-friendly .tar.gz (and drops the .sha256 sidecar, as a forger would). */
function rewriteHeader(archive: string, path: string, change: (h: Header) => void): void {
  const tar = gunzipSync(readFileSync(archive));
  let found = false;
  for (let off = 0; off + 512 <= tar.length; ) {
    const h = new Header(tar, off);
    if (!h.path) break;
    if (h.path === path) {
      change(h);
      h.encode(tar, off);
      found = true;
    }
    off += 512 + Math.ceil((h.size ?? 0) / 512) * 512;
  }
  assert.ok(found, `entry ${path} found`);
  writeFileSync(archive, gzipSync(tar));
  rmSync(`${archive}.sha256`, { force: true });
}

/** Makes ctx.log.progress call onAdd with the bytes counted so far (to interrupt a run part way, without timers). */
function onProgress(ctx: Context, onAdd: (total: number, label: string) => void): void {
  const real = ctx.log.progress.bind(ctx.log);
  ctx.log.progress = (label, opts) => {
    const p: Progress = real(label, opts);
    let n = 0;
    return { add: (k) => (p.add(k), onAdd((n += k), label)), total: (t) => p.total(t), done: (t) => p.done(t), fail: (t) => p.fail(t) };
  };
}

/** A tree of incompressible files, `mib` MiB in all. */
function bigTree(root: string, mib: number): string {
  mkdirSync(root, { recursive: true });
  const chunk = Buffer.alloc(16 << 20);
  for (let i = 0; i * 16 < mib; i++) writeFileSync(join(root, `blob-${i}.bin`), randomFillSync(chunk));
  return root;
}

test.after.each(() => cleanupTmp());

test("round trip keeps awkward names, contents, modes, symlinks, hardlinks and empty dirs", async () => {
  testContext();
  const { src, archive } = sample();
  const m = await packArchive(src, archive, { meta: { purpose: "test" } });
  assert.ok(m.totals.files >= 10);
  assert.is(m.meta.purpose, "test");
  const out = join(tmp(), "restored");
  await unpackArchive(archive, out);
  assert.equal(await compareTrees(src, out), []);
  assert.ok(existsSync(join(out, "data", "awkward names", "new\nline.txt")));
  assert.is(statSync(join(out, "data", "run.sh")).ino, statSync(join(out, "data", "run-hardlink.sh")).ino, "hardlink restored as a hardlink");
});

test("owners are restored with sameOwner (as root) and not without it", async () => {
  testContext();
  if (process.getuid?.() !== 0) return void console.log("  (skipped: needs root)");
  const { src, archive } = sample();
  chownSync(join(src, "etc", "app.conf"), 1234, 2345);
  chownSync(join(src, "data"), 4321, 4321);
  await packArchive(src, archive);
  const kept = join(tmp(), "kept");
  await unpackArchive(archive, kept, { sameOwner: true });
  assert.equal(await compareTrees(src, kept), []);
  assert.is(statSync(join(kept, "etc", "app.conf")).uid, 1234);
  const mine = join(tmp(), "mine");
  await unpackArchive(archive, mine);
  assert.is(statSync(join(mine, "etc", "app.conf")).uid, 0, "without sameOwner the restoring user owns the files");
});

test("archives are written 0600 in a 0700 folder, with sha256 and info sidecars", async () => {
  testContext();
  const { src, backups, archive } = sample();
  await packArchive(src, archive);
  assert.is(statSync(archive).mode & 0o777, 0o600);
  assert.is(statSync(backups).mode & 0o777, 0o700);
  const side = readFileSync(`${archive}.sha256`, "utf8");
  assert.match(side, /^[0-9a-f]{64}  s\.tar\.gz\n$/);
  const r = spawnSync("sha256sum", ["-c", "s.tar.gz.sha256"], { cwd: backups });
  assert.is(r.status, 0, "sha256sum -c accepts the sidecar");
  assert.is(JSON.parse(readFileSync(`${archive}.info.json`, "utf8")).recipe, "test");
});

test("GNU tar reads a lifeboat archive (multi-member gzip, standard tar)", async () => {
  testContext();
  const { src, archive } = sample();
  await packArchive(src, archive, { workers: 4 });
  const out = tmp();
  const r = spawnSync("tar", ["-xzf", archive, "-C", out]);
  assert.is(r.status, 0, String(r.stderr));
  assert.equal(await compareTrees(src, out, { ignore: ["manifest.json"] }), []);
});

test("encrypted round trip with a passphrase; the ciphertext holds no plaintext", async () => {
  testContext();
  const { src, archive } = sample();
  const enc = `${archive}.age`;
  await packArchive(src, enc, { encrypt: { passphrase: PASS } });
  assert.not.ok(readFileSync(enc).includes(Buffer.from("listen = 127.0.0.1:8080")));
  const out = join(tmp(), "r");
  await unpackArchive(enc, out, { decrypt: { passphrase: PASS } });
  assert.equal(await compareTrees(src, out), []);
});

test("encrypted round trip with an age recipient and identity", async () => {
  testContext();
  const { src, archive } = sample();
  const identity = await generateIdentity();
  const recipient = await identityToRecipient(identity);
  await packArchive(src, `${archive}.age`, { encrypt: { recipients: [recipient] } });
  const out = join(tmp(), "r");
  await unpackArchive(`${archive}.age`, out, { decrypt: { identities: [identity] } });
  assert.equal(await compareTrees(src, out), []);
});

test("restore refuses a corrupted byte before touching the target", async () => {
  testContext();
  const { src, archive } = sample();
  await packArchive(src, archive);
  corrupt(archive);
  const out = join(tmp(), "never");
  await rejects(unpackArchive(archive, out), VerifyError, /damaged|sha256|mismatch/);
  assert.not.ok(existsSync(out), "target was not created");
});

test("restore refuses a truncated archive before touching the target", async () => {
  testContext();
  const { src, archive } = sample();
  await packArchive(src, archive);
  truncateSync(archive, Math.floor(statSync(archive).size * 0.6));
  const out = join(tmp(), "never");
  await rejects(unpackArchive(archive, out), VerifyError, /truncated|damaged/);
  assert.not.ok(existsSync(out));
});

test("restore refuses a tampered encrypted archive and a wrong passphrase", async () => {
  testContext();
  const { src, archive } = sample();
  const enc = `${archive}.age`;
  await packArchive(src, enc, { encrypt: { passphrase: PASS } });
  const out = join(tmp(), "never");
  await rejects(unpackArchive(enc, out, { decrypt: { passphrase: "wrong passphrase" } }), VerifyError, /passphrase or identity does not open it/);
  await rejects(unpackArchive(enc, out), VerifyError, /encrypted and no passphrase/);
  corrupt(enc);
  await rejects(unpackArchive(enc, out, { decrypt: { passphrase: PASS } }), VerifyError, /damaged|could not be read|truncated/);
  assert.not.ok(existsSync(out));
});

test("a tarball without manifest is refused unless requireManifest is false", async () => {
  testContext();
  const { src } = sample();
  const plain = join(tmp(), "store_file_backup.tar.gz");
  // the runbook's way: cd /var/lib/deis/store && tar cpzf … .
  assert.is(spawnSync("tar", ["-C", src, "-cpzf", plain, "."]).status, 0);
  const out = join(tmp(), "r");
  await rejects(unpackArchive(plain, out), VerifyError, /no manifest\.json/);
  assert.not.ok(existsSync(out));
  await unpackArchive(plain, out, { requireManifest: false });
  assert.equal(await compareTrees(src, out), []);
});

test("hostile tarballs write nothing outside the target and are refused whole", async () => {
  testContext();
  const root = tmp();
  const outside = join(root, "outside");
  mkdirSync(outside);
  writeFileSync(join(outside, "victim.txt"), "original");
  for (const [name, entries] of Object.entries(hostileCorpus(outside))) {
    const file = writeHostile(join(root, `${name.replace(/\W+/g, "-")}.tar.gz`), entries);
    const target = join(root, "targets", name.replace(/\W+/g, "-"));
    await rejects(unpackArchive(file, target, { requireManifest: false }), VerifyError, /refused|unsafe/);
    assert.not.ok(existsSync(target), `${name}: target untouched`);
    assert.equal(readdirSync(outside), ["victim.txt"], `${name}: nothing written outside`);
    assert.is(readFileSync(join(outside, "victim.txt"), "utf8"), "original");
  }
});

test("restore refuses a non-empty target unless forced", async () => {
  testContext();
  const { src, archive } = sample();
  await packArchive(src, archive);
  const out = tmp();
  writeFileSync(join(out, "precious.db"), "do not overwrite");
  await rejects(unpackArchive(archive, out), RefusedError, /not empty.*precious\.db/);
  assert.is(readFileSync(join(out, "precious.db"), "utf8"), "do not overwrite");
  await unpackArchive(archive, out, { force: true });
  assert.ok(existsSync(join(out, "etc", "app.conf")));
});

test("a pack killed with SIGKILL leaves nothing that looks complete, and the next run succeeds", async () => {
  testContext();
  const root = tmp();
  const src = join(root, "src");
  mkdirSync(src);
  for (let i = 0; i < 12; i++) writeFileSync(join(src, `blob-${i}.bin`), seededBytes(`b${i}`, 8 << 20));
  const backups = join(root, "backups");
  const archive = join(backups, "big.tar.gz");
  // The packing process itself is killed (not a wrapper like npx), under Node and Deno alike.
  // workers 1: node-tar and in-process gzip (GNU tar | pigz: the next test).
  for (const delayMs of [0, 150, 400, 900]) {
    const args = ["--import=tsx", new URL("./fixtures/pack-child.ts", import.meta.url).pathname, src, archive, "1"];
    await new Promise<void>((resolve) => {
      const p = spawn("node", args, { stdio: ["ignore", "pipe", "ignore"] });
      p.stdout!.once("data", () => setTimeout(() => p.kill("SIGKILL"), delayMs));
      p.once("exit", () => resolve());
    });
    assert.equal(listBackups(backups).map((b) => b.name), [], `after a kill at ${delayMs}ms, no backup is listed`);
    assert.not.ok(existsSync(archive), `after a kill at ${delayMs}ms, no archive under the final name`);
  }
  await packArchive(src, archive, { workers: 2 });
  assert.equal(readdirSync(backups).filter((n) => n.startsWith(".partial-")), [], "leftovers were cleaned");
  await verifyArchive(archive);
});

test("a pack through GNU tar | pigz killed with SIGKILL takes tar, pigz and its shell along, and the next run succeeds", async () => {
  testContext();
  const root = tmp();
  const src = join(root, "src");
  mkdirSync(src);
  writeFileSync(join(src, "a.txt"), "a\n");
  writeFileSync(join(src, "sparse.img"), "");
  truncateSync(join(src, "sparse.img"), 2 * 1024 ** 3); // 2 GiB of holes: seconds of work for tar | pigz, no disk
  const backups = join(root, "backups");
  const archive = join(backups, "big.tar.gz");
  const p = spawn("node", ["--import=tsx", new URL("./fixtures/pack-child.ts", import.meta.url).pathname, src, archive, "2"], { stdio: ["ignore", "ignore", "inherit"] });
  const exited = new Promise((r) => p.once("exit", r));
  // Killed once tar is running (its command line names the tree).
  for (let i = 0; i < 600 && !(await packersLeft(src, 0)).some((l) => / tar /.test(l)); i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok((await packersLeft(src, 0)).some((l) => / tar /.test(l)), "tar started");
  p.kill("SIGKILL");
  await exited;
  assert.equal(await packersLeft(src), [], "no tar, compressor or shell goes on");
  assert.equal(listBackups(backups).map((b) => b.name), []);
  assert.not.ok(existsSync(archive));
  rmSync(join(src, "sparse.img"));
  await packArchive(src, archive);
  assert.equal(readdirSync(backups).filter((n) => n.startsWith(".partial-")), [], "leftovers (the partial file and the manifest's folder) were cleaned");
  await verifyArchive(archive);
});

/** Runs f with a 1 MiB tmpfs mounted at ROOT/small (the "full disk"); skipped where no tmpfs can be mounted. */
async function onSmallDisk(root: string, f: (mnt: string) => Promise<void>): Promise<void> {
  const mnt = join(root, "small");
  mkdirSync(mnt);
  if (spawnSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt]).status !== 0) {
    console.log("  (skipped: cannot mount a tmpfs here)");
    return;
  }
  try {
    await f(mnt);
  } finally {
    spawnSync("umount", [mnt]);
  }
}

test("a full disk fails the pack with a clear error and leaves no partial file", async () => {
  testContext();
  const root = tmp();
  const src = join(root, "src");
  mkdirSync(src);
  writeFileSync(join(src, "incompressible.bin"), seededBytes("full", 4 << 20));
  await onSmallDisk(root, async (mnt) => {
    const e = await rejects(packArchive(src, join(mnt, "x.tar.gz")), Error, /no space left/);
    assert.match(String((e as { hint?: string }).hint), /free space/);
    assert.equal(readdirSync(mnt), [], "nothing left on the full disk");
  });
});

test("a full disk fails the unpack with a clear error, restores nothing and leaves the target as it was", async () => {
  testContext();
  const root = tmp();
  const src = join(root, "src");
  mkdirSync(join(src, "d"), { recursive: true });
  writeFileSync(join(src, "a.txt"), "small");
  writeFileSync(join(src, "d", "incompressible.bin"), seededBytes("full-unpack", 4 << 20));
  const archive = join(root, "x.tar.gz");
  await packArchive(src, archive);
  await onSmallDisk(root, async (mnt) => {
    mkdirSync(join(mnt, "target"));
    const e = await rejects(unpackArchive(archive, join(mnt, "target")), Error, /no space left/);
    assert.match(String((e as { hint?: string }).hint), /nothing was restored/);
    assert.equal(readdirSync(join(mnt, "target")), [], "the target is as it was: empty, no staging folder");
  });
});

test("verifyArchive reports a file sha256 that differs from the .sha256 sidecar", async () => {
  testContext();
  const { src, archive } = sample();
  await packArchive(src, archive);
  writeFileSync(`${archive}.sha256`, `${"0".repeat(64)}  s.tar.gz\n`);
  await rejects(verifyArchive(archive), VerifyError, /differs from s\.tar\.gz\.sha256/);
});

test("dry-run pack writes nothing", async () => {
  testContext({ argv: ["--dry-run"] });
  const { src, backups, archive } = sample();
  const m = await packArchive(src, archive);
  assert.ok(m.entries.length > 5);
  assert.not.ok(existsSync(backups));
});

for (const [what, change, problem] of [
  ["owner", (h: Header) => void (h.uid = (h.uid ?? 0) + 1), /owner \d+:\d+, manifest says \d+:\d+/],
  ["mtime", (h: Header) => void (h.mtime = new Date((h.mtime ?? new Date()).getTime() - 3600_000)), /mtime .*, manifest says /],
] as const) {
  test(`restore refuses an archive whose tar header ${what} differs from the manifest, before touching the target`, async () => {
    testContext();
    const { src, archive } = sample();
    await packArchive(src, archive);
    rewriteHeader(archive, "etc/app.conf", change);
    const out = join(tmp(), "never");
    const e = await rejects(unpackArchive(archive, out), VerifyError, /etc\/app\.conf/);
    assert.is(e.exitCode, ExitCode.Verify);
    assert.ok(e.problems.some((p) => p.startsWith("etc/app.conf: ") && problem.test(p)), e.problems.join("\n"));
    assert.not.ok(existsSync(out), "target was not created");
  });
}

test("names like drive letters (a:b, Z:, c:\\x) round-trip through pack, verify, unpack and GNU tar", async () => {
  testContext();
  const root = tmp();
  const src = join(root, "src");
  mkdirSync(join(src, "d:"), { recursive: true });
  for (const n of ["a:b", "Z:", "c:\\x", "d:/e:f", "\\lead-backslash"]) writeFileSync(join(src, n), `content of ${n}\n`);
  linkSync(join(src, "Z:"), join(src, "zz-hardlink-to-Z"));
  symlinkSync("c:x", join(src, "link-to-c:x"));
  const archive = join(root, "backups", "drive.tar.gz");
  const m = await packArchive(src, archive);
  assert.ok(m.entries.some((e) => e.path === "Z:"), "Z: is in the manifest under its own name");
  await verifyArchive(archive);
  const out = join(root, "restored");
  await unpackArchive(archive, out);
  assert.equal(await compareTrees(src, out), []);
  assert.is(statSync(join(out, "Z:")).ino, statSync(join(out, "zz-hardlink-to-Z")).ino, "hardlink to Z: restored");
  const gnu = join(root, "gnu");
  mkdirSync(gnu);
  const r = spawnSync("tar", ["-xzf", archive, "-C", gnu]);
  assert.is(r.status, 0, String(r.stderr));
  assert.equal(await compareTrees(src, gnu, { ignore: ["manifest.json"] }), []);
});

test("symlinks to absolute targets are restored as they were, and nothing is written through them", async () => {
  testContext();
  const root = tmp();
  const src = join(root, "src");
  mkdirSync(src);
  symlinkSync("/etc/hostname", join(src, "abs-link"));
  symlinkSync(root, join(src, "abs-dir-link"));
  writeFileSync(join(src, "plain.txt"), "plain\n");
  const archive = join(root, "backups", "abs.tar.gz");
  await packArchive(src, archive);
  const out = join(root, "restored");
  await unpackArchive(archive, out);
  assert.is(readlinkSync(join(out, "abs-link")), "/etc/hostname");
  assert.is(readlinkSync(join(out, "abs-dir-link")), root);
  assert.equal(await compareTrees(src, out), []);
});

test("pack creates the backups folder 0700 whatever the umask, and warns about a wider existing folder without changing it", async () => {
  const { logs } = testContext();
  const root = tmp();
  const src = makeSampleTree(join(root, "src"));
  const old = process.umask(0);
  try {
    await packArchive(src, join(root, "new", "deeper", "a.tar.gz"));
  } finally {
    process.umask(old);
  }
  assert.is(statSync(join(root, "new", "deeper")).mode & 0o777, 0o700);
  assert.is(statSync(join(root, "new")).mode & 0o777, 0o700);
  assert.not.match(logs(), /wider|readable by/);
  const wide = join(root, "wide");
  mkdirSync(wide);
  chmodSync(wide, 0o755);
  await packArchive(src, join(wide, "a.tar.gz"));
  assert.is(statSync(wide).mode & 0o777, 0o755, "an existing folder is never changed");
  assert.match(logs(), new RegExp(`${wide}.*0755`));
});

test("an interrupt stops a pack part way: the reason is thrown and no archive, partial or sidecar is left", async () => {
  const { ctx } = testContext();
  const root = tmp();
  const src = bigTree(join(root, "src"), 320);
  const backups = join(root, "backups");
  const reason = new InterruptedError("SIGINT");
  let after = -1;
  let last = 0;
  onProgress(ctx as Context, (n) => {
    last = n;
    if (n >= 32 << 20 && !ctx.signal.aborted) ctx.abort(reason), (after = n);
  });
  let thrown: unknown;
  await withContext(ctx as Context, () => packArchive(src, join(backups, "big.tar.gz"), { workers: 2 })).catch((e) => (thrown = e));
  assert.is(thrown, reason, `the interrupt itself is thrown (got ${String(thrown)})`);
  assert.ok(after > 0, "aborted part way");
  assert.ok(last - after < 64 << 20, `stopped promptly: ${last - after} bytes packed after the interrupt`);
  assert.equal(readdirSync(backups), [], "nothing left in the backups folder");
});

test("an interrupt stops verify and unpack part way with the reason", async () => {
  const { ctx } = testContext();
  const root = tmp();
  const src = bigTree(join(root, "src"), 96);
  const archive = join(root, "backups", "big.tar.gz");
  await packArchive(src, archive, { level: 1 });
  const reason = new InterruptedError("SIGTERM");
  let seen = 0;
  onProgress(ctx as Context, (n) => {
    seen = n;
    if (n >= 8 << 20 && !ctx.signal.aborted) ctx.abort(reason);
  });
  let thrown: unknown;
  await withContext(ctx as Context, () => verifyArchive(archive)).catch((e) => (thrown = e));
  assert.is(thrown, reason, `verify throws the interrupt (got ${String(thrown)})`);
  assert.ok(seen < statSync(archive).size, "verify stopped before the end");
  const { ctx: ctx2 } = testContext();
  const out = join(root, "out");
  onProgress(ctx2 as Context, (n, label) => {
    if (label.startsWith("extract") && n >= 8 << 20 && !ctx2.signal.aborted) ctx2.abort(reason);
  });
  thrown = undefined;
  await withContext(ctx2 as Context, () => unpackArchive(archive, out)).catch((e) => (thrown = e));
  assert.is(thrown, reason, `unpack throws the interrupt (got ${String(thrown)})`);
});

/** Runs fn with a PATH that holds no pigz (nor anything else): the in-process gzip fallback. */
async function withoutPigz<T>(fn: () => Promise<T>): Promise<T> {
  const saved = process.env.PATH;
  process.env.PATH = tmp();
  try {
    return await fn();
  } finally {
    process.env.PATH = saved;
  }
}

/** Processes (pid and command) whose command line names dir, after giving the killed ones a moment to go. */
async function packersLeft(dir: string, tries = 15): Promise<string[]> {
  let left: string[] = [];
  for (let i = 0; i <= tries; i++) { // 1.5 s by default: a SIGKILLed process is gone in milliseconds; an orphan tar | pigz would go on for seconds
    left = [];
    for (const pid of readdirSync("/proc").filter((n) => /^\d+$/.test(n))) {
      let cmd = "";
      try {
        cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ");
      } catch {
        continue;
      }
      if (cmd.includes(dir) && Number(pid) !== process.pid) left.push(`${pid} ${cmd.slice(0, 120)}`);
    }
    if (!left.length || i === tries) return left;
    await new Promise((r) => setTimeout(r, 100));
  }
  return left;
}

/** Names under a folder, "" when it does not exist. */
const namesIn = (dir: string) => (existsSync(dir) ? readdirSync(dir).sort() : []);

test("gzip goes through pigz when it is installed; GNU tar and unpackArchive read the archive back", async () => {
  testContext();
  assert.ok(which("pigz"), "pigz is installed (Debian package pigz: make deps installs it)");
  const { src, archive } = sample();
  const m = await packArchive(src, archive);
  assert.is(m.tools.compressor, "pigz");
  const gnu = tmp();
  const r = spawnSync("tar", ["-xzf", archive, "-C", gnu]);
  assert.is(r.status, 0, String(r.stderr));
  assert.equal(await compareTrees(src, gnu, { ignore: ["manifest.json"] }), []);
  const out = join(tmp(), "r");
  await unpackArchive(archive, out);
  assert.equal(await compareTrees(src, out), []);
});

test("without pigz on PATH, gzip is done in-process and the archive reads the same", async () => {
  testContext();
  const { src, archive } = sample();
  const m = await withoutPigz(() => packArchive(src, archive, { workers: 2 }));
  assert.is(m.tools.compressor, "node zlib (parallel)");
  const gnu = tmp();
  assert.is(spawnSync("tar", ["-xzf", archive, "-C", gnu]).status, 0);
  assert.equal(await compareTrees(src, gnu, { ignore: ["manifest.json"] }), []);
  const report = await withoutPigz(() => verifyArchive(archive));
  assert.is(report.manifest?.entries.length, m.entries.length);
});

test("manifest checksums are the content's, whatever the compressor", async () => {
  testContext();
  const { src, backups } = sample();
  const gz = await packArchive(src, join(backups, "a.tar.gz"));
  const zst = await packArchive(src, join(backups, "a.tar.zst"), { compression: "zstd" });
  const inproc = await withoutPigz(() => packArchive(src, join(backups, "b.tar.gz")));
  const sums = (m: typeof gz) => m.entries.map((e) => `${e.path} ${e.type} ${e.size} ${e.sha256 ?? ""}`);
  assert.equal(sums(zst), sums(gz));
  assert.equal(sums(inproc), sums(gz));
  // GNU tar packs (gz, zst) and node-tar packs (in-process gzip) record every entry alike: mode, owner, mtime, link targets.
  assert.is(gz.tools.tar, spawnSync("tar", ["--version"], { encoding: "utf8" }).stdout.replace(/^tar \(GNU tar\) (\S+)[^]*$/, "GNU tar $1"));
  assert.match(inproc.tools.tar, /^node-tar/);
  assert.equal(inproc.entries, gz.entries);
  assert.equal(zst.entries, gz.entries);
  const conf = gz.entries.find((e) => e.path === "etc/app.conf")!;
  const want = spawnSync("sha256sum", [join(src, "etc", "app.conf")], { encoding: "utf8" }).stdout.split(" ")[0];
  assert.is(conf.sha256, want, "the recorded sha256 is sha256sum's of the file");
});

test("names over 100 bytes and deep paths (GNU tar's long-name entries) round-trip through pack, verify and unpack", async () => {
  testContext();
  const root = tmp();
  const src = join(root, "src");
  const deep = join(src, ...Array.from({ length: 12 }, (_, i) => `level-${i}-${"d".repeat(20)}`));
  mkdirSync(deep, { recursive: true });
  writeFileSync(join(deep, `${"long name ".repeat(20)}.txt`), "deep\n");
  writeFileSync(join(src, `${"ü".repeat(120)}.bin`), seededBytes("long", 70000));
  symlinkSync(`../${"t".repeat(150)}`, join(src, "long-target"));
  const archive = join(root, "backups", "long.tar.gz");
  const m = await packArchive(src, archive);
  assert.match(m.tools.tar, /^GNU tar/);
  await verifyArchive(archive);
  const out = join(root, "out");
  await unpackArchive(archive, out);
  assert.equal(await compareTrees(src, out), []);
});

test("an entry changed while it is packed fails the pack, naming it, and leaves no archive", async () => {
  testContext();
  const root = tmp();
  const src = join(root, "src");
  mkdirSync(src);
  writeFileSync(join(src, "a-small.conf"), "v1\n");
  writeFileSync(join(src, "z-big.bin"), seededBytes("big", 48 << 20)); // packing it takes a while
  const backups = join(root, "backups");
  let touched = false;
  const poll = setInterval(() => {
    // Once the pack has started writing (after its walk), the small file is changed.
    if (!touched && namesIn(backups).some((n) => n.startsWith(".partial-"))) {
      chmodSync(join(src, "a-small.conf"), 0o640);
      touched = true;
    }
  }, 2);
  try {
    await rejects(packArchive(src, join(backups, "c.tar.gz")), Error, /1 entry of .* changed while being packed: "a-small.conf"/);
  } finally {
    clearInterval(poll);
  }
  assert.ok(touched);
  assert.equal(namesIn(backups), [], "no archive, partial file or sidecar is left");
});

test("zstd archives: GNU tar --zstd reads them; verify, unpack and listing tell them by name and magic", async () => {
  testContext();
  const { src, backups } = sample();
  const archive = join(backups, "s.tar.zst");
  const m = await packArchive(src, archive, { compression: "zstd", meta: { purpose: "zstd" } });
  assert.is(m.tools.compressor, "zstd");
  assert.equal([...readFileSync(archive).subarray(0, 4)], [0x28, 0xb5, 0x2f, 0xfd], "zstd magic");
  assert.is(JSON.parse(readFileSync(`${archive}.info.json`, "utf8")).compression, "zstd");
  const gnu = tmp();
  const r = spawnSync("tar", ["--zstd", "-xf", archive, "-C", gnu]);
  assert.is(r.status, 0, String(r.stderr));
  assert.equal(await compareTrees(src, gnu, { ignore: ["manifest.json"] }), []);
  assert.is((await verifyArchive(archive, { record: true })).manifest?.entries.length, m.entries.length);
  const out = join(tmp(), "r");
  await unpackArchive(archive, out);
  assert.equal(await compareTrees(src, out), []);
  await packArchive(src, `${archive}.age`, { compression: "zstd", encrypt: { passphrase: PASS } });
  const dec = join(tmp(), "dec");
  await unpackArchive(`${archive}.age`, dec, { decrypt: { passphrase: PASS } });
  assert.equal(await compareTrees(src, dec), []);
  assert.equal(listBackups(backups).map((b) => [b.name, b.verified]).sort(), [["s.tar.zst", "passed"], ["s.tar.zst.age", "never"]]);
});

test("a corrupted or truncated zstd archive is refused and restores nothing", async () => {
  testContext();
  const { src, backups } = sample();
  const archive = join(backups, "s.tar.zst");
  await packArchive(src, archive, { compression: "zstd" });
  const copy = join(backups, "t.tar.zst");
  spawnSync("cp", [archive, copy]);
  corrupt(archive);
  const out = join(tmp(), "never");
  await rejects(unpackArchive(archive, out), VerifyError, /damaged|sha256|mismatch/);
  assert.not.ok(existsSync(out), "target was not created");
  truncateSync(copy, Math.floor(statSync(copy).size * 0.6));
  rmSync(`${copy}.sha256`, { force: true });
  await rejects(unpackArchive(copy, out), VerifyError, /truncated|damaged/);
  assert.not.ok(existsSync(out));
});

test("unpack checks in its one read: a damaged end restores nothing into an existing target, forced or not", async () => {
  testContext();
  const { src, archive } = sample();
  await packArchive(src, archive);
  corrupt(archive, statSync(archive).size - 12); // in the last member: every entry is extracted before the damage shows
  const empty = tmp();
  await rejects(unpackArchive(archive, empty), VerifyError, /damaged|truncated|sha256/);
  assert.equal(namesIn(empty), [], "no entry and no staging folder left");
  const full = tmp();
  writeFileSync(join(full, "precious.db"), "keep");
  await rejects(unpackArchive(archive, full, { force: true }), VerifyError, /damaged|truncated|sha256/);
  assert.equal(namesIn(full), ["precious.db"], "a forced restore that fails leaves the target as it was");
});

test("unpack checks the sidecar sha256 in the same read, and restores nothing when it differs", async () => {
  testContext();
  const { src, archive } = sample();
  await packArchive(src, archive);
  writeFileSync(`${archive}.sha256`, `${"0".repeat(64)}  s.tar.gz\n`);
  const out = tmp();
  await rejects(unpackArchive(archive, out), VerifyError, /differs from s\.tar\.gz\.sha256/);
  assert.equal(namesIn(out), []);
});

test("a big archive, hashed on a worker thread beside the reader, is checked against its sidecar the same way", async () => {
  testContext();
  const root = tmp();
  const src = bigTree(join(root, "src"), 80); // over the 64 MiB from which openArchive hashes off the main thread
  const archive = join(root, "b", "big.tar.gz");
  await packArchive(src, archive);
  const want = readFileSync(`${archive}.sha256`, "utf8").split(" ")[0];
  assert.is((await verifyArchive(archive)).sha256, want, "verify: the worker's sha256 is the file's");
  const out = join(root, "out");
  assert.is((await unpackArchive(archive, out)).sha256, want, "unpack: the same");
  assert.equal(namesIn(out).sort(), readdirSync(src).sort());
  writeFileSync(`${archive}.sha256`, `${"0".repeat(64)}  big.tar.gz\n`);
  const out2 = join(root, "out2");
  await rejects(verifyArchive(archive), VerifyError, /differs from big\.tar\.gz\.sha256/);
  await rejects(unpackArchive(archive, out2), VerifyError, /differs from big\.tar\.gz\.sha256/);
  assert.equal(namesIn(out2), [], "nothing restored");
});

test("a quick verify reads sidecars and the key only; unpack then checks the manifest says what info.json said", async () => {
  testContext();
  const { src, archive } = sample();
  const enc = `${archive}.age`;
  await packArchive(src, enc, { encrypt: { passphrase: PASS }, meta: { purpose: "quick" } });
  const q = await verifyArchive<{ purpose: string }>(enc, { decrypt: { passphrase: PASS }, quick: true });
  assert.ok(q.quick);
  assert.is(q.manifest, null);
  assert.is(q.info?.meta.purpose, "quick");
  assert.is(q.sha256, readFileSync(`${enc}.sha256`, "utf8").split(" ")[0]);
  await rejects(verifyArchive(enc, { decrypt: { passphrase: "wrong" }, quick: true }), VerifyError, /does not open it/);
  const out = join(tmp(), "r");
  const info = JSON.parse(readFileSync(`${enc}.info.json`, "utf8"));
  writeFileSync(`${enc}.info.json`, JSON.stringify({ ...info, meta: { purpose: "forged" } }));
  assert.is((await verifyArchive<{ purpose: string }>(enc, { decrypt: { passphrase: PASS }, quick: true })).info?.meta.purpose, "forged", "quick trusts info.json…");
  await rejects(unpackArchive(enc, out, { decrypt: { passphrase: PASS } }), VerifyError, /info\.json: recipe or meta differs from the manifest/);
  assert.not.ok(existsSync(out), "…and unpack refuses it, restoring nothing");
  writeFileSync(`${enc}.sha256`, `${"1".repeat(64)}  s.tar.gz.age\n`);
  await rejects(verifyArchive(enc, { decrypt: { passphrase: PASS }, quick: true }), VerifyError, /record different sha256/);
});

test("a quick verify of a damaged start, or with no info.json, reads enough to refuse it", async () => {
  testContext();
  const { src, archive } = sample();
  await packArchive(src, archive);
  const tar = gunzipSync(readFileSync(archive));
  tar[0] ^= 0xff; // the first entry's name: its header checksum no longer matches
  writeFileSync(archive, gzipSync(tar)); // a well-formed gzip of a damaged tar; the sidecars are left as they were
  await rejects(verifyArchive(archive, { quick: true }), VerifyError, /first tar header is damaged/);
  rmSync(`${archive}.info.json`);
  await rejects(verifyArchive(archive, { quick: true }), VerifyError, /damaged|sha256/);
});

test("a killed unpack leaves only its hidden staging folder, which the next unpack clears", async () => {
  testContext();
  const { src, archive } = sample();
  await packArchive(src, archive);
  const out = tmp();
  const dead = join(out, ".partial-unpack-0a1b2c.999999");
  mkdirSync(join(dead, "etc"), { recursive: true });
  writeFileSync(join(dead, "etc", "app.conf"), "half");
  await unpackArchive(archive, out);
  assert.equal(await compareTrees(src, out), []);
});

test.run();
