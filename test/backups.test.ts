// Backup folders (lib/backups.ts): listing, verified state, GFS pruning and the free-space check.
// deno: yes
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { generateIdentity, identityToRecipient } from "age-encryption";
import {
  AGE_SETTINGS,
  backupArchive,
  checkFreeSpace,
  captureToFile,
  cleanLeftovers,
  ensureBackupFolder,
  createContext,
  listBackups,
  packArchive,
  planPrune,
  prune,
  verifyArchive,
  withContext,
  type BackupEntry,
  type Context,
  type Manifest,
} from "../lib/internal.ts";
import { verify as verifyTask } from "../tasks/archive.ts";
import { cleanupTmp, testContext, tmp } from "./helpers.ts";

test.after.each(() => cleanupTmp());

function fake(name: string, createdAt: string, verified: BackupEntry["verified"] = "never"): BackupEntry {
  return { path: `/b/${name}`, name, size: 1, createdAt: new Date(createdAt), recipe: "x", encrypted: false, verified };
}

/** A one-file tree to pack. */
function source(): string {
  const src = join(tmp(), "src");
  mkdirSync(src);
  writeFileSync(join(src, "f"), "x");
  return src;
}

test("list shows archives newest first with verified state, and never partial files", async () => {
  testContext();
  const src = source();
  const dir = join(tmp(), "backups");
  await packArchive(src, join(dir, "app-2026-11-01T000000Z.tar.gz"), { startedAt: new Date("2026-11-01T00:00:00Z") });
  await packArchive(src, join(dir, "app-2026-11-02T000000Z.tar.gz"), { startedAt: new Date("2026-11-02T00:00:00Z") });
  writeFileSync(join(dir, ".partial-app-2026-11-03T000000Z.tar.gz.999999"), "half");
  await verifyArchive(join(dir, "app-2026-11-01T000000Z.tar.gz"), { record: true });
  const list = listBackups(dir);
  assert.equal(list.map((b) => b.name), ["app-2026-11-02T000000Z.tar.gz", "app-2026-11-01T000000Z.tar.gz"]);
  assert.equal(list.map((b) => b.verified), ["never", "passed"]);
  // a stamp is void once the archive changes
  utimesSync(list[1].path, new Date(), new Date());
  assert.is(listBackups(dir)[1].verified, "never");
});

test("GFS keeps the last N and one per day, week and month", () => {
  const entries = [
    fake("d1a", "2026-11-21T10:00:00Z"),
    fake("d1b", "2026-11-21T08:00:00Z"),
    fake("d2", "2026-11-20T10:00:00Z"),
    fake("d3", "2026-11-19T10:00:00Z"),
    fake("w-prev", "2026-11-12T10:00:00Z"),
    fake("oct", "2026-10-15T10:00:00Z"),
    fake("sep", "2026-09-15T10:00:00Z"),
  ];
  const plan = planPrune(entries, { keepLast: 1, keepDaily: 2, keepWeekly: 2, keepMonthly: 2 });
  assert.equal(plan.keep.map((k) => k.entry.name), ["d1a", "d2", "w-prev", "oct"]);
  assert.equal(plan.remove.map((e) => e.name), ["d1b", "d3", "sep"]);
  assert.ok(plan.keep[0].reasons.includes("last 1"));
});

test("prune never deletes the newest verified backup, whatever the policy", () => {
  const entries = [fake("new-unverified", "2026-11-21T10:00:00Z"), fake("old-verified", "2026-11-01T10:00:00Z", "passed"), fake("older", "2026-10-01T10:00:00Z")];
  const plan = planPrune(entries, { keepLast: 1 });
  assert.equal(plan.keep.map((k) => k.entry.name), ["new-unverified", "old-verified"]);
  assert.equal(plan.keep[1].reasons, ["newest verified"]);
});

test("prune is a dry run unless confirmed, and refuses a policy that keeps nothing", async () => {
  testContext();
  const src = source();
  const dir = join(tmp(), "b");
  for (const d of ["2026-11-01", "2026-11-02", "2026-11-03"]) {
    await packArchive(src, join(dir, `a-${d}.tar.gz`), { startedAt: new Date(`${d}T00:00:00Z`) });
  }
  prune(dir, { keepLast: 1 });
  assert.is(listBackups(dir).length, 3, "nothing removed without confirmation");
  prune(dir, { keepLast: 1, confirmed: true });
  assert.equal(listBackups(dir).map((b) => b.name), ["a-2026-11-03.tar.gz"]);
  assert.not.ok(existsSync(join(dir, "a-2026-11-01.tar.gz.sha256")), "sidecars go with their archive");
  assert.throws(() => prune(dir, {}), /keeps nothing/);
});

test("the free-space check fails early with the numbers", () => {
  testContext();
  const dir = tmp();
  assert.throws(() => checkFreeSpace(dir, 1e18), /not enough space in .*: .* free, the backup needs about .*/);
  assert.ok(checkFreeSpace(dir, 1024).free > 1024);
});

/** What a recipe declares once: its manifest's meta, checked by tsc on the backup and the restore side. */
interface AppMeta {
  app: { buckets: number };
}

test("backupArchive names, packs and verifies the archive, and records the verified state", async () => {
  testContext({ name: "app-backup" });
  const dir = join(tmp(), "backups");
  const startedAt = new Date("2026-11-21T10:15:00.123Z");
  const r = await backupArchive<AppMeta>(source(), { folder: dir, name: "app-backup", startedAt, meta: { app: { buckets: 2 } } });
  assert.is(r.path, join(dir, "app-backup-2026-11-21T101500Z.tar.gz"));
  assert.is(r.verified, true);
  assert.is(r.manifest.meta.app.buckets, 2);
  assert.ok(r.bytes > 0);
  assert.equal(listBackups(dir).map((b) => [b.name, b.verified]), [["app-backup-2026-11-21T101500Z.tar.gz", "passed"]]);
  const back: Manifest<AppMeta> | null = (await verifyArchive<AppMeta>(r.path)).manifest;
  assert.is(back?.meta.app.buckets, 2);
});

test("two backups stamped with the same second get two names: the second never replaces the first", async () => {
  testContext({ name: "app-backup" });
  const dir = join(tmp(), "backups");
  const startedAt = new Date("2026-11-21T10:15:00.123Z");
  const first = await backupArchive(source(), { folder: dir, name: "app-backup", startedAt, meta: {} });
  const second = await backupArchive(source(), { folder: dir, name: "app-backup", startedAt, meta: {} });
  assert.is(first.path, join(dir, "app-backup-2026-11-21T101500Z.tar.gz"));
  assert.is(second.path, join(dir, "app-backup-2026-11-21T101501Z.tar.gz"));
  assert.is(second.manifest.startedAt, "2026-11-21T10:15:01.123Z");
  assert.equal(listBackups(dir).map((b) => [b.name, b.verified]), [["app-backup-2026-11-21T101501Z.tar.gz", "passed"], ["app-backup-2026-11-21T101500Z.tar.gz", "passed"]]);
});

test("a resumed backup finds the archive its killed run packed and verified: it is verified again and returned, not packed a second time", async () => {
  testContext({ name: "app-backup" });
  const dir = join(tmp(), "backups");
  const startedAt = new Date("2026-11-21T10:15:00.123Z");
  const first = await backupArchive(source(), { folder: dir, name: "app-backup", startedAt, meta: { n: 1 } });
  const again = await backupArchive(source(), { folder: dir, name: "app-backup", startedAt, meta: { n: 1 }, resumed: true });
  assert.is(again.path, first.path);
  assert.equal(again.manifest, first.manifest);
  assert.is(again.verified, true);
  assert.equal(listBackups(dir).map((b) => b.name), ["app-backup-2026-11-21T101500Z.tar.gz"], "one archive, not two");
  // one whose verification failed is not taken for the run's own: a new one is packed
  const st = statSync(first.path);
  writeFileSync(`${first.path}.verified`, JSON.stringify({ ok: false, at: new Date().toISOString(), size: st.size, mtimeMs: st.mtimeMs }));
  assert.equal(listBackups(dir).map((b) => b.verified), ["failed"]);
  const anew = await backupArchive(source(), { folder: dir, name: "app-backup", startedAt, meta: { n: 1 }, resumed: true });
  assert.is(anew.path, join(dir, "app-backup-2026-11-21T101501Z.tar.gz"));
});

test("a resumed backup whose killed run packed the archive but never verified it verifies that one and uses it; a damaged one is left and a new one packed", async () => {
  const { logs } = testContext({ name: "app-backup" });
  const dir = join(tmp(), "backups");
  const startedAt = new Date("2026-11-21T10:15:00.123Z");
  const first = await backupArchive(source(), { folder: dir, name: "app-backup", startedAt, meta: { n: 1 } });
  rmSync(`${first.path}.verified`); // killed between the pack and the verify
  assert.equal(listBackups(dir).map((b) => b.verified), ["never"]);
  const again = await backupArchive(source(), { folder: dir, name: "app-backup", startedAt, meta: { n: 1 }, resumed: true });
  assert.is(again.path, first.path);
  assert.is(again.verified, true);
  assert.equal(listBackups(dir).map((b) => [b.name, b.verified]), [["app-backup-2026-11-21T101500Z.tar.gz", "passed"]], "one archive, verified now");
  // damaged and never verified: it does not verify, so a new one is packed beside it
  rmSync(`${first.path}.verified`);
  const bytes = readFileSync(first.path);
  bytes[bytes.length >> 1] ^= 0xff;
  writeFileSync(first.path, bytes);
  const anew = await backupArchive(source(), { folder: dir, name: "app-backup", startedAt, meta: { n: 1 }, resumed: true });
  assert.is(anew.path, join(dir, "app-backup-2026-11-21T101501Z.tar.gz"));
  assert.match(logs(), /app-backup-2026-11-21T101500Z\.tar\.gz does not verify .*: packing a new archive/);
  assert.equal(listBackups(dir).map((b) => b.verified), ["passed", "failed"]);
});

test("backupArchive encrypts with a passphrase (.tar.gz.age, verified) and for recipients only (not verified, with a warning)", async () => {
  const { logs } = testContext();
  const dir = join(tmp(), "backups");
  const startedAt = new Date("2026-11-21T10:15:00Z");
  const p = await backupArchive(source(), { folder: dir, name: "pw", startedAt, meta: {}, age: { passphrase: "pass phrase" } });
  assert.ok(p.path.endsWith("/pw-2026-11-21T101500Z.tar.gz.age"));
  assert.is(p.verified, true);
  const recipient = await identityToRecipient(await generateIdentity());
  const r = await backupArchive(source(), { folder: dir, name: "rcpt", startedAt, meta: {}, age: { recipients: [recipient] } });
  assert.ok(r.path.endsWith("/rcpt-2026-11-21T101500Z.tar.gz.age"));
  assert.is(r.verified, false);
  assert.match(logs(), /encrypted for recipients only.*archive:verify/);
  assert.equal(listBackups(dir).map((b) => b.verified).sort(), ["never", "passed"]);
});

test("backupArchive in dry-run says what it would write and touches nothing", async () => {
  const { logs } = testContext({ argv: ["--dry-run"] });
  const dir = join(tmp(), "backups");
  const r = await backupArchive<AppMeta>(join(tmp(), "not-staged-yet"), {
    folder: dir,
    name: "app",
    startedAt: new Date("2026-11-21T10:15:00Z"),
    meta: { app: { buckets: 0 } },
    age: { passphrase: "x" },
  });
  assert.is(r.path, join(dir, "app-2026-11-21T101500Z.tar.gz.age"));
  assert.is(r.verified, false);
  assert.is(r.manifest.meta.app.buckets, 0);
  assert.not.ok(existsSync(dir));
  assert.match(logs(), /app-2026-11-21T101500Z\.tar\.gz\.age/);
});

test("in a dry run the backups folder is not created and leftovers are listed, not removed", () => {
  const { logs } = testContext({ argv: ["--dry-run"] });
  const dir = join(tmp(), "backups");
  ensureBackupFolder(dir);
  assert.not.ok(existsSync(dir), "no folder made");
  mkdirSync(dir);
  writeFileSync(join(dir, ".partial-app-2026-11-03T000000Z.tar.gz.999999"), "half");
  writeFileSync(join(dir, "gone.tar.gz.sha256"), "x");
  assert.equal(cleanLeftovers(dir).sort(), [".partial-app-2026-11-03T000000Z.tar.gz.999999", "gone.tar.gz.sha256"]);
  assert.equal(readdirSync(dir).sort(), [".partial-app-2026-11-03T000000Z.tar.gz.999999", "gone.tar.gz.sha256"], "nothing removed");
  assert.match(logs(), /\[dry-run\] mkdir -p -m 700 -- /);
  assert.match(logs(), /\[dry-run\] rm -rf -- .*gone\.tar\.gz\.sha256/);
  testContext();
  assert.equal(cleanLeftovers(dir).length, 2);
  assert.equal(readdirSync(dir), [], "a real run removes them");
});

test("verifyArchive with record writes the .verified stamp, passed or failed; without it writes none", async () => {
  testContext();
  const dir = join(tmp(), "b");
  const a = join(dir, "a.tar.gz");
  await packArchive(source(), a);
  await verifyArchive(a);
  assert.not.ok(existsSync(`${a}.verified`));
  await verifyArchive(a, { record: true });
  assert.is(JSON.parse(readFileSync(`${a}.verified`, "utf8")).ok, true);
  writeFileSync(`${a}.sha256`, `${"0".repeat(64)}  a.tar.gz\n`);
  await verifyArchive(a, { record: true }).then(() => assert.unreachable("should fail"), () => {});
  assert.is(listBackups(dir)[0].verified, "failed");
});

test("archive:verify takes the age.* settings of a site file's age: block", async () => {
  testContext();
  const root = tmp();
  const a = join(root, "b", "s.tar.gz.age");
  await packArchive(source(), a, { encrypt: { passphrase: "from the site file" } });
  const site = join(root, "site.yaml");
  writeFileSync(site, "age:\n  passphrase: from the site file\n  recipients: []\n");
  assert.equal(Object.keys(AGE_SETTINGS).sort(), ["age.identity-file", "age.passphrase", "age.recipients"]);
  const ctx = createContext({ name: verifyTask.name, settings: verifyTask.settings, argv: ["--config", site, a], env: {}, sink: { write: () => true } });
  await withContext(ctx as Context, () => verifyTask.run.call(verifyTask, ctx));
  assert.equal(listBackups(join(root, "b")).map((b) => b.verified), ["passed"]);
  assert.equal(readdirSync(join(root, "b")).filter((n) => n.startsWith(".partial")), []);
});

test("captureToFile removes a killed run's partial of the same file, keeps a live process's, and writes the file whole", async () => {
  testContext();
  const dir = tmp();
  const dead = spawnSync("true").pid!; // a process that has exited
  writeFileSync(join(dir, `.partial-day.dump.${dead}`), "cut off");
  writeFileSync(join(dir, ".partial-day.dump.1"), "pid 1 is alive: not ours to remove");
  writeFileSync(join(dir, `.partial-other.dump.${dead}`), "another file's partial: left to its own writer");
  await captureToFile(join(dir, "day.dump"), async (t) => writeFileSync(t, "whole"));
  assert.is(readFileSync(join(dir, "day.dump"), "utf8"), "whole");
  assert.equal(readdirSync(dir).sort(), [".partial-day.dump.1", `.partial-other.dump.${dead}`, "day.dump"].sort());
});

test.run();
