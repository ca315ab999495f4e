// The HCoop remote repository without a cell: day folders (synthetic manifests and files) copied
// by lib/mirror.ts to the lab's sshd and to a local folder, file by file, each verified; a full
// target refused before anything is sent; hcoop-list, hcoop-get and hcoop-prune (retention by
// weekly chain, a dry run unless --yes) as an operator runs them.
// Run: bash test/run.sh test/hcoop-remote.test.ts
// needs: sshd
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { mirrorGet, mirrorList, mirrorPut, mirrorRemove, type MirrorFile } from "../lib/mod.ts";
import { planRetention, remoteDays, type DayManifest, type DumpEntry } from "../recipes/hcoop.ts";
import { runRecipe } from "../tasks/drills/hoss.ts";
import { needLab } from "../tasks/drills/lab.ts";
import { cleanupTmp, testContext, tmp } from "./helpers.ts";

const lab = needLab("sshd");
const ssh = { identityFile: lab.LAB_SSH_KEY, knownHostsFile: lab.LAB_SSH_KNOWN_HOSTS };
const sshUrl = (dir: string) => `ssh://${lab.LAB_SSH_USER}@${lab.LAB_SSH_HOST}:${lab.LAB_SSH_PORT}${dir}`;
let disk = "";
test.after(() => {
  if (disk) spawnSync("umount", [disk]);
  cleanupTmp();
});

/** A day folder: for each [volume, kind, chain], a file of random bytes and its manifest entry; the manifest written last. */
function makeDay(root: string, date: string, vols: [string, "full" | "incremental", string][], size = 3000): DayManifest {
  const dir = join(root, date);
  mkdirSync(dir, { recursive: true });
  const files: Record<string, DumpEntry> = {};
  for (const [volume, kind, chain] of vols) {
    const data = randomBytes(kind === "full" ? size : size / 10);
    const name = `${date}-${volume}.dump.gz.age`;
    writeFileSync(join(dir, name), data);
    files[name] = { volume, kind, chain, since: kind === "full" ? 0 : 1, cloneTime: 2, bytes: data.length, sha256: createHash("sha256").update(data).digest("hex"), plainBytes: data.length * 3, diskused: 1 };
  }
  const m: DayManifest = { format: "lifeboat-hcoop/1", date, startedAt: "", finishedAt: "", encryption: "age", files, excluded: [] };
  writeFileSync(join(dir, `${date}-manifest.json`), JSON.stringify(m));
  return m;
}

function mirrorFiles(root: string, m: DayManifest): MirrorFile[] {
  const man = readFileSync(join(root, m.date, `${m.date}-manifest.json`));
  return [...Object.entries(m.files).map(([name, e]) => ({ name, sha256: e.sha256, bytes: e.bytes })), { name: `${m.date}-manifest.json`, sha256: createHash("sha256").update(man).digest("hex"), bytes: man.length }];
}

// A week where user.b's chain broke on 11.12 (a midweek full) and user.a's 11.18 dump is an incremental of 11.15.
const WEEKS: [string, [string, "full" | "incremental", string][]][] = [
  ["2026.11.08", [["user.a", "full", "2026.11.08"], ["user.b", "full", "2026.11.08"]]],
  ["2026.11.10", [["user.a", "incremental", "2026.11.08"], ["user.b", "incremental", "2026.11.08"]]],
  ["2026.11.12", [["user.a", "incremental", "2026.11.08"], ["user.b", "full", "2026.11.12"]]],
  ["2026.11.15", [["user.a", "full", "2026.11.15"], ["user.b", "full", "2026.11.15"]]],
  ["2026.11.16", [["user.a", "incremental", "2026.11.15"], ["user.b", "incremental", "2026.11.15"]]],
  ["2026.11.18", [["user.a", "incremental", "2026.11.15"], ["user.b", "full", "2026.11.18"]]],
];

test("retention by weekly chain keeps the newest chains and every full a kept incremental needs", () => {
  const root = tmp();
  const days = WEEKS.map(([d, v]) => makeDay(root, d, v));
  assert.equal(planRetention(days, 1), { keep: ["2026.11.15", "2026.11.18"], drop: ["2026.11.08", "2026.11.10", "2026.11.12", "2026.11.16"] });
  assert.equal(planRetention(days, 2).keep, ["2026.11.15", "2026.11.16", "2026.11.18"]);
  assert.equal(planRetention(days, 0).drop, []);
});

for (const kind of ["ssh", "local"] as const) {
  test(`day folders go to ${kind === "ssh" ? "ssh:// (the lab's sshd)" : "a local path"} file by file, each verified there; a second copy sends nothing; get checks the sha256`, async () => {
    testContext();
    const root = tmp();
    const remote = join(tmp(), "remote dir 'x'");
    const to = kind === "ssh" ? sshUrl(remote) : remote;
    const m = makeDay(root, "2026.11.15", [["user.a", "full", "2026.11.15"], ["user.-dash", "full", "2026.11.15"]]);
    const files = mirrorFiles(root, m);
    const r1 = await mirrorPut(join(root, m.date), to, m.date, files, { ssh });
    assert.equal(r1.sent, files.map((f) => f.name));
    assert.equal(readdirSync(join(remote, m.date)).filter((n) => !n.endsWith(".sha256")).sort(), files.map((f) => f.name).sort());
    const r2 = await mirrorPut(join(root, m.date), to, m.date, files, { ssh });
    assert.equal([r2.sent, r2.skipped.length], [[], files.length]);
    const list = await mirrorList(to, { ssh });
    assert.equal(list.get(m.date)!.map((f) => f.name), files.map((f) => f.name).sort());
    const f = files[0];
    const got = await mirrorGet(to, m.date, f.name, join(tmp(), f.name), f, { ssh });
    assert.is(got.bytes, f.bytes);
    // a damaged remote copy: refused, nothing kept
    const remoteFile = join(remote, m.date, f.name);
    const bad = readFileSync(remoteFile);
    bad[10] ^= 1;
    writeFileSync(remoteFile, bad);
    const into = tmp();
    try {
      await mirrorGet(to, m.date, f.name, join(into, f.name), f, { ssh });
      assert.unreachable("a damaged copy was accepted");
    } catch (e) {
      assert.match((e as Error).message, /sha256.*damaged/);
    }
    assert.equal(readdirSync(into), []);
  });
}

for (const kind of ["ssh", "local"] as const) {
  test(`a day folder removed at ${kind === "ssh" ? "ssh://" : "a local path"} loses its manifest first: a removal that fails part-way leaves a folder that no longer reads as a day`, async () => {
    testContext();
    const root = tmp();
    const remote = join(tmp(), "remote");
    const to = kind === "ssh" ? sshUrl(remote) : remote;
    const m = makeDay(root, "2026.11.08", [["user.a", "full", "2026.11.08"], ["user.b", "full", "2026.11.08"], ["user.c", "full", "2026.11.08"]]);
    await mirrorPut(join(root, m.date), to, m.date, mirrorFiles(root, m), { ssh });
    // every dump (and sidecar) undeletable: only the manifest and its sidecar can go
    const stuck = readdirSync(join(remote, m.date)).filter((n) => !n.startsWith(`${m.date}-manifest.json`)).map((n) => join(remote, m.date, n));
    assert.is(spawnSync("chattr", ["+i", ...stuck]).status, 0);
    try {
      await mirrorRemove(to, [m.date], { ssh, marker: (d) => `${d}-manifest.json` });
      assert.unreachable("the removal of undeletable files succeeded");
    } catch (e) {
      assert.match((e as Error).message, /off-site remove in/);
    } finally {
      spawnSync("chattr", ["-i", ...stuck]);
    }
    assert.not.ok(existsSync(join(remote, m.date, `${m.date}-manifest.json`)), "the manifest went first");
    assert.equal(await remoteDays(to, { ssh }), [], "the folder left behind is not a day");
    await mirrorRemove(to, [m.date], { ssh, marker: (d) => `${d}-manifest.json` }); // run again: it goes
    assert.not.ok(existsSync(join(remote, m.date)));
  });
}

test("a full remote repository is refused BEFORE anything is sent (ssh and local), naming the free space", async () => {
  testContext();
  disk = join(tmp(), "full");
  mkdirSync(disk);
  const mount = spawnSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", disk]);
  assert.is(mount.status, 0, String(mount.stderr));
  const root = tmp();
  const m = makeDay(root, "2026.11.15", [["user.big", "full", "2026.11.15"]], 2 << 20);
  for (const to of [sshUrl(`${disk}/repo`), `${disk}/repo`]) {
    try {
      await mirrorPut(join(root, m.date), to, m.date, mirrorFiles(root, m), { ssh });
      assert.unreachable("a copy into 1 MiB was started");
    } catch (e) {
      assert.match((e as Error).message, /not enough space at .*free, this copy needs about .*nothing was sent/);
    }
    assert.equal(readdirSync(disk), [], "nothing was sent");
  }
});

test("hcoop-list (days, one day, --json, --remote), hcoop-get and hcoop-prune (a dry run unless --yes) as an operator runs them", async () => {
  const root = tmp();
  const remote = join(tmp(), "repo");
  const days = WEEKS.map(([d, v]) => makeDay(root, d, v));
  const site = join(tmp(), "site.yaml");
  writeFileSync(site, [
    `backups: { dir: ${JSON.stringify(root)} }`, "afs: { server: none }", "age: { passphrase: unused-here-passphrase }",
    `offsite: { to: [${JSON.stringify(remote)}] }`, // a local path here (ssh:// is proven above, and each ssh call costs)
    `state-dir: ${JSON.stringify(join(root, ".state"))}`, "",
  ].join("\n"));
  testContext();
  for (const m of days) await mirrorPut(join(root, m.date), remote, m.date, mirrorFiles(root, m));
  const list = (args: string[]) => spawnSync(process.execPath, ["--import=tsx", "recipes/hcoop-list.ts", ...args, "--config", site], { encoding: "utf8", env: { ...process.env, NO_COLOR: "1" } });
  let r = list(["--json"]);
  assert.is(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { days: { date: string; full: number; incremental: number; chains: string[] }[] };
  assert.equal(j.days.map((d) => d.date), WEEKS.map(([d]) => d));
  assert.equal(j.days[2], { ...j.days[2], full: 1, incremental: 1, chains: ["2026.11.08", "2026.11.12"] });
  r = list(["2026.11.18", "--remote"]);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /incremental .*2026\.11\.18-user\.a\.dump\.gz\.age\s+\(chain 2026\.11\.15\)/);
  assert.match(r.stdout, /full .*2026\.11\.18-user\.b\.dump\.gz\.age/);

  // get: the local copy lost, fetched back by volume name, verified
  const lost = join(root, "2026.11.16", "2026.11.16-user.b.dump.gz.age");
  const want = readFileSync(lost);
  spawnSync("rm", ["-f", lost]);
  let x = await runRecipe("hcoop-get", ["2026.11.16", "user.b.dump.gz.age", "--config", site]);
  assert.is(x.code, 0, x.output);
  assert.equal(readFileSync(lost), want);

  // prune: the plan only, then --yes
  x = await runRecipe("hcoop-prune", ["--retention.weeks=1", "--config", site]);
  assert.is(x.code, 0, x.output);
  assert.match(x.output, /would remove 2026\.11\.08, 2026\.11\.10, 2026\.11\.12, 2026\.11\.16/);
  assert.ok(existsSync(join(root, "2026.11.08")) && existsSync(join(remote, "2026.11.08")), "nothing removed without --yes");
  x = await runRecipe("hcoop-prune", ["--retention.weeks=1", "--yes", "--config", site]);
  assert.is(x.code, 0, x.output);
  assert.equal(readdirSync(root).filter((n) => /^\d/.test(n)).sort(), ["2026.11.15", "2026.11.18"]);
  assert.equal(readdirSync(remote).sort(), ["2026.11.15", "2026.11.18"]);
});

test.run();
