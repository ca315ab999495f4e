// ssh, sshTar and sshUntar against the lab's real sshd on 127.0.0.1 (the "remote" host is
// this machine, so remote paths are local temp dirs).
// Run: node --import=tsx test/ssh.test.ts
// needs: sshd
// deno: yes
import { test } from "uvu";
import * as assert from "uvu/assert";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import {
  appendFileSync,
  chmodSync,
  chownSync,
  closeSync,
  existsSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
  ftruncateSync,
} from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { compareTrees } from "../lib/compare.ts";
import { LifeboatError } from "../lib/errors.ts";
import { shellJoin } from "../lib/exec.ts";
import { ssh, sshCommand, sshTar, sshUntar, type SshTarget } from "../lib/ssh.ts";
import { sshClear } from "../lib/remote.ts";
import { AWKWARD_NAMES, makeSampleTree, seededBytes } from "../tasks/drills/fixtures.ts";
import { cleanupTmp, testContext, tmp, freePort } from "./helpers.ts";
import { needLab } from "../tasks/drills/lab.ts";

const lab = needLab("sshd");
const LIFEBOAT_UID = Number(execFileSync("id", ["-u", lab.LAB_SSH_USER2]).toString().trim());
const OTHER_UID = 4242; // no name on this host: tar must carry it as a number

function target(user = "root", port = Number(lab.LAB_SSH_PORT), knownHostsFile = lab.LAB_SSH_KNOWN_HOSTS): SshTarget {
  return { host: lab.LAB_SSH_HOST, port, user, identityFile: lab.LAB_SSH_KEY, knownHostsFile };
}

/** The sample tree, plus files owned by the lab user and by a nameless uid, odd modes, and awkward dir names. */
function ownedTree(root: string): string {
  makeSampleTree(root, { bigBytes: 5 * 1024 * 1024 });
  const o = join(root, "owners");
  mkdirSync(join(o, "sticky"), { recursive: true });
  writeFileSync(join(o, "by-lifeboat.log"), "written by the lab user\n");
  chownSync(join(o, "by-lifeboat.log"), LIFEBOAT_UID, LIFEBOAT_UID);
  chmodSync(join(o, "by-lifeboat.log"), 0o640);
  writeFileSync(join(o, "by-4242.db"), seededBytes("db", 70_000));
  chownSync(join(o, "by-4242.db"), OTHER_UID, OTHER_UID + 1);
  chmodSync(join(o, "by-4242.db"), 0o604);
  writeFileSync(join(o, "setuid-tool"), "#!/bin/sh\n");
  chownSync(join(o, "setuid-tool"), OTHER_UID, 0);
  chmodSync(join(o, "setuid-tool"), 0o4755); // after chown, which clears setuid
  chownSync(join(o, "sticky"), LIFEBOAT_UID, 0);
  chmodSync(join(o, "sticky"), 0o1777);
  symlinkSync("../by-lifeboat.log", join(o, "sticky", "link to log"));
  lchownSync(join(o, "sticky", "link to log"), LIFEBOAT_UID, LIFEBOAT_UID);
  for (const d of ["-leading dash dir", "new\nline dir", "$(touch pwned) dir", "ünï ✓ 日本 dir"]) {
    mkdirSync(join(root, d));
    writeFileSync(join(root, d, "it's here.txt"), `in ${d}\n`);
  }
  return root;
}

/** Modification times (seconds) of everything but symlinks, to check tar restored them. */
function mtimes(root: string, prefix = ""): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of readdirSync(join(root, prefix)).sort()) {
    const rel = prefix ? `${prefix}/${name}` : name;
    const st = lstatSync(join(root, rel));
    if (st.isSymbolicLink()) continue;
    out[rel] = Math.floor(st.mtimeMs / 1000);
    if (st.isDirectory()) Object.assign(out, mtimes(root, rel));
  }
  return out;
}

async function assertSameTree(a: string, b: string): Promise<void> {
  assert.equal(await compareTrees(a, b), [], `trees differ: ${a} vs ${b}`);
  assert.equal(mtimes(b), mtimes(a), "mtimes differ");
}


async function until(what: string, cond: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function failure(p: Promise<unknown>): Promise<LifeboatError> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, LifeboatError, `expected a LifeboatError, got ${(e as Error)?.stack}`);
    return e as LifeboatError;
  }
  return assert.unreachable("expected a failure") as never;
}

test.after(() => cleanupTmp());

test("the remote command line reads back as the same argv (login shell on the host, and dash)", async () => {
  testContext();
  const words = [...AWKWARD_NAMES, "", "*", "a  b", "'", "\\'", "!x", "~root", "${HOME}", "`id`", ";", "|", "&&", "#c"];
  const { stdout } = await ssh(target(), ["printf", "%s\\0", ...words]);
  assert.equal(stdout.split("\0").slice(0, -1), words);
  const dash = spawnSync("dash", ["-c", shellJoin(["printf", "%s\\0", ...words])], { encoding: "utf8" });
  assert.equal(dash.stdout.split("\0").slice(0, -1), words);
});

test("sshTar → sshUntar round-trips awkward names, owners, modes, symlinks and an empty dir byte for byte", async () => {
  const { logs } = testContext();
  const base = tmp();
  const src = ownedTree(join(base, "src 'dir' $(x)"));
  const archive = join(base, "backups", "store.tar");
  const r = await sshTar(target(), src, archive);
  assert.equal(r.changed, []);
  assert.is(statSync(archive).mode & 0o777, 0o600);
  assert.is(r.bytes, statSync(archive).size);
  assert.equal(readdirSync(join(base, "backups")), ["store.tar"], "no temp file left");
  const dst = join(base, "restored dir", "-store");
  await sshUntar(target(), archive, dst, { mkdir: true, sameOwner: true });
  await assertSameTree(src, dst);
  assert.not.ok(existsSync(join(base, "pwned")) || existsSync("pwned"));
  assert.match(logs(), "store.tar");
});

test("sshTar with remote gzip and sudo, and sshUntar with numeric owners, round-trip too", async () => {
  testContext();
  const base = tmp();
  const src = ownedTree(join(base, "src"));
  const archive = join(base, "store.tar.gz");
  await sshTar(target(), src, archive, { gzip: "remote", level: 1, sudo: true, numericOwner: true });
  assert.equal([...readFileSync(archive).subarray(0, 2)], [0x1f, 0x8b]);
  const dst = join(base, "dst");
  await sshUntar(target(), archive, dst, { mkdir: true, sudo: true, numericOwner: true });
  await assertSameTree(src, dst);
});

test("sshTar into a stream with local gzip feeds sshUntar directly", async () => {
  testContext();
  const base = tmp();
  const src = ownedTree(join(base, "src"));
  const dst = join(base, "dst");
  const pipe = new PassThrough();
  const [r] = await Promise.all([sshTar(target(), src, pipe, { gzip: "local" }), sshUntar(target(), pipe, dst, { mkdir: true, gzip: true })]);
  assert.ok(r.bytes > 0);
  await assertSameTree(src, dst);
});

test("sshUntar over an existing tree replaces its files whole, keeps files the archive lacks, and leaves no staging folder", async () => {
  testContext();
  const base = tmp();
  const src = join(base, "src");
  mkdirSync(join(src, "sub dir"), { recursive: true });
  writeFileSync(join(src, "a.txt"), "new a");
  writeFileSync(join(src, "sub dir", "b.bin"), seededBytes("untar-b", 100_000));
  const archive = join(base, "store.tar");
  await sshTar(target(), src, archive);
  const dst = join(base, "dst");
  mkdirSync(join(dst, "sub dir"), { recursive: true });
  writeFileSync(join(dst, "a.txt"), "old a, longer than the new one");
  writeFileSync(join(dst, "sub dir", "keep.txt"), "not in the archive");
  await sshUntar(target(), archive, dst);
  assert.is(readFileSync(join(dst, "a.txt"), "utf8"), "new a");
  assert.equal(readFileSync(join(dst, "sub dir", "b.bin")), seededBytes("untar-b", 100_000));
  assert.is(readFileSync(join(dst, "sub dir", "keep.txt"), "utf8"), "not in the archive");
  assert.equal(readdirSync(dst).sort(), ["a.txt", "sub dir"], "no staging folder left");
});

test("a cut-off archive untars nothing: the target keeps its old files whole, and a killed run's staging folder is removed by the next", async () => {
  testContext();
  const base = tmp();
  const src = join(base, "src");
  mkdirSync(src);
  writeFileSync(join(src, "big.bin"), seededBytes("untar-cut", 3 << 20));
  const archive = join(base, "store.tar");
  await sshTar(target(), src, archive);
  const cut = join(base, "cut.tar");
  writeFileSync(cut, readFileSync(archive).subarray(0, 1 << 20));
  const dst = join(base, "dst");
  mkdirSync(dst);
  writeFileSync(join(dst, "big.bin"), "the old file");
  mkdirSync(join(dst, ".lifeboat-untar.99999")); // as a killed run leaves it
  try {
    await sshUntar(target(), cut, dst);
    assert.unreachable("a cut-off archive untarred");
  } catch (e) {
    assert.instance(e, LifeboatError);
  }
  assert.is(readFileSync(join(dst, "big.bin"), "utf8"), "the old file", "the old file is whole, not a cut-off new one");
  assert.equal(readdirSync(dst), ["big.bin"], "no staging folder (this run's or the killed run's) is left");
});

test("a file appended to while sshTar reads it is a warning (so is a socket), and the archive is complete", async () => {
  const { logs } = testContext();
  const base = tmp();
  const src = join(base, "store");
  mkdirSync(join(src, "logs"), { recursive: true });
  writeFileSync(join(src, "logs", "a-steady.txt"), "steady\n");
  const live = join(src, "logs", "deis-registry.log");
  const fd = openSync(live, "w");
  ftruncateSync(fd, 512 << 20); // 512 MiB to read: long enough to be caught mid-read
  closeSync(fd);
  const sock = createServer();
  await new Promise<void>((r) => sock.listen(join(src, "logs", "app.sock"), r));
  const writer = setInterval(() => appendFileSync(live, "GET /v2/ 200\n"), 2);
  const archive = join(base, "store.tar");
  let r;
  try {
    r = await sshTar(target(), src, archive);
  } finally {
    clearInterval(writer);
    sock.close();
  }
  assert.equal(r.changed, ["./logs/deis-registry.log"]);
  assert.equal(r.warnings, ["./logs/app.sock: socket ignored"]);
  assert.match(logs(), "1 file changed while tar read it");
  assert.match(logs(), "./logs/deis-registry.log");
  const out = join(base, "out");
  mkdirSync(out);
  execFileSync("tar", ["-C", out, "-xf", archive]); // throws unless the archive is complete and clean
  assert.is(readFileSync(join(out, "logs", "a-steady.txt"), "utf8"), "steady\n");
  assert.ok(statSync(join(out, "logs", "deis-registry.log")).size >= 512 << 20);
});

test("a $(…) in remote paths and excludes is a name, never run", async () => {
  testContext();
  const base = tmp();
  const marker = join(base, "pwned");
  const evil = join(base, `$(touch ${marker})`, "`touch ${marker}`; touch ${marker}");
  mkdirSync(evil, { recursive: true });
  writeFileSync(join(evil, "data.txt"), "data\n");
  const archive = join(base, "evil.tar");
  await sshTar(target(), evil, archive, { exclude: [`$(touch ${marker})`] });
  await sshUntar(target(), archive, join(base, `'; touch ${marker}; '`, `$(touch ${marker})`), { mkdir: true });
  await ssh(target(), ["ls", "-la", `$(touch ${marker})`, `;touch ${marker}`], { okCodes: [0, 2] });
  assert.not.ok(existsSync(marker), "nothing was executed");
  assert.is(readFileSync(join(base, `'; touch ${marker}; '`, `$(touch ${marker})`, "data.txt"), "utf8"), "data\n");
});

test("a tar error other than changed files fails, names the file and leaves no archive", async () => {
  testContext();
  const base = tmp();
  chmodSync(base, 0o755);
  const src = join(base, "store");
  mkdirSync(src);
  chmodSync(src, 0o755);
  writeFileSync(join(src, "public.txt"), "hello\n");
  writeFileSync(join(src, "secret.key"), "root only\n", { mode: 0o600 });
  const out = join(base, "out");
  const err = await failure(sshTar(target(lab.LAB_SSH_USER2), src, join(out, "store.tar")));
  assert.match(err.message, "./secret.key: Cannot open: Permission denied");
  assert.match(err.hint ?? "", "sudo");
  assert.equal(readdirSync(out), [], "no archive and no temp file");
  const err2 = await failure(sshTar(target(), join(base, "no such dir"), join(out, "x.tar")));
  assert.match(err2.message, "Cannot open: No such file or directory");
  assert.equal(readdirSync(out), []);
});

test("sshd killed mid-transfer: a clear error, and no file under the final name", async () => {
  testContext();
  const base = tmp();
  // A throwaway sshd with the lab's config on another loopback port.
  const port = await freePort();
  const conf = readFileSync(join(lab.LAB_SSH_KEY, "..", "sshd_config"), "utf8")
    .replace(/^Port .*$/m, `Port ${port}`)
    .replace(/^PidFile .*$/m, `PidFile ${join(base, "sshd.pid")}`);
  writeFileSync(join(base, "sshd_config"), conf);
  const known = readFileSync(lab.LAB_SSH_KNOWN_HOSTS, "utf8").replace(/^\[127\.0\.0\.1\]:\d+/m, `[127.0.0.1]:${port}`);
  writeFileSync(join(base, "known_hosts"), known);
  const sshd = spawn("/usr/sbin/sshd", ["-D", "-f", join(base, "sshd_config"), "-E", join(base, "sshd.log")], { stdio: "ignore" });
  const killTree = () => {
    // the listener, its session processes and the remote tar: all started by this test, by pid
    const pids = [sshd.pid!];
    for (let i = 0; i < pids.length; i++) {
      const r = spawnSync("pgrep", ["-P", String(pids[i])], { encoding: "utf8" });
      pids.push(...r.stdout.split("\n").filter(Boolean).map(Number));
    }
    for (const p of pids) {
      try {
        process.kill(p, "SIGKILL");
      } catch { /* gone */ }
    }
  };
  try {
    const t = target("root", port, join(base, "known_hosts"));
    await until("the throwaway sshd", () => spawnSync("ssh", [...sshArgs(t), "true"]).status === 0);
    const src = join(base, "big");
    mkdirSync(src);
    const fd = openSync(join(src, "4GiB.img"), "w");
    ftruncateSync(fd, 4 * 1024 ** 3);
    closeSync(fd);
    const out = join(base, "out");
    const final = join(out, "big.tar");
    const started = sshTar(t, src, final);
    started.catch(() => {});
    await until("32 MiB to arrive", () => readdirSync(out, { withFileTypes: true }).some((d) => d.name.startsWith(".partial-") && statSync(join(out, d.name)).size > 32 << 20));
    killTree();
    const err = await failure(started);
    assert.match(err.message, `ssh to root@127.0.0.1:${port} failed`);
    assert.match(err.message, /closed|reset|broken pipe/i);
    assert.not.ok(existsSync(final), "no file under the final name");
    assert.equal(readdirSync(out), [], "and no temp file either");
  } finally {
    killTree();
  }
});

test("the connection dies mid-transfer with local gzip (5 kills): a prompt error naming host:port, and no file left", async () => {
  testContext();
  const base = tmp();
  const src = join(base, "src");
  mkdirSync(src);
  for (let i = 0; i < 4; i++) writeFileSync(join(src, `random-${i}.bin`), seededBytes(`kill-gzip-${i}`, 64 << 20));
  const marker = `lifeboat-kill-${process.pid}`; // an exclude that names our remote tar among the lab's sessions
  for (let i = 0; i < 5; i++) {
    const out = join(base, `out${i}`);
    const p = sshTar(target(), src, join(out, "store.tar.gz"), { gzip: "local", exclude: [marker], progress: false });
    p.catch(() => {});
    await until("gzipped bytes to arrive", () => existsSync(out) && readdirSync(out).some((n) => statSync(join(out, n)).size > (4 + i * 4) << 20));
    // Kill the sshd session process serving this connection (the remote tar's parent), not the listener.
    const tar = spawnSync("pgrep", ["-f", `^tar .*--exclude=${marker}`], { encoding: "utf8" }).stdout.trim().split("\n").filter(Boolean);
    assert.is(tar.length, 1, "one remote tar of ours");
    const session = Number(spawnSync("ps", ["-o", "ppid=", "-p", tar[0]], { encoding: "utf8" }).stdout.trim());
    assert.match(spawnSync("ps", ["-o", "args=", "-p", String(session)], { encoding: "utf8" }).stdout, /^sshd: root@notty/);
    process.kill(session, "SIGKILL");
    let settled = false;
    p.catch(() => {}).finally(() => (settled = true));
    await until(`sshTar to fail after kill ${i + 1} (it hung)`, () => settled, 20_000).catch((e) => assert.unreachable((e as Error).message));
    const err = await failure(p);
    assert.match(err.message, `ssh to root@127.0.0.1:${lab.LAB_SSH_PORT} failed`);
    assert.match(err.message, /closed|reset|broken pipe/i);
    assert.equal(readdirSync(out), [], `kill ${i + 1}: no archive and no partial file`);
  }
});

function sshArgs(t: SshTarget): string[] {
  return ["-o", "BatchMode=yes", "-p", String(t.port), "-i", t.identityFile!, "-o", `UserKnownHostsFile=${t.knownHostsFile}`, "-o", "StrictHostKeyChecking=yes", `${t.user}@${t.host}`];
}

test("keepalives are on by default, settable, and an option of the same name overrides the default", () => {
  const words = (t: SshTarget) => sshCommand(t, ["true"]).filter((w, i, a) => a[i - 1] === "-o");
  assert.ok(words(target()).includes("ServerAliveInterval=15"));
  assert.ok(words(target()).includes("ServerAliveCountMax=4"));
  const set = words({ ...target(), serverAliveInterval: 5, serverAliveCountMax: 2 });
  assert.ok(set.includes("ServerAliveInterval=5") && set.includes("ServerAliveCountMax=2") && !set.includes("ServerAliveInterval=15"));
  const over = words({ ...target(), options: { serveraliveinterval: "7", ConnectTimeout: "30" } });
  assert.equal(over.filter((w) => /^(serveraliveinterval|ServerAliveInterval|ConnectTimeout)=/.test(w)), ["serveraliveinterval=7", "ConnectTimeout=30"]);
});

test("AES-GCM is preferred on a CPU with AES instructions, ahead of ssh's own list, and a Ciphers option replaces it", async () => {
  const words = (t: SshTarget) => sshCommand(t, ["true"]).filter((w, i, a) => a[i - 1] === "-o");
  const aes = /^(flags|Features)\s*:.*\baes\b/m.test(readFileSync("/proc/cpuinfo", "utf8"));
  assert.equal(words(target()).filter((w) => w.startsWith("Ciphers=")), aes ? ["Ciphers=^aes128-gcm@openssh.com,aes256-gcm@openssh.com"] : []);
  assert.equal(words({ ...target(), options: { Ciphers: "chacha20-poly1305@openssh.com" } }).filter((w) => /^ciphers=/i.test(w)), ["Ciphers=chacha20-poly1305@openssh.com"]);
  // the lab's sshd accepts what the client now asks for: a login works with the defaults
  assert.equal((await ssh(target(), ["echo", "ok"])).stdout.trim(), "ok");
});

test("sshClear empties dirs named like find expressions (-delete, !) and nothing else: the lab user's home keeps its files", async () => {
  const t = target(lab.LAB_SSH_USER2); // home /home/lifeboat: a relative dir is relative to it
  const { stdout: home } = await ssh(t, ["pwd"]);
  await ssh(t, ["sh", "-c", 'mkdir -p -- ./-delete && touch -- ./-delete/x lifeboat-keep-me']);
  try {
    await ssh(t, ["sh", "-c", 'mkdir -p -- "./!" && touch -- "./!/y"']);
    await sshClear(t, ["-delete", "!"]);
    const { stdout } = await ssh(t, ["sh", "-c", 'find ./-delete "./!" -mindepth 1; test -e lifeboat-keep-me && test -e .profile && echo kept']);
    assert.is(stdout, "kept\n", `-delete emptied, the rest of ${home.trim()} kept`);
  } finally {
    await ssh(t, ["rm", "-rf", "--", "./-delete", "./!", "lifeboat-keep-me"]);
  }
});

test("an unreachable port fails fast with a connection error", async () => {
  testContext();
  const port = await freePort();
  const out = tmp();
  const t0 = Date.now();
  const err = await failure(sshTar(target("root", port), "/var/lib/deis/store", join(out, "s.tar")));
  assert.ok(Date.now() - t0 < 10_000, "well under ssh's ConnectTimeout");
  assert.match(err.message, `ssh to root@127.0.0.1:${port} failed: ssh: connect to host 127.0.0.1 port ${port}: Connection refused`);
  assert.match(err.hint ?? "", "check that the host is up");
  assert.equal(readdirSync(out), []);
  const err2 = await failure(ssh(target("root", port), ["true"]));
  assert.match(err2.message, "Connection refused");
});

test("dry-run prints the ssh commands and runs nothing", async () => {
  const { logs } = testContext({ argv: ["--dry-run"] });
  const base = tmp();
  const marker = join(base, "touched");
  const r = await sshTar(target(), "/var/lib/deis/store", join(base, "store.tar.gz"), { sudo: true, gzip: "remote" });
  assert.is(r.dryRun, true);
  await sshUntar(target(), join(base, "store.tar.gz"), join(base, "restored"), { mkdir: true, sudo: true, sameOwner: true });
  await ssh(target(), ["touch", marker]);
  assert.equal(readdirSync(base), [], "no archive, no restored dir, no marker");
  const text = logs();
  assert.match(text, `[dry-run] ssh `);
  assert.match(text, `-- 'sudo -n -- env LC_ALL=C tar -C /var/lib/deis/store -c -p -f - -z .' > ${join(base, "store.tar.gz")}`);
  assert.match(text, ` ${join(base, "restored")} 1 tar -x -p -f - -z --same-owner' < ${join(base, "store.tar.gz")}`);
  assert.match(text, `-- 'touch ${marker}'`);
});

test("sshPut killed mid-copy leaves nothing under the final name: the remote side checks the size before its rename", async () => {
  const dir = tmp();
  const file = join(dir, "big.bin");
  for (let i = 0; i < 16; i++) appendFileSync(file, seededBytes(`put${i}`, 16 << 20)); // 256 MiB
  const dest = join(dir, "remote", "copy.bin");
  const t = target();
  const p = spawn("node", ["--import=tsx", new URL("./fixtures/put-child.ts", import.meta.url).pathname, file, dest, t.host, String(t.port), t.user!, t.identityFile!, t.knownHostsFile!], { stdio: ["ignore", "pipe", "inherit"] });
  const partial = join(dir, "remote", ".partial-copy.bin");
  const exited = new Promise<void>((r) => p.once("exit", () => r()));
  await new Promise<void>((r) => p.stdout!.once("data", () => r()));
  for (let i = 0; i < 500 && !(existsSync(partial) && statSync(partial).size > 1 << 20); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(existsSync(partial), "the copy had begun");
  p.kill("SIGKILL");
  await exited;
  // ssh (orphaned) sees its input end and the remote cat finishes: give them time
  for (let i = 0; i < 100 && existsSync(partial); i++) await new Promise((r) => setTimeout(r, 50));
  assert.not.ok(existsSync(dest), `a ${existsSync(dest) ? statSync(dest).size : 0}-byte copy under the final name after the kill`);
  assert.not.ok(existsSync(partial), "the partial copy is removed");
});

test.run();
