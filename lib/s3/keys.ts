// s3/keys.ts: how keys become local names. The reserved top-level names of a synced dir,
// s3:// URLs, and the escaping of keys that cannot be a safe, 1:1 local path: they are kept
// under `.lifeboat-s3-escaped/`, percent-encoded (every byte but A-Z a-z 0-9 _ -), cut into
// 240-byte directories, ending in `.key`; the name alone gives the key back.
import { Buffer } from "node:buffer";
import { UsageError } from "../errors.ts";

/** Reserved top-level name of the index in a synced dir; never uploaded. */
export const S3_INDEX_NAME = ".lifeboat-s3-index.jsonl";
/** Reserved top-level dir holding objects whose keys cannot be local paths; their keys are uploaded, not this name. */
export const S3_ESCAPED_DIR = ".lifeboat-s3-escaped";
/** Reserved top-level dir for downloads in progress. */
export const S3_TMP_DIR = ".lifeboat-s3-tmp";
/** Every reserved name starts so. */
export const RESERVED = ".lifeboat-s3-";

/** Splits "s3://bucket/some/prefix" into bucket and a prefix that is "" or ends in "/". */
export function parseS3Url(url: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([^/]+)(?:\/(.*))?$/.exec(url);
  if (!m) throw new UsageError(`'${url}' is not an s3:// URL`, "write it as s3://BUCKET or s3://BUCKET/PREFIX");
  let prefix = m[2] ?? "";
  if (prefix && !prefix.endsWith("/")) prefix += "/";
  return { bucket: m[1], prefix };
}

const NAME_MAX = 255;
const CHUNK = 240;

/** The escaped local path (relative to the synced dir) of a key that cannot be a path. */
export function s3EscapedPath(rel: string): string {
  let enc = "";
  for (const b of Buffer.from(rel, "utf8")) {
    const c = String.fromCharCode(b);
    enc += /[A-Za-z0-9_-]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  const parts: string[] = [];
  let i = 0;
  while (enc.length - i > CHUNK) {
    let end = i + CHUNK;
    if (enc[end - 1] === "%") end -= 1;
    else if (enc[end - 2] === "%") end -= 2;
    parts.push(enc.slice(i, end));
    i = end;
  }
  parts.push(enc.slice(i) + ".key");
  return `${S3_ESCAPED_DIR}/${parts.join("/")}`;
}

/** The key (relative to the prefix) an escaped path stands for, or null when the name is not one of ours. */
export function s3UnescapePath(path: string): string | null {
  if (!path.startsWith(`${S3_ESCAPED_DIR}/`) || !path.endsWith(".key")) return null;
  const enc = path.slice(S3_ESCAPED_DIR.length + 1, -4).replace(/\//g, "");
  if (!/^(?:[A-Za-z0-9_-]|%[0-9A-F]{2})*$/.test(enc)) return null;
  const bytes = Buffer.from(enc.replace(/%([0-9A-F]{2})|([A-Za-z0-9_-])/g, (_, h, c) => (h ? String.fromCharCode(parseInt(h, 16)) : c)), "latin1");
  return bytes.toString("utf8");
}

/** True when REL can be used as a local path as it is (conflicts with other keys aside). */
export function plainPathOk(rel: string): boolean {
  if (rel === "") return false;
  const segs = rel.split("/");
  if (segs[0].startsWith(RESERVED)) return false;
  for (const s of segs) {
    if (s === "" || s === "." || s === ".." || s.includes("\0") || Buffer.byteLength(s) > NAME_MAX) return false;
  }
  return true;
}

