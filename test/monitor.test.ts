// Monitoring: the status check over a backups folder (real archives and sidecars) or any list of
// records (an off-site listing), its exit code and messages, and the node_exporter textfile.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { backupArchive, backupStatus, ExitCode, folderRecords, metricsText, parseAge, which, writeTextfile, type BackupRecord } from "../lib/internal.ts";
import { cleanupTmp, testContext, tmp } from "./helpers.ts";

const RUN = new URL("../tasks/run.ts", import.meta.url).pathname;
const HOUR = 3600 * 1000;

test.after.each(() => cleanupTmp());

/** A backups folder with real archives of `name`, taken `hoursAgo` each; `unverified` ones lose their .verified stamp. */
async function folder(backups: { name: string; hoursAgo: number; unverified?: boolean }[]): Promise<string> {
  testContext();
  const src = join(tmp(), "src");
  mkdirSync(src);
  writeFileSync(join(src, "f"), "some data");
  const dir = join(tmp(), "backups");
  for (const b of backups) {
    const r = await backupArchive(src, { folder: dir, name: b.name, startedAt: new Date(Date.now() - b.hoursAgo * HOUR), meta: {}, recipe: b.name });
    if (b.unverified) rmSync(`${r.path}.verified`);
  }
  return dir;
}

function task(...args: string[]) {
  const r = spawnSync("node", ["--import=tsx", RUN, "status", ...args], { encoding: "utf8", env: { ...process.env, CI: "1", NO_COLOR: "1" } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test("a recent verified backup passes; one older than --max-age fails saying how old, per recipe", async () => {
  const dir = await folder([{ name: "deis-backup", hoursAgo: 2 }, { name: "hoss-backup", hoursAgo: 30 }, { name: "hoss-backup", hoursAgo: 54 }]);
  const st = backupStatus(folderRecords(dir), { location: dir, maxAgeSeconds: parseAge("26h") });
  assert.equal(st.map((s) => [s.recipe, s.ok, s.count]), [["deis-backup", true, 1], ["hoss-backup", false, 2]]);
  assert.match(st[0].message, new RegExp(`^deis-backup in ${dir}: verified backup 2h old \\(max 1d 2h\\): deis-backup-.*\\.tar\\.gz, taken `));
  assert.match(st[1].message, /hoss-backup in .*: the newest verified backup is 1d 6h old \(max 1d 2h\): hoss-backup-/);

  const ok = task(dir, "--max-age", "26h", "--recipe", "deis-backup");
  assert.is(ok.code, 0, ok.err);
  assert.match(ok.out, /✔ deis-backup in .*: verified backup 2h old/);
  const stale = task(dir, "--max-age=26h");
  assert.is(stale.code, ExitCode.Stale, stale.err);
  assert.match(stale.out, /✖ hoss-backup in .*1d 6h old/);
  assert.match(stale.err, /1 of 2 backup check\(s\) failed: hoss-backup/);
});

test("only an unverified backup, an empty folder, or a missing recipe fails the check", async () => {
  const dir = await folder([{ name: "deis-backup", hoursAgo: 1, unverified: true }]);
  const [s] = backupStatus(folderRecords(dir), { location: dir, maxAgeSeconds: 26 * 3600 });
  assert.is(s.ok, false);
  assert.match(s.message, /none of its 1 backup\(s\) passed verification .*run archive:verify/);
  const empty = join(tmp(), "empty");
  assert.equal(backupStatus(folderRecords(empty), { location: empty, maxAgeSeconds: 60 }).map((x) => [x.ok, x.message]), [[false, `no backups in ${empty}`]]);
  assert.is(task(empty).code, ExitCode.Stale);
  const missing = backupStatus(folderRecords(dir), { location: dir, maxAgeSeconds: 26 * 3600, recipe: "hoss-backup" });
  assert.equal(missing.map((x) => [x.recipe, x.ok, x.message]), [["hoss-backup", false, `hoss-backup in ${dir}: no backup at all`]]);
});

test("a newer unverified backup does not hide an old verified one, and is named", async () => {
  const dir = await folder([{ name: "app", hoursAgo: 1, unverified: true }, { name: "app", hoursAgo: 3 }]);
  const [s] = backupStatus(folderRecords(dir), { location: dir, maxAgeSeconds: 2 * 3600 });
  assert.is(s.ok, false);
  assert.match(s.message, /newest verified backup is 3h old .*; a newer backup is not verified: app-/);
  assert.is(s.newest!.verified, false);
});

test("any list of records works: an off-site listing without recipe names is grouped by archive name", () => {
  const now = new Date("2026-11-22T12:00:00Z");
  const offsite: BackupRecord[] = [
    { name: "deis-backup-2026-11-22T020000Z.tar.gz.age", recipe: "", time: new Date("2026-11-22T02:00:00Z"), size: 10, verified: true },
    { name: "deis-backup-2026-11-21T020000Z.tar.gz.age", recipe: "", time: new Date("2026-11-21T02:00:00Z"), size: 9, verified: true },
    { name: "hoss-backup-2026-11-19T020000Z.tar.gz", recipe: "", time: new Date("2026-11-19T02:00:00Z"), size: 5, verified: true },
  ];
  const st = backupStatus(offsite, { location: "s3://offsite/lifeboat", maxAgeSeconds: 26 * 3600, now });
  assert.equal(st.map((s) => [s.recipe, s.ok, s.count, s.ageSeconds]), [["deis-backup", true, 2, 10 * 3600], ["hoss-backup", false, 1, 3 * 86400 + 10 * 3600]]);
});

/** Parses the text exposition format strictly enough to catch what Prometheus would reject. */
function parseMetrics(text: string) {
  const help = new Map<string, string>();
  const type = new Map<string, string>();
  const samples: { name: string; labels: Record<string, string>; value: number }[] = [];
  assert.ok(text.endsWith("\n"), "ends with a newline");
  for (const line of text.slice(0, -1).split("\n")) {
    let m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
    if (m) {
      const map = m[1] === "HELP" ? help : type;
      assert.not.ok(map.has(m[2]), `one ${m[1]} per metric: ${m[2]}`);
      map.set(m[2], m[3]);
      if (m[1] === "TYPE") assert.is(m[3], "gauge");
      continue;
    }
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (-?[0-9.e+]+)$/.exec(line);
    assert.ok(m, `a sample line: ${line}`);
    assert.ok(type.has(m![1]) && help.has(m![1]), `TYPE and HELP before ${m![1]}`);
    const labels: Record<string, string> = {};
    for (const l of (m![2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g)) labels[l[1]] = l[2].replace(/\\n/g, "\n").replace(/\\(["\\])/g, "$1");
    samples.push({ name: m![1], labels, value: Number(m![3]) });
  }
  return samples;
}

test("--textfile writes node_exporter's format atomically, per recipe and folder, with HELP and TYPE", async () => {
  const dir = await folder([{ name: "deis-backup", hoursAgo: 1 }, { name: "deis-backup", hoursAgo: 0.5, unverified: true }]);
  const prom = join(tmp(), "textfile", "lifeboat.prom");
  mkdirSync(join(prom, ".."));
  const r = task(dir, "--textfile", prom);
  assert.is(r.code, 0, r.err);
  assert.equal(readdirSync(join(prom, "..")), ["lifeboat.prom"], "no partial file left");
  assert.is(statSync(prom).mode & 0o777, 0o644);
  const text = readFileSync(prom, "utf8");
  const samples = parseMetrics(text);
  const get = (name: string) => samples.find((s) => s.name === name && s.labels.recipe === "deis-backup" && s.labels.location === dir)?.value;
  const records = folderRecords(dir);
  const verified = records.find((x) => x.verified)!;
  assert.is(get("lifeboat_backup_last_success_timestamp_seconds"), verified.time.getTime() / 1000);
  assert.is(get("lifeboat_backup_last_size_bytes"), verified.size);
  assert.ok(get("lifeboat_backup_last_duration_seconds")! >= 3600, "from the manifest's start and end");
  assert.is(get("lifeboat_backup_last_verified"), 0, "the newest one is not verified");
  assert.is(get("lifeboat_backup_count"), 2);
  assert.is(get("lifeboat_backup_ok"), 1);
  if (which("promtool")) {
    const check = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
    assert.is(check.status, 0, check.stdout + check.stderr);
  }
});

test("label values are escaped, and a stale folder still gets its metrics (and exit 6)", () => {
  const { ctx } = testContext();
  const weird = 'a "quoted"\\ folder\nnext';
  const st = backupStatus([{ name: "x-2026-11-01T000000Z.tar.gz", recipe: "x", time: new Date(0), size: 1, verified: true }], { location: weird, maxAgeSeconds: 60 });
  const samples = parseMetrics(metricsText(st));
  assert.is(samples.find((s) => s.name === "lifeboat_backup_ok")!.labels.location, weird);
  assert.is(samples.find((s) => s.name === "lifeboat_backup_ok")!.value, 0);
  const out = join(tmp(), "m.prom");
  writeTextfile(out, metricsText(st), { ctx });
  assert.ok(readFileSync(out, "utf8").includes('location="a \\"quoted\\"\\\\ folder\\nnext"'));
});

test("dry-run prints the textfile and writes nothing; --json gives the statuses", async () => {
  const dir = await folder([{ name: "app", hoursAgo: 1 }]);
  const prom = join(tmp(), "lifeboat.prom");
  const r = task(dir, "--textfile", prom, "--dry-run", "--json");
  assert.is(r.code, 0, r.err);
  assert.equal(readdirSync(join(prom, "..")), []);
  assert.match(r.err, /\[dry-run\] would write .*lifeboat\.prom:\n    # HELP lifeboat_backup_last_success_timestamp_seconds/);
  const json = JSON.parse(r.out);
  assert.equal(json.map((s: { recipe: string; ok: boolean; count: number }) => [s.recipe, s.ok, s.count]), [["app", true, 1]]);
  assert.match(json[0].lastVerified.time, /^\d{4}-\d\d-\d\dT/);
});

test("--max-age that is not a time span is a usage error", () => {
  const r = task(tmp(), "--max-age", "yesterday");
  assert.is(r.code, 2);
  assert.match(r.err, /'yesterday' is not a time span/);
});

test.run();
