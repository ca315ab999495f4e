// Running commands: argv arrays in, streams through, dry-run and secrets honoured.
//
// Every helper that starts a process goes through `exec`. It never builds a shell
// string: argv goes straight to the kernel. Output streams to files, fds or Node
// streams without being held in memory; only `stdout: "capture"` collects it, for
// small answers. In dry-run, a command that changes state is printed, quoted as a
// POSIX shell would need it, and not run; a read-only probe runs and says so.
//
// Each command runs in its own process group, so a timeout, an interrupt (killRunning, or
// the context's abort signal) and an abnormal exit stop the command AND whatever it
// started (a `sh -c` probe's children, a pipeline's members): SIGTERM to the group, then
// SIGKILL after a grace period. Because the group is not the terminal's foreground group, a
// ctrl-C reaches only this process; the recipe runner then calls killRunning and aborts the
// context. A command whose stdin is the terminal stays in the terminal's group (it must be
// able to read it), and a ctrl-C reaches it directly.
import { spawn, type ChildProcess } from "node:child_process";
import { accessSync, closeSync, constants as fsConstants, createWriteStream, openSync, readFileSync } from "node:fs";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import process from "node:process";
import { LifeboatError } from "./errors.ts";
import { throwIfAborted, useContext, type Context } from "./context.ts";
import { captureToFile } from "./files.ts";

/** Where a child's stdin comes from. */
export type StdinSpec = "ignore" | "inherit" | string | Uint8Array | Readable | { file: string };
/** Where a child's stdout goes. */
export type StdoutSpec = "capture" | "inherit" | "ignore" | Writable | StdoutFile;

/**
 * Stdout into a file. By default the file appears complete or not at all (see
 * captureToFile in lib/files.ts): the command writes a hidden partial file, which is
 * fsynced and renamed to `file` only when the command succeeded, and removed when it failed.
 */
export interface StdoutFile {
  /** The final path (its folder is created, 0700, when missing). */
  file: string;
  /** File mode when created (default 0600). */
  mode?: number;
  /** Append to the file in place (`>>`; not atomic). */
  append?: boolean;
  /** Write straight to `file`, not atomically: for a caller that already writes to its own partial name. */
  inPlace?: boolean;
}

/** Options for {@link exec}. */
export interface ExecOptions {
  /** Working directory. */
  cwd?: string;
  /** Extra environment variables (merged over process.env); values are masked in prints when registered as secrets. */
  env?: Record<string, string | undefined>;
  /** Stdin: "ignore" (default), "inherit", text or bytes, a Readable, or { file }. */
  stdin?: StdinSpec;
  /** Stdout: "capture" (default), "inherit", "ignore", a Writable, or { file, mode }. */
  stdout?: StdoutSpec;
  /** Read-only probe: runs even in dry-run (and says so). */
  readOnly?: boolean;
  /** Exit codes that count as success (default [0]). */
  okCodes?: number[];
  /** Stop the command (and every process it started) after this many ms: SIGTERM to its group, SIGKILL after a grace period. */
  timeoutMs?: number;
  /**
   * Stop it the same way when its stdout (piped: streamed or captured) has been silent this many
   * ms: a stream from a server that died mid-way (its client may wait for minutes). Every chunk resets it.
   */
  idleMs?: number;
  /** Called with each stderr chunk (for progress parsing); stderr is kept in a bounded tail either way. */
  onStderr?: (chunk: Buffer) => void;
  /** Called with each stdout chunk's byte length when stdout is streamed (for progress). */
  onStdoutBytes?: (n: number) => void;
  /**
   * With stdin: { file }: called about 4 times a second with how far the command has read
   * (its stdin's offset, from /proc; Linux only). The bytes go from the file to the command
   * without passing through this process.
   */
  onStdinRead?: (offset: number) => void;
  /**
   * Kill the command when this process dies, even by SIGKILL (Linux: started under
   * `setpriv --pdeathsig KILL`; where setpriv is missing, not run under it). For a command
   * that reads a file rather than lifeboat's pipe, and would otherwise go on alone.
   */
  killWithParent?: boolean;
  /**
   * Stop it (a timeout, an idle stream, an interrupt, or its stdout consumer failing) by closing its
   * piped stdout first, and give it this many ms to exit on its own before the signals: its next
   * write fails (EPIPE), so a client can end its server-side work cleanly. `vos dump` then ends its
   * volserver transaction; killed by a signal, it leaves the volume busy for minutes.
   */
  stopByClosingStdout?: number;
  /** End a Writable stdout when the command ends (default true). */
  endStdout?: boolean;
  /** Text shown in place of the argv (e.g. a redirect "> dump.sql"); appended to the quoted argv. */
  note?: string;
  /** The context (default: the current one). */
  ctx?: Context;
}

/** What a finished command left. */
export interface ExecResult {
  /** Exit code (0 in dry-run). */
  code: number;
  /** Captured stdout (only with stdout: "capture"). */
  stdout: string;
  /** The last 64 KiB of stderr. */
  stderr: string;
  /** True when the command was printed, not run. */
  dryRun: boolean;
}

/** A command exited with a code not in okCodes, or could not start. */
export class ExecError extends LifeboatError {
  readonly code: number | null;
  readonly stderr: string;
  /** Set when exec itself stopped the command: its timeoutMs ran out, or its stdout was silent for idleMs. */
  stoppedBy?: "timeout" | "idle";
  constructor(display: string, code: number | null, stderr: string, signal?: string | null, cause?: unknown, reason?: string) {
    const why = reason ?? (signal ? `killed by ${signal}` : code === null ? "could not start" : `exit ${code}`);
    const tail = stderr.trim().split("\n").slice(-8).join("\n    ");
    super(`command failed (${why}): ${display}${tail ? `\n    ${tail}` : ""}`, { cause });
    this.code = code;
    this.stderr = stderr;
  }
}

const SAFE = /^[A-Za-z0-9_@%+=:,./-]+$/;
const MASK_TOKEN = "LIFEBOATMASKEDSECRET";

/**
 * Quotes one word for a POSIX shell (sh, dash, bash, zsh): the one quoting function
 * lifeboat has. Used for printing commands and for the remote command of ssh.
 * @example shellQuote("it's") // 'it'\''s'
 */
export function shellQuote(word: string): string {
  // A leading "=" is quoted too: zsh (a login shell over ssh) expands =cmd to cmd's path.
  if (word !== "" && SAFE.test(word) && !word.startsWith("=")) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** Quotes an argv for a POSIX shell: ["ls", "a b"] → "ls 'a b'". */
export function shellJoin(argv: readonly string[]): string {
  return argv.map(shellQuote).join(" ");
}

/**
 * How a command would be typed: env prefix, quoted argv and redirects. Each word is
 * masked before it is quoted, so quoting cannot change a secret's spelling and let it through.
 */
export function displayCommand(argv: readonly string[], opts: ExecOptions = {}, mask: (s: string) => string = (s) => s): string {
  const env = Object.entries(opts.env ?? {})
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${shellQuote(mask(v!))}`);
  const parts = [...env, argv.map((a) => shellQuote(mask(a))).join(" ")];
  if (opts.cwd) parts.unshift(`cd ${shellQuote(opts.cwd)} &&`);
  if (typeof opts.stdin === "object" && opts.stdin && "file" in opts.stdin) parts.push(`< ${shellQuote(opts.stdin.file)}`);
  else if (opts.stdin instanceof Readable) parts.push("< (stream)");
  if (typeof opts.stdout === "object" && opts.stdout && "file" in opts.stdout) parts.push(`${opts.stdout.append ? ">>" : ">"} ${shellQuote(opts.stdout.file)}`);
  else if (opts.stdout instanceof Writable) parts.push("> (stream)");
  if (opts.note) parts.push(opts.note);
  return parts.join(" ");
}

/** Polls how far a child has read its stdin (a file): the `pos` of /proc/PID/fdinfo/0. */
function watchStdin(child: ChildProcess, report: (offset: number) => void): NodeJS.Timeout {
  const t = setInterval(() => {
    try {
      const pos = /^pos:\s+(\d+)/m.exec(readFileSync(`/proc/${child.pid}/fdinfo/0`, "utf8"));
      if (pos) report(Number(pos[1]));
    } catch {
      // gone, or no /proc: no progress
    }
  }, 250);
  t.unref();
  return t;
}

/** How long a stopped command's process group has between SIGTERM and SIGKILL. */
const GRACE_MS = 2000;

/** A running command: its child and how to stop its whole process group. */
interface Running {
  child: ChildProcess;
  /** Signal the child's process group (or the child alone when it shares the terminal's group). */
  signal(sig: NodeJS.Signals): void;
  /** SIGTERM (or sig) to the group now, SIGKILL after the grace period. */
  stop(sig?: NodeJS.Signals): void;
  /** stop() closed the child's stdout first (stopByClosingStdout). */
  closedStdout: boolean;
}

const running = new Set<Running>();
let exitHook = false;

/**
 * Stops every command still running, with each one's whole process group: sig now
 * (default SIGTERM), then SIGKILL after a short grace period. The recipe runner calls it on
 * SIGINT/SIGTERM (a ctrl-C does not reach the commands' own process groups).
 * @example process.on("SIGINT", () => killRunning());
 */
export function killRunning(signal: NodeJS.Signals = "SIGTERM"): void {
  for (const r of running) r.stop(signal);
}

function track(child: ChildProcess, group: boolean, closeFirstMs = 0): Running {
  let stopped = false;
  const r: Running = {
    child,
    closedStdout: false,
    signal(sig) {
      if (child.pid === undefined) return;
      try {
        process.kill(group ? -child.pid : child.pid, sig);
      } catch { /* already gone */ }
    },
    stop(sig = "SIGTERM") {
      if (closeFirstMs > 0 && sig !== "SIGKILL" && !stopped) {
        // its stdout closed first: it sees EPIPE and may end cleanly; the signals follow if it has not
        if (!r.closedStdout) {
          r.closedStdout = true;
          child.stdout?.destroy();
          setTimeout(() => (closeFirstMs = 0, r.stop(sig)), closeFirstMs).unref?.();
        }
        return;
      }
      r.signal(sig);
      if (stopped || sig === "SIGKILL") return;
      stopped = true;
      // Stragglers that ignore SIGTERM (or outlive the leader) get SIGKILL; the timer does not keep the process alive.
      setTimeout(() => r.signal("SIGKILL"), GRACE_MS).unref?.();
    },
  };
  running.add(r);
  if (!exitHook) {
    exitHook = true;
    // Children in their own groups would outlive an abrupt exit (a second ctrl-C): take them along.
    process.once("exit", () => {
      for (const x of running) x.signal("SIGKILL");
    });
  }
  return r;
}

/**
 * Runs a command from an argv array. Streams stdin and stdout, keeps a bounded
 * stderr tail, and honours dry-run.
 * @example
 * await exec(["pg_dumpall", "-h", host], { stdout: { file: "dump.sql", mode: 0o600 }, env: { PGPASSWORD: pw } });
 * const { stdout } = await exec(["docker", "ps", "-q"], { readOnly: true });
 */
export async function exec(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const ctx = opts.ctx ?? useContext();
  if (argv.length === 0) throw new LifeboatError("exec: empty argv");
  if (opts.killWithParent && hasSetpriv()) argv = ["setpriv", "--pdeathsig", "KILL", "--", ...argv];
  // Mask with a shell-safe placeholder, quote, then show the mask: PGPASSWORD=*** rather than '***'.
  const display = displayCommand(argv, opts, (w) => ctx.secrets.redact(w, MASK_TOKEN)).replaceAll(MASK_TOKEN, "***");
  if (ctx.dryRun && !opts.readOnly) {
    ctx.log.command(display, "dry-run");
    return { code: 0, stdout: "", stderr: "", dryRun: true };
  }
  ctx.log.command(display, ctx.dryRun ? "probe" : "run");
  const out = opts.stdout;
  if (isFile(out) && !out.append && !out.inPlace) {
    const label = ctx.secrets.redact(display);
    return captureToFile(out.file, (tmp) => run(argv, { ...opts, stdout: { file: tmp, inPlace: true } }, display, ctx), { mode: out.mode, label });
  }
  return run(argv, opts, display, ctx);
}

let setpriv: boolean | undefined;
/** True when util-linux's setpriv (with --pdeathsig) is on PATH, looked up once. */
function hasSetpriv(): boolean {
  return (setpriv ??= process.platform === "linux" && which("setpriv"));
}

function isFile(out: StdoutSpec | undefined): out is StdoutFile {
  return typeof out === "object" && out !== null && !(out instanceof Writable) && "file" in out;
}

/** Runs the command for {@link exec} (after the dry-run check and the print). */
async function run(argv: readonly string[], opts: ExecOptions, display: string, ctx: Context): Promise<ExecResult> {
  throwIfAborted(ctx);
  const toClose: number[] = [];
  const stdio: ("pipe" | "ignore" | "inherit" | number)[] = ["ignore", "pipe", "pipe"];
  const stdin = opts.stdin ?? "ignore";
  if (stdin === "inherit" || stdin === "ignore") stdio[0] = stdin;
  else if (typeof stdin === "object" && !(stdin instanceof Uint8Array) && !(stdin instanceof Readable)) {
    stdio[0] = openSync(stdin.file, "r");
    toClose.push(stdio[0]);
  } else stdio[0] = "pipe";
  const stdout = opts.stdout ?? "capture";
  if (stdout === "inherit" || stdout === "ignore") stdio[1] = stdout;
  else if (typeof stdout === "object" && !(stdout instanceof Writable) && !opts.onStdoutBytes) {
    stdio[1] = openSync(stdout.file, stdout.append ? "a" : "w", stdout.mode ?? 0o600);
    toClose.push(stdio[1]);
  }

  // Its own process group, unless it reads the terminal (a background group could not).
  const group = !(stdio[0] === "inherit" && !!process.stdin.isTTY);
  let child: ChildProcess;
  try {
    child = spawn(argv[0], argv.slice(1), { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio, detached: group });
  } finally {
    for (const fd of toClose) closeSync(fd);
  }
  const proc = track(child, group, stdio[1] === "pipe" ? opts.stopByClosingStdout : 0);
  const reading = opts.onStdinRead && typeof stdio[0] === "number" ? watchStdin(child, opts.onStdinRead) : undefined;
  let stoppedBy: "timeout" | "idle" | "abort" | null = null;
  const timer = opts.timeoutMs === undefined ? undefined : setTimeout(() => {
    stoppedBy ??= "timeout";
    proc.stop();
  }, opts.timeoutMs);
  let idle: NodeJS.Timeout | undefined;
  const quiet = () => {
    stoppedBy ??= "idle";
    proc.stop();
  };
  if (opts.idleMs && stdio[1] === "pipe") {
    idle = setTimeout(quiet, opts.idleMs);
    child.stdout!.on("data", () => idle!.refresh());
  }
  const onAbort = () => {
    stoppedBy ??= "abort";
    proc.stop();
  };
  ctx.signal.addEventListener("abort", onAbort, { once: true });
  const ok = opts.okCodes ?? [0];
  // A command that died or failed leaves nothing of its group running (e.g. a child holding our pipes).
  child.once("exit", (c, s) => {
    clearTimeout(timer);
    clearTimeout(idle);
    if (s !== null || c === null || !ok.includes(c)) proc.stop();
  });

  // Stream jobs are watched from the start: a stream that fails mid-run stops the child,
  // and its error is reported after the child is gone (never an unhandled rejection).
  const jobs: Promise<unknown>[] = [];
  let streamError: Error | null = null;
  const watch = (p: Promise<unknown>) =>
    jobs.push(p.catch((e: Error) => {
      streamError ??= e;
      proc.stop();
    }));
  let captured = "";
  let tail = "";
  child.stderr!.on("data", (d: Buffer) => {
    opts.onStderr?.(d);
    tail = (tail + d.toString("utf8")).slice(-65536);
  });
  if (stdio[0] === "pipe") {
    const src = stdin instanceof Readable ? stdin : Readable.from([Buffer.from(stdin as string | Uint8Array)]);
    watch(pipeline(src, child.stdin!).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== "EPIPE" && e.code !== "ERR_STREAM_PREMATURE_CLOSE") throw e;
    }));
  }
  if (stdio[1] === "pipe") {
    if (stdout === "capture") {
      child.stdout!.setEncoding("utf8");
      child.stdout!.on("data", (d: string) => (captured += d));
    } else {
      const dest = stdout instanceof Writable
        ? stdout
        : createWriteStream((stdout as { file: string }).file, {
          flags: (stdout as { append?: boolean }).append ? "a" : "w",
          mode: (stdout as { mode?: number }).mode ?? 0o600,
        });
      if (opts.onStdoutBytes) child.stdout!.on("data", (d: Buffer) => opts.onStdoutBytes!(d.length));
      watch(pipeline(child.stdout!, dest, { end: opts.endStdout ?? true }).catch((e: NodeJS.ErrnoException) => {
        if (!(proc.closedStdout && e.code === "ERR_STREAM_PREMATURE_CLOSE")) throw e; // stopByClosingStdout closed it
      }));
    }
  }

  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
    child.once("error", (e) => reject(new ExecError(display, null, String((e as Error).message), null, e)));
    child.once("close", (c, s) => resolve([c, s]));
  }).finally(() => {
    clearTimeout(timer);
    clearTimeout(idle);
    clearInterval(reading);
    ctx.signal.removeEventListener("abort", onAbort);
    running.delete(proc);
  });
  await Promise.all(jobs);
  if (stoppedBy === "abort") throw ctx.signal.reason;
  if (streamError) {
    const e = streamError as NodeJS.ErrnoException;
    throw new LifeboatError(`${ctx.secrets.redact(display)}: ${e.code === "ENOSPC" ? "no space left on the device" : "a stream failed"} (${ctx.secrets.redact(e.message)})`, { cause: e });
  }
  if (stoppedBy === "timeout" || stoppedBy === "idle") {
    const why = stoppedBy === "timeout" ? `timed out after ${formatMs(opts.timeoutMs!)}; stopped` : `no output for ${formatMs(opts.idleMs!)} (the other end stopped sending); stopped`;
    const err = new ExecError(ctx.secrets.redact(display), code, ctx.secrets.redact(tail), signal, undefined, why);
    err.stoppedBy = stoppedBy;
    throw err;
  }
  if (signal || code === null || !ok.includes(code)) {
    throw new ExecError(ctx.secrets.redact(display), code, ctx.secrets.redact(tail), signal);
  }
  return { code, stdout: captured, stderr: tail, dryRun: false };
}

/** Runs a read-only command and returns its trimmed stdout (runs in dry-run too). */
export async function probe(argv: readonly string[], opts: Omit<ExecOptions, "readOnly" | "stdout"> = {}): Promise<string> {
  const r = await exec(argv, { ...opts, readOnly: true, stdout: "capture" });
  return r.stdout.trim();
}

/** True when a program is on PATH (no process is started). */
export function which(program: string): boolean {
  if (program.includes("/")) return isExecutable(program);
  return (process.env.PATH ?? "").split(":").some((dir) => dir && isExecutable(`${dir}/${program}`));
}

function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}
