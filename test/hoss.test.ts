// The Hoss recipes: the drill end to end on the lab, the restore's refusals, the server that
// never comes up, dry runs, NFS, a failed backup's leftovers, and Deno.
// Run: bash test/run.sh test/hoss.test.ts
// needs: docker slapd
import { test } from "uvu";
import * as assert from "uvu/assert";
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readdirSync, statSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { packArchive } from "../lib/mod.ts";
import { freePort, hossDrill, runRecipe } from "../tasks/drills/hoss.ts";
import { startHossServer } from "./standins/hoss-server.ts";
import { startOpenSearch } from "./standins/opensearch.ts";
import { cleanupTmp, testContext, tmp } from "./helpers.ts";

testContext();
const servers: { close(): Promise<void> }[] = [];
test.after(async () => {
  for (const s of servers) await s.close();
  cleanupTmp();
});

/** Every path under dir with its size and mode: to prove a run wrote nothing. */
function snapshotTree(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const name of readdirSync(d).sort()) {
      const st = statSync(join(d, name));
      out.push(`${rel}${name} ${st.isDirectory() ? "dir" : st.size} ${(st.mode & 0o7777).toString(8)}`);
      if (st.isDirectory()) walk(join(d, name), `${rel}${name}/`);
    }
  };
  walk(dir, "");
  return out;
}

/** A small hoss-backup archive (no lab needed) in a clean working dir, as the restore finds it. */
async function hossSetup(): Promise<{ root: string; hossDir: string; backupRoot: string; keysDir: string; archive: string; site: string; state: string }> {
  const root = tmp("lifeboat-hoss-");
  const hossDir = `${root}/home/.hoss`;
  const backupRoot = `${hossDir}/backup`;
  const keysDir = `${root}/volumes/auth-secrets`;
  const stage = `${root}/stage`;
  const put = (p: string, text: string, mode = 0o644) => {
    mkdirSync(join(p, ".."), { recursive: true });
    writeFileSync(p, text);
    chmodSync(p, mode);
  };
  put(`${stage}/config/.env`, `BACKUP_ROOT=${backupRoot}\n`, 0o600);
  put(`${stage}/config/core/config.yaml`, "server: {}\n");
  put(`${stage}/keys${keysDir}/private.pem`, "-----BEGIN PRIVATE KEY-----\n", 0o600);
  put(`${stage}/db/hoss_core.dump`, "PGDMP");
  put(`${stage}/db/hoss_auth.dump`, "PGDMP");
  put(`${stage}/ldap/hoss.ldif`, "dn: dc=hoss,dc=lab\nobjectClass: dcObject\ndc: hoss\n");
  put(`${stage}/search/index.latest`, "\0\0\0\0\0\0\0\0");
  const archive = `${backupRoot}/backups/hoss-backup-2026-11-21T101500Z.tar.gz`;
  await packArchive(stage, archive, {
    recipe: "hoss-backup",
    progress: false,
    meta: {
      hoss: {
        endpoint: "http://127.0.0.1:1",
        server: { version: "2.1.3", build: "test" },
        configDir: hossDir,
        backupRoot,
        captured: ["config", "keys", "database", "ldap", "search"],
        keys: [{ path: keysDir, in: `keys${keysDir}` }],
        database: { container: "server_db_1", dumps: { hoss_core: { file: "db/hoss_core.dump", bytes: 5 }, hoss_auth: { file: "db/hoss_auth.dump", bytes: 5 } } },
        ldap: { file: "ldap/hoss.ldif", entries: 1 },
        search: { dir: "search", repository: "hoss-backup-repository", snapshot: "hoss-snap-x", indices: ["metadata-index"], shards: 1 },
      },
    },
  });
  const site = `${root}/site.yaml`;
  writeFileSync(site, `config-dir: ${hossDir}\nsearch: {url: "http://127.0.0.1:1"}\nserver: {start: [make, up, DETACH=true], dir: /srv/hoss/server}\n`);
  return { root, hossDir, backupRoot, keysDir, archive, site, state: `${root}/state` };
}

test("backup → wipe → restore → compare: config, keys, rows, LDAP and documents come back; a failed restore step resumes", async () => {
  const r = await hossDrill({ log: () => {} });
  assert.is(r.resumed, true);
  assert.is(r.archiveMode, 0o600);
  assert.match(r.archive, /\/backups\/hoss-backup-\d{4}-\d\d-\d\dT\d{6}Z\.tar\.gz\.age$/);
  assert.is(r.keyFiles, 2);
  assert.ok(r.configFiles >= 10, `config files: ${r.configFiles}`);
  assert.equal(r.dbRows, { "hoss_core.namespace": 3, "hoss_core.dataset": 5, "hoss_core.sync_policy": 2, "hoss_auth.account": 4, "hoss_auth.api_key": 3 });
  assert.is(r.ldapEntries, 26);
  assert.equal(r.docs, { "metadata-index": 25, "hoss-audit": 12 });
  assert.equal(r.restarts, ["sync", "core"]);
  assert.match(r.backupOutput, /OBJECT-STORE DATA IS NOT INCLUDED IN THIS BACKUP/);
  assert.match(r.backupOutput, /NOT INCLUDED object-store data/);
  assert.match(r.restoreOutput, /continuing at 'restart core/);
});

test("restore refuses a dirty working dir, listing what is in the way (exit 5), before touching anything", async () => {
  const h = await hossSetup();
  writeFileSync(`${h.hossDir}/.env`, "BACKUP_ROOT=/elsewhere\n");
  mkdirSync(`${h.hossDir}/data/db`, { recursive: true });
  writeFileSync(`${h.hossDir}/data/db/PG_VERSION`, "15\n");
  mkdirSync(`${h.hossDir}/data/nas/bucket`, { recursive: true }); // object store: may stay
  writeFileSync(`${h.hossDir}/data/nas/bucket/object`, "data");
  mkdirSync(`${h.backupRoot}/.opensearch`, { recursive: true });
  writeFileSync(`${h.backupRoot}/.opensearch/index-0`, "{}");
  mkdirSync(`${h.backupRoot}/.db`, { recursive: true }); // empty: not in the way
  mkdirSync(h.keysDir, { recursive: true });
  writeFileSync(`${h.keysDir}/private.pem`, "old key");
  const before = snapshotTree(h.root);
  const r = await runRecipe("hoss-restore", [h.archive, "--config", h.site, "--yes"], { env: { LIFEBOAT_STATE_DIR: h.state } });
  assert.is(r.code, 5, r.output);
  assert.match(r.output, /working directory .* is not clean/);
  for (const p of [`${h.hossDir}/.env`, `${h.hossDir}/data/db`, `${h.backupRoot}/.opensearch`, `${h.keysDir} (a key the restore would overwrite)`]) assert.ok(r.output.includes(p), `should list ${p}:\n${r.output}`);
  for (const p of [`${h.hossDir}/data/nas`, `${h.backupRoot}/.db`, `${h.backupRoot}/backups`]) assert.not.ok(r.output.includes(`    ${p}\n`), `should not list ${p}`);
  assert.match(r.output, /make down and make reset/);
  assert.equal(snapshotTree(h.root).filter((l) => !l.startsWith("state")), before);
});

test("restore refuses a damaged archive (exit 3) before touching anything", async () => {
  const h = await hossSetup();
  const fd = openSync(h.archive, "r+");
  writeSync(fd, Buffer.from("DAMAGE"), 0, 6, Math.floor(statSync(h.archive).size / 2));
  closeSync(fd);
  const before = snapshotTree(h.hossDir);
  const r = await runRecipe("hoss-restore", [h.archive, "--config", h.site, "--yes"], { env: { LIFEBOAT_STATE_DIR: h.state } });
  assert.is(r.code, 3, r.output);
  // the quick verify reads the sidecars and the first 64 KiB (all of this small archive); on a larger
  // one the damage is found by the unpack's one full read, which restores nothing either
  assert.match(r.output, /step '(verify the archive|unpack the archive[^']*)' failed/, r.output);
  assert.match(r.output, /✖ (verify|unpack) the archive/);
  assert.equal(snapshotTree(h.hossDir), before);
  assert.not.ok(existsSync(h.keysDir));
});

test("a server that never becomes healthy times out with a clear error and the runbook's advice", async () => {
  const h = await hossSetup();
  const port = await freePort();
  const r = await runRecipe("hoss-restore", [h.archive, "--config", h.site, "--yes", `--endpoint=http://127.0.0.1:${port}`, "--server.start=true", `--server.dir=${h.root}`, "--server.timeout=2"], {
    env: { LIFEBOAT_STATE_DIR: h.state },
  });
  assert.is(r.code, 1, r.output);
  assert.match(r.output, new RegExp(`gave up waiting for the Hoss server at http://127.0.0.1:${port} after \\d`), r.output);
  assert.match(r.output, /connection refused/i);
  assert.match(r.output, /make down, then make reset/);
  assert.match(r.output, /--resume/);
  assert.ok(existsSync(`${h.hossDir}/core/config.yaml`), "configuration restored before the server starts");
  assert.is(statSync(`${h.keysDir}/private.pem`).mode & 0o777, 0o600);
});

test("without a terminal, a destructive restore step refuses (exit 5) unless --yes", async () => {
  const h = await hossSetup();
  const srv = await startHossServer({ port: 0, version: "2.1.9" });
  const search = await startOpenSearch({ port: 0, dataDir: `${h.root}/opensearch` });
  servers.push(srv, search);
  const r = await runRecipe("hoss-restore", [h.archive, "--config", h.site, `--endpoint=${srv.url}`, `--search.url=${search.url}`, "--server.start=true", `--server.dir=${h.root}`], {
    env: { LIFEBOAT_STATE_DIR: h.state },
  });
  assert.is(r.code, 5, r.output);
  assert.match(r.output, /server 2\.1\.9, backup 2\.1\.3/);
  assert.match(r.output, /step 'restore database hoss_core[^']*' failed: refused: replace database hoss_core in server_db_1 with the backup's/);
  assert.match(r.output, /pass --yes to confirm/);
});

test("restore --dry-run prints every command and runs none: nothing written, no journal", async () => {
  const h = await hossSetup();
  const before = snapshotTree(h.root);
  const r = await runRecipe("hoss-restore", [h.archive, "--config", h.site, "--dry-run"], { env: { LIFEBOAT_STATE_DIR: h.state } });
  assert.is(r.code, 0, r.output);
  for (const cmd of [/\[dry-run\] extract hoss-backup-/, /\[dry-run\] .*cp -a -T -- .*\/\.restore\/config/, /\[dry-run\] cd \/srv\/hoss\/server && make up DETACH=true/, /\[dry-run\] wait up to 15m/, /\[dry-run\] .*pg_restore .*--clean --if-exists/, /\[dry-run\] docker run --rm -i --volumes-from server_ldap_1 .*slapadd/, /\[dry-run\] PUT http:\/\/127\.0\.0\.1:1\/_snapshot\/hoss-backup-repository/, /\[dry-run\] DELETE http:\/\/127\.0\.0\.1:1\/metadata-index/, /\[dry-run\] POST .*\/hoss-snap-x\/_restore/, /\[dry-run\] cd \/srv\/hoss\/server && make restart SERVICE_NAME=core/]) {
    assert.match(r.output, cmd, r.output);
  }
  assert.match(r.output, /hoss-restore dry run finished/);
  assert.equal(snapshotTree(h.root), before);
});

test("backup --dry-run prints every command and runs none: nothing staged, no archive", async () => {
  const h = await hossSetup();
  const srv = await startHossServer({ port: 0, version: "2.1.3" });
  servers.push(srv);
  mkdirSync(`${h.hossDir}/core`, { recursive: true });
  writeFileSync(`${h.hossDir}/.env`, `BACKUP_ROOT=${h.backupRoot}\n`);
  const before = snapshotTree(h.root);
  const r = await runRecipe("hoss-backup", ["--config", h.site, "--dry-run", `--endpoint=${srv.url}`, `--keys.paths=${h.keysDir}`], { env: { LIFEBOAT_STATE_DIR: h.state } });
  assert.is(r.code, 0, r.output);
  for (const cmd of [/\[dry-run\] mkdir -p -m 700 -- .*\/\.current/, /\[dry-run\] find .*\/\.hoss -mindepth 1 -maxdepth 1 '!' -name data '!' -path .*\/backup -exec cp -a/, /\[dry-run\] cp -a -T -- .*auth-secrets/, /\[dry-run\] .*docker exec .*server_db_1 pg_dump/, /\[dry-run\] docker exec server_ldap_1 slapcat -n 1/, /\[dry-run\] PUT http:\/\/127\.0\.0\.1:1\/_snapshot\/hoss-backup-repository\/hoss-snap-.*wait_for_completion=true/, /\[dry-run\] pack .*\.current .*backups\/hoss-backup-\d{4}-\d\d-\d\dT\d{6}Z\.tar\.gz/, /\[dry-run\] rm -rf -- .*\.current/]) {
    assert.match(r.output, cmd, r.output);
  }
  assert.match(r.output, /OBJECT-STORE DATA IS NOT INCLUDED/);
  assert.equal(snapshotTree(h.root), before);
});

test("backup refuses a BACKUP_ROOT on NFS (exit 5) and says why", async () => {
  const h = await hossSetup();
  const bin = `${h.root}/bin`;
  mkdirSync(bin);
  writeFileSync(`${bin}/stat`, "#!/bin/sh\necho nfs\n", { mode: 0o755 }); // what `stat -f -c %T` prints on NFS
  const r = await runRecipe("hoss-backup", ["--config", h.site, "--yes"], { env: { LIFEBOAT_STATE_DIR: h.state, PATH: `${bin}:${process.env.PATH}` } });
  assert.is(r.code, 5, r.output);
  assert.match(r.output, /BACKUP_ROOT .* is on NFS \(nfs\); the backup must control file permissions there/);
  assert.not.ok(existsSync(`${h.backupRoot}/.current`));
});

test("a failed backup leaves no .current and nothing in backups/ that looks complete", async () => {
  const h = await hossSetup();
  const srv = await startHossServer({ port: 0 });
  servers.push(srv);
  writeFileSync(`${h.hossDir}/.env`, `BACKUP_ROOT=${h.backupRoot}\n`);
  mkdirSync(h.keysDir, { recursive: true });
  writeFileSync(`${h.keysDir}/private.pem`, "key", { mode: 0o600 });
  const archivesBefore = readdirSync(`${h.backupRoot}/backups`);
  const r = await runRecipe("hoss-backup", ["--config", h.site, "--yes", `--endpoint=${srv.url}`, `--keys.paths=${h.keysDir}`, "--db.container=lifeboat-no-such-db"], { env: { LIFEBOAT_STATE_DIR: h.state } });
  assert.is(r.code, 1, r.output);
  assert.match(r.output, /step 'dump database hoss_core[^']*' failed: .*lifeboat-no-such-db does not exist/);
  assert.not.ok(existsSync(`${h.backupRoot}/.current`), ".current is cleaned in finally");
  assert.equal(readdirSync(`${h.backupRoot}/backups`), archivesBefore);
  assert.equal(readdirSync(`${h.backupRoot}/.db`), []);
});

test("both recipes answer --help and dry-run under Deno too", async () => {
  for (const name of ["hoss-backup", "hoss-restore"]) {
    const r = await runRecipe(name, ["--help"], { runtime: "deno" });
    assert.is(r.code, 0, r.output);
    assert.match(r.output, new RegExp(`${name} — `));
    assert.match(r.output, /--endpoint=STRING/);
  }
  const h = await hossSetup();
  const r = await runRecipe("hoss-restore", [h.archive, "--config", h.site, "--dry-run"], { runtime: "deno", env: { LIFEBOAT_STATE_DIR: h.state } });
  assert.is(r.code, 0, r.output);
  assert.match(r.output, /\[dry-run\] .*pg_restore/);
  assert.match(r.output, /hoss-restore dry run finished/);
  const srv = await startHossServer({ port: 0 });
  servers.push(srv);
  writeFileSync(`${h.hossDir}/.env`, `BACKUP_ROOT=${h.backupRoot}\n`);
  const b = await runRecipe("hoss-backup", ["--config", h.site, "--dry-run", `--endpoint=${srv.url}`], { runtime: "deno", env: { LIFEBOAT_STATE_DIR: h.state } });
  assert.is(b.code, 0, b.output);
  assert.match(b.output, /\[dry-run\] .*pg_dump/);
  assert.match(b.output, /hoss-backup dry run finished/);
  assert.not.ok(existsSync(`${h.backupRoot}/.current`));
});

test.run();
