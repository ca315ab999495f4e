// The Xenon recipes against the stand-in (test/standins/xenon.ts, run as its own process so the
// restore's restart command really restarts it): ZIP round trip onto a fresh host, a DIRECTORY
// chain of three runs restored at run 2 and run 3, STREAM through lifeboat's receiver, http
// restore through lifeboat's Range server, point in time, and the failure cases.
// Run: bash test/run.sh test/xenon.test.ts
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync, readdirSync, existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { xenonBackup } from "../lib/mod.ts";
import { runRecipe } from "../tasks/drills/hoss.ts";
import { cleanupTmp, freePort, testContext, tmp } from "./helpers.ts";

testContext();
const ROOT = fileURLToPath(new URL("..", import.meta.url)).replace(/\/$/, "");
const pids: string[] = [];
test.after(() => {
  for (const f of pids) if (existsSync(f)) try { process.kill(Number(readFileSync(f, "utf8")), "SIGTERM"); } catch { /* gone */ }
  cleanupTmp();
});

/** A stand-in host in its own process, and the restart command that stops and starts it again. */
async function host(id: string): Promise<{ url: string; dir: string; restart: string[] }> {
  const dir = tmp("xenon-host-");
  const port = await freePort();
  const start = `cd ${ROOT} && (setsid node --import=tsx test/standins/xenon.ts --port ${port} --sandbox ${dir}/sandbox --id ${id} >>${dir}/host.log 2>&1 & echo $! >${dir}/pid)`;
  writeFileSync(`${dir}/restart.sh`, `kill -TERM $(cat ${dir}/pid); while kill -0 $(cat ${dir}/pid) 2>/dev/null; do sleep 0.1; done\n${start}\n`);
  await new Promise((ok) => spawn("bash", ["-c", start], { stdio: "ignore" }).on("close", ok));
  pids.push(`${dir}/pid`);
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    if (await fetch(`${url}/core/management`).then((r) => r.ok, () => false)) return { url, dir, restart: ["bash", `${dir}/restart.sh`] };
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`stand-in did not start: ${readFileSync(`${dir}/host.log`, "utf8")}`);
}

async function req(url: string, method = "GET", body?: unknown): Promise<any> {
  const r = await fetch(url, { method, headers: { "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body) });
  const t = await r.text();
  return { status: r.status, body: t ? JSON.parse(t) : null };
}
async function seed(url: string, names: string[]): Promise<void> {
  for (const n of names) assert.is((await req(`${url}/core/examples`, "POST", { name: n, documentSelfLink: n, counter: n.length, keyValues: { k: `v ${n}` } })).status, 200);
}
/** name and counter of every document, by selfLink (GET each one: the restart is what makes them right). */
async function documents(url: string): Promise<Record<string, string>> {
  const links = (await req(`${url}/core/examples`)).body.documentLinks as string[];
  const out: Record<string, string> = {};
  for (const l of links) {
    const d = (await req(`${url}${l}`)).body;
    out[l] = `${d.name}|${d.counter}|${JSON.stringify(d.keyValues)}|${d.documentVersion}|${d.documentOwner}`;
  }
  return out;
}

function site(dir: string, url: string, extra: Record<string, unknown> = {}): string[] {
  const s = {
    url,
    "backups.dir": `${dir}/backups`,
    staging: `${dir}/staging`,
    "directory.store": `${dir}/store`,
    ...("restart" in extra || "deliver" in extra ? {} : { "directory.workspace": `${dir}/workspace` }),
    ...extra,
  };
  return ["--state-dir", `${dir}/state`, ...Object.entries(s).flatMap(([k, v]) => Array.isArray(v) ? [`--${k}=${v.join(",")}`] : [`--${k}=${v}`]), "--yes"];
}
const archiveIn = (dir: string) => join(`${dir}/backups`, readdirSync(`${dir}/backups`).filter((f) => f.endsWith(".tar.gz")).sort().at(-1)!);

test("ZIP: backup, restore onto a fresh host, restart, every document equal; the new node is told --id", async () => {
  const work = tmp();
  const a = await host("node-a");
  await seed(a.url, ["alpha", "beta", "name with spaces", "ünïcødé"]);
  const want = await documents(a.url);
  const b = await runRecipe("xenon-backup", site(work, a.url));
  assert.is(b.code, 0, b.output);
  assert.match(b.output, /--id=node-a/);
  const fresh = await host("node-b");
  const r = await runRecipe("xenon-restore", [archiveIn(work), ...site(work, fresh.url, { restart: fresh.restart })]);
  assert.is(r.code, 0, r.output);
  assert.match(r.output, /start the new node with --id=node-a/);
  assert.equal(await documents(fresh.url), want);
});

test("DIRECTORY: a chain of three runs (deletes, patches, new documents between); runs 2 and 3 restore onto fresh hosts exactly", async () => {
  const work = tmp();
  const a = await host("node-a");
  await seed(a.url, Array.from({ length: 20 }, (_, i) => `foo-${i}`));
  assert.is((await runRecipe("xenon-backup", site(work, a.url, { "backup.type": "DIRECTORY", "directory.full": true }))).code, 0);
  for (let i = 0; i < 5; i++) await req(`${a.url}/core/examples/foo-${i}`, "DELETE");
  for (let i = 5; i < 10; i++) await req(`${a.url}/core/examples/foo-${i}`, "PATCH", { name: `foo-${i}-patched` });
  await seed(a.url, Array.from({ length: 10 }, (_, i) => `new-${i}`));
  const r2 = await runRecipe("xenon-backup", site(work, a.url, { "backup.type": "DIRECTORY" }));
  assert.is(r2.code, 0, r2.output);
  const at2 = await documents(a.url);
  for (let i = 10; i < 15; i++) await req(`${a.url}/core/examples/foo-${i}`, "DELETE");
  await seed(a.url, ["third-run"]);
  const r3 = await runRecipe("xenon-backup", site(work, a.url, { "backup.type": "DIRECTORY", "directory.keep-runs": 3 }));
  assert.is(r3.code, 0, r3.output);
  const at3 = await documents(a.url);
  const runs = readdirSync(`${work}/store/runs`).sort().map((f) => JSON.parse(readFileSync(`${work}/store/runs/${f}`, "utf8")));
  assert.is(runs.length, 3);
  assert.ok(runs[1].shippedBytes < runs[0].shippedBytes + 1e9 && runs[1].added.length < runs[1].files.length, "run 2 shipped only new files");
  for (const [n, want] of [[1, at2], [2, at3]] as const) {
    const fresh = await host("node-a");
    const r = await runRecipe("xenon-restore", [runs[n].run, ...site(work, fresh.url, { restart: fresh.restart })]);
    assert.is(r.code, 0, r.output);
    assert.equal(await documents(fresh.url), want);
  }
  assert.is((await req(`${a.url}/core/examples/foo-0`)).status, 404);
});

test("STREAM through lifeboat's receiver, then an http restore through lifeboat's Range server", async () => {
  const work = tmp();
  const a = await host("node-a");
  await seed(a.url, Array.from({ length: 300 }, (_, i) => `s-${i}-${"x".repeat(i % 50)}`));
  const want = await documents(a.url);
  const b = await runRecipe("xenon-backup", site(work, a.url, { "backup.type": "STREAM" }));
  assert.is(b.code, 0, b.output);
  assert.match(b.output, /received .* in \d+ chunks/);
  const fresh = await host("node-a");
  const r = await runRecipe("xenon-restore", [archiveIn(work), ...site(work, fresh.url, { restart: fresh.restart, deliver: "http" })]);
  assert.is(r.code, 0, r.output);
  assert.match(r.output, /served .* in \d+ requests/);
  assert.equal(await documents(fresh.url), want);
});

test("point in time: --at gives back the versions of that instant, a deleted document included", async () => {
  const work = tmp();
  const a = await host("node-a");
  await seed(a.url, ["pit"]);
  for (let i = 1; i <= 5; i++) await req(`${a.url}/core/examples/pit`, "PATCH", { name: `v${i}` });
  await new Promise((r) => setTimeout(r, 20));
  const instant = new Date().toISOString();
  await new Promise((r) => setTimeout(r, 20));
  for (let i = 6; i <= 9; i++) await req(`${a.url}/core/examples/pit`, "PATCH", { name: `v${i}` });
  await req(`${a.url}/core/examples/pit`, "DELETE");
  assert.is((await runRecipe("xenon-backup", site(work, a.url))).code, 0);
  const fresh = await host("node-a");
  const r = await runRecipe("xenon-restore", [archiveIn(work), ...site(work, fresh.url, { restart: fresh.restart, at: instant })]);
  assert.is(r.code, 0, r.output);
  const d = (await req(`${fresh.url}/core/examples/pit`)).body;
  assert.is(d.documentVersion, 5);
  assert.is(d.name, "v5");
});

test("failures: a corrupted zip is refused before the PATCH; Xenon's own error shown plainly; a host that never comes back times out", async () => {
  const work = tmp();
  const a = await host("node-a");
  await seed(a.url, ["one"]);
  assert.is((await runRecipe("xenon-backup", site(work, a.url))).code, 0);
  // a corrupted archive: the archive check refuses it (exit 3) before anything reaches the host
  const arch = archiveIn(work);
  const bytes = readFileSync(arch);
  bytes[Math.floor(bytes.length / 2)] ^= 0xff;
  const bad = `${work}/backups/xenon-backup-corrupt.tar.gz`;
  writeFileSync(bad, bytes);
  const fresh = await host("node-b");
  const r1 = await runRecipe("xenon-restore", [bad, ...site(work, fresh.url, { restart: fresh.restart })]);
  assert.is(r1.code, 3, r1.output);
  assert.not.match(r1.output, /PATCH http/);
  // Xenon refuses a ZIP into a directory: its own message, plainly
  const refused = await xenonBackup(a.url, { destination: `file:${work}/`, type: "ZIP" }).then(() => null, (e: Error) => e.message);
  assert.is(refused, `Xenon at ${a.url} refused the backup (HTTP 500): destination ${work} must be a local file for zip backup.`);
  // a restart that never brings the host back
  const r3 = await runRecipe("xenon-restore", [arch, ...site(work, fresh.url, { restart: ["bash", "-c", `kill -TERM $(cat ${fresh.dir}/pid)`], "restart-timeout": 3 })]);
  assert.is(r3.code, 1, r3.output);
  assert.match(r3.output, /gave up waiting for the Xenon host at /);
});

test.run();
