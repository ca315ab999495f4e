// needs: docker sshd ceph slapd
// The fault matrix at a reduced size, for every recipe (tasks/drills/faults.ts; the full size is
// `make fault-matrix`), on smaller fixtures: per recipe a normal run, one SIGINT or SIGTERM in the
// middle of a seeded step and one SIGKILL at a seeded moment; across the file one remote dying
// mid-step and one full folder, on recipes the seed picks (printed), plus the cases the table pins
// as regressions. Each case is then continued
// (--resume, or a fresh run for hoss-backup) and the result verified. About 5 minutes.
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
  const r = await runMatrix(SYSTEMS, { size: "reduced", kills: 1, seed, recipes, work: tmp("lifeboat-faults-"), ctx, log });
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

test("SIGINT or SIGTERM in the middle of a step exits 130/143 promptly, stops the children, releases the lock, and --resume completes", () => {
  const signals = results.filter((r) => r.c.kind === "signal");
  assert.equal(signals.map((r) => r.recipe), all());
  assert.ok(signals.every((r) => r.c.where === "mid"));
  assert.is(failures("signal"), "");
});

test("SIGKILL at a random moment leaves nothing that looks like a complete backup; the stale lock is taken over and the next run completes", () => {
  assert.equal(results.filter((r) => r.c.kind === "kill").map((r) => r.recipe), all());
  assert.is(failures("kill"), "");
});

test("a remote dying mid-step fails the run naming it, without hanging, and the retry completes once it is back", () => {
  // the seeded one, and the regressions pinned in the table (deis-restore: a cut-off load of dump_all.sql)
  assert.ok(results.filter((r) => r.c.kind === "remote").length >= 1);
  assert.is(failures("remote"), "");
});

test("a full backups or staging folder fails with 'no space left', leaves nothing under a final name, and the retry completes", () => {
  assert.is(results.filter((r) => r.c.kind === "enospc").length, 1);
  assert.is(failures("enospc"), "");
});

test.run();
