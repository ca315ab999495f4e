// lambdastack-recovery killed (SIGKILL) just after its `systemctl stop postgresql`: --resume finishes
// it. The primary is found once before any host is touched and journaled, so the resumed run does
// not ask the stopped server. One private host (ls-52, postgresql), so it never collides with
// test/lambdastack*.test.ts (ls-1..ls-6) or the fault matrix (ls-41, ls-42).
// Run: bash test/run.sh test/lambdastack-resume.test.ts
// needs: docker lshosts
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { runRecipe } from "../tasks/drills/faults.ts";
import { onHost, provision, rmHosts, upHosts, writeInventory, writeSite, type Layout } from "../tasks/drills/lambdastack.ts";
import { needLab } from "../tasks/drills/lab.ts";
import { testContext } from "./helpers.ts";

needLab("docker", "lshosts");
testContext();
const HOST = "ls-52";
const LAYOUT: Layout = { [HOST]: ["postgresql"] };
const work = mkdtempSync(join(tmpdir(), "lifeboat-ls-resume-"));
const target = join(work, "target");
const psql = (sql: string) => onHost(HOST, "runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d postgres", sql).trim();
const active = () => spawnSync("docker", ["exec", HOST, "systemctl", "is-active", "postgresql"], { encoding: "utf8" }).stdout.trim() === "active";

test.before(() => {
  rmHosts([HOST]);
  upHosts([HOST]);
  provision(LAYOUT);
  mkdirSync(target);
  for (let i = 0; i < 300 && !active(); i++) spawnSync("sleep", ["0.1"]);
  psql("CREATE TABLE lifeboat_marker (v text); INSERT INTO lifeboat_marker VALUES ('kept');");
});

test.after(() => {
  rmHosts([HOST]);
  rmSync(work, { recursive: true, force: true });
});

test("a recovery SIGKILLed just after 'systemctl stop postgresql' is finished by --resume (the primary was journaled)", async () => {
  const build = writeInventory(join(work, "build"), LAYOUT);
  const siteB = writeSite(join(work, "backup.yml"), work, "backup");
  const siteR = writeSite(join(work, "recovery.yml"), work, "recovery");
  const local = ["-t", target, "-c", "postgresql", "--repository.host=local"];
  const b = await runRecipe("lambdastack-backup", ["-b", build, "-f", siteB, ...local], {});
  assert.is(b.code, 0, b.output.slice(-3000));
  psql("DROP TABLE lifeboat_marker;");

  // at the "recover" heading: wait until the recipe has stopped the server, then kill it outright
  const killAfterStop = async (pid: number) => {
    for (let i = 0; i < 600 && active(); i++) await new Promise((r) => setTimeout(r, 50));
    if (active()) return false;
    process.kill(pid, "SIGKILL");
    return true;
  };
  const args = ["-b", build, "-f", siteR, ...local, "--yes"];
  const killed = await runRecipe("lambdastack-recovery", args, {}, { step: /^recover /, fire: killAfterStop });
  assert.is(killed.signal, "SIGKILL", killed.output.slice(-3000));
  const r = await runRecipe("lambdastack-recovery", [...args, "--resume"], {});
  assert.is(r.code, 0, r.output.slice(-3000));
  assert.not.match(r.output, /no PostgreSQL primary/);
  assert.ok(active(), "postgresql runs again");
  assert.is(psql("SELECT v FROM lifeboat_marker;"), "kept");
});

test("a recovery whose verify refuses one archive keeps those it verified, and --resume recovers from them once that archive is put right", async () => {
  provision({ [HOST]: ["haproxy"] });
  const layout: Layout = { [HOST]: ["postgresql", "haproxy"] };
  const build = writeInventory(join(work, "build-two"), layout);
  const siteB = writeSite(join(work, "backup-two.yml"), work, "backup");
  const siteR = writeSite(join(work, "recovery-two.yml"), work, "recovery");
  const target2 = join(work, "target-two");
  mkdirSync(target2);
  const local = ["-t", target2, "-c", "load_balancer,postgresql", "--repository.host=local"];
  psql("CREATE TABLE lifeboat_verify (v text); INSERT INTO lifeboat_verify VALUES ('back');");
  const b = await runRecipe("lambdastack-backup", ["-b", build, "-f", siteB, ...local], {});
  assert.is(b.code, 0, b.output.slice(-3000));
  psql("DROP TABLE lifeboat_verify;");
  const lb = readdirSync(target2).find((n) => /^haproxy_etc_.*\.tar\.gz$/.test(n));
  assert.ok(lb, readdirSync(target2).join(", "));
  const good = readFileSync(join(target2, lb!));
  const bad = Buffer.from(good);
  bad[bad.length >> 1] ^= 0xff;
  writeFileSync(join(target2, lb!), bad);

  const args = ["-b", build, "-f", siteR, ...local, "--yes"];
  const refused = await runRecipe("lambdastack-recovery", args, {});
  assert.is(refused.code, 3, refused.output.slice(-3000));
  assert.match(refused.output, /kept the verified archives in .* for --resume/);
  writeFileSync(join(target2, lb!), good);
  const r = await runRecipe("lambdastack-recovery", [...args, "--resume"], {});
  assert.is(r.code, 0, r.output.slice(-3000));
  assert.match(r.output, /postgresql: done in an earlier run/);
  assert.ok(active(), "postgresql runs");
  assert.is(psql("SELECT v FROM lifeboat_verify;"), "back");
});

test.run();
