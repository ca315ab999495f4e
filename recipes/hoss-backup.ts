// hoss-backup: back up a running Hoss server's state, as `hossadm backup` does, into ONE
// verified archive in $BACKUP_ROOT/backups (the Hoss runbook, "Backup and Restore").
//
//   npx zx recipes/hoss-backup.ts --config site.yaml [--endpoint https://hoss.example.com] [--dry-run] [--yes]
//   make backup-hoss ARGS="--config site.yaml"
//
// Run it as the user who runs Hoss (who ran `make up`), while the server is running.
//
// Steps (runbook line → step):
//   "Backup does not include object store data!"    → "say loudly: object-store data is NOT in this backup"
//   "BACKUP_ROOT variable in the ~/.hoss/.env file" ; "not recommended that BACKUP_ROOT be on an
//    NFS mount due to the need to control file permissions"
//                                                   → "check BACKUP_ROOT exists and is not on NFS" (exit 5 on NFS)
//   "The structure of the backup directory is: backups, .db, .opensearch, .current"
//                                                   → "prepare BACKUP_ROOT/.db, .opensearch, .current, backups"
//   "--endpoint … your server's external endpoint"  → "record the server version": GET ENDPOINT/core/v1/discover,
//                                                      as hossadm does; restore checks it (major.minor)
//   "Server configuration (i.e. contents of the ~/.hoss directory)"
//                                                   → "copy the server configuration": ~/.hoss without data/
//                                                      (object store, database and search data) and BACKUP_ROOT
//   "Private keys"                                  → "copy the private keys (0600)"            [keys.paths]
//   "Database tables" ; ".db: … Database dumps are placed here during backup/restore"
//                                                   → "dump database NAME": pg_dump -Fc in the database
//                                                      container into .db, then into .current; one step per database
//   "Internal LDAP server data (if enabled)"        → "export the LDAP data (slapcat)"          [ldap.enabled, ldap.slapcat]
//   "Search index" ; ".opensearch: … Index snapshots are placed here"
//                                                   → "snapshot the search index": fs repository at .opensearch,
//                                                      snapshot with wait_for_completion, state must be SUCCESS
//                                                   → "copy the snapshot into the backup", then drop it from
//                                                      the repository (the archive holds it now)
//   ".current … compressed into a .tar.gz file after all items are successfully collected" ;
//   "backups: Location where successfully created backup archives will be placed"
//                                                   → "pack the archive": backups/hoss-backup-<UTC stamp>.tar.gz
//                                                      (.tar.gz.age when age.* is set), 0600, manifest inside,
//                                                      written as a hidden partial file and renamed when complete
//   (moving the archive to safe storage)            → "copy the archive off-site" [offsite.to]: to each s3:// /
//                                                      ssh:// / mounted destination, verified there, then
//                                                      offsite.keep-local and the off-site keep-* retention
//   (always, also after a failure)                  → finally: remove .current and the dumps in .db
//
// Archive layout, which hoss-restore.ts takes in:
//   config/…            ~/.hoss as it was, owners and modes kept (minus data/ and BACKUP_ROOT)
//   keys/<absolute path> each private key or key directory, files 0600, dirs 0700
//   db/<database>.dump  pg_dump custom format, one per database
//   ldap/hoss.ldif      slapcat output (when LDAP is enabled)
//   search/…            the OpenSearch fs repository holding the snapshot
//   manifest.json       meta.hoss: endpoint, server version, BACKUP_ROOT, what was captured and counts
//
// Left to the operator, and why:
//   - object-store data (minIO, S3 buckets): the runbook leaves it out on purpose; protect it by
//     replication or bucket versioning. The recipe says so loudly, every run.
//   - choosing safe storage for the archive: it holds passwords and private keys; encrypt it
//     (age.passphrase or age.recipients) before offsite.to sends it anywhere you do not trust.
//   - reaching OpenSearch: Hoss does not publish port 9200; set search.url to where this host
//     can reach it (e.g. a published 127.0.0.1 port), and search.location to the path the
//     OpenSearch container sees BACKUP_ROOT/.opensearch at (Hoss mounts it at /mnt/snapshots).
//
// Settings: recipes/hoss.ts holds the table both Hoss recipes share (flags, env LIFEBOAT_*, or
// the --config site file; see --help and recipes/hoss.site.example.yaml). This recipe reads
// config-dir, backup-root, endpoint, config.exclude, keys.paths, db.*, ldap.enabled, ldap.slapcat,
// search.*, age.passphrase, age.recipients, offsite.* (docs/offsite.md).
//
// --resume is refused: .current is removed after every run, also a failed one (as hossadm does),
// so a resumed backup would miss the parts staged before. Run it again; it starts clean.
import {
  ageOptions,
  compressionOptions,
  backupArchive,
  exec,
  expandHome,
  formatBytes,
  httpJson,
  offsiteBackup,
  offsiteOptions,
  ldifEntries,
  LifeboatError,
  path,
  pgDump,
  probe,
  recipe,
  RefusedError,
  searchDeleteSnapshots,
  searchRegisterRepository,
  searchSnapshot,
  stamp,
  step,
  UsageError,
  withoutCredentials,
} from "../lib/mod.ts";
import * as hoss from "./hoss.ts";

await recipe({
  name: "hoss-backup",
  description: "back up a running Hoss server (configuration, keys, database, LDAP, search index) into one verified archive",
  usage: "npx zx recipes/hoss-backup.ts --config site.yaml [--endpoint URL] [--dry-run] [--yes]",
  settings: hoss.settings,
  target: (ctx) => hoss.hossDirs(ctx.settings, ctx.sources).configDir,
  plan: (ctx) => {
    const s = ctx.settings;
    if (s.resume) throw new UsageError("hoss-backup cannot --resume: .current is cleaned after every run, so the parts staged before are gone", "run the backup again without --resume");
    const { configDir, backupRoot, backupRootFrom } = hoss.hossDirs(s, ctx.sources);
    const current = `${backupRoot}/.current`;
    const keyPaths = s["keys.paths"].map(expandHome);
    const relative = keyPaths.filter((k) => !k.startsWith("/"));
    if (relative.length) throw new UsageError(`keys.paths must be absolute: ${relative.join(", ")}`);
    // Each database's dump is the file db/NAME.dump: a name must be a file name.
    const unfit = s["db.databases"].filter((db) => db === "" || db === "." || db === ".." || db.startsWith("-") || /[/\x00-\x1f\x7f]/.test(db));
    if (unfit.length) throw new UsageError(`db.databases: ${unfit.map((d) => JSON.stringify(d)).join(", ")} cannot be a dump's file name (db/NAME.dump)`, "name the databases as PostgreSQL lists them; names with /, a leading - or control characters are not supported");
    if (backupRoot.startsWith(`${configDir}/`) && backupRoot.slice(configDir.length + 1).includes("/")) {
      throw new UsageError(`BACKUP_ROOT ${backupRoot} lies deeper inside ${configDir} than one level`, "put BACKUP_ROOT directly in the working dir (the default ~/.hoss/backup) or outside it");
    }
    const pg = { container: s["db.container"], user: s["db.user"] || undefined, password: s["db.password"] || undefined };
    const search = s["search.url"].replace(/\/+$/, "");
    const repo = s["search.repository"];

    const warn = step("warn", "say loudly: object-store data is NOT in this backup", () => {
      ctx.log.box([
        "OBJECT-STORE DATA IS NOT INCLUDED IN THIS BACKUP.",
        "This archive holds the server's state: configuration, keys, database,",
        "LDAP and search index. Protect the object store (minIO, S3 buckets)",
        "by other means, such as replication or bucket versioning.",
      ]);
    });

    const checkRoot = step("backup-root", "check BACKUP_ROOT exists and is not on NFS", async () => {
      const fsType = await probe(["stat", "-f", "-c", "%T", "--", backupRoot]).catch((e: Error) => {
        throw new UsageError(`BACKUP_ROOT ${backupRoot} (from ${backupRootFrom}) cannot be read: ${e.message.split("\n").pop()?.trim()}`, "Hoss creates it at install (make config); fix BACKUP_ROOT in .env or set backup-root");
      });
      if (/^nfs/i.test(fsType)) {
        throw new RefusedError(
          `refused: BACKUP_ROOT ${backupRoot} is on NFS (${fsType}); the backup must control file permissions there, which NFS does not allow reliably`,
          "put BACKUP_ROOT on a local filesystem (edit BACKUP_ROOT in .env, then make config); moving the finished archive to NFS is safe",
        );
      }
      ctx.log.ok(`BACKUP_ROOT ${backupRoot} (from ${backupRootFrom}) is on ${fsType}`);
      return { startedAt: new Date().toISOString() };
    });

    const prepare = step("prepare", "prepare BACKUP_ROOT/.db, .opensearch, .current, backups", async () => {
      await exec(["rm", "-rf", "--", current]); // what a killed run left
      await exec(["mkdir", "-p", "--", `${backupRoot}/.db`, `${backupRoot}/.opensearch`]);
      await exec(["mkdir", "-p", "-m", "700", "--", `${backupRoot}/backups`, current, `${current}/config`, `${current}/keys`, `${current}/db`, `${current}/ldap`, `${current}/search`]);
    });

    const version = step("version", "record the server version (GET ENDPOINT/core/v1/discover)", () =>
      httpJson<{ version: string; build: string }>(`${s.endpoint.replace(/\/+$/, "")}/core/v1/discover`, { retries: 2 }).catch((e: Error) => {
        throw new LifeboatError(`the server at ${s.endpoint} did not tell its version: ${e.message}`, { hint: "is Hoss running? off localhost, pass --endpoint https://your.hoss.host as for hossadm" });
      }));

    const config = step("config", "copy the server configuration (CONFIG-DIR without data/ and BACKUP_ROOT)", async () => {
      const skip = [...s["config.exclude"].flatMap((name) => ["!", "-name", name]), "!", "-path", backupRoot];
      await exec(["find", configDir, "-mindepth", "1", "-maxdepth", "1", ...skip, "-exec", "cp", "-a", "-t", `${current}/config`, "--", "{}", "+"]);
      await exec(["chmod", `--reference=${configDir}`, "--", `${current}/config`]); // the restore gives CONFIG-DIR this mode
      await exec(["chown", `--reference=${configDir}`, "--", `${current}/config`]);
    });

    const keys = step("keys", "copy the private keys (0600)", async () => {
      for (const key of keyPaths) {
        await exec(["mkdir", "-p", "--", `${current}/keys${path.dirname(key)}`]);
        await exec(["cp", "-a", "-T", "--", key, `${current}/keys${key}`]);
      }
      await exec(["chmod", "-R", "u+rwX,go=", "--", `${current}/keys`]);
      return keyPaths.map((p) => ({ path: p, in: `keys${p}` }));
    });

    const dumps = s["db.databases"].map((db) =>
      step(`dump:${db}`, `dump database ${db} (pg_dump -Fc, via .db)`, async () => {
        const r = await pgDump(pg, db, `${backupRoot}/.db/${db}.dump`);
        await exec(["mv", "--", `${backupRoot}/.db/${db}.dump`, `${current}/db/${db}.dump`]);
        return { file: `db/${db}.dump`, bytes: r.bytes };
      }));

    const ldap = step("ldap", "export the LDAP data (slapcat)", async () => {
      await exec(s["ldap.slapcat"], { stdout: { file: `${current}/ldap/hoss.ldif`, mode: 0o600 } });
      return { file: "ldap/hoss.ldif", entries: await ldifEntries(`${current}/ldap/hoss.ldif`) };
    }, { when: s["ldap.enabled"] });

    const snapshot = step("snapshot", "snapshot the search index into BACKUP_ROOT/.opensearch", async () => {
      await searchRegisterRepository(search, repo, { location: s["search.location"] });
      const snap = await searchSnapshot(search, repo, `hoss-snap-${stamp().toLowerCase()}`, { includeGlobalState: true, pollIntervalMs: 0, timeoutMs: 30 * 60_000 });
      return { name: snap.name, indices: snap.indices, shards: snap.shards.total };
    });

    const copySnapshot = step("copy-snapshot", "copy the snapshot into the backup, then drop it from the repository", async () => {
      await exec(["cp", "-a", "--", `${backupRoot}/.opensearch/.`, `${current}/search`]);
      await searchDeleteSnapshots(search, repo, { names: [snapshot.output.name] });
    });

    const pack = step("pack", "pack the archive into BACKUP_ROOT/backups (0600, manifest inside)", () =>
      backupArchive<hoss.ArchiveMeta>(current, {
        folder: `${backupRoot}/backups`,
        name: "hoss-backup",
        startedAt: new Date(checkRoot.output.startedAt),
        meta: { hoss: meta() },
        age: ageOptions(s),
        ...compressionOptions(s),
      }));

    const offsite = step("offsite", `copy the archive off-site (${s["offsite.to"].join(", ") || "offsite.to is empty"})`, () =>
      offsiteBackup(pack.output.path, offsiteOptions(s)), { when: s["offsite.to"].length > 0 });

    /** What the manifest records for the restore: where things came from, what was captured, counts. */
    const meta = (): hoss.Meta => ({
      endpoint: withoutCredentials(s.endpoint),
      server: version.output,
      configDir,
      backupRoot,
      objectStore: "NOT INCLUDED: protect it by replication or bucket versioning",
      captured: ["config", "keys", "database", ...(s["ldap.enabled"] ? ["ldap"] : []), "search"],
      config: { dir: "config", excluded: [...s["config.exclude"], backupRoot] },
      keys: keys.output,
      database: { container: pg.container, dumps: Object.fromEntries(s["db.databases"].map((db, i) => [db, dumps[i].output])) },
      ldap: s["ldap.enabled"] ? ldap.output : null,
      search: { dir: "search", repository: repo, snapshot: snapshot.output.name, indices: snapshot.output.indices, shards: snapshot.output.shards },
    });

    return {
      steps: [warn, checkRoot, prepare, version, config, keys, ...dumps, ldap, snapshot, copySnapshot, pack, offsite],
      cleanup: async () => {
        await exec(["rm", "-rf", "--", current]);
        await exec(["find", `${backupRoot}/.db`, "-mindepth", "1", "-maxdepth", "1", "-name", "*.dump", "-delete"]).catch(() => {});
      },
      report: () => [
        `archive      ${pack.output.path} (${formatBytes(pack.output.manifest.totals.bytes)} before compression)`,
        `server       Hoss ${version.output.version} at ${s.endpoint}`,
        `database     ${s["db.databases"].map((db, i) => `${db} ${formatBytes(dumps[i].output.bytes)}`).join(", ")}`,
        `ldap         ${s["ldap.enabled"] ? `${ldap.output.entries} entries` : "off"}`,
        `search       ${snapshot.output.indices.length} indices: ${snapshot.output.indices.join(", ")}`,
        `keys         ${keys.output.length} path(s), 0600`,
        ...(offsite.hasOutput ? offsite.output.copies.map((c) => `off-site     ${c.url} (${c.skipped ? "already there, " : ""}verified: ${c.method})`) : []),
        "NOT INCLUDED object-store data: protect it by replication or bucket versioning",
      ],
    };
  },
});
