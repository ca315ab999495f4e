// Backup folders (lib/backups.ts): listing, verified state, GFS pruning and the free-space check.
// deno: yes
import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, mkdirSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { checkFreeSpace, listBackups, packArchive, planPrune, prune, verifyBackup, type BackupEntry } from "../lib/mod.ts";
import { cleanupTmp, testContext, tmp } from "./helpers.ts";

test.after.each(() => cleanupTmp());

function fake(name: string, createdAt: string, verified: BackupEntry["verified"] = "never"): BackupEntry {
  return { path: `/b/${name}`, name, size: 1, createdAt: new Date(createdAt), recipe: "x", encrypted: false, verified };
}

test("list shows archives newest first with verified state, and never partial files", async () => {
  testContext();
  const root = tmp();
  const src = join(root, "src");
  mkdirSync(src);
  writeFileSync(join(src, "f"), "x");
  const dir = join(root, "backups");
  await packArchive(src, join(dir, "app-2026-11-01T000000Z.tar.gz"), { startedAt: new Date("2026-11-01T00:00:00Z") });
  await packArchive(src, join(dir, "app-2026-11-02T000000Z.tar.gz"), { startedAt: new Date("2026-11-02T00:00:00Z") });
  writeFileSync(join(dir, ".partial-app-2026-11-03T000000Z.tar.gz.999999"), "half");
  await verifyBackup(join(dir, "app-2026-11-01T000000Z.tar.gz"));
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
  const root = tmp();
  const src = join(root, "src");
  mkdirSync(src);
  writeFileSync(join(src, "f"), "x");
  const dir = join(root, "b");
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

test.run();
