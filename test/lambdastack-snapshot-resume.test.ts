// lambdastack-backup SIGKILLed just after its logging part took the search snapshot (before the
// part was recorded): --resume takes the part again under the same snapshot name, and must use
// the snapshot the killed run left, not be refused ("a snapshot with the same name already
// exists"). One private host (ls-55, logging and kibana), so it never collides with the other
// test/lambdastack*.test.ts (ls-1..ls-6, ls-51..ls-54) or the fault matrix (ls-41, ls-42).
// Run: bash test/run.sh test/lambdastack-snapshot-resume.test.ts
// needs: docker lshosts
import { test } from "uvu";
import * as assert from "uvu/assert";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { runRecipe } from "../tasks/drills/faults.ts";
import { provision, rmHosts, seed, upHosts, writeInventory, writeSite, type Layout } from "../tasks/drills/lambdastack.ts";
import { needLab } from "../tasks/drills/lab.ts";
import { testContext } from "./helpers.ts";

needLab("docker", "lshosts");
testContext();
const HOST = "ls-55";
const LAYOUT: Layout = { [HOST]: ["logging", "kibana"] };
const work = mkdtempSync(join(tmpdir(), "lifeboat-ls-snapshot-"));
const target = join(work, "target");
/** The snapshots in the backup's repository on the host's search node (none when it is not registered yet). */
const snapshots = (): { snapshot: string; state: string }[] => {
  try {
    const out = execFileSync("docker", ["exec", HOST, "curl", "-sSf", "http://127.0.0.1:9200/_snapshot/lambdastack/_all"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    return (JSON.parse(out) as { snapshots: { snapshot: string; state: string }[] }).snapshots;
  } catch {
    return [];
  }
};

test.before(() => {
  rmHosts([HOST]);
  upHosts([HOST]);
  provision(LAYOUT);
  mkdirSync(target);
  seed(LAYOUT, undefined, ["logging"]);
});

test.after(() => {
  rmHosts([HOST]);
  rmSync(work, { recursive: true, force: true });
});

test("a backup SIGKILLed just after its search snapshot was taken is finished by --resume, which uses that snapshot", async () => {
  const build = writeInventory(join(work, "build"), LAYOUT);
  const site = writeSite(join(work, "backup.yml"), work, "backup");
  const args = ["-b", build, "-f", site, "-t", target, "-c", "logging", "--repository.host=local"];
  // at the "back up" heading: wait until the repository's index-N file is written (the snapshot is
  // done), looking into the host's file system directly (every 5 ms), then kill the run outright
  const root = `/proc/${execFileSync("docker", ["inspect", "-f", "{{.State.Pid}}", HOST], { encoding: "utf8" }).trim()}/root`;
  const written = () => {
    try {
      return readdirSync(`${root}/var/lib/elasticsearch-snapshots`).some((n) => /^index-\d+$/.test(n));
    } catch {
      return false;
    }
  };
  const killAfterSnapshot = async (pid: number) => {
    for (let i = 0; i < 6000 && !written(); i++) await new Promise((r) => setTimeout(r, 5));
    if (!written()) return false;
    process.kill(pid, "SIGKILL");
    return true;
  };
  const killed = await runRecipe("lambdastack-backup", args, {}, { step: /^back up /, fire: killAfterSnapshot });
  assert.is(killed.signal, "SIGKILL", killed.output.slice(-3000));
  const taken = snapshots();
  assert.is(taken.length, 1, JSON.stringify(taken));
  const r = await runRecipe("lambdastack-backup", [...args, "--resume"], {});
  assert.is(r.code, 0, r.output.slice(-3000));
  assert.equal(snapshots().map((s) => s.snapshot), [taken[0].snapshot], "the killed run's snapshot is the one kept and used");
  assert.ok(readdirSync(target, { recursive: true }).some((n) => String(n).includes("elasticsearch_snapshot")), `no elasticsearch_snapshot archive in ${target}`);
});

test.run();
