// A disk that fills: each helper that writes a result locally (sshTar, sshGet, pgDumpAll,
// s3Sync downloading) fails with a clear error on a full filesystem and leaves no partial
// or temp file behind (s3Sync keeps objects that arrived whole). The "disk" is a 1 MiB tmpfs.
// needs: sshd pg ceph
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { exec, pgDumpAll, s3Client, s3MakeBucket, s3RemoveBucket, s3Sync, sealTreeToFile, sshGet, sshTar, sshUntar, unsealTreeTo } from "../lib/mod.ts";
import { cleanupTmp, testContext, tmp } from "./helpers.ts";
import { seededBytes } from "../tasks/drills/fixtures.ts";
import { needLab } from "../tasks/drills/lab.ts";

const lab = needLab("sshd", "pg", "ceph");
let disk = "";

test.before(() => {
  disk = join(tmp(), "full");
  mkdirSync(disk);
  const r = spawnSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", disk]);
  if (r.status !== 0) throw new Error(`cannot mount a tmpfs for the full-disk tests: ${r.stderr}`);
});

test.after(() => {
  spawnSync("umount", [disk]);
  cleanupTmp();
});

async function failsCleanly(what: string, p: Promise<unknown>, mayKeep: (name: string) => boolean = () => false): Promise<void> {
  try {
    await p;
  } catch (e) {
    assert.match((e as Error).message, /no space left|ENOSPC/i, `${what}: the error says the disk is full: ${(e as Error).message}`);
    assert.equal(readdirSync(disk).filter((n) => !mayKeep(n)), [], `${what}: nothing but complete results is left on the full disk`);
    return;
  }
  assert.unreachable(`${what} succeeded on a 1 MiB disk`);
}

test("sshTar onto a full disk fails with 'no space left' and leaves no file", async () => {
  testContext();
  const src = tmp();
  writeFileSync(join(src, "big.bin"), seededBytes("ssh-full", 4 << 20));
  const target = { host: lab.LAB_SSH_HOST, port: Number(lab.LAB_SSH_PORT), user: lab.LAB_SSH_USER, identityFile: lab.LAB_SSH_KEY, knownHostsFile: lab.LAB_SSH_KNOWN_HOSTS };
  await failsCleanly("sshTar", sshTar(target, src, join(disk, "store.tar")));
});

test("sshUntar onto a full disk fails with 'no space left' and leaves the folder's old files whole and nothing else", async () => {
  testContext();
  const src = tmp();
  writeFileSync(join(src, "old.txt"), "replaced only by a whole restore");
  writeFileSync(join(src, "big.bin"), seededBytes("untar-full", 4 << 20));
  const target = { host: lab.LAB_SSH_HOST, port: Number(lab.LAB_SSH_PORT), user: lab.LAB_SSH_USER, identityFile: lab.LAB_SSH_KEY, knownHostsFile: lab.LAB_SSH_KNOWN_HOSTS };
  const archive = join(tmp(), "store.tar");
  await sshTar(target, src, archive);
  writeFileSync(join(disk, "old.txt"), "the old one");
  try {
    await failsCleanly("sshUntar", sshUntar(target, archive, disk), (n) => n === "old.txt");
    assert.is(readFileSync(join(disk, "old.txt"), "utf8"), "the old one");
  } finally {
    rmSync(join(disk, "old.txt"), { force: true });
  }
});

test("sshGet onto a full disk fails with 'no space left on FOLDER' and leaves no file (ssh itself exits 0)", async () => {
  testContext();
  const src = tmp();
  writeFileSync(join(src, "big.tar.gz"), seededBytes("get-full", 4 << 20));
  const target = { host: lab.LAB_SSH_HOST, port: Number(lab.LAB_SSH_PORT), user: lab.LAB_SSH_USER, identityFile: lab.LAB_SSH_KEY, knownHostsFile: lab.LAB_SSH_KNOWN_HOSTS };
  await failsCleanly("sshGet", sshGet(target, join(src, "big.tar.gz"), join(disk, "big.tar.gz"), { readOnly: true }));
  try {
    await sshGet(target, join(src, "big.tar.gz"), join(disk, "big.tar.gz"));
  } catch (e) {
    assert.match((e as Error).message, `no space left on ${disk} (`);
  }
});

test("sshGet of a small file (a .sha1) onto a disk already full fails with 'no space left', not an empty file", async () => {
  testContext();
  const src = tmp();
  const line = `${"a".repeat(40)}  big.tar.gz\n`;
  writeFileSync(join(src, "big.tar.gz.sha1"), line);
  const target = { host: lab.LAB_SSH_HOST, port: Number(lab.LAB_SSH_PORT), user: lab.LAB_SSH_USER, identityFile: lab.LAB_SSH_KEY, knownHostsFile: lab.LAB_SSH_KNOWN_HOSTS };
  // the copy works while there is room
  await sshGet(target, join(src, "big.tar.gz.sha1"), join(disk, "small.sha1"));
  assert.is(readFileSync(join(disk, "small.sha1"), "utf8"), line);
  rmSync(join(disk, "small.sha1"));
  const filler = join(disk, "filler.bin");
  try {
    writeFileSync(filler, seededBytes("filler", 2 << 20));
  } catch { /* ENOSPC: the disk is full now */ }
  try {
    await failsCleanly("sshGet .sha1", sshGet(target, join(src, "big.tar.gz.sha1"), join(disk, "big.tar.gz.sha1"), { readOnly: true }), (n) => n === "filler.bin");
  } finally {
    rmSync(filler, { force: true });
  }
});

test("exec with stdout to a file on a full disk fails with 'no space left on FOLDER' and leaves no file", async () => {
  testContext();
  await failsCleanly("exec", exec(["head", "-c", String(4 << 20), "/dev/zero"], { stdout: { file: join(disk, "zeros.bin") } }));
  try {
    await exec(["head", "-c", String(4 << 20), "/dev/zero"], { stdout: { file: join(disk, "zeros.bin") } });
  } catch (e) {
    assert.match((e as Error).message, `no space left on ${disk} (`);
  }
});

test("unsealTreeTo (the HCoop databases archive) onto a full disk fails with 'no space left' and leaves nothing, however often it is run", async () => {
  testContext();
  const src = tmp();
  writeFileSync(join(src, "shop.dump"), seededBytes("unseal-full", 3 << 20));
  const seal = { kind: "none" } as const;
  const f = await sealTreeToFile(src, join(tmp(), "2026.11.29-databases.tar.gz"), { seal });
  for (let i = 0; i < 3; i++) await failsCleanly(`unsealTreeTo #${i + 1}`, unsealTreeTo(f.path, join(disk, "2026.11.29-db"), { seal, sha256: f.sha256, bytes: f.bytes }));
});

test("pgDumpAll onto a full disk fails with 'no space left' and leaves no file", async () => {
  testContext();
  const where = { host: lab.LAB_PG_HOST, port: Number(lab.LAB_PG_PORT), user: lab.LAB_PG_USER, passwordFile: lab.LAB_PG_PASSWORD_FILE };
  await failsCleanly("pgDumpAll", pgDumpAll(where, join(disk, "dump_all.sql")));
});

test("s3Sync downloading onto a full disk fails with 'no space left' and leaves no file", async () => {
  testContext();
  const client = s3Client({ endpoint: lab.LAB_S3_ENDPOINT, accessKey: lab.LAB_S3_ACCESS_KEY, secretKey: lab.LAB_S3_SECRET_KEY, region: lab.LAB_S3_REGION });
  const bucket = `lbt-full-${process.pid}`;
  const src = tmp();
  for (let i = 0; i < 3; i++) writeFileSync(join(src, `obj-${i}.bin`), seededBytes(`s3-full-${i}`, 1 << 20));
  await s3MakeBucket(client, bucket);
  try {
    await s3Sync(src, `s3://${bucket}`, { client });
    // Objects that arrived whole may stay (the next sync goes on from them); no temp or partial file may.
    const whole = (n: string) => /^obj-\d\.bin$/.test(n) && statSync(join(disk, n)).size === 1 << 20;
    await failsCleanly("s3Sync", s3Sync(`s3://${bucket}`, disk, { client }), whole);
  } finally {
    await s3RemoveBucket(client, bucket, { purge: true });
  }
});

test.run();
