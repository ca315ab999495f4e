// hash-worker: the worker thread behind hashFileOffThread (lib/checksum.ts). It reads one file
// with a reused 1 MiB buffer and posts its digest, with the file's identity (dev, ino) so the
// caller can tell it read the same file as its own reader did. Given a pace (the MiB the
// caller's own reader has reached), it stays at most aheadMiB in front of it, so that both read
// the page cache and a file bigger than memory is not read from disk twice.
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";

const { path, algorithm, pace, aheadMiB } = workerData as { path: string; algorithm: string; pace?: SharedArrayBuffer; aheadMiB: number };
const reached = pace ? new Int32Array(pace) : null;
try {
  const fd = openSync(path, "r");
  try {
    const st = fstatSync(fd);
    const h = createHash(algorithm);
    const buf = Buffer.allocUnsafe(1 << 20);
    let bytes = 0;
    for (;;) {
      if (reached) {
        for (let r = Atomics.load(reached, 0); (bytes >> 20) - r > aheadMiB; r = Atomics.load(reached, 0)) Atomics.wait(reached, 0, r, 200);
      }
      const n = readSync(fd, buf, 0, buf.length, bytes);
      if (!n) break;
      h.update(n === buf.length ? buf : buf.subarray(0, n));
      bytes += n;
    }
    parentPort!.postMessage({ ok: true, digest: h.digest("hex"), bytes, dev: Number(st.dev), ino: Number(st.ino) });
  } finally {
    closeSync(fd);
  }
} catch (e) {
  parentPort!.postMessage({ ok: false, message: (e as Error).message, code: (e as NodeJS.ErrnoException).code });
}
