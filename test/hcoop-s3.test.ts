// The HCoop remote repository on S3 (the lab's Ceph RGW), end to end on the lab's OpenAFS cell:
// hcoop-backup copies four simulated days there (two weekly chains; on the second Sunday user.s3b
// is skipped, so its Monday incremental still needs the first Sunday's full), hcoop-list --remote
// reads them back, hcoop-get fetches a file (verified) and refuses a damaged object by its sha256,
// hcoop-prune --yes applies retention by weekly chain at the gateway (the old full a kept
// incremental needs stays), and hcoop-restore into an empty backups.dir fetches that chain from
// S3 and brings the volume back byte for byte (restorevol trees compared).
// Run: bash test/run.sh test/hcoop-s3.test.ts
// needs: afs ceph
import { test } from "uvu";
import * as assert from "uvu/assert";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { compareTrees, mirrorList, s3Client, s3MakeBucket } from "../lib/mod.ts";
import { createOpenVolume, inCell, labCell, removeVolume, volumePath, volumeTree, writeFile } from "../tasks/drills/afs-cell.ts";
import { runRecipe } from "../tasks/drills/hoss.ts";
import { needLab } from "../tasks/drills/lab.ts";
import { cleanupTmp, testContext, tmp } from "./helpers.ts";

const lab = needLab("ceph");
testContext();
const s3creds = { endpoint: lab.LAB_S3_ENDPOINT, region: lab.LAB_S3_REGION || "us-east-1", accessKey: lab.LAB_S3_ACCESS_KEY, secretKey: lab.LAB_S3_SECRET_KEY };
const s3 = s3Client(s3creds);
const bucket = `lbh-${process.pid}`;
await s3MakeBucket(s3, bucket);
const to = `s3://${bucket}/hcoop repo`;
const VOLS = ["user.s3a", "user.s3b"];
// Sunday full, Wednesday incremental; Sunday full (user.s3b skipped that day), Monday incremental.
const DAYS = ["2026-11-15", "2026-11-18", "2026-11-22", "2026-11-23"];
const dir = tmp();
const backups = join(dir, "hcoop-backups");
const site = join(dir, "site.yaml");
const { cell, prefix } = labCell();
writeFileSync(join(dir, "key"), randomBytes(32).toString("hex"), { mode: 0o600 });
writeFileSync(join(dir, "s3.secret"), s3creds.secretKey, { mode: 0o600 });
writeFileSync(site, [
  `backups: { dir: ${JSON.stringify(backups)} }`,
  `afs: { server: ${cell.server}, partition: a, auth: noauth, prefix: ${JSON.stringify(prefix)} }`,
  "volumes: { prefixes: [user.s3], exclude: not-backed-up }",
  "schedule: { full-day: sun }",
  `state-dir: ${JSON.stringify(join(dir, "state"))}`,
  `encryption: { kind: ccrypt, key-file: ${JSON.stringify(join(dir, "key"))} }`,
  `offsite: { to: [${JSON.stringify(to)}], s3: { endpoint: ${JSON.stringify(s3creds.endpoint)}, region: ${s3creds.region}, access-key: ${JSON.stringify(s3creds.accessKey)}, secret-key-file: ${JSON.stringify(join(dir, "s3.secret"))} } }`,
  "",
].join("\n"));
const trees: Record<string, string> = {};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const run = async (name: string, args: string[]) => runRecipe(name, [...args, "--config", site]);
test.after(async () => {
  VOLS.forEach((v) => [v, `${v}.restored`].forEach(removeVolume));
  cleanupTmp();
  s3.destroy();
});

test("hcoop-backup copies each day to s3:// file by file (manifest last), each checked by its ETag, with NAME.sha256 beside it", async () => {
  VOLS.forEach((v) => [v, `${v}.restored`].forEach(removeVolume));
  VOLS.forEach(createOpenVolume);
  writeFile("user.s3a", "a.txt", "a day one\n");
  writeFile("user.s3b", "big.bin", randomBytes(1 << 20));
  writeFile("user.s3b", "sp ace 'q' -dash", "b day one\n");
  for (const [i, day] of DAYS.entries()) {
    if (i > 0) {
      writeFile("user.s3a", "a.txt", `a ${day}\n`);
      writeFile("user.s3b", `added ${day}`, `b ${day}\n`);
      if (i === 3) inCell(["rm", `${volumePath("user.s3b")}/sp ace 'q' -dash`]);
    }
    await sleep(1100); // AFS mtimes have 1 s resolution
    const skip = i === 2 ? ["--volumes.exclude=user\\.s3b"] : [];
    const r = await run("hcoop-backup", [`--clock.today=${day}`, ...skip]);
    assert.is(r.code, 0, r.output);
    assert.match(r.output, /remote\s+s3:\/\/.*: \d+ sent/);
    trees[day] = volumeTree("user.s3b", mkdtempSync(join(dir, "tree-")));
    await sleep(1100);
  }
  const days = await mirrorList(to, { s3: s3creds });
  assert.equal([...days.keys()], DAYS.map((d) => d.replaceAll("-", ".")));
  assert.equal(days.get("2026.11.22")!.map((f) => f.name), ["2026.11.22-manifest.json", "2026.11.22-user.s3a.dump.gz.aescrypt"]);
  const side = await (await s3.sdk()).send(new (await import("@aws-sdk/client-s3")).GetObjectCommand({ Bucket: bucket, Key: "hcoop repo/2026.11.22/2026.11.22-user.s3a.dump.gz.aescrypt.sha256" }));
  const m = JSON.parse(readFileSync(join(backups, "2026.11.22", "2026.11.22-manifest.json"), "utf8"));
  assert.is(await side.Body!.transformToString(), `${m.files["2026.11.22-user.s3a.dump.gz.aescrypt"].sha256}  2026.11.22-user.s3a.dump.gz.aescrypt\n`);
  // the Monday incremental of user.s3b is against the first Sunday's full
  const mon = JSON.parse(readFileSync(join(backups, "2026.11.23", "2026.11.23-manifest.json"), "utf8"));
  assert.equal([mon.files["2026.11.23-user.s3b.dump.gz.aescrypt"].kind, mon.files["2026.11.23-user.s3b.dump.gz.aescrypt"].chain], ["incremental", "2026.11.15"]);
});

test("hcoop-list --remote reads the days at s3://; hcoop-get fetches a file verified and refuses a damaged object by its sha256, keeping nothing", async () => {
  let r = await run("hcoop-list", ["--remote", "--json"]);
  assert.is(r.code, 0, r.output);
  const j = JSON.parse(r.output.slice(r.output.indexOf("{"))) as { where: string; days: { date: string; full: number; incremental: number }[] };
  assert.equal(j.days.map((d) => [d.date, d.full, d.incremental]), [["2026.11.15", 2, 0], ["2026.11.18", 0, 2], ["2026.11.22", 1, 0], ["2026.11.23", 0, 2]]);

  const fresh = join(dir, "get");
  r = await run("hcoop-get", ["2026.11.18", "user.s3a", `--backups.dir=${fresh}`]);
  assert.is(r.code, 0, r.output);
  assert.equal(readFileSync(join(fresh, "2026.11.18", "2026.11.18-user.s3a.dump.gz.aescrypt")), readFileSync(join(backups, "2026.11.18", "2026.11.18-user.s3a.dump.gz.aescrypt")));

  // a damaged object (one byte flipped, same size): refused by its sha256, exit 3, nothing kept
  const key = "hcoop repo/2026.11.18/2026.11.18-user.s3b.dump.gz.aescrypt";
  const sdk = await s3.sdk();
  const m = await import("@aws-sdk/client-s3");
  const bad = readFileSync(join(backups, "2026.11.18", "2026.11.18-user.s3b.dump.gz.aescrypt"));
  bad[bad.length >> 1] ^= 1;
  await sdk.send(new m.PutObjectCommand({ Bucket: bucket, Key: key, Body: bad }));
  r = await run("hcoop-get", ["2026.11.18", "user.s3b", `--backups.dir=${fresh}`]);
  assert.is(r.code, 3, r.output);
  assert.match(r.output, /2026\.11\.18-user\.s3b\.dump\.gz\.aescrypt: fetched \d+ bytes with sha256 .*the remote copy is damaged/);
  assert.not.ok(readdirSync(join(fresh, "2026.11.18")).some((n) => n.includes("user.s3b")), "nothing of the damaged file kept");
});

test("hcoop-prune at s3:// keeps the newest weekly chain and the old full its incremental needs; hcoop-restore then fetches that chain from S3 into an empty backups.dir, byte for byte", async () => {
  let r = await run("hcoop-prune", ["--retention.weeks=1"]);
  assert.is(r.code, 0, r.output);
  assert.match(r.output, /s3:\/\/.*: would remove 2026\.11\.18/);
  r = await run("hcoop-prune", ["--retention.weeks=1", "--yes"]);
  assert.is(r.code, 0, r.output);
  assert.equal([...(await mirrorList(to, { s3: s3creds })).keys()], ["2026.11.15", "2026.11.22", "2026.11.23"], "2026.11.15 kept: the 11.23 incremental of user.s3b needs its full");
  assert.not.ok(existsSync(join(backups, "2026.11.18")), "pruned locally too");

  removeVolume("user.s3b");
  const empty = join(dir, "empty");
  r = await run("hcoop-restore", ["2026.11.23", "user.s3b", "--yes", `--backups.dir=${empty}`]);
  assert.is(r.code, 0, r.output);
  assert.match(r.output, /fetched and verified: s3:\/\/.*2026\.11\.23-user\.s3b\.dump\.gz\.aescrypt/);
  assert.match(r.output, /fetched and verified: s3:\/\/.*2026\.11\.15-user\.s3b\.dump\.gz\.aescrypt/);
  assert.equal(await compareTrees(trees["2026-11-23"], volumeTree("user.s3b.restored", mkdtempSync(join(dir, "restored-"))), { owners: false }), []);
});

test.run();
