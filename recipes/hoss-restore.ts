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
//   "Internal LDAP server data (if enabled)"        → "stop the LDAP server", "clear the LDAP database",
//                                                     "load the LDAP data (slapadd)", "start the LDAP server"
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
// Settings (flags, env LIFEBOAT_*, or the --config site file shared with hoss-backup; see --help and
// recipes/hoss.site.example.yaml): config-dir, backup-root, endpoint, config.keep, db.container,
// db.databases, db.user, db.password, ldap.enabled, ldap.stop, ldap.clear, ldap.slapadd, ldap.start,
// search.url, search.repository, search.location, server.dir, server.start, server.timeout,
// server.restart-sync, server.restart-core, age.passphrase, age.identity-file.
import {
  expandHome,
  path,
  exec,
  httpJson,
  LifeboatError,
  pgRestore,
  probe,
  readAgeIdentities,
  recipe,
  RefusedError,
  shellJoin,
  step,
  unpackArchive,
  UsageError,
  verifyArchive,
  waitForHealthy,
  type Context,
  type StepApi,
} from "../lib/mod.ts";

const HOSS_RESTORE_SETTINGS = {
  "config-dir": { describe: "the Hoss working directory to restore into (hossadm --config-dir)", default: "~/.hoss" },
  "backup-root": { describe: "BACKUP_ROOT on this server; empty: the one the archive recorded (its .env)" },
  endpoint: { describe: "the server's external endpoint, with scheme (hossadm --endpoint)", default: "http://localhost" },
  "config.keep": { type: "list", describe: "paths in CONFIG-DIR that may stay (object-store data the backup does not hold)", default: ["data/nas"] as string[] },
  "db.container": { describe: "the database container", default: "server_db_1" },
  "db.databases": { type: "list", describe: "databases to restore", default: ["hoss_core", "hoss_auth"] as string[] },
  "db.user": { describe: "PostgreSQL role (POSTGRES_USER in .env); empty: the container's postgres user" },
  "db.password": { describe: "its password, when local connections in the container need one", secret: true },
  "ldap.enabled": { type: "boolean", describe: "Hoss runs its internal LDAP server: restore its data", default: true },
  "ldap.stop": { type: "list", describe: "stops the LDAP server (slapadd needs it stopped), as argv", default: ["docker", "stop", "server_ldap_1"] as string[] },
  "ldap.clear": {
    type: "list",
    describe: "empties the LDAP database the fresh server bootstrapped, as argv (empty: skip)",
    default: ["docker", "run", "--rm", "--volumes-from", "server_ldap_1", "--entrypoint", "find", "osixia/openldap:1.4.0", "/var/lib/ldap", "-mindepth", "1", "-delete"] as string[],
  },
  "ldap.slapadd": {
    type: "list",
    describe: "slapadd reading LDIF on stdin, as argv",
    default: ["docker", "run", "--rm", "-i", "--volumes-from", "server_ldap_1", "--user", "911:911", "--entrypoint", "slapadd", "osixia/openldap:1.4.0", "-n", "1"] as string[],
  },
  "ldap.start": { type: "list", describe: "starts the LDAP server again, as argv", default: ["docker", "start", "server_ldap_1"] as string[] },
  "search.url": { describe: "OpenSearch URL as this host reaches it", default: "http://127.0.0.1:9200" },
  "search.repository": { describe: "snapshot repository name", default: "hoss-backup-repository" },
  "search.location": { describe: "BACKUP_ROOT/.opensearch as OpenSearch sees it (its path.repo)", default: "/mnt/snapshots" },
  "server.dir": { describe: "the server/ directory of the Hoss source repository: where the make commands run" },
  "server.start": { type: "list", describe: "starts the server, as argv (e.g. make,up,DETACH=true); empty: ask the operator and wait" },
  "server.timeout": { type: "number", describe: "seconds to wait for the server and OpenSearch to answer", default: 900 },
  "server.restart-sync": { type: "list", describe: "restarts the sync service, as argv (empty: skip)", default: ["make", "restart", "SERVICE_NAME=sync"] as string[] },
  "server.restart-core": { type: "list", describe: "restarts the core service, as argv (empty: skip)", default: ["make", "restart", "SERVICE_NAME=core"] as string[] },
  "age.passphrase": { describe: "the archive's age passphrase", secret: true },
  "age.identity-file": { describe: "age identity file (AGE-SECRET-KEY-…) for an archive encrypted to recipients" },
} as const;

const RESET_HINT =
  "stop the server and reset it (make down, then make reset; careful: make reset clears data/nas) before trying again, as the runbook says; " +
  "if it is only slow to start, re-run with --resume to wait again";

await recipe({
  name: "hoss-restore",
  description: "restore a Hoss server from a hoss-backup archive: configuration, keys, database, LDAP and search index",
  usage: "npx zx recipes/hoss-restore.ts ARCHIVE --config site.yaml [--endpoint URL] [--dry-run] [--yes] [--resume]",
  settings: HOSS_RESTORE_SETTINGS,
  ignoreSections: ["keys", "config.exclude", "ldap.slapcat", "age.recipients"],
  target: (ctx) => expandHome(ctx.settings["config-dir"]),
  steps: (ctx) => {
    const s = ctx.settings;
    if (ctx.args.length !== 1) throw new UsageError("say which archive to restore: hoss-restore ARCHIVE", "e.g. ~/.hoss/backup/backups/hoss-backup-2026-11-21T101500Z.tar.gz");
    const archive = expandHome(ctx.args[0]);
    const configDir = expandHome(s["config-dir"]);
    const decrypt = { passphrase: s["age.passphrase"] || undefined, identities: s["age.identity-file"] ? readAgeIdentities(expandHome(s["age.identity-file"])) : undefined };
    const pg = { container: s["db.container"], user: s["db.user"] || undefined, password: s["db.password"] || undefined };
    const endpoint = s.endpoint.replace(/\/+$/, "");
    const search = s["search.url"].replace(/\/+$/, "");
    const repo = `${search}/_snapshot/${encodeURIComponent(s["search.repository"])}`;
    const make = { cwd: s["server.dir"] ? expandHome(s["server.dir"]) : undefined };
    const timeoutMs = s["server.timeout"] * 1000;
    const hoss = (api: StepApi) => api.state.hoss as HossMeta;
    const backupRoot = (api: StepApi) => expandHome(s["backup-root"] || hoss(api).backupRoot);
    const staging = (api: StepApi) => `${backupRoot(api)}/.restore`;
    const replace = (what: string) => `replace ${what} with the backup's (${archive.split("/").pop()})?`;

    return [
      step("verify the archive", async (api) => {
        const report = await verifyArchive(archive, { decrypt });
        if (report.manifest?.recipe !== "hoss-backup") throw new UsageError(`${archive} was not made by hoss-backup (manifest recipe: ${report.manifest?.recipe ?? "none"})`);
        api.state.hoss = report.manifest.meta.hoss;
        ctx.log.ok(`archive of Hoss ${hoss(api).server?.version} at ${hoss(api).endpoint}, taken ${report.manifest.startedAt}: ${hoss(api).captured.join(", ")}`);
      }),

      step("check the working directory is clean", async (api) => {
        const keep = [`${backupRoot(api)}/backups`, archive, ...s["config.keep"].map((p) => `${configDir}/${p}`)];
        const inTheWay = await hossLeftovers([configDir, backupRoot(api)], keep, hoss(api).keys.map((k) => k.path));
        if (inTheWay.length) {
          throw new RefusedError(
            `refused: the Hoss working directory ${configDir} is not clean; in the way:\n    ${inTheWay.join("\n    ")}`,
            "make down and make reset on the old server, then remove these (some need sudo: data/db, backup/.db, data/opensearch, backup/.opensearch); keep the backup directory and the archive",
          );
        }
        ctx.log.ok(`${configDir} holds nothing but the backup directory${s["config.keep"].length ? ` and ${s["config.keep"].join(", ")}` : ""}`);
      }),

      step("unpack the archive into BACKUP_ROOT/.restore", async (api) => {
        await exec(["rm", "-rf", "--", staging(api)]);
        await unpackArchive(archive, staging(api), { decrypt, sameOwner: true });
      }),

      step("restore the configuration", (api) => exec(["cp", "-a", "-T", "--", `${staging(api)}/config`, configDir])),

      step("restore the private keys (0600)", async (api) => {
        for (const key of hoss(api).keys) {
          await exec(["mkdir", "-p", "--", path.dirname(key.path)]);
          await exec(["cp", "-a", "-T", "--", `${staging(api)}/${key.in}`, key.path]);
          await exec(["chmod", "-R", "u+rwX,go=", "--", key.path]);
        }
      }),

      step("prepare BACKUP_ROOT/.db, .opensearch, backups", (api) =>
        exec(["mkdir", "-p", "--", `${backupRoot(api)}/.db`, `${backupRoot(api)}/.opensearch`, `${backupRoot(api)}/backups`])),

      step("start the server (make up DETACH=true)", async () => {
        if (s["server.start"].length) {
          ctx.log.info(`  ${shellJoin(s["server.start"])}${make.cwd ? `  (in ${make.cwd})` : ""}`);
          return exec(s["server.start"], { ...make, stdout: "inherit" });
        }
        ctx.log.box([
          "Ready for restore. Please start the server now, in another terminal:",
          `    cd ${make.cwd ?? "<Hoss repository>/server"} && make up DETACH=true`,
          "Make configuration changes (e.g. HEALTH_CHECK_HOST in .env) BEFORE make up.",
          `This restore waits up to ${Math.round(timeoutMs / 60_000)} minutes for the server to answer.`,
        ]);
      }),

      step("wait for the server (GET ENDPOINT/core/v1/discover)", () =>
        waitForHealthy({ http: `${endpoint}/core/v1/discover` }, { timeoutMs, label: `the Hoss server at ${endpoint}`, hint: RESET_HINT })),

      step("wait for OpenSearch (cluster health yellow or green)", () =>
        waitForHealthy({ http: `${search}/_cluster/health`, json: (h) => h.status === "yellow" || h.status === "green" }, { timeoutMs, label: `OpenSearch at ${search}`, hint: RESET_HINT })),

      step("check the server runs the backup's version (major.minor)", async (api) => {
        const want = hoss(api).server?.version ?? "";
        if (ctx.dryRun) return ctx.log.command(`GET ${endpoint}/core/v1/discover and compare with ${want}`, "dry-run");
        const { version } = await httpJson<{ version: string }>(`${endpoint}/core/v1/discover`);
        if (majorMinor(version) !== majorMinor(want)) {
          throw new LifeboatError(`the server runs Hoss ${version}, the backup is of Hoss ${want}: backups restore onto the same major.minor version`, {
            hint: `check out the Hoss repository at ${want}, make down + make reset, restore, then upgrade`,
          });
        }
        ctx.log.ok(`server ${version}, backup ${want}`);
      }),

      ...s["db.databases"].map((db) =>
        step(`restore database ${db} (pg_restore --clean --if-exists)`, async (api) => {
          if (!hoss(api).database.dumps[db]) throw new UsageError(`the archive holds no dump of database ${db} (it has: ${Object.keys(hoss(api).database.dumps).join(", ")})`, "set db.databases to those");
          await pgRestore(pg, `${staging(api)}/${hoss(api).database.dumps[db].file}`, { database: db, clean: true });
        }, { confirm: replace(`database ${db} in ${pg.container}`) })),

      step("stop the LDAP server", async (api) => {
        if (!hoss(api).ldap) throw new UsageError("the archive holds no LDAP data (backed up with ldap.enabled false)", "set ldap.enabled false to restore without it");
        await exec(s["ldap.stop"]);
      }, { when: s["ldap.enabled"] }),

      step("clear the LDAP database", () => exec(s["ldap.clear"]), {
        when: s["ldap.enabled"] && s["ldap.clear"].length > 0,
        confirm: "delete the LDAP database the fresh server created?",
      }),

      step("load the LDAP data (slapadd)", (api) => exec(s["ldap.slapadd"], { stdin: { file: `${staging(api)}/${hoss(api).ldap!.file}` } }), {
        when: s["ldap.enabled"],
        confirm: replace("the LDAP data"),
      }),

      step("start the LDAP server", () => exec(s["ldap.start"]), { when: s["ldap.enabled"] }),

      step("put the snapshot into BACKUP_ROOT/.opensearch and register the repository", async (api) => {
        await exec(["cp", "-a", "--", `${staging(api)}/${hoss(api).search.dir}/.`, `${backupRoot(api)}/.opensearch`]);
        await httpJson(repo, { method: "PUT", body: { type: "fs", settings: { location: s["search.location"] } } });
      }),

      step("replace the search indices from the snapshot (delete, then _restore)", async (api) => {
        const { snapshot, indices } = hoss(api).search;
        for (const index of indices) await httpJson(`${search}/${encodeURIComponent(index)}`, { method: "DELETE", expect: [200, 404] });
        await httpJson(`${repo}/${snapshot}/_restore?wait_for_completion=true`, { method: "POST", body: { include_global_state: true }, retries: 0, timeoutMs: 30 * 60_000 });
        ctx.log.ok(`restored ${indices.length} indices from snapshot ${snapshot}: ${indices.join(", ")}`);
      }, { confirm: replace("the search indices") }),

      step("restart sync (make restart SERVICE_NAME=sync)", () => exec(s["server.restart-sync"], make), { when: s["server.restart-sync"].length > 0 }),

      step("restart core (make restart SERVICE_NAME=core)", () => exec(s["server.restart-core"], make), { when: s["server.restart-core"].length > 0 }),

      step("clean up: unregister the repository, remove BACKUP_ROOT/.restore and the copied snapshot", async (api) => {
        await httpJson(repo, { method: "DELETE", expect: [200, 404] });
        await exec(["rm", "-rf", "--", staging(api)]);
        await exec(["find", `${backupRoot(api)}/.opensearch`, "-mindepth", "1", "-delete"]);
      }),
    ];
  },

  report: (ctx, state) => {
    const h = state.hoss as HossMeta;
    return [
      `restored     Hoss ${h.server?.version} from ${ctx.args[0]} into ${expandHome(ctx.settings["config-dir"])}`,
      `database     ${ctx.settings["db.databases"].join(", ")}`,
      `ldap         ${ctx.settings["ldap.enabled"] ? `${h.ldap?.entries} entries` : "off"}`,
      `search       ${h.search.indices.length} indices from snapshot ${h.search.snapshot}`,
      `keys         ${h.keys.map((k) => k.path).join(", ")}`,
      "NOT RESTORED object-store data (not in the backup)",
    ];
  },
});

// ---- Hoss facts this recipe reads -------------------------------------------------------------

/** What hoss-backup recorded in the manifest (meta.hoss). */
interface HossMeta {
  endpoint: string;
  server?: { version: string; build: string };
  backupRoot: string;
  captured: string[];
  keys: { path: string; in: string }[];
  database: { container: string; dumps: Record<string, { file: string; bytes: number }> };
  ldap: { file: string; entries: number } | null;
  search: { dir: string; repository: string; snapshot: string; indices: string[] };
}

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

