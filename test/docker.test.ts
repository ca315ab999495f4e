// lib/docker.ts against the lab's real dockerd: exec with users, env and streams, cp both ways,
// state and rm, dry-run. Run: node --import=tsx test/docker.test.ts
// needs: docker
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { Readable, Writable } from "node:stream";
// Direct imports, not mod.ts nor ./helpers.ts (which loads mod.ts): the memory test measures
// streaming, and archive.ts's libraries alone add ~33 MB of RSS to the baseline.
import { exec, ExecError } from "../lib/exec.ts";
import { LifeboatError, UsageError } from "../lib/errors.ts";
import { createContext, setDefaultContext, type Context } from "../lib/context.ts";
import { containerExists, containerState, dockerCp, dockerExec, dockerRm } from "../lib/docker.ts";
import { needLab } from "../tasks/drills/lab.ts";

/** As helpers.ts's testContext: a default context whose log is captured. */
function testContext(opts: { argv?: string[] } = {}): { ctx: Context; logs: () => string } {
  let text = "";
  const ctx = createContext({ name: "test", argv: opts.argv ?? [], env: {}, sink: { write: (s: string) => (text += s), isTTY: false }, interactive: false });
  setDefaultContext(ctx);
  return { ctx, logs: () => text };
}
const dirs: string[] = [];
const tmp = () => (dirs.push(mkdtempSync(join(tmpdir(), "lifeboat-test-"))), dirs[dirs.length - 1]);
const cleanupTmp = () => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true }));

const lab = needLab("docker");
process.env.DOCKER_HOST = lab.LAB_DOCKER_HOST;
const { ctx, logs: rawLogs } = testContext({ argv: ["--verbose"] });
const plain = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, "");
const logs = () => plain(rawLogs());
const box = `lifeboat-test-docker-${process.pid}`;

/** A throwaway container from the lab image running `sleep`: busybox tools, no PostgreSQL. */
async function startBox(name: string, cmd: string[] = ["sleep", "3600"]): Promise<void> {
  await exec(["docker", "run", "-d", "--name", name, "--label", "lifeboat-lab=1", lab.LAB_PG_IMAGE, ...cmd], { stdout: "ignore" });
}

/** A Writable that hashes what it gets. */
function hasher(): { sink: Writable; digest: () => string; bytes: () => number } {
  const h = createHash("sha256");
  let n = 0;
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      h.update(chunk);
      n += chunk.length;
      cb();
    },
  });
  return { sink, digest: () => h.digest("hex"), bytes: () => n };
}

test.before(async () => {
  await dockerRm(box, { force: true, missingOk: true });
  await startBox(box);
});

test.after(async () => {
  await dockerRm(box, { force: true, volumes: true, missingOk: true });
  await dockerRm(`${box}-done`, { force: true, missingOk: true });
  cleanupTmp();
});

test("dockerExec runs argv as the given user in the given workdir", async () => {
  assert.is((await dockerExec(box, ["id", "-un"], { user: "postgres" })).stdout.trim(), "postgres");
  assert.is((await dockerExec(box, ["pwd"], { workdir: "/usr/share" })).stdout.trim(), "/usr/share");
  // an argument with spaces, quotes and $() reaches the program as one word, unexpanded
  const odd = `a b 'c' "d" $(id) ;|&`;
  assert.is((await dockerExec(box, ["printf", "%s", odd])).stdout, odd);
});

test("dockerExec passes env values through the client's environment, never in argv", async () => {
  const secret = `s3cr3t-${randomBytes(6).toString("hex")} 'q' $(x)`;
  ctx.secrets.add(secret);
  const r = await dockerExec(box, ["sh", "-c", 'printf %s "$LB_SECRET"'], { env: { LB_SECRET: secret, LB_PLAIN: "visible" } });
  assert.is(r.stdout, secret);
  const line = logs().split("\n").find((l) => l.includes("LB_SECRET\"'"))!;
  assert.ok(line.includes("docker exec -e LB_SECRET -e LB_PLAIN"), line);
  assert.not.ok(logs().includes(secret), "the secret reached the log");
  assert.not.ok(logs().includes("s3cr3t-"), "part of the secret reached the log");
});

test("dockerExec returns a failing command's exit code and stderr", async () => {
  const e = await dockerExec(box, ["sh", "-c", "echo boom >&2; exit 3"]).catch((x) => x);
  assert.instance(e, ExecError);
  assert.is(e.code, 3);
  assert.match(e.message, /boom/);
  const ok = await dockerExec(box, ["sh", "-c", "exit 3"], { okCodes: [0, 3] });
  assert.is(ok.code, 3);
});

test("dockerExec streams 200 MB through stdin and stdout with flat memory", async () => {
  const total = 200 * 1024 * 1024;
  const inHash = createHash("sha256");
  let made = 0;
  const source = new Readable({
    read() {
      if (made >= total) return void this.push(null);
      const chunk = randomBytes(Math.min(1 << 16, total - made));
      made += chunk.length;
      inHash.update(chunk);
      this.push(chunk);
    },
  });
  const out = hasher();
  const before = process.memoryUsage().rss;
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  try {
    await dockerExec(box, ["cat"], { stdin: source, stdout: out.sink });
  } finally {
    clearInterval(sampler);
  }
  const mb = (n: number) => `${(n / 1e6).toFixed(0)} MB`;
  const seen = `RSS ${mb(before)} before, peak ${mb(peak)} while streaming 200 MiB each way`;
  if (process.env.LIFEBOAT_TEST_VERBOSE) console.error(seen);
  assert.is(out.bytes(), total);
  assert.is(out.digest(), inHash.digest("hex"));
  // Streaming is about growth: 400 MiB moved must not grow the process by more than 100 MB, half of
  // what one direction carries (buffering either direction would take 200 MB or more). V8's young
  // generation alone may take ~64 MB on Node 26 while the source makes garbage this fast.
  // (The process's resting size, which the loaded helper families set, is measured in bench/.)
  assert.ok(peak - before < 100e6, `${seen}: grew more than 100 MB`);
});

test("dockerExec in a container that does not exist fails with a clear error", async () => {
  const e = await dockerExec("lifeboat-test-no-such-container", ["true"]).catch((x) => x);
  assert.instance(e, LifeboatError);
  assert.match(e.message, /container lifeboat-test-no-such-container does not exist/);
  assert.match(e.hint, /docker ps -a/);
});

test("dockerCp copies files with hostile names both ways, byte-exact", async () => {
  const names = ["a b.txt", `q'uo"te.txt`, "new\nline.txt", "-lead.txt", "--help", "$(touch pwned).txt", "ü 🚀.txt", "colon:name.txt"];
  const here = tmp();
  const back = join(here, "back");
  mkdirSync(back);
  const inside = `/tmp/lbcp ${process.pid}`;
  await dockerExec(box, ["mkdir", "-p", inside]);
  for (const name of names) {
    const data = randomBytes(100_000 + name.length);
    const src = join(here, name);
    writeFileSync(src, data);
    await dockerCp(src, { container: box, path: `${inside}/${name}` });
    const seen = hasher();
    await dockerExec(box, ["cat", `${inside}/${name}`], { stdout: seen.sink });
    assert.is(seen.digest(), createHash("sha256").update(data).digest("hex"), `into the container: ${JSON.stringify(name)}`);
    await dockerCp(`${box}:${inside}/${name}`, join(back, name));
    assert.ok(readFileSync(join(back, name)).equals(data), `out of the container: ${JSON.stringify(name)}`);
  }
  assert.not.ok(existsSync(join(here, "pwned")) || existsSync("pwned"));
  const count = await dockerExec(box, ["sh", "-c", 'set -- "$1"/*; echo $#', "sh", inside]);
  assert.is(count.stdout.trim(), String(names.length));
});

test("containerState tells running, exited and missing apart; dockerRm removes", async () => {
  assert.is(await containerState(box), "running");
  const done = `${box}-done`;
  await startBox(done, ["true"]);
  await exec(["docker", "wait", done], { stdout: "ignore" });
  assert.is(await containerState(done), "exited");
  assert.ok(await containerExists(done));
  assert.is(await dockerRm(done), true);
  assert.is(await containerState(done), "missing");
  assert.not.ok(await containerExists(done));
  const e = await dockerRm(done).catch((x) => x);
  assert.match(e.message, /container .*-done does not exist/);
  assert.is(await dockerRm(done, { missingOk: true }), false);
});

test("dockerHost points every helper at that daemon; an unreachable one fails clearly", async () => {
  const dockerHost = lab.LAB_DOCKER_HOST;
  assert.is((await dockerExec(box, ["echo", "hi"], { dockerHost })).stdout, "hi\n");
  assert.is(await containerState(box, { dockerHost }), "running");
  assert.ok(logs().includes(`docker --host=${dockerHost} exec ${box} echo hi`));
  const nowhere = `unix://${tmp()}/no.sock`;
  for (const call of [() => containerState(box, { dockerHost: nowhere }), () => dockerExec(box, ["true"], { dockerHost: nowhere })]) {
    const e = await call().catch((x) => x);
    assert.instance(e, LifeboatError);
    assert.match(e.message, /cannot reach the docker daemon/);
  }
});

test("dry-run prints docker commands quoted and runs nothing", async () => {
  const dry = testContext({ argv: ["--dry-run"] });
  try {
    const here = tmp();
    const dst = join(here, "a b's");
    await dockerCp(`${box}:/etc/hostname`, dst, { ctx: dry.ctx });
    assert.not.ok(existsSync(dst));
    await dockerExec(box, ["touch", "/tmp/dry run"], { ctx: dry.ctx });
    await dockerRm(box, { force: true, ctx: dry.ctx });
    const printed = plain(dry.logs());
    assert.ok(printed.includes(`[dry-run] docker cp -- ${box}:/etc/hostname '${here}/a b'\\''s'`), printed);
    assert.ok(printed.includes(`[dry-run] docker exec ${box} touch '/tmp/dry run'`), printed);
    assert.ok(printed.includes(`[dry-run] docker rm -f -- ${box}`), printed);
    // state probes still run in dry-run, and nothing happened
    assert.is(await containerState(box, { ctx: dry.ctx }), "running");
    const ls = await dockerExec(box, ["ls", "/tmp"], { ctx: dry.ctx, readOnly: true });
    assert.not.ok(ls.stdout.includes("dry run"));
  } finally {
    testContext({ argv: ["--verbose"] }); // later tests see a normal default context again
  }
});

test("container names that could be read as flags are refused before anything runs", async () => {
  for (const bad of ["-rm", "--help", "a b", "", "x;y"]) {
    const e = await dockerExec(bad, ["true"]).catch((x) => x);
    assert.instance(e, UsageError, bad);
  }
  const e = await dockerCp("/etc/hostname", "/tmp/x").catch((x) => x);
  assert.instance(e, UsageError);
});

test.run();
