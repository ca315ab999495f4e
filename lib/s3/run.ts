// s3/run.ts: what one sync run shares between its upload and download halves: its state, the
// local walk, the listing, one transfer with retries, and how failures and progress are told.
import { readdirSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { LifeboatError, VerifyError } from "../errors.ts";
import type { Context } from "../context.ts";
import { formatBytes, formatDuration, type Progress } from "../log.ts";
import type { S3Handle } from "./client.ts";
import { ChecksumMismatch, classified, isOutage, isRetryable, s3Error } from "./errors.ts";
import { retry } from "../retry.ts";
import { RESERVED, S3_ESCAPED_DIR } from "./keys.ts";
import { s3List, type S3Object } from "./list.ts";
import type { S3SyncReport } from "./sync.ts";

export type SyncState = {
  ctx: Context;
  h: S3Handle;
  dir: string;
  bucket: string;
  prefix: string;
  indexPath: string | null;
  checksum: boolean;
  rehash: boolean;
  concurrency: number;
  threshold: number;
  partSize: number;
  attempts: number;
  /** Give up on the gateway once every request has failed for this long (S3SyncOptions.maxOutageMs). */
  maxOutageMs: number;
  /** When a request last succeeded or a body last brought bytes (ms since the epoch; the sync's start at first). */
  alive: number;
  /** Set when a transfer gave up because the gateway is not there: no other transfer retries or starts after it. */
  down: Error | null;
  delete: boolean;
  progress: boolean;
  started: number;
  /** "SRC → DST" for messages. */
  label: string;
  /** Dirs made under the destination so far. */
  made: Set<string>;
  /** Whether the gateway answers HEAD ?partNumber=1 with the part's length (Ceph 16 does not); unknown until tried. */
  partHeads?: boolean;
};

export interface LocalFile {
  /** Path relative to the dir, "/"-separated. */
  path: string;
  abs: string;
  size: number;
  mtimeMs: number;
}

/** Regular files under root, skipping the reserved top-level names other than the escaped dir. */
export function walkLocal(root: string, ctx: Context, warn: boolean, skip: string | null): Map<string, LocalFile> {
  const out = new Map<string, LocalFile>();
  const visit = (dir: string, prefix: string) => {
    let ents;
    try {
      ents = readdirSync(dir, { withFileTypes: true });
    } catch (e: any) {
      if (e.code === "ENOENT" && prefix === "") return;
      throw e;
    }
    for (const d of ents) {
      const rel = prefix ? `${prefix}/${d.name}` : d.name;
      if (!prefix && d.name.startsWith(RESERVED) && d.name !== S3_ESCAPED_DIR) continue;
      const abs = join(dir, d.name);
      // An index given a place inside the dir is never an object, nor is its partial copy.
      if (skip && (abs === skip || abs.startsWith(partialPrefix(skip)))) continue;
      if (d.isDirectory()) visit(abs, rel);
      else if (d.isFile()) {
        const st = statSync(abs);
        out.set(rel, { path: rel, abs, size: st.size, mtimeMs: st.mtimeMs });
      } else if (warn) ctx.log.warn(`s3 sync: not a regular file, not uploaded: ${abs}`);
    }
  };
  visit(root, "");
  return out;
}

/** How an index being written is named (lib/files.ts partialFile): DIR/.partial-NAME.PID. */
export function partialPrefix(index: string): string {
  return join(dirname(index), `.partial-${basename(index)}.`);
}

export async function listRemote(s: SyncState): Promise<Map<string, S3Object>> {
  const out = new Map<string, S3Object>();
  for await (const o of s3List(s.h, s.bucket, s.prefix, { ctx: s.ctx })) out.set(o.key, o);
  return out;
}

/** Throws the interrupt when the run was interrupted, else one error listing the failures (leading with the gateway when it went away). */
export function failAll(s: SyncState, verb: string, errors: unknown[]): never {
  if (s.ctx.signal.aborted) throw s.ctx.signal.reason;
  if (s.down) {
    throw new LifeboatError(`s3 sync ${s.label}: ${s.down.message}; gave up on the gateway: ${errors.length} object${errors.length === 1 ? "" : "s"} failed to ${verb}`, {
      hint: `${(s.down as LifeboatError).hint ?? "is the gateway running?"}; once it answers, run the sync again: objects already done are skipped`,
      cause: s.down,
    });
  }
  const first = errors[0] as Error;
  const lines = errors.slice(0, 10).map((e) => `  ${(e as Error).message}`);
  if (errors.length > 10) lines.push(`  … and ${errors.length - 10} more`);
  const what = `s3 sync ${s.label}: ${errors.length} object${errors.length === 1 ? "" : "s"} failed to ${verb}:\n${lines.join("\n")}`;
  if (errors.every((e) => e instanceof VerifyError)) throw new VerifyError(what, lines, (first as LifeboatError).hint);
  throw new LifeboatError(what, {
    hint: (first as LifeboatError).hint ?? "run the sync again: objects already done are skipped",
    cause: first,
  });
}

export function startProgress(s: SyncState, label: string, total: number): Progress {
  if (!s.progress || s.ctx.dryRun || total === 0) return { add() {}, total() {}, done() {}, fail() {} };
  return s.ctx.log.progress(label, { total });
}

function summary(r: S3SyncReport, withTime = true): string {
  const moved = r.direction === "upload" ? `uploaded ${r.uploaded}` : `downloaded ${r.downloaded}`;
  return `s3 sync ${r.source} → ${r.destination}: ${r.objects} objects, ${formatBytes(r.bytes)}; ${moved} (${formatBytes(r.transferredBytes)}), ` +
    `deleted ${r.deleted}, unchanged ${r.skipped}${r.escaped ? `, ${r.escaped} under escaped names` : ""}` +
    `${r.unverified ? `, ${r.unverified} not verifiable against their ETag` : ""}${withTime ? ` (${formatDuration(r.durationMs)})` : ""}`;
}

export function finish(s: SyncState, report: S3SyncReport, progress: Progress): S3SyncReport {
  report.durationMs = Date.now() - s.started;
  if (s.progress && report.transferredBytes > 0) progress.done(summary(report, false)); // the spinner adds the time
  else s.ctx.log.info(summary(report));
  return report;
}

/**
 * One transfer with retries; what is left after the last attempt becomes an S3Error or, for bad
 * bytes, a VerifyError. Retries stop once the gateway has answered nothing for maxOutageMs. A
 * transfer that gives up because the gateway is not there marks the sync `down`: the others
 * then stop retrying and the ones not started fail at once, so a dead gateway ends a sync of any
 * size after about one transfer's retries, with "gateway unreachable … after N attempts over T s".
 */
export async function transfer<T>(s: SyncState, target: string, fn: () => Promise<T>): Promise<T> {
  if (s.down) throw s.down;
  const t0 = Date.now();
  let attempts = 0;
  try {
    return await retry(async () => {
      if (s.down) throw s.down;
      attempts++;
      const v = await classified(fn);
      s.alive = Date.now();
      return v;
    }, {
      attempts: s.attempts, baseMs: 500, maxMs: 4000, jitter: false, signal: s.ctx.signal,
      retryable: (e) => !s.down && isRetryable(e) && Date.now() - Math.max(s.alive, t0) < s.maxOutageMs,
    });
  } catch (e) {
    if (s.down && e === s.down) throw e;
    if (e instanceof ChecksumMismatch) {
      throw new VerifyError(`s3 ${target}: ${e.message} (after ${attempts} attempts)`, [e.message],
        "the bytes kept differing from the ETag: check the gateway's health and the disk; run the sync again");
    }
    const err = s3Error(s.h, target, e);
    if (!s.ctx.signal.aborted && isOutage(err)) {
      err.message += ` after ${attempts} attempt${attempts === 1 ? "" : "s"} over ${((Date.now() - t0) / 1000).toFixed(1)} s`;
      s.down ??= err;
    }
    throw err;
  }
}

