// s3/etag.ts: ETag arithmetic and hashing. What an ETag is (an MD5, MD5-of-part-MD5s "-N",
// or opaque), the part sizes that may have made a multipart one, a Hasher that computes them
// all in one pass, and the file reader and writer that hash as the bytes go by.
import { Buffer } from "node:buffer";
import process from "node:process";
import { createHash, type Hash } from "node:crypto";
import { closeSync, futimesSync, open, openSync, readSync, writeSync } from "node:fs";
import { Readable, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";

export const MiB = 1024 * 1024;

export type Scheme = { kind: "md5" } | { kind: "multipart"; parts: number } | { kind: "opaque" };

/** What kind of ETag this is. */
export function schemeOf(etag: string): Scheme {
  if (/^[0-9a-f]{32}$/i.test(etag)) return { kind: "md5" };
  const m = /^[0-9a-f]{32}-(\d+)$/i.exec(etag);
  if (m) return { kind: "multipart", parts: Number(m[1]) };
  return { kind: "opaque" };
}

/** Part sizes that give `parts` parts for `size` bytes, the likeliest first (hints, then the common client defaults). */
export function partSizeCandidates(size: number, parts: number, hints: (number | undefined)[] = []): number[] {
  if (parts <= 1) return [Math.max(size, 1)];
  const fits = (p: number) => p > 0 && Math.ceil(size / p) === parts;
  const out: number[] = [];
  const add = (p: number | undefined) => {
    if (p && fits(p) && !out.includes(p)) out.push(p);
  };
  hints.forEach(add);
  // lifeboat, rclone, the SDK: 5 MiB; aws cli, boto3: 8 MiB; s3cmd: 15 MiB; minio: 16 MiB and up.
  [5, 8, 15, 16, 10, 32, 50, 64, 100, 128, 256, 512, 1024].forEach((m) => add(m * MiB));
  // Whole MiB sizes in range, then the smallest exact size.
  const lo = Math.ceil(size / parts);
  for (let p = Math.ceil(lo / MiB) * MiB; fits(p) && out.length < 24; p += MiB) add(p);
  add(lo);
  return out.slice(0, 24);
}

/** What a Hasher found: bytes, the whole MD5 (when asked for) and the multipart ETag for each part size asked for. */
export interface Digests {
  bytes: number;
  md5?: string;
  multipart: { partSize: number; etag: string }[];
}

/** MD5 of everything it is given, and/or MD5-of-part-MD5s for several part sizes; counts bytes. */
export class Hasher {
  bytes = 0;
  readonly #whole: Hash | null;
  readonly #cands: { size: number; cur: Hash; filled: number; digests: Buffer[] }[];

  constructor(opts: { whole: boolean; partSizes?: number[] }) {
    this.#whole = opts.whole ? createHash("md5") : null;
    this.#cands = (opts.partSizes ?? []).map((size) => ({ size, cur: createHash("md5"), filled: 0, digests: [] }));
  }

  update(chunk: Buffer): void {
    this.bytes += chunk.length;
    this.#whole?.update(chunk);
    for (const c of this.#cands) {
      let off = 0;
      while (off < chunk.length) {
        const take = Math.min(c.size - c.filled, chunk.length - off);
        c.cur.update(off === 0 && take === chunk.length ? chunk : chunk.subarray(off, off + take));
        c.filled += take;
        off += take;
        if (c.filled === c.size) {
          c.digests.push(c.cur.digest());
          c.cur = createHash("md5");
          c.filled = 0;
        }
      }
    }
  }

  /** The whole MD5 in hex (once, at the end). */
  md5(): string {
    return this.#whole!.digest("hex");
  }

  /** Everything it computed (once, at the end). */
  digests(): Digests {
    return { bytes: this.bytes, md5: this.#whole ? this.md5() : undefined, multipart: this.multipart() };
  }

  /** ETag "md5-N" for each part size (once, at the end). */
  multipart(): { partSize: number; etag: string }[] {
    return this.#cands.map((c) => {
      const digests = c.filled > 0 || c.digests.length === 0 ? [...c.digests, c.cur.digest()] : c.digests;
      return { partSize: c.size, etag: `${createHash("md5").update(Buffer.concat(digests)).digest("hex")}-${digests.length}` };
    });
  }
}

const CHUNK_READ = 256 << 10;
/** Chunks sendTo writes: buffers handed back once the socket took them, so that an upload of any size makes no garbage. */
const SEND_CHUNK = 64 << 10;
const spare: Buffer[] = [];
const SPARE_MAX = 256;

/**
 * len bytes of a file from start, hashed as they are read. Reads are synchronous and at most
 * 256 KiB: on this kind of machine a thread-pool round trip per open, read and close costs more
 * than the read itself, and thousands of small files are the common case.
 */
export class FileSource extends Readable {
  #fd: number | null = null;
  #pos: number;
  #left: number;
  readonly #path: string;
  readonly #hash: Hasher;
  readonly #onBytes?: (n: number) => void;

  constructor(path: string, start: number, len: number, hash: Hasher, onBytes?: (n: number) => void) {
    super({ highWaterMark: CHUNK_READ });
    this.#path = path;
    this.#pos = start;
    this.#left = len;
    this.#hash = hash;
    this.#onBytes = onBytes;
  }

  override _read(): void {
    try {
      if (this.#left <= 0) {
        this.push(null);
        return;
      }
      this.#fd ??= openSync(this.#path, "r");
      const buf = Buffer.allocUnsafe(Math.min(CHUNK_READ, this.#left));
      const n = readSync(this.#fd, buf, 0, buf.length, this.#pos);
      if (n === 0) {
        this.destroy(Object.assign(new Error(`${this.#path}: file shrank while it was read`), { code: "EFILECHANGED" }));
        return;
      }
      const chunk = n === buf.length ? buf : buf.subarray(0, n);
      this.#pos += n;
      this.#left -= n;
      this.#hash.update(chunk);
      this.#onBytes?.(n);
      this.push(chunk);
    } catch (e) {
      this.destroy(e as Error);
    }
  }

  /**
   * Writes the bytes into out (an HTTP request body) and ends it, hashing them as they go; each
   * buffer is used again once out has handed it to the kernel. Stops when out is destroyed.
   */
  async sendTo(out: Writable): Promise<void> {
    try {
      this.#fd ??= openSync(this.#path, "r");
      while (this.#left > 0) {
        if (out.destroyed) return;
        const buf = spare.pop() ?? Buffer.allocUnsafeSlow(SEND_CHUNK);
        const n = readSync(this.#fd, buf, 0, Math.min(SEND_CHUNK, this.#left), this.#pos);
        if (n === 0) throw Object.assign(new Error(`${this.#path}: file shrank while it was read`), { code: "EFILECHANGED" });
        const chunk = n === buf.length ? buf : buf.subarray(0, n);
        this.#pos += n;
        this.#left -= n;
        this.#hash.update(chunk);
        this.#onBytes?.(n);
        const more = out.write(chunk, (err) => {
          if (!err && spare.length < SPARE_MAX) spare.push(buf);
        });
        if (!more && this.#left > 0 && !out.destroyed) {
          await new Promise<void>((ok) => {
            const go = () => {
              out.off("drain", go);
              out.off("close", go);
              ok();
            };
            out.once("drain", go);
            out.once("close", go);
          });
        }
      }
      if (!out.destroyed) out.end();
    } finally {
      this.destroy();
    }
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (this.#fd !== null) closeSync(this.#fd);
    this.#fd = null;
    cb(err);
  }
}

/**
 * Streams a response body into a new file (O_EXCL), hashing it, and sets its mtime. The open
 * goes to the thread pool (creating a file can wait on the filesystem's journal while other
 * data is written back); the writes, into the page cache, are synchronous, one chunk at a time,
 * as FileSource reads.
 */
export async function saveBody(
  path: string, body: Readable, opts: { whole: boolean; partSizes: number[] }, onBytes: (n: number) => void, mtime?: Date,
): Promise<Digests> {
  const hash = new Hasher(opts);
  const fd = await new Promise<number>((ok, fail) => open(path, "wx", 0o600, (e, fd) => (e ? fail(e) : ok(fd))));
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      for (let off = 0; off < chunk.length; ) off += writeSync(fd, chunk, off);
      hash.update(chunk);
      onBytes(chunk.length);
      releaseBuffer(chunk); // written and hashed: nothing holds it
    }
    if (mtime) futimesSync(fd, mtime, mtime);
  } finally {
    closeSync(fd);
  }
  return hash.digests();
}

/**
 * Whether {@link releaseBuffer} may free buffers: on Node (22 and later: ArrayBuffer.transfer),
 * whose HTTP parser copies each body piece out of the socket's read (so a socket read and a body
 * chunk each own their memory). Not on Deno, whose node:http is built differently.
 */
const CAN_RELEASE = !(process.versions as Record<string, string | undefined>).deno &&
  typeof (ArrayBuffer.prototype as { transfer?: unknown }).transfer === "function";

/**
 * Frees a buffer's memory now rather than when the collector gets to it, by detaching its
 * ArrayBuffer (`transfer(0)`): for the 64 KiB pieces a download reads, which V8 counts as external
 * memory and frees late (a 2 GiB download's RSS peaked 60-80 MiB higher, and its CPU was a quarter
 * more). Only a buffer of 16 KiB or more that is the whole of its ArrayBuffer (never a slice of
 * Buffer's pool, which serves only sizes under half the pool), and only when the caller holds the
 * last use of it: it reads as empty after.
 * @example for await (const c of body) { writeSync(fd, c); releaseBuffer(c); }
 */
export function releaseBuffer(b: Buffer): void {
  const ab = b.buffer as ArrayBuffer & { transfer?: (n: number) => ArrayBuffer; detached?: boolean };
  if (CAN_RELEASE && b.length >= 16384 && b.byteOffset === 0 && b.length === ab.byteLength && !ab.detached) ab.transfer!(0);
}

/** Reads size bytes of a local file and computes the digests asked for. */
export async function hashFile(path: string, size: number, opts: { whole: boolean; partSizes: number[] }): Promise<Digests> {
  const tap = new Hasher(opts);
  await pipeline(new FileSource(path, 0, size, tap), async function* (src) {
    for await (const _ of src) { /* drain */ }
  });
  return tap.digests();
}

/** Reads a local file and tells whether it matches an ETag; gives the part size that reproduces a multipart one. */
export async function localMatches(
  path: string, size: number, etag: string, hints: (number | undefined)[], md5?: string,
): Promise<{ match: boolean; partSize?: number }> {
  const scheme = schemeOf(etag);
  if (scheme.kind === "opaque") return { match: true };
  const cands = scheme.kind === "multipart" ? partSizeCandidates(size, scheme.parts, hints) : [];
  const d = await hashFile(path, size, { whole: scheme.kind === "md5" || !!md5, partSizes: cands });
  if (scheme.kind === "md5") return { match: d.md5 === etag.toLowerCase() };
  const hit = d.multipart.find((m) => m.etag === etag.toLowerCase());
  // An unverified object (see S3IndexEntry.unverified) is compared by the MD5 the index kept.
  return hit ? { match: true, partSize: hit.partSize } : { match: !!md5 && d.md5 === md5 };
}
