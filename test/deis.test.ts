// The Deis recipes on the lab, run as an operator runs them (child processes with a site file):
// the drill (backup → destroy → restore → compare), dry runs, a damaged archive, --resume.
// Run: bash test/run.sh test/deis.test.ts
// needs: docker sshd ceph
import { test } from "uvu";
import * as assert from "uvu/assert";
import { closeSync, copyFileSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import process from "node:process";
import { createContext, exec, s3RemoveBucket, setDefaultContext, type Context } from "../lib/internal.ts";
import {
  bucketSnapshot,
  databaseCounts,
  deisDrill,
  drillSummary,
  DEIS_LAB,
  labGateway,
  runRecipe,
  RUNBOOK_CALLS,
  takeDeisctlCalls,
  type DeisDrillReport,
} from "../tasks/drills/deis.ts";

const WORK = mkdtempSync(join(tmpdir(), "lifeboat-deis-test-"));
const ctx = createContext({ name: "deis.test", argv: [], env: {}, sink: process.stderr, interactive: false }) as Context;
setDefaultContext(ctx);
let drill: DeisDrillReport | undefined;

test.after(() => rmSync(WORK, { recursive: true, force: true }));

/** Everything a dry run could touch: objects, the store volume's entries, the databases, the backups folder. */
async function fingerprint(): Promise<string> {
  const s3 = labGateway();
  try {
    const objects = await bucketSnapshot(s3);
    const store = (await exec(["find", DEIS_LAB.storeDir, "-printf", "%P %s %m %U %G %T@\\n"], { readOnly: true })).stdout;
    const db = await databaseCounts();
    const backups = (await exec(["ls", "-A", drill!.work.backups], { readOnly: true })).stdout;
    return JSON.stringify({ objects, store, db, backups });
  } finally {
    s3.destroy();
  }
}

test("drill: backup → destroy → restore brings back every object (keys, bytes, ETags), the store volume (owners, modes, the live log as archived) and the databases row for row, with deisctl called in the runbook's order", async () => {
  drill = await deisDrill({ workdir: join(WORK, "drill"), passphrase: "correct horse battery staple", ctx });
  for (const line of drillSummary(drill)) ctx.log.info(`  ${line}`);
  assert.equal(drill.problems, []);
  assert.ok(drill.objects.db_wal.objects + drill.objects.registry.objects >= 300, "a few hundred objects");
  assert.ok(drill.multipart >= 1, "one multipart object");
  assert.equal(drill.calls.restore, RUNBOOK_CALLS.restore);
  assert.match(basename(drill.archive), /^deis-backup-\d{4}-\d\d-\d\dT\d{6}Z\.tar\.gz\.age$/);
});

test("deis-restore restores straight from an s3:// off-site copy that deis-backup made (offsite.to), fetched and checked first", async () => {
  const bucket = `lbt-offsite-${process.pid}`;
  const off = await deisDrill({ workdir: join(WORK, "drill-offsite"), offsite: `s3://${bucket}/deis prod`, echo: false, ctx });
  const s3 = labGateway();
  await s3RemoveBucket(s3, bucket, { purge: true });
  s3.destroy();
  assert.equal(off.problems, [], off.problems.join("\n"));
  assert.match(off.restoredFrom, /^s3:\/\/lbt-offsite-\d+\/deis prod\/deis-backup-.*\.tar\.gz$/);
  assert.ok(off.outcomes.every((o) => o.status === "done"));
});

test("--dry-run of backup and restore changes nothing and prints every command", async () => {
  const work = drill!.work;
  takeDeisctlCalls(work);
  const before = await fingerprint();
  const backup = await runRecipe("deis-backup", ["--config", work.site, "--dry-run"], work);
  assert.is(backup.code, 0, backup.output);
  for (const want of [/\[dry-run\] s3 download s3:\/\/db_wal\//, /\[dry-run\] s3 download s3:\/\/registry\//, /\[dry-run\] ssh .* tar -C .*deis\/store -c -p -f - \./, /\[dry-run\] docker exec -u postgres deis-database pg_dumpall/, /\[dry-run\] pack /]) {
    assert.match(backup.output, want, `${want} not in the dry run's output; its lines naming ssh, store or tar:\n${backup.output.split("\n").filter((l) => /ssh|store|tar/.test(l) && !/s3 download/.test(l)).join("\n")}\n… its end:\n${backup.output.slice(-1500)}`);
  }
  assert.equal(takeDeisctlCalls(work), RUNBOOK_CALLS.backup, "only the read-only key lookups ran");

  const restore = await runRecipe("deis-restore", [drill!.archive, "--config", work.site, "--dry-run"], work);
  assert.is(restore.code, 0, restore.output);
  for (const call of RUNBOOK_CALLS.restore.filter((c) => !c.startsWith("config store get"))) {
    assert.match(restore.output, new RegExp(`\\[dry-run\\] \\S*deisctl ${call.replace(/[.@]/g, "\\$&")}\\n`), `prints deisctl ${call}`);
  }
  for (const want of [/\[dry-run\] s3 mb s3:\/\/db_wal/, /\[dry-run\] s3 sync .*buckets\/registry s3:\/\/registry/, /\[dry-run\] ssh .* sh .*deis\/store [01] tar -x -p -f - --same-owner/, /\[dry-run\] docker exec .*deis-database psql/, /\[dry-run\] (ETCD=\S+ )?docker exec -i -w \/app -e ETCD deis-controller \.\/manage\.py shell/]) {
    assert.match(restore.output, want, `${want} not in the dry run's output:\n${restore.output}`);
  }
  assert.equal(takeDeisctlCalls(work), ["config store get gateway/accessKey", "config store get gateway/secretKey"], "only the read-only key lookups ran");
  assert.is(await fingerprint(), before, "no object, file, row or archive changed");
});

test("each gateway's restore stages in a folder of its own, the same one on every run (another cluster's restore cannot refill what a --resume uploads)", async () => {
  const work = drill!.work;
  const stagingOf = async (endpoint?: string) => {
    const r = await runRecipe("deis-restore", [drill!.archive, "--config", work.site, "--dry-run", ...(endpoint ? [`--gateway.endpoint=${endpoint}`] : [])], work);
    assert.is(r.code, 0, r.output);
    const m = /\[dry-run\] s3 sync (\S+)\/buckets\/registry s3:\/\/registry/.exec(r.output);
    assert.ok(m, `no s3 sync line in:\n${r.output}`);
    return m![1];
  };
  const here = await stagingOf();
  assert.match(here, /\/\.deis-restore-staging-[0-9a-f]{8}$/);
  assert.is(await stagingOf(), here, "the same gateway stages in the same folder again (a --resume finds it)");
  const other = await stagingOf("http://127.0.0.2:7480");
  assert.is.not(other, here, "another gateway's restore stages elsewhere");
  takeDeisctlCalls(work);
});

test("restore refuses a damaged archive before any platform step (exit 3)", async () => {
  const work = drill!.work;
  takeDeisctlCalls(work);
  const damaged = join(WORK, basename(drill!.archive));
  copyFileSync(drill!.archive, damaged);
  const at = Math.floor(statSync(damaged).size / 2);
  const fd = openSync(damaged, "r+");
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, at);
  writeSync(fd, Buffer.from([b[0] ^ 0xff]), 0, 1, at);
  closeSync(fd);
  const run = await runRecipe("deis-restore", [damaged, "--config", work.site, "--yes"], work);
  assert.is(run.code, 3, run.output);
  assert.match(run.output, /verify the archive/);
  assert.match(run.output, /damaged|does not open|mismatch/);
  assert.equal(takeDeisctlCalls(work), [], "no deisctl call");
});

test("--resume after a failed step continues at it and skips the finished ones", async () => {
  const work = drill!.work;
  takeDeisctlCalls(work);
  writeFileSync(join(work.standin, "fail-once"), "config router set bodySize=100m\n");
  const args = [drill!.archive, "--config", work.site, "--yes", "--restore.load-dump=false"];
  const first = await runRecipe("deis-restore", args, work);
  assert.is(first.code, 1, first.output);
  assert.match(first.output, /step 'deisctl config router set bodySize=100m' failed/);
  assert.match(first.output, /--resume/);
  assert.equal(takeDeisctlCalls(work), RUNBOOK_CALLS.restore.slice(0, 8), "stopped at the failed call");
  assert.not.ok(existsSync(join(work.standin, "fail-once")), "the cause is fixed (the stand-in fails once)");

  const second = await runRecipe("deis-restore", [...args, "--resume"], work);
  assert.is(second.code, 0, second.output);
  assert.match(second.output, /resuming deis-restore: 9 of \d+ steps already done, continuing at 'deisctl config router set bodySize=100m'/);
  assert.match(second.output, /verify the archive: done in an earlier run/);
  assert.equal(takeDeisctlCalls(work), RUNBOOK_CALLS.restore.slice(7), "the finished deisctl steps were not run again");
  assert.equal(Object.keys((await bucketSnapshotOnce()).registry).length, drill!.objects.registry.objects);
});

test("restore.work-dir on a filesystem of its own (a tmpfs mount point): a failed restore and its --resume complete, the mount is left in place and empty", async () => {
  const work = drill!.work;
  takeDeisctlCalls(work);
  const mnt = join(WORK, "staging-disk");
  await exec(["mkdir", "-p", mnt]);
  await exec(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", mnt]);
  try {
    writeFileSync(join(mnt, "left-by-a-cut-off-unpack"), "x"); // what an earlier failed run left
    writeFileSync(join(work.standin, "fail-once"), "start platform\n");
    const args = [drill!.archive, "--config", work.site, "--yes", "--restore.load-dump=false", "--controller.resave=off", `--restore.work-dir=${mnt}`];
    const first = await runRecipe("deis-restore", args, work);
    assert.is(first.code, 1, first.output);
    assert.match(first.output, /step 'deisctl start platform' failed/, "it got past the unpack into the mount point");
    const second = await runRecipe("deis-restore", [...args, "--resume"], work);
    assert.is(second.code, 0, second.output);
    assert.not.match(second.output, /Device or resource busy/);
    assert.is((await exec(["mountpoint", "-q", mnt], { readOnly: true, okCodes: [0, 1, 32] })).code, 0, "still a mount point");
    assert.equal(readdirSync(mnt), [], "the mount is empty");
  } finally {
    await exec(["umount", mnt]);
    rmSync(mnt, { recursive: true, force: true });
  }
});

test("a failed restore's journal holds no gateway key, and --resume reads the keys again from deisctl", async () => {
  const work = drill!.work;
  takeDeisctlCalls(work);
  writeFileSync(join(work.standin, "fail-once"), "start platform\n");
  const args = [drill!.archive, "--config", work.site, "--yes", "--restore.load-dump=false", "--controller.resave=off"];
  const first = await runRecipe("deis-restore", args, work);
  assert.is(first.code, 1, first.output);
  assert.match(first.output, /step 'deisctl start platform' failed/);
  const journalDir = join(work.dir, "state", "journal");
  const journals = readdirSync(journalDir).map((f) => readFileSync(join(journalDir, f), "utf8"));
  assert.ok(journals.length > 0, "a journal is kept for --resume");
  const secret = readFileSync(join(work.standin, "secret-key"), "utf8").trim();
  for (const j of journals) assert.not.ok(j.includes(secret), "the gateway secret key is not in the journal");
  assert.not.ok(first.output.includes(secret), "nor in the output");
  const second = await runRecipe("deis-restore", [...args, "--resume"], work);
  assert.is(second.code, 0, second.output);
  assert.ok(takeDeisctlCalls(work).some((c) => c.includes("gateway/secretKey")), "the keys were read again");
});

async function bucketSnapshotOnce() {
  const s3 = labGateway();
  try {
    return await bucketSnapshot(s3);
  } finally {
    s3.destroy();
  }
}

test.run();
