// hash-worker: the worker thread behind hashFileOffThread (lib/checksum.ts). It reads one file
// with a reused 1 MiB buffer and posts its digest, with the file's identity (dev, ino) so the
// caller can tell it read the same file as its own reader did.
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";

const { path, algorithm } = workerData as { path: string; algorithm: string };
try {
  const fd = openSync(path, "r");
  try {
    const st = fstatSync(fd);
    const h = createHash(algorithm);
    const buf = Buffer.allocUnsafe(1 << 20);
    let bytes = 0;
    for (;;) {
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
