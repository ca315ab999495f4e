// The recipe runner as an operator meets it: exit codes, --help, --dry-run, --resume,
// locks, secrets in output, and signals. Each case runs a small recipe as a child process.
// deno: yes
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cleanupTmp, tmp } from "./helpers.ts";

const MINI = new URL("./fixtures/mini-recipe.ts", import.meta.url).pathname;
const TOKEN = "tok-3f9a1c77e2";

function run(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync("node", ["--import=tsx", MINI, ...args], {
    encoding: "utf8",
    env: { ...process.env, LIFEBOAT_TOKEN: TOKEN, CI: "1", ...env },
  });
  return { code: r.status, out: r.stdout + r.stderr };
}

function setup() {
  const root = tmp();
  return { dir: join(root, "work"), state: join(root, "state") };
}

const ran = (dir: string) => readFileSync(join(dir, "ran.log"), "utf8").trim().split("\n");

test.after.each(() => cleanupTmp());

test("a successful run exits 0, runs every step in order, then cleanup", () => {
  const { dir, state } = setup();
  const r = run([`--dir=${dir}`, `--state-dir=${state}`]);
  assert.is(r.code, 0, r.out);
  assert.equal(ran(dir), ["prepare", "use the token", "finish", "cleanup"]);
  assert.match(r.out, /mini summary/);
});

test("npx zx, node --import=tsx and tasks/run.ts all hand the recipe the same arguments", () => {
  const { dir, state } = setup();
  const r = spawnSync("npx", ["zx", MINI, `--dir=${dir}`, `--state-dir=${state}`], {
    encoding: "utf8",
    env: { ...process.env, LIFEBOAT_TOKEN: TOKEN, CI: "1" },
  });
  assert.is(r.status, 0, r.stderr);
  assert.equal(ran(dir), ["prepare", "use the token", "finish", "cleanup"]);
  const list = spawnSync("npx", ["zx", new URL("../tasks/run.ts", import.meta.url).pathname, "archive:list", dir], { encoding: "utf8" });
  assert.is(list.status, 0, list.stderr);
  assert.match(list.stderr, /no backups in/);
});

test("--help lists settings with defaults and env names, and exits 0", () => {
  const r = run(["--help"]);
  assert.is(r.code, 0);
  assert.match(r.out, /--count=NUMBER/);
  assert.match(r.out, /\[default: 3\]/);
  assert.match(r.out, /LIFEBOAT_COUNT/);
  assert.match(r.out, /--token-file PATH \| --token-command CMD/);
  assert.match(r.out, /Exit codes: 0 ok/);
});

test("an unknown flag, a missing required setting and a bad number exit 2 naming the key", () => {
  assert.match(run(["--dri-run"]).out, /unknown flag '--dri-run'/);
  assert.is(run(["--dri-run"]).code, 2);
  const missing = run([], { LIFEBOAT_TOKEN: "" });
  assert.is(missing.code, 2);
  assert.match(missing.out, /setting 'dir' is required/);
  const bad = run(["--dir=/tmp/x"], { LIFEBOAT_COUNT: "three" });
  assert.is(bad.code, 2);
  assert.match(bad.out, /setting 'count' from env LIFEBOAT_COUNT: expected a number, got "three"/);
});

test("a secret on the command line is refused with exit 2 and not echoed", () => {
  const r = run(["--dir=/tmp/x", "--token=hunter2-on-argv"]);
  assert.is(r.code, 2);
  assert.match(r.out, /cannot be given on the command line/);
  assert.not.match(r.out, /hunter2-on-argv/);
});

test("secrets never reach the output: log lines, error messages, step summaries", () => {
  const { dir, state } = setup();
  const r = run([`--dir=${dir}`, `--state-dir=${state}`, "--verbose"], { MINI_FAIL: "use" });
  assert.is(r.code, 1);
  assert.match(r.out, /token is \*\*\*/);
  assert.match(r.out, /failed on purpose with \*\*\*/);
  assert.not.ok(r.out.includes(TOKEN), "the token appears nowhere");
  const journal = readFileSync(join(state, "journal", readdir(join(state, "journal"))[0]));
  assert.not.ok(journal.includes(TOKEN), "nor in the journal");
});

function readdir(d: string): string[] {
  return spawnSync("ls", [d], { encoding: "utf8" }).stdout.trim().split("\n");
}

test("a secret from --token-file is used and masked", () => {
  const { dir, state } = setup();
  mkdirSync(dir, { recursive: true });
  const f = join(dir, "..", "token");
  writeFileSync(f, "file-secret-9911\n", { mode: 0o600 });
  const r = run([`--dir=${dir}`, `--state-dir=${state}`, `--token-file=${f}`], { LIFEBOAT_TOKEN: "" });
  assert.is(r.code, 0, r.out);
  assert.match(r.out, /token is \*\*\*/);
  assert.not.match(r.out, /file-secret-9911/);
});

test("--dry-run prints state-changing commands and runs none of them", () => {
  const { dir, state } = setup();
  mkdirSync(dir, { recursive: true });
  const r = run([`--dir=${dir}`, `--state-dir=${state}`, "--dry-run"]);
  assert.is(r.code, 0, r.out);
  assert.match(r.out, /\[dry-run\] touch '.*touched by exec'/);
  assert.not.ok(existsSync(join(dir, "touched by exec")), "the command did not run");
  assert.not.ok(existsSync(join(state, "journal")) && readdir(join(state, "journal")).filter(Boolean).length, "no journal in dry-run");
});

test("a failed step exits 1, keeps a journal, and --resume continues at the failed step", () => {
  const { dir, state } = setup();
  const first = run([`--dir=${dir}`, `--state-dir=${state}`], { MINI_FAIL: "finish" });
  assert.is(first.code, 1);
  assert.match(first.out, /step 'finish' failed/);
  assert.match(first.out, /re-run with --resume/);
  const second = run([`--dir=${dir}`, `--state-dir=${state}`, "--resume"]);
  assert.is(second.code, 0, second.out);
  assert.equal(ran(dir), ["prepare", "use the token", "finish", "cleanup", "finish", "cleanup"]);
  assert.equal(JSON.parse(readFileSync(join(dir, "state.json"), "utf8")), { prepared: "yes", used: "yes" }, "state from the first run survived");
  assert.match(second.out, /done in an earlier run/);
});

test("a recipe that cannot be resumed says to run it again, not --resume, when a step fails", () => {
  const { dir, state } = setup();
  const r = run([`--dir=${dir}`, `--state-dir=${state}`], { MINI_FAIL: "finish", MINI_NOT_RESUMABLE: "1" });
  assert.is(r.code, 1, r.out);
  assert.match(r.out, /fix the cause, then run it again \(this run cannot be resumed\)/);
  assert.not.match(r.out, /re-run with --resume/);
});

test("--resume with nothing to resume exits 2", () => {
  const { dir, state } = setup();
  const r = run([`--dir=${dir}`, `--state-dir=${state}`, "--resume"]);
  assert.is(r.code, 2);
  assert.match(r.out, /nothing to resume/);
});

test("a second run on the same target exits 4 while the first holds the lock; a stale lock is taken over", async () => {
  const { dir, state } = setup();
  const first = spawn("node", ["--import=tsx", MINI, `--dir=${dir}`, `--state-dir=${state}`], {
    env: { ...process.env, LIFEBOAT_TOKEN: TOKEN, CI: "1", MINI_HANG: "1" },
    stdio: "pipe",
  });
  await new Promise<void>((res) => {
    let text = "";
    first.stderr!.on("data", (d) => {
      text += d;
      if (text.includes("use the token")) res();
    });
  });
  const second = run([`--dir=${dir}`, `--state-dir=${state}`]);
  assert.is(second.code, 4, second.out);
  assert.match(second.out, /another run holds the lock/);
  first.kill("SIGKILL");
  await new Promise((r) => first.once("exit", r));
  const third = run([`--dir=${dir}`, `--state-dir=${state}`]);
  assert.is(third.code, 0, third.out);
  assert.match(third.out, /taking over stale lock/);
});

test("SIGINT stops the running command, runs the step's and the run's cleanup (commands too) and exits 130", async () => {
  const { dir, state } = setup();
  const p = spawn("node", ["--import=tsx", MINI, `--dir=${dir}`, `--state-dir=${state}`], {
    env: { ...process.env, LIFEBOAT_TOKEN: TOKEN, CI: "1", MINI_HANG: "1", MINI_STEP_CLEANUP: "1" },
    stdio: "pipe",
  });
  let text = "";
  await new Promise<void>((res) => {
    p.stderr!.on("data", (d) => {
      text += d;
      if (text.includes("use the token")) setTimeout(res, 300);
    });
  });
  const t0 = Date.now();
  p.kill("SIGINT");
  const [code, signal] = await new Promise<[number | null, string | null]>((r) => p.once("exit", (c, s) => r([c, s])));
  // Deno's child_process reports an exit status above 128 as the matching signal.
  const isDeno = typeof (globalThis as { Deno?: unknown }).Deno !== "undefined";
  assert.ok(code === 130 || (isDeno && code === null && signal === "SIGINT"), `exit ${code} ${signal}\n${text}`);
  assert.match(text, /\(exit 130\)/);
  assert.ok(Date.now() - t0 < 20000, "did not wait for sleep 30");
  assert.equal(ran(dir), ["prepare", "use the token", "use cleanup", "cleanup"]);
  assert.ok(existsSync(join(dir, "step cleanup ran a command")), `the step's cleanup could still run a command after the interrupt\n${text}`);
  assert.ok(existsSync(join(dir, "cleanup ran a command")), `cleanup could still run a command after the interrupt\n${text}`);
});

test("--resume continues by step id after every title was reworded", () => {
  const { dir, state } = setup();
  const first = run([`--dir=${dir}`, `--state-dir=${state}`], { MINI_FAIL: "finish" });
  assert.is(first.code, 1, first.out);
  const second = run([`--dir=${dir}`, `--state-dir=${state}`, "--resume"], { MINI_TITLES: " (reworded)" });
  assert.is(second.code, 0, second.out);
  assert.equal(ran(dir), ["prepare", "use the token", "finish", "cleanup", "finish", "cleanup"]);
  assert.match(second.out, /prepare \(count 3\) \(reworded\): done in an earlier run/);
});

test("--resume continues after a setting shown in a title was fixed", () => {
  const { dir, state } = setup();
  const first = run([`--dir=${dir}`, `--state-dir=${state}`, "--count=3"], { MINI_FAIL: "finish" });
  assert.is(first.code, 1, first.out);
  assert.match(first.out, /prepare \(count 3\)/);
  const second = run([`--dir=${dir}`, `--state-dir=${state}`, "--count=4", "--resume"]);
  assert.is(second.code, 0, second.out);
  assert.match(second.out, /prepare \(count 4\): done in an earlier run/);
  assert.equal(ran(dir), ["prepare", "use the token", "finish", "cleanup", "finish", "cleanup"]);
});

test("a secret step's output is never journaled, and --resume runs that step again", () => {
  const { dir, state } = setup();
  const first = run([`--dir=${dir}`, `--state-dir=${state}`], { MINI_FAIL: "finish" });
  assert.is(first.code, 1, first.out);
  const journal = JSON.parse(readFileSync(join(state, "journal", readdir(join(state, "journal"))[0]), "utf8"));
  assert.equal(journal.outputs.prepare, { prepared: "yes" }, "ordinary outputs are kept for --resume");
  assert.not.ok("token" in journal.outputs, "the secret step's output is not");
  assert.not.ok(JSON.stringify(journal).includes(TOKEN));
  const second = run([`--dir=${dir}`, `--state-dir=${state}`, "--resume"], { MINI_FAIL: "" });
  assert.is(second.code, 0, second.out);
  assert.match(second.out, /\[2\/5\] read the token/, "the secret step ran again");
});

test("a step's cleanup runs when the step fails, and a killed run's owed cleanup runs first next time", async () => {
  const { dir, state } = setup();
  const failed = run([`--dir=${dir}`, `--state-dir=${state}`], { MINI_FAIL: "use", MINI_STEP_CLEANUP: "1" });
  assert.is(failed.code, 1, failed.out);
  assert.equal(ran(dir), ["prepare", "use the token", "use cleanup", "cleanup"]);

  const dir2 = `${dir}-killed`;
  const p = spawn("node", ["--import=tsx", MINI, `--dir=${dir2}`, `--state-dir=${state}`], {
    env: { ...process.env, LIFEBOAT_TOKEN: TOKEN, CI: "1", MINI_HANG: "1", MINI_STEP_CLEANUP: "1" },
    stdio: "pipe",
  });
  await waitFor(p, "use the token");
  while (!existsSync(join(dir2, "ran.log")) || !ran(dir2).includes("use the token")) await new Promise((r) => setTimeout(r, 20));
  p.kill("SIGKILL");
  await new Promise((r) => p.once("exit", r));
  assert.equal(ran(dir2), ["prepare", "use the token"], "killed before any cleanup");
  const next = run([`--dir=${dir2}`, `--state-dir=${state}`], { MINI_STEP_CLEANUP: "1" });
  assert.is(next.code, 0, next.out);
  assert.match(next.out, /owed by a run that was killed/);
  assert.equal(ran(dir2), ["prepare", "use the token", "use cleanup", "prepare", "use the token", "use cleanup", "finish", "cleanup"]);
});

for (const lazy of [false, true]) test(`a fan-out step finishes the other items when one fails, and --resume retries only that one${lazy ? " (items from an earlier step's output)" : ""}`, () => {
  const { dir, state } = setup();
  const env: Record<string, string> = lazy ? { MINI_LAZY_ITEMS: "1" } : {};
  const first = run([`--dir=${dir}`, `--state-dir=${state}`], { ...env, MINI_FANOUT: "1", MINI_FAIL_ITEM: "b" });
  assert.is(first.code, 1, first.out);
  assert.match(first.out, /1 of 3 failed: b \(item b failed on purpose\)/);
  assert.equal(ran(dir).filter((l) => l.startsWith("item")).sort(), ["item a", "item b", "item c"]);
  assert.not.ok(ran(dir).includes("finish"), "no step after the failed fan-out ran");
  const second = run([`--dir=${dir}`, `--state-dir=${state}`, "--resume"], { ...env, MINI_FANOUT: "1" });
  assert.is(second.code, 0, second.out);
  assert.equal(ran(dir).filter((l) => l.startsWith("item")).sort(), ["item a", "item b", "item b", "item c"], "only b ran again");
  assert.equal(JSON.parse(readFileSync(join(dir, "state.json"), "utf8")).items, { a: "A", b: "B", c: "C" }, "outputs of a and c came from the journal");
});

for (const [sig, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
  test(`${sig} during in-process work starts no further step, exits ${code}, and --resume then completes`, async () => {
    const { dir, state } = setup();
    const p = spawn("node", ["--import=tsx", MINI, `--dir=${dir}`, `--state-dir=${state}`], {
      env: { ...process.env, LIFEBOAT_TOKEN: TOKEN, CI: "1", MINI_BUSY: "1" },
      stdio: "pipe",
    });
    const text = await waitFor(p, "use the token");
    p.kill(sig);
    const [exit, signal] = await new Promise<[number | null, string | null]>((r) => p.once("exit", (c, s) => r([c, s])));
    const isDeno = typeof (globalThis as { Deno?: unknown }).Deno !== "undefined";
    assert.ok(exit === code || (isDeno && exit === null && signal === sig), `exit ${exit} ${signal}\n${text}`);
    assert.equal(ran(dir), ["prepare", "use the token", "cleanup"], "finish never started");
    assert.ok(existsSync(join(dir, "cleanup ran a command")), "cleanup could still run a command after the interrupt");
    const resumed = run([`--dir=${dir}`, `--state-dir=${state}`, "--resume"]);
    assert.is(resumed.code, 0, resumed.out);
    assert.equal(ran(dir).slice(3), ["use the token", "finish", "cleanup"]);
  });
}

test("a signal that comes while a finished run is exiting does not hide the run's exit code", async () => {
  const { dir, state } = setup();
  const p = spawn("node", ["--import=tsx", MINI, `--dir=${dir}`, `--state-dir=${state}`], {
    env: { ...process.env, LIFEBOAT_TOKEN: TOKEN, CI: "1", MINI_SLOW_EXIT: "1" },
    stdio: "pipe",
  });
  const text = await waitFor(p, "exiting");
  process.kill(p.pid!, "SIGINT"); // not p.kill: Deno's child_process then reports that signal whatever the exit
  const [exit, signal] = await new Promise<[number | null, string | null]>((r) => p.once("exit", (c, s) => r([c, s])));
  assert.equal([exit, signal], [0, null], text);
  assert.equal(ran(dir), ["prepare", "use the token", "finish", "cleanup"]);
});

test("everything a run logged reaches its reader, also when a child set the shared stderr non-blocking and the reader is slow", async () => {
  const { dir, state } = setup();
  const p = spawn("node", ["--import=tsx", MINI, `--dir=${dir}`, `--state-dir=${state}`], {
    env: { ...process.env, LIFEBOAT_TOKEN: TOKEN, CI: "1", MINI_NONBLOCK: "1" },
    stdio: "pipe",
  });
  p.stderr!.pause(); // the pipe fills (64 KiB) and the rest waits in the process
  await new Promise((r) => setTimeout(r, 1500));
  let text = "";
  p.stderr!.on("data", (d) => (text += d)).resume();
  const [exit] = await new Promise<[number | null]>((r) => p.once("close", (c) => r([c])));
  assert.is(exit, 0, text.slice(-2000));
  assert.ok(text.includes("line 4095"), `the last logged line is missing (${text.length} bytes arrived)`);
  assert.match(text, /mini finished in/);
});

/** Resolves with the child's stderr so far once it contains text. */
function waitFor(p: ReturnType<typeof spawn>, text: string): Promise<string> {
  let out = "";
  return new Promise((res) => {
    p.stderr!.on("data", (d) => {
      out += d;
      if (out.includes(text)) res(out);
    });
  });
}

test("a refused confirmation without a terminal exits 5", () => {
  const r = spawnSync("node", ["--import=tsx", "-e", `
    import { main } from "./lib/internal.ts";
    await main({ name: "confirm-test", description: "x", interactive: false }, async (ctx) => { await ctx.confirm("wipe everything?"); });
  `], { encoding: "utf8", cwd: new URL("..", import.meta.url).pathname, env: { ...process.env, CI: "1" } });
  assert.is(r.status, 5, r.stderr);
  assert.match(r.stderr, /refused: wipe everything\?/);
  assert.match(r.stderr, /pass --yes/);
});

test.run();
