// s3/sync.ts: s3Sync, a verified, streaming sync between a local dir and s3://bucket[/prefix],
// in the direction given by the argument order (upload.ts, download.ts do each).
//
// Mapping. `s3://b/p` ↔ `dir` maps key `p/REL` to `dir/REL`. A REL that cannot be a safe,
// 1:1 local path (empty or `.`/`..` segments, `//`, a trailing `/`, a segment over 255 bytes,
// a NUL, a first segment starting with `.lifeboat-s3-`, or a key that is both an object and a
// prefix of other keys, such as `a` beside `a/b`) is stored under an escaped name (keys.ts).
// Names starting with `.lifeboat-s3-` at the top of the dir are never uploaded as objects.
//
// Modes. A download's files are written 0600 and the folders it makes 0700 (the destination too,
// when it makes it): a bucket's objects are as private as the backups made of them.
//
// Comparison. "checksum" (the default) compares the local MD5 (or MD5-of-part-MD5s for a
// multipart ETag) with the ETag; the index (index.ts) caches each file's ETag with its size and
// mtime, so an unchanged file is not read again (`rehash: true` reads every file). "size"
// compares sizes.
//
// Downloads stream into `.lifeboat-s3-tmp/PID/` under the destination, are checked against the
// ETag, and are renamed into place: a killed sync never leaves a half file under a real name.
// Uploads are checked against the ETag the gateway returns; a failed or interrupted multipart
// upload is aborted. When the context's signal aborts (SIGINT/SIGTERM), requests in flight are
// cancelled, no new object starts, and the interrupt is thrown.
import { setMaxListeners } from "node:events";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { UsageError } from "../errors.ts";
import { useContext, type Context } from "../context.ts";
import type { S3Handle } from "./client.ts";
import { MiB } from "./etag.ts";
import { S3_MAX_OUTAGE_MS } from "./errors.ts";
import { WIRE } from "./fast.ts";
import { parseS3Url, S3_INDEX_NAME } from "./keys.ts";
import { download } from "./download.ts";
import { upload } from "./upload.ts";

/** Options for {@link s3Sync}. */
export interface S3SyncOptions {
  /** The gateway connection (from s3Client). */
  client: S3Handle;
  /** Remove what the source does not have from the destination (default false). */
  delete?: boolean;
  /** How to tell that an object is unchanged: "checksum" (default, MD5 against the ETag) or "size". */
  compare?: "checksum" | "size";
  /** Read every local file for "checksum", not trusting the index's cached ETags (default false). */
  rehash?: boolean;
  /** Transfers (requests) in flight at once (default 24). */
  concurrency?: number;
  /** Files at least this big are uploaded in parts (default 64 MiB), unless the index says how they were uploaded. */
  multipartThreshold?: number;
  /** Part size for new multipart uploads (default 8 MiB; raised to keep 10 000 parts at most). */
  partSize?: number;
  /** Attempts per transfer before the sync reports it failed (default 10, about 28 s of backoff). */
  attempts?: number;
  /**
   * Give up on the gateway once every request has failed for this long, in ms (default 90 000).
   * The first transfer that gives up on an unreachable or silent gateway ends the whole sync:
   * a gateway that stays down fails a sync of any size in about 30 s (refused) to 2 minutes
   * (silent, with the 60 s socket timeout), naming it and the cause.
   */
  maxOutageMs?: number;
  /** Where the index lives: a path (outside the dir, or inside it: it is never an object), or false for none (default: `.lifeboat-s3-index.jsonl` in the dir). */
  index?: string | false;
  /** Show byte progress (default true). */
  progress?: boolean;
  /** The context (default: the current one). */
  ctx?: Context;
}

/** What a sync did; `objects` and `bytes` describe the source, as a manifest records it. */
export interface S3SyncReport {
  direction: "upload" | "download";
  source: string;
  destination: string;
  /** Objects (files) in the source, and their bytes. */
  objects: number;
  bytes: number;
  uploaded: number;
  downloaded: number;
  deleted: number;
  /** Unchanged objects that were not transferred. */
  skipped: number;
  /** Bytes sent or received. */
  transferredBytes: number;
  /** Keys kept under an escaped local name (see S3_ESCAPED_DIR). */
  escaped: number;
  /** Downloads whose multipart ETag no part size reproduces (kept, warned about, marked in the index). */
  unverified: number;
  /** The index read or written, if any. */
  index: string | null;
  dryRun: boolean;
  durationMs: number;
}

function isS3(p: string): boolean {
  return p.startsWith("s3://");
}

/**
 * Syncs a local dir and `s3://bucket[/prefix]`, in the direction given by the argument order,
 * like `s3cmd sync`: only new and changed objects move, `delete` removes extras at the
 * destination, every transfer is checked against its ETag, and dry-run lists what would happen.
 * @example
 * const r = await s3Sync("s3://db_wal", `${dir}/db_wal`, { client: s3, delete: true });
 * manifest.meta.db_wal = { objects: r.objects, bytes: r.bytes };
 * await s3Sync(`${dir}/db_wal`, "s3://db_wal", { client: s3 }); // restore: same keys, bytes and ETags
 */
export async function s3Sync(src: string, dst: string, opts: S3SyncOptions): Promise<S3SyncReport> {
  if (isS3(src) === isS3(dst)) {
    throw new UsageError(`s3 sync ${src} ${dst}: exactly one side must be an s3:// URL`, "sync a local dir to s3://BUCKET[/PREFIX] or back");
  }
  const ctx = opts.ctx ?? useContext();
  const up = !isS3(src);
  const dir = resolve(up ? src : dst);
  const { bucket, prefix } = parseS3Url(up ? dst : src);
  const indexPath = opts.index === false ? null : opts.index ? resolve(opts.index) : join(dir, S3_INDEX_NAME);
  const s = {
    ctx,
    h: opts.client,
    dir,
    bucket,
    prefix,
    indexPath,
    checksum: (opts.compare ?? "checksum") === "checksum",
    rehash: opts.rehash ?? false,
    concurrency: Math.max(1, opts.concurrency ?? 24),
    threshold: opts.multipartThreshold ?? 64 * MiB,
    partSize: Math.max(5 * MiB, opts.partSize ?? 8 * MiB),
    attempts: Math.max(1, opts.attempts ?? 10),
    maxOutageMs: opts.maxOutageMs ?? S3_MAX_OUTAGE_MS,
    alive: Date.now(),
    down: null as Error | null,
    delete: opts.delete ?? false,
    progress: opts.progress ?? true,
    started: Date.now(),
    made: new Set<string>(),
    label: `${src} → ${dst}`,
  };
  if (!WIRE.has(s.h)) throw new UsageError("s3 sync: client was not made by s3Client()");
  if (up && !existsSync(dir)) {
    if (!ctx.dryRun) throw new UsageError(`s3 sync: source dir ${dir} does not exist`);
    // A dry run of a restore: the dir is unpacked by an earlier step that did not run.
    ctx.log.command(`s3 sync ${src} ${dst}  (every file of ${dir}, which an earlier step makes)`, "dry-run");
    return {
      direction: "upload", source: src, destination: dst, objects: 0, bytes: 0, uploaded: 0, downloaded: 0, deleted: 0, skipped: 0,
      transferredBytes: 0, escaped: 0, unverified: 0, index: indexPath, dryRun: true, durationMs: 0,
    };
  }
  // Every request in flight listens for the interrupt: more than Node's default of 10 warn-free.
  try {
    setMaxListeners(Math.max(64, s.concurrency * 4), ctx.signal);
  } catch { /* a runtime without it only warns */ }
  return up ? upload(s, src, dst) : download(s, src, dst);
}

