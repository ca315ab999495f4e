// Locks: one run per recipe and target at a time.
//
// A lock is a file created with O_EXCL holding the owner's pid and host. A lock whose
// pid is dead (or a zombie) on this host is stale: it is taken over with a warning.
import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { LockedError } from "./errors.ts";
import { useContext } from "./context.ts";

/** Options for {@link acquireLock}. */
export interface LockOptions {
  /** Directory holding lock files (created 0700). */
  dir: string;
  /** Lock name, e.g. "deis-backup--_var_backups". */
  name: string;
}

/** A held lock; release() removes it. */
export interface Lock {
  readonly path: string;
  release(): void;
}

/** True when pid is a live, non-zombie process on this host. */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return true;
  }
}

/**
 * Takes the lock or throws LockedError (exit 4) naming the holder.
 * @example const lock = acquireLock({ dir: `${stateDir}/locks`, name: "deis-backup--prod" }); try { … } finally { lock.release(); }
 */
export function acquireLock(opts: LockOptions): Lock {
  mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
  const path = join(opts.dir, `${opts.name}.lock`);
  const me = JSON.stringify({ pid: process.pid, host: hostname(), started: new Date().toISOString() });
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      writeFileSync(path, me, { flag: "wx", mode: 0o600 });
      return {
        path,
        release() {
          try {
            if (JSON.parse(readFileSync(path, "utf8")).pid === process.pid) unlinkSync(path);
          } catch { /* already gone */ }
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    let holder: { pid?: number; host?: string; started?: string } = {};
    try {
      holder = JSON.parse(readFileSync(path, "utf8"));
    } catch { /* empty or half-written: treat as stale */ }
    if (holder.pid && holder.host === hostname() && pidAlive(holder.pid)) {
      throw new LockedError(
        `another run holds the lock ${path} (pid ${holder.pid}, started ${holder.started})`,
        "wait for it to finish; if that process is gone for good, remove the lock file",
      );
    }
    if (holder.host && holder.host !== hostname()) {
      throw new LockedError(`lock ${path} is held by host ${holder.host} (pid ${holder.pid})`, "the state dir is shared; check that host, then remove the lock file");
    }
    useContext().log.warn(`taking over stale lock ${path} (pid ${holder.pid ?? "?"} is not running)`);
    try {
      unlinkSync(path);
    } catch { /* raced with another taker */ }
  }
  throw new LockedError(`could not take lock ${path}`);
}
