// Backup folders (lib/backups.ts; not the Deis store volume): list what is there, prune by a grandfather-father-son policy, and
// check free space before a backup starts.
//
// An archive is NAME.tar.gz or NAME.tar.zst, with .age when encrypted. Beside it: NAME….sha256 (sha256sum
// format), NAME….info.json (what list shows without opening the archive) and, once a
// verify has run, NAME….verified (when, and whether it passed).
import { existsSync, readdirSync, readFileSync, statfsSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { LifeboatError, VerifyError } from "./errors.ts";
import { useContext, type Context } from "./context.ts";
import {
  archiveName,
  packArchive,
  removeArchive,
  verifyArchive,
  type AgeOptions,
  type ArchiveInfo,
  type Compression,
  type Manifest,
  type VerifyOptions,
  type VerifyReport,
} from "./archive.ts";
import { formatBytes } from "./log.ts";

/** One archive in a backups folder. */
export interface BackupEntry {
  /** Full path of the archive. */
  path: string;
  name: string;
  /** Archive size in bytes. */
  size: number;
  /** When the backup was taken (from info.json, else the file's mtime). */
  createdAt: Date;
  /** Recipe that made it, when known. */
  recipe: string;
  encrypted: boolean;
  /** "passed" / "failed" by the last verify, or "never". */
  verified: "passed" | "failed" | "never";
  /** When the last verify ran. */
  verifiedAt?: Date;
  /** The sidecar info, when present. */
  info?: ArchiveInfo;
}

const ARCHIVE = /\.tar\.(gz|zst)(\.age)?$/;

function readJson<T>(path: string): T | undefined {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as T;
  } catch {
    return undefined;
  }
}

/**
 * Lists the archives in a folder, newest first. Hidden `.partial-…` files are never listed.
 * @example for (const b of listBackups("/var/backups/lifeboat")) console.log(b.name, b.verified);
 */
export function listBackups(dir: string): BackupEntry[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw e;
  }
  const out: BackupEntry[] = [];
  for (const name of names) {
    if (name.startsWith(".") || !ARCHIVE.test(name)) continue;
    const path = join(dir, name);
    const st = statSync(path);
    if (!st.isFile()) continue;
    const info = readJson<ArchiveInfo>(`${path}.info.json`);
    const stamp = readJson<{ ok: boolean; at: string; size: number; mtimeMs: number }>(`${path}.verified`);
    // A stamp counts only for the file it was written for.
    const fresh = stamp && stamp.size === st.size && stamp.mtimeMs === st.mtimeMs;
    out.push({
      path,
      name,
      size: st.size,
      createdAt: new Date(info?.startedAt ?? st.mtime),
      recipe: info?.recipe ?? "",
      encrypted: name.endsWith(".age"),
      verified: fresh ? (stamp.ok ? "passed" : "failed") : "never",
      verifiedAt: fresh ? new Date(stamp.at) : undefined,
      info,
    });
  }
  return out.sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || b.name.localeCompare(a.name));
}

/** Options for {@link backupArchive}. */
export interface BackupArchiveOptions<M> {
  /** The backups folder; created 0700 when missing (an existing wider one is warned about, never changed). */
  folder: string;
  /** The archive's name before its stamp, e.g. "deis-backup". */
  name: string;
  /**
   * When the backup started: stamps the file name and the manifest (default: now). When the folder
   * already holds an archive of NAME stamped with that second (two quick runs), the next free
   * second is taken: a backup never replaces another.
   */
  startedAt?: Date;
  /** The recipe's own record for the manifest; its type is what the restore reads back. */
  meta: M;
  /** Encrypt with age when a passphrase or recipients are given (identities are ignored here). */
  age?: Pick<AgeOptions, "passphrase" | "recipients">;
  /** Recorded as manifest.recipe (default: the context's name). */
  recipe?: string;
  /** gzip (default: NAME-<stamp>.tar.gz) or zstd (NAME-<stamp>.tar.zst); see {@link compressionOptions}. */
  compression?: Compression;
  /** Compression level (gzip 1–9, default 6; zstd 1–19, default 3). */
  level?: number;
  /**
   * The run is a resumed one: an archive of NAME stamped with startedAt that passed its
   * verification is this run's own (killed after packing it, before it could record so). It is
   * verified again and returned, not packed a second time under the next second (default false).
   */
  resumed?: boolean;
  ctx?: Context;
}

/** What {@link backupArchive} made. */
export interface BackupResult<M> {
  /** The archive: FOLDER/NAME-<stamp>.tar.gz (or .tar.zst), with .age when encrypted. */
  path: string;
  manifest: Manifest<M>;
  /** Read back and checked against its manifest, and recorded as passed (NAME.verified). */
  verified: boolean;
  /** Size of the archive file (0 in dry-run). */
  bytes: number;
}

/**
 * A recipe's whole "pack" step: names the archive `NAME-<stamp(startedAt)>.tar.gz|.tar.zst[.age]`
 * in the backups folder, packs sourceDir into it, and verifies it, recording the result,
 * whenever it can be opened here (not encrypted, or a passphrase). An archive encrypted for
 * recipients only is left unverified, with a warning. In dry-run it says what it would
 * write and returns a placeholder.
 * @example
 * const { path, manifest } = await backupArchive<DeisMeta>(staging, {
 *   folder: s["backups.dir"], name: "deis-backup", startedAt, meta: deisMeta(api), age: ageOptions(s),
 * });
 */
export async function backupArchive<M = Record<string, unknown>>(sourceDir: string, o: BackupArchiveOptions<M>): Promise<BackupResult<M>> {
  const ctx = o.ctx ?? useContext();
  let startedAt = o.startedAt ?? new Date();
  const held = existsSync(o.folder) ? readdirSync(o.folder) : [];
  const encrypt = { passphrase: o.age?.passphrase || undefined, recipients: o.age?.recipients?.length ? [...o.age.recipients] : undefined };
  // The interrupted run's archive, when it can be read here: under its final name it is whole
  // (packArchive renames it last), so one verified as passed, or not yet verified at all (killed
  // between the pack and the verify), is verified now and used. One that failed, or fails now,
  // stays as it is and a new one is packed under the next second.
  const openable = !encrypt.recipients || !!encrypt.passphrase;
  if (o.resumed && !ctx.dryRun && openable) {
    const own = listBackups(o.folder).find((b) => b.name.startsWith(`${o.name}-${stamp(startedAt)}.tar.`) && b.verified !== "failed");
    if (own) {
      ctx.log.info(`${own.name} is in ${o.folder} already (the interrupted run packed it${own.verified === "passed" ? " and verified it" : ""}): verifying it, not packing anew`);
      try {
        const report = await verifyArchive<M>(own.path, { decrypt: encrypt, record: true, ctx });
        if (report.manifest) return { path: own.path, manifest: report.manifest, verified: true, bytes: statSync(own.path).size };
      } catch (e) {
        if (!(e instanceof VerifyError)) throw e;
        ctx.log.warn(`${own.name} does not verify (${e.message}): packing a new archive`);
      }
    }
  }
  while (held.some((f) => f.startsWith(`${o.name}-${stamp(startedAt)}.tar.`))) startedAt = new Date(startedAt.getTime() + 1000);
  const encrypted = !!(encrypt.passphrase || encrypt.recipients);
  const path = join(o.folder, archiveName(`${o.name}-${stamp(startedAt)}`, o.compression, encrypted));
  const manifest = await packArchive<M>(sourceDir, path, { meta: o.meta, recipe: o.recipe, startedAt, encrypt, compression: o.compression, level: o.level, ctx });
  if (ctx.dryRun) return { path, manifest, verified: false, bytes: 0 };
  let verified = false;
  if (!encrypted || encrypt.passphrase) {
    await verifyArchive(path, { decrypt: encrypt, record: true, ctx });
    verified = true;
  } else {
    ctx.log.warn(`${path}: encrypted for recipients only: verified while packing; verify it again with archive:verify and the identity`);
  }
  return { path, manifest, verified, bytes: statSync(path).size };
}

/** A grandfather-father-son retention policy. Zero or unset keeps none by that rule. */
export interface PrunePolicy {
  /** Keep the newest N backups. */
  keepLast?: number;
  /** Keep the newest backup of each of the last N days that have one. */
  keepDaily?: number;
  /** Keep the newest backup of each of the last N ISO weeks that have one. */
  keepWeekly?: number;
  /** Keep the newest backup of each of the last N months that have one. */
  keepMonthly?: number;
}

/** What prune decided, with a reason for each kept backup. */
export interface PrunePlan {
  keep: { entry: BackupEntry; reasons: string[] }[];
  remove: BackupEntry[];
}

function isoWeek(d: Date): string {
  const t = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  const day = t.getUTCDay() || 7;
  t.setUTCDate(t.getUTCDate() + 4 - day);
  const y0 = new Date(Date.UTC(t.getUTCFullYear(), 0, 1));
  const week = Math.ceil(((t.getTime() - y0.getTime()) / 86400000 + 1) / 7);
  return `${t.getUTCFullYear()}-W${String(week).padStart(2, "0")}`;
}

/**
 * Decides which backups a policy keeps (restic's `forget` rules, in UTC). The newest
 * backup that passed verification is always kept, whatever the policy says.
 * @example const plan = planPrune(listBackups(dir), { keepLast: 3, keepDaily: 7, keepWeekly: 4, keepMonthly: 6 });
 */
export function planPrune(entries: BackupEntry[], policy: PrunePolicy): PrunePlan {
  const sorted = [...entries].sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime());
  const reasons = new Map<BackupEntry, string[]>();
  const mark = (e: BackupEntry, why: string) => reasons.set(e, [...(reasons.get(e) ?? []), why]);
  sorted.slice(0, policy.keepLast ?? 0).forEach((e, i) => mark(e, `last ${i + 1}`));
  const bucket = (n: number | undefined, key: (d: Date) => string, label: string) => {
    if (!n) return;
    const seen = new Set<string>();
    for (const e of sorted) {
      const k = key(e.createdAt);
      if (seen.has(k)) continue;
      if (seen.size >= n) break;
      seen.add(k);
      mark(e, `${label} ${k}`);
    }
  };
  bucket(policy.keepDaily, (d) => d.toISOString().slice(0, 10), "daily");
  bucket(policy.keepWeekly, isoWeek, "weekly");
  bucket(policy.keepMonthly, (d) => d.toISOString().slice(0, 7), "monthly");
  const newestVerified = sorted.find((e) => e.verified === "passed");
  if (newestVerified) mark(newestVerified, "newest verified");
  return {
    keep: sorted.filter((e) => reasons.has(e)).map((entry) => ({ entry, reasons: reasons.get(entry)! })),
    remove: sorted.filter((e) => !reasons.has(e)),
  };
}

/** Options for {@link prune}. */
export interface PruneOptions extends PrunePolicy {
  /** Actually delete (otherwise the plan is only printed). */
  confirmed?: boolean;
  ctx?: Context;
}

/**
 * Applies a retention policy to a folder. Without `confirmed` (or in dry-run) it only
 * prints the plan. Refuses a policy that keeps nothing.
 * @example await prune("/var/backups", { keepLast: 3, keepDaily: 7, confirmed: true });
 */
export function prune(dir: string, opts: PruneOptions): PrunePlan {
  const ctx = opts.ctx ?? useContext();
  if (!opts.keepLast && !opts.keepDaily && !opts.keepWeekly && !opts.keepMonthly) {
    throw new LifeboatError("prune: the policy keeps nothing", { exitCode: 2, hint: "set at least one of keep-last, keep-daily, keep-weekly, keep-monthly" });
  }
  const plan = planPrune(listBackups(dir), opts);
  for (const k of plan.keep) ctx.log.info(`keep    ${k.entry.name}  (${k.reasons.join(", ")})`);
  for (const r of plan.remove) ctx.log.info(`${opts.confirmed && !ctx.dryRun ? "remove" : "would remove"}  ${r.name}  ${formatBytes(r.size)}`);
  if (!plan.keep.some((k) => k.entry.verified === "passed") && plan.remove.length) {
    ctx.log.warn("no kept backup has passed verification; run archive:verify on the newest one");
  }
  if (opts.confirmed && !ctx.dryRun) for (const r of plan.remove) removeArchive(r.path);
  return plan;
}

/** Free and total bytes of the filesystem holding dir (statfs); a dir not made yet counts as its nearest existing parent. */
export function diskSpace(dir: string): { free: number; total: number } {
  let d = resolve(dir);
  while (!existsSync(d) && dirname(d) !== d) d = dirname(d);
  const s = statfsSync(d);
  return { free: Number(s.bavail) * Number(s.bsize), total: Number(s.blocks) * Number(s.bsize) };
}

/** Options for {@link checkFreeSpace}. */
export interface FreeSpaceOptions {
  /** Extra room to keep free, as a fraction of `needed` (default 0.1). */
  margin?: number;
  ctx?: Context;
}

/**
 * Fails early, with the numbers, when dir's filesystem cannot hold `needed` bytes plus a margin.
 * @example checkFreeSpace("/var/backups", estimatedBytes);
 */
export function checkFreeSpace(dir: string, needed: number, opts: FreeSpaceOptions = {}): { free: number; needed: number } {
  const ctx = opts.ctx ?? useContext();
  const want = Math.ceil(needed * (1 + (opts.margin ?? 0.1)));
  const { free } = diskSpace(dir);
  if (free < want) {
    throw new LifeboatError(`not enough space in ${dir}: ${formatBytes(free)} free, the backup needs about ${formatBytes(want)}`, {
      hint: "free space, prune old backups (archive:prune), or point the backup dir elsewhere",
    });
  }
  ctx.log.debug(`space in ${dir}: ${formatBytes(free)} free, ${formatBytes(want)} needed`);
  return { free, needed: want };
}

/** A UTC timestamp for archive names: 2026-11-21T101500Z. */
export function stamp(d: Date = new Date()): string {
  return d.toISOString().replace(/\.\d+Z$/, "Z").replace(/:/g, "");
}
