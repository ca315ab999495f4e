// Interrupted vos operations on the lab's OpenAFS cell, and how the HCoop recipes recover:
// a vos dump killed mid-stream leaves its volserver transaction open, held by the volserver's
// call for minutes (the volume is "busy"): hcoop-backup run again waits for it (afs.busy-wait),
// ends it once no call holds it, and completes; a vos restore killed
// mid-stream leaves a half-restored volume, which hcoop-restore's step cleanup removes; a volume
// the VLDB does not know is skipped by hcoop-backup with a warning instead of failing the night.
// Run: bash test/run.sh test/hcoop-interrupted.test.ts
// needs: afs
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { afsEndTransaction, afsExamine, afsListVldb, afsTransactions, afsVolumeIds, parseTransactions } from "../lib/afs.ts";
import { compareTrees, verifySealed } from "../lib/mod.ts";
import { runRecipe } from "../tasks/drills/faults.ts";
import { createOpenVolume, labCell, removeVolume, volumeTree, writeFile } from "../tasks/drills/afs-cell.ts";
import { cleanupTmp, testContext, tmp } from "./helpers.ts";

testContext();
const { cell, prefix } = labCell();
const VOLS = ["lbk.alice", "lbk.bob"];
const RESTORED = "lbk.alice.restored";
const ORPHAN = "lbk.orphan";
const zapByName = (name: string) => {
  const out = spawnSync(prefix[0], [...prefix.slice(1), "vos", "listvol", "-server", cell.server, "-partition", "a", "-noauth"], { encoding: "utf8" }).stdout;
  for (const l of out.split("\n")) {
    const w = l.trim().split(/\s+/);
    if (w[0] === name) spawnSync(prefix[0], [...prefix.slice(1), "vos", "zap", "-server", cell.server, "-partition", "a", "-id", w[1], "-noauth"]);
  }
};
const WAIT = ["lbw.alice", "lbw.bob"]; // the busy-volume wait's own volumes (prefix lbw.)
const clear = () => [...VOLS, RESTORED, ORPHAN, ...WAIT].forEach((v) => (removeVolume(v), zapByName(v)));
const vosSync = (args: string[]) => spawnSync(prefix[0], [...prefix.slice(1), "vos", ...args, "-noauth"], { encoding: "utf8" });
const dir = tmp();
const site = `${dir}/site.yaml`;
const waitSite = `${dir}/wait.yaml`;
let tree = "";

test.before(() => {
  clear();
  for (const v of VOLS) createOpenVolume(v);
  writeFile("lbk.alice", "random.bin", randomBytes(32 << 20)); // long enough to be hit mid-stream
  writeFile("lbk.bob", "small.txt", "bob\n");
  writeFileSync(`${dir}/key`, randomBytes(16).toString("hex"), { mode: 0o600 });
  writeFileSync(site, [
    `backups: { dir: ${JSON.stringify(`${dir}/backups`)} }`,
    `afs: { server: ${cell.server}, partition: a, auth: noauth, prefix: ${JSON.stringify(prefix)} }`,
    "volumes: { prefixes: [lbk.] }",
    "schedule: { full-day: sun }",
    "clock: { today: 2026-11-22 }",
    `state-dir: ${JSON.stringify(`${dir}/state`)}`,
    `encryption: { kind: ccrypt, key-file: ${JSON.stringify(`${dir}/key`)} }`,
    "",
  ].join("\n"));
  for (const v of WAIT) createOpenVolume(v);
  writeFile("lbw.alice", "random.bin", randomBytes(48 << 20)); // a dump still streaming 1.5 s in
  writeFile("lbw.bob", "small.txt", "bob\n");
  writeFileSync(waitSite, readFileSync(site, "utf8").replace("prefixes: [lbk.]", "prefixes: [lbw.]").replace(`${dir}/backups`, `${dir}/wait-backups`));
});
test.after(() => {
  clear();
  cleanupTmp();
});

test("vos status is parsed: id, volume, procedure, times, flags, and whether a call is using it", () => {
  const t = parseTransactions([
    "Total transactions: 2", "--------------------------------------",
    "transaction: 773  created: Mon Nov 30 02:02:06 2026", "lastActiveTime: Mon Nov 30 02:02:09 2026", "attachFlags:  busy ",
    "volume: 536870986  partition: /vicepa  procedure: Dump", "--------------------------------------", "",
    "--------------------------------------",
    "transaction: 881  created: Mon Nov 30 02:03:29 2026", "lastActiveTime: Mon Nov 30 02:03:29 2026", "transactionFlags: delete",
    "volume: 536871031  partition: /vicepa  procedure: Restore", "packetRead: 2119  lastReceiveTime: Mon Nov 30 02:03:29 2026",
    "packetSend: 1  lastSendTime: Mon Nov 30 02:03:29 2026", "--------------------------------------", "",
  ].join("\n"));
  assert.equal(t.map((x) => [x.id, x.volume, x.procedure, x.flags.join(), x.inCall, x.lastActive - x.created]), [
    [773, 536870986, "Dump", "busy", false, 3],
    [881, 536871031, "Restore", "delete", true, 0],
  ]);
  assert.is(new Date(t[0].created * 1000).getHours(), 2, "local time");
});

test("hcoop-restore SIGKILLed during vos restore: the owed cleanup removes the half-restored volume, --resume restores it whole", async () => {
  const made = await runRecipe("hcoop-backup", ["--config", site, "--yes"], {});
  assert.is(made.code, 0, made.output);
  tree = volumeTree("lbk.alice", tmp());
  const args = ["2026.11.22", "lbk.alice", RESTORED, "--config", site, "--yes"];
  const before = await afsVolumeIds(cell);
  // killed once vos restore has made the volume on the server (300 ms after the heading was not always enough under load)
  const volumeMade = async () => {
    for (let i = 0; i < 150; i++) {
      if ((await afsVolumeIds(cell)).some((id) => !before.includes(id))) return;
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const run = await runRecipe("hcoop-restore", args, {}, { step: /^vos restore/, fire: async (pid) => (await volumeMade(), process.kill(pid, "SIGKILL"), true) });
  assert.is(run.signal, "SIGKILL", run.output);
  await new Promise((r) => setTimeout(r, 1500)); // the orphaned vos restore reads the end of its input
  assert.is(await afsExamine(cell, RESTORED), null, "vos restore makes the VLDB entry last");
  const known = new Set((await afsListVldb(cell)).flatMap((e) => [e.rw, e.ro, e.bk]));
  const orphans = (await afsVolumeIds(cell)).filter((id) => !known.has(id) && !before.includes(id));
  const again = await runRecipe("hcoop-restore", [...args, "--resume"], {});
  assert.is(again.code, 0, again.output);
  assert.match(again.output, /cleanup of 'vos restore .*' \(owed by a run that was killed\)/);
  // The half-restored volume is zapped as an orphan; or, when the killed run's vos restore already had
  // the whole dump in its pipe and finished after the check above (making the VLDB entry), removed by name.
  assert.match(again.output, /half restored\) is on .* but not in the VLDB: removing it \(vos zap\)|was not restored completely: removing it \(vos remove\)/, again.output.slice(-3000));
  const now = new Set(await afsVolumeIds(cell));
  assert.ok(orphans.length >= 1 && orphans.every((id) => !now.has(id)), `orphans ${orphans} left: ${[...now]}`);
  assert.equal(await compareTrees(tree, volumeTree(RESTORED, tmp()), { owners: false }), []);
  assert.not.ok(existsSync(`${dir}/state/hcoop-restore/${cell.server}-${RESTORED}.ids`), "the ids file is gone once restored");
});

test("hcoop-restore killed once its replace or remove-restored was done but not yet recorded: --resume takes that as done, and the restored volume stays", async () => {
  if (!tree) {
    assert.is((await runRecipe("hcoop-backup", ["--config", site, "--yes"], {})).code, 0);
    tree = volumeTree("lbk.alice", tmp());
  }
  const replace = ["2026.11.22", "lbk.alice", RESTORED, "--config", site, "--yes", "--restore.replace"];
  const killed = await runRecipe("hcoop-restore", replace, { LIFEBOAT_FAULT_KILL_AT_RECORD: "replace" });
  assert.is(killed.signal, "SIGKILL", killed.output.slice(-3000));
  assert.ok(await afsExamine(cell, "lbk.alice"), "the rename was done");
  assert.is(await afsExamine(cell, RESTORED), null);
  const resumed = await runRecipe("hcoop-restore", [...replace, "--resume"], {});
  assert.is(resumed.code, 0, resumed.output.slice(-3000));
  assert.match(resumed.output, /lbk\.alice is the restored copy already \(an interrupted run renamed lbk\.alice\.restored\): nothing to replace/);
  assert.equal(await compareTrees(tree, volumeTree("lbk.alice", tmp()), { owners: false }), [], "the live volume is the restored copy");

  const remove = ["2026.11.22", "lbk.alice", RESTORED, "--config", site, "--yes", "--restore.remove-restored"];
  const killed2 = await runRecipe("hcoop-restore", remove, { LIFEBOAT_FAULT_KILL_AT_RECORD: "remove-restored" });
  assert.is(killed2.signal, "SIGKILL", killed2.output.slice(-3000));
  assert.is(await afsExamine(cell, RESTORED), null, "the copy was removed");
  const resumed2 = await runRecipe("hcoop-restore", [...remove, "--resume"], {});
  assert.is(resumed2.code, 0, resumed2.output.slice(-3000));
  assert.match(resumed2.output, /lbk\.alice\.restored is gone already/);
});

test("hcoop-restore killed once its mount command had run: --resume does not mount again (fs mkm would say 'File exists'), it releases and completes", async () => {
  if (!tree) {
    assert.is((await runRecipe("hcoop-backup", ["--config", site, "--yes"], {})).code, 0);
    tree = volumeTree("lbk.alice", tmp());
  }
  removeVolume(RESTORED);
  // mkdir stands in for `fs mkm` (it fails the same way on a mount point that is there)
  const args = ["2026.11.22", "lbk.alice", RESTORED, "--config", site, "--yes", `--restore.mount-command=mkdir,${dir}/mnt-{name}`, `--restore.release-command=touch,${dir}/released-{name}`];
  const killed = await runRecipe("hcoop-restore", args, { LIFEBOAT_FAULT_KILL_AT_RECORD: "mount" });
  assert.is(killed.signal, "SIGKILL", killed.output.slice(-3000));
  assert.ok(existsSync(`${dir}/mnt-${RESTORED}`), "the mount command ran");
  rmSync(`${dir}/released-${RESTORED}`, { force: true });
  const resumed = await runRecipe("hcoop-restore", [...args, "--resume"], {});
  assert.is(resumed.code, 0, resumed.output.slice(-3000));
  assert.match(resumed.output, /lbk\.alice\.restored was mounted by the interrupted run/);
  assert.ok(existsSync(`${dir}/released-${RESTORED}`), "the release ran");
  assert.equal(await compareTrees(tree, volumeTree(RESTORED, tmp()), { owners: false }), []);
  // a new restore of the same target mounts anew (here: fails on the mount point the first one made)
  removeVolume(RESTORED);
  const fresh = await runRecipe("hcoop-restore", args, {});
  assert.is(fresh.code, 1, fresh.output.slice(-3000));
  assert.match(fresh.output, /File exists/);
  rmSync(`${dir}/mnt-${RESTORED}`, { recursive: true, force: true });
  removeVolume(RESTORED);
});

test("hcoop-backup resumed on the next day finishes the day it started: its manifest lists the dumps in that day's folder, and no folder is made for the new day", async () => {
  const backups = `${dir}/midnight-backups`;
  const args = ["--config", site, "--yes", `--backups.dir=${backups}`, "--clock.today=2026-11-24"];
  const killed = await runRecipe("hcoop-backup", args, { LIFEBOAT_FAULT_KILL_AT_RECORD: "dump" });
  assert.is(killed.signal, "SIGKILL", killed.output.slice(-3000));
  const resumed = await runRecipe("hcoop-backup", [...args.slice(0, -1), "--clock.today=2026-11-25", "--resume"], {});
  assert.is(resumed.code, 0, resumed.output.slice(-3000));
  assert.equal(readdirSync(backups).filter((n) => /^\d{4}\./.test(n)), ["2026.11.24"]);
  assert.match(resumed.output, /continuing the backup of 2026\.11\.24, the day the interrupted run started/);
  const day = `${backups}/2026.11.24`;
  const m = JSON.parse(readFileSync(`${day}/2026.11.24-manifest.json`, "utf8")) as { date: string; files: Record<string, { volume: string; sha256: string; bytes: number }> };
  assert.is(m.date, "2026.11.24");
  assert.equal(Object.values(m.files).map((e) => e.volume).sort(), VOLS);
  for (const [f, e] of Object.entries(m.files)) await verifySealed(`${day}/${f}`, { seal: { kind: "ccrypt", keyFile: `${dir}/key` }, sha256: e.sha256, bytes: e.bytes });
});

test("hcoop-backup skips, naming it, a volume vos listvol shows but the VLDB does not know, and dumps the others", async () => {
  removeVolume(RESTORED);
  createOpenVolume(ORPHAN);
  const id = (await afsExamine(cell, ORPHAN))!.id;
  assert.is(vosSync(["delentry", "-id", ORPHAN]).status, 0); // on the server, not in the VLDB
  const run = await runRecipe("hcoop-backup", ["--config", site, "--yes", "--clock.today=2026-11-23"], {});
  assert.is(run.code, 0, run.output);
  assert.ok(run.output.includes(`${ORPHAN} (id ${id}) is on ${cell.server} but not in the VLDB`), run.output);
  assert.ok(run.output.includes(`vos zap -server ${cell.server} -partition a -id ${id}`));
  assert.equal(readdirSync(`${dir}/backups/2026.11.23`).filter((f) => f.endsWith(".aescrypt")).sort(), ["2026.11.23-lbk.alice.dump.gz.aescrypt", "2026.11.23-lbk.bob.dump.gz.aescrypt"]);
});

test("hcoop-backup SIGKILLed mid vos dump, run again at once: it ends the abandoned transaction or waits for the busy volume (said once, with the transaction) and completes; the dumps verify", async () => {
  // SIGKILL of the recipe and every process under it (systemd's kill of the unit, kill -9 of a cron job's
  // group): the vos dump dies with it, so its volserver call lingers (a vos left alive ends it on EPIPE)
  const tree = (pid: number): number[] => [pid, ...spawnSync("ps", ["-o", "pid=", "--ppid", String(pid)], { encoding: "utf8" }).stdout.split("\n").filter((l) => l.trim()).flatMap((l) => tree(Number(l)))];
  const killTree = (pid: number) => (tree(pid).forEach((p) => { try { process.kill(p, "SIGKILL"); } catch { /* gone */ } }), true);
  const run = await runRecipe("hcoop-backup", ["--config", waitSite, "--yes"], {}, { step: /^dump each volume/, delayMs: 1500, fire: killTree });
  assert.is(run.signal, "SIGKILL", run.output);
  const bk = (await afsListVldb(cell)).find((e) => e.name === "lbw.alice")!.bk; // vos examine of a busy volume fails
  const left = await afsTransactions(cell, { volumes: [bk] });
  assert.ok(left.some((t) => t.procedure === "Dump"), `the killed vos dump left no transaction: ${JSON.stringify(left)}`);
  // bounded: 7 min (the lab's volserver holds a killed call's transaction about 150 s)
  const again = await runRecipe("hcoop-backup", ["--config", waitSite, "--yes", "--resume", "--afs.busy-wait=420"], {}, undefined, 30_000, 10 * 60_000);
  assert.is(again.code, 0, again.output);
  const said = again.output.split("\n").filter((l) => /lbw\.alice\.backup is busy: the volserver on \S+ still holds transaction \d+ \(Dump, open [^)]*\), left by an interrupted vos dump or restore; vos dump waits up to 7m00s/.test(l));
  // which of the two it meets depends on the volserver: a transaction no call holds any more is
  // ended at once (said once); one a call still holds is waited for (said once)
  const ended = again.output.split("\n").filter((l) => /vos transaction \d+ \(Dump, [^)]*no call\) was left by an interrupted vos dump; ending it \(vos endtrans\)/.test(l));
  assert.ok(said.length <= 1 && ended.length <= 1 && said.length + ended.length >= 1, again.output); // waited, ended, or waited and then ended: each said at most once
  const day = `${dir}/wait-backups/2026.11.22`;
  const m = JSON.parse(readFileSync(`${day}/2026.11.22-manifest.json`, "utf8")) as { files: Record<string, { volume: string; sha256: string; bytes: number }> };
  assert.equal(Object.values(m.files).map((e) => e.volume).sort(), WAIT);
  for (const [f, e] of Object.entries(m.files)) await verifySealed(`${day}/${f}`, { seal: { kind: "ccrypt", keyFile: `${dir}/key` }, sha256: e.sha256, bytes: e.bytes });
  assert.equal(await afsTransactions(cell, { volumes: [bk] }), [], "no transaction left");
});

test.run();
