// Deis v1: what deis-backup.ts and deis-restore.ts share, declared once.
//
//   - `settings`: the one settings table of both recipes. Each key is a flag, an env var
//     (LIFEBOAT_…) and a key of the site file (recipes/deis.site.example.yaml, which a test
//     loads against this table). `usedBy` marks the keys only one of the recipes reads.
//   - `Meta`: what deis-backup records in its archive's manifest (`meta.deis`) and
//     deis-restore takes in; tsc checks both recipes against this one type.
//   - `LAYOUT`: where things sit inside the archive.
//
// This file runs nothing: the recipes import it.
import { AGE_SETTINGS, compressionSettings, offsiteSettings, type SettingSpecs } from "../lib/mod.ts";

const BACKUP = ["deis-backup"] as const;
const RESTORE = ["deis-restore"] as const;

/** The settings of both Deis recipes (see --help of each, and deis.site.example.yaml). */
export const settings = {
  "backups.dir": { describe: "folder for archives (and the staging dirs while a recipe runs)", default: "/var/backups/lifeboat" },
  "gateway.endpoint": { describe: "S3 URL of deis-store-gateway (the runbook's host_base), e.g. http://deis-store.example.com", required: true },
  "gateway.access-key": { describe: "gateway access key (backup: empty → deisctl config store get gateway/accessKey; restore: used when platform.read-keys is off)", secret: true },
  "gateway.secret-key": { describe: "gateway secret key (as gateway.access-key)", secret: true },
  "gateway.region": { describe: "signing region for the gateway", default: "us-east-1" },
  "gateway.buckets": { type: "list", describe: "buckets to back up (a restore uploads every bucket in the archive)", default: ["db_wal", "registry"], usedBy: BACKUP },
  "gateway.concurrency": { type: "number", describe: "S3 transfers in flight (lower it if the gateway is overwhelmed)", default: 8 },
  "deisctl.command": { type: "list", describe: "how to run deisctl, as argv (e.g. /opt/bin/deisctl)", default: ["deisctl"] },
  "deisctl.tunnel": { describe: "DEISCTL_TUNNEL for deisctl on a remote machine (host[:port])" },
  "store.host": { describe: "a CoreOS machine holding the store volume (ssh)", required: true },
  "store.port": { type: "number", describe: "its ssh port", default: 22 },
  "store.user": { describe: "ssh login user", default: "core" },
  "store.identity-file": { describe: "ssh private key file (default: ssh's own)" },
  "store.known-hosts": { describe: "known_hosts file; with it, host keys are checked strictly" },
  "store.sudo": { type: "boolean", describe: "run tar under sudo -n on the host (the runbook's sudo tar)", default: true },
  "store.dir": { describe: "the store volume's directory on the host (a restore creates it when missing)", default: "/var/lib/deis/store" },
  "database.container": { describe: "the database container", default: "deis-database" },
  "database.exec-user": { describe: "user pg_dumpall / psql run as inside it (the runbook's sudo -u postgres)", default: "postgres" },
  "database.docker-host": { describe: "docker daemon running the container (e.g. ssh://core@deis-1); empty: the local docker" },
  ...AGE_SETTINGS,
  ...compressionSettings(BACKUP),
  ...offsiteSettings(BACKUP),
  "platform.install": { type: "list", describe: "deisctl arguments that install the platform; empty: skip", default: ["install", "platform"], usedBy: RESTORE },
  "platform.store-units": { type: "list", describe: "store units started one by one with `deisctl start UNIT`; empty: skip", default: ["store-monitor", "store-daemon", "store-metadata", "store-gateway@1", "store-volume"], usedBy: RESTORE },
  "platform.router-units": { type: "list", describe: "router units started with `deisctl start UNIT`; empty: skip", default: ["router@1"], usedBy: RESTORE },
  "platform.router-config": { type: "list", describe: "KEY=VALUE for `deisctl config router set`; empty: skip", default: ["bodySize=100m"], usedBy: RESTORE },
  "platform.read-keys": { type: "boolean", describe: "read the new gateway keys with `deisctl config store get gateway/…`", default: true, usedBy: RESTORE },
  "platform.start": { type: "list", describe: "deisctl arguments that start the whole platform; empty: skip", default: ["start", "platform"], usedBy: RESTORE },
  "restore.work-dir": { describe: "where the archive is unpacked (default: backups.dir/.deis-restore-staging-HASH, one per gateway.endpoint)", usedBy: RESTORE },
  "restore.load-dump": { type: "boolean", describe: "load dump_all.sql into an empty database container after the platform starts", default: false, usedBy: RESTORE },
  "restore.wait-seconds": { type: "number", describe: "how long to wait for the database container to accept connections", default: 600, usedBy: RESTORE },
  "controller.resave": { describe: "re-save the controller's models (auto: when the container exists)", choices: ["auto", "on", "off"], default: "auto", usedBy: RESTORE },
  "controller.container": { describe: "the controller container", default: "deis-controller", usedBy: RESTORE },
  "controller.command": { type: "list", describe: "the shell the snippet is fed to, run in controller.workdir", default: ["./manage.py", "shell"], usedBy: RESTORE },
  "controller.workdir": { describe: "working directory inside the container (the runbook's cd /app)", default: "/app", usedBy: RESTORE },
  "controller.etcd": { describe: "ETCD=HOST:PORT for manage.py (the runbook's export ETCD=172.17.8.100:4001); empty: the container's own", usedBy: RESTORE },
  "controller.docker-host": { describe: "docker daemon running the controller (e.g. ssh://core@deis-2); empty: the local docker", usedBy: RESTORE },
} as const satisfies SettingSpecs;

/** Where things sit inside a deis-backup archive. */
export const LAYOUT = {
  /** buckets/<bucket>/… : the objects, plus the S3 index (ETags, part sizes). */
  buckets: "buckets",
  /** The store volume as a tar, owners and modes as on the host. */
  storeTar: "store/store_file_backup.tar",
  /** pg_dumpall of deis-database. */
  dump: "database/dump_all.sql",
} as const;

/** What deis-backup records in `manifest.meta.deis` and deis-restore reads. */
export interface Meta {
  gateway: { endpoint: string; region: string };
  buckets: Record<string, { objects: number; bytes: number }>;
  store: { host: string; port: number; user?: string; dir: string; file: string; tarBytes: number; changedWhileRead: string[] };
  database: { container: string; dockerHost: string; file: string; dumpBytes: number };
}

/** The manifest's recipe data of a deis-backup archive. */
export type ArchiveMeta = { deis: Meta };
