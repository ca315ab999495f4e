// needs: sshd
// The Xenon recipes with lifeboat away from the Xenon host (ssh.host): the ZIP is written into
// host-staging on the host and fetched over ssh; a DIRECTORY run's workspace is listed over ssh
// and only its new files fetched; a restore's staged zip or DIRECTORY run is copied there over
// ssh and the PATCH names that path; both clean host-staging up. The lab's sshd is on this
// machine, so "the host" is a separate folder here reached only through ssh.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { runRecipe } from "../tasks/drills/hoss.ts";
import { needLab } from "../tasks/drills/lab.ts";
import { diffDocuments, exampleDocuments, hostFlags, newestArchive, seedExamples, startXenonHost, stopXenonHosts, xenonRequest, xenonSite } from "../tasks/drills/xenon.ts";
import { cleanupTmp, testContext, tmp } from "./helpers.ts";

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

const lab = needLab("sshd");
testContext();
test.after(async () => {
  await stopXenonHosts();
  cleanupTmp();
});

/** A Xenon site file that reaches "the host" through the lab's sshd, its staging at hostStaging. */
const sshSite = (work: string, hostStaging: string) => xenonSite(work, [
  `ssh: { host: ${lab.LAB_SSH_HOST}, port: ${lab.LAB_SSH_PORT}, user: ${lab.LAB_SSH_USER}, identity-file: ${JSON.stringify(lab.LAB_SSH_KEY)}, known-hosts: ${JSON.stringify(lab.LAB_SSH_KNOWN_HOSTS)} }`,
  `host-staging: ${JSON.stringify(hostStaging)}`,
]);

test("ssh.host: ZIP fetched over ssh, restored by copying it there; a DIRECTORY run restored over ssh; the host's staging is cleaned up", async () => {
  const work = tmp();
  const hostStaging = join(tmp(), "on the host");
  const site = sshSite(work, hostStaging);
  const a = await startXenonHost("node-a");
  await seedExamples(a.url, Array.from({ length: 25 }, (_, i) => `r-${i}`), { blobBytes: 1024 });
  const want = await exampleDocuments(a.url);
  const b = await runRecipe("xenon-backup", [...hostFlags(a), "--config", site]);
  assert.is(b.code, 0, b.output);
  assert.match(b.output, new RegExp(`fetch the zip from ${lab.LAB_SSH_HOST}:${hostStaging}/backup-.*/xenon-backup\\.zip`));
  assert.equal(readdirSync(hostStaging), [], "the zip's folder on the host is gone");
  const fresh = await startXenonHost("node-a");
  const r = await runRecipe("xenon-restore", [newestArchive(work), ...hostFlags(fresh, true), "--config", site, "--yes"]);
  assert.is(r.code, 0, r.output);
  assert.match(r.output, new RegExp(`copy the staged backup to ${lab.LAB_SSH_HOST}:${hostStaging}/restore-`));
  // the file: URI escapes the host staging's spaces ("on the host")
  assert.match(r.output, new RegExp(`Xenon restored its index from ${escapeRegExp(pathToFileURL(hostStaging).href)}/restore-.*/unpacked/xenon-backup\\.zip`));
  assert.equal(diffDocuments(want, await exampleDocuments(fresh.url)), []);
  assert.equal(readdirSync(hostStaging), []);
  // a DIRECTORY run taken on the host (ssh.host empty), restored from here: its folder goes over ssh
  const local = await runRecipe("xenon-backup", [...hostFlags(a), "--config", site, "--ssh.host=", "--backup.type=DIRECTORY", "--directory.full"]);
  assert.is(local.code, 0, local.output);
  const fresh2 = await startXenonHost("node-a");
  const r2 = await runRecipe("xenon-restore", ["latest", ...hostFlags(fresh2, true), "--config", site, "--yes"]);
  assert.is(r2.code, 0, r2.output);
  assert.match(r2.output, new RegExp(`Xenon restored its index from ${escapeRegExp(pathToFileURL(hostStaging).href)}/restore-.*/run/`));
  assert.equal(diffDocuments(want, await exampleDocuments(fresh2.url)), []);
  assert.equal(readdirSync(hostStaging), []);
});

test("ssh.host DIRECTORY: a chain of two runs lists the host's workspace over ssh and fetches only the new files; run 2 restored onto a fresh host has every document", async () => {
  const work = tmp();
  const onTheHost = join(tmp(), "xenon host");
  const a = await startXenonHost("node-a");
  const site = sshSite(work, join(onTheHost, "staging"));
  const backup = [...hostFlags(a), "--config", site, "--backup.type=DIRECTORY", `--directory.workspace=${join(onTheHost, "workspace")}`];
  const names = Array.from({ length: 20 }, (_, i) => `d-${i}`);
  await seedExamples(a.url, names, { blobBytes: 1024 });
  const dry = await runRecipe("xenon-backup", [...backup, "--directory.full", "--dry-run"]);
  assert.is(dry.code, 0, dry.output);
  assert.match(dry.output, /\[dry-run\] ssh .*find .*xenon host\/workspace.* -delete/);
  assert.ok(!existsSync(join(work, "store")), "a dry run ships nothing");
  // The fetched files wait in a folder per host (the lock and the journal are per host): another
  // host's run must not refill what a --resume of this one ships.
  const fetchDirOf = (out: string) => /\[dry-run\] rm -rf -- (\S*\/directory-fetch-[^\s/]+)\n/.exec(out)?.[1];
  const other = await startXenonHost("node-other");
  const dryOther = await runRecipe("xenon-backup", [...hostFlags(other), ...backup.slice(hostFlags(a).length), "--directory.full", "--dry-run"]);
  assert.is(dryOther.code, 0, dryOther.output);
  assert.ok(fetchDirOf(dry.output), `no fetch folder in:\n${dry.output}`);
  assert.ok(fetchDirOf(dryOther.output), `no fetch folder in:\n${dryOther.output}`);
  assert.is.not(fetchDirOf(dryOther.output), fetchDirOf(dry.output), "each host's files are fetched into a folder of its own");
  const b1 = await runRecipe("xenon-backup", [...backup, "--directory.full"]);
  assert.is(b1.code, 0, b1.output);
  assert.match(b1.output, new RegExp(`fetch the new files from ${lab.LAB_SSH_HOST}:.*/xenon host/workspace`));
  for (const n of names.slice(0, 5)) await xenonRequest(`${a.url}/core/examples/${n}`, "DELETE");
  for (const n of names.slice(5, 10)) await xenonRequest(`${a.url}/core/examples/${n}`, "PATCH", { name: `run2 ${n}` });
  await seedExamples(a.url, ["new one", "new two"]);
  const b2 = await runRecipe("xenon-backup", backup);
  assert.is(b2.code, 0, b2.output);
  const want = await exampleDocuments(a.url);
  const [, onHost, fresh] = /(\d+) files on the host, (\d+) new/.exec(b2.output)!.map(Number);
  assert.ok(fresh > 0 && fresh < onHost, `run 2 fetched ${fresh} of ${onHost} files`);
  const runs = readdirSync(join(work, "store", "runs")).sort().map((f) => JSON.parse(readFileSync(join(work, "store", "runs", f), "utf8")) as { run: string; chain: string; files: unknown[]; shipped: string[] });
  assert.is(runs.length, 2);
  assert.is(runs[1].chain, runs[0].chain, "run 2 joins run 1's chain");
  assert.is(runs[1].files.length, onHost, "run 2's manifest lists every file the snapshot needs");
  assert.is(runs[1].shipped.length, fresh);
  assert.equal(readdirSync(join(work, "staging")).filter((f) => f.startsWith("directory-fetch")), [], "the fetched files are gone once shipped");
  const b = await startXenonHost("node-a");
  const r = await runRecipe("xenon-restore", [runs[1].run, ...hostFlags(b, true), "--config", site, "--yes"]);
  assert.is(r.code, 0, r.output);
  assert.equal(diffDocuments(want, await exampleDocuments(b.url)), []);
  assert.equal(readdirSync(join(onTheHost, "staging")), []);
});

test("ssh.host: a restore refused at its PATCH (no --yes) keeps the copy on the host for --resume, which restores from it and then cleans up", async () => {
  const work = tmp();
  const hostStaging = join(tmp(), "on the host");
  const site = sshSite(work, hostStaging);
  const a = await startXenonHost("node-a");
  await seedExamples(a.url, Array.from({ length: 12 }, (_, i) => `k-${i}`), { blobBytes: 512 });
  const want = await exampleDocuments(a.url);
  const b = await runRecipe("xenon-backup", [...hostFlags(a), "--config", site]);
  assert.is(b.code, 0, b.output);
  const fresh = await startXenonHost("node-a");
  const args = [newestArchive(work), ...hostFlags(fresh, true), "--config", site];
  const refused = await runRecipe("xenon-restore", args);
  assert.is(refused.code, 5, refused.output);
  assert.match(refused.output, /kept .* and .*on the host\/restore-.* for --resume/);
  assert.is(readdirSync(hostStaging).length, 1, "the copy stays on the host");
  const r = await runRecipe("xenon-restore", [...args, "--yes", "--resume"]);
  assert.is(r.code, 0, r.output);
  assert.match(r.output, /copy the staged backup .*: done in an earlier run/);
  assert.equal(diffDocuments(want, await exampleDocuments(fresh.url)), []);
  assert.equal(readdirSync(hostStaging), [], "cleaned up once restored");
});

test.run();
