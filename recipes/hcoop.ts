// HCoop (OpenAFS volume dumps): what hcoop-backup.ts, hcoop-restore.ts and hcoop-list.ts share.
//
//   - `settings`: the one settings table of the three recipes (flags, env LIFEBOAT_…, or the
//     site file recipes/hcoop.site.example.yaml). `usedBy` marks keys only one recipe reads.
//   - `DayManifest`: what hcoop-backup writes beside each day's dumps and the restore takes in.
//   - `LAYOUT`: where a day's files sit (the runbook's YYYY.MM.DD-$VOLNAME.dump.gz.aescrypt names).
//   - the weekly chain: which full an incremental needs, and which days retention must keep.
//
//   - the remote repository (offsite.to: s3://, ssh:// or a path; lib/mirror.ts over lib/offsite.ts):
//     its days, and fetching a file or a chain.
//
// Besides those fetches, this file holds pure functions over manifests: the recipes import it.
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { AGE_SETTINGS, ageOptions, type MariaDbServer, mirrorGet, mirrorList, mirrorRead, OFFSITE_SETTINGS, captureToFile, fileSha256, type OffsiteOptions, LifeboatError, readAgeIdentities, UsageError, type AfsCell, type PgLocal, type Seal, type SettingSpecs, type SettingValues } from "../lib/mod.ts";

const BACKUP = ["hcoop-backup"] as const;
const RESTORE = ["hcoop-restore"] as const;
const DB = ["hcoop-backup", "hcoop-restore-db"] as const;
const PRUNE = ["hcoop-prune"] as const;
const VOS = ["hcoop-backup", "hcoop-restore"] as const;

/** The settings of the HCoop recipes (see --help of each, and hcoop.site.example.yaml). */
export const settings = {
  "backups.dir": { describe: "folder of the day folders YYYY.MM.DD/ (the runbook's /vicepa/hcoop-backups)", default: "/vicepa/hcoop-backups" },
  "afs.server": { describe: "the file server holding the volumes (vos -server; the runbook's deleuze)", required: true },
  "afs.partition": { describe: "its partition (vos -partition)", default: "a" },
  "afs.cell": { describe: "vos -cell (default: ThisCell)" },
  "afs.auth": { describe: "localauth (root on a file server, the runbook's way), noauth (the lab) or tokens", choices: ["localauth", "noauth", "tokens"], default: "localauth" },
  "afs.prefix": { type: "list", describe: "argv before every vos command (e.g. the lab's nsenter …); empty: none" },
  "afs.stall-timeout": { type: "number", describe: "seconds a vos dump may send nothing before it is stopped as failed (a volserver that died mid-dump leaves vos waiting for minutes); generous, because an incremental of a big volume is quiet while the server looks for changed files; 0: wait as long as vos does", default: 300, usedBy: BACKUP },
  "afs.busy-wait": { type: "number", describe: "seconds to wait for a volume that is busy ('VOLSER: volume is busy': the volserver still holds a transaction of an interrupted vos dump or restore), its vos backupsys/dump/restore retried with backoff; 0: fail at once", default: 900, usedBy: VOS },
  "volumes.prefixes": { type: "list", describe: "vos backupsys -prefix values, and the volumes dumped", default: ["user.", "db.", "mail."] },
  "volumes.exclude": { describe: "regular expression of volume names never dumped (RsyncNet's not-backed-up)", default: "not-backed-up" },
  "schedule.full-day": { describe: "the first day of the week: a full dump of every volume", choices: ["sun", "mon", "tue", "wed", "thu", "fri", "sat"], default: "sun", usedBy: BACKUP },
  "clock.today": { describe: "pretend today is this date (YYYY-MM-DD): drills and catch-up runs", usedBy: BACKUP },
  "encryption.kind": { describe: "age (default) or ccrypt (the runbook's .aescrypt files, with encryption.key-file)", choices: ["age", "ccrypt"], default: "age" },
  "encryption.key-file": { describe: "ccrypt key file (the runbook's /etc/backup-encryption-key)", default: "/etc/backup-encryption-key" },
  ...AGE_SETTINGS,
  "postgres.enabled": { type: "boolean", describe: "dump the site's PostgreSQL too: globals + one pg_dump per database, sealed as DATE-databases.tar.gz.ENC", default: false, usedBy: BACKUP },
  "postgres.databases": { type: "list", describe: "databases to dump; empty: every database but the templates", usedBy: BACKUP },
  "postgres.host": { describe: "PostgreSQL host or socket dir (empty: the local socket)", usedBy: DB },
  "postgres.port": { type: "number", describe: "PostgreSQL port", default: 5432, usedBy: DB },
  "postgres.user": { describe: "PostgreSQL role (a superuser: the globals and every database)", default: "postgres", usedBy: DB },
  "postgres.password": { describe: "its password (env LIFEBOAT_POSTGRES_PASSWORD, --postgres.password-file F); empty: none or ~/.pgpass", secret: true, usedBy: DB },
  "postgres.bin-dir": { describe: "where pg_dump, pg_dumpall and pg_restore are (empty: PATH)", usedBy: DB },
  "mariadb.enabled": { type: "boolean", describe: "dump the site's MariaDB/MySQL too: users and grants + one mariadb-dump per database, into the same databases archive (mariadb/)", default: false, usedBy: BACKUP },
  "mariadb.databases": { type: "list", describe: "MariaDB databases to dump; empty: every database but information_schema, performance_schema, mysql, sys", usedBy: BACKUP },
  "mariadb.host": { describe: "MariaDB host (empty: the option file's, else the local socket)", usedBy: DB },
  "mariadb.port": { type: "number", describe: "MariaDB TCP port (0: the option file's or the socket)", default: 0, usedBy: DB },
  "mariadb.socket": { describe: "MariaDB socket path (instead of host and port)", usedBy: DB },
  "mariadb.user": { describe: "MariaDB account (every database, SHOW GRANTS of every user; empty: the option file's)", usedBy: DB },
  "mariadb.password": { describe: "its password (env LIFEBOAT_MARIADB_PASSWORD, --mariadb.password-file F); written only into a private option file, never on argv", secret: true, usedBy: DB },
  "mariadb.defaults-file": { describe: "an option file with a [client] section holding the credentials (e.g. /etc/mysql/debian.cnf); the preferred way", usedBy: DB },
  "mariadb.bin-dir": { describe: "where mariadb-dump and mariadb are (empty: PATH)", usedBy: DB },
  "restore.engine": { describe: "hcoop-restore-db: which server's dump DATABASE names when both PostgreSQL and MariaDB have one by that name", choices: ["", "postgres", "mariadb"], default: "", usedBy: DB },
  "offsite.to": { type: "list", describe: "the remote repository: s3://BUCKET/PREFIX (offsite.s3.*), ssh://USER@HOST:PORT/DIR (HCoop's rsync.net) or a local path; each day folder is copied there file by file, each verified; restores and hcoop-get fetch from the first", default: [] },
  "offsite.s3.endpoint": OFFSITE_SETTINGS["offsite.s3.endpoint"],
  "offsite.s3.region": OFFSITE_SETTINGS["offsite.s3.region"],
  "offsite.s3.access-key": OFFSITE_SETTINGS["offsite.s3.access-key"],
  "offsite.s3.secret-key": OFFSITE_SETTINGS["offsite.s3.secret-key"],
  "offsite.ssh.identity-file": OFFSITE_SETTINGS["offsite.ssh.identity-file"],
  "offsite.ssh.known-hosts": OFFSITE_SETTINGS["offsite.ssh.known-hosts"],
  "retention.weeks": { type: "number", describe: "hcoop-prune keeps the newest N weekly chains (a full and its incrementals) and every full a kept day needs, locally and at offsite.to; 0: keep all", default: 0, usedBy: PRUNE },
  "restore.suffix": { describe: "suffix of the restored copy's name (NAME.restored must fit in 22 characters)", default: ".restored", usedBy: RESTORE },
  "restore.mount-command": { type: "list", describe: "argv run after the restore to mount it, {name} replaced (e.g. fs mkm /afs/hcoop.net/.old/tmp-mount {name}); empty: skip", usedBy: RESTORE },
  "restore.release-command": { type: "list", describe: "argv run after mounting (e.g. vos release old -localauth); empty: skip", usedBy: RESTORE },
  "restore.replace": { type: "boolean", describe: "replace the live volume with the restored copy (vos remove NAME; vos rename NAME.restored NAME)", default: false, usedBy: RESTORE },
  "restore.remove-restored": { type: "boolean", describe: "remove the restored copy at the end (vos remove -id NAME.restored)", default: false, usedBy: RESTORE },
} as const satisfies SettingSpecs;

export type HcoopSettings = SettingValues<typeof settings>;

/** Where a day's files sit: backups.dir/YYYY.MM.DD/YYYY.MM.DD-NAME…. */
export const LAYOUT = {
  dayDir: (root: string, date: string) => `${root}/${date}`,
  dumpName: (date: string, volume: string, suffix: string) => `${date}-${volume}.dump${suffix}`,
  manifestName: (date: string) => `${date}-manifest.json`,
  /** The runbook's YYYY.MM.DD-databases.tar.gz.aescrypt (.tar.gz.age with age). */
  databasesName: (date: string, suffix: string) => `${date}-databases.tar${suffix}`,
  /** Inside the databases tar: the globals, and one custom-format dump per database (name percent-encoded). */
  globalsFile: "globals.sql",
  dbFile: (name: string) => `${encodeURIComponent(name)}.dump`,
  /** Inside the databases tar (flat, as sealTreeToFile packs): MariaDB's users and grants ("+" never comes out of
   *  encodeURIComponent, so no database's file can take this name), and one SQL dump per database (name percent-encoded). */
  mariadbUsersFile: "mariadb-users+grants.sql",
  mariadbFile: (name: string) => `mariadb-${encodeURIComponent(name)}.sql`,
  /** Staging of the database dumps while the backup runs (removed after sealing). */
  dbStage: (root: string, date: string) => `${root}/.databases-${date}`,
  /** The runbook's restored/YYYY.MM.DD-db, where the databases archive is unpacked. */
  restoredDb: (root: string, date: string) => `${root}/restored/${date}-db`,
} as const;

/** One dump file of a day. */
export interface DumpEntry {
  volume: string;
  kind: "full" | "incremental";
  /** The day of the full dump this file's chain starts with (itself for a full). */
  chain: string;
  /** vos dump -time: 0 for a full, the full's clone time for an incremental. */
  since: number;
  /** Clone time of the .backup volume dumped (vos examine creationDate). */
  cloneTime: number;
  bytes: number;
  sha256: string;
  plainBytes: number;
  /** KiB the volume used (vos listvol diskused). */
  diskused: number;
}

/** What hcoop-backup records in DATE/DATE-manifest.json and the restore reads. */
export interface DayManifest {
  format: "lifeboat-hcoop/1";
  date: string;
  startedAt: string;
  finishedAt: string;
  encryption: "age" | "ccrypt";
  /** File name → entry. */
  files: Record<string, DumpEntry>;
  /** Volumes on the server that were left out (pattern or type). */
  excluded: string[];
  /** The databases archive (postgres.enabled), absent otherwise. */
  databases?: DatabasesEntry;
}

/** DATE-databases.tar.gz.ENC: PostgreSQL's globals and one pg_dump -Fc per database; MariaDB's users and one mariadb-dump per database. */
export interface DatabasesEntry {
  file: string;
  bytes: number;
  sha256: string;
  plainBytes: number;
  /** PostgreSQL server dumped (host:port, no credentials); "" when postgres.enabled was off. */
  server: string;
  /** The globals (roles, tablespaces: pg_dumpall --globals-only) inside the tar ("" without PostgreSQL). */
  globals: string;
  /** PostgreSQL database → its file inside the tar and the dump's bytes. */
  dumps: Record<string, { file: string; bytes: number }>;
  /** MariaDB (mariadb.enabled): the server, the users-and-grants file, and database → file and bytes. */
  mariadb?: { server: string; users: string; dumps: Record<string, { file: string; bytes: number }> };
}

/** The cell from the settings. */
export function cellOf(s: Pick<HcoopSettings, "afs.server" | "afs.partition" | "afs.cell" | "afs.auth" | "afs.prefix">): AfsCell {
  return { server: s["afs.server"], partition: s["afs.partition"], cell: s["afs.cell"] || undefined, auth: s["afs.auth"] as AfsCell["auth"], prefix: s["afs.prefix"] };
}

/** The PostgreSQL server from the settings (client programs on this host). */
export function pgOf(s: Pick<HcoopSettings, "postgres.host" | "postgres.port" | "postgres.user" | "postgres.password" | "postgres.bin-dir">): PgLocal {
  return { host: s["postgres.host"] || undefined, port: s["postgres.port"], user: s["postgres.user"] || undefined, password: s["postgres.password"] || undefined, binDir: s["postgres.bin-dir"] || undefined };
}

/** The MariaDB server from the settings (client programs on this host). */
export function mariadbOf(s: Pick<HcoopSettings, "mariadb.host" | "mariadb.port" | "mariadb.socket" | "mariadb.user" | "mariadb.password" | "mariadb.defaults-file" | "mariadb.bin-dir">): MariaDbServer {
  return {
    host: s["mariadb.host"] || undefined, port: s["mariadb.port"] || undefined, socket: s["mariadb.socket"] || undefined, user: s["mariadb.user"] || undefined,
    password: s["mariadb.password"] || undefined, defaultsFile: s["mariadb.defaults-file"] || undefined, binDir: s["mariadb.bin-dir"] || undefined,
  };
}

/** The encryption from the settings (age by default, ccrypt with the key file). */
export function sealOf(s: HcoopSettings & Record<string, unknown>, reading = false): Seal {
  if (s["encryption.kind"] === "ccrypt") {
    if (!existsSync(s["encryption.key-file"])) throw new UsageError(`no ccrypt key file ${s["encryption.key-file"]}`, "set encryption.key-file");
    return { kind: "ccrypt", keyFile: s["encryption.key-file"] };
  }
  const age = ageOptions(s as Parameters<typeof ageOptions>[0]);
  if (reading && s["age.identity-file"]) age.identities = readAgeIdentities(s["age.identity-file"]);
  if (!age.passphrase && !age.recipients?.length && !age.identities?.length) throw new UsageError("age encryption needs age.passphrase (or -file) or age.recipients", "or set encryption.kind: ccrypt with encryption.key-file");
  return { kind: "age", age };
}

/** YYYY.MM.DD of a date (local calendar day, as HCoop's cron named them). */
export function dayName(d: Date): string {
  return `${d.getFullYear()}.${String(d.getMonth() + 1).padStart(2, "0")}.${String(d.getDate()).padStart(2, "0")}`;
}

/** Today, or the clock.today override (YYYY-MM-DD or YYYY.MM.DD). */
export function today(override: string): Date {
  if (!override) return new Date();
  const m = /^(\d{4})[-.](\d{2})[-.](\d{2})$/.exec(override);
  if (!m) throw new UsageError(`clock.today ${JSON.stringify(override)} is not YYYY-MM-DD`);
  return new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]), 12);
}

/** The day folders with a manifest, oldest first. */
export function listDays(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root).filter((n) => /^\d{4}\.\d{2}\.\d{2}$/.test(n) && existsSync(`${root}/${n}/${LAYOUT.manifestName(n)}`)).sort();
}

/** A day's manifest (LifeboatError naming the day when it is missing or unreadable). */
export function readDay(root: string, date: string): DayManifest {
  const f = `${LAYOUT.dayDir(root, date)}/${LAYOUT.manifestName(date)}`;
  if (!existsSync(f)) throw new LifeboatError(`no backup of ${date} in ${root} (no ${f})`, { hint: "see hcoop-list for the dates there are, or fetch the day (backup-manager get)" });
  const m = JSON.parse(readFileSync(f, "utf8")) as DayManifest;
  if (m.format !== "lifeboat-hcoop/1") throw new LifeboatError(`${f} is not an hcoop-backup manifest`);
  return m;
}

/** The file of a volume in a day's manifest. */
export function fileOf(m: DayManifest, volume: string): [string, DumpEntry] | undefined {
  return Object.entries(m.files).find(([, e]) => e.volume === volume);
}

/** What the restore feeds to vos restore, in order: the full, then the day's incremental. */
export interface ChainLink {
  date: string;
  file: string;
  path: string;
  entry: DumpEntry;
}

/**
 * The chain that restores VOLUME as of DATE: its full, then (when DATE's dump is incremental)
 * DATE's incremental. Names what is missing: the day, the volume or the full's file.
 */
export function resolveChain(root: string, date: string, volume: string): ChainLink[] {
  const day = readDay(root, date);
  const hit = fileOf(day, volume);
  if (!hit) throw new LifeboatError(`${date} has no dump of ${volume}`, { hint: `its volumes: ${[...new Set(Object.values(day.files).map((e) => e.volume))].join(", ") || "none"}` });
  const link = (d: string, [file, entry]: [string, DumpEntry]): ChainLink => ({ date: d, file, path: `${LAYOUT.dayDir(root, d)}/${file}`, entry });
  const chain = [link(date, hit)];
  if (hit[1].kind === "incremental") {
    const full = fileOf(readDay(root, hit[1].chain), volume);
    if (!full || full[1].kind !== "full") throw new LifeboatError(`the full dump of ${volume} from ${hit[1].chain}, which ${date}'s incremental needs, is missing`);
    chain.unshift(link(hit[1].chain, full));
  }
  for (const l of chain) {
    if (!existsSync(l.path)) throw new LifeboatError(`${l.file} (the ${l.entry.kind} of ${volume} from ${l.date}) is missing from ${l.path}`, { hint: "fetch it from the remote repository (backup-manager get)" });
  }
  return chain;
}

/** Days of the week, as schedule.full-day spells them. */
export const WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"] as const;

/**
 * Full or incremental for one volume today: full on the week's first day, when no full of this
 * week exists, or when the full's file is gone (a broken chain); otherwise incremental since the
 * full's clone time (the runbook's "incremental dump from the weekly full dump").
 */
export function planVolume(root: string, date: Date, fullDay: string, volume: string): { kind: "full" } | { kind: "incremental"; chain: string; since: number } {
  if (WEEKDAYS[date.getDay()] === fullDay) return { kind: "full" };
  const todayName = dayName(date);
  for (const d of listDays(root).reverse()) {
    if (d >= todayName) continue;
    const daysAgo = Math.round((date.getTime() - today(d.replaceAll(".", "-")).getTime()) / 86400000);
    if (daysAgo >= 7) break;
    const hit = fileOf(readDay(root, d), volume);
    if (!hit) continue;
    const [file, e] = hit;
    const fullDate = e.kind === "full" ? d : e.chain;
    const full = e.kind === "full" ? hit : fileOf(readDay(root, fullDate), volume);
    if (!full || !existsSync(`${LAYOUT.dayDir(root, fullDate)}/${full[0]}`)) return { kind: "full" };
    void file;
    return { kind: "incremental", chain: fullDate, since: full[1].cloneTime };
  }
  return { kind: "full" };
}

/** The day's manifest file as a mirror entry (name, sha256, bytes). */
export async function manifestFile(root: string, date: string): Promise<{ name: string; sha256: string; bytes: number }> {
  const name = LAYOUT.manifestName(date);
  const path = `${LAYOUT.dayDir(root, date)}/${name}`;
  return { name, ...(existsSync(path) ? await fileSha256(path) : { sha256: "", bytes: 0 }) }; // not there: a dry run
}

/** Every local day's manifest, oldest first. */
export function readDays(root: string): DayManifest[] {
  return listDays(root).map((d) => readDay(root, d));
}

/**
 * Retention by weekly chain: keep every day from the start of the newest `weeks` chains on,
 * plus every day holding a full that a kept day's incremental needs (never a needed full);
 * drop the rest. weeks 0: keep all.
 */
export function planRetention(days: readonly DayManifest[], weeks: number): { keep: string[]; drop: string[] } {
  const sorted = [...days].sort((a, b) => a.date.localeCompare(b.date));
  const all = sorted.map((d) => d.date);
  if (weeks <= 0) return { keep: all, drop: [] };
  const starts = [...new Set(sorted.flatMap((d) => Object.values(d.files).map((e) => e.chain)))].sort();
  const cutoff = starts.slice(-weeks)[0] ?? "";
  const keep = new Set(all.filter((d) => d >= cutoff));
  for (let grew = true; grew; ) {
    grew = false;
    for (const d of sorted) {
      if (!keep.has(d.date)) continue;
      for (const e of Object.values(d.files)) if (!keep.has(e.chain) && all.includes(e.chain)) (keep.add(e.chain), (grew = true));
    }
  }
  return { keep: all.filter((d) => keep.has(d)), drop: all.filter((d) => !keep.has(d)) };
}

// ── the remote repository (offsite.to: lib/mirror.ts) ──────────────────────────────────────

/** Every day at the remote repository that has its manifest (written last there too), oldest first. */
export async function remoteDays(to: string, opts: OffsiteOptions): Promise<DayManifest[]> {
  const out: DayManifest[] = [];
  for (const [date, files] of await mirrorList(to, opts)) {
    if (!/^\d{4}\.\d{2}\.\d{2}$/.test(date) || !files.some((f) => f.name === LAYOUT.manifestName(date))) continue;
    out.push(JSON.parse((await mirrorRead(to, date, LAYOUT.manifestName(date), opts))!) as DayManifest);
  }
  return out;
}

/** A day's manifest at the remote repository (LifeboatError naming the day when it is not there). */
export async function remoteDay(to: string, date: string, opts: OffsiteOptions): Promise<DayManifest> {
  const text = await mirrorRead(to, date, LAYOUT.manifestName(date), opts);
  if (!text) throw new LifeboatError(`no backup of ${date} at ${to}`, { hint: "hcoop-list --remote shows the days there" });
  return JSON.parse(text) as DayManifest;
}

/**
 * backup-manager get: fetches FILE of DATE (and the day's manifest) from the remote repository
 * into the local day folder, checked against the manifest's sha256. FILE may be a volume name.
 */
export async function fetchFile(to: string, root: string, date: string, file: string, opts: OffsiteOptions): Promise<{ path: string; bytes: number; file: string }> {
  const m = await remoteDay(to, date, opts);
  const names = [file, `${date}-${file}`];
  const volume = file.replace(/\.dump\.gz\.(aescrypt|age)$/, "").replace(/^\d{4}\.\d{2}\.\d{2}-/, "");
  const hit = Object.keys(m.files).find((f) => names.includes(f)) ?? fileOf(m, volume)?.[0] ?? (m.databases && (names.includes(m.databases.file) || file === "databases") ? m.databases.file : undefined);
  if (!hit) throw new UsageError(`${date} at ${to} has no file ${JSON.stringify(file)}`, `it has: ${[...Object.keys(m.files), ...(m.databases ? [m.databases.file] : [])].join(", ")}`);
  const e = m.files[hit] ?? m.databases!;
  const got = await mirrorGet(to, date, hit, `${LAYOUT.dayDir(root, date)}/${hit}`, { sha256: e.sha256, bytes: e.bytes }, opts);
  await captureToFile(`${LAYOUT.dayDir(root, date)}/${LAYOUT.manifestName(date)}`, async (tmp) => writeFileSync(tmp, JSON.stringify(m, null, 2) + "\n"));
  return { ...got, file: hit };
}

/** Fetches what restoring VOLUME as of DATE needs (DATE's dump and its full) when it is not here. */
export async function fetchChain(to: string, root: string, date: string, volume: string, opts: OffsiteOptions): Promise<string[]> {
  const got: string[] = [];
  const need = async (d: string) => {
    const local = existsSync(`${LAYOUT.dayDir(root, d)}/${LAYOUT.manifestName(d)}`) ? fileOf(readDay(root, d), volume) : undefined;
    if (local && existsSync(`${LAYOUT.dayDir(root, d)}/${local[0]}`)) return local[1];
    const r = await fetchFile(to, root, d, volume, opts).catch((e: Error) => {
      throw new LifeboatError(`${d === date ? `${date}'s dump` : `the full dump from ${d}, which ${date}'s incremental needs,`} of ${volume} is missing here and could not be fetched from ${to}: ${e.message.split("\n")[0]}`, { hint: "hcoop-list --remote shows what is there", cause: e });
    });
    got.push(`${d}/${r.file}`);
    return fileOf(readDay(root, d), volume)![1];
  };
  const e = await need(date);
  if (e.kind === "incremental") await need(e.chain);
  return got;
}
