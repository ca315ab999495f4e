// The failure hook (notify.command): a failed or interrupted recipe run hands its summary to the
// hook on stdin, in LIFEBOAT_* env vars and in a JSON file, without a secret; a hook that fails or
// hangs never changes the run's exit code. The recipe is test/fixtures/mini-recipe.ts, run as a child.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import YAML from "yaml";
import { pidAlive } from "../lib/internal.ts";
import { cleanupTmp, tmp } from "./helpers.ts";

const MINI = new URL("./fixtures/mini-recipe.ts", import.meta.url).pathname;
const TOKEN = "tok-77c1e0a9f3";

test.after.each(() => cleanupTmp());

/** A site file for the mini recipe with a notify block. */
function site(notify: Record<string, unknown>) {
  const root = tmp();
  const file = join(root, "site.yaml");
  writeFileSync(file, YAML.stringify({ dir: join(root, "work"), "state-dir": join(root, "state"), notify }));
  return { root, file };
}

/** A hook that saves its stdin, its environment and the summary file. */
const recorder = (got: string) => ["sh", "-c", 'mkdir -p "$0" && cat > "$0/stdin" && env > "$0/env" && cp "$LIFEBOAT_SUMMARY_FILE" "$0/summary.json"', got];

function run(config: string, env: Record<string, string> = {}, args: string[] = []) {
  const r = spawnSync("node", ["--import=tsx", MINI, "--config", config, ...args], { encoding: "utf8", env: { ...process.env, LIFEBOAT_TOKEN: TOKEN, CI: "1", ...env } });
  return { code: r.status, out: r.stdout + r.stderr };
}

test("a failed run hands the hook its summary on stdin, in LIFEBOAT_* vars and a JSON file, with no secret", () => {
  const got = join(tmp(), "got");
  const s = site({ command: recorder(got) });
  const r = run(s.file, { MINI_FAIL: "use" });
  assert.is(r.code, 1, r.out);
  assert.match(r.out, /failure hook done/);
  const stdin = readFileSync(join(got, "stdin"), "utf8");
  assert.match(stdin, /^lifeboat: mini failed on .* \(exit 1\)/);
  assert.match(stdin, /step:     use the token \(use\)/);
  assert.match(stdin, /error:    step 'use the token' failed: failed on purpose with \*\*\*/);
  const env = Object.fromEntries(readFileSync(join(got, "env"), "utf8").trim().split("\n").map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
  assert.is(env.LIFEBOAT_RECIPE, "mini");
  assert.is(env.LIFEBOAT_EXIT_CODE, "1");
  assert.is(env.LIFEBOAT_FAILED_STEP, "use");
  assert.is(env.LIFEBOAT_STATUS, "failed");
  assert.not.ok("LIFEBOAT_TOKEN" in env, "the recipe's secret env var is not passed on");
  const summary = JSON.parse(readFileSync(join(got, "summary.json"), "utf8"));
  assert.equal(
    { recipe: summary.recipe, target: summary.target, exitCode: summary.exitCode, failedStep: summary.failedStep },
    { recipe: "mini", target: join(s.root, "work"), exitCode: 1, failedStep: { id: "use", title: "use the token" } },
  );
  assert.ok(Date.parse(summary.startedAt) <= Date.parse(summary.endedAt));
  assert.type(summary.host, "string");
  for (const text of [stdin, readFileSync(join(got, "env"), "utf8"), JSON.stringify(summary), r.out]) assert.not.ok(text.includes(TOKEN), "no secret reaches the hook or the log");
  assert.not.ok(existsSync(env.LIFEBOAT_SUMMARY_FILE), "the summary file is removed afterwards");
});

test("notify.format json puts the JSON summary on stdin", () => {
  const got = join(tmp(), "got");
  const s = site({ command: recorder(got), format: "json" });
  assert.is(run(s.file, { MINI_FAIL: "finish" }).code, 1);
  assert.equal(JSON.parse(readFileSync(join(got, "stdin"), "utf8")).failedStep, { id: "finish", title: "finish" });
});

test("a successful run does not call the hook", () => {
  const got = join(tmp(), "got");
  const s = site({ command: recorder(got) });
  const r = run(s.file);
  assert.is(r.code, 0, r.out);
  assert.not.ok(existsSync(got));
});

test("a hook that fails is a warning: the run keeps its own exit code", () => {
  const s = site({ command: ["sh", "-c", "echo mail server down >&2; exit 7"] });
  const r = run(s.file, { MINI_FAIL: "finish" });
  assert.is(r.code, 1, r.out);
  assert.match(r.out, /warning: the failure hook failed \(exit 7\): sh -c .*\n\s+mail server down/);
  const missing = site({ command: ["/nonexistent/mailer"] });
  const r2 = run(missing.file, { MINI_FAIL: "finish" });
  assert.is(r2.code, 1, r2.out);
  assert.match(r2.out, /warning: the failure hook could not start/);
});

test("a hook that hangs is killed after notify.timeout, with everything it started, and the exit code stays", () => {
  const pidFile = join(tmp(), "pid");
  const s = site({ command: ["sh", "-c", 'sleep 300 & echo $! > "$0"; wait', pidFile], timeout: 1 });
  const r = run(s.file, { MINI_FAIL: "prepare" });
  assert.is(r.code, 1, r.out);
  assert.match(r.out, /warning: the failure hook did not finish within 1 s and was killed/);
  const pid = Number(readFileSync(pidFile, "utf8"));
  for (let i = 0; i < 100 && pidAlive(pid); i++) spawnSync("sleep", ["0.05"]);
  assert.not.ok(pidAlive(pid), "the hook's own child is gone too");
});

test("an interrupted run (SIGTERM, exit 143) calls the hook with status interrupted", async () => {
  const got = join(tmp(), "got");
  const s = site({ command: recorder(got) });
  const p = spawn("node", ["--import=tsx", MINI, "--config", s.file], { env: { ...process.env, LIFEBOAT_TOKEN: TOKEN, CI: "1", MINI_HANG: "1" }, stdio: "pipe" });
  let text = "";
  await new Promise<void>((res) => p.stderr!.on("data", (d) => (text += d).includes("use the token") && res()));
  p.kill("SIGTERM");
  const [code] = await new Promise<[number | null]>((r) => p.once("exit", (c) => r([c])));
  assert.is(code, 143, text);
  const summary = JSON.parse(readFileSync(join(got, "summary.json"), "utf8"));
  assert.equal([summary.exitCode, summary.status, summary.error], [143, "interrupted", "interrupted by SIGTERM"]);
});

test("in a dry run the hook is printed, not run", () => {
  const got = join(tmp(), "got");
  const s = site({ command: recorder(got) });
  const r = run(s.file, { MINI_FAIL: "prepare" }, ["--dry-run"]);
  assert.is(r.code, 1, r.out);
  assert.match(r.out, /\[dry-run\] would run the failure hook: sh -c/);
  assert.not.ok(existsSync(got));
});

test.run();
