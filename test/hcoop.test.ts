// The HCoop recipes on the lab's OpenAFS cell: the drill (three simulated days, destroy, restore
// as of day 2 and day 3, refusals, legacy input, the databases archive) as one test, plus dry runs and name checks.
// Run: bash test/run.sh test/hcoop.test.ts
// needs: afs pg
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { hcoopDrill, type HcoopDrillResult } from "../tasks/drills/hcoop.ts";
import { runRecipe } from "../tasks/drills/hoss.ts";
import { createOpenVolume, labCell, removeVolume, writeFile } from "../tasks/drills/afs-cell.ts";
import { cleanupTmp, testContext, tmp } from "./helpers.ts";

testContext();
test.after(() => cleanupTmp());
let r: HcoopDrillResult;

test("drill: three days (full, incremental, incremental), destroy, restore as of day 2 and day 3 byte for byte", async () => {
  r = await hcoopDrill({ log: () => {} });
  assert.equal(r.diffsDay2, [], "day 2 restore into user.alice.restored");
  assert.equal(r.diffsDay3, [], "day 3 restore replacing the live volume");
});

test("drill: incrementals are small against their full; the excluded volume was never dumped", () => {
  assert.ok(r.ratios["user.alice"].every((x) => x < 0.05), JSON.stringify(r.ratios));
  assert.equal(r.excludedDumped, []);
  assert.equal(Object.keys(r.bytes[r.days[0]]).length, 5);
});

test("drill: wrong ccrypt key exit 3 before vos restore (no volume); truncated file refused by sha256; missing full named", () => {
  assert.match(r.refusals.wrongKey, /^exit 3: .*does not open it/);
  assert.not.match(r.refusals.wrongKey, /BUT a volume was created/);
  assert.match(r.refusals.truncated, /^exit 3: .*(sha256|truncated)/);
  assert.match(r.refusals.missingFull, /^exit 1: .*db\.bob.*2026\.11\.22.*missing|missing.*2026\.11\.22/);
});

test("drill: a legacy `vos dump | gzip | ccrypt -e -k KEY` file restores through the same verb", () => {
  assert.equal(r.legacyDiffs, []);
});

test("drill: the day-2 restore into an empty backups.dir fetched its full and incremental from the remote repository, each verified", () => {
  assert.is(r.fetchedFromRemote.length, 2, JSON.stringify(r.fetchedFromRemote));
  assert.match(r.fetchedFromRemote.join(" "), /2026\.11\.23-user\.alice\.dump\.gz\.aescrypt.*2026\.11\.22-user\.alice\.dump\.gz\.aescrypt/);
});

test("drill: the databases archive unpacks into restored/DATE-db (globals + one dump per database) and one database loads row for row", () => {
  assert.equal(r.db.unpacked, ["globals.sql", "hcoop%20%22odd%22%20%24(db).dump", "hcoop_drill.dump"]);
  assert.is(r.db.source.length, 500);
  assert.equal(r.db.loaded, r.db.source);
});

test("restore refuses NAME.restored longer than 22 characters before doing anything, naming a shorter suffix", async () => {
  const dir = tmp();
  const { cell, prefix } = labCell();
  writeFileSync(`${dir}/site.yaml`, `backups: { dir: ${dir} }\nafs: { server: ${cell.server}, auth: noauth, prefix: ${JSON.stringify(prefix)} }\nage: { passphrase: lab-passphrase-long }\n`);
  const x = await runRecipe("hcoop-restore", ["2026.11.24", "user.fourteen.c", "--config", `${dir}/site.yaml`]);
  assert.is(x.code, 2, x.output);
  assert.match(x.output, /24 characters/);
  assert.match(x.output, /--restore\.suffix=/);
});

test("backup --dry-run prints vos backupsys and the dump pipelines and writes nothing", async () => {
  const dir = tmp();
  const { cell, prefix } = labCell();
  writeFileSync(`${dir}/site.yaml`, `backups: { dir: ${dir}/b }\nafs: { server: ${cell.server}, auth: noauth, prefix: ${JSON.stringify(prefix)} }\nage: { passphrase: lab-passphrase-long }\n`);
  const x = await runRecipe("hcoop-backup", ["--dry-run", "--config", `${dir}/site.yaml`]);
  assert.is(x.code, 0, x.output);
  assert.match(x.output, /vos backupsys .*-prefix user\. db\. mail\./);
  assert.match(x.output, /write .*manifest\.json/);
});

test("backup refuses before dumping anything when the day would not fit: names the folder, the estimate and what is free", async () => {
  const dir = tmp();
  const small = `${dir}/small backups`;
  mkdirSync(small);
  const mount = spawnSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", small]);
  assert.is(mount.status, 0, String(mount.stderr));
  const { cell, prefix } = labCell();
  try {
    removeVolume("user.space.big");
    createOpenVolume("user.space.big");
    writeFile("user.space.big", "random.bin", randomBytes(3 << 20)); // 3 MiB that do not compress
    writeFileSync(`${dir}/site.yaml`, `backups: { dir: ${JSON.stringify(small)} }\nvolumes: { prefixes: [user.space.] }\nafs: { server: ${cell.server}, auth: noauth, prefix: ${JSON.stringify(prefix)} }\nage: { passphrase: lab-passphrase-long }\nstate-dir: ${JSON.stringify(`${dir}/state`)}\n`);
    const x = await runRecipe("hcoop-backup", ["--clock.today=2026-11-29", "--config", `${dir}/site.yaml`]);
    assert.is(x.code, 1, x.output);
    assert.ok(x.output.includes(`not enough space in ${small}: `), x.output);
    assert.match(x.output, /: [\d.]+ (KiB|MiB) free, the backup needs about 3(\.\d+)? MiB/);
    assert.match(x.output, /estimate: 3(\.\d+)? MiB of volumes \(vos listvol\) × compression ratio 1\.00 \(no earlier run\)/);
    assert.equal(readdirSync(small), [], "nothing was dumped");
    assert.not.ok(existsSync(`${small}/2026.11.29`));
  } finally {
    spawnSync("umount", [small]);
    removeVolume("user.space.big");
  }
});

test.run();
