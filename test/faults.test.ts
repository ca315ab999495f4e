// needs: docker sshd ceph slapd
// The fault matrix at a reduced size, for every recipe (tasks/drills/faults.ts; the full size is
// `make fault-matrix`): per recipe a normal run, one SIGINT and one SIGTERM at seeded random steps,
// 3 SIGKILLs at seeded random moments, one remote dying mid-step and one full folder; each case is
// then continued (--resume, or a fresh run for hoss-backup) and the result verified.
// LIFEBOAT_FAULTS_SEED=N replays a run (the seed is printed); LIFEBOAT_FAULTS_RECIPES=a,b narrows it.
// Run: bash test/run.sh test/faults.test.ts
import { test } from "uvu";
import * as assert from "uvu/assert";
import process from "node:process";
import { runMatrix, summaryTable, SYSTEMS, type CaseResult } from "../tasks/drills/faults.ts";
import { cleanupTmp, testContext, tmp } from "./helpers.ts";

const seed = Number(process.env.LIFEBOAT_FAULTS_SEED) || Math.floor(Math.random() * 1e9);
const recipes = process.env.LIFEBOAT_FAULTS_RECIPES?.split(",").filter(Boolean);
const log = (l: string) => process.stderr.write(l + "\n");
let results: CaseResult[] = [];

test.before(async () => {
  const { ctx } = testContext({ name: "faults.test" });
  const r = await runMatrix(SYSTEMS, { size: "reduced", kills: 3, seed, recipes, work: tmp("lifeboat-faults-"), ctx, log });
  results = r.results;
  for (const l of summaryTable(r.results, r.ms)) log(l);
});
test.after(() => cleanupTmp());

const failures = (kind: string) => results.filter((r) => r.c.kind === kind && !r.held).map((r) => `${r.recipe}: ${r.c.label} (seed ${seed}):\n  ${r.problems.join("\n  ")}`).join("\n");
const all = () => recipes ?? SYSTEMS.flatMap((s) => s.entries.map((e) => e.recipe));

test("every recipe runs normally and its result verifies (the baseline the faults are measured against)", () => {
  assert.equal(results.filter((r) => r.c.kind === "baseline").map((r) => r.recipe), all());
  assert.is(failures("baseline"), "");
});

test("SIGINT and SIGTERM at a step's start or middle exit 130/143 promptly, stop the children, release the lock, and --resume completes", () => {
  assert.is(results.filter((r) => r.c.kind === "signal").length, 2 * all().length);
  assert.is(failures("signal"), "");
});

test("SIGKILL at random moments leaves nothing that looks like a complete backup; the stale lock is taken over and the next run completes", () => {
  assert.is(results.filter((r) => r.c.kind === "kill").length, 3 * all().length);
  assert.is(failures("kill"), "");
});

test("a remote dying mid-step fails the run naming it, without hanging, and the retry completes once it is back", () => {
  assert.ok(results.filter((r) => r.c.kind === "remote").length >= all().length);
  assert.is(failures("remote"), "");
});

test("a full backups or staging folder fails with 'no space left', leaves nothing under a final name, and the retry completes", () => {
  assert.ok(results.filter((r) => r.c.kind === "enospc").length >= all().length);
  assert.is(failures("enospc"), "");
});

test.run();
