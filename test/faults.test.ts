// needs: docker sshd ceph slapd afs lshosts pg
// The fault matrix at a reduced size, for every recipe (tasks/drills/faults.ts; the full size is
// `make fault-matrix`), on smaller fixtures: per recipe a normal run and one interrupt (a SIGINT or
// SIGTERM in the middle of a seeded step, or a SIGKILL at a seeded moment: each system with two or
// more recipes gets both); per system one remote dying mid-step and one full folder, on recipes the
// seed picks (printed), plus the cases the table pins as regressions. Each case is then continued
// (--resume, or a fresh run for recipes without it) and the result verified.
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
const chosen = (sys: (typeof SYSTEMS)[number]) => sys.entries.filter((e) => !recipes || recipes.includes(e.recipe));
const all = () => SYSTEMS.flatMap((s) => chosen(s).map((e) => e.recipe));
/** Systems (with the recipes run) that lack a case of this kind, where one could run. */
const systemsWithout = (kind: string, could: (e: (typeof SYSTEMS)[number]["entries"][number]) => boolean) =>
  SYSTEMS.filter((s) => chosen(s).some(could) && !results.some((r) => r.c.kind === kind && chosen(s).some((e) => e.recipe === r.recipe))).map((s) => s.name);

test("every recipe runs normally and its result verifies (the baseline the faults are measured against)", () => {
  assert.equal(results.filter((r) => r.c.kind === "baseline").map((r) => r.recipe), all());
  assert.is(failures("baseline"), "");
});

test("every recipe is interrupted once, and every system is both signalled and killed", () => {
  const interrupts = results.filter((r) => r.c.kind === "signal" || r.c.kind === "kill");
  assert.equal(interrupts.map((r) => r.recipe), all());
  assert.equal(systemsWithout("signal", () => true).filter((n) => chosen(SYSTEMS.find((s) => s.name === n)!).length > 1), []);
  assert.equal(systemsWithout("kill", () => true).filter((n) => chosen(SYSTEMS.find((s) => s.name === n)!).length > 1), []);
});

test("SIGINT or SIGTERM in the middle of a step exits 130/143 promptly, stops the children, releases the lock, and --resume completes", () => {
  assert.ok(results.filter((r) => r.c.kind === "signal").every((r) => r.c.where === "mid"));
  assert.is(failures("signal"), "");
});

test("SIGKILL at a random moment leaves nothing that looks like a complete backup; the stale lock is taken over and the next run completes", () => {
  assert.is(failures("kill"), "");
});

test("a remote dying mid-step fails the run naming it, without hanging, and the retry completes once it is back (one per system)", () => {
  // the seeded ones, and the regressions pinned in the table (deis-restore: a cut-off load of dump_all.sql)
  assert.equal(systemsWithout("remote", (e) => e.remotes.length > 0), []);
  assert.is(failures("remote"), "");
});

test("a full backups or staging folder fails with 'no space left', leaves nothing under a final name, and the retry completes (one per system)", () => {
  assert.equal(systemsWithout("enospc", (e) => e.folders.length > 0), []);
  assert.is(failures("enospc"), "");
});

test.run();
