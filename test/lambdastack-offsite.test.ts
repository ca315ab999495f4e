// LambdaStack recovery from an off-site destination (--from) on the lab's Debian hosts and the
// lab's Ceph RGW: a backup with offsite.to=s3://…, the repository host's copies wiped, the
// components destroyed, recovered from the RGW alone and compared; a damaged off-site copy is
// refused (exit 3) before anything is cleared; a host down during the recovery fails only its
// component (the others are recovered in the same fan-out) and --resume finishes it. Three components (load_balancer, monitoring,
// postgresql) keep it short; test/lambdastack.test.ts covers every component from the repository host.
// Run: bash test/run.sh test/lambdastack-offsite.test.ts
// needs: docker lshosts ceph
import { test } from "uvu";
import * as assert from "uvu/assert";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { s3Client, s3MakeBucket, s3RemoveBucket, offsiteFetch } from "../lib/mod.ts";
import { runRecipe } from "../tasks/drills/hoss.ts";
import { needLab } from "../tasks/drills/lab.ts";
import { capture, destroy, differences, hostOf, LAYOUT_A as DRILL_LAYOUT, lastError, listTarget, onHost, provision, rmHosts, seed, seedWindow, TARGET, upHosts, waitHost, withoutStandby, writeInventory, writeSite } from "../tasks/drills/lambdastack.ts";
import { testContext } from "./helpers.ts";

const lab = needLab("ceph", "lshosts");
testContext();
const s3creds = { endpoint: lab.LAB_S3_ENDPOINT, region: lab.LAB_S3_REGION || "us-east-1", accessKey: lab.LAB_S3_ACCESS_KEY, secretKey: lab.LAB_S3_SECRET_KEY };
const env = { LIFEBOAT_OFFSITE_S3_ENDPOINT: s3creds.endpoint, LIFEBOAT_OFFSITE_S3_REGION: s3creds.region, LIFEBOAT_OFFSITE_S3_ACCESS_KEY: s3creds.accessKey, LIFEBOAT_OFFSITE_S3_SECRET_KEY: s3creds.secretKey };
const s3 = s3Client(s3creds);
const bucket = `lbls-${process.pid}`;
const dest = `s3://${bucket}/lambda stack`;
const work = mkdtempSync(join(tmpdir(), "lifeboat-ls-offsite-"));
const COMPONENTS = "load_balancer,monitoring,postgresql";
/** The compared things of those three components (capture's keys). */
const MINE = /^(prometheus|alertmanager|postgresql|files: (haproxy|prometheus|grafana))/;
const w = seedWindow();
// the drill's hosts without its PostgreSQL standby: with ls-2 (the primary) down, a standby that
// answers makes the recovery refuse up front (which host to recover onto is not clear), where this
// test wants the one item to fail in the fan-out
const LAYOUT_A = withoutStandby(DRILL_LAYOUT);

test.before(async () => void (await s3MakeBucket(s3, bucket)));
test.after(async () => {
  await s3RemoveBucket(s3, bucket, { purge: true });
  s3.destroy();
  rmSync(work, { recursive: true, force: true });
});

test("--from s3://…: with the repository host's copies gone, the components come back from the off-site copies alone; a damaged copy is refused before anything is cleared", async () => {
  rmHosts(Object.keys(LAYOUT_A));
  upHosts(Object.keys(LAYOUT_A));
  provision(LAYOUT_A);
  seed(LAYOUT_A, w);
  const before = capture(LAYOUT_A, w);
  const build = writeInventory(join(work, "build"), LAYOUT_A);
  const siteB = writeSite(join(work, "backup.yml"), work, "backup");
  const siteR = writeSite(join(work, "recovery.yml"), work, "recovery");

  const b = await runRecipe("lambdastack-backup", ["-b", build, "-t", TARGET, "-f", siteB, "-c", COMPONENTS, `--offsite.to=${dest}`], { env });
  assert.is(b.code, 0, b.output.slice(-3000));
  assert.not.match(b.output, s3creds.secretKey);
  const archives = listTarget().filter((n) => n.endsWith(".tar.gz"));
  assert.is(archives.length, 6, archives.join(", ")); // haproxy_etc, prometheus_snapshot, prometheus_etc, alertmanager_silences, grafana_data, postgresql
  onHost("ls-1", `rm -rf '${TARGET}' && mkdir -p '${TARGET}'`); // the repository host's copies are gone

  destroy(LAYOUT_A);
  assert.ok(differences(before, capture(LAYOUT_A, w)).filter((d) => MINE.test(d)).length >= 5, "the destroy changed the three components");
  const r = await runRecipe("lambdastack-recovery", ["-b", build, "-f", siteR, "-c", COMPONENTS, `--from=${dest}`, "--yes"], { env });
  assert.is(r.code, 0, r.output.slice(-3000));
  for (const a of archives) assert.match(r.output, `fetched s3://${bucket}/lambda stack/${a}`);
  assert.equal(listTarget(), [], "nothing was read from or written to the repository host");
  assert.equal(differences(before, capture(LAYOUT_A, w)).filter((d) => MINE.test(d)), []);

  // a damaged off-site copy (its .sha256 still the original's): exit 3, the haproxy dirs not cleared
  const haproxy = archives.find((a) => a.startsWith("haproxy_etc_"))!;
  const bytes = readFileSync(await offsiteFetch(`${dest}/${haproxy}`, join(work, "fetched"), { s3: s3creds, progress: false }));
  bytes[bytes.length >> 1] ^= 0xff;
  await (await s3.sdk()).send(new PutObjectCommand({ Bucket: bucket, Key: `lambda stack/${haproxy}`, Body: bytes }));
  const lb = hostOf(LAYOUT_A, "haproxy");
  onHost(lb, "touch /etc/haproxy/not-in-the-backup.marker");
  const bad = await runRecipe("lambdastack-recovery", ["-b", build, "-f", siteR, "-c", "load_balancer,postgresql", `--from=${dest}`, "--yes"], { env });
  assert.is(bad.code, 3, bad.output.slice(-3000));
  assert.match(lastError(bad.output), /haproxy_etc_.*sha256.*damaged/);
  assert.is(spawnSync("docker", ["exec", lb, "test", "-e", "/etc/haproxy/not-in-the-backup.marker"]).status, 0, "the haproxy dir was not cleared");
  assert.match(bad.output, /confirm: recover load_balancer on \S+ +not run/);
  assert.match(bad.output, /recover load_balancer, postgresql \(.*\) +not run/);
  onHost(lb, "rm /etc/haproxy/not-in-the-backup.marker"); // the host and the copy as they were, for the next test
  bytes[bytes.length >> 1] ^= 0xff;
  await (await s3.sdk()).send(new PutObjectCommand({ Bucket: bucket, Key: `lambda stack/${haproxy}`, Body: bytes }));
});

test("recovery fans out across components: a host down fails only its item, the others are recovered, and --resume recovers just that one from the kept archives", async () => {
  const before = capture(LAYOUT_A, w);
  destroy(LAYOUT_A, COMPONENTS.split(","));
  const build = join(work, "build"), siteR = join(work, "recovery.yml");
  const args = ["-b", build, "-f", siteR, "-c", COMPONENTS, `--from=${dest}`, "--yes"];
  execFileSync("docker", ["stop", "-t", "2", "ls-2"], { stdio: "ignore" });
  let down;
  try {
    down = await runRecipe("lambdastack-recovery", args, { env });
  } finally {
    execFileSync("docker", ["start", "ls-2"], { stdio: "ignore" });
  }
  assert.is(down.code, 1, down.output.slice(-3000));
  assert.match(down.output, /1 of 3 failed: postgresql@ls-2/);
  assert.match(down.output, /load_balancer@ls-1: done [0-9]/);
  assert.match(down.output, /monitoring@ls-1: done [0-9]/);
  assert.match(down.output, /kept the verified archives in \S+ for --resume/);
  waitHost("ls-2", "postgresql");
  const resumed = await runRecipe("lambdastack-recovery", [...args, "--resume"], { env });
  assert.is(resumed.code, 0, resumed.output.slice(-3000));
  assert.match(resumed.output, /load_balancer@ls-1: done in an earlier run/);
  assert.match(resumed.output, /monitoring@ls-1: done in an earlier run/);
  assert.match(resumed.output, /postgresql@ls-2: done [0-9]/);
  assert.equal(differences(before, capture(LAYOUT_A, w)).filter((d) => MINE.test(d)), []);
});

test.run();
