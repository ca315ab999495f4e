// needs: ceph sshd
// xenon-backup's ZIP and STREAM archives off-site (offsite.to, as every backup recipe): copied to the
// lab's RGW, its sshd and a local path, verified there, offsite.keep-local applied; xenon-restore takes
// an s3:// or ssh:// archive directly (fetched, checked, restored onto a fresh stand-in host); an
// unreachable destination fails the run, names the remote, and keeps the local archive.
// Run: bash test/run.sh test/xenon-offsite.test.ts
import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, readdirSync } from "node:fs";
import { basename, join } from "node:path";
import { offsiteList, s3Client, s3MakeBucket, s3RemoveBucket } from "../lib/mod.ts";
import { needLab } from "../tasks/drills/lab.ts";
import { runRecipe } from "../tasks/drills/hoss.ts";
import { diffDocuments, exampleDocuments, hostFlags, newestArchive, seedExamples, startXenonHost, stopXenonHosts, xenonSite } from "../tasks/drills/xenon.ts";
import { cleanupTmp, testContext, tmp } from "./helpers.ts";

const lab = needLab("ceph", "sshd");
testContext();
const s3creds = { endpoint: lab.LAB_S3_ENDPOINT, region: lab.LAB_S3_REGION || "us-east-1", accessKey: lab.LAB_S3_ACCESS_KEY, secretKey: lab.LAB_S3_SECRET_KEY };
const s3 = s3Client(s3creds);
const bucket = `lbxenon-${process.pid}`;
const env = {
  LIFEBOAT_OFFSITE_S3_ENDPOINT: s3creds.endpoint, LIFEBOAT_OFFSITE_S3_REGION: s3creds.region,
  LIFEBOAT_OFFSITE_S3_ACCESS_KEY: s3creds.accessKey, LIFEBOAT_OFFSITE_S3_SECRET_KEY: s3creds.secretKey,
  LIFEBOAT_OFFSITE_SSH_IDENTITY_FILE: lab.LAB_SSH_KEY, LIFEBOAT_OFFSITE_SSH_KNOWN_HOSTS: lab.LAB_SSH_KNOWN_HOSTS,
};
const opts = { s3: s3creds, ssh: { identityFile: lab.LAB_SSH_KEY, knownHostsFile: lab.LAB_SSH_KNOWN_HOSTS } };
test.before(async () => void (await s3MakeBucket(s3, bucket)));
test.after(async () => {
  await stopXenonHosts();
  await s3RemoveBucket(s3, bucket, { purge: true });
  s3.destroy();
  cleanupTmp();
});

const archivesIn = (dir: string) => (existsSync(dir) ? readdirSync(dir).filter((f) => /^xenon-backup-.*\.tar\.gz$/.test(f)).sort() : []);

test("ZIP: each archive is copied to s3://, ssh:// and a path, verified; keep-local 1 keeps the newest; the s3:// and ssh:// copies restore onto fresh hosts", async () => {
  const work = tmp();
  const site = xenonSite(work);
  const dests = [`s3://${bucket}/xenon zip`, `ssh://root@${lab.LAB_SSH_HOST}:${lab.LAB_SSH_PORT}${encodeURI(join(tmp(), "vault $(x)"))}`, join(tmp(), "mount")];
  const a = await startXenonHost("node-a");
  await seedExamples(a.url, Array.from({ length: 25 }, (_, i) => `z-${i}`), { blobBytes: 2048 });
  const flags = [...hostFlags(a), "--config", site, ...dests.map((d) => `--offsite.to=${d}`), "--offsite.keep-local=1", "--yes"];
  const first = await runRecipe("xenon-backup", flags, { env });
  assert.is(first.code, 0, first.output);
  await seedExamples(a.url, ["z-late"]);
  const want = await exampleDocuments(a.url);
  const second = await runRecipe("xenon-backup", flags, { env });
  assert.is(second.code, 0, second.output);
  assert.is((second.output.match(/^.*off-site +\S.*verified: .*$/gm) ?? []).length, 3, second.output);
  assert.not.match(first.output + second.output, s3creds.secretKey);

  const newest = basename(newestArchive(work));
  assert.equal(archivesIn(join(work, "backups")), [newest], "keep-local 1: only the newest stays here");
  for (const d of dests) {
    const copies = await offsiteList(d, opts);
    assert.is(copies.length, 2, `${d}: ${JSON.stringify(copies)}`);
    assert.equal(copies.map((c) => c.verified), ["passed", "passed"], d);
  }

  for (const d of dests.slice(0, 2)) {
    const fresh = await startXenonHost("node-a");
    const r = await runRecipe("xenon-restore", [`${d}/${newest}`, ...hostFlags(fresh, true), "--config", site, "--yes"], { env });
    assert.is(r.code, 0, r.output);
    assert.match(r.output, /fetch the archive from/);
    assert.equal(diffDocuments(want, await exampleDocuments(fresh.url)), [], d);
  }
});

test("STREAM: an unreachable ssh:// destination fails the run naming it; the path copy is verified and the local archive stays", async () => {
  const work = tmp();
  const site = xenonSite(work);
  const mount = join(tmp(), "mount");
  const a = await startXenonHost("node-b");
  await seedExamples(a.url, ["s-1", "s-2"]);
  const r = await runRecipe("xenon-backup", [...hostFlags(a), "--config", site, "--backup.type=STREAM", `--offsite.to=${mount}`, "--offsite.to=ssh://root@127.0.0.1:9/srv/nowhere", "--offsite.keep-local=1", "--yes"], { env });
  assert.is.not(r.code, 0, r.output);
  assert.match(r.output, /127\.0\.0\.1:9|127\.0\.0\.1 port 9/);
  assert.match(r.output, /local archive .* is kept/);
  const local = archivesIn(join(work, "backups"));
  assert.is(local.length, 1, r.output);
  const copies = await offsiteList(mount, opts);
  assert.equal(copies.map((c) => [c.name, c.verified]), [[local[0], "passed"]]);
});

test.run();
