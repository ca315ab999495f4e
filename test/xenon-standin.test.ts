// The Xenon stand-in (test/standins/xenon.ts) against ports of upstream's own tests:
// TestServiceHostManagementService (testBackupAndRestoreFromRemoteHost, …WithLocalFile,
// …WithLocalDirectoryIncremental, timeSnapshotRecovery, autoBackup) and
// TestLuceneDocumentIndexBackupService (backupRequestParameters, the directory/zip round trips and
// their in-memory variants, incrementalBackupWithInMemoryIndex), with the same assertions, plus
// the status codes and messages of ServiceHostManagementService.handlePatch; then what the
// recipes rely on beyond them: FileUtils.getFile's ranges and plain 200, putChunks' batches (10
// together, empty PUTs past the end, the 10th's answer starting the next, no retries),
// auto-backup's coalescing and failure counts, /core/document-index lookups, DELETE
// /core/management. This is the proof that the stand-in is faithful enough for the recipes'
// tests. No lab needed.
// Run: bash test/run.sh test/xenon-standin.test.ts
import { test } from "uvu";
import * as assert from "uvu/assert";
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, writeFileSync, writeSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { AUTO_BACKUP_KIND, BACKUP_KIND, RESTORE_KIND, IN_MEMORY_INDEX, putFile, startXenonHost, nowMicros, type XenonHost } from "./standins/xenon.ts";
import { cleanupTmp, tmp } from "./helpers.ts";

const hosts: XenonHost[] = [];
const servers: Server[] = [];
test.after.each(async () => {
  for (const h of hosts.splice(0)) await h.close();
  for (const s of servers.splice(0)) await new Promise((ok) => (s.close(ok), s.closeAllConnections()));
});
test.after(() => cleanupTmp());

async function newHost(opts: { inMemory?: boolean; sandbox?: string; id?: string; isAutoBackupEnabled?: boolean; autoBackupDirectory?: string } = {}): Promise<XenonHost> {
  const h = await startXenonHost({ ...opts, sandbox: opts.sandbox ?? tmp("xenon-sandbox-"), maintenanceMs: 0 });
  hosts.push(h);
  return h;
}

/** host.tearDown(), or stop + start on the same sandbox (restartHostAndWaitAvailable). */
async function tearDown(h: XenonHost): Promise<void> {
  hosts.splice(hosts.indexOf(h), 1);
  await h.close();
}
async function restart(h: XenonHost): Promise<XenonHost> {
  await tearDown(h);
  return newHost({ sandbox: h.sandbox, id: h.id });
}

async function call(url: string, method = "GET", body?: unknown): Promise<{ status: number; body: Record<string, any> }> {
  const r = await fetch(url, { method, headers: body === undefined ? {} : { "content-type": "application/json" }, body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}
async function ok(url: string, method = "GET", body?: unknown): Promise<Record<string, any>> {
  const r = await call(url, method, body);
  if (r.status !== 200) throw new Error(`${method} ${url}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}
const manage = (h: XenonHost, body: unknown) => call(`${h.url}/core/management`, "PATCH", body);

/** populateExampleServices: n docs with random names and a counter. */
async function populate(h: XenonHost, n: number, factory = "/core/examples"): Promise<Map<string, { name: string; counter: number }>> {
  const out = new Map<string, { name: string; counter: number }>();
  for (let i = 0; i < n; i++) {
    const d = await ok(`${h.url}${factory}`, "POST", { name: crypto.randomUUID(), counter: i });
    out.set(d.documentSelfLink, { name: d.name, counter: d.counter });
  }
  return out;
}

/** Every Content-Range of a PUT the local file services took, in arrival order. */
const putRanges: string[] = [];

/** LocalFileService, as the upstream test starts it: PUT writes the body at Content-Range's start; GET with Range answers [start, min(end,size)) with an exclusive-end Content-Range. */
async function localFileService(file: string): Promise<string> {
  const srv = createServer(async (req, res) => {
    const parts: Buffer[] = [];
    for await (const b of req) parts.push(b as Buffer);
    const body = Buffer.concat(parts);
    if (req.method === "PUT") {
      putRanges.push(`${req.headers["content-range"]} ${body.length} ${req.headers["content-type"]}`);
      const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(String(req.headers["content-range"]));
      const fd = openSync(file, existsSync(file) ? "r+" : "w");
      writeSync(fd, body, 0, body.length, m ? Number(m[1]) : 0);
      closeSync(fd);
      return res.end();
    }
    const data = readFileSync(file);
    const m = /^bytes=(\d+)-(\d+)$/.exec(String(req.headers.range ?? ""));
    if (!m) return res.end(JSON.stringify({ localFileUri: `file:${file}`, writeFinished: true }));
    const start = Number(m[1]);
    const end = Math.min(Number(m[2]), data.length);
    res.writeHead(200, { "content-range": `bytes ${start}-${end}/${data.length}` });
    res.end(data.subarray(start, end));
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  servers.push(srv);
  return `http://127.0.0.1:${(srv.address() as AddressInfo).port}/local-files/backup`;
}

async function expectExamples(h: XenonHost, expected: Map<string, { name: string; counter: number }>, count: number, factory = "/core/examples") {
  const q = await ok(`${h.url}${factory}?$expand`);
  assert.ok(q.documents);
  assert.is(Object.keys(q.documents).length, count);
  for (const [link, want] of expected) {
    const got = q.documents[link];
    assert.ok(got, `${link} restored`);
    assert.is(got.name, want.name);
    assert.is(got.counter, want.counter);
  }
}

// ---- TestServiceHostManagementService ----

test("testBackupAndRestoreFromRemoteHost: 100 then 1101 documents through a STREAM backup and a ranged-GET restore", async () => {
  let host = await newHost();
  const file = join(tmp(), "intermediate-file.zip");
  writeFileSync(file, "");
  const all = new Map<string, { name: string; counter: number }>();
  for (const [n, expected] of [[100, 100], [1001, 1101]]) {
    for (const [k, v] of await populate(host, n)) all.set(k, v);
    const uri = await localFileService(file);
    const b = await ok(`${host.url}/core/management`, "PATCH", { kind: BACKUP_KIND, destination: uri });
    assert.is(b.backupType, "STREAM", "an http destination is forced to STREAM");
    const sandbox = host.sandbox;
    await tearDown(host);
    host = await newHost();
    await ok(`${host.url}/core/management`, "PATCH", { kind: RESTORE_KIND, destination: await localFileService(file) });
    await expectExamples(host, all, expected);
    void sandbox;
  }
});

test("testBackupAndRestoreWithLocalFile: a file: zip restored on a fresh host, no restart before the factory query", async () => {
  let host = await newHost();
  const file = join(tmp(), "backup.zip");
  writeFileSync(file, "");
  const docs = await populate(host, 100);
  await ok(`${host.url}/core/management`, "PATCH", { kind: BACKUP_KIND, destination: `file:${file}` });
  await tearDown(host);
  host = await newHost();
  await ok(`${host.url}/core/management`, "PATCH", { kind: RESTORE_KIND, destination: `file:${file}` });
  await expectExamples(host, docs, 100);
});

test("testBackupAndRestoreWithLocalDirectoryIncremental: deleted docs 404, patched ones patched, new ones there", async () => {
  let host = await newHost();
  const dir = join(tmp(), "backup");
  mkdirSync(dir);
  const initial: string[] = [];
  for (let i = 0; i < 20; i++) initial.push((await ok(`${host.url}/core/examples`, "POST", { name: `foo-${i}`, documentSelfLink: `foo-${i}` })).documentSelfLink);
  const backup = { kind: BACKUP_KIND, destination: `file:${dir}/`, backupType: "DIRECTORY" };
  await ok(`${host.url}/core/management`, "PATCH", backup);
  assert.ok(readdirSync(dir).length !== 0, "backup directory must be populated.");
  const firstFiles = new Set(readdirSync(dir));

  await tearDown(host);
  host = await newHost();
  const restoreReq = { kind: RESTORE_KIND, destination: `file:${dir}/` };
  await ok(`${host.url}/core/management`, "PATCH", restoreReq);
  host = await restart(host);
  for (const link of initial) await ok(`${host.url}${link}`);

  for (const link of initial.slice(0, 10)) await ok(`${host.url}${link}`, "DELETE");
  for (const link of initial.slice(10, 15)) await ok(`${host.url}${link}`, "PATCH", { name: `${link.split("/").pop()}-patched` });
  const fresh: string[] = [];
  for (let i = 0; i < 20; i++) fresh.push((await ok(`${host.url}/core/examples`, "POST", { name: `foo-new-${i}`, documentSelfLink: `foo-new-${i}` })).documentSelfLink);

  await ok(`${host.url}/core/management`, "PATCH", backup);
  const secondFiles = new Set(readdirSync(dir));
  assert.ok([...secondFiles].some((f) => !firstFiles.has(f)), "the incremental backup added files");
  for (const f of firstFiles) if (secondFiles.has(f)) assert.equal(readFileSync(join(dir, f)).length > 0, true);

  await tearDown(host);
  host = await newHost();
  await ok(`${host.url}/core/management`, "PATCH", restoreReq);
  host = await restart(host);
  for (const link of initial.slice(0, 10)) assert.is((await call(`${host.url}${link}`)).status, 404, `${link} deleted`);
  for (const link of initial.slice(10, 15)) assert.ok((await ok(`${host.url}${link}`)).name.endsWith("-patched"), `doc should be updated: ${link}`);
  for (const link of initial.slice(15)) await ok(`${host.url}${link}`);
  for (const link of fresh) await ok(`${host.url}${link}`);
});

test("timeSnapshotRecovery: a restore with timeSnapshotBoundaryMicros gives back documentVersion 5, deleted document included", async () => {
  let host = await newHost();
  const file = join(tmp(), "pit.zip");
  writeFileSync(file, "");
  const links = ["/core/examples/foo", "/test/indexed-metadata-examples/bar"]; // ExampleService and IndexedMetadataExampleService
  for (const l of links) await ok(`${host.url}${l.slice(0, l.lastIndexOf("/"))}`, "POST", { name: "init", documentSelfLink: l });
  let snapshotTime = 0;
  for (let i = 1; i < 10; i++) {
    for (const l of links) await ok(`${host.url}${l}`, "PATCH", { name: `updated-v${i}` });
    if (i === 5) snapshotTime = nowMicros();
  }
  for (const l of links) await ok(`${host.url}${l}`, "DELETE");
  await ok(`${host.url}/core/management`, "PATCH", { kind: BACKUP_KIND, destination: await localFileService(file) });
  await tearDown(host);
  host = await newHost();
  await ok(`${host.url}/core/management`, "PATCH", { kind: RESTORE_KIND, destination: await localFileService(file), timeSnapshotBoundaryMicros: snapshotTime });
  for (const l of links) {
    const d = await ok(`${host.url}${l}`);
    assert.is(d.documentVersion, 5, "Point-in-time version");
    assert.is(d.name, "updated-v5");
    const q = await ok(`${host.url}/core/query-tasks`, "POST", { taskInfo: { isDirect: true }, querySpec: { query: { term: { propertyName: "documentSelfLink", matchValue: l } }, options: ["EXPAND_CONTENT"] } });
    assert.is(Object.keys(q.results.documents).length, 1);
    assert.is((Object.values(q.results.documents)[0] as { documentVersion: number }).documentVersion, 5, "Point-in-time version from query");
  }
});

test("autoBackup: a DIRECTORY backup after the index commits; after AutoBackupConfiguration{enable:false} new documents stay out; restored on a new sandbox, the first 20 exist and the last 20 are 404", async () => {
  const autoBackupPath = tmp("test-auto-backup-");
  const hostId = "my-test-host";
  const host = await newHost({ isAutoBackupEnabled: true, autoBackupDirectory: autoBackupPath, id: hostId });
  const autoBackupStatKey = "autoBackupPerformedCountPerDay";
  const stat = async (key: string) => (await ok(`${host.url}/core/management/stats`)).entries[key];
  const autoBackupStat = await stat(autoBackupStatKey);
  assert.is(autoBackupStat.latestValue, 0, "the stat exists from the start (initializeStats)");
  const states: string[] = [];
  for (let i = 0; i < 20; i++) states.push((await ok(`${host.url}/core/examples`, "POST", { name: `foo-${i}`, documentSelfLink: `foo-${i}` })).documentSelfLink);
  // perform lucene commit and trigger the auto backup (upstream: an in-process POST of a MaintenanceRequest)
  host.maintain();
  await host.autoBackupIdle();
  assert.ok(autoBackupStat.latestValue < (await stat(autoBackupStatKey)).latestValue, "AutoBackup needs to be performed.");
  assert.is((await stat("autoBackupPerformedCountPerHour")).latestValue, 1);
  assert.ok(readdirSync(autoBackupPath).some((f) => f.startsWith("segments_")), "a commit point in the auto-backup directory");

  const off = await ok(`${host.url}/core/management`, "PATCH", { kind: AUTO_BACKUP_KIND, enable: false });
  assert.is(off.enable, false);
  assert.is((await ok(`${host.url}/core/management`)).isAutoBackupEnabled, false);
  const statesAfterDisabled: string[] = [];
  for (let i = 100; i < 120; i++) statesAfterDisabled.push((await ok(`${host.url}/core/examples`, "POST", { name: `foo-${i}`, documentSelfLink: `foo-${i}` })).documentSelfLink);
  const files = readdirSync(autoBackupPath).sort();
  host.maintain(); // a commit while disabled: no backup
  await host.autoBackupIdle();
  assert.is((await stat(autoBackupStatKey)).latestValue, 1);
  assert.equal(readdirSync(autoBackupPath).sort(), files);

  // a new host on a new sandbox, auto-backup off, the same id; restore from the auto-backup directory, restart
  let newH = await newHost({ id: hostId, isAutoBackupEnabled: false });
  await ok(`${newH.url}/core/management`, "PATCH", { kind: RESTORE_KIND, destination: `file:${autoBackupPath}/` });
  newH = await restart(newH);
  for (const link of states) await ok(`${newH.url}${link}`);
  for (const link of statesAfterDisabled) assert.is((await call(`${newH.url}${link}`)).status, 404, `${link} should not find on restored host`);
});

test("auto-backup coalesces the commits that come while it runs into one re-run (autoBackupSkippedCount), and a failed one (autoBackupFailedCount) does not block the next", async () => {
  const dir = tmp("auto-");
  const host = await newHost({ isAutoBackupEnabled: true, autoBackupDirectory: dir });
  const stats = async () => Object.fromEntries(Object.entries((await ok(`${host.url}/core/management/stats`)).entries as Record<string, { latestValue: number }>).map(([k, v]) => [k, v.latestValue]));
  const raw = (name: string) => host.index.add({ name, documentSelfLink: `/core/examples/${name}`, documentVersion: 0, documentUpdateTimeMicros: nowMicros(), documentUpdateAction: "POST", documentKind: "com:vmware:xenon:services:common:ExampleService:ExampleServiceState" });
  await populate(host, 5);
  host.maintain(); // commit 1: the backup starts
  raw("during-1");
  host.maintain(); // commit 2 while it runs: skipped, queued
  raw("during-2");
  host.maintain(); // commit 3: skipped, folded into the same re-run
  await host.autoBackupIdle();
  const s = await stats();
  assert.equal([s.autoBackupPerformedCountPerDay, s.autoBackupSkippedCountPerDay, s.autoBackupPerformedCountPerHour, s.autoBackupSkippedCountPerHour], [2, 2, 2, 2], JSON.stringify(s));
  assert.is(s.autoBackupFailedCountPerDay, undefined, "no failure stat before a failure");
  const fresh = await newHost();
  await ok(`${fresh.url}/core/management`, "PATCH", { kind: RESTORE_KIND, destination: `file:${dir}/` });
  assert.is((await ok(`${fresh.url}/core/examples`)).documentCount, 7, "the re-run covered commits 2 and 3");

  // a regular file where the directory should be: each auto-backup fails, and the next one still runs
  const file = join(tmp(), "not-a-dir");
  writeFileSync(file, "");
  const bad = await newHost({ isAutoBackupEnabled: true, autoBackupDirectory: file });
  const badStats = async () => (await ok(`${bad.url}/core/management/stats`)).entries;
  for (const round of [1, 2]) {
    await populate(bad, 2);
    bad.maintain();
    await bad.autoBackupIdle();
    const e = await badStats();
    assert.equal([e.autoBackupFailedCountPerDay.latestValue, e.autoBackupFailedCountPerHour.latestValue, e.autoBackupPerformedCountPerDay.latestValue], [round, round, 0]);
  }
  // the host's own maintenance with nothing to commit notifies nothing
  bad.maintain();
  await bad.autoBackupIdle();
  assert.is((await badStats()).autoBackupFailedCountPerDay.latestValue, 2);
});

test("handlePatch: empty body, missing kind, unknown kind are 400 with upstream's messages in a ServiceErrorResponse", async () => {
  const host = await newHost();
  const empty = await call(`${host.url}/core/management`, "PATCH", "");
  assert.is(empty.status, 400);
  assert.is(empty.body.message, "empty body");
  assert.is(empty.body.documentKind, "com:vmware:xenon:common:ServiceErrorResponse");
  const noKind = await manage(host, { destination: "file:/tmp/x.zip" });
  assert.equal([noKind.status, noKind.body.message], [400, "kind is required"]);
  const unknown = await manage(host, { kind: "com:vmware:xenon:Nope" });
  assert.equal([unknown.status, unknown.body.message], [400, "unknown request"]);
  const noScheme = await manage(host, { kind: BACKUP_KIND, destination: "/tmp/x.zip" });
  assert.is(noScheme.status, 400);
  const ftp = await manage(host, { kind: BACKUP_KIND, destination: "ftp://example/x.zip" });
  assert.is(ftp.status, 500);
  const restoreNoDest = await manage(host, { kind: RESTORE_KIND });
  assert.equal([restoreNoDest.status, restoreNoDest.body.message], [500, "destination is required."]);
  const direct = await call(`${host.url}/core/document-index-backup`, "PATCH", { kind: BACKUP_KIND, destination: "file:/tmp/x.zip" });
  assert.is(direct.status, 405);
  const indexGet = await call(`${host.url}/core/document-index`);
  assert.equal([indexGet.status, indexGet.body.message], [400, "documentSelfLink query parameter is required"]);
  const noName = await call(`${host.url}/core/examples`, "POST", { counter: 1 });
  assert.equal([noName.status, noName.body.message], [400, "name is required"]);
});

// ---- TestLuceneDocumentIndexBackupService ----

test("backupRequestParameters: ZIP and DIRECTORY destinations are checked as upstream checks them", async () => {
  const host = await newHost();
  await populate(host, 3);
  const noDest = await manage(host, { kind: BACKUP_KIND });
  assert.equal([noDest.status, noDest.body.message], [500, "backup destination must be specified."]);
  const existingFile = join(tmp(), "existing");
  writeFileSync(existingFile, "");
  await ok(`${host.url}/core/management`, "PATCH", { kind: BACKUP_KIND, destination: `file:${existingFile}` });
  assert.ok(statSync(existingFile).isFile(), "backup zip file should exist");
  assert.ok(statSync(existingFile).size > 0, "existing empty file should be overridden");
  const existingDir = tmp();
  const zipToDir = await manage(host, { kind: BACKUP_KIND, backupType: "ZIP", destination: `file:${existingDir}/` });
  assert.equal([zipToDir.status, zipToDir.body.message], [500, `destination ${existingDir} must be a local file for zip backup.`]);
  const dirNoDest = await manage(host, { kind: BACKUP_KIND, backupType: "DIRECTORY" });
  assert.is(dirNoDest.status, 500);
  const dirToFile = await manage(host, { kind: BACKUP_KIND, backupType: "DIRECTORY", destination: `file:${existingFile}` });
  assert.equal([dirToFile.status, dirToFile.body.message], [500, `destination ${existingFile} must be a local directory for incremental backup.`]);
  await ok(`${host.url}/core/management`, "PATCH", { kind: BACKUP_KIND, backupType: "DIRECTORY", destination: `file:${existingDir}/` });
  assert.ok(readdirSync(existingDir).length > 0, "backup directory must be populated.");
  assert.not.ok(readdirSync(existingDir).includes("write.lock"), "only the commit's files (commit 00ef8228)");
});

for (const [kind, inMemory] of [["Directory", false], ["ZipFile", false], ["DirectoryToInMemoryIndex", true], ["ZipFileToInMemoryIndex", true]] as const) {
  test(`testBackupAndRestoreFrom${kind}: the data survives teardown and restore`, async () => {
    const factory = inMemory ? "/test/in-memory-examples" : "/core/examples";
    const index = inMemory ? { indexServiceLink: IN_MEMORY_INDEX } : {};
    let host = await newHost({ inMemory });
    const docs = await populate(host, 30, factory);
    const dest = kind.startsWith("Directory") ? `file:${tmp()}/` : `file:${join(tmp(), "b.zip")}`;
    await ok(`${host.url}/core/management`, "PATCH", { kind: BACKUP_KIND, destination: dest, backupType: kind.startsWith("Directory") ? "DIRECTORY" : "ZIP", ...index });
    await tearDown(host);
    host = await newHost({ inMemory });
    await ok(`${host.url}/core/management`, "PATCH", { kind: RESTORE_KIND, destination: dest, ...index });
    if (!inMemory) host = await restart(host);
    await expectExamples(host, docs, 30, factory);
  });
}

test("incrementalBackupWithInMemoryIndex: two DIRECTORY backups into one directory restore both batches", async () => {
  let host = await newHost({ inMemory: true });
  const dir = `${tmp()}/`;
  const req = { kind: BACKUP_KIND, destination: `file:${dir}`, backupType: "DIRECTORY", indexServiceLink: IN_MEMORY_INDEX };
  const a = await populate(host, 10, "/test/in-memory-examples");
  await ok(`${host.url}/core/management`, "PATCH", req);
  const b = await populate(host, 15, "/test/in-memory-examples");
  await ok(`${host.url}/core/management`, "PATCH", req);
  await tearDown(host);
  host = await newHost({ inMemory: true });
  await ok(`${host.url}/core/management`, "PATCH", { kind: RESTORE_KIND, destination: `file:${dir}`, indexServiceLink: IN_MEMORY_INDEX });
  const q = await ok(`${host.url}/test/in-memory-examples`);
  assert.is(q.documentCount, a.size + b.size);
});

// ---- what the recipes rely on beyond the upstream tests ----

test("STREAM sends 512 KiB PUTs whose Content-Range end is exclusive, as FileUtils.putFile does", async () => {
  const host = await newHost();
  for (let i = 0; i < 150; i++) {
    const noise = Buffer.from(crypto.getRandomValues(new Uint8Array(12 * 1024))).toString("base64");
    await ok(`${host.url}/core/examples`, "POST", { name: `big-${i}`, keyValues: { noise } });
  }
  const file = join(tmp(), "s.zip");
  writeFileSync(file, "");
  putRanges.length = 0;
  await ok(`${host.url}/core/management`, "PATCH", { kind: BACKUP_KIND, destination: await localFileService(file), backupType: "STREAM" });
  const size = statSync(file).size;
  assert.ok(putRanges.length >= 3, `${putRanges.length} chunks`);
  const parsed = putRanges.map((r) => r.split(" ")).map(([, range, len, type]) => ({ range, len: Number(len), type }));
  for (const p of parsed) {
    const [, a, b, t] = /^(\d+)-(\d+)\/(\d+)$/.exec(p.range)!.map(Number);
    assert.is(t, size);
    assert.is(b - a, p.len, "end is exclusive: end - start is the body length");
    assert.ok(p.len <= 512 * 1024);
    assert.is(p.type, "application/octet-stream");
  }
  assert.ok(parsed.some((p) => p.range.startsWith("0-524288/")), "the first chunk is bytes 0-524288");
});

test("a document started before a restore keeps its old state until the host restarts (why the wiki says MUST restart)", async () => {
  const src = await newHost();
  await ok(`${src.url}/core/examples`, "POST", { name: "from-backup", documentSelfLink: "x" });
  const zip = join(tmp(), "x.zip");
  await ok(`${src.url}/core/management`, "PATCH", { kind: BACKUP_KIND, destination: `file:${zip}` });
  let host = await newHost();
  await ok(`${host.url}/core/examples`, "POST", { name: "stale", documentSelfLink: "x" });
  await ok(`${host.url}/core/management`, "PATCH", { kind: RESTORE_KIND, destination: `file:${zip}` });
  // the restore merges into the index; the running service still answers its in-memory state
  assert.is((await ok(`${host.url}/core/examples/x`)).name, "stale");
  host = await restart(host);
  assert.ok(["from-backup", "stale"].includes((await ok(`${host.url}/core/examples/x`)).name));
});

test("an incremental DIRECTORY backup adds new immutable files and deletes unused ones, never rewriting a kept one", async () => {
  const host = await newHost();
  const dir = tmp();
  const req = { kind: BACKUP_KIND, destination: `file:${dir}/`, backupType: "DIRECTORY" };
  const seen = new Map<string, number>();
  let deleted = 0;
  for (let round = 0; round < 12; round++) {
    await populate(host, 5);
    await ok(`${host.url}/core/management`, "PATCH", req);
    const now = readdirSync(dir);
    for (const f of now) {
      const m = statSync(join(dir, f)).mtimeMs;
      if (seen.has(f)) assert.is(m, seen.get(f), `${f} kept untouched`);
      seen.set(f, m);
    }
    for (const f of [...seen.keys()]) if (!now.includes(f)) (seen.delete(f), deleted++);
    assert.is(now.filter((f) => f.startsWith("segments_")).length, 1, "one commit point");
  }
  assert.ok(deleted > 0, "merges made old files unused, and the backup deleted them");
});

test("documentOwner is the host id and a restore on a new node keeps the old one", async () => {
  const a = await newHost({ id: "node-a" });
  const d = await ok(`${a.url}/core/examples`, "POST", { name: "n", documentSelfLink: "owned" });
  assert.is(d.documentOwner, "node-a");
  assert.is((await ok(`${a.url}/core/management`)).id, "node-a");
  const zip = join(tmp(), "o.zip");
  await ok(`${a.url}/core/management`, "PATCH", { kind: BACKUP_KIND, destination: `file:${zip}` });
  const b = await newHost({ id: "node-b" });
  await ok(`${b.url}/core/management`, "PATCH", { kind: RESTORE_KIND, destination: `file:${zip}` });
  assert.is((await ok(`${b.url}/core/examples/owned`)).documentOwner, "node-a");
});

test("a damaged zip fails the restore (500) and leaves the index as it was", async () => {
  const host = await newHost();
  await populate(host, 4);
  const zip = join(tmp(), "bad.zip");
  writeFileSync(zip, "PK\x03\x04 this is not a zip");
  const r = await manage(host, { kind: RESTORE_KIND, destination: `file:${zip}` });
  assert.is(r.status, 500);
  assert.match(r.body.message, /ZipException/);
  assert.is((await ok(`${host.url}/core/examples`)).documentCount, 4);
});

// ---- FileUtils.getFile / putFile, the document index, DELETE /core/management ----

const CHUNK = 512 * 1024;

/** Writes n documents straight into the index (no HTTP), each with ~blob random base64 bytes; resolves to a host's zip of them. */
async function bigZip(n: number, blob: number): Promise<{ zip: string; links: string[] }> {
  const host = await newHost();
  const links: string[] = [];
  for (let i = 0; i < n; i++) {
    const link = `/core/examples/big-${i}`;
    links.push(link);
    host.index.add({ name: `big-${i}`, documentSelfLink: link, documentVersion: 0, documentUpdateTimeMicros: nowMicros(), documentUpdateAction: "POST", keyValues: { blob: Buffer.from(crypto.getRandomValues(new Uint8Array(blob))).toString("base64") } });
  }
  const zip = join(tmp(), "big.zip");
  await ok(`${host.url}/core/management`, "PATCH", { kind: BACKUP_KIND, destination: `file:${zip}` });
  return { zip, links };
}

/** A server for one file that records every request's Range header; `ranged` false: a plain static server (200, the whole file, no Content-Range). */
async function fileServer(file: string, mode: "ranged" | "plain" | "empty"): Promise<{ url: string; ranges: string[] }> {
  const ranges: string[] = [];
  const srv = createServer((req, res) => {
    ranges.push(String(req.headers.range ?? ""));
    const data = mode === "empty" ? Buffer.alloc(0) : readFileSync(file);
    const m = /^bytes=(\d+)-(\d+)$/.exec(String(req.headers.range ?? ""));
    if (mode !== "ranged" || !m) return void res.writeHead(200, { "content-length": data.length }).end(data);
    const start = Number(m[1]);
    const end = Math.min(Number(m[2]), data.length);
    res.writeHead(206, { "content-range": `bytes ${start}-${end}/${data.length}`, "content-length": end - start }).end(data.subarray(start, end));
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  servers.push(srv);
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/backup.zip`, ranges };
}

test("http restore: the first GET asks Range: bytes=0-524288, then each next range once (end exclusive, the last clamped to the size)", async () => {
  const { zip, links } = await bigZip(200, 9000);
  const size = statSync(zip).size;
  assert.ok(size > 2 * CHUNK, `${size} bytes: three ranges at least`);
  const srv = await fileServer(zip, "ranged");
  const host = await newHost();
  await ok(`${host.url}/core/management`, "PATCH", { kind: RESTORE_KIND, destination: srv.url });
  assert.is(srv.ranges[0], "bytes=0-524288");
  const want: string[] = [];
  for (let at = CHUNK; at < size; at += CHUNK) want.push(`bytes=${at}-${Math.min(at + CHUNK, size)}`);
  assert.equal(srv.ranges.slice(1).sort(), want.sort());
  assert.is((await ok(`${host.url}/core/examples`)).documentCount, links.length);
});

test("http restore: a plain 200 without Content-Range is taken as the whole file (one GET); an empty body fails with 'no data' and leaves the index as it was", async () => {
  const { zip, links } = await bigZip(200, 9000);
  const plain = await fileServer(zip, "plain");
  const host = await newHost();
  await ok(`${host.url}/core/management`, "PATCH", { kind: RESTORE_KIND, destination: plain.url });
  assert.equal(plain.ranges, ["bytes=0-524288"], "one request, which asked for the first range");
  assert.is((await ok(`${host.url}/core/examples`)).documentCount, links.length);
  const empty = await fileServer(zip, "empty");
  const other = await newHost();
  await populate(other, 2);
  const r = await manage(other, { kind: RESTORE_KIND, destination: empty.url });
  assert.equal([r.status, r.body.message], [500, "no data"]);
  assert.is((await ok(`${other.url}/core/examples`)).documentCount, 2);
});

/** A PUT held open by the server: its Content-Range start, and how to answer it. */
interface Held {
  start: number;
  answer: () => void;
}

/**
 * A PUT target that answers nothing until `release` (called on each arrival) answers some of the
 * held PUTs. A sender that waits for answers `release` never gives would hang the test: after 20 s
 * without a new PUT every held one is answered and `stalled()` says so (a guard, not a measurement).
 */
async function holdingPutServer(release: (held: Held[]) => void, status = (_range: string) => 200): Promise<{ url: string; arrived: string[]; maxHeld: () => number; stalled: () => boolean }> {
  const arrived: string[] = [];
  const held: Held[] = [];
  let maxHeld = 0;
  let stalled = false;
  let guard: NodeJS.Timeout | undefined;
  const srv = createServer(async (req, res) => {
    for await (const _ of req) { /* drain */ }
    const range = String(req.headers["content-range"]);
    arrived.push(range);
    held.push({ start: Number(/^bytes (\d+)-/.exec(range)?.[1]), answer: () => void res.writeHead(status(range)).end() });
    maxHeld = Math.max(maxHeld, held.length);
    release(held);
    clearTimeout(guard);
    guard = setTimeout(() => held.length && ((stalled = true), answer(held)), 20_000).unref();
  });
  srv.on("close", () => clearTimeout(guard));
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  servers.push(srv);
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/local-files/backup`, arrived, maxHeld: () => maxHeld, stalled: () => stalled };
}

/** Answers (and forgets) the held PUTs that `which` picks (default all). */
function answer(held: Held[], which: (h: Held) => boolean = () => true): void {
  for (const h of held.filter(which)) {
    h.answer();
    held.splice(held.indexOf(h), 1);
  }
}

test("STREAM (FileUtils.putChunks): 10 PUTs go out together, the rest of a batch past the end are empty PUTs 'bytes T-T/T', and the 10th's completion starts the next batch", async () => {
  // two chunks: one batch of 10 PUTs, held until all 10 are there
  const small = randomBytes(CHUNK + 1000);
  const a = await holdingPutServer((held) => held.length === 10 && answer(held));
  await putFile(a.url, small);
  assert.not.ok(a.stalled(), "the sender did not send 10 PUTs before waiting");
  assert.is(a.maxHeld(), 10, "ten PUTs in flight at once");
  const T = small.length;
  assert.equal(a.arrived.slice().sort(), [`bytes 0-${CHUNK}/${T}`, `bytes ${CHUNK}-${T}/${T}`, ...Array(8).fill(`bytes ${T}-${T}/${T}`)].sort());

  // twelve chunks: the first batch is held; answering only its 10th (bytes 9C-10C) brings the next batch while nine are still open
  const big = Buffer.alloc(11 * CHUNK + 100, 7);
  const B = big.length;
  let phase = 0;
  const b = await holdingPutServer((held) => {
    if (phase === 0 && held.length === 10) {
      phase = 1;
      answer(held, (h) => h.start === 9 * CHUNK);
    } else if (phase === 1 && held.length === 19) {
      phase = 2;
      answer(held);
    } else if (phase === 2) answer(held);
  });
  await putFile(b.url, big);
  assert.not.ok(b.stalled(), "answering the 10th PUT did not bring the next batch");
  assert.is(b.maxHeld(), 19, "9 of the first batch still open plus the 10 of the second");
  const real = b.arrived.filter((r) => !r.startsWith(`bytes ${B}-${B}`));
  assert.is(real.length, 12, "each of the 12 ranges once");
  assert.equal(new Set(real).size, 12);
  assert.is(b.arrived.length - real.length, 8, "the second batch: 2 ranges and 8 empty PUTs");
  assert.ok(b.arrived.slice(0, 10).every((r) => Number(/^bytes (\d+)-/.exec(r)![1]) < 10 * CHUNK), "the first ten PUTs are the first batch");
});

test("STREAM: no retries: one PUT answered 500 fails the upload, and that range was sent once", async () => {
  const data = Buffer.alloc(3 * CHUNK, 1);
  const bad = `bytes ${CHUNK}-${2 * CHUNK}/${data.length}`;
  const s = await holdingPutServer((held) => held.length === 10 && answer(held), (r) => (r === bad ? 500 : 200));
  const err = await putFile(s.url, data).then(() => null, (e: Error) => e.message);
  assert.not.ok(s.stalled());
  assert.match(String(err), new RegExp(`PUT ${s.url} \\(${bad.replace("/", "\\/")}\\): 500`));
  assert.is(s.arrived.filter((r) => r === bad).length, 1);
  assert.is(s.arrived.length, 10, "one batch, nothing sent again");
});

test("GET /core/document-index?documentSelfLink=…: the latest version, documentVersion=N, a deleted one only with includeDeleted, a prefix with *", async () => {
  const host = await newHost();
  await ok(`${host.url}/core/examples`, "POST", { name: "v0", documentSelfLink: "foo" });
  await ok(`${host.url}/core/examples/foo`, "PATCH", { name: "v1" });
  await ok(`${host.url}/core/examples/foo`, "PATCH", { name: "v2" });
  await ok(`${host.url}/core/examples`, "POST", { name: "other", documentSelfLink: "fab" });
  const ix = (q: string) => call(`${host.url}/core/document-index?documentSelfLink=${encodeURIComponent("/core/examples/foo")}${q}`);
  const latest = await ix("");
  assert.equal([latest.status, latest.body.documentVersion, latest.body.name], [200, 2, "v2"]);
  assert.equal([(await ix("&documentVersion=1")).body.name, (await ix("&documentVersion=0")).body.documentVersion], ["v1", 0]);
  await ok(`${host.url}/core/examples/foo`, "DELETE");
  const gone = await ix("");
  assert.equal([gone.status, gone.body], [200, null], "a deleted document: an empty answer");
  const tomb = await ix("&includeDeleted");
  assert.equal([tomb.body.documentVersion, tomb.body.documentUpdateAction], [3, "DELETE"]);
  assert.is((await ix("&documentVersion=1")).body.name, "v1", "older versions stay in the index");
  const prefix = await ok(`${host.url}/core/document-index?documentSelfLink=${encodeURIComponent("/core/examples/f*")}`);
  assert.equal(prefix.documentLinks, ["/core/examples/fab"]);
  const withDeleted = await ok(`${host.url}/core/document-index?documentSelfLink=${encodeURIComponent("/core/examples/f*")}&includeDeleted`);
  assert.equal(withDeleted.documentLinks, ["/core/examples/fab", "/core/examples/foo"]);
});

test("DELETE /core/management answers 202 and then the host stops", async () => {
  let stopped!: () => void;
  const gone = new Promise<void>((r) => (stopped = r));
  const host = await startXenonHost({ sandbox: tmp("xenon-sandbox-"), maintenanceMs: 0, onStop: () => stopped() });
  await ok(`${host.url}/core/examples`, "POST", { name: "kept", documentSelfLink: "kept" });
  const r = await call(`${host.url}/core/management`, "DELETE");
  assert.is(r.status, 202);
  await gone;
  assert.is(await fetch(`${host.url}/core/management`).then(() => "up", () => "down"), "down");
  const again = await newHost({ sandbox: host.sandbox });
  assert.is((await ok(`${again.url}/core/examples/kept`)).name, "kept", "a clean stop: it committed first");
});

test.run();
