// Off-site copies (lib/offsite.ts, tasks/offsite.ts) against the lab's Ceph RADOS Gateway and sshd on loopback, and a local dir.
// The ssh "remote" is this machine, so its directories are local temp dirs the test can inspect and damage.
// Run: node --import=tsx test/offsite.test.ts
// needs: ceph sshd
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from "node:fs";
import { basename, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { DeleteObjectCommand, HeadObjectCommand, ListMultipartUploadsCommand, ListPartsCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { VerifyError } from "../lib/errors.ts";
import {
  backupArchive,
  listBackups,
  offsiteBackup,
  offsiteCopy,
  offsiteFetch,
  offsiteList,
  offsitePrune,
  offsiteVerify,
  prune,
  s3Client,
  s3MakeBucket,
  s3RemoveBucket,
  stamp,
  verifyArchive,
  type OffsiteOptions,
} from "../lib/mod.ts";
import { makeSampleTree } from "../tasks/drills/fixtures.ts";
import { needLab } from "../tasks/drills/lab.ts";
import { cleanupTmp, freePort, testContext, tmp } from "./helpers.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const lab = needLab("ceph", "sshd");
testContext();
const s3creds = { endpoint: lab.LAB_S3_ENDPOINT, region: lab.LAB_S3_REGION || "us-east-1", accessKey: lab.LAB_S3_ACCESS_KEY, secretKey: lab.LAB_S3_SECRET_KEY };
const opts: OffsiteOptions = { s3: s3creds, ssh: { identityFile: lab.LAB_SSH_KEY, knownHostsFile: lab.LAB_SSH_KNOWN_HOSTS }, progress: false };
const s3 = s3Client(s3creds);
const sdk = await s3.sdk();
const bucket = `lbo-${process.pid}`;
await s3MakeBucket(s3, bucket);

let n = 0;
/** One destination of each kind, fresh: [s3 URL, ssh URL, local dir], and where each one's files are. */
function dests(): { s3: string; ssh: string; local: string; sshDir: string; prefix: string } {
  const id = ++n;
  const sshDir = join(tmp("lifeboat-offsite-ssh-"), "copies dir");
  return {
    s3: `s3://${bucket}/run ${id}`,
    prefix: `run ${id}/`,
    ssh: `ssh://root@${lab.LAB_SSH_HOST}:${lab.LAB_SSH_PORT}${encodeURI(sshDir)}`,
    sshDir,
    local: join(tmp("lifeboat-offsite-local-"), "mnt"),
  };
}

/** A real archive of the sample tree (pack, verify, sidecars), as a recipe makes it. */
async function realArchive(dir: string, at = new Date()): Promise<string> {
  const src = tmp("lifeboat-offsite-src-");
  makeSampleTree(src, { bigBytes: 3 * 1024 * 1024 });
  return (await backupArchive(src, { folder: dir, name: "deis-backup", startedAt: at, meta: { test: true } })).path;
}

/** An archive-shaped file of random bytes with its .sha256 and .info.json, taken at `at`. */
function fakeArchive(dir: string, at: Date, bytes = 1024): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `deis-backup-${stamp(at)}.tar.gz`);
  const fd = openSync(path, "w", 0o600);
  const hash = createHash("sha256");
  for (let left = bytes; left > 0; ) {
    const chunk = randomBytes(Math.min(left, 8 << 20));
    hash.update(chunk);
    writeSync(fd, chunk);
    left -= chunk.length;
  }
  closeSync(fd);
  writeFileSync(`${path}.sha256`, `${hash.digest("hex")}  ${basename(path)}\n`);
  writeFileSync(`${path}.info.json`, JSON.stringify({ recipe: "deis-backup", startedAt: at.toISOString() }) + "\n");
  return path;
}

function sha(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

/** Flips one byte in place: same size, other bytes. */
function damage(path: string, at = 100): void {
  const buf = readFileSync(path);
  buf[at] ^= 0xff;
  writeFileSync(path, buf);
}

async function headS3(key: string): Promise<boolean> {
  try {
    await sdk.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return true;
  } catch {
    return false;
  }
}

test("a copy to S3, to an ssh host and to a local dir comes back through offsiteFetch byte for byte, and is verified there", async () => {
  const home = tmp();
  const archive = await realArchive(join(home, "backups"));
  const d = dests();
  for (const dest of [d.s3, d.ssh, d.local]) {
    const r = await offsiteCopy(archive, dest, opts);
    assert.ok(r.verified && !r.skipped, `${dest}: copied and verified`);
    const [copy, ...more] = await offsiteList(dest, opts);
    assert.is(more.length, 0);
    assert.is(copy.name, basename(archive));
    assert.is(copy.verified, "passed", `${dest}: listed as verified`);
    assert.is(copy.size, statSync(archive).size);
    assert.is(copy.createdAt.toISOString(), listBackups(join(home, "backups"))[0].createdAt.toISOString());
    const back = join(home, `fetched-${dest.slice(0, 3).replace(/\W/g, "")}`);
    const path = await offsiteFetch(copy.path, back, opts);
    assert.is(sha(path), sha(archive), `${dest}: same bytes back`);
    assert.is(readFileSync(`${path}.sha256`, "utf8"), readFileSync(`${archive}.sha256`, "utf8"));
    assert.ok(existsSync(`${path}.info.json`));
    await verifyArchive(path);
    assert.ok((await offsiteCopy(archive, dest, opts)).skipped, `${dest}: a verified copy is not sent again`);
  }
  // The files on disk: archive 0600, no partial names left.
  for (const dir of [d.sshDir, d.local]) {
    assert.equal(readdirSync(dir).sort(), [basename(archive), ...[".info.json", ".sha256", ".verified"].map((s) => basename(archive) + s)].sort());
    assert.is(statSync(join(dir, basename(archive))).mode & 0o777, 0o600);
  }
});

test("a corrupted off-site copy fails verification, is not marked verified, cannot be fetched, and the next copy repairs it", async () => {
  const home = tmp();
  const archive = await realArchive(join(home, "backups"));
  const name = basename(archive);
  const d = dests();
  for (const dest of [d.s3, d.ssh, d.local]) await offsiteCopy(archive, dest, opts);
  const bad = readFileSync(archive);
  bad[200] ^= 0xff;
  await sdk.send(new PutObjectCommand({ Bucket: bucket, Key: d.prefix + name, Body: bad }));
  damage(join(d.sshDir, name), 200);
  damage(join(d.local, name), 200);
  for (const dest of [d.s3, d.ssh, d.local]) {
    const url = (await offsiteList(dest, opts))[0].path;
    try {
      await offsiteVerify(url, opts);
      assert.unreachable(`${dest}: verify passed a damaged copy`);
    } catch (e) {
      assert.instance(e, VerifyError, `${dest}: ${(e as Error).message}`);
      assert.match((e as Error).message, /sha256/);
    }
    assert.is((await offsiteList(dest, opts))[0].verified, "failed", `${dest}: recorded as failed`);
    const into = join(home, `fetch-${n}-${dest.length}`);
    try {
      await offsiteFetch(url, into, opts);
      assert.unreachable(`${dest}: fetched a damaged copy`);
    } catch (e) {
      assert.instance(e, VerifyError);
    }
    assert.not.ok(existsSync(join(into, name)), `${dest}: nothing kept under the archive's name`);
    const again = await offsiteCopy(archive, dest, opts);
    assert.ok(again.verified && !again.skipped, `${dest}: copied again`);
    assert.is((await offsiteVerify(url, opts)).sha256, sha(archive));
    assert.is((await offsiteList(dest, opts))[0].verified, "passed");
  }
});

test("a local archive that differs from its .sha256 is not copied anywhere", async () => {
  const home = tmp();
  const archive = await realArchive(join(home, "backups"));
  damage(archive, 300);
  const d = dests();
  for (const dest of [d.s3, d.ssh, d.local]) {
    try {
      await offsiteCopy(archive, dest, opts);
      assert.unreachable("copied a damaged archive");
    } catch (e) {
      assert.instance(e, VerifyError);
      assert.match((e as Error).message, /local archive is damaged/);
    }
    assert.is((await offsiteList(dest, opts)).length, 0, `${dest}: nothing there`);
  }
});

/** Runs `offsite:copy ARCHIVE DEST` as a child and SIGKILLs it once `started()` says bytes are moving. */
async function killMidCopy(archive: string, dest: string, started: () => Promise<boolean>): Promise<void> {
  const env = {
    ...process.env,
    NO_COLOR: "1",
    LIFEBOAT_OFFSITE_S3_ENDPOINT: s3creds.endpoint,
    LIFEBOAT_OFFSITE_S3_REGION: s3creds.region,
    LIFEBOAT_OFFSITE_S3_ACCESS_KEY: s3creds.accessKey,
    LIFEBOAT_OFFSITE_S3_SECRET_KEY: s3creds.secretKey,
    LIFEBOAT_OFFSITE_SSH_IDENTITY_FILE: lab.LAB_SSH_KEY,
    LIFEBOAT_OFFSITE_SSH_KNOWN_HOSTS: lab.LAB_SSH_KNOWN_HOSTS,
    LIFEBOAT_STATE_DIR: tmp(),
  };
  const child = spawn(process.execPath, ["--import=tsx", join(ROOT, "tasks/run.ts"), "offsite:copy", archive, dest], { cwd: ROOT, env, stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  child.stderr!.on("data", (c) => (err += c));
  const exited = new Promise<number | null>((ok) => child.on("exit", (code) => ok(code)));
  let done: number | null | undefined;
  void exited.then((c) => (done = c));
  while (done === undefined && !(await started())) await new Promise((r) => setTimeout(r, 50));
  assert.is(done, undefined, `the copy ended before it could be killed: ${err}`);
  child.kill("SIGKILL");
  await exited;
}

function partialSize(dir: string): number {
  try {
    return readdirSync(dir).filter((f) => f.startsWith(".partial-")).reduce((n, f) => n + statSync(join(dir, f)).size, 0);
  } catch {
    return 0;
  }
}

test("a copy killed mid-transfer leaves nothing under the final name, and the next run completes", async () => {
  const home = tmp();
  const archive = fakeArchive(join(home, "backups"), new Date(), 300 * 1024 * 1024);
  const name = basename(archive);
  const d = dests();
  const key = d.prefix + name;

  await killMidCopy(archive, d.s3, async () => {
    const ups = (await sdk.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: key }))).Uploads ?? [];
    if (!ups.length) return false;
    const parts = await sdk.send(new ListPartsCommand({ Bucket: bucket, Key: key, UploadId: ups[0].UploadId })).catch(() => ({ Parts: [] }));
    return (parts.Parts ?? []).length > 0;
  });
  assert.not.ok(await headS3(key), "no object under the final key");
  assert.not.ok(await headS3(`${key}.sha256`), "no sidecar either");
  assert.is((await sdk.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: key }))).Uploads?.length ?? 0, 1, "the killed run's upload is left over");

  await killMidCopy(archive, d.ssh, async () => partialSize(d.sshDir) > 16 << 20);
  assert.not.ok(existsSync(join(d.sshDir, name)), "no file under the final name on the ssh host");
  // ssh reads the archive itself, not through lifeboat: it must die with the killed lifeboat, not finish alone
  let left = "";
  for (let i = 0; i < 50 && (left = spawnSync("pgrep", ["-a", "-f", `.partial-${name}`], { encoding: "utf8" }).stdout.trim()); i++) await new Promise((r) => setTimeout(r, 100));
  assert.is(left, "", "no ssh (nor its remote shell) still copying after the kill");
  assert.ok(partialSize(d.sshDir) < statSync(archive).size, "the partial copy was cut short");
  await killMidCopy(archive, d.local, async () => partialSize(d.local) > 16 << 20);
  assert.not.ok(existsSync(join(d.local, name)), "no file under the final name in the local dir");

  for (const dest of [d.s3, d.ssh, d.local]) {
    const r = await offsiteCopy(archive, dest, opts);
    assert.ok(r.verified && !r.skipped, `${dest}: the next run completes`);
    assert.is((await offsiteList(dest, opts))[0].verified, "passed");
  }
  assert.is((await sdk.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: key }))).Uploads?.length ?? 0, 0, "the left-over upload was aborted");
  assert.is(partialSize(d.local), 0, "the local dir's partial file was removed");
  assert.is(readdirSync(d.sshDir).filter((f) => f.startsWith(".partial-")).length, 0, "the ssh host's partial file was removed");
  assert.is(sha(archive), readFileSync(`${archive}.sha256`, "utf8").split(" ")[0], "the local archive is untouched");
});

test("off-site retention keeps exactly what archive:prune keeps, and always the newest verified copy", async () => {
  const home = tmp();
  const local = join(home, "backups");
  // 12 backups three days apart from 2025-11-01, then four on the last day: 09:00 is the newest
  // that will stay verified; 10:00, 11:00, 12:00 lose their .verified at every destination.
  const times = Array.from({ length: 12 }, (_, i) => new Date(Date.UTC(2025, 10, 1 + 3 * i, 6)));
  const last = times[times.length - 1];
  for (const h of [9, 10, 11, 12]) times.push(new Date(Date.UTC(last.getUTCFullYear(), last.getUTCMonth(), last.getUTCDate() + 1, h)));
  const archives = times.map((t) => fakeArchive(local, t));
  const d = dests();
  for (const dest of [d.s3, d.ssh, d.local]) for (const a of archives) await offsiteCopy(archive(a), dest, opts);
  function archive(a: string) {
    return a;
  }
  const unverified = archives.slice(-3).map((a) => basename(a));
  for (const nm of unverified) {
    await sdk.send(new DeleteObjectCommand({ Bucket: bucket, Key: `${d.prefix}${nm}.verified` }));
    rmSync(join(d.sshDir, `${nm}.verified`));
    rmSync(join(d.local, `${nm}.verified`));
  }
  const policy = { keepLast: 2, keepDaily: 3, keepWeekly: 3, keepMonthly: 2 };
  const newestVerified = basename(archives[archives.length - 4]);
  // archive:prune's own dry run on the local destination, a backups folder like any other.
  const expected = prune(d.local, { ...policy, confirmed: false });
  const keep = expected.keep.map((k) => k.entry.name).sort();
  assert.ok(expected.keep.find((k) => k.entry.name === newestVerified)?.reasons.includes("newest verified"), "the newest verified copy is kept for that reason alone");
  assert.ok(expected.remove.length >= 5, "the policy removes something");
  for (const dest of [d.s3, d.ssh, d.local]) {
    const dry = await offsitePrune(dest, policy, opts);
    assert.equal(dry.keep.map((k) => k.entry.name).sort(), keep, `${dest}: same plan as archive:prune`);
    assert.is((await offsiteList(dest, opts)).length, archives.length, `${dest}: without yes nothing is removed`);
    await offsitePrune(dest, policy, { ...opts, yes: true });
    assert.equal((await offsiteList(dest, opts)).map((c) => c.name).sort(), keep, `${dest}: exactly the kept copies remain`);
  }
  assert.equal(readdirSync(d.sshDir).filter((f) => !keep.some((k) => f.startsWith(k))), [], "no sidecar of a removed copy is left on the ssh host");
});

test("keep-local removes old local archives only once every destination holds a verified copy of them", async () => {
  const home = tmp();
  const local = join(home, "backups");
  const [a1, a2] = [fakeArchive(local, new Date(Date.UTC(2026, 0, 1))), fakeArchive(local, new Date(Date.UTC(2026, 0, 2)))];
  const d = dests();
  await offsiteCopy(a1, d.s3, opts); // a1 never reaches the ssh destination
  await offsiteCopy(a2, d.s3, opts);
  const newest = fakeArchive(local, new Date(Date.UTC(2026, 0, 3)));
  await offsiteCopy(a2, d.ssh, opts);
  const r = await offsiteBackup(newest, { ...opts, to: [d.s3, d.ssh], keepLocal: 1 });
  assert.equal(r.removedLocal, [basename(a2)]);
  assert.equal(listBackups(local).map((e) => e.name).sort(), [basename(a1), basename(newest)].sort(), "a1 is kept: no copy of it over ssh");
});

test("status checks off-site copies too: a destination with a fresh verified copy passes, one without the recipe fails with exit 6", async () => {
  const d = dests();
  const archive = await realArchive(tmp());
  await offsiteCopy(archive, d.s3, opts);
  await offsiteCopy(archive, d.ssh, opts);
  const env = {
    ...process.env, NO_COLOR: "1", LIFEBOAT_STATE_DIR: tmp(),
    LIFEBOAT_OFFSITE_S3_ENDPOINT: s3creds.endpoint, LIFEBOAT_OFFSITE_S3_REGION: s3creds.region,
    LIFEBOAT_OFFSITE_S3_ACCESS_KEY: s3creds.accessKey, LIFEBOAT_OFFSITE_S3_SECRET_KEY: s3creds.secretKey,
    LIFEBOAT_OFFSITE_SSH_IDENTITY_FILE: lab.LAB_SSH_KEY, LIFEBOAT_OFFSITE_SSH_KNOWN_HOSTS: lab.LAB_SSH_KNOWN_HOSTS,
  };
  const status = (args: string[]) => spawnSync(process.execPath, ["--import=tsx", join(ROOT, "tasks/run.ts"), "status", ...args], { cwd: ROOT, env, encoding: "utf8" });
  const ok = status([d.s3, d.ssh, "--max-age", "1h"]);
  assert.is(ok.status, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /deis-backup/);
  const missing = status([d.s3, "--recipe", "hoss-backup"]);
  assert.is(missing.status, 6, missing.stdout + missing.stderr);
  assert.not.ok((missing.stdout + missing.stderr).includes(s3creds.secretKey), "the key is not printed");
});

test("an unreachable remote is named in the error, and no local archive is touched", async () => {
  const home = tmp();
  const local = join(home, "backups");
  const old = fakeArchive(local, new Date(Date.UTC(2026, 0, 1)));
  const archive = fakeArchive(local, new Date(Date.UTC(2026, 0, 2)));
  const before = readdirSync(local).sort();
  const port = await freePort();
  const cases = [
    { dest: `s3://${bucket}/x`, o: { ...opts, s3: { ...s3creds, endpoint: `http://127.0.0.1:${port}` }, attempts: 1 }, names: `127.0.0.1:${port}` },
    { dest: `ssh://root@127.0.0.1:${port}/srv/offsite`, o: opts, names: `127.0.0.1:${port}` },
  ];
  for (const c of cases) {
    try {
      await offsiteBackup(archive, { ...c.o, to: [c.dest], keepLocal: 1 });
      assert.unreachable("copied to a remote that is not there");
    } catch (e) {
      const msg = (e as Error).message;
      assert.ok(msg.includes(c.names), `names the remote: ${msg}`);
      assert.match((e as { hint?: string }).hint ?? "", /local archive .* is kept/);
    }
    assert.equal(readdirSync(local).sort(), before, "every local archive and sidecar is still there");
    assert.is(sha(old), readFileSync(`${old}.sha256`, "utf8").split(" ")[0]);
  }
});

test("an ssh remote whose disk is full fails naming it and 'no space left', keeps nothing partial there, and keeps every local archive", async () => {
  const home = tmp();
  const local = join(home, "backups");
  const archive = fakeArchive(local, new Date(Date.UTC(2026, 0, 3)), 3 << 20);
  const before = readdirSync(local).sort();
  const disk = join(tmp("lifeboat-offsite-full-"), "disk");
  mkdirSync(disk);
  const m = spawnSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", disk]);
  if (m.status !== 0) throw new Error(`cannot mount a tmpfs: ${m.stderr}`);
  try {
    await offsiteBackup(archive, { ...opts, to: [`ssh://root@${lab.LAB_SSH_HOST}:${lab.LAB_SSH_PORT}${disk}`], keepLocal: 1 });
    assert.unreachable("copied 3 MiB onto a 1 MiB disk");
  } catch (e) {
    const msg = (e as Error).message;
    assert.ok(msg.includes(lab.LAB_SSH_HOST), `names the remote: ${msg}`);
    assert.match(msg, /no space left/i, "says the disk is full");
    assert.equal(readdirSync(disk), [], "no partial file is left on the remote");
  } finally {
    spawnSync("umount", [disk]);
  }
  assert.equal(readdirSync(local).sort(), before, "every local archive and sidecar is still there");
});

test.after(async () => {
  await s3RemoveBucket(s3, bucket, { purge: true }).catch(() => {});
  s3.destroy();
  cleanupTmp();
});

test.run();
