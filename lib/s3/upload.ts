// s3/upload.ts: the upload half of s3Sync (dir → s3://): compare, PUT or multipart upload,
// each checked against the ETag the gateway returns, then delete extras and write the index.
// A multipart upload that fails or is interrupted is aborted, so that no parts are left behind.
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { LifeboatError, VerifyError } from "../errors.ts";
import { failures, limit as limiter, mapLimit, type Limit } from "../limit.ts";
import type { Progress } from "../log.ts";
import { deleteKeys } from "./buckets.ts";
import { call, ChecksumMismatch, completionInProgress, patiently } from "./errors.ts";
import { FileSource, Hasher, localMatches, schemeOf } from "./etag.ts";
import { completionXml, wire, wireXml } from "./fast.ts";
import { cachedEtag, indexHeader, putHeaders, readS3Index, writeIndex, type S3IndexEntry } from "./index.ts";
import { S3_ESCAPED_DIR, s3UnescapePath } from "./keys.ts";
import { stripEtag, type S3Object } from "./list.ts";
import { failAll, finish, listRemote, startProgress, transfer, walkLocal, type LocalFile, type SyncState } from "./run.ts";
import type { S3SyncReport } from "./sync.ts";

export async function upload(s: SyncState, src: string, dst: string): Promise<S3SyncReport> {
  const { ctx } = s;
  const listing = listRemote(s);
  await new Promise((r) => setImmediate(r)); // the first list request is on the wire while the dir is read
  const index = s.indexPath ? readS3Index(s.indexPath) : readS3Index("");
  const local = walkLocal(s.dir, ctx, true, s.indexPath);
  const remote = await listing;

  interface Job { file: LocalFile; key: string; rel: string; entry?: S3IndexEntry; remote?: S3Object }
  const jobs: Job[] = [];
  const keep = new Set<string>();
  const entries: S3IndexEntry[] = [];
  let bytes = 0;
  let escaped = 0;
  for (const file of local.values()) {
    let rel = file.path;
    if (file.path.startsWith(`${S3_ESCAPED_DIR}/`)) {
      const k = s3UnescapePath(file.path);
      if (k === null) {
        ctx.log.warn(`s3 sync: ${file.abs} is not an escaped key name; not uploaded`);
        continue;
      }
      rel = k;
      escaped++;
    }
    const key = s.prefix + rel;
    keep.add(key);
    bytes += file.size;
    const e = index.get(file.path);
    jobs.push({ file, key, rel, entry: e && e.rel === rel ? e : undefined, remote: remote.get(key) });
  }

  // Which files differ from their object: size first, then the ETag (cached in the index, or read).
  const todo: Job[] = [];
  let fromCache = 0;
  const errs = failures(await mapLimit(jobs, s.concurrency, async (j) => {
    const r = j.remote;
    let same = !!r && r.size === j.file.size;
    if (same && s.checksum) {
      const cached = s.rehash ? undefined : cachedEtag(j.entry, j.file, index.writtenAt ?? 0);
      if (cached !== undefined) {
        same = cached === r!.etag;
        fromCache++;
      } else {
        const m = await localMatches(j.file.abs, j.file.size, r!.etag, [j.entry?.partSize, s.partSize], j.entry?.etag === r!.etag ? j.entry.md5 : undefined);
        same = m.match;
        if (same && j.entry) j.entry = { ...j.entry, etag: r!.etag, partSize: m.partSize ?? j.entry.partSize };
      }
    }
    if (same) entries.push({ ...(j.entry ?? { rel: j.rel, path: j.file.path }), size: j.file.size, etag: r!.etag, mtimeMs: j.file.mtimeMs, rel: j.rel, path: j.file.path });
    else todo.push(j);
  }, { signal: ctx.signal }));
  if (errs.length) failAll(s, "compare", errs);
  const extras = s.delete ? [...remote.keys()].filter((k) => !keep.has(k)) : [];

  const report: S3SyncReport = {
    direction: "upload", source: src, destination: dst, objects: jobs.length, bytes,
    uploaded: todo.length, downloaded: 0, deleted: extras.length, skipped: jobs.length - todo.length,
    transferredBytes: todo.reduce((n, j) => n + j.file.size, 0), escaped, unverified: 0, index: s.indexPath, dryRun: ctx.dryRun, durationMs: 0,
  };
  if (ctx.dryRun) {
    for (const j of todo) ctx.log.command(`s3 upload ${j.file.path} → s3://${s.bucket}/${j.key}`, "dry-run");
    for (const k of extras) ctx.log.command(`s3 delete s3://${s.bucket}/${k}`, "dry-run");
    report.durationMs = Date.now() - s.started;
    return report;
  }

  const progress = startProgress(s, `upload → s3://${s.bucket}/${s.prefix}`, report.transferredBytes);
  const limit = limiter(s.concurrency);
  todo.sort((a, b) => b.file.size - a.file.size);
  const upErrs = failures(await mapLimit(todo, s.concurrency, async (j) => {
    entries.push(await uploadFile(s, j.file, j.key, j.rel, j.entry, limit, progress));
  }, { signal: ctx.signal }));
  if (upErrs.length) {
    progress.fail();
    failAll(s, "upload", upErrs);
  }
  if (extras.length) {
    await call(s.h, `delete extras in s3://${s.bucket}/${s.prefix}`, () =>
      deleteKeys(s.h, s.bucket, extras.map((Key) => ({ Key })), s.attempts, ctx.signal));
  }
  // Nothing changed and the index knew it all: it stays as it is.
  const unchanged = todo.length === 0 && extras.length === 0 && fromCache === jobs.length && index.size === jobs.length;
  if (s.indexPath && !unchanged) {
    // The source may be read-only: the index only saves work next time.
    try {
      writeIndex(s.indexPath, indexHeader(s.h.endpoint, s.bucket, s.prefix, entries), entries);
    } catch (e) {
      ctx.log.warn(`s3 sync: could not write the index ${s.indexPath} (${(e as Error).message}); the next sync reads every file again`);
    }
  }
  return finish(s, report, progress);
}

async function uploadFile(
  s: SyncState, file: LocalFile, key: string, rel: string, entry: S3IndexEntry | undefined,
  limit: Limit, progress: Progress,
): Promise<S3IndexEntry> {
  const recorded = entry && entry.size === file.size ? entry : undefined;
  const scheme = recorded ? schemeOf(recorded.etag) : undefined;
  const multipart = scheme ? scheme.kind === "multipart" : file.size >= s.threshold;
  let partSize = recorded?.partSize ?? s.partSize;
  if (!recorded?.partSize) while (Math.ceil(file.size / partSize) > 10000) partSize *= 2;
  const target = `upload ${file.path} → s3://${s.bucket}/${key}`;
  const headers = putHeaders(entry);
  let etag: string;
  if (!multipart) {
    etag = await transfer(s, target, () => limit(async () => {
      const tap = new Hasher({ whole: true });
      const body = new FileSource(file.abs, 0, file.size, tap, (n) => progress.add(n));
      try {
        const out = await wire(s.h, { method: "PUT", bucket: s.bucket, key, body, length: file.size, headers, signal: s.ctx.signal });
        out.body.resume();
        const got = stripEtag(out.headers.etag);
        checkSent(tap, file, got, tap.md5(), target);
        return got;
      } catch (e) {
        progress.add(-tap.bytes);
        body.destroy();
        throw e;
      }
    }));
  } else {
    etag = await uploadMultipart(s, file, key, partSize, headers, target, limit, progress);
  }
  return { ...(entry ?? {}), rel, path: file.path, size: file.size, etag, partSize: multipart ? partSize : undefined, mtimeMs: file.mtimeMs };
}

function checkSent(tap: Hasher, file: LocalFile, etag: string, local: string, target: string): void {
  if (tap.bytes !== file.size) {
    throw new LifeboatError(`s3 ${target}: the file changed while it was read (${tap.bytes} bytes, expected ${file.size})`, {
      hint: "stop whatever writes to it, or sync a snapshot",
    });
  }
  if (schemeOf(etag).kind !== "opaque" && etag.toLowerCase() !== local) {
    throw new ChecksumMismatch(`the gateway's ETag ${etag} does not match the sent bytes (${local})`);
  }
}

/** Never aborts: cleanup (aborting a multipart upload) runs on after an interrupt. */
const CLEANUP = new AbortController().signal;
/** Attempts to abort a failed multipart upload, at least (about 45 s: a gateway restart). */
const ABORT_ATTEMPTS = 14;

/**
 * Uploads a file in parts. A failure or an interrupt aborts the upload (patiently: the gateway
 * may be restarting), so no parts are left behind. A completion whose answer was lost (Ceph's
 * "already in progress" 500, or NoSuchUpload on a retry) is confirmed by HEAD: the object must
 * be there with the ETag the sent parts give.
 */
async function uploadMultipart(
  s: SyncState, file: LocalFile, key: string, partSize: number, headers: Record<string, string | undefined>, target: string,
  limit: Limit, progress: Progress,
): Promise<string> {
  // All on the lean path (fast.ts): an upload in parts no longer loads the SDK's client.
  const signal = s.ctx.signal;
  const created = await transfer(s, target, () =>
    wireXml(s.h, { method: "POST", bucket: s.bucket, key, query: { uploads: "" }, headers, signal }));
  const uploadId: string | undefined = created?.InitiateMultipartUploadResult?.UploadId;
  if (!uploadId) throw new LifeboatError(`s3 ${target}: the gateway started no multipart upload (no UploadId in its answer)`);
  const n = Math.max(1, Math.ceil(file.size / partSize));
  const headEtag = async () => {
    const r = await wire(s.h, { method: "HEAD", bucket: s.bucket, key, signal });
    r.body.resume();
    return stripEtag(r.headers.etag);
  };
  try {
    const digests: Buffer[] = new Array(n);
    let failed = false;
    // Every part settles before the upload is completed or aborted: none is in flight then.
    const settled = await Promise.allSettled(Array.from({ length: n }, (_, i) => transfer(s, `${target} part ${i + 1}/${n}`, () => limit(async () => {
      if (failed) throw new LifeboatError(`s3 ${target}: part ${i + 1} not sent: another part failed`);
      const start = i * partSize;
      const len = Math.min(partSize, file.size - start);
      const tap = new Hasher({ whole: true });
      const body = new FileSource(file.abs, start, len, tap, (b) => progress.add(b));
      try {
        const out = await wire(s.h, {
          method: "PUT", bucket: s.bucket, key, body, length: len, query: { partNumber: String(i + 1), uploadId }, signal,
        });
        out.body.resume();
        const md5 = tap.md5();
        if (tap.bytes !== len) checkSent(tap, { ...file, size: len }, "", "", `${target} part ${i + 1}`);
        const got = stripEtag(out.headers.etag);
        if (got.toLowerCase() !== md5) throw new ChecksumMismatch(`part ${i + 1}: ETag ${got} does not match the sent bytes (${md5})`);
        digests[i] = Buffer.from(md5, "hex");
        return { ETag: out.headers.etag, PartNumber: i + 1 };
      } catch (e) {
        progress.add(-tap.bytes);
        body.destroy();
        throw e;
      }
    })).catch((e) => {
      failed = true;
      throw e;
    })));
    const bad = settled.find((r) => r.status === "rejected");
    if (bad) throw (bad as PromiseRejectedResult).reason;
    const parts = settled.map((r) => (r as PromiseFulfilledResult<{ ETag: string | undefined; PartNumber: number }>).value);
    const expected = `${createHash("md5").update(Buffer.concat(digests)).digest("hex")}-${n}`;
    const list = completionXml(parts);
    let tries = 0;
    let done: string;
    try {
      done = await transfer(s, `${target} complete`, async () => {
        try {
          tries++;
          const out = await wireXml(s.h, {
            method: "POST", bucket: s.bucket, key, query: { uploadId }, body: list, headers: { "content-type": "application/xml" }, signal,
          });
          // Ceph 16 answers <ETag></ETag>: ask for it.
          const etag = out?.CompleteMultipartUploadResult?.ETag;
          if (typeof etag === "string" && etag) return stripEtag(etag);
          return await headEtag();
        } catch (e: any) {
          // A retried complete whose first try went through: the object is there.
          if (tries > 1 && e?.name === "NoSuchUpload") return await headEtag();
          // Another completion holds the upload (its answer was lost): done if the object is there.
          if (completionInProgress(e) && (await headEtag().catch(() => undefined)) === expected) return expected;
          throw e;
        }
      });
    } catch (e) {
      // The retries ran out: one last look, in case the held completion finished meanwhile.
      if (signal.aborted || !completionInProgress((e as any)?.cause ?? e) || (await headEtag().catch(() => undefined)) !== expected) throw e;
      done = expected;
    }
    if (done !== expected) {
      throw new VerifyError(`s3 ${target}: multipart ETag ${done} does not match the sent parts (${expected})`, [], "run the sync again");
    }
    return done;
  } catch (e) {
    await abortUpload(s, key, uploadId, target);
    throw e;
  }
}

/** Aborts a multipart upload, riding out a gateway restart; when it cannot, says which upload is left and how to remove it. */
async function abortUpload(s: SyncState, key: string, uploadId: string, target: string): Promise<void> {
  try {
    await patiently(Math.max(s.attempts, ABORT_ATTEMPTS), async () => {
      try {
        (await wire(s.h, { method: "DELETE", bucket: s.bucket, key, query: { uploadId }, signal: CLEANUP })).body.resume();
      } catch (e: any) {
        if (e?.name !== "NoSuchUpload") throw e; // already gone (completed or aborted)
      }
    }, CLEANUP);
  } catch (e) {
    s.ctx.log.warn(`s3 ${target}: could not abort multipart upload ${uploadId} (${(e as Error).message}); its parts take space until it is ` +
      `aborted: run the sync again once the gateway answers, or abort it (aws s3api abort-multipart-upload, or s3RemoveBucket with purge)`);
  }
}
