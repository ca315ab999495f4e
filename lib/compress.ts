// Parallel gzip: pigz's idea with Node's zlib. The input is cut into fixed-size blocks,
// each block is compressed as its own gzip member on libuv's thread pool, and members
// are written in order. Concatenated members are one valid gzip stream (RFC 1952 §2.2):
// gunzip, GNU tar and Node's zlib read them as one. Memory is bounded by
// workers × blockSize, whatever the input size.
import { Transform, type TransformCallback } from "node:stream";
import { availableParallelism } from "node:os";
import { promisify } from "node:util";
import { gzip, createGzip, constants as z } from "node:zlib";

const gzipAsync = promisify(gzip);

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
 * A gzip Transform that uses several cores.
 * @example await pipeline(createReadStream(src), createParallelGzip({ level: 6 }), createWriteStream(dst));
 */
export function createParallelGzip(opts: ParallelGzipOptions = {}): Transform {
  const level = opts.level ?? 6;
  const workers = Math.max(1, Math.min(opts.workers ?? availableParallelism(), 4));
  if (workers === 1) return createGzip({ level });
  const blockSize = opts.blockSize ?? 1 << 20;
  const queue: Promise<Buffer>[] = [];
  let parts: Buffer[] = [];
  let filled = 0;

  const startBlock = () => {
    // Always copy: upstream may reuse its buffers once we return.
    const block = Buffer.concat(parts, filled);
    parts = [];
    filled = 0;
    queue.push(gzipAsync(block, { level, memLevel: 8, strategy: z.Z_DEFAULT_STRATEGY }));
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
