// s3/index.ts: the index a download writes beside the objects (`.lifeboat-s3-index.jsonl`):
// a header line, then one line per object with its key, local path, size, ETag, the part size
// that reproduces a multipart ETag, content type, user metadata and the local file's mtime.
// An upload of a dir with an index re-sends each object with its recorded part size, content
// type and metadata, so keys, bytes and ETags come back identical. Also the mapping between
// an object's headers (HTTP or SDK) and the index's record of them.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { partialFile } from "../files.ts";

const INDEX_FORMAT = "lifeboat-s3-index/1";

/** One object as the index records it. */
export interface S3IndexEntry {
  /** Key relative to the synced prefix. */
  rel: string;
  /** Local path relative to the synced dir ("/"-separated): rel itself, or its escaped name. */
  path: string;
  size: number;
  etag: string;
  /** Part size that reproduces a multipart ETag. */
  partSize?: number;
  contentType?: string;
  cacheControl?: string;
  contentDisposition?: string;
  contentEncoding?: string;
  contentLanguage?: string;
  /** User metadata (x-amz-meta-*). */
  metadata?: Record<string, string>;
  /** Last-Modified on the gateway, ISO 8601. */
  lastModified?: string;
  /** The local file's mtime when it was known to hold this ETag. */
  mtimeMs?: number;
  /** No part size reproduced the multipart ETag: the bytes were read twice alike but not checked against it. */
  unverified?: boolean;
  /** MD5 of the content, kept for unverified objects. */
  md5?: string;
}

export interface IndexHeader {
  format: string;
  endpoint?: string;
  bucket?: string;
  prefix?: string;
  writtenAt?: string;
  objects?: number;
  bytes?: number;
}

/** Reads an index written by s3Sync (entries by local path); an absent or foreign file gives an empty index. */
export function readS3Index(path: string): Map<string, S3IndexEntry> & { writtenAt?: number } {
  const out: Map<string, S3IndexEntry> & { writtenAt?: number } = new Map<string, S3IndexEntry>();
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return out;
  }
  const lines = text.split("\n");
  try {
    const head = JSON.parse(lines[0]) as IndexHeader;
    if (head.format !== INDEX_FORMAT) return out;
    out.writtenAt = Date.parse(head.writtenAt ?? "") || 0;
    for (const line of lines.slice(1)) {
      if (!line) continue;
      const e = JSON.parse(line) as S3IndexEntry;
      out.set(e.path, e);
    }
  } catch {
    return new Map();
  }
  return out;
}

export function writeIndex(path: string, head: IndexHeader, entries: S3IndexEntry[]): void {
  entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const lines = [JSON.stringify(head)];
  for (const e of entries) lines.push(JSON.stringify(e));
  mkdirSync(dirname(path), { recursive: true });
  const f = partialFile(path);
  try {
    writeFileSync(f.tmp, lines.join("\n") + "\n", { mode: 0o600 });
    f.commit();
  } catch (e) {
    f.discard();
    throw e;
  }
}

/**
 * The ETag the index holds for a local file that is unchanged since (same size and mtime).
 * An mtime within 2 s of the index's writing is not trusted (git's "racily clean" rule): a
 * write in the same clock tick leaves the mtime as it was.
 */
export function cachedEtag(e: S3IndexEntry | undefined, st: { size: number; mtimeMs: number }, writtenAt: number): string | undefined {
  return e && e.mtimeMs === st.mtimeMs && e.size === st.size && e.mtimeMs < writtenAt - 2000 ? e.etag : undefined;
}

/** The index's header line for a sync of s3://bucket/prefix on endpoint. */
export function indexHeader(endpoint: string, bucket: string, prefix: string, entries: S3IndexEntry[]): IndexHeader {
  return {
    format: INDEX_FORMAT,
    endpoint,
    bucket,
    prefix,
    writtenAt: new Date().toISOString(),
    objects: entries.length,
    bytes: entries.reduce((n, e) => n + e.size, 0),
  };
}

/** Object headers a PUT carries (the index's record of them). */
export function putHeaders(e: S3IndexEntry | undefined): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {
    "content-type": e?.contentType,
    "cache-control": e?.cacheControl,
    "content-disposition": e?.contentDisposition,
    "content-encoding": e?.contentEncoding,
    "content-language": e?.contentLanguage,
  };
  for (const [k, v] of Object.entries(e?.metadata ?? {})) out[`x-amz-meta-${k}`] = v;
  return out;
}

/** The index's record of an object's headers, from a GET's response headers. */
export function headersFromWire(hd: Record<string, string>): Partial<S3IndexEntry> {
  const out: Partial<S3IndexEntry> = {};
  if (hd["content-type"]) out.contentType = hd["content-type"];
  if (hd["cache-control"]) out.cacheControl = hd["cache-control"];
  if (hd["content-disposition"]) out.contentDisposition = hd["content-disposition"];
  if (hd["content-encoding"]) out.contentEncoding = hd["content-encoding"];
  if (hd["content-language"]) out.contentLanguage = hd["content-language"];
  const meta: Record<string, string> = {};
  for (const [k, v] of Object.entries(hd)) if (k.startsWith("x-amz-meta-")) meta[k.slice(11)] = v;
  if (Object.keys(meta).length) out.metadata = meta;
  if (hd["last-modified"]) out.lastModified = new Date(hd["last-modified"]).toISOString();
  return out;
}
