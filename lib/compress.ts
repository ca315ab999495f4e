// Compression for archives and sealed files: gzip or zstd, done by the fastest thing at hand.
//
// gzip: `pigz` as a child process when it is on PATH (Debian package pigz), else in-process
// parallel gzip — pigz's idea with Node's zlib: the input is cut into fixed-size blocks, each
// block is compressed as its own gzip member on libuv's thread pool, and members are written
// in order. Concatenated members are one valid gzip stream (RFC 1952 §2.2): gunzip, GNU tar
// and Node's zlib read them as one. Memory is bounded by workers × blockSize.
// zstd: the `zstd` binary (Debian package zstd) as a child process; GNU tar's `--zstd` reads it.
//
// Decompression: gzip in-process (zlib works on libuv's pool, off the main thread); zstd with
// the `zstd` binary, or Node's own zstd when it has one. The kind is told by the magic bytes.
import { createWriteStream } from "node:fs";
import { PassThrough, Transform, type Readable, type TransformCallback, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { availableParallelism } from "node:os";
import { promisify } from "node:util";
import * as zlib from "node:zlib";
import { LifeboatError } from "./errors.ts";
import { exec, which } from "./exec.ts";
import { useContext, type Context } from "./context.ts";

const gzipAsync = promisify(zlib.gzip);

/** How an archive's tar stream is compressed. */
export type Compression = "gzip" | "zstd";

/** The archive file suffix of each compression: ".tar.gz" or ".tar.zst". */
export const TAR_SUFFIX: Record<Compression, string> = { gzip: ".tar.gz", zstd: ".tar.zst" };

/** Options for {@link createParallelGzip}. */
export interface ParallelGzipOptions {
  /** zlib level 1–9 (default 6, as gzip). */
  level?: number;
  /** Blocks compressed at once (default: CPU count, at most 4 = libuv's pool). 1 means plain zlib. */
  workers?: number;
  /** Bytes per block (default 1 MiB). Larger blocks compress a little better. */
  blockSize?: number;
}

/**
 * A gzip Transform that uses several cores, in-process (the fallback when pigz is missing).
 * @example await pipeline(createReadStream(src), createParallelGzip({ level: 6 }), createWriteStream(dst));
 */
export function createParallelGzip(opts: ParallelGzipOptions = {}): Transform {
  const level = opts.level ?? 6;
  const workers = Math.max(1, Math.min(opts.workers ?? availableParallelism(), 4));
  if (workers === 1) return zlib.createGzip({ level });
  const blockSize = opts.blockSize ?? 1 << 20;
  const queue: Promise<Buffer>[] = [];
  let parts: Buffer[] = [];
  let filled = 0;

  const startBlock = () => {
    // Always copy: upstream may reuse its buffers once we return.
    const block = Buffer.concat(parts, filled);
    parts = [];
    filled = 0;
    queue.push(gzipAsync(block, { level, memLevel: 8, strategy: zlib.constants.Z_DEFAULT_STRATEGY }));
  };

  return new Transform({
    async transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      try {
        let off = 0;
        while (off < chunk.length) {
          const take = Math.min(blockSize - filled, chunk.length - off);
          parts.push(chunk.subarray(off, off + take));
          filled += take;
          off += take;
          if (filled === blockSize) {
            startBlock();
            while (queue.length >= workers) this.push(await queue.shift()!);
          }
        }
        cb();
      } catch (e) {
        cb(e as Error);
      }
    },
    async flush(cb: TransformCallback) {
      try {
        if (filled > 0 || queue.length === 0) startBlock();
        while (queue.length) this.push(await queue.shift()!);
        cb();
      } catch (e) {
        cb(e as Error);
      }
    },
  });
}

/** Options for {@link startCompressor}. */
export interface CompressorOptions {
  /** gzip (default) or zstd. */
  compression?: Compression;
  /** Level: gzip 1–9 (default 6), zstd 1–19 (default 3). */
  level?: number;
  /** Threads (default: CPU count, at most 4). */
  workers?: number;
  /**
   * Write the compressed bytes straight into this file (created 0600) instead of `output`:
   * a child compressor then writes it itself, with no copy through this process.
   */
  toFile?: string;
  ctx?: Context;
}

/** A running (de)compressor: write into `input`, read from `output`; `done` settles when it has finished. */
export interface Compressor {
  input: Writable;
  /** The compressed bytes (an empty, ended stream when they go to `toFile`). */
  output: Readable;
  /** Rejects when the tool fails (its exit status, or a stream error). */
  done: Promise<unknown>;
  /** What does the work, for the manifest's tool list, e.g. "pigz", "zstd", "node zlib". */
  tool: string;
}

/** A child process fed from a PassThrough, its output to another or to a file, run through exec (argv, process group, abort). */
function childStage(argv: string[], tool: string, ctx: Context, toFile?: string): Compressor {
  const input = new PassThrough({ highWaterMark: 256 << 10 });
  const output = new PassThrough({ highWaterMark: 256 << 10 });
  if (toFile) output.end();
  const done = exec(argv, { stdin: input, stdout: toFile ? { file: toFile, inPlace: true, mode: 0o600 } : output, readOnly: true, ctx });
  done.catch((e: Error) => {
    input.destroy(e);
    if (!toFile) output.destroy(e); // its reader sees the failure; unread when the output went to a file
  });
  return { input, output, done, tool };
}

const threads = (workers?: number) => Math.max(1, Math.min(workers ?? availableParallelism(), 4));

/**
 * The compressor program that {@link startCompressor} would run for o (reading stdin, writing
 * stdout), or null when it would compress in-process (gzip without pigz, or one thread).
 * Throws when zstd is asked for and the zstd program is missing.
 * @example compressorCommand({ compression: "zstd" }) // { argv: ["zstd", "-3", "-T2", "-q", "-c"], tool: "zstd" }
 */
export function compressorCommand(o: Pick<CompressorOptions, "compression" | "level" | "workers"> = {}): { argv: string[]; tool: string } | null {
  const n = threads(o.workers);
  if (o.compression === "zstd") {
    if (!which("zstd")) throw new LifeboatError("zstd compression needs the zstd program, and it is not on PATH", { hint: "apt-get install zstd, or pack with gzip" });
    return { argv: ["zstd", `-${o.level ?? 3}`, `-T${n}`, "-q", "-c"], tool: "zstd" };
  }
  if (n > 1 && which("pigz")) return { argv: ["pigz", `-${o.level ?? 6}`, "-p", String(n), "-c"], tool: "pigz" };
  return null;
}

/**
 * Starts a compressor: pigz (or in-process parallel gzip when pigz is not installed) or zstd.
 * @example
 * const c = startCompressor({ compression: "zstd" });
 * await Promise.all([pipeline(tarStream, c.input), pipeline(c.output, createWriteStream(dst)), c.done]);
 */
export function startCompressor(o: CompressorOptions = {}): Compressor {
  const ctx = o.ctx ?? useContext();
  const child = compressorCommand(o);
  if (child) return childStage(child.argv, child.tool, ctx, o.toFile);
  const n = threads(o.workers);
  const level = o.level ?? 6;
  const gz = createParallelGzip({ level, workers: n });
  const tool = n > 1 ? "node zlib (parallel)" : "node zlib";
  if (!o.toFile) return { input: gz, output: gz, done: Promise.resolve(), tool };
  const output = new PassThrough();
  output.end();
  return { input: gz, output, done: pipeline(gz, createWriteStream(o.toFile, { mode: 0o600 })), tool };
}

/**
 * Starts a decompressor for `kind` (see {@link compressionOf}).
 * @example const d = startDecompressor("zstd"); await Promise.all([pipeline(file, d.input), pipeline(d.output, parser), d.done]);
 */
export function startDecompressor(kind: Compression, o: { ctx?: Context } = {}): Compressor {
  const ctx = o.ctx ?? useContext();
  if (kind === "gzip") {
    const gz = zlib.createGunzip({ chunkSize: 256 << 10 });
    return { input: gz, output: gz, done: Promise.resolve(), tool: "node zlib" };
  }
  if (which("zstd")) return childStage(["zstd", "-d", "-q", "-c"], "zstd", ctx);
  const native = (zlib as unknown as { createZstdDecompress?: () => Transform }).createZstdDecompress;
  if (native) {
    const z = native();
    return { input: z, output: z, done: Promise.resolve(), tool: "node zlib zstd" };
  }
  throw new LifeboatError("this archive is zstd-compressed and the zstd program is not on PATH", { hint: "apt-get install zstd" });
}

/** The compression the first bytes of a file show, or null (plain tar, or something else). */
export function compressionOf(head: Uint8Array): Compression | null {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return "zstd";
  return null;
}
