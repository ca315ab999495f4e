// lambdastack-backup with rabbitmq.messages interrupted while the node is stopped for the mnesia
// copy: SIGTERM (the run's own cleanup starts the node before it exits) and SIGKILL (the node
// stays stopped; the next run, even one without rabbitmq.messages, starts it first as the
// cleanup the killed run owed). One private host (ls-54, rabbitmq), so it never collides with
// test/lambdastack*.test.ts (ls-1..ls-6, ls-51..ls-53) or the fault matrix (ls-41, ls-42).
// Run: bash test/run.sh test/lambdastack-rabbitmq.test.ts
// needs: docker lshosts
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { runRecipe } from "../tasks/drills/faults.ts";
import { provision, rmHosts, upHosts, writeInventory, writeSite, type Layout } from "../tasks/drills/lambdastack.ts";
import { needLab } from "../tasks/drills/lab.ts";
import { testContext } from "./helpers.ts";

needLab("docker", "lshosts");
testContext();
const HOST = "ls-54";
const LAYOUT: Layout = { [HOST]: ["rabbitmq"] };
const MARK = "/run/lifeboat-rabbitmq-stopped-for-backup";
const work = mkdtempSync(join(tmpdir(), "lifeboat-ls-rabbitmq-"));
const target = join(work, "target");
const onHost = (...argv: string[]) => spawnSync("docker", ["exec", HOST, ...argv], { encoding: "utf8" }).status === 0;
const active = () => onHost("systemctl", "is-active", "rabbitmq-server");
const marked = () => onHost("test", "-e", MARK);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Polls (bounded) until fn() is true; returns its last answer. */
async function until(fn: () => boolean, tries = 600): Promise<boolean> {
  for (let i = 0; i < tries; i++) if (fn()) return true; else await sleep(100);
  return fn();
}
let args: string[];

test.before(async () => {
  rmHosts([HOST]);
  upHosts([HOST]);
  provision(LAYOUT);
  mkdirSync(target);
  const build = writeInventory(join(work, "build"), LAYOUT);
  const site = writeSite(join(work, "backup.yml"), work, "backup"); // rabbitmq.messages: true
  args = ["-b", build, "-f", site, "-t", target, "-c", "rabbitmq", "--repository.host=local"];
  assert.ok(await until(active), "rabbitmq-server runs");
});

test.after(() => {
  rmHosts([HOST]);
  rmSync(work, { recursive: true, force: true });
});

/** At the "back up" heading: once the recipe has marked the node as stopped for the copy, send sig. */
const signalWhileStopped = (sig: NodeJS.Signals) => async (pid: number) => {
  if (!(await until(marked))) return false;
  process.kill(pid, sig);
  return true;
};

test("SIGTERM while the node is stopped for the mnesia copy: the run's own cleanup starts it before the run exits", async () => {
  const r = await runRecipe("lambdastack-backup", args, {}, { step: /^back up/, fire: signalWhileStopped("SIGTERM") });
  assert.ok(r.firedAt !== undefined, "the signal was sent while the node was stopped");
  assert.is(r.code, 143, r.output.slice(-2500)); // 128 + SIGTERM
  assert.ok(active(), "rabbitmq-server runs again");
  assert.not.ok(marked(), "the marker is gone");
});

test("SIGKILL while the node is stopped for the mnesia copy: it stays stopped; the next run, even without rabbitmq.messages, starts it first (the cleanup the killed run owed)", async () => {
  const k = await runRecipe("lambdastack-backup", args, {}, { step: /^back up/, fire: signalWhileStopped("SIGKILL") });
  assert.is(k.signal, "SIGKILL", k.output.slice(-2500));
  assert.ok(await until(() => !active()), "the node is left stopped by the killed run");
  assert.ok(marked());
  const r = await runRecipe("lambdastack-backup", [...args, "--rabbitmq.messages=false"], {});
  assert.is(r.code, 0, r.output.slice(-2500));
  assert.match(r.output, /cleanup of 'back up rabbitmq .*' \(owed by a run that was killed\)/);
  assert.ok(active(), "rabbitmq-server runs again");
  assert.not.ok(marked(), "the marker is gone");
});

test.run();
