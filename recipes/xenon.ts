// Xenon: what xenon-backup.ts and xenon-restore.ts share, declared once.
//
//   - `settings`: the one settings table of both recipes (flags, env LIFEBOAT_…, or the site
//     file recipes/xenon.site.example.yaml). `usedBy` marks the keys only one recipe reads.
//   - `Meta`: what xenon-backup records (in an archive's manifest, `meta.xenon`, or in a
//     DIRECTORY run's manifest, `meta`) and xenon-restore reads; tsc checks both against it.
//   - `LAYOUT`: the names inside an archive.
//
// This file runs nothing: the recipes import it.
import { AGE_SETTINGS, compressionSettings, OFFSITE_SETTINGS, offsiteSettings, type SettingSpecs, type SshTarget, UsageError, withoutCredentials } from "../lib/mod.ts";

const BACKUP = ["xenon-backup"] as const;
const RESTORE = ["xenon-restore"] as const;

/** The settings of both Xenon recipes (see --help of each, and xenon.site.example.yaml). */
export const settings = {
  url: { describe: "the Xenon host's base URL, as this host reaches it (the management API is URL/core/management)", default: "http://127.0.0.1:8000" },
  "index-link": { describe: "indexServiceLink: /core/document-index, or /core/in-memory-document-index for the in-memory index (no restart after a restore)", default: "/core/document-index" },
  factories: { type: "list", describe: "factories whose documents are counted at backup and compared after a restore", default: ["/core/examples"] },
  "auth.token": { describe: "auth token for the management API (sent as x-xenon-auth-token)", secret: true },
  "auth.user": { describe: "user for basic login (POST /core/authn/basic), with auth.password" },
  "auth.password": { describe: "password of auth.user", secret: true },
  "ssh.host": { describe: "the Xenon host over ssh when lifeboat runs elsewhere: file: zips and a DIRECTORY workspace's new files are fetched from it, staged restores copied to it (empty: lifeboat runs on the Xenon host)" },
  "ssh.port": { type: "number", describe: "its ssh port", default: 22 },
  "ssh.user": { describe: "ssh login user", default: "root" },
  "ssh.identity-file": { describe: "ssh private key file (default: ssh's own)" },
  "ssh.known-hosts": { describe: "known_hosts file; with it, the host key is checked strictly" },
  "host-staging": { describe: "with ssh.host: a folder on the Xenon host where its zips are written and restores staged", default: "/var/tmp/lifeboat-xenon" },
  "backup.type": { describe: "ZIP (a file: zip on the host), DIRECTORY (incremental, shipped to directory.store) or STREAM (ranged PUTs to lifeboat's receiver)", default: "ZIP", usedBy: BACKUP },
  "backups.dir": { describe: "folder for lifeboat archives (ZIP and STREAM backups)", default: "/var/backups/xenon" },
  staging: { describe: "a folder here for zips and staged restores (on the Xenon host too, unless ssh.host is set)", default: "/var/tmp/lifeboat-xenon" },
  "directory.workspace": { describe: "DIRECTORY: the workspace Xenon backs up into (the runbook's /backup), on the Xenon host (with ssh.host: listed and fetched over ssh)", default: "/var/backups/xenon-workspace", usedBy: BACKUP },
  "directory.store": { describe: "DIRECTORY: the backup store folder (files/CHAIN/… and runs/RUN.json)", default: "/var/backups/xenon-store" },
  "directory.full": { type: "boolean", describe: "DIRECTORY: the daily full backup: clear the workspace first and start a new chain", default: false, usedBy: BACKUP },
  "directory.keep-runs": { type: "number", describe: "DIRECTORY: keep the newest this many runs in the store (0: keep all); files a kept run needs are never removed", default: 0, usedBy: BACKUP },
  "directory.from": { describe: "DIRECTORY: restore the run from this off-site copy of the store (s3://BUCKET/PREFIX, ssh://USER@HOST:PORT/DIR or a path) instead of directory.store", usedBy: RESTORE },
  ...offsiteSettings(BACKUP),
  "offsite.to": { ...OFFSITE_SETTINGS["offsite.to"], describe: "off-site destinations (s3://BUCKET/PREFIX, ssh://USER@HOST:PORT/DIR, or a path). ZIP and STREAM: each new archive is copied there and verified, then offsite.keep-local and the off-site keep-* retention apply. DIRECTORY: each run goes as one archive of the files it shipped plus its manifest; directory.keep-runs applies there too, by whole chains", usedBy: BACKUP },
  "stream.listen": { describe: "STREAM: address lifeboat's receiver listens on", default: "127.0.0.1", usedBy: BACKUP },
  "stream.port": { type: "number", describe: "STREAM: its port (0: any free one)", default: 0, usedBy: BACKUP },
  "stream.url": { describe: "STREAM: how the Xenon host reaches the receiver, http://HOST:PORT (empty: http://LISTEN:PORT); the path is a random one per run", usedBy: BACKUP },
  "stream.idle-timeout": { type: "number", describe: "STREAM: give up when no chunk came for this many seconds", default: 60, usedBy: BACKUP },
  deliver: { describe: "how the restore reaches the host: file (a file: zip or directory in staging) or http (lifeboat serves the zip with Range support)", default: "file", usedBy: RESTORE },
  "http.listen": { describe: "http delivery: address lifeboat's file server listens on", default: "127.0.0.1", usedBy: RESTORE },
  "http.port": { type: "number", describe: "http delivery: its port (0: any free one)", default: 0, usedBy: RESTORE },
  "http.url": { describe: "http delivery: how the Xenon host reaches it, http://HOST:PORT (empty: http://LISTEN:PORT); the path is a random one per run", usedBy: RESTORE },
  at: { describe: 'point in time: drop every document version updated after it (timeSnapshotBoundaryMicros), e.g. "2026-11-21 10:00:00Z"', usedBy: RESTORE },
  restart: { type: "list", describe: "restarts the host after the restore, as argv (e.g. systemctl,restart,xenon); skipped for the in-memory index", default: ["systemctl", "restart", "xenon"], usedBy: RESTORE },
  "allow-existing": { type: "boolean", describe: "restore into a host that already holds documents (a zip is added to its index, old documents stay); refused otherwise (exit 5)", default: false, usedBy: RESTORE },
  "restart-timeout": { type: "number", describe: "seconds to wait for the host to answer after the restart", default: 300, usedBy: RESTORE },
  ...AGE_SETTINGS,
  ...compressionSettings(BACKUP),
} as const satisfies SettingSpecs;

/** The Xenon host as an ssh target, or null when lifeboat runs on it (ssh.host empty). */
export function sshTarget(s: { "ssh.host"?: string; "ssh.port": number; "ssh.user": string; "ssh.identity-file"?: string; "ssh.known-hosts"?: string }): SshTarget | null {
  if (!s["ssh.host"]) return null;
  return { host: s["ssh.host"], port: s["ssh.port"], user: s["ssh.user"] || undefined, identityFile: s["ssh.identity-file"] || undefined, knownHostsFile: s["ssh.known-hosts"] || undefined };
}

/** The restore's staging folder name for a host: one per URL (the recipe's lock is too), so a resumed run finds the failed run's; never with the URL's credentials. */
export function restoreStagingName(url: string): string {
  return `restore-${withoutCredentials(url).replace(/^[a-z]+:\/\//i, "").replace(/[^A-Za-z0-9.-]+/g, "_")}`;
}

/** Folders Xenon is given as file: URIs must be absolute: a relative one would be resolved on this machine, not on the host. */
export function requireAbsolute(s: Record<string, unknown>, keys: string[]): void {
  for (const k of keys) {
    const v = s[k];
    if (typeof v === "string" && v !== "" && !v.startsWith("/")) throw new UsageError(`${k} must be an absolute path, not ${JSON.stringify(v)}`, "Xenon is given it as a file: URI");
  }
}

/** The in-memory index: a restart would wipe it. */
export const IN_MEMORY_INDEX = "/core/in-memory-document-index";

/** The off-site run archives of a DIRECTORY store: xenon-store-CHAIN-RUN.tar.gz. */
export const STORE_LABEL = "xenon-store";

/** Names inside a xenon-backup archive. */
export const LAYOUT = { zip: "xenon-backup.zip" } as const;

/** What xenon-backup records and xenon-restore reads. */
export interface Meta {
  url: string;
  /** The host id at backup time: documents keep it as documentOwner (start a new node with --id=…). */
  hostId: string;
  type: "ZIP" | "DIRECTORY" | "STREAM";
  indexLink: string;
  /** Document counts of the configured factories at backup time. */
  counts: Record<string, number>;
  /** The index's files in this backup (name, size; crc32 for zips). */
  files: { name: string; size: number; crc32?: number }[];
  /** When the backup PATCH was sent (ISO). */
  takenAt: string;
}

/** The manifest's recipe data of a xenon-backup archive. */
export type ArchiveMeta = { xenon: Meta };
