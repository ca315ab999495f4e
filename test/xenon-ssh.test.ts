// needs: sshd
// The Xenon recipes with lifeboat away from the Xenon host (ssh.host): the ZIP is written into
// host-staging on the host and fetched over ssh; a restore's staged zip or DIRECTORY run is copied
// there over ssh and the PATCH names that path; both clean host-staging up. The lab's sshd is on
// this machine, so "the host" is a separate folder here reached only through ssh.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { runRecipe } from "../tasks/drills/hoss.ts";
import { needLab } from "../tasks/drills/lab.ts";
import { diffDocuments, exampleDocuments, hostFlags, newestArchive, seedExamples, startXenonHost, stopXenonHosts, xenonSite } from "../tasks/drills/xenon.ts";
import { cleanupTmp, testContext, tmp } from "./helpers.ts";

const lab = needLab("sshd");
testContext();
test.after(async () => {
  await stopXenonHosts();
  cleanupTmp();
});

test("ssh.host: ZIP fetched over ssh, restored by copying it there; a DIRECTORY run restored over ssh, DIRECTORY backups refused; the host's staging is cleaned up", async () => {
  const work = tmp();
  const hostStaging = join(tmp(), "on the host");
  const site = xenonSite(work, [
    `ssh: { host: ${lab.LAB_SSH_HOST}, port: ${lab.LAB_SSH_PORT}, user: ${lab.LAB_SSH_USER}, identity-file: ${JSON.stringify(lab.LAB_SSH_KEY)}, known-hosts: ${JSON.stringify(lab.LAB_SSH_KNOWN_HOSTS)} }`,
    `host-staging: ${JSON.stringify(hostStaging)}`,
  ]);
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
  assert.match(r.output, new RegExp(`Xenon restored its index from file:${hostStaging}/restore-.*/unpacked/xenon-backup\\.zip`));
  assert.equal(diffDocuments(want, await exampleDocuments(fresh.url)), []);
  assert.equal(readdirSync(hostStaging), []);
  const d = await runRecipe("xenon-backup", [...hostFlags(a), "--config", site, "--backup.type=DIRECTORY", "--directory.full"]);
  assert.is(d.code, 2, d.output);
  assert.match(d.output, /DIRECTORY needs lifeboat on the Xenon host/);
  assert.ok(!existsSync(join(work, "store")));
  // a DIRECTORY run taken on the host (ssh.host empty), restored from here: its folder goes over ssh
  const local = await runRecipe("xenon-backup", [...hostFlags(a), "--config", site, "--ssh.host=", "--backup.type=DIRECTORY", "--directory.full"]);
  assert.is(local.code, 0, local.output);
  const fresh2 = await startXenonHost("node-a");
  const r2 = await runRecipe("xenon-restore", ["latest", ...hostFlags(fresh2, true), "--config", site, "--yes"]);
  assert.is(r2.code, 0, r2.output);
  assert.match(r2.output, new RegExp(`Xenon restored its index from file:${hostStaging}/restore-.*/run/`));
  assert.equal(diffDocuments(want, await exampleDocuments(fresh2.url)), []);
  assert.equal(readdirSync(hostStaging), []);
});

test.run();
