// ssh: run commands and stream tar on a remote host.
//
// The remote command is an argv array, quoted once, here, for the remote POSIX shell
// (sshd hands the command line to the login shell: sh, dash or bash all read the same
// single quotes). Nothing else in lifeboat quotes for a remote shell.
//
// sshTar writes the remote tar stream straight into a hidden `.partial-…` file (ssh's
// stdout is the file descriptor, so no byte passes through Node unless gzip runs
// locally or the destination is a stream) and renames it only when ssh and tar both
// say the stream is complete. GNU tar's exit 1 with "file changed as we read it" is the
// Deis runbook's expected warning on live logs: the archive is complete and holds those
// files as they were mid-write, so it is reported, not fatal. Every other tar or ssh
// failure removes the partial file and throws.
import { closeSync, createReadStream, createWriteStream, existsSync, openSync, readFileSync, readSync, statSync } from "node:fs";
import { Readable, Transform, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createParallelGzip } from "./compress.ts";
import { useContext, type Context } from "./context.ts";
import { LifeboatError, UsageError } from "./errors.ts";
import { exec, ExecError, shellJoin, type ExecOptions, type ExecResult, type StdinSpec, type StdoutSpec } from "./exec.ts";
import { captureToFile } from "./files.ts";
import { formatBytes } from "./log.ts";

/** How to reach a host over ssh. Comes from the site config. */
export interface SshTarget {
  /** Host name or address. */
  host: string;
  /** Port (default 22). */
  port?: number;
  /** Login user (default: ssh's default). */
  user?: string;
  /** Private key file (-i). */
  identityFile?: string;
  /** known_hosts file; with it, StrictHostKeyChecking=yes. */
  knownHostsFile?: string;
  /** Seconds of silence after which ssh asks the server if it is alive (ServerAliveInterval; default 15). */
  serverAliveInterval?: number;
  /** Unanswered keepalives after which ssh gives up on the connection (ServerAliveCountMax; default 4, so a silent connection fails after about a minute). */
  serverAliveCountMax?: number;
  /** Extra -o options, e.g. { ConnectTimeout: "30" }; they override lifeboat's defaults of the same name. */
  options?: Record<string, string>;
}

/**
 * The local argv that runs remoteArgv on target: ["ssh", …, "--", "<quoted remote command>"].
 * @example await exec(sshCommand({ host: "store-1", user: "core" }, ["ls", "-la", "/var/lib/deis/store"]));
 */
export function sshCommand(target: SshTarget, remoteArgv: readonly string[]): string[] {
  // ssh keeps the FIRST value of an option: the caller's options go first, defaults only where unset.
  const given = new Set(Object.keys(target.options ?? {}).map((k) => k.toLowerCase()));
  const argv = ["ssh"];
  for (const [k, v] of Object.entries(target.options ?? {})) argv.push("-o", `${k}=${v}`);
  const defaults: [string, string | number][] = [
    ["BatchMode", "yes"],
    ["ConnectTimeout", 10],
    ["ServerAliveInterval", target.serverAliveInterval ?? 15],
    ["ServerAliveCountMax", target.serverAliveCountMax ?? 4],
  ];
  // With AES instructions, AES-GCM is several times cheaper than ssh's default ChaCha20 (1 GiB on the
  // lab machine: 2.5 s against 9.1 s): put it first, keeping ssh's own list behind it for servers without it.
  if (hasAesInstructions()) defaults.push(["Ciphers", "^aes128-gcm@openssh.com,aes256-gcm@openssh.com"]);
  for (const [k, v] of defaults) if (!given.has(k.toLowerCase())) argv.push("-o", `${k}=${v}`);
  if (target.port) argv.push("-p", String(target.port));
  if (target.identityFile) argv.push("-i", target.identityFile, "-o", "IdentitiesOnly=yes");
  if (target.knownHostsFile) argv.push("-o", `UserKnownHostsFile=${target.knownHostsFile}`, "-o", "StrictHostKeyChecking=yes");
  // ssh would read a host or user that starts with "-" as an option (-oProxyCommand=… runs a
  // command here); one with a space or a control character is no host name either.
  for (const [what, v] of [["host", target.host], ["user", target.user]] as const) {
    if (v !== undefined && (v === "" || v.startsWith("-") || /[\s\x00-\x1f\x7f]/.test(v))) {
      throw new UsageError(`ssh ${what} ${JSON.stringify(v)} is not a valid ${what} name`, "check the inventory's ansible_host/ansible_user, or the ssh:// URL");
    }
  }
  argv.push(target.user ? `${target.user}@${target.host}` : target.host);
  argv.push("--", shellJoin(remoteArgv));
  return argv;
}

let aesInstructions: boolean | undefined;
/** True when this machine's CPU has AES instructions (x86 "aes" flag, arm64 "aes" feature). */
function hasAesInstructions(): boolean {
  if (aesInstructions === undefined) {
    try {
      aesInstructions = /^(flags|Features)\s*:.*\baes\b/m.test(readFileSync("/proc/cpuinfo", "utf8"));
    } catch {
      aesInstructions = false;
    }
  }
  return aesInstructions;
}

/** "core@store-1:2222", for messages. */
export function sshWhere(target: SshTarget): string {
  return `${target.user ? `${target.user}@` : ""}${target.host}${target.port ? `:${target.port}` : ""}`;
}

/**
 * Options for {@link ssh}: exec's stream, probe and exit-code options (applied to the remote
 * command through ssh), plus sudo.
 */
export interface SshOptions extends Pick<ExecOptions, "stdin" | "stdout" | "readOnly" | "okCodes" | "timeoutMs" | "onStderr" | "onStdoutBytes" | "onStdinRead" | "killWithParent" | "ctx"> {
  /** Run the remote argv under `sudo -n` (fails instead of prompting for a password). */
  sudo?: boolean;
}

/**
 * Runs an argv on a remote host. The argv is quoted once for the remote shell, so names
 * with spaces, quotes or `$()` arrive as one word each. Exit 255 (ssh itself failed)
 * becomes an error that says the connection failed; other exit codes name the remote command.
 * @example
 * const { stdout } = await ssh(store, ["cat", "/etc/hostname"], { readOnly: true });
 * await ssh(store, ["systemctl", "stop", "deis-logger"], { sudo: true });
 */
export async function ssh(target: SshTarget, argv: readonly string[], opts: SshOptions = {}): Promise<ExecResult> {
  const ctx = opts.ctx ?? useContext();
  const remote = withSudo(argv, opts.sudo);
  try {
    return await exec(sshCommand(target, remote), {
      stdin: opts.stdin,
      stdout: opts.stdout,
      readOnly: opts.readOnly,
      okCodes: opts.okCodes,
      timeoutMs: opts.timeoutMs,
      onStderr: opts.onStderr,
      onStdoutBytes: opts.onStdoutBytes,
      onStdinRead: opts.onStdinRead,
      killWithParent: opts.killWithParent,
      ctx,
    });
  } catch (e) {
    throw sshFailure(target, remote, e, ctx);
  }
}

/**
 * Bytes used under a remote directory (`du -s -b`), for a free-space estimate before copying
 * it. A read-only probe: it runs in dry-run too.
 * @example const need = await sshDiskUsage(store, "/var/lib/deis/store", { sudo: true });
 */
export async function sshDiskUsage(target: SshTarget, remoteDir: string, opts: { sudo?: boolean; ctx?: Context } = {}): Promise<number> {
  const r = await ssh(target, ["du", "-s", "-b", "--", remoteDir], { readOnly: true, sudo: opts.sudo, ctx: opts.ctx });
  const bytes = Number(/^(\d+)\t/.exec(r.stdout)?.[1]);
  if (!Number.isFinite(bytes)) throw new LifeboatError(`du ${sshWhere(target)}:${remoteDir}: unexpected output ${JSON.stringify(r.stdout.slice(0, 200))}`);
  return bytes;
}

/** Options for {@link sshTar}. */
export interface SshTarOptions {
  /** Run tar under `sudo -n` on the remote host (as the Deis runbook's `sudo tar`). */
  sudo?: boolean;
  /** gzip the stream: "remote" (tar -z on the host: less traffic), "local" (parallel gzip here: less load on the host), or false (default). */
  gzip?: false | "remote" | "local";
  /** gzip level 1–9 (default 6). */
  level?: number;
  /** Record owners as numbers only (`--numeric-owner`); by default tar records names and numbers. */
  numericOwner?: boolean;
  /** Patterns passed to tar as `--exclude=PATTERN` (relative to remoteDir, e.g. "./tmp"). */
  exclude?: string[];
  /** Show byte progress (default true). */
  progress?: boolean;
  /** For a stream destination: end it when the tar stream ends (default true). */
  end?: boolean;
  ctx?: Context;
}

/** What {@link sshTar} did. */
export interface SshTarResult {
  /** Bytes written (compressed bytes when gzip is on; 0 in dry-run). */
  bytes: number;
  /** Files tar reported as changed, shrunk or removed while it read them (they are in the archive as tar saw them). */
  changed: string[];
  /** Other tar warnings that did not fail the run (e.g. "socket ignored"). */
  warnings: string[];
  /** True when the command was printed, not run. */
  dryRun: boolean;
}

/**
 * Streams `tar -C remoteDir -cpf - .` from a host into a local file or a Writable.
 * A file is created 0600 under a hidden temp name and renamed into place only when the
 * stream is complete. Files that change while tar reads them are a warning, listed.
 * @example
 * // ssh core@host 'cd /var/lib/deis/store && sudo tar cpzf - .' > store.tar.gz
 * const r = await sshTar({ host: "deis-1", user: "core" }, "/var/lib/deis/store", "/backups/store.tar.gz", { sudo: true, gzip: "remote" });
 * if (r.changed.length) manifest.meta.changedWhileRead = r.changed;
 */
export async function sshTar(target: SshTarget, remoteDir: string, dest: string | Writable, opts: SshTarOptions = {}): Promise<SshTarResult> {
  const ctx = opts.ctx ?? useContext();
  const tarArgv = ["env", "LC_ALL=C", "tar", "-C", remoteDir, "-c", "-p", "-f", "-"];
  if (opts.numericOwner) tarArgv.push("--numeric-owner");
  for (const x of opts.exclude ?? []) tarArgv.push(`--exclude=${x}`);
  if (opts.gzip === "remote") tarArgv.push(opts.level ? `--use-compress-program=gzip -${opts.level}` : "-z");
  tarArgv.push(".");
  const remote = withSudo(tarArgv, opts.sudo);
  const argv = sshCommand(target, remote);
  const label = `tar ${sshWhere(target)}:${remoteDir}`;
  const toFile = typeof dest === "string";
  const result: SshTarResult = { bytes: 0, changed: [], warnings: [], dryRun: false };

  if (ctx.dryRun) {
    const note = opts.gzip === "local" ? "| gzip" : undefined;
    await exec(argv, { stdout: toFile ? { file: dest } : (dest as Writable), note, ctx });
    if (!toFile && opts.end !== false) (dest as Writable).end(); // nothing will come: let a reader finish
    return { ...result, dryRun: true };
  }

  const diag = tarDiagnostics();
  const progress = opts.progress === false ? null : ctx.log.progress(label);
  const counted = (n: number) => {
    result.bytes += n;
    progress?.add(n);
  };
  /** Runs the transfer into a partial file (by path) or into the caller's Writable. */
  const transfer = async (into: string | Writable): Promise<void> => {
    const partial = typeof into === "string" ? into : null;
    let poll: NodeJS.Timeout | undefined;
    let sink: Writable | null = null;
    let downstream: Promise<void> = Promise.resolve();
    try {
      let stdout: StdoutSpec;
      let onStdoutBytes: ((n: number) => void) | undefined;
      if (partial && opts.gzip !== "local") {
        // ssh writes to the file itself; progress follows the file's size (captureToFile
        // flushes what is written to disk behind it, so the final fsync is short).
        stdout = { file: partial, inPlace: true };
        poll = setInterval(() => {
          try {
            const size = statSync(partial).size;
            if (size > result.bytes) counted(size - result.bytes);
          } catch { /* not created yet */ }
        }, 250);
      } else {
        const out = partial ? createWriteStream(partial) : (into as Writable); // the partial file exists, 0600
        if (opts.gzip === "local") {
          const gz = createParallelGzip({ level: opts.level });
          const tally = new Transform({
            transform(chunk: Buffer, _e, cb) {
              counted(chunk.length);
              cb(null, chunk);
            },
          });
          downstream = pipeline(gz, tally, out, { end: partial ? true : opts.end ?? true });
          sink = gz;
        } else {
          sink = out;
          onStdoutBytes = counted;
        }
        stdout = sink;
      }
      let code: number;
      try {
        ({ code } = await exec(argv, {
          stdout,
          onStdoutBytes,
          endStdout: partial || opts.gzip === "local" ? true : opts.end ?? true,
          okCodes: [0, 1],
          onStderr: diag.feed,
          ctx,
        }));
      } catch (e) {
        throw sshFailure(target, remote, e, ctx, label, opts.sudo);
      } finally {
        clearInterval(poll);
      }
      await downstream;
      const { changed, warnings, errors } = diag.end();
      result.changed = changed;
      // Exit 1 is GNU tar's "some files differ": fine only when every message is a "changed while read" notice.
      if (code === 1 && (errors.length > 0 || changed.length === 0)) {
        const lines = errors.length ? errors : diag.other();
        throw new LifeboatError(`${label}: remote tar failed (exit 1)${lines.length ? `:\n    ${lines.slice(-8).join("\n    ")}` : ""}`, {
          hint: hintFor(lines.join("\n"), opts.sudo),
        });
      }
      result.warnings = [...warnings, ...errors];
      if (partial) {
        const size = statSync(partial).size;
        if (result.bytes < size) counted(size - result.bytes);
      }
    } catch (e) {
      clearInterval(poll);
      // Stop our own gzip chain WITH the error: a stream destroyed without one just after its
      // last chunk counts as ended, and the rest of its pipeline then waits forever (issue 14).
      // The caller's own Writable is only closed, so no 'error' lands on it unasked.
      if (sink && sink !== into) sink.destroy(e instanceof Error ? e : new Error(String(e)));
      else sink?.destroy();
      await downstream.catch(() => {});
      throw e;
    }
  };
  try {
    if (toFile) await captureToFile(dest, transfer, { label }); // visible under dest only once complete
    else await transfer(dest as Writable);
  } catch (e) {
    progress?.fail(`${label} failed`);
    throw e;
  }
  for (const w of result.warnings) ctx.log.warn(`${label}: ${w}`);
  const { changed } = result;
  if (changed.length) {
    ctx.log.warn(
      `${label}: ${changed.length} file${changed.length > 1 ? "s" : ""} changed while tar read ${changed.length > 1 ? "them" : "it"}; ` +
        `the archive holds ${changed.length > 1 ? "them" : "it"} as read (normal for live logs): ${changed.slice(0, 20).join(", ")}${changed.length > 20 ? ", …" : ""}`,
    );
  }
  progress?.done(`${label}: ${formatBytes(result.bytes)}${toFile ? ` → ${dest}` : ""}`);
  return result;
}

/** Options for {@link sshUntar}. */
export interface SshUntarOptions {
  /** Run tar (and mkdir) under `sudo -n` on the remote host. */
  sudo?: boolean;
  /** Create remoteDir (mkdir -p) when missing (default false: a missing dir is an error). */
  mkdir?: boolean;
  /** true: `--same-owner` (restore owners; needs root); false: `--no-same-owner`; default: tar's own (owners restored when tar runs as root). */
  sameOwner?: boolean;
  /** Map owners by number, ignoring the names in the archive (`--numeric-owner`). */
  numericOwner?: boolean;
  /** The input is gzip-compressed (decompressed by tar -z on the host). Default: detected for a file, false for a stream. */
  gzip?: boolean;
  /** Show byte progress (default true). */
  progress?: boolean;
  ctx?: Context;
}

/**
 * Untars stdin into DIR ("$1") without ever leaving a cut-off file there: tar extracts into a
 * staging folder inside DIR (same filesystem), which takes DIR's mode and owner first, so that an
 * archive without a "./" entry leaves them as they were; only a whole extraction is then hard-linked
 * over DIR (`cp -al --remove-destination`: every file replaced whole, no data copied) and the staging
 * folder removed. A failed, full or cut-off extraction removes the staging folder and leaves DIR
 * untouched; a killed run's staging folder is removed by the next run. Peak space: the old files
 * plus the new ones, until the end.
 */
const SH_UNTAR = [
  `set -e; d=$1; shift; if [ "$1" = 1 ]; then mkdir -p -- "$d"; fi; shift`,
  `[ -d "$d" ] || { echo "tar: $d: Cannot open: No such file or directory" >&2; exit 2; }`,
  `for f in "$d"/.lifeboat-untar.*; do if [ -e "$f" ]; then rm -rf -- "$f"; fi; done`,
  `s="$d/.lifeboat-untar.$$"; trap 'rm -rf -- "$s"' EXIT`,
  `mkdir -m 700 -- "$s"; chown --reference="$d" -- "$s" 2>/dev/null || true; chmod --reference="$d" -- "$s"`,
  `"$@" -C "$s" || { a=$(df -Pk -- "$d" | awk 'NR == 2 { print $4 }'); if [ "$a" = 0 ]; then echo "tar: $d: No space left on device" >&2; fi; exit 2; }`,
  `cp -a -l --remove-destination -- "$s/." "$d/"`,
].join("; "); // one line: a dry run prints it on one line

/**
 * Streams a local tar or tar.gz into `tar -xpf -` on a host, extracted whole or not at all (see SH_UNTAR): modes always,
 * owners as root (the Deis runbook's `sudo tar -xzpf … --same-owner`).
 * @example
 * await sshUntar({ host: "deis-1", user: "core" }, "/backups/store.tar.gz", "/var/lib/deis/store", { sudo: true, sameOwner: true });
 */
export async function sshUntar(target: SshTarget, src: string | Readable, remoteDir: string, opts: SshUntarOptions = {}): Promise<void> {
  const ctx = opts.ctx ?? useContext();
  const fromFile = typeof src === "string";
  if (fromFile && !existsSync(src) && !ctx.dryRun) throw new LifeboatError(`untar into ${sshWhere(target)}:${remoteDir}: ${src} does not exist`);
  // A dry-run restore may name an archive a dry-run backup never wrote: judge it by its name then.
  const gzip = opts.gzip ?? (fromFile ? (existsSync(src) ? isGzip(src) : /\.(gz|tgz)$/.test(src)) : false);
  const tarArgv = ["tar", "-x", "-p", "-f", "-"];
  if (gzip) tarArgv.push("-z");
  if (opts.sameOwner === true) tarArgv.push("--same-owner");
  if (opts.sameOwner === false) tarArgv.push("--no-same-owner");
  if (opts.numericOwner) tarArgv.push("--numeric-owner");
  // One session: sh gets the dir as "$1", the mkdir flag as "$2" and the tar argv as "$@", never as text.
  const remote = withSudo(["env", "LC_ALL=C", "sh", "-c", SH_UNTAR, "sh", remoteDir, opts.mkdir ? "1" : "0", ...tarArgv], opts.sudo);
  const argv = sshCommand(target, remote);
  const label = `untar into ${sshWhere(target)}:${remoteDir}`;
  if (ctx.dryRun) {
    await exec(argv, { stdin: fromFile ? { file: src } : src, ctx });
    return;
  }
  const total = fromFile ? statSync(src).size : undefined;
  const progress = opts.progress === false ? null : ctx.log.progress(label, { total });
  const input: Readable = fromFile ? createReadStream(src) : src;
  const tally = new Transform({
    transform(chunk: Buffer, _e, cb) {
      progress?.add(chunk.length);
      cb(null, chunk);
    },
  });
  input.on("error", (e: Error) => tally.destroy(e));
  try {
    await exec(argv, { stdin: input.pipe(tally), stdout: "ignore", ctx });
    progress?.done(`${label}: ${total !== undefined ? formatBytes(total) : "done"}`);
  } catch (e) {
    progress?.fail(`${label} failed`);
    input.destroy();
    throw sshFailure(target, remote, e, ctx, label, opts.sudo, withSudo(["tar", "-C", remoteDir, ...tarArgv.slice(1)], opts.sudo));
  }
}

// ---------------------------------------------------------------------------------

function withSudo(argv: readonly string[], sudo?: boolean): string[] {
  return sudo ? ["sudo", "-n", "--", ...argv] : [...argv];
}

/**
 * Turns an ExecError of ssh into an error that says whether the connection (exit 255) or
 * the remote command failed. label names the operation ("tar host:/dir").
 */
function sshFailure(target: SshTarget, remote: readonly string[], e: unknown, ctx: Context, label?: string, sudo?: boolean, shown: readonly string[] = remote): unknown {
  if (!(e instanceof ExecError)) return e;
  const where = sshWhere(target);
  const head = label ? `${label}: ` : "";
  const lines = ctx.secrets.redact(e.stderr).trim().split("\n").filter(Boolean);
  if (e.code === null) {
    return new LifeboatError(`${head}ssh to ${where} could not run: ${e.message}`, { hint: "is the OpenSSH client (ssh) installed and on PATH?", cause: e });
  }
  if (e.code === 255) {
    const why = lines.filter((l) => !l.startsWith("tar: ")).slice(-3).join("; ") || "ssh exited 255";
    return new LifeboatError(`${head}ssh to ${where} failed: ${why}`, {
      hint: "the connection could not be made or broke off: check that the host is up, the port, the user's key and known_hosts " +
        `(try: ssh -v${target.port ? ` -p ${target.port}` : ""} ${target.user ? `${target.user}@` : ""}${target.host} true)`,
      cause: e,
    });
  }
  const why = e.message.startsWith("command failed (") ? e.message.slice("command failed (".length).split(")")[0] : "failed";
  const cmd = ctx.secrets.redact(shellJoin(shown));
  return new LifeboatError(`${label ? `${label}: remote command failed` : `remote command on ${where} failed`} (${why}): ${cmd}${lines.length ? `\n    ${lines.slice(-8).join("\n    ")}` : ""}`, {
    hint: hintFor(e.stderr, sudo),
    cause: e,
  });
}

function hintFor(stderr: string, sudo?: boolean): string | undefined {
  if (/sudo: .*password is required|sudo: a terminal is required/.test(stderr)) return "sudo asks for a password on the host: allow this user NOPASSWD for tar, or log in as root";
  if (/Cannot change ownership|Operation not permitted/.test(stderr)) return sudo ? undefined : "restoring owners needs root: pass sudo: true, log in as root, or sameOwner: false";
  if (/Permission denied/.test(stderr)) return sudo ? undefined : "the login user cannot read or write there: pass sudo: true or log in as a user who can";
  if (/Cannot (open|chdir): No such file or directory/.test(stderr)) return "check the remote directory (sshUntar can create it with mkdir: true)";
  return undefined;
}

const CHANGED = /^tar: (.*): (file changed as we read it|File shrank by \d+ bytes; padding with zeros|File removed before we read it|file changed dev\/ino)$/;
const BENIGN = /^tar: (.*): (socket ignored|door ignored)$/;
const EXIT1 = /^tar: Exiting with failure status due to previous errors$/;

/** Reads tar's stderr line by line and sorts it into changed files, warnings and errors. */
function tarDiagnostics() {
  let buf = "";
  const changed: string[] = [];
  const warnings: string[] = [];
  const errors: string[] = [];
  const other: string[] = [];
  const take = (line: string) => {
    if (!line) return;
    let m: RegExpExecArray | null;
    if ((m = CHANGED.exec(line))) changed.length < 10000 && changed.push(m[1]);
    else if (BENIGN.test(line)) warnings.length < 1000 && warnings.push(line.slice(5));
    else if (EXIT1.test(line)) return;
    else if (line.startsWith("tar: ") || line.startsWith("sudo: ") || line.startsWith("gzip: ")) errors.length < 1000 && errors.push(line);
    else other.push(line), other.length > 20 && other.shift();
  };
  return {
    feed(chunk: Buffer) {
      buf += chunk.toString("utf8");
      const lines = buf.split("\n");
      buf = lines.pop()!;
      for (const l of lines) take(l);
    },
    end() {
      take(buf);
      buf = "";
      return { changed, warnings, errors };
    },
    /** The last lines that came from neither tar nor sudo (ssh's own). */
    other: () => other,
  };
}

function isGzip(path: string): boolean {
  const fd = openSync(path, "r");
  try {
    const b = Buffer.alloc(2);
    return readSync(fd, b, 0, 2, 0) === 2 && b[0] === 0x1f && b[1] === 0x8b;
  } finally {
    closeSync(fd);
  }
}
