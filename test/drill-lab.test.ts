// The lab bookkeeping every drill goes through (tasks/drills/lab.ts: withLab, drillTask): start
// the pieces that are down, stop exactly those again — after success, failure, a piece that does
// not start, and SIGINT/SIGTERM. Piece scripts here are stand-ins in a temp dir that record their
// calls, so no lab is needed and the shared lab is never touched.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn } from "node:child_process";
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { withLab } from "../tasks/drills/lab.ts";
import { cleanupTmp, tmp } from "./helpers.ts";

test.after(cleanupTmp);

const PIECE_SH = `#!/usr/bin/env bash
# a stand-in lab piece: PIECE.up marks it running; calls are appended to ./calls
d=$(dirname "$0"); p=$(basename "$0" .sh)
case $1 in
  status) [ -f "$d/$p.up" ] ;;
  up) echo "up $p" >> "$d/calls"
      if [ -f "$d/$p.hang" ]; then echo "hanging $p" >&2; exec sleep 100000; fi
      [ -f "$d/$p.fail" ] && exit 1
      touch "$d/$p.up" ;;
  down) echo "down $p" >> "$d/calls"; rm -f "$d/$p.up" ;;
esac
`;

/** A folder of stand-in piece scripts; `up` names the pieces already running. */
function labDir(up: string[] = []): string {
  const dir = tmp("lifeboat-drill-lab-");
  for (const p of ["docker", "sshd", "pg", "ceph", "slapd"]) {
    writeFileSync(join(dir, `${p}.sh`), PIECE_SH);
    chmodSync(join(dir, `${p}.sh`), 0o755);
  }
  for (const p of up) writeFileSync(join(dir, `${p}.up`), "");
  return dir;
}
const calls = (dir: string) => (existsSync(join(dir, "calls")) ? readFileSync(join(dir, "calls"), "utf8").trim().split("\n") : []);
const running = (dir: string) => ["docker", "sshd", "pg", "ceph", "slapd"].filter((p) => existsSync(join(dir, `${p}.up`)));

test("a drill starts the pieces that are down, in lab order, and stops exactly those afterwards", async () => {
  const dir = labDir(["docker"]);
  let during: string[] = [];
  const r = await withLab(["ceph", "sshd", "docker"], async () => {
    during = running(dir);
    return 42;
  }, { scripts: dir });
  assert.is(r, 42);
  assert.equal(during, ["docker", "sshd", "ceph"]);
  assert.equal(calls(dir), ["up sshd", "up ceph", "down ceph", "down sshd"]);
  assert.equal(running(dir), ["docker"], "the piece that was already up is left running");
});

test("a lab held up by 'lab.sh up' is left running: a drill starts what is down and stops nothing", async () => {
  const dir = labDir(["docker"]);
  writeFileSync(join(dir, "held"), "");
  await withLab(["ceph", "docker"], async () => {}, { scripts: dir });
  assert.equal(calls(dir), ["up ceph"]);
  assert.equal(running(dir), ["docker", "ceph"]);
});

test("a failing drill still stops the pieces it started, and its error comes through", async () => {
  const dir = labDir();
  try {
    await withLab(["slapd"], async () => {
      throw new Error("compare differs");
    }, { scripts: dir });
    assert.unreachable("withLab should have rethrown");
  } catch (e) {
    assert.match((e as Error).message, "compare differs");
  }
  assert.equal(calls(dir), ["up slapd", "down slapd"]);
  assert.equal(running(dir), []);
});

test("a piece that does not start is named, the drill does not run, and what was started is stopped", async () => {
  const dir = labDir();
  writeFileSync(join(dir, "ceph.fail"), "");
  let ran = false;
  try {
    await withLab(["docker", "ceph"], async () => {
      ran = true;
    }, { scripts: dir });
    assert.unreachable("withLab should have thrown");
  } catch (e) {
    assert.match((e as Error).message, "lab piece 'ceph' did not start");
  }
  assert.not.ok(ran);
  assert.equal(calls(dir), ["up docker", "up ceph", "down ceph", "down docker"]);
});

test("a dry run starts no piece and says which it would start", async () => {
  const dir = labDir(["docker"]);
  const lines: string[] = [];
  await withLab(["docker", "sshd"], async () => {}, { scripts: dir, dryRun: true, log: (l) => lines.push(l) });
  assert.equal(calls(dir), []);
  assert.ok(lines.some((l) => /sshd is down; would start it/.test(l)), lines.join("\n"));
});

test("an unknown piece is refused before anything starts", async () => {
  const dir = labDir();
  try {
    await withLab(["docker", "mysql"], async () => {}, { scripts: dir });
    assert.unreachable("withLab should have thrown");
  } catch (e) {
    assert.match((e as Error).message, "no lab piece 'mysql'");
  }
  assert.equal(calls(dir), []);
});

/**
 * Runs a drill task (drillTask under main(), as tasks/run.ts does) in a child process that needs
 * sshd and ceph, waits for `marker` on its stderr, sends `sig`, and returns its exit code.
 */
async function interruptDrill(dir: string, marker: RegExp, sig: NodeJS.Signals): Promise<{ code: number | null; err: string }> {
  const root = new URL("..", import.meta.url).pathname;
  const script = join(dir, "drill.mts"); // .mts: the temp dir has no package.json saying "module"
  writeFileSync(script, `
import process from "node:process";
import { main } from ${JSON.stringify(join(root, "lib/mod.ts"))};
import { drillTask } from ${JSON.stringify(join(root, "tasks/drills/lab.ts"))};
const t = drillTask({
  name: "drill:stand-in", description: "waits to be interrupted", needs: ["sshd", "ceph"],
  run: (ctx) => new Promise((_, reject) => {
    process.stderr.write("drill is running\\n");
    const alive = setInterval(() => {}, 1 << 30); // a drill has handles open; this one has only this
    ctx.signal.addEventListener("abort", () => { clearInterval(alive); reject(ctx.signal.reason); });
  }),
}, { scripts: ${JSON.stringify(dir)} });
await main({ name: t.name, description: t.description, argv: [] }, (ctx) => t.run(ctx));
`);
  const child = spawn(process.execPath, ["--import=tsx", script], { cwd: root, stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, NO_COLOR: "1" } });
  let err = "";
  let sent = false;
  child.stderr.on("data", (d: Buffer) => {
    err += d.toString();
    if (!sent && marker.test(err)) {
      sent = true;
      child.kill(sig);
    }
  });
  const code = await new Promise<number | null>((r) => child.on("close", (c) => r(c)));
  return { code, err };
}

test("a drill interrupted by SIGTERM stops the pieces it started and exits 143", async () => {
  const dir = labDir(["sshd"]);
  const { code, err } = await interruptDrill(dir, /drill is running/, "SIGTERM");
  assert.is(code, 143, err);
  assert.equal(calls(dir), ["up ceph", "down ceph"]);
  assert.equal(running(dir), ["sshd"]);
});

test("a drill interrupted by SIGINT while a piece is starting stops that piece and exits 130", async () => {
  const dir = labDir();
  writeFileSync(join(dir, "ceph.hang"), "");
  const { code, err } = await interruptDrill(dir, /hanging ceph/, "SIGINT");
  assert.is(code, 130, err);
  assert.not.match(err, "drill is running");
  assert.equal(calls(dir), ["up sshd", "up ceph", "down ceph", "down sshd"]);
  assert.equal(running(dir), []);
});

test.run();
