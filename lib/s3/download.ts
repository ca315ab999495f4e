// s3/download.ts: the download half of s3Sync (s3:// → dir): map keys to local names, compare,
// GET into a temp file, check against the ETag, rename into place, then write the index.
import * as fsp from "node:fs/promises";
import { lstatSync, mkdirSync, readdirSync, rmdirSync, rmSync, statSync, unlinkSync } from "node:fs";
import { dirname, join } from "node:path";
import process from "node:process";
import { failures, limit as limiter, mapLimit, type Limit } from "../limit.ts";
import { pidAlive } from "../lock.ts";
import { formatBytes, type Progress } from "../log.ts";
import { ChecksumMismatch } from "./errors.ts";
import { hashFile, localMatches, partSizeCandidates, saveBody, schemeOf } from "./etag.ts";
import { wire } from "./fast.ts";
import { cachedEtag, headersFromWire, indexHeader, readS3Index, writeIndex, type S3IndexEntry } from "./index.ts";
import { plainPathOk, s3EscapedPath, S3_TMP_DIR } from "./keys.ts";
import { stripEtag, type S3Object } from "./list.ts";
import { failAll, finish, listRemote, partialPrefix, startProgress, transfer, walkLocal, type LocalFile, type SyncState } from "./run.ts";
import type { S3SyncReport } from "./sync.ts";

/** Decides each key's local path: itself when safe and free, else its escaped name. */
function mapKeys(s: SyncState, remote: Map<string, S3Object>, local: Map<string, LocalFile>, deleting: (p: string) => boolean): Map<string, string> {
  const rels = [...remote.keys()].map((k) => k.slice(s.prefix.length));
  const plain = rels.filter(plainPathOk);
  const dirs = new Set<string>();
  for (const r of plain) {
    for (let i = r.indexOf("/"); i >= 0; i = r.indexOf("/", i + 1)) dirs.add(r.slice(0, i));
  }
  // What is on disk where a dir or a file must go (a file not being deleted, a dir, a symlink).
  const kind = new Map<string, "dir" | "other" | "none">();
  const onDisk = (p: string) => {
    let k = kind.get(p);
    if (k === undefined) {
      try {
        const st = lstatSync(join(s.dir, p));
        k = st.isDirectory() ? "dir" : "other";
      } catch {
        k = "none";
      }
      kind.set(p, k);
    }
    return k;
  };
  const out = new Map<string, string>();
  for (const rel of rels) {
    const abs = join(s.dir, rel);
    let ok = plainPathOk(rel) && !dirs.has(rel) && (!s.indexPath || (abs !== s.indexPath && !abs.startsWith(partialPrefix(s.indexPath))));
    if (ok) {
      if (onDisk(rel) === "dir") ok = false;
      for (let i = rel.indexOf("/"); ok && i >= 0; i = rel.indexOf("/", i + 1)) {
        const d = rel.slice(0, i);
        const k = onDisk(d);
        // A file in the way stays unless it is being deleted; a symlink (perhaps to outside) always stays.
        if (k === "other" && !(local.has(d) && deleting(d))) ok = false;
      }
    }
    out.set(s.prefix + rel, ok ? rel : s3EscapedPath(rel));
  }
  return out;
}

export async function download(s: SyncState, src: string, dst: string): Promise<S3SyncReport> {
  const { ctx } = s;
  const listing = listRemote(s);
  await new Promise((r) => setImmediate(r)); // the first list request is on the wire while the dir is read
  const local = walkLocal(s.dir, ctx, false, s.indexPath);
  const index = s.indexPath ? readS3Index(s.indexPath) : readS3Index("");
  const remote = await listing;
  const unmapped = new Set(local.keys());
  const mapping = mapKeys(s, remote, local, (p) => s.delete && unmapped.has(p));
  for (const p of mapping.values()) unmapped.delete(p);
  const extras = s.delete ? [...unmapped] : [];

  interface Job { obj: S3Object; rel: string; path: string; file?: LocalFile; entry?: S3IndexEntry }
  const jobs: Job[] = [];
  let bytes = 0;
  let escaped = 0;
  for (const [key, path] of mapping) {
    const obj = remote.get(key)!;
    const rel = key.slice(s.prefix.length);
    if (path !== rel) escaped++;
    bytes += obj.size;
    const e = index.get(path);
    jobs.push({ obj, rel, path, file: local.get(path), entry: e && e.rel === rel ? e : undefined });
  }

  const todo: Job[] = [];
  const entries: S3IndexEntry[] = [];
  const needHead: Job[] = [];
  let fromCache = 0;
  const errs = failures(await mapLimit(jobs, s.concurrency, async (j) => {
    const f = j.file;
    let same = !!f && f.size === j.obj.size;
    let partSize = j.entry?.etag === j.obj.etag ? j.entry.partSize : undefined;
    if (same && s.checksum) {
      const cached = s.rehash ? undefined : cachedEtag(j.entry, f!, index.writtenAt ?? 0);
      if (cached !== undefined) {
        same = cached === j.obj.etag;
        fromCache++;
      } else {
        const m = await localMatches(f!.abs, f!.size, j.obj.etag, [j.entry?.partSize], j.entry?.etag === j.obj.etag ? j.entry.md5 : undefined);
        same = m.match;
        partSize = m.partSize ?? partSize;
      }
    }
    if (!same) return void todo.push(j);
    const base = j.entry?.etag === j.obj.etag ? j.entry : undefined;
    const e: S3IndexEntry = { ...(base ?? {}), rel: j.rel, path: j.path, size: j.obj.size, etag: j.obj.etag, partSize, mtimeMs: f!.mtimeMs };
    entries.push(e);
    if (!base && s.indexPath) needHead.push({ ...j, entry: e });
  }, { signal: ctx.signal }));
  if (errs.length) failAll(s, "compare", errs);

  const report: S3SyncReport = {
    direction: "download", source: src, destination: dst, objects: jobs.length, bytes,
    uploaded: 0, downloaded: todo.length, deleted: extras.length, skipped: jobs.length - todo.length,
    transferredBytes: todo.reduce((n, j) => n + j.obj.size, 0), escaped, unverified: 0, index: s.indexPath, dryRun: ctx.dryRun, durationMs: 0,
  };
  if (ctx.dryRun) {
    for (const k of extras) ctx.log.command(`s3 delete local ${k}`, "dry-run");
    for (const j of todo) ctx.log.command(`s3 download s3://${s.bucket}/${j.obj.key} → ${j.path}`, "dry-run");
    report.durationMs = Date.now() - s.started;
    return report;
  }

  // Deletes first, so that a file in the way of a new directory is gone before it is needed.
  for (const p of extras) {
    unlinkSync(join(s.dir, p));
    pruneDirs(s.dir, p);
  }
  const tmpRoot = join(s.dir, S3_TMP_DIR);
  cleanTmp(tmpRoot);
  const tmpDir = join(tmpRoot, String(process.pid));
  mkdirSync(tmpDir, { recursive: true, mode: 0o700 }); // and the destination, if new: private, as the files in it
  const progress = startProgress(s, `download s3://${s.bucket}/${s.prefix} →`, report.transferredBytes);
  const limit = limiter(s.concurrency);
  todo.sort((a, b) => b.obj.size - a.obj.size);
  let seq = 0;
  const heads = new Set(needHead);
  const downErrs = failures(await mapLimit([...todo, ...needHead], s.concurrency, async (j) => {
    if (heads.has(j)) {
      // Unchanged, but the index lacks its headers: ask for them (and the part size).
      const head = await headFor(s, j.obj, j.entry!.partSize, limit);
      Object.assign(j.entry!, head);
      return;
    }
    entries.push(await downloadObject(s, j.obj, j.rel, j.path, j.entry, tmpDir, () => seq++, limit, progress));
  }, { signal: ctx.signal }));
  rmSync(tmpDir, { recursive: true, force: true });
  try {
    rmdirSync(tmpRoot);
  } catch { /* another sync's files */ }
  const unchanged = todo.length === 0 && extras.length === 0 && needHead.length === 0 && fromCache === jobs.length && index.size === jobs.length;
  if (s.indexPath && !unchanged) writeIndex(s.indexPath, indexHeader(s.h.endpoint, s.bucket, s.prefix, entries), entries);
  if (downErrs.length) {
    progress.fail();
    failAll(s, "download", downErrs);
  }
  report.unverified = entries.filter((e) => e.unverified).length;
  return finish(s, report, progress);
}

/** Removes the per-process temp dirs of syncs that are no longer running. */
function cleanTmp(tmpRoot: string): void {
  let names: string[];
  try {
    names = readdirSync(tmpRoot);
  } catch {
    return;
  }
  for (const n of names) if (!/^\d+$/.test(n) || !pidAlive(Number(n))) rmSync(join(tmpRoot, n), { recursive: true, force: true });
}

/** After a delete, removes the dirs it left empty, up to the root. */
function pruneDirs(root: string, path: string): void {
  for (let d = dirname(path); d !== "." && d !== ""; d = dirname(d)) {
    try {
      rmdirSync(join(root, d));
    } catch {
      return;
    }
  }
}

/** HEAD of an object (part 1 of a multipart one, whose length is the part size), on the lean path. */
async function headFor(s: SyncState, obj: S3Object, partSize: number | undefined, limit: Limit): Promise<Partial<S3IndexEntry>> {
  const askPart = schemeOf(obj.etag).kind === "multipart" && !partSize && s.partHeads !== false;
  const res = await transfer(s, `head s3://${s.bucket}/${obj.key}`, () => limit(async () => {
    const r = await wire(s.h, { method: "HEAD", bucket: s.bucket, key: obj.key, query: askPart ? { partNumber: "1" } : undefined, signal: s.ctx.signal });
    r.body.resume();
    return r;
  }));
  const h = headersFromWire(res.headers);
  if (askPart) {
    const parts = Number(res.headers["x-amz-mp-parts-count"] ?? 0);
    s.partHeads = parts > 0;
    if (parts > 0 && res.headers["content-length"]) h.partSize = Number(res.headers["content-length"]);
  }
  return h;
}

async function downloadObject(
  s: SyncState, obj: S3Object, rel: string, path: string, entry: S3IndexEntry | undefined, tmpDir: string,
  nextSeq: () => number, limit: Limit, progress: Progress,
): Promise<S3IndexEntry> {
  const target = `download s3://${s.bucket}/${obj.key}`;
  const scheme = schemeOf(obj.etag);
  // The part size: from the index, else from HEAD ?partNumber=1, else guessed among the likely ones.
  let hint = entry?.etag === obj.etag ? entry.partSize : undefined;
  if (scheme.kind === "multipart" && !hint && s.partHeads !== false) hint = (await headFor(s, obj, undefined, limit)).partSize;
  let firstMd5: string | undefined;
  return transfer(s, target, () => limit(async () => {
    const res = await wire(s.h, { method: "GET", bucket: s.bucket, key: obj.key, signal: s.ctx.signal });
    const etag = stripEtag(res.headers.etag);
    const size = Number(res.headers["content-length"] ?? 0);
    const modified = res.headers["last-modified"] ? new Date(res.headers["last-modified"]) : undefined;
    const sch = schemeOf(etag);
    const cands = sch.kind === "multipart" ? partSizeCandidates(size, sch.parts, [hint]) : [];
    // Hashed as it arrives: the MD5 of a plain ETag; for a multipart one, its likeliest part
    // size only (the others, and the whole MD5, are read back from the file if that one misses).
    const want = { whole: sch.kind === "md5", partSizes: cands.slice(0, 1) };
    const tmp = join(tmpDir, String(nextSeq()));
    let got = 0;
    const onBytes = (n: number) => {
      got += n;
      s.alive = Date.now();
      progress.add(n);
    };
    try {
      const d = await saveBody(tmp, res.body, want, onBytes, modified);
      if (d.bytes !== size) throw Object.assign(new Error(`short body: ${d.bytes} of ${size} bytes`), { code: "ECONNRESET" });
      let partSize: number | undefined;
      let unverified: Partial<S3IndexEntry> = {};
      if (sch.kind === "md5") {
        if (d.md5 !== etag.toLowerCase()) throw new ChecksumMismatch(`received bytes have MD5 ${d.md5}, ETag is ${etag}`);
      } else if (sch.kind === "multipart") {
        let hit = d.multipart.find((m) => m.etag === etag.toLowerCase());
        let md5: string | undefined;
        if (!hit) {
          const more = await hashFile(tmp, size, { whole: true, partSizes: cands.slice(1) });
          hit = more.multipart.find((m) => m.etag === etag.toLowerCase());
          md5 = more.md5;
        }
        if (hit) partSize = hit.partSize;
        else if (md5 === firstMd5) {
          // Parts of unusual or unequal sizes: no part size reproduces the ETag. Two reads gave the same bytes: keep them.
          unverified = { unverified: true, md5 };
          s.ctx.log.warn(`s3 ${target}: no likely part size reproduces the multipart ETag ${etag}; the bytes read twice alike ` +
            `(MD5 ${md5}) and are kept unverified; an upload will give this object a different ETag`);
        } else {
          firstMd5 ??= md5;
          throw new ChecksumMismatch(`received bytes match multipart ETag ${etag} for none of the part sizes ${cands.map((c) => formatBytes(c)).join(", ")}`);
        }
      }
      const final = join(s.dir, path);
      const parent = dirname(final);
      if (!s.made.has(parent)) {
        mkdirSync(parent, { recursive: true, mode: 0o700 });
        s.made.add(parent);
      }
      await fsp.rename(tmp, final); // in the thread pool too: it can wait on the journal
      const mtimeMs = modified ? modified.getTime() : statSync(final).mtimeMs;
      return { ...headersFromWire(res.headers), rel, path, size, etag, partSize, ...unverified, mtimeMs } as S3IndexEntry;
    } catch (e) {
      res.body.destroy(); // a body left unread would hold its socket
      progress.add(-got);
      rmSync(tmp, { force: true });
      throw e;
    }
  }));
}

