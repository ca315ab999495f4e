// Files that appear complete or not at all.
//
// Every helper that writes a result (an archive, a dump, a tarball from a remote host)
// writes it under a hidden `.partial-NAME.PID` name in the same folder, fsyncs it, and
// renames it into place only when it is whole. A run killed at any moment leaves at most
// a `.partial-…` file, which `cleanLeftovers` (lib/archive.ts) removes once its pid is dead.
import { closeSync, fsyncSync, openSync, renameSync, rmSync, statfsSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import process from "node:process";

/** A file being written under its partial name. */
export interface PartialFile {
  /** The final path. */
  readonly path: string;
  /** Where the bytes go until commit(). */
  readonly tmp: string;
  /** fsync the partial file, rename it into place, fsync the folder. */
  commit(): void;
  /** Remove the partial file (after a failure). */
  discard(): void;
}

/** The hidden partial name for a final path: DIR/.partial-NAME.PID. */
export function partialPath(path: string): string {
  return join(dirname(path), `.partial-${basename(path)}.${process.pid}`);
}

/**
 * Starts a file that becomes visible under `path` only when committed.
 * @example const f = partialFile(dest); try { await write(f.tmp); f.commit(); } catch (e) { f.discard(); throw e; }
 */
export function partialFile(path: string): PartialFile {
  const tmp = partialPath(path);
  return {
    path,
    tmp,
    commit() {
      fsyncPath(tmp);
      renameSync(tmp, path);
      fsyncPath(dirname(path));
    },
    discard() {
      rmSync(tmp, { force: true });
    },
  };
}

/** fsync a file or a folder; quietly skipped where the filesystem does not support it. */
export function fsyncPath(path: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(path, "r");
    fsyncSync(fd);
  } catch { /* e.g. a folder on some filesystems */ } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * True when the filesystem holding path has (almost) no room left: less than 1 MiB free
 * for this user, or for root. Used to name a full disk as the cause when a child process
 * that wrote straight to a file died without saying why.
 */
export function diskFull(path: string): boolean {
  try {
    const s = statfsSync(path);
    const bsize = Number(s.bsize);
    return Number(s.bavail) * bsize < 1 << 20 || Number(s.bfree) * bsize < 1 << 20;
  } catch {
    return false;
  }
}
