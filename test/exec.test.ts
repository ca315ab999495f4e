// exec: the one way lifeboat starts processes. Dry-run printing, masking, streams, failures.
// deno: yes
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Writable } from "node:stream";
import { exec, ExecError, InterruptedError, killRunning, shellJoin, waitForHealthy } from "../lib/internal.ts";
import { cleanupTmp, testContext, tmp } from "./helpers.ts";

test.after.each(() => cleanupTmp());

test("dry-run prints the command quoted for a POSIX shell and does not run it", async () => {
  const { logs } = testContext({ argv: ["--dry-run"] });
  const f = join(tmp(), "it's $(x)");
  const r = await exec(["touch", "--", f]);
  assert.ok(r.dryRun);
  assert.not.ok(existsSync(f));
  assert.ok(logs().includes(`[dry-run] touch -- '${f.replace("'", "'\\''")}'`), logs());
});

test("a quoted word reads back as the same argv in sh", async () => {
  testContext();
  const words = ["a b", "it's", "$(touch /tmp/pwned-lifeboat)", "new\nline", "-n", "ünï", "", "=ls", "a=b"];
  const r = await exec(["sh", "-c", `printf '%s\\0' ${shellJoin(words)}`]);
  assert.equal(r.stdout.split("\0").slice(0, -1), words);
  assert.not.ok(existsSync("/tmp/pwned-lifeboat"));
  assert.is(shellJoin(["=ls"]), "'=ls'", "zsh would expand =ls to ls's path");
});

test("a secret with a quote in it is masked in dry-run prints, env and argv alike", async () => {
  const { ctx, logs } = testContext({ argv: ["--dry-run"] });
  const secret = "pa'ss w\"ord";
  ctx.secrets.add(secret);
  await exec(["mysql", `--password=${secret}`, secret], { env: { PGPASSWORD: secret } });
  assert.not.ok(logs().includes("pa'"), logs());
  assert.not.ok(logs().includes("pa'\\''ss"), logs());
  assert.match(logs(), /PGPASSWORD='\*\*\*'|PGPASSWORD=\*\*\*/);
});

test("a failing command names its exit code and stderr tail, masked", async () => {
  const { ctx } = testContext();
  ctx.secrets.add("s3cr3t-value");
  try {
    await exec(["sh", "-c", "echo 'login as s3cr3t-value refused' >&2; exit 7"]);
    assert.unreachable();
  } catch (e) {
    assert.instance(e, ExecError);
    assert.match((e as Error).message, /exit 7/);
    assert.match((e as Error).message, /login as \*\*\* refused/);
  }
});

test("a stdout stream that fails mid-run stops the command and rejects (no unhandled rejection)", async () => {
  testContext();
  let n = 0;
  const broken = new Writable({
    write(_c, _e, cb) {
      if (++n === 3) cb(Object.assign(new Error("disk gone"), { code: "EIO" }));
      else cb();
    },
  });
  const t0 = Date.now();
  try {
    await exec(["sh", "-c", "yes lifeboat | head -c 100000000"], { stdout: broken });
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, /a stream failed \(disk gone\)/);
  }
  assert.ok(Date.now() - t0 < 20000, "the command was stopped");
});

test("okCodes accepts documented non-zero exits", async () => {
  testContext();
  const r = await exec(["sh", "-c", "exit 1"], { okCodes: [0, 1] });
  assert.is(r.code, 1);
});

/** A `sleep` only this test runs (a unique duration), and whether one is still alive. */
function marker(tag: number): { sleep: string; alive: () => boolean } {
  const sleep = `600.${process.pid}${tag}`;
  return { sleep, alive: () => spawnSync("pgrep", ["-f", `^sleep ${sleep}$`]).status === 0 };
}

/** Rejects (returns the error) within `ms`, or fails the test instead of hanging. */
async function rejectsWithin(p: Promise<unknown>, ms = 20_000): Promise<Error> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<"hung">((r) => (timer = setTimeout(() => r("hung"), ms)));
  try {
    const r = await Promise.race([p.then(() => "resolved" as const, (e: Error) => e), limit]);
    if (r === "hung") assert.unreachable(`still waiting after ${ms / 1000} s`);
    if (r === "resolved") assert.unreachable("expected a rejection");
    return r as Error;
  } finally {
    clearTimeout(timer);
  }
}

async function gone(alive: () => boolean): Promise<boolean> {
  for (let i = 0; i < 100 && alive(); i++) await new Promise((r) => setTimeout(r, 50));
  return !alive();
}

test("a timeout stops the command's whole process group: a shell's child does not keep it waiting", async () => {
  testContext();
  const m = marker(1);
  const err = await rejectsWithin(exec(["sh", "-c", `sleep ${m.sleep}; echo x`], { timeoutMs: 1000 }));
  assert.instance(err, ExecError);
  assert.match(err.message, "timed out after 1 s");
  assert.ok(await gone(m.alive), "no sleep left behind");
});

test("a stream gone silent (idleMs) stops the command's group and says so; a stream that keeps talking runs to its end", async () => {
  testContext();
  const m = marker(5);
  const chunks: string[] = [];
  const sink = new Writable({ write: (c, _e, cb) => (chunks.push(String(c)), cb()) });
  const err = await rejectsWithin(exec(["sh", "-c", `echo first; sleep ${m.sleep}; echo never`], { stdout: sink, idleMs: 700 }));
  assert.instance(err, ExecError);
  assert.match(err.message, /no output for 700 ms \(the other end stopped sending\); stopped/);
  assert.equal(chunks.join(""), "first\n");
  assert.ok(await gone(m.alive), "no sleep left behind");
  // 8 lines, 0.2 s apart: 1.6 s in all, never silent for 0.7 s
  const r = await exec(["sh", "-c", "for i in 1 2 3 4 5 6 7 8; do echo $i; sleep 0.2; done"], { idleMs: 700 });
  assert.is(r.stdout.trim().split("\n").length, 8);
});

test("waitForHealthy honours its timeout for a shell probe whose child hangs", async () => {
  testContext();
  const m = marker(2);
  const err = await rejectsWithin(waitForHealthy({ command: ["sh", "-c", `sleep ${m.sleep}; true`] }, { timeoutMs: 3000 }));
  assert.match(err.message, "gave up waiting");
  assert.ok(await gone(m.alive), "no sleep left behind");
});

test("killRunning (the recipe's SIGINT/SIGTERM handler) stops each command's whole group", async () => {
  testContext();
  const m = marker(3);
  const p = exec(["sh", "-c", `sleep ${m.sleep}; echo x`]);
  p.catch(() => {});
  for (let i = 0; i < 100 && !m.alive(); i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(m.alive(), "the sleep started");
  killRunning();
  const err = await rejectsWithin(p);
  assert.match(err.message, "killed by SIGTERM");
  assert.ok(await gone(m.alive), "no sleep left behind");
});

test("an aborted context stops the command's group and rejects with the abort's reason", async () => {
  const { ctx } = testContext();
  const m = marker(4);
  const p = exec(["sh", "-c", `sleep ${m.sleep}; echo x`]);
  p.catch(() => {});
  for (let i = 0; i < 100 && !m.alive(); i++) await new Promise((r) => setTimeout(r, 20));
  const reason = new InterruptedError("SIGINT");
  ctx.abort(reason);
  const err = await rejectsWithin(p);
  assert.is(err, reason);
  assert.ok(await gone(m.alive), "no sleep left behind");
  assert.is(await rejectsWithin(exec(["true"])), reason, "nothing starts once aborted");
});

test("a command that fails leaves nothing of its group running", async () => {
  testContext();
  const m = marker(5);
  // The background sleep holds no pipe of ours (its output goes to /dev/null), so only the group kill can reach it.
  await rejectsWithin(exec(["sh", "-c", `sleep ${m.sleep} >/dev/null 2>&1 & sleep 0.2; exit 3`]));
  assert.ok(await gone(m.alive), "no sleep left behind");
});

test("a command reading a file (stdin: { file }) reports how far it has read, up to the whole file", async () => {
  testContext();
  const f = join(tmp(), "in put");
  writeFileSync(f, Buffer.alloc(3 << 20, 7));
  const seen: number[] = [];
  // cat reads it all at once, then the shell waits: the reports (every 250 ms) catch the end offset
  await exec(["sh", "-c", "cat > /dev/null; sleep 0.7"], { stdin: { file: f }, onStdinRead: (n) => seen.push(n) });
  if (existsSync("/proc/self/fdinfo")) assert.is(Math.max(...seen), 3 << 20, `reports: ${seen.join(", ")}`);
});

test("killWithParent runs the command under setpriv --pdeathsig KILL where setpriv exists (so a SIGKILLed lifeboat takes it along)", async () => {
  const { logs } = testContext({ argv: ["--dry-run"] });
  await exec(["ssh", "host", "cat > f"], { stdin: { file: "/etc/hostname" }, killWithParent: true });
  const line = logs().split("\n").find((l) => l.includes("[dry-run]")) ?? "";
  if (existsSync("/usr/bin/setpriv")) assert.match(line, /\[dry-run\] setpriv --pdeathsig KILL -- ssh host 'cat > f' < \/etc\/hostname/, logs());
  else assert.match(line, /\[dry-run\] ssh host/, logs());
});

test("stopByClosingStdout: a stopped command first sees its stdout closed and can end on its own (a clean exit, no signal); without it, signals", async () => {
  testContext();
  for (const gentle of [true, false]) {
    const said = join(tmp(), "said");
    // writes until a write fails; a SIGTERM would kill it before it could say so
    const script = `trap '' PIPE; while :; do echo x || { echo "write failed" > "$1"; exit 7; }; sleep 0.05; done`;
    const err = await exec(["sh", "-c", script, "sh", said], { stdout: new Writable({ write: (_c, _e, done) => void done() }), timeoutMs: 300, stopByClosingStdout: gentle ? 3000 : undefined })
      .then(() => null, (e: ExecError) => e);
    assert.instance(err, ExecError);
    assert.is(existsSync(said) && readFileSync(said, "utf8").trim(), gentle ? "write failed" : false, gentle ? "it saw EPIPE and ended itself" : "SIGTERM ended it");
  }
});

test("stdout to a file appears complete, 0600, and only when the command succeeded", async () => {
  testContext();
  const dir = tmp();
  const f = join(dir, "sub dir", "out 'x'.txt");
  await exec(["sh", "-c", "echo one; echo two"], { stdout: { file: f } });
  assert.is(readFileSync(f, "utf8"), "one\ntwo\n");
  assert.is(statSync(f).mode & 0o777, 0o600);
  const g = join(dir, "failed.txt");
  await rejectsWithin(exec(["sh", "-c", "echo half; exit 4"], { stdout: { file: g } }));
  assert.not.ok(existsSync(g), "no file under the final name");
  assert.equal(readdirSync(dir), ["sub dir"], "and no partial file either");
});

test.run();
