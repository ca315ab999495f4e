// Files that appear complete or not at all.
//
// Every helper that writes a result (an archive, a dump, a tarball from a remote host)
// writes it under a hidden `.partial-NAME.PID` name in the same folder, fsyncs it, and
// renames it into place only when it is whole. A run killed at any moment leaves at most
// a `.partial-…` file, which `cleanLeftovers` (lib/archive.ts) removes once its pid is dead.
// `captureToFile` is the one way to do it: exec's `stdout: { file }`, sshTar and the
// PostgreSQL dumps all write through it, and all name a full disk the same way.
import { closeSync, fdatasync, fstatSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmdirSync, rmSync, statfsSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import process from "node:process";
import { LifeboatError } from "./errors.ts";
import { useContext, type Context } from "./context.ts";
import { shellQuote } from "./exec.ts";
import { pidAlive } from "./lock.ts";

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

/** True for a `.partial-NAME.PID` name whose process is gone: a killed run's leftover. */
export function isStalePartial(name: string): boolean {
  const m = /^\.partial-.*\.(\d+)$/.exec(name);
  return !!m && !pidAlive(Number(m[1]));
}

/** Removes `.partial-NAME.PID` files of `path` left by processes that are gone (a killed run's). */
function removeStalePartials(path: string): void {
  const prefix = `.partial-${basename(path)}.`;
  let names: string[];
  try {
    names = readdirSync(dirname(path));
  } catch {
    return;
  }
  for (const n of names) if (n.startsWith(prefix) && /^\d+$/.test(n.slice(prefix.length)) && isStalePartial(n)) rmSync(join(dirname(path), n), { force: true, recursive: true });
}

/**
 * Starts a file that becomes visible under `path` only when committed (a killed run's partial of the same path is removed).
 * @example const f = partialFile(dest); try { await write(f.tmp); f.commit(); } catch (e) { f.discard(); throw e; }
 */
export function partialFile(path: string): PartialFile {
  const tmp = partialPath(path);
  removeStalePartials(path);
  return {
    path,
    tmp,
    commit() {
      fsyncPath(tmp);
      renameSync(tmp, path);
      try {
        fsyncPath(dirname(path));
      } catch (e) {
        rmSync(path, { force: true, recursive: true }); // its name may not survive a crash: nothing that looks complete
        throw e;
      }
    },
    discard() {
      rmSync(tmp, { force: true });
    },
  };
}

/** Options for {@link flushBehind}. */
export interface FlushBehindOptions {
  /** Start a flush once the file has grown by this many bytes since the last one began (default 32 MiB). */
  every?: number;
  /** How often to look at the file's size, in ms (default 200). */
  intervalMs?: number;
}

/** A running {@link flushBehind}. */
export interface FlushBehind {
  /** Bytes from the start of the file known to be on disk (the size at the last flush that succeeded). */
  readonly flushed: number;
  /** Stops flushing and waits for a flush under way; throws the error a flush met (EIO, ENOSPC …). */
  stop(): Promise<void>;
}

/**
 * Flushes a file to disk behind its writer (this process or a child writing to it): every
 * `every` new bytes, an fdatasync in the thread pool, one at a time. The fsync that commits
 * the file then has only the tail left to write, instead of the whole file at the end, after
 * the work that made it (a 616 MiB archive: about a quarter of a second here). An error a
 * flush meets is kept and thrown by stop(): once a flush has seen a write-back error, a later
 * fsync may not report it again.
 * @example const fb = flushBehind(tmp); try { await write(tmp); } finally { await fb.stop(); }
 */
export function flushBehind(path: string, opts: FlushBehindOptions = {}): FlushBehind {
  const every = opts.every ?? 32 << 20;
  let fd: number | null;
  try {
    fd = openSync(path, "r"); // fdatasync flushes the file, whichever descriptor asks
  } catch {
    return { flushed: 0, stop: async () => {} }; // unreadable to us: the commit's fsync does it all
  }
  let flushed = 0;
  let error: Error | null = null;
  let running: Promise<void> | null = null;
  let off = false;
  const tick = () => {
    if (running || error || off || fd === null) return;
    let size: number;
    try {
      size = fstatSync(fd).size;
    } catch {
      off = true;
      return;
    }
    if (size - flushed < every) return;
    const at = fd;
    running = new Promise<void>((done) => fdatasync(at, (e) => {
      if (!e) flushed = size;
      else if (LOST.has(e.code ?? "")) error ??= e;
      else off = true; // a filesystem that cannot fsync: the commit's fsync skips it too
      running = null;
      done();
    }));
  };
  const timer = setInterval(tick, opts.intervalMs ?? 200);
  timer.unref();
  return {
    get flushed() {
      return flushed;
    },
    async stop() {
      clearInterval(timer);
      await running;
      if (fd !== null) closeSync(fd);
      fd = null;
      if (error) throw error;
    },
  };
}

/** Options for {@link captureToFile}. */
export interface CaptureOptions {
  /** Mode of the new file (default 0600); the partial file is created with it before write runs. */
  mode?: number;
  /** fsync the file before the rename and the folder after it (default true). */
  fsync?: boolean;
  /** What is being written, for the full-disk error (default: the path), e.g. "pg_dumpall from container db". */
  label?: string;
}

/**
 * Runs write(tmp) to fill a hidden partial file beside path, then fsyncs it, renames it to
 * path and fsyncs the folder. If write (or the commit) fails, the partial file is removed and
 * nothing appears under path; a full disk is reported as "LABEL: no space left on FOLDER (…)",
 * whether it showed up as ENOSPC or only as a writer that died (a child process writing to
 * the file itself). The folder is created (0700) when missing. Returns what write returned.
 * @example
 * await captureToFile("backups/dump.sql", (tmp) => exec(["pg_dumpall"], { stdout: { file: tmp, inPlace: true } }));
 * await captureToFile(dest, (tmp) => pipeline(src, createGzip(), createWriteStream(tmp)), { label: "store.tar.gz" });
 */
export async function captureToFile<T>(path: string, write: (tmp: string) => Promise<T>, opts: CaptureOptions = {}): Promise<T> {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = partialFile(path);
  rmSync(file.tmp, { force: true });
  closeSync(openSync(file.tmp, "wx", opts.mode ?? 0o600));
  try {
    const behind = opts.fsync === false ? null : flushBehind(file.tmp);
    let r: T;
    try {
      r = await write(file.tmp);
    } catch (e) {
      await behind?.stop().catch(() => {}); // the writer's own failure says more
      throw e;
    }
    await behind?.stop();
    if (opts.fsync === false) renameSync(file.tmp, path);
    else file.commit();
    return r;
  } catch (e) {
    const full = hasCode(e, "ENOSPC") || diskFull(dir); // before the partial file frees the space
    file.discard();
    if (!full) throw e;
    const why = ((e as Error)?.message ?? String(e)).split("\n")[0];
    throw new LifeboatError(`${opts.label ?? path}: no space left on ${dir} (${why})`, {
      hint: `free space on ${dir} or write elsewhere; no partial file was left`,
      cause: e,
    });
  }
}

/** True when err, or an error in its cause chain, has this errno code. */
function hasCode(err: unknown, code: string): boolean {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined, i = 0; e && i < 8; e = e.cause as typeof e, i++) {
    if (e.code === code) return true;
  }
  return false;
}

/** Errors of an fsync that mean the bytes did not reach the disk (anything else: the filesystem cannot fsync this). */
const LOST = new Set(["EIO", "ENOSPC", "EDQUOT"]);

/**
 * fsync a file or a folder; quietly skipped where the filesystem does not support it (a
 * folder on some filesystems). Throws when the write-back failed (EIO, ENOSPC, EDQUOT: a
 * thin-provisioned or network disk that filled, a failing device): the bytes are not on disk.
 */
export function fsyncPath(path: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(path, "r");
    fsyncSync(fd);
  } catch (e) {
    if (LOST.has((e as NodeJS.ErrnoException).code ?? "")) throw e;
  } finally {
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

/**
 * Removes a staging folder a recipe may not own (an operator may point it at a disk of its own):
 * everything in it goes, and the folder itself too unless it is a mount point (rmdir says EBUSY;
 * the mount is left in place, empty). A missing folder is fine. In a dry run it only says so.
 * @example clearStaging(s["restore.work-dir"]); // after `mount /dev/sdb1 /srv/staging`: /srv/staging stays, empty
 */
export function clearStaging(dir: string, ctx: Context = useContext()): void {
  const say = `rm -rf -- ${shellQuote(dir)} (its contents only, when it is a mount point)`;
  if (ctx.dryRun) return void ctx.log.command(say, "dry-run");
  ctx.log.command(say, "run");
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
    if ((e as NodeJS.ErrnoException).code !== "ENOTDIR") throw e;
    return void rmSync(dir, { force: true }); // a file where the folder goes
  }
  for (const n of names) rmSync(join(dir, n), { recursive: true, force: true });
  try {
    rmdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EBUSY") throw e; // a mount point: kept, empty
  }
}
