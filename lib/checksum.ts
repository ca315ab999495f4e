// checksum: `sha1sum`-format files beside archives, as LambdaStack's backup role writes them
// (`<sha1hex>  <archive basename>\n` in `<archive>.sha1`) and its recovery checks them.
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { createReadStream, existsSync, fstatSync, openSync, readFileSync, writeFileSync, renameSync } from "node:fs";
import { basename } from "node:path";
import { pipeline } from "node:stream/promises";
import process from "node:process";
import { Worker } from "node:worker_threads";
import { useContext, type Context } from "./context.ts";
import { VerifyError } from "./errors.ts";

/**
 * The sha1 of a file, hex, read as a stream.
 * @example const hex = await sha1File("/lsbackup/mounted/haproxy_etc_20260101-120000.tar.gz");
 */
export async function sha1File(path: string): Promise<string> {
  return (await fileDigest(path, "sha1")).digest;
}

/**
 * Writes `<path>.sha1` in sha1sum format (`sha1sum -c` checks it), atomically, 0600. In dry-run
 * it says so and writes nothing.
 * @example const sumFile = await writeSha1File(archive);   // archive + ".sha1"
 */
export async function writeSha1File(path: string, opts: { ctx?: Context } = {}): Promise<string> {
  const ctx = opts.ctx ?? useContext();
  const out = `${path}.sha1`;
  if (ctx.dryRun) {
    ctx.log.info(`[dry-run] sha1sum ${basename(path)} > ${out}`);
    return out;
  }
  const tmp = `${out}.partial-${process.pid}`;
  writeFileSync(tmp, `${await sha1File(path)}  ${basename(path)}\n`, { mode: 0o600 });
  renameSync(tmp, out);
  return out;
}

/**
 * Checks a file against its sha1sum-format file (default `<path>.sha1`): the sum must be the
 * file's and the name must be the file's. Throws a VerifyError (exit 3) saying which.
 * @example await checkSha1File(localCopy, `${localCopy}.sha1`);
 */
export async function checkSha1File(path: string, sumFile = `${path}.sha1`, opts: { name?: string } = {}): Promise<string> {
  const label = opts.name ?? basename(path);
  if (!existsSync(sumFile)) throw new VerifyError(`${label}: no checksum file ${basename(sumFile)}`, [], "the archive cannot be trusted without it; restore refused before touching anything");
  const line = readFileSync(sumFile, "utf8").split("\n")[0] ?? "";
  const m = /^([0-9a-f]{40}) [ *](.+)$/.exec(line.trim());
  if (!m) throw new VerifyError(`${label}: ${basename(sumFile)} is not in sha1sum format: ${JSON.stringify(line.slice(0, 80))}`, [], "the checksum file is damaged; restore refused before touching anything");
  if (m[2] !== label) throw new VerifyError(`${label}: ${basename(sumFile)} is for ${m[2]}`, [], "the checksum file belongs to another archive; restore refused before touching anything");
  const actual = await sha1File(path);
  if (actual !== m[1]) throw new VerifyError(`${label}: sha1 mismatch (file ${actual}, ${basename(sumFile)} says ${m[1]})`, [], "the archive or its checksum is damaged; restore refused before touching anything");
  return actual;
}

/**
 * Whether hashFileOffThread uses a thread: a worker can load a .ts module on Deno, and on Node
 * that strips types itself (22.18 and later). On Node 20 with tsx the loader does not reach
 * worker threads: it hashes on the calling thread.
 */
export const HASH_OFF_THREAD = !!(process.versions as Record<string, string | undefined>).deno ||
  !!(process as unknown as { features?: { typescript?: unknown } }).features?.typescript;

/** Options for {@link hashFileOffThread}. */
export interface HashOffThreadOptions {
  /** A `node:crypto` hash name (default sha256). */
  algorithm?: string;
  /** Stops the thread and rejects with the reason. */
  signal?: AbortSignal;
  /**
   * Your own reader's progress, in MiB, in element 0 (an Int32Array over a SharedArrayBuffer;
   * store it with Atomics.store and wake the thread with Atomics.notify): the thread stays at most
   * `aheadMiB` in front, so a file bigger than memory is read from disk once.
   */
  pace?: Int32Array;
  /** How far ahead of `pace` the thread may read, in MiB (default 256). */
  aheadMiB?: number;
}

/**
 * A file's hash on this thread, streamed, with its size and identity: the one streamed file
 * hash of lib/ (sha1File, fileSha256 and hashFileOffThread's fallback use it).
 * @example const { digest, bytes } = await fileDigest(path, "sha256");
 */
export async function fileDigest(path: string, algorithm: string, signal?: AbortSignal): Promise<FileDigest> {
  const fd = openSync(path, "r");
  const st = fstatSync(fd);
  const h = createHash(algorithm);
  let bytes = 0;
  await pipeline(createReadStream("", { fd, highWaterMark: 1 << 20, signal }), async function* (src: AsyncIterable<Buffer>) {
    for await (const c of src) {
      h.update(c);
      bytes += c.length;
    }
  });
  return { digest: h.digest("hex"), bytes, dev: Number(st.dev), ino: Number(st.ino) };
}

/** What {@link hashFileOffThread} read: the digest, the bytes, and which file it was (dev, ino). */
export interface FileDigest {
  digest: string;
  bytes: number;
  dev: number;
  ino: number;
}

/**
 * The hash of a file computed on a worker thread, so that a CPU-bound main thread (an unpack
 * that parses, hashes and writes every entry) does not pay for it. Resolves with the file's
 * identity too: compare it with your own reader's fstat to know both read the same file. Rejects
 * with the read error, or when aborted (the worker is stopped).
 * @example const d = await hashFileOffThread("/var/backups/x.tar.gz"); // { digest, bytes, dev, ino }
 */
export function hashFileOffThread(path: string, opts: HashOffThreadOptions = {}): Promise<FileDigest> {
  if (opts.signal?.aborted) return Promise.reject(opts.signal.reason);
  if (!HASH_OFF_THREAD) return fileDigest(path, opts.algorithm ?? "sha256", opts.signal);
  return new Promise((resolve, reject) => {
    const workerData = { path, algorithm: opts.algorithm ?? "sha256", pace: opts.pace?.buffer, aheadMiB: opts.aheadMiB ?? 256 };
    const w = new Worker(new URL("./hash-worker.ts", import.meta.url), { workerData });
    let settled = false;
    // Settles first, then stops the thread (Deno emits 'exit' from terminate() itself).
    const settle = (f: () => void) => {
      if (settled) return;
      settled = true;
      opts.signal?.removeEventListener("abort", onAbort);
      f();
      void w.terminate();
    };
    const onAbort = () => settle(() => reject(opts.signal!.reason));
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    w.once("message", (m: ({ ok: true } & FileDigest) | { ok: false; message: string; code?: string }) =>
      settle(() => (m.ok ? resolve({ digest: m.digest, bytes: m.bytes, dev: m.dev, ino: m.ino }) : reject(Object.assign(new Error(m.message), { code: m.code })))));
    w.once("error", (e) => settle(() => reject(e)));
    w.once("exit", (code) => settle(() => reject(new Error(`the hashing thread exited (${code}) before it answered`))));
  });
}
