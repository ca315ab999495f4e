// Hoss: what hoss-backup.ts and hoss-restore.ts share, declared once.
//
//   - `settings`: the one settings table of both recipes (flags, env LIFEBOAT_…, or the site
//     file recipes/hoss.site.example.yaml, which a test loads against it). `usedBy` marks the
//     keys only one of the recipes reads.
//   - `Meta`: what hoss-backup records in its manifest (`meta.hoss`) and hoss-restore reads;
//     tsc checks both recipes against this one type.
//   - `hossDirs`: the working dir and BACKUP_ROOT, as hossadm finds them.
//
// This file runs nothing: the recipes import it.
import { resolve } from "node:path";
import { AGE_SETTINGS, compressionSettings, offsiteSettings, dotenv, expandHome, type SettingSpecs, type SettingValues } from "../lib/mod.ts";

const BACKUP = ["hoss-backup"] as const;
const RESTORE = ["hoss-restore"] as const;

/** The settings of both Hoss recipes (see --help of each, and hoss.site.example.yaml). */
export const settings = {
  "config-dir": { describe: "the Hoss working directory (hossadm --config-dir)", default: "~/.hoss" },
  "backup-root": { describe: "BACKUP_ROOT; empty: backup: BACKUP_ROOT in CONFIG-DIR/.env, else CONFIG-DIR/backup; restore: the one the archive recorded" },
  endpoint: { describe: "the server's external endpoint, with scheme (hossadm --endpoint)", default: "http://localhost" },
  "config.exclude": { type: "list", describe: "entries of CONFIG-DIR not backed up (BACKUP_ROOT never is)", default: ["data"], usedBy: BACKUP },
  "config.keep": { type: "list", describe: "paths in CONFIG-DIR that may stay during a restore (object-store data the backup does not hold)", default: ["data/nas"], usedBy: RESTORE },
  "keys.paths": {
    type: "list",
    describe: "private keys: files or directories (absolute); Hoss keeps its signing key in the auth-secrets volume",
    default: ["/var/lib/docker/volumes/server_auth-secrets/_data"],
    usedBy: BACKUP,
  },
  "db.container": { describe: "the database container", default: "server_db_1" },
  "db.databases": { type: "list", describe: "databases to dump, and to restore", default: ["hoss_core", "hoss_auth"] },
  "db.user": { describe: "PostgreSQL role (POSTGRES_USER in .env); empty: the container's postgres user" },
  "db.password": { describe: "its password, when local connections in the container need one", secret: true },
  "ldap.enabled": { type: "boolean", describe: "Hoss runs its internal LDAP server: back up / restore its data", default: true },
  "ldap.slapcat": { type: "list", describe: "slapcat as argv, LDIF on stdout", default: ["docker", "exec", "server_ldap_1", "slapcat", "-n", "1"], usedBy: BACKUP },
  "ldap.stop": { type: "list", describe: "stops the LDAP server (slapadd needs it stopped), as argv", default: ["docker", "stop", "server_ldap_1"], usedBy: RESTORE },
  "ldap.clear": {
    type: "list",
    describe: "empties the LDAP database the fresh server bootstrapped, as argv (empty: skip)",
    default: ["docker", "run", "--rm", "--volumes-from", "server_ldap_1", "--entrypoint", "find", "osixia/openldap:1.4.0", "/var/lib/ldap", "-mindepth", "1", "-delete"],
    usedBy: RESTORE,
  },
  "ldap.slapadd": {
    type: "list",
    describe: "slapadd reading LDIF on stdin, as argv",
    default: ["docker", "run", "--rm", "-i", "--volumes-from", "server_ldap_1", "--user", "911:911", "--entrypoint", "slapadd", "osixia/openldap:1.4.0", "-n", "1"],
    usedBy: RESTORE,
  },
  "ldap.start": { type: "list", describe: "starts the LDAP server again, as argv", default: ["docker", "start", "server_ldap_1"], usedBy: RESTORE },
  "search.url": { describe: "OpenSearch URL as this host reaches it", default: "http://127.0.0.1:9200" },
  "search.repository": { describe: "snapshot repository name", default: "hoss-backup-repository" },
  "search.location": { describe: "BACKUP_ROOT/.opensearch as OpenSearch sees it (its path.repo)", default: "/mnt/snapshots" },
  "server.dir": { describe: "the server/ directory of the Hoss source repository: where the make commands run", usedBy: RESTORE },
  "server.start": { type: "list", describe: "starts the server, as argv (e.g. make,up,DETACH=true); empty: ask the operator and wait", usedBy: RESTORE },
  "server.timeout": { type: "number", describe: "seconds to wait for the server and OpenSearch to answer", default: 900, usedBy: RESTORE },
  "server.restart-sync": { type: "list", describe: "restarts the sync service, as argv (empty: skip)", default: ["make", "restart", "SERVICE_NAME=sync"], usedBy: RESTORE },
  "server.restart-core": { type: "list", describe: "restarts the core service, as argv (empty: skip)", default: ["make", "restart", "SERVICE_NAME=core"], usedBy: RESTORE },
  ...AGE_SETTINGS,
  ...compressionSettings(BACKUP),
  ...offsiteSettings(BACKUP),
} as const satisfies SettingSpecs;

/** What hoss-backup records in `manifest.meta.hoss` and hoss-restore reads. */
export interface Meta {
  endpoint: string;
  server?: { version: string; build: string };
  configDir: string;
  backupRoot: string;
  objectStore: string;
  captured: string[];
  config: { dir: string; excluded: string[] };
  keys: { path: string; in: string }[];
  database: { container: string; dumps: Record<string, { file: string; bytes: number }> };
  ldap: { file: string; entries: number } | null;
  search: { dir: string; repository: string; snapshot: string; indices: string[]; shards: number };
}

/** The manifest's recipe data of a hoss-backup archive. */
export type ArchiveMeta = { hoss: Meta };

/** The working dir and BACKUP_ROOT: the backup-root setting, else BACKUP_ROOT in .env, else CONFIG-DIR/backup. */
export function hossDirs(s: Pick<SettingValues<typeof settings>, "config-dir" | "backup-root">, sources: Record<string, string>): { configDir: string; backupRoot: string; backupRootFrom: string } {
  // Absolute (resolved against the working folder): find and cp read a folder named "-x" as an option.
  const configDir = resolve(expandHome(s["config-dir"]));
  const fromEnv = dotenv.loadSafe(`${configDir}/.env`).BACKUP_ROOT;
  const backupRoot = resolve(expandHome(s["backup-root"] || fromEnv || `${configDir}/backup`));
  const backupRootFrom = s["backup-root"] ? sources["backup-root"] : fromEnv ? `${configDir}/.env` : "the default";
  return { configDir, backupRoot, backupRootFrom };
}
