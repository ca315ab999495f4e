// The Xenon recipes against the stand-in (test/standins/xenon.ts, each host its own process so the
// restore's restart command really restarts it): the drill (tasks/drills/xenon.ts: ZIP onto a
// fresh host, point in time, STREAM + http restore, a DIRECTORY chain restored at runs 2 and 3,
// refusals), then what the drill does not cover: --dry-run, --resume, a host that already holds
// documents, a bad --at, a DIRECTORY run asked over http, counts that differ after a restore, a
// full staging disk, the in-memory index, auth by token and by basic login, and Xenon's own
// errors through lib/xenon.ts for the requests the recipes never send.
// Run: bash test/run.sh test/xenon.test.ts
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { backupArchive, unpackArchive, verifyArchive, xenonBackup, xenonRestore } from "../lib/mod.ts";
import { runRecipe } from "../tasks/drills/hoss.ts";
import {
  diffDocuments, exampleDocuments, hostFlags, newestArchive, seedExamples, startXenonHost, stopXenonHosts,
  xenonDrill, xenonDrillProblems, xenonSite, type XenonHost,
} from "../tasks/drills/xenon.ts";
import { cleanupTmp, testContext, tmp } from "./helpers.ts";

testContext();
let src: XenonHost;
let work = "";
let site = "";
let want: Record<string, string> = {};
test.before(async () => {
  work = tmp();
  site = xenonSite(work);
  src = await startXenonHost("node-a", { dir: join(work, "src") });
  await seedExamples(src.url, Array.from({ length: 40 }, (_, i) => `d-${i}`), { blobBytes: 4096 });
  want = await exampleDocuments(src.url);
});
test.after(async () => {
  await stopXenonHosts();
  cleanupTmp();
});

const run = (name: string, args: string[], env: Record<string, string> = {}) => runRecipe(name, [...args, "--config", site, "--yes"], { env });
const pidOf = (h: XenonHost) => readFileSync(join(h.dir, "pid"), "utf8").trim();

test("the drill: every document equal after ZIP, point in time, STREAM + http and DIRECTORY runs 2 and 3; refusals as expected", async () => {
  const r = await xenonDrill({ documents: 120, log: () => {} });
  assert.equal(xenonDrillProblems(r), []);
  assert.is(r.documents, 120);
  assert.ok(r.streamChunks > 1, `the STREAM came in ${r.streamChunks} chunks`);
  assert.ok(r.httpRequests > 1, `the http restore took ${r.httpRequests} ranged GETs`);
  assert.ok(r.shipped[1] < r.shipped[0] / 2, `run 2 shipped ${r.shipped[1]} bytes, the full ${r.shipped[0]}`);
});

test("--dry-run: the backup and the restore print the PATCH and the commands, and change nothing", async () => {
  const b = await run("xenon-backup", [...hostFlags(src), "--dry-run"]);
  assert.is(b.code, 0, b.output);
  assert.match(b.output, /\[dry-run\] PATCH http:\/\/127\.0\.0\.1:\d+\/core\/management \{"kind":"com:vmware:xenon:services:common:ServiceHostManagementService:BackupRequest","destination":"file:/);
  assert.match(b.output, /\[dry-run\] pack .* into .*xenon-backup-.*\.tar\.gz/);
  assert.ok(!existsSync(join(work, "backups")) && !existsSync(join(work, "staging")), "no archive, no staging folder");
  assert.is((await run("xenon-backup", hostFlags(src))).code, 0);
  const fresh = await startXenonHost("node-b");
  const pid = pidOf(fresh);
  const r = await run("xenon-restore", [newestArchive(work), ...hostFlags(fresh, true), "--dry-run", "--at=2026-11-21 10:00:00Z"]);
  assert.is(r.code, 0, r.output);
  assert.match(r.output, /\[dry-run\] PATCH http:\/\/127\.0\.0\.1:\d+\/core\/management \{"kind":"com:vmware:xenon:services:common:ServiceHostManagementService:RestoreRequest","destination":"file:/);
  assert.match(r.output, /restore \(PATCH RestoreRequest, file, timeSnapshotBoundaryMicros 1795255200000000\)/);
  assert.match(r.output, new RegExp(`\\[dry-run\\] bash ${fresh.dir}/restart.sh`));
  assert.is(pidOf(fresh), pid, "the host was not restarted");
  assert.equal(await exampleDocuments(fresh.url), {}, "nothing was restored");
  await fresh.stop();
});

test("a URL with credentials: they reach no log line, no folder, lock or journal (name or content) and not the manifest", async () => {
  const dir = tmp();
  const credSite = xenonSite(dir);
  const cred = (h: XenonHost) => h.url.replace("http://", "http://admin:hunter2@");
  const b = await runRecipe("xenon-backup", [`--url=${cred(src)}`, "--config", credSite, "--yes"]);
  assert.is(b.code, 0, b.output);
  const fresh = await startXenonHost("node-c");
  const r = await runRecipe("xenon-restore", [newestArchive(dir), `--url=${cred(fresh)}`, `--restart=${fresh.restart.join(",")}`, "--config", credSite, "--yes"]);
  assert.is(r.code, 0, r.output);
  assert.equal(await exampleDocuments(fresh.url), want, "restored");
  await fresh.stop();
  // a failed restore's journal is kept: make one (the host is gone) and look at it too
  const failed = await runRecipe("xenon-restore", [newestArchive(dir), `--url=${cred(fresh)}`, `--restart=${fresh.restart.join(",")}`, "--config", credSite, "--yes"]);
  assert.is.not(failed.code, 0);
  for (const out of [b.output, r.output, failed.output]) assert.not.match(out, /hunter2|admin@/);
  const seen: string[] = [];
  const walk = (d: string) => {
    for (const n of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, n.name);
      seen.push(p);
      assert.not.match(n.name, /hunter2|admin/, p);
      if (n.isDirectory()) walk(p);
      else if (!/\.(gz|zip|zst)$/.test(n.name)) assert.not.match(readFileSync(p, "latin1"), /hunter2/, `${p}: ${/.{0,200}hunter2.{0,60}/.exec(readFileSync(p, "latin1"))?.[0]}`);
    }
  };
  walk(dir);
  assert.ok(seen.some((p) => p.includes(`${dir}/state/journal/`)), "a journal was looked at");
  const v = await verifyArchive(newestArchive(dir));
  assert.not.match(JSON.stringify(v.manifest), /hunter2|admin@/);
});

test("folders whose paths hold a space and a # reach Xenon as proper file: URIs: a ZIP backup and its restore work", async () => {
  const dir = join(tmp(), "st a#ge");
  mkdirSync(dir);
  const odd = xenonSite(dir);
  const b = await runRecipe("xenon-backup", [...hostFlags(src), "--config", odd, "--yes"]);
  assert.is(b.code, 0, b.output);
  assert.match(b.output, /ZIP to file:\/\/\/.*\/st%20a%23ge\//);
  const fresh = await startXenonHost("node-d");
  const r = await runRecipe("xenon-restore", [newestArchive(dir), ...hostFlags(fresh, true), "--config", odd, "--yes"]);
  assert.is(r.code, 0, r.output);
  assert.equal(await exampleDocuments(fresh.url), want);
  await fresh.stop();
});

test("backup --resume: a STREAM (or ZIP) backup is refused up front; a DIRECTORY run continues at its failed step", async () => {
  const z = await run("xenon-backup", [...hostFlags(src), "--backup.type=STREAM", "--resume"]);
  assert.is(z.code, 2, z.output);
  assert.match(z.output, /cannot --resume a STREAM backup: its staging folder is removed after every run/);
  assert.not.match(z.output, /PATCH http/);
  // a DIRECTORY run whose store cannot be written: it fails at "ship"; --resume ships without a second PATCH
  const store = join(work, "resume-store");
  writeFileSync(store, "in the way\n");
  const flags = [...hostFlags(src), "--backup.type=DIRECTORY", "--directory.full", `--directory.store=${store}`, `--directory.workspace=${join(work, "resume-ws")}`];
  const failed = await run("xenon-backup", flags);
  assert.is(failed.code, 1, failed.output);
  assert.match(failed.output, /✖ ship the new files/);
  rmSync(store);
  const resumed = await run("xenon-backup", [...flags, "--resume"]);
  assert.is(resumed.code, 0, resumed.output);
  assert.not.match(resumed.output, /PATCH http/, "the backup PATCH was not sent again");
  const runs = readdirSync(join(store, "runs"));
  assert.is(runs.length, 1);
  const manifest = JSON.parse(readFileSync(join(store, "runs", runs[0]), "utf8")) as { files: { name: string }[]; added: string[] };
  const workspace = readdirSync(join(work, "resume-ws")).sort();
  assert.equal(manifest.files.map((f) => f.name).sort(), workspace, "the run lists every file of the snapshot");
  assert.equal(manifest.added.sort(), workspace, "the listing taken before the PATCH came from the journal: everything is new");
  assert.equal(readdirSync(join(store, "files", readdirSync(join(store, "files"))[0])).sort(), workspace);
});

test("restore --resume: a host that never answers after the restart fails with a timeout; --resume once it is up finishes without a second PATCH and every document is equal", async () => {
  const archive = newestArchive(work);
  const fresh = await startXenonHost("node-a");
  const restores = () => readFileSync(join(fresh.dir, "sandbox", "patches.log"), "utf8").split("\n").filter((l) => l === "RestoreRequest").length;
  const flags = [archive, `--url=${fresh.url}`, `--restart=bash,${fresh.dir}/stop.sh`]; // the "restart" only stops it
  const failed = await run("xenon-restore", [...flags, "--restart-timeout=3"]);
  assert.is(failed.code, 1, failed.output);
  assert.match(failed.output, new RegExp(`✖ wait for the host .*gave up waiting for the Xenon host at ${fresh.url} after`));
  assert.match(failed.output, /re-run with --resume/);
  assert.match(failed.output, /kept \S+ for --resume/);
  assert.is(restores(), 1);
  spawnSync("bash", [join(fresh.dir, "restart.sh")]); // the operator starts it
  const resumed = await run("xenon-restore", [...flags, "--resume"]);
  assert.is(resumed.code, 0, resumed.output);
  assert.match(resumed.output, /resuming xenon-restore: \d+ of \d+ steps already done, continuing at 'wait for the host/);
  assert.is(restores(), 1, "no second RestoreRequest PATCH");
  assert.equal(diffDocuments(want, await exampleDocuments(fresh.url)), []);
  assert.equal(readdirSync(join(work, "staging")).filter((n) => n.startsWith("restore-")), [], "the kept staging is gone once the restore finished");
  // a run that failed AT the PATCH (Xenon could not download the zip) is not resumed into a second PATCH
  const other = await startXenonHost("node-a");
  const oflags = [archive, `--url=${other.url}`, `--restart=bash,${other.dir}/restart.sh`, "--deliver=http", "--http.url=http://127.0.0.1:9/backup.zip"];
  const cut = await run("xenon-restore", oflags);
  assert.is(cut.code, 1, cut.output);
  assert.match(cut.output, /✖ restore \(PATCH RestoreRequest/);
  const again = await run("xenon-restore", [...oflags, "--resume"]);
  assert.is(again.code, 2, again.output);
  assert.match(again.output, /the failed run sent its PATCH to \S+ and it did not complete/);
  assert.is(readFileSync(join(other.dir, "sandbox", "patches.log"), "utf8").split("\n").filter((l) => l === "RestoreRequest").length, 1);
  rmSync(join(work, "staging"), { recursive: true, force: true });
  await Promise.all([fresh.stop(), other.stop()]);
});

test("a restore onto a host that already holds documents is refused (exit 5) before the PATCH, unless --allow-existing", async () => {
  const archive = newestArchive(work);
  const pid = pidOf(src);
  const r = await run("xenon-restore", [archive, ...hostFlags(src, true)]);
  assert.is(r.code, 5, r.output);
  assert.match(r.output, /already holds documents \(\/core\/examples 40\): a restored zip is added to its index, not put in its place/);
  assert.match(r.output, /--allow-existing/);
  assert.not.match(r.output, /PATCH http/);
  assert.is(pidOf(src), pid);
  const ok = await run("xenon-restore", [archive, ...hostFlags(src, true), "--allow-existing"]);
  assert.is(ok.code, 0, ok.output);
  assert.match(ok.output, /restoring into a host that holds documents/);
  assert.equal(diffDocuments(want, await exampleDocuments(src.url)), []);
});

test("restore refuses a bad --at and a DIRECTORY run with --deliver http (exit 2) before anything reaches the host", async () => {
  const fresh = await startXenonHost("node-a");
  const archive = newestArchive(work);
  for (const at of ["yesterday", "2026-11-21 10:00:00"]) {
    const r = await run("xenon-restore", [archive, ...hostFlags(fresh, true), `--at=${at}`]);
    assert.is(r.code, 2, r.output);
    assert.ok(r.output.includes(`--at ${JSON.stringify(at)} is not an instant with a zone`), r.output);
    assert.match(r.output, /write it like "2026-11-21 10:00:00Z"/);
  }
  const d = await run("xenon-restore", ["latest", ...hostFlags(fresh, true), "--deliver=http"]);
  assert.is(d.code, 2, d.output);
  assert.match(d.output, /a DIRECTORY run cannot be restored over http: Xenon treats an http backup as a zip/);
  assert.match(d.output, /use --deliver file/);
  assert.not.ok(existsSync(join(fresh.dir, "sandbox", "patches.log")), "no management PATCH reached the host");
  await fresh.stop();
});

test("restore: document counts that differ from the backup's after the restore fail with exit 3, naming the factory; with --at they are only reported", async () => {
  // an archive whose manifest recorded one document more than its zip holds
  const archive = newestArchive(work);
  const unpacked = join(tmp(), "unpacked");
  const report = await unpackArchive<{ xenon: { counts: Record<string, number> } }>(archive, unpacked);
  const meta = report.manifest!.meta!;
  const n = meta.xenon.counts["/core/examples"];
  const odd = await backupArchive(unpacked, { folder: tmp(), name: "xenon-backup", recipe: "xenon-backup", meta: { ...meta, xenon: { ...meta.xenon, counts: { "/core/examples": n + 1 } } } });
  const fresh = await startXenonHost("node-a");
  const r = await run("xenon-restore", [odd.path, ...hostFlags(fresh, true)]);
  assert.is(r.code, 3, r.output);
  assert.match(r.output, new RegExp(`✖ compare document counts with the backup .*the restored host's document counts differ from the backup's: /core/examples: ${n} now, ${n + 1} in the backup`));
  assert.equal(diffDocuments(want, await exampleDocuments(fresh.url)), [], "the restore itself went through");
  const later = await startXenonHost("node-a");
  const at = await run("xenon-restore", [odd.path, ...hostFlags(later, true), `--at=${new Date().toISOString()}`]);
  assert.is(at.code, 0, at.output);
  assert.match(at.output, new RegExp(`counts at --at \\S+ differ from the backup's \\(expected: they were counted at backup time\\): /core/examples: ${n} now, ${n + 1} in the backup`));
  await Promise.all([fresh.stop(), later.stop()]);
});

test("a full staging disk: the STREAM receiver fails with 'no space left on' and nothing is left in staging", async () => {
  const disk = join(tmp(), "full");
  mkdirSync(disk);
  const m = spawnSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", disk]);
  assert.is(m.status, 0, String(m.stderr));
  try {
    const s = await run("xenon-backup", [...hostFlags(src), "--backup.type=STREAM", `--staging=${disk}`]);
    assert.is(s.code, 1, s.output);
    assert.match(s.output, /no space left on/i);
    assert.equal(readdirSync(disk), []);
  } finally {
    spawnSync("umount", [disk]);
  }
});

test("the in-memory index: backup (zstd, --archive.compression) and restore onto a fresh in-memory host, with no restart (it would wipe the index)", async () => {
  const factory = "/test/in-memory-examples";
  const mem = await startXenonHost("node-m", { inMemory: true });
  await seedExamples(mem.url, ["m-1", "m 2", "m-3"], { factory });
  const memWant = await exampleDocuments(mem.url, { factory });
  const flags = ["--index-link=/core/in-memory-document-index", `--factories=${factory}`];
  const b = await run("xenon-backup", [...hostFlags(mem), ...flags, "--archive.compression=zstd"]);
  assert.is(b.code, 0, b.output);
  assert.match(newestArchive(work), /\.tar\.zst$/, "the archive is zstd-compressed and named so");
  const fresh = await startXenonHost("node-m", { inMemory: true });
  const pid = pidOf(fresh);
  const r = await run("xenon-restore", [newestArchive(work), `--url=${fresh.url}`, "--restart=false", ...flags]);
  assert.is(r.code, 0, r.output);
  assert.match(r.output, /restart +skipped: in-memory index/);
  assert.is(pidOf(fresh), pid);
  assert.equal(diffDocuments(memWant, await exampleDocuments(fresh.url, { factory })), []);
  await Promise.all([mem.stop(), fresh.stop()]);
});

test("auth: a token and a basic login from the environment work, a wrong token is refused with a hint, and no secret reaches the output", async () => {
  const token = "tok-Secret-4711";
  const t = await startXenonHost("node-t", { authToken: token });
  await seedExamples(t.url, ["t-1"], { headers: { "x-xenon-auth-token": token } });
  const ok = await run("xenon-backup", hostFlags(t), { LIFEBOAT_AUTH_TOKEN: token });
  assert.is(ok.code, 0, ok.output);
  assert.not.match(ok.output, token);
  const bad = await run("xenon-backup", hostFlags(t), { LIFEBOAT_AUTH_TOKEN: "wrong-Token-0815" });
  assert.is(bad.code, 1, bad.output);
  assert.match(bad.output, /HTTP 403/);
  assert.match(bad.output, /check auth\.token or auth\.user\/auth\.password/);
  assert.not.match(bad.output, "wrong-Token-0815");
  // basic login; the restore's restart makes the host forget the login token: the count check logs in again
  const basic = "admin@example.org:pass-Word-Secret";
  const env = { LIFEBOAT_AUTH_USER: "admin@example.org", LIFEBOAT_AUTH_PASSWORD: "pass-Word-Secret" };
  const a = await startXenonHost("node-b1", { basic });
  const login = await fetch(`${a.url}/core/authn/basic`, { method: "POST", headers: { authorization: `Basic ${Buffer.from(basic).toString("base64")}`, "content-type": "application/json" }, body: "{}" });
  const h = { "x-xenon-auth-token": login.headers.get("x-xenon-auth-token")! };
  await seedExamples(a.url, ["b-1", "b-2"], { headers: h });
  const bWant = await exampleDocuments(a.url, { headers: h });
  const b = await run("xenon-backup", hostFlags(a), env);
  assert.is(b.code, 0, b.output);
  const fresh = await startXenonHost("node-b1", { basic });
  const r = await run("xenon-restore", [newestArchive(work), ...hostFlags(fresh, true)], env);
  assert.is(r.code, 0, r.output);
  for (const out of [b.output, r.output]) assert.not.match(out, "pass-Word-Secret");
  const l2 = await fetch(`${fresh.url}/core/authn/basic`, { method: "POST", headers: { authorization: `Basic ${Buffer.from(basic).toString("base64")}` }, body: "{}" });
  assert.equal(diffDocuments(bWant, await exampleDocuments(fresh.url, { headers: { "x-xenon-auth-token": l2.headers.get("x-xenon-auth-token")! } })), []);
  await Promise.all([t.stop(), a.stop(), fresh.stop()]);
});

test("Xenon's own errors through lib/xenon.ts are shown plainly: a ZIP into a directory, a missing destination (backup and restore), a destination with no scheme", async () => {
  // the recipes never send these (their destinations are built, never empty); the helpers they use show Xenon's message as it wrote it
  const refused = (p: Promise<unknown>) => p.then(() => null, (e: Error) => e.message);
  assert.is(await refused(xenonBackup(src.url, { destination: `file:${work}/`, type: "ZIP" })), `Xenon at ${src.url} refused the backup (HTTP 500): destination ${work} must be a local file for zip backup.`);
  const none = undefined as unknown as string; // JSON leaves the field out, as a client that forgot it would
  assert.is(await refused(xenonBackup(src.url, { destination: none, type: "ZIP" })), `Xenon at ${src.url} refused the backup (HTTP 500): backup destination must be specified.`);
  assert.is(await refused(xenonRestore(src.url, { destination: none })), `Xenon at ${src.url} refused the restore (HTTP 500): destination is required.`);
  assert.is(await refused(xenonBackup(src.url, { destination: "/tmp/x.zip", type: "ZIP" })), `Xenon at ${src.url} refused the backup (HTTP 400): Missing scheme`);
  assert.equal(readFileSync(join(src.dir, "sandbox", "patches.log"), "utf8").split("\n").slice(-5, -1), ["BackupRequest", "BackupRequest", "RestoreRequest", "BackupRequest"], "each reached Xenon");
  assert.equal(diffDocuments(want, await exampleDocuments(src.url)), [], "and none changed the host");
});

test.run();
