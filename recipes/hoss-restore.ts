// hoss-restore: restore a Hoss server from a hoss-backup archive onto a prepared server with a
// clean working directory, as `hossadm restore` does (the Hoss runbook, "Backup and Restore"),
// as resumable steps.
//
//   npx zx recipes/hoss-restore.ts ARCHIVE --config site.yaml [--endpoint URL] [--dry-run] [--yes] [--resume]
//   make restore-hoss ARGS="~/.hoss/backup/backups/hoss-backup-….tar.gz --config site.yaml"
//
// Run it as the user who runs Hoss, with the Hoss source repository at the backup's version.
//
// Steps (runbook line → step):
//   (lifeboat)                                     → "fetch the archive" when ARCHIVE is an s3:// or ssh:// URL
//                                                     (offsite.* settings): into BACKUP_ROOT/backups, where the
//                                                     runbook keeps archives, checked against its .sha256
//   (lifeboat)                                     → "verify the archive": every byte against its manifest,
//                                                     before anything else (damaged: exit 3, nothing touched)
//   "you should have a … 'clean' Hoss working directory" ; "you can remove all other content from
//    the working directory except the backup directory because you'll need the backup archive"
//                                                   → "check the working directory is clean": refuses (exit 5)
//                                                     and lists what is in the way: anything in CONFIG-DIR but
//                                                     BACKUP_ROOT/backups, the archive and config.keep (data/nas:
//                                                     "be very careful not to remove the ~/.hoss/data/nas
//                                                     directory"); non-empty .db/.opensearch/.current; keys
//                                                     that already exist
//   (hossadm: unpack into a temp dir)              → "unpack the archive into BACKUP_ROOT/.restore" (kept for --resume)
//   "Server configuration (i.e. contents of the ~/.hoss directory)"
//                                                   → "restore the configuration": owners and modes as backed up
//   "Private keys"                                  → "restore the private keys (0600)", where they were
//   "The structure of the backup directory"         → "prepare BACKUP_ROOT/.db, .opensearch, backups"
//   "the hossadm tool will instruct you to start the server … run make up DETACH=true … if there are
//    any configuration changes you wish to make … make them at this point, before running make up"
//                                                   → "start the server": server.start in server.dir, or,
//                                                     when none is set, a box telling the operator to run it
//   "the hossadm tool will wait 15 minutes for the server to start before timing out … stop the
//    server and reset via make down and make reset before trying again"
//                                                   → "wait for the server" (GET ENDPOINT/core/v1/discover) and
//                                                     "wait for OpenSearch" (health yellow or green): a spinner,
//                                                     server.timeout (900 s), a timeout error with that advice
//   "ensure the Hoss source repository is at the desired version"
//                                                   → "check the server runs the backup's version": major.minor
//                                                     as hossadm compares them
//   "Database tables"                               → "restore database NAME": pg_restore --clean --if-exists into
//                                                     the running database container, one step per database
//   "Internal LDAP server data (if enabled)"        → "stop the LDAP server", "clear the LDAP database, then
//                                                     load the LDAP data (slapadd)" (one step: a resumed run
//                                                     clears before it loads again), "start the LDAP server"
//   "Search index" ; ".opensearch: … Index snapshots are placed here during backup/restore"
//                                                   → "put the snapshot into BACKUP_ROOT/.opensearch and register
//                                                     the repository", "replace the search indices from the
//                                                     snapshot" (delete what the fresh server created, _restore)
//   "make restart SERVICE_NAME=sync" ; "make restart SERVICE_NAME=core"
//                                                   → "restart sync", "restart core"   [server.restart-*]
//   (hossadm: clear the snapshot dir)              → "clean up": unregister the repository, remove .restore
//                                                     and the copied snapshot
// Steps that replace data ask first; without a terminal they need --yes (or they refuse, exit 5).
// A failed run keeps BACKUP_ROOT/.restore and its journal: fix the cause, then --resume continues at
// the failed step (e.g. a server slow to start: --resume waits again, nothing is restored twice).
//
// Left to the operator, and why:
//   - preparing the server (Docker, the Hoss repository at the backup's version, `make setup`)
//     and `make down` + `make reset` on the old one: they install software or delete data
//     (make reset clears data/nas, minIO's objects, which the backup does NOT hold).
//   - removing root-owned leftovers (data/db, backup/.db, data/opensearch, backup/.opensearch)
//     with sudo: this recipe lists them and refuses; it never deletes what it did not create.
//   - configuration changes before the server starts (e.g. HEALTH_CHECK_HOST in .env): with no
//     server.start set, the recipe stops at "start the server" and waits for the operator.
//   - object-store data: not in the backup; restore it by the means that protected it.
//
// Settings: recipes/hoss.ts holds the table both Hoss recipes share (flags, env LIFEBOAT_*, or the
// --config site file; see --help and recipes/hoss.site.example.yaml). This recipe reads
// config-dir, backup-root, endpoint, config.keep, db.*, ldap.enabled, ldap.stop, ldap.clear,
// ldap.slapadd, ldap.start, search.*, server.*, age.passphrase, age.identity-file, and
// offsite.s3.* / offsite.ssh.* for an off-site ARCHIVE (docs/offsite.md).
import {
  ageOptions,
  exec,
  expandHome,
  httpJson,
  isOffsiteUrl,
  LifeboatError,
  offsiteFetch,
  offsiteOptions,
  path,
  pgRestore,
  probe,
  recipe,
  RefusedError,
  searchHealthProbe,
  searchRegisterRepository,
  searchRestore,
  shellJoin,
  step,
  unpackArchive,
  UsageError,
  verifyArchive,
  waitForHealthy,
} from "../lib/mod.ts";
import * as hoss from "./hoss.ts";

const RESET_HINT =
  "stop the server and reset it (make down, then make reset; careful: make reset clears data/nas) before trying again, as the runbook says; " +
  "if it is only slow to start, re-run with --resume to wait again";

await recipe({
  name: "hoss-restore",
  description: "restore a Hoss server from a hoss-backup archive: configuration, keys, database, LDAP and search index",
  usage: "npx zx recipes/hoss-restore.ts ARCHIVE --config site.yaml [--endpoint URL] [--dry-run] [--yes] [--resume]",
  settings: hoss.settings,
  target: (ctx) => expandHome(ctx.settings["config-dir"]),
  plan: (ctx) => {
    const s = ctx.settings;
    if (ctx.args.length !== 1) throw new UsageError("say which archive to restore: hoss-restore ARCHIVE", "e.g. ~/.hoss/backup/backups/hoss-backup-2026-11-21T101500Z.tar.gz");
    const archive = expandHome(ctx.args[0]);
    const configDir = expandHome(s["config-dir"]);
    const decrypt = ageOptions(s);
    const pg = { container: s["db.container"], user: s["db.user"] || undefined, password: s["db.password"] || undefined };
    const endpoint = s.endpoint.replace(/\/+$/, "");
    const search = s["search.url"].replace(/\/+$/, "");
    const make = { cwd: s["server.dir"] ? expandHome(s["server.dir"]) : undefined };
    const timeoutMs = s["server.timeout"] * 1000;
    const replace = (what: string) => `replace ${what} with the backup's (${archive.split("/").pop()})?`;

    const fetched = step("fetch", `fetch the archive from ${archive}`, () =>
      offsiteFetch(archive, `${hoss.hossDirs(s, ctx.sources).backupRoot}/backups`, offsiteOptions(s)), { when: isOffsiteUrl(archive) });
    const local = () => (fetched.hasOutput ? fetched.output : archive);

    // The quick verify reads the sidecars and the key; the unpack step checks every byte as it unpacks.
    const verified = step("verify", "verify the archive", async () => {
      const report = await verifyArchive<hoss.ArchiveMeta>(local(), { decrypt, quick: true });
      if (report.info?.recipe !== "hoss-backup") throw new UsageError(`${archive} was not made by hoss-backup (manifest recipe: ${report.info?.recipe ?? "none"})`);
      const meta = report.info.meta.hoss;
      ctx.log.ok(`archive of Hoss ${meta.server?.version} at ${meta.endpoint}, taken ${report.info.startedAt}: ${meta.captured.join(", ")}`);
      return meta;
    });
    const backupRoot = () => expandHome(s["backup-root"] || verified.output.backupRoot);
    const staging = () => `${backupRoot()}/.restore`;

    const steps = [
      fetched,
      verified,

      step("clean", "check the working directory is clean", async () => {
        const keep = [`${backupRoot()}/backups`, local(), ...s["config.keep"].map((p) => `${configDir}/${p}`)];
        const inTheWay = await hossLeftovers([configDir, backupRoot()], keep, verified.output.keys.map((k) => k.path));
        if (inTheWay.length) {
          throw new RefusedError(
            `refused: the Hoss working directory ${configDir} is not clean; in the way:\n    ${inTheWay.join("\n    ")}`,
            "make down and make reset on the old server, then remove these (some need sudo: data/db, backup/.db, data/opensearch, backup/.opensearch); keep the backup directory and the archive",
          );
        }
        ctx.log.ok(`${configDir} holds nothing but the backup directory${s["config.keep"].length ? ` and ${s["config.keep"].join(", ")}` : ""}`);
      }),

      step("unpack", "unpack the archive into BACKUP_ROOT/.restore", async () => {
        await exec(["rm", "-rf", "--", staging()]);
        await unpackArchive(local(), staging(), { decrypt, sameOwner: true });
      }),

      step("config", "restore the configuration", () => exec(["cp", "-a", "-T", "--", `${staging()}/config`, configDir])),

      step("keys", "restore the private keys (0600)", async () => {
        for (const key of verified.output.keys) {
          await exec(["mkdir", "-p", "--", path.dirname(key.path)]);
          await exec(["cp", "-a", "-T", "--", `${staging()}/${key.in}`, key.path]);
          await exec(["chmod", "-R", "u+rwX,go=", "--", key.path]);
        }
      }),

      step("prepare", "prepare BACKUP_ROOT/.db, .opensearch, backups", async () => {
        await exec(["mkdir", "-p", "--", `${backupRoot()}/.db`, `${backupRoot()}/.opensearch`]);
        await exec(["mkdir", "-p", "-m", "700", "--", `${backupRoot()}/backups`]);
      }),

      step("start-server", "start the server (make up DETACH=true)", async () => {
        if (s["server.start"].length) {
          ctx.log.info(`  ${shellJoin(s["server.start"])}${make.cwd ? `  (in ${make.cwd})` : ""}`);
          return void (await exec(s["server.start"], { ...make, stdout: "inherit" }));
        }
        ctx.log.box([
          "Ready for restore. Please start the server now, in another terminal:",
          `    cd ${make.cwd ?? "<Hoss repository>/server"} && make up DETACH=true`,
          "Make configuration changes (e.g. HEALTH_CHECK_HOST in .env) BEFORE make up.",
          `This restore waits up to ${Math.round(timeoutMs / 60_000)} minutes for the server to answer.`,
        ]);
      }),

      step("wait-server", "wait for the server (GET ENDPOINT/core/v1/discover)", () =>
        waitForHealthy({ http: `${endpoint}/core/v1/discover` }, { timeoutMs, label: `the Hoss server at ${endpoint}`, hint: RESET_HINT })),

      step("wait-search", "wait for OpenSearch (cluster health yellow or green)", () =>
        waitForHealthy(searchHealthProbe(search), { timeoutMs, label: `OpenSearch at ${search}`, hint: RESET_HINT })),

      step("version", "check the server runs the backup's version (major.minor)", async () => {
        const want = verified.output.server?.version ?? "";
        const { version } = await httpJson<{ version: string }>(`${endpoint}/core/v1/discover`, { dryRunResult: { version: want } });
        if (majorMinor(version) !== majorMinor(want)) {
          throw new LifeboatError(`the server runs Hoss ${version}, the backup is of Hoss ${want}: backups restore onto the same major.minor version`, {
            hint: `check out the Hoss repository at ${want}, make down + make reset, restore, then upgrade`,
          });
        }
        ctx.log.ok(`server ${version}, backup ${want}`);
      }),

      ...s["db.databases"].map((db) =>
        step(`restore-db:${db}`, `restore database ${db} (pg_restore --clean --if-exists)`, async () => {
          const dumps = verified.output.database.dumps;
          if (!dumps[db]) throw new UsageError(`the archive holds no dump of database ${db} (it has: ${Object.keys(dumps).join(", ")})`, "set db.databases to those");
          await pgRestore(pg, `${staging()}/${dumps[db].file}`, { database: db, clean: true });
        }, { confirm: replace(`database ${db} in ${pg.container}`) })),

      step("ldap-stop", "stop the LDAP server", async () => {
        if (!verified.output.ldap) throw new UsageError("the archive holds no LDAP data (backed up with ldap.enabled false)", "set ldap.enabled false to restore without it");
        await exec(s["ldap.stop"]);
      }, { when: s["ldap.enabled"] }),

      // One step: a run killed after slapadd (or halfway through it) clears what it loaded when
      // resumed, instead of loading the same entries on top of them ("already exists").
      step("ldap-load", `${s["ldap.clear"].length ? "clear the LDAP database, then " : ""}load the LDAP data (slapadd)`, async () => {
        if (s["ldap.clear"].length) await exec(s["ldap.clear"]);
        await exec(s["ldap.slapadd"], { stdin: { file: `${staging()}/${verified.output.ldap!.file}` } });
      }, {
        when: s["ldap.enabled"],
        confirm: replace(`the LDAP data${s["ldap.clear"].length ? " (the database the fresh server created is deleted first)" : ""}`),
      }),

      step("ldap-start", "start the LDAP server", () => exec(s["ldap.start"]), { when: s["ldap.enabled"] }),

      step("search-repository", "put the snapshot into BACKUP_ROOT/.opensearch and register the repository", async () => {
        await exec(["cp", "-a", "--", `${staging()}/${verified.output.search.dir}/.`, `${backupRoot()}/.opensearch`]);
        await searchRegisterRepository(search, s["search.repository"], { location: s["search.location"] });
      }),

      step("search-restore", "replace the search indices from the snapshot (delete, then _restore)", async () => {
        const { snapshot, indices } = verified.output.search;
        await searchRestore(search, s["search.repository"], snapshot, { existing: "delete", indices, includeGlobalState: true, timeoutMs: 30 * 60_000 });
        ctx.log.ok(`restored ${indices.length} indices from snapshot ${snapshot}: ${indices.join(", ")}`);
      }, { confirm: replace("the search indices") }),

      step("restart-sync", "restart sync (make restart SERVICE_NAME=sync)", () => exec(s["server.restart-sync"], make), { when: s["server.restart-sync"].length > 0 }),

      step("restart-core", "restart core (make restart SERVICE_NAME=core)", () => exec(s["server.restart-core"], make), { when: s["server.restart-core"].length > 0 }),

      step("clean-up", "clean up: unregister the repository, remove BACKUP_ROOT/.restore and the copied snapshot", async () => {
        await httpJson(`${search}/_snapshot/${encodeURIComponent(s["search.repository"])}`, { method: "DELETE", expect: [200, 404] });
        await exec(["rm", "-rf", "--", staging()]);
        await exec(["find", `${backupRoot()}/.opensearch`, "-mindepth", "1", "-delete"]);
      }),
    ];

    return {
      steps,
      report: () => {
        const h = verified.output;
        return [
          `restored     Hoss ${h.server?.version} from ${archive} into ${configDir}`,
          `database     ${s["db.databases"].join(", ")}`,
          `ldap         ${s["ldap.enabled"] ? `${h.ldap?.entries} entries` : "off"}`,
          `search       ${h.search.indices.length} indices from snapshot ${h.search.snapshot}`,
          `keys         ${h.keys.map((k) => k.path).join(", ")}`,
          "NOT RESTORED object-store data (not in the backup)",
        ];
      },
    };
  },
});

// ---- Hoss facts this recipe reads -------------------------------------------------------------

/**
 * What is in the way of a restore: everything under roots except the kept paths (and their
 * ancestors) and empty directories, reported at the top-most level; plus keys that exist.
 */
async function hossLeftovers(roots: string[], keep: string[], keys: string[]): Promise<string[]> {
  const prune = keep.flatMap((k, i) => [...(i ? ["-o"] : []), "-path", k]);
  const found = (await probe(["find", ...roots, "-mindepth", "1", "(", ...prune, ")", "-prune", "-o", "(", "-type", "d", "-empty", ")", "-o", "-print0"], { okCodes: [0, 1] })).split("\0").filter(Boolean);
  const kept = (p: string) => keep.some((k) => k === p || k.startsWith(`${p}/`));
  const inTheWay = [...new Set(found)].filter((p) => !kept(p));
  const topmost = inTheWay.filter((p) => !inTheWay.some((q) => p.startsWith(`${q}/`)));
  const existingKeys = keys.length ? (await probe(["find", ...keys, "-maxdepth", "0", "!", "-empty", "-print0"], { okCodes: [0, 1] })).split("\0").filter(Boolean) : [];
  return [...topmost, ...existingKeys.map((k) => `${k} (a key the restore would overwrite)`)];
}



/** "2.1.3" → "2.1". */
function majorMinor(v: string): string {
  return v.split(".").slice(0, 2).join(".");
}

