// Monitoring: did last night's backup happen? The status check and the Prometheus textfile.
//
// Everything works on a list of BackupRecords, wherever they come from: a backups folder
// (folderRecords, from listBackups and the sidecars) or an off-site listing mapped to the
// same shape. backupStatus groups them by recipe and checks the newest VERIFIED backup of each
// against a maximum age; metricsText turns the result into node_exporter's textfile format, and
// writeTextfile puts it in place atomically. docs/monitoring.md is the guide, with an alert rule.
import { chmodSync, writeFileSync } from "node:fs";
import { LifeboatError } from "./errors.ts";
import { useContext, type Context } from "./context.ts";
import { listBackups, type BackupEntry } from "./backups.ts";
import { partialFile } from "./files.ts";
import { formatBytes } from "./log.ts";
import { parseTimespan } from "./schedule.ts";

/** One backup, wherever it is kept: the input of every check here. */
export interface BackupRecord {
  /** Archive name (file name or object key). */
  name: string;
  /** The recipe that made it; "" when unknown (then taken from the name: NAME-<stamp>.tar.gz → NAME). */
  recipe: string;
  /** When the backup was taken. */
  time: Date;
  /** How long it took, when known (manifest start and end). */
  durationSeconds?: number;
  /** Bytes of the archive. */
  size: number;
  /** It passed verification (and the file has not changed since). */
  verified: boolean;
}

/** The record of one archive in a backups folder. */
export function recordOf(e: BackupEntry): BackupRecord {
  const start = e.info?.startedAt ? Date.parse(e.info.startedAt) : NaN;
  const end = e.info?.finishedAt ? Date.parse(e.info.finishedAt) : NaN;
  return {
    name: e.name,
    recipe: e.recipe,
    time: e.createdAt,
    ...(Number.isFinite(start) && Number.isFinite(end) && end >= start ? { durationSeconds: (end - start) / 1000 } : {}),
    size: e.size,
    verified: e.verified === "passed",
  };
}

/**
 * The records of a backups folder (listBackups with its sidecars), newest first.
 * @example const statuses = backupStatus(folderRecords("/var/backups/lifeboat"), { location: "/var/backups/lifeboat", maxAgeSeconds: 26 * 3600 });
 */
export function folderRecords(dir: string): BackupRecord[] {
  return listBackups(dir).map(recordOf);
}

/** The recipe an archive name belongs to: deis-backup-2026-11-21T101500Z.tar.gz.age (or .tar.zst) → deis-backup. */
export function recipeOfName(name: string): string {
  return name.replace(/\.tar\.(gz|zst)(\.age)?$/, "").replace(/-\d{4}-\d{2}-\d{2}T\d{6}Z$/, "");
}

/** Options for {@link backupStatus}. */
export interface StatusOptions {
  /** Where the records come from, for messages and metric labels ("/var/backups/lifeboat", "s3://offsite/deis"). */
  location: string;
  /** The newest verified backup of each recipe may be at most this old (seconds). */
  maxAgeSeconds: number;
  /** Check only this recipe; it fails when there is no backup of it. */
  recipe?: string;
  /** The time to measure ages from (default now). */
  now?: Date;
}

/** The verdict for one recipe in one location. */
export interface RecipeStatus {
  /** The recipe ("" when the location holds no backups at all). */
  recipe: string;
  location: string;
  /** The newest verified backup exists and is young enough. */
  ok: boolean;
  /** One line saying what was found, or why the check failed. */
  message: string;
  /** Backups of this recipe in this location, verified or not. */
  count: number;
  /** The newest backup, in whatever state. */
  newest?: BackupRecord;
  /** The newest backup that passed verification. */
  lastVerified?: BackupRecord;
  /** Age of lastVerified in seconds. */
  ageSeconds?: number;
  maxAgeSeconds: number;
}

/** "26h", "1d 2h", "90min", "3600" → seconds (systemd's time spans). Throws UsageError. */
export function parseAge(text: string): number {
  return parseTimespan(text);
}

/** 3d 2h, 5h 12m, 12m, 40s. */
export function formatAge(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (d) return h ? `${d}d ${h}h` : `${d}d`;
  if (h) return m ? `${h}h ${m}m` : `${h}h`;
  return m ? `${m}m` : `${s}s`;
}

/**
 * Checks each recipe's newest verified backup against a maximum age. A recipe with backups but
 * none verified fails; a location without any backup fails (with `recipe`, a missing recipe fails).
 * @example
 * const st = backupStatus(folderRecords(dir), { location: dir, maxAgeSeconds: parseAge("26h") });
 * if (st.some((s) => !s.ok)) process.exitCode = ExitCode.Stale;
 */
export function backupStatus(records: readonly BackupRecord[], o: StatusOptions): RecipeStatus[] {
  const now = (o.now ?? new Date()).getTime();
  const groups = new Map<string, BackupRecord[]>();
  for (const r of records) {
    const recipe = r.recipe || recipeOfName(r.name);
    if (o.recipe && recipe !== o.recipe) continue;
    groups.set(recipe, [...(groups.get(recipe) ?? []), r]);
  }
  if (o.recipe && !groups.has(o.recipe)) groups.set(o.recipe, []);
  if (!groups.size) {
    return [{ recipe: "", location: o.location, ok: false, message: `no backups in ${o.location}`, count: 0, maxAgeSeconds: o.maxAgeSeconds }];
  }
  const max = formatAge(o.maxAgeSeconds);
  return [...groups.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([recipe, list]) => {
    const sorted = [...list].sort((a, b) => b.time.getTime() - a.time.getTime() || b.name.localeCompare(a.name));
    const newest = sorted[0];
    const lastVerified = sorted.find((r) => r.verified);
    const base = { recipe, location: o.location, count: list.length, newest, lastVerified, maxAgeSeconds: o.maxAgeSeconds };
    const where = `${recipe} in ${o.location}`;
    if (!newest) return { ...base, ok: false, message: `${where}: no backup at all` };
    if (!lastVerified) {
      return { ...base, ok: false, message: `${where}: none of its ${list.length} backup(s) passed verification (newest ${newest.name}, ${formatAge((now - newest.time.getTime()) / 1000)} old); run archive:verify on it` };
    }
    const age = (now - lastVerified.time.getTime()) / 1000;
    const what = `${lastVerified.name}, taken ${lastVerified.time.toISOString()}, ${formatBytes(lastVerified.size)}`;
    const newer = newest !== lastVerified ? `; a newer backup is not verified: ${newest.name}` : "";
    if (age > o.maxAgeSeconds) {
      return { ...base, ageSeconds: age, ok: false, message: `${where}: the newest verified backup is ${formatAge(age)} old (max ${max}): ${what}${newer}` };
    }
    return { ...base, ageSeconds: age, ok: true, message: `${where}: verified backup ${formatAge(age)} old (max ${max}): ${what}; ${list.length} backup(s)${newer}` };
  });
}

const METRICS: [name: string, help: string, value: (s: RecipeStatus) => number | undefined][] = [
  ["lifeboat_backup_last_success_timestamp_seconds", "When the newest verified backup was taken (Unix time; 0 when there is none).", (s) => s.lastVerified ? s.lastVerified.time.getTime() / 1000 : 0],
  ["lifeboat_backup_last_duration_seconds", "How long the newest verified backup took (from its manifest's start and end).", (s) => s.lastVerified?.durationSeconds],
  ["lifeboat_backup_last_size_bytes", "Size of the newest verified backup's archive.", (s) => s.lastVerified?.size],
  ["lifeboat_backup_last_verified", "1 when the newest backup, verified or not, passed verification, else 0.", (s) => (s.newest?.verified ? 1 : 0)],
  ["lifeboat_backup_last_timestamp_seconds", "When the newest backup, verified or not, was taken (Unix time; 0 when there is none).", (s) => s.newest ? s.newest.time.getTime() / 1000 : 0],
  ["lifeboat_backup_count", "Backups of the recipe in the location.", (s) => s.count],
  ["lifeboat_backup_ok", "1 when the newest verified backup is younger than the check's max age, else 0.", (s) => (s.ok ? 1 : 0)],
];

function label(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function num(n: number): string {
  return Number.isInteger(n) ? String(n) : String(Math.round(n * 1000) / 1000);
}

/**
 * The statuses in Prometheus' text exposition format (node_exporter's textfile collector), one
 * series per recipe and location, with HELP and TYPE lines, plus when the check ran.
 * @example writeTextfile("/var/lib/prometheus/node-exporter/lifeboat.prom", metricsText(statuses));
 */
export function metricsText(statuses: readonly RecipeStatus[], now: Date = new Date()): string {
  const rows = statuses.filter((s) => s.recipe);
  const out: string[] = [];
  for (const [name, help, value] of METRICS) {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`);
    for (const s of rows) {
      const v = value(s);
      if (v !== undefined) out.push(`${name}{recipe="${label(s.recipe)}",location="${label(s.location)}"} ${num(v)}`);
    }
  }
  out.push(
    "# HELP lifeboat_backup_check_timestamp_seconds When lifeboat's status check wrote this file (Unix time).",
    "# TYPE lifeboat_backup_check_timestamp_seconds gauge",
    `lifeboat_backup_check_timestamp_seconds ${Math.floor(now.getTime() / 1000)}`,
  );
  return out.join("\n") + "\n";
}

/** Options for {@link writeTextfile}. */
export interface TextfileOptions {
  /** File mode (default 0644: node_exporter runs as its own user). */
  mode?: number;
  ctx?: Context;
}

/**
 * Writes a textfile-collector file atomically: a hidden partial file in the same folder (which
 * the collector ignores: it reads only *.prom), renamed into place. In dry-run it prints the text.
 * @example writeTextfile("/var/lib/prometheus/node-exporter/lifeboat.prom", metricsText(statuses));
 */
export function writeTextfile(path: string, text: string, o: TextfileOptions = {}): void {
  const ctx = o.ctx ?? useContext();
  if (!path.endsWith(".prom")) ctx.log.warn(`${path}: node_exporter's textfile collector reads only files ending in .prom`);
  if (ctx.dryRun) {
    ctx.log.info(`[dry-run] would write ${path}:`);
    for (const line of text.trimEnd().split("\n")) ctx.log.info(`    ${line}`);
    return;
  }
  const f = partialFile(path);
  try {
    writeFileSync(f.tmp, text, { mode: o.mode ?? 0o644 });
    chmodSync(f.tmp, o.mode ?? 0o644);
    f.commit();
  } catch (e) {
    f.discard();
    throw new LifeboatError(`cannot write the metrics file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, {
      hint: "point --textfile at node_exporter's --collector.textfile.directory, writable by this user",
      cause: e,
    });
  }
}
