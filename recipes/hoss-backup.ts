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
//   - moving the archive to safe storage: it holds passwords and private keys; encrypt it
//     (age.passphrase or age.recipients) or move it over a channel you trust.
//   - reaching OpenSearch: Hoss does not publish port 9200; set search.url to where this host
//     can reach it (e.g. a published 127.0.0.1 port), and search.location to the path the
//     OpenSearch container sees BACKUP_ROOT/.opensearch at (Hoss mounts it at /mnt/snapshots).
//
// Settings (flags, env LIFEBOAT_*, or the --config site file; see --help and
// recipes/hoss.site.example.yaml, shared with hoss-restore): config-dir, backup-root, endpoint,
// db.container, db.databases, db.user, db.password, ldap.enabled, ldap.slapcat, keys.paths,
// config.exclude, search.url, search.repository, search.location, age.passphrase, age.recipients.
//
// --resume: .current is removed after every run, also a failed one, so a resumed backup would
// miss the parts staged before; the pack step checks they are all there and says to start over.
import {
  expandHome,
  path,
  dotenv,
  exec,
  formatBytes,
  httpJson,
  LifeboatError,
  packArchive,
  pgDump,
  probe,
  recipe,
  RefusedError,
  stamp,
  step,
  UsageError,
  verifyBackup,
  type Context,
  type StepApi,
} from "../lib/mod.ts";

const HOSS_BACKUP_SETTINGS = {
  "config-dir": { describe: "the Hoss working directory (hossadm --config-dir)", default: "~/.hoss" },
  "backup-root": { describe: "BACKUP_ROOT; empty: BACKUP_ROOT in CONFIG-DIR/.env, else CONFIG-DIR/backup" },
  endpoint: { describe: "the server's external endpoint, with scheme (hossadm --endpoint)", default: "http://localhost" },
  "db.container": { describe: "the database container", default: "server_db_1" },
  "db.databases": { type: "list", describe: "databases to dump", default: ["hoss_core", "hoss_auth"] as string[] },
  "db.user": { describe: "PostgreSQL role (POSTGRES_USER in .env); empty: the container's postgres user" },
  "db.password": { describe: "its password, when local connections in the container need one", secret: true },
  "ldap.enabled": { type: "boolean", describe: "Hoss runs its internal LDAP server: back up its data", default: true },
  "ldap.slapcat": { type: "list", describe: "slapcat as argv, LDIF on stdout", default: ["docker", "exec", "server_ldap_1", "slapcat", "-n", "1"] as string[] },
  "keys.paths": {
    type: "list",
    describe: "private keys: files or directories (absolute); Hoss keeps its signing key in the auth-secrets volume",
    default: ["/var/lib/docker/volumes/server_auth-secrets/_data"] as string[],
  },
  "config.exclude": { type: "list", describe: "entries of CONFIG-DIR not backed up (BACKUP_ROOT never is)", default: ["data"] as string[] },
  "search.url": { describe: "OpenSearch URL as this host reaches it", default: "http://127.0.0.1:9200" },
  "search.repository": { describe: "snapshot repository name", default: "hoss-backup-repository" },
  "search.location": { describe: "BACKUP_ROOT/.opensearch as OpenSearch sees it (its path.repo)", default: "/mnt/snapshots" },
  "age.passphrase": { describe: "encrypt the archive with age using this passphrase", secret: true },
  "age.recipients": { type: "list", describe: "encrypt the archive with age for these recipients (age1…)" },
} as const;

await recipe({
  name: "hoss-backup",
  description: "back up a running Hoss server (configuration, keys, database, LDAP, search index) into one verified archive",
  usage: "npx zx recipes/hoss-backup.ts --config site.yaml [--endpoint URL] [--dry-run] [--yes]",
  settings: HOSS_BACKUP_SETTINGS,
  ignoreSections: ["server", "config.keep", "ldap.stop", "ldap.clear", "ldap.slapadd", "ldap.start", "age.identity-file"],
  target: (ctx) => hossDirs(ctx).configDir,
  steps: (ctx) => {
    const s = ctx.settings;
    const { configDir, backupRoot, backupRootFrom } = hossDirs(ctx);
    const current = `${backupRoot}/.current`;
    const keys = s["keys.paths"].map(expandHome);
    const relative = keys.filter((k) => !k.startsWith("/"));
    if (relative.length) throw new UsageError(`keys.paths must be absolute: ${relative.join(", ")}`);
    if (backupRoot.startsWith(`${configDir}/`) && backupRoot.slice(configDir.length + 1).includes("/")) {
      throw new UsageError(`BACKUP_ROOT ${backupRoot} lies deeper inside ${configDir} than one level`, "put BACKUP_ROOT directly in the working dir (the default ~/.hoss/backup) or outside it");
    }
    const pg = { container: s["db.container"], user: s["db.user"] || undefined, password: s["db.password"] || undefined };
    const search = s["search.url"].replace(/\/+$/, "");
    const repo = `${search}/_snapshot/${encodeURIComponent(s["search.repository"])}`;

    return [
      step("say loudly: object-store data is NOT in this backup", () => {
        ctx.log.box([
          "OBJECT-STORE DATA IS NOT INCLUDED IN THIS BACKUP.",
          "This archive holds the server's state: configuration, keys, database,",
          "LDAP and search index. Protect the object store (minIO, S3 buckets)",
          "by other means, such as replication or bucket versioning.",
        ]);
      }),

      step("check BACKUP_ROOT exists and is not on NFS", async (api) => {
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
        api.state.startedAt = new Date().toISOString();
      }),

      step("prepare BACKUP_ROOT/.db, .opensearch, .current, backups", async () => {
        await exec(["rm", "-rf", "--", current]); // what a killed run left
        await exec(["mkdir", "-p", "--", `${backupRoot}/.db`, `${backupRoot}/.opensearch`, `${backupRoot}/backups`]);
        await exec(["mkdir", "-p", "-m", "700", "--", current, `${current}/config`, `${current}/keys`, `${current}/db`, `${current}/ldap`, `${current}/search`]);
      }),

      step("record the server version (GET ENDPOINT/core/v1/discover)", async (api) => {
        api.state.server = await httpJson<{ version: string; build: string }>(`${s.endpoint.replace(/\/+$/, "")}/core/v1/discover`, { retries: 2 }).catch((e: Error) => {
          throw new LifeboatError(`the server at ${s.endpoint} did not tell its version: ${e.message}`, { hint: "is Hoss running? off localhost, pass --endpoint https://your.hoss.host as for hossadm" });
        });
      }),

      step("copy the server configuration (CONFIG-DIR without data/ and BACKUP_ROOT)", async () => {
        const skip = [...s["config.exclude"].flatMap((name) => ["!", "-name", name]), "!", "-path", backupRoot];
        await exec(["find", configDir, "-mindepth", "1", "-maxdepth", "1", ...skip, "-exec", "cp", "-a", "-t", `${current}/config`, "--", "{}", "+"]);
        await exec(["chmod", `--reference=${configDir}`, "--", `${current}/config`]); // the restore gives CONFIG-DIR this mode
        await exec(["chown", `--reference=${configDir}`, "--", `${current}/config`]);
      }),

      step("copy the private keys (0600)", async (api) => {
        for (const key of keys) {
          await exec(["mkdir", "-p", "--", `${current}/keys${path.dirname(key)}`]);
          await exec(["cp", "-a", "-T", "--", key, `${current}/keys${key}`]);
        }
        await exec(["chmod", "-R", "u+rwX,go=", "--", `${current}/keys`]);
        api.state.keys = keys.map((path) => ({ path, in: `keys${path}` }));
      }),

      ...s["db.databases"].map((db) =>
        step(`dump database ${db} (pg_dump -Fc, via .db)`, async (api) => {
          const r = await pgDump(pg, db, `${backupRoot}/.db/${db}.dump`);
          await exec(["mv", "--", `${backupRoot}/.db/${db}.dump`, `${current}/db/${db}.dump`]);
          api.state[`db:${db}`] = r.bytes;
        })),

      step("export the LDAP data (slapcat)", async (api) => {
        await exec(s["ldap.slapcat"], { stdout: { file: `${current}/ldap/hoss.ldif`, mode: 0o600 } });
        api.state.ldapEntries = await countLdifEntries(ctx, `${current}/ldap/hoss.ldif`);
      }, { when: s["ldap.enabled"] }),

      step("snapshot the search index into BACKUP_ROOT/.opensearch", async (api) => {
        const name = `hoss-snap-${stamp().toLowerCase()}`;
        await httpJson(repo, { method: "PUT", body: { type: "fs", settings: { location: s["search.location"] } } });
        const r = await httpJson<{ snapshot: Snapshot }>(`${repo}/${name}?wait_for_completion=true`, {
          method: "PUT", body: { include_global_state: true }, retries: 0, timeoutMs: 30 * 60_000,
          dryRunResult: { snapshot: { snapshot: name, state: "SUCCESS", indices: [], shards: { total: 0 } } },
        });
        if (r.snapshot.state !== "SUCCESS") throw new LifeboatError(`snapshot ${name} ended ${r.snapshot.state}, not SUCCESS: ${JSON.stringify(r.snapshot.failures ?? [])}`, { hint: "check the OpenSearch log and that search.location is writable by OpenSearch" });
        api.state.snapshot = { name, indices: r.snapshot.indices, shards: r.snapshot.shards?.total ?? 0 };
      }),

      step("copy the snapshot into the backup, then drop it from the repository", async (api) => {
        await exec(["cp", "-a", "--", `${backupRoot}/.opensearch/.`, `${current}/search`]);
        await httpJson(`${repo}/${(api.state.snapshot as { name: string }).name}`, { method: "DELETE" });
      }),

      step("pack the archive into BACKUP_ROOT/backups (0600, manifest inside)", async (api) => {
        const startedAt = new Date(api.state.startedAt as string);
        const encrypt = { passphrase: s["age.passphrase"] || undefined, recipients: s["age.recipients"] };
        const encrypted = !!(encrypt.passphrase || encrypt.recipients.length);
        const archive = `${backupRoot}/backups/hoss-backup-${stamp(startedAt)}.tar.gz${encrypted ? ".age" : ""}`;
        if (ctx.settings.resume) await probe(["test", "-d", `${current}/config`]).catch(() => {
          throw new LifeboatError("a resumed backup lost the parts staged before (.current is cleaned after every run)", { hint: "run the backup again without --resume" });
        });
        const m = await packArchive(current, archive, { meta: { hoss: hossMeta(api) }, encrypt, startedAt });
        if (!encrypted || encrypt.passphrase) await verifyBackup(archive, { decrypt: encrypt });
        api.state.archive = archive;
        api.state.bytes = m.totals.bytes;
      }),
    ];

    /** What the manifest records for the restore: where things came from, what was captured, counts. */
    function hossMeta(api: StepApi) {
      const snap = api.state.snapshot as { name: string; indices: string[]; shards: number };
      return {
        endpoint: s.endpoint,
        server: api.state.server,
        configDir,
        backupRoot,
        objectStore: "NOT INCLUDED: protect it by replication or bucket versioning",
        captured: ["config", "keys", "database", ...(s["ldap.enabled"] ? ["ldap"] : []), "search"],
        config: { dir: "config", excluded: [...s["config.exclude"], backupRoot] },
        keys: api.state.keys,
        database: {
          container: pg.container,
          dumps: Object.fromEntries(s["db.databases"].map((db) => [db, { file: `db/${db}.dump`, bytes: api.state[`db:${db}`] }])),
        },
        ldap: s["ldap.enabled"] ? { file: "ldap/hoss.ldif", entries: api.state.ldapEntries } : null,
        search: { dir: "search", repository: s["search.repository"], snapshot: snap.name, indices: snap.indices, shards: snap.shards },
      };
    }
  },

  finally: async (ctx) => {
    const { backupRoot } = hossDirs(ctx);
    await exec(["rm", "-rf", "--", `${backupRoot}/.current`]);
    await exec(["find", `${backupRoot}/.db`, "-mindepth", "1", "-maxdepth", "1", "-name", "*.dump", "-delete"]).catch(() => {});
  },

  report: (ctx, state) => {
    if (ctx.dryRun) return ["object-store data is NOT included (it never is)"];
    const snap = state.snapshot as { indices: string[] };
    const server = state.server as { version: string };
    return [
      `archive      ${state.archive} (${formatBytes(state.bytes as number)} before compression)`,
      `server       Hoss ${server.version} at ${ctx.settings.endpoint}`,
      `database     ${ctx.settings["db.databases"].map((db) => `${db} ${formatBytes(state[`db:${db}`] as number)}`).join(", ")}`,
      `ldap         ${ctx.settings["ldap.enabled"] ? `${state.ldapEntries} entries` : "off"}`,
      `search       ${snap.indices.length} indices: ${snap.indices.join(", ")}`,
      `keys         ${(state.keys as unknown[]).length} path(s), 0600`,
      "NOT INCLUDED object-store data: protect it by replication or bucket versioning",
    ];
  },
});

// ---- Hoss facts this recipe reads -------------------------------------------------------------

interface Snapshot {
  snapshot: string;
  state: string;
  indices: string[];
  shards?: { total: number };
  failures?: unknown[];
}

/** The working dir and BACKUP_ROOT: the backup-root setting, else BACKUP_ROOT in .env, else CONFIG-DIR/backup. */
function hossDirs(ctx: Context<typeof HOSS_BACKUP_SETTINGS>): { configDir: string; backupRoot: string; backupRootFrom: string } {
  const configDir = expandHome(ctx.settings["config-dir"]);
  const fromEnv = dotenv.loadSafe(`${configDir}/.env`).BACKUP_ROOT;
  const backupRoot = expandHome(ctx.settings["backup-root"] || fromEnv || `${configDir}/backup`);
  const backupRootFrom = ctx.settings["backup-root"] ? ctx.sources["backup-root"] : fromEnv ? `${configDir}/.env` : "the default";
  return { configDir, backupRoot, backupRootFrom };
}



/** Number of entries in an LDIF file (lines starting "dn:"). */
async function countLdifEntries(ctx: Context, file: string): Promise<number> {
  if (ctx.dryRun) return 0;
  return Number(await probe(["grep", "-c", "-E", "^dn::? ", "--", file], { okCodes: [0, 1] }));
}

