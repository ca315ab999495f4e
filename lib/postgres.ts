// PostgreSQL: dump a cluster or a database, load a dump, ask small questions.
//
// PostgreSQL's own client programs do the work (pg_dumpall, pg_dump, psql, pg_restore);
// these helpers decide where they run — on this host, inside a container via
// `docker exec` (the Deis runbook's way), or on another host over ssh — and plumb
// their bytes. A dump streams into a hidden `.partial-NAME.PID` file (mode 0600) that
// is renamed to NAME only once the tool exited 0, so a failed dump never leaves a file
// under the final name. Without gzip the file descriptor is handed to the tool and no
// byte passes through this process.
//
// Passwords never reach argv or logs: they are registered as secrets, then travel as
// PGPASSWORD in the tool's environment (locally, and through the docker client's
// environment with `docker exec -e PGPASSWORD`), or over ssh as the first line of stdin,
// read by a tiny remote `sh -c 'IFS= read -r PGPASSWORD …'` wrapper.
import { createReadStream, existsSync, readFileSync, statSync, createWriteStream, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { basename, posix, resolve } from "node:path";
import { PassThrough, Readable, Transform, Writable, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { exec, ExecError, shellQuote, type ExecResult, type StdinSpec, type StdoutSpec } from "./exec.ts";
import { dockerCli, dockerExec } from "./docker.ts";
import { waitForHealthy, type WaitOptions, type WaitResult } from "./health.ts";
import { sshCommand, type SshTarget } from "./ssh.ts";
import { LifeboatError, UsageError } from "./errors.ts";
import { captureToFile } from "./files.ts";
import { useContext, type Context } from "./context.ts";
import { formatBytes, type Progress } from "./log.ts";
import { createParallelGzip } from "./compress.ts";

/** How to reach the server and where the client programs are: shared by every {@link PgWhere}. */
export interface PgConnection {
  /** Server host or socket directory (--host); default: the client's default (local socket). */
  host?: string;
  /** Server port (--port); default: the client's default (5432). */
  port?: number;
  /** Role to connect as (--username); default: the client's default (the OS user). */
  user?: string;
  /** The password, e.g. from a secret setting. Registered as a secret; never in argv. */
  password?: string;
  /** A file whose first line is the password (read here, on this host). */
  passwordFile?: string;
  /** Directory holding pg_dump, pg_dumpall, psql and pg_restore where they run (default: PATH there). */
  binDir?: string;
}

/** The client programs run on this host. */
export interface PgLocal extends PgConnection {
  container?: undefined;
  ssh?: undefined;
}

/** The client programs run inside a container, through `docker exec` (as the Deis runbook does). */
export interface PgContainer extends PgConnection {
  /** Container name. */
  container: string;
  /** OS user inside the container (docker exec -u); default "postgres", as the runbook's `sudo -u postgres`. */
  osUser?: string;
  /** Docker daemon running the container (`docker --host`), e.g. "ssh://core@deis-1"; default: the local one. */
  dockerHost?: string;
  ssh?: undefined;
}

/** The client programs run on another host, over ssh. */
export interface PgSsh extends PgConnection {
  /** The host to run them on. */
  ssh: SshTarget;
  container?: undefined;
}

/** Where pg's client programs run, and which server they talk to. */
export type PgWhere = PgLocal | PgContainer | PgSsh;

/** Options shared by {@link pgDumpAll} and {@link pgDump}. */
export interface PgDumpOutputOptions {
  /** gzip the output on the way (true = level 6, or a level 1–9); streamed, never held in memory. */
  gzip?: boolean | number;
  /** Fixed key for the `\restrict` line of pg_dump 15.14+ (letters and digits), so two dumps of the same data are identical. */
  restrictKey?: string;
  /** More flags for the tool, e.g. ["--globals-only"] or ["--no-role-passwords"]. */
  extraArgs?: string[];
  /** fsync the file before and the folder after the rename (default true). */
  fsync?: boolean;
  /** Show byte progress (default true). */
  progress?: boolean;
  /** The context (default: the current one). */
  ctx?: Context;
}

/** Options for {@link pgDumpAll}. */
export type PgDumpAllOptions = PgDumpOutputOptions;

/** Options for {@link pgDump}. */
export interface PgDumpOptions extends PgDumpOutputOptions {
  /** "custom" (default: compressed, for pg_restore) or "plain" (SQL, for psql). */
  format?: "custom" | "plain";
}

/** What a dump produced. */
export interface DumpResult {
  /** The final file (absolute), or undefined when the output was a Writable. */
  path?: string;
  /** Bytes the tool wrote (before gzip). */
  bytes: number;
  /** Bytes written to the output (after gzip; equal to bytes without it). */
  written: number;
  /** Wall time in ms. */
  ms: number;
  /** True in dry-run: the command was printed, nothing ran, nothing was written. */
  dryRun: boolean;
}

/**
 * Dumps a whole cluster (roles, tablespaces, every database) as SQL with pg_dumpall.
 * `out` is a file (written atomically, mode 0600) or a Writable.
 * @example
 * // Deis: docker exec deis-database sudo -u postgres pg_dumpall > dump_all.sql
 * await pgDumpAll({ container: "deis-database" }, "backups/dump_all.sql");
 * // LambdaStack: pg_dumpall > pg_backup.bak, from a host, gzipped
 * await pgDumpAll({ host: "10.0.0.5", user: "postgres", passwordFile: "/etc/lifeboat/pg.pw" }, "pg_backup.sql.gz", { gzip: true });
 */
export async function pgDumpAll(where: PgWhere, out: string | Writable, opts: PgDumpAllOptions = {}): Promise<DumpResult> {
  const args = [...connArgs(where), "--no-password", ...restrictArgs(opts.restrictKey), ...(opts.extraArgs ?? [])];
  return dumpTo(where, "pg_dumpall", args, out, opts);
}

/**
 * Dumps one database with pg_dump, in custom format (default, for {@link pgRestore}) or plain SQL (for {@link psqlFile}).
 * Any database name works: it is passed as a quoted conninfo, never parsed as a flag.
 * @example
 * // LambdaStack: pg_dump dbname > dbname.bak
 * await pgDump({ host: "127.0.0.1", user: "postgres", password }, "shop", "backups/shop.dump");
 * await pgDump({ container: "db" }, "shop", "backups/shop.sql.gz", { format: "plain", gzip: true });
 */
export async function pgDump(where: PgWhere, database: string, out: string | Writable, opts: PgDumpOptions = {}): Promise<DumpResult> {
  const format = opts.format ?? "custom";
  if (format !== "custom" && format !== "plain") throw new UsageError(`pgDump: unknown format ${JSON.stringify(format)}`, 'use "custom" or "plain"');
  const args = [
    ...connArgs(where),
    "--no-password",
    `--format=${format}`,
    ...restrictArgs(opts.restrictKey),
    ...(opts.extraArgs ?? []),
    `--dbname=${conninfo({ dbname: database })}`,
  ];
  return dumpTo(where, "pg_dump", args, out, opts, database);
}

/** Options for {@link psqlFile}. */
export interface PsqlFileOptions {
  /** Database to connect to first (default "postgres"); a pg_dumpall script then \connects to each database itself. */
  database?: string;
  /**
   * Roles that already exist in the target: their `CREATE ROLE x;` line in the roles section is
   * skipped (the `ALTER ROLE x WITH … PASSWORD …` after it still applies the dump's attributes and
   * password). Default: the connecting role (`user`, or "postgres").
   */
  existingRoles?: string[];
  /** The input is gzip (default: a file name ending in .gz). */
  gzip?: boolean;
  /** Show byte progress (default true). */
  progress?: boolean;
  /** The context (default: the current one). */
  ctx?: Context;
}

/** What a load consumed. */
export interface LoadResult {
  /** Bytes of the input read (as stored: compressed when gzip). */
  bytes: number;
  /** Wall time in ms. */
  ms: number;
  /** True in dry-run: the command was printed, nothing ran. */
  dryRun: boolean;
}

/**
 * Loads a SQL script (a pg_dumpall or plain pg_dump, optionally gzipped) with psql, stopping at
 * the first error (ON_ERROR_STOP). Loading a pg_dumpall into a fresh cluster would fail on
 * `role "postgres" already exists`; that one CREATE ROLE is skipped (see existingRoles), so any
 * error left is a real one and fails with psql's message.
 * @example
 * // LambdaStack: psql < pg_backup.bak
 * await psqlFile({ host: "127.0.0.1", port: 5433, user: "postgres", password }, "pg_backup.sql.gz");
 * await psqlFile({ container: "deis-database" }, "backups/dump_all.sql");
 */
export async function psqlFile(where: PgWhere, input: string | Readable, opts: PsqlFileOptions = {}): Promise<LoadResult> {
  const ctx = opts.ctx ?? useContext();
  const db = opts.database ?? "postgres";
  const args = [...connArgs(where), "--no-password", "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", `--dbname=${conninfo({ dbname: db })}`, "--file=-"];
  const roles = opts.existingRoles ?? [where.user ?? "postgres"];
  return loadFrom(where, "psql", args, input, { ...opts, ctx }, [skipCreateRoles(roles, ctx)]);
}

/** Options for {@link pgRestore}. */
export interface PgRestoreOptions {
  /** With create: the database to connect to first (default "postgres"). Without: the database to restore into (required). */
  database?: string;
  /** Create the dump's database, under its original name, and restore into it (--create). */
  create?: boolean;
  /** Drop objects before recreating them (--clean --if-exists). */
  clean?: boolean;
  /** Do not restore ownership (--no-owner), e.g. when the roles do not exist in the target. */
  noOwner?: boolean;
  /** More pg_restore flags, e.g. ["--no-privileges"]. */
  extraArgs?: string[];
  /** The input is gzip (default: a file name ending in .gz). */
  gzip?: boolean;
  /** Show byte progress (default true). */
  progress?: boolean;
  /** The context (default: the current one). */
  ctx?: Context;
}

/**
 * Loads a custom-format dump (from {@link pgDump}) with pg_restore, stopping at the first error
 * (--exit-on-error). The dump streams through stdin, so it can live on this host whatever `where` is.
 * @example
 * // LambdaStack: pg_restore -d dbname db_name.bak
 * await pgRestore({ host: "127.0.0.1", user: "postgres", password }, "backups/shop.dump", { create: true });
 */
export async function pgRestore(where: PgWhere, input: string | Readable, opts: PgRestoreOptions = {}): Promise<LoadResult> {
  const ctx = opts.ctx ?? useContext();
  if (!opts.create && !opts.database) throw new UsageError("pgRestore: say which database to restore into (database), or create it from the dump (create: true)");
  const args = [...connArgs(where), "--no-password", "--exit-on-error"];
  if (opts.create) args.push("--create");
  if (opts.clean) args.push("--clean", "--if-exists");
  if (opts.noOwner) args.push("--no-owner");
  args.push(...(opts.extraArgs ?? []), `--dbname=${conninfo({ dbname: opts.database ?? "postgres" })}`);
  return loadFrom(where, "pg_restore", args, input, { ...opts, ctx }, []);
}

/** Options for {@link psqlQuery}. */
export interface PsqlQueryOptions {
  /** Database to connect to (default "postgres"). */
  database?: string;
  /** The context (default: the current one). */
  ctx?: Context;
}

/**
 * Runs a small read-only query and returns its rows (SQL NULL as null). The session is opened
 * with default_transaction_read_only=on (a guard against mistakes, not a security boundary);
 * it runs in dry-run too.
 * @example
 * const rows = await psqlQuery(where, "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1");
 * const names = rows.map((r) => r[0]);
 */
export async function psqlQuery(where: PgWhere, sql: string, opts: PsqlQueryOptions = {}): Promise<(string | null)[][]> {
  const ctx = opts.ctx ?? useContext();
  const info = conninfo({ dbname: opts.database ?? "postgres", options: "-c default_transaction_read_only=on" });
  // psql's CSV prints NULL and '' alike; a random marker for NULL tells them apart.
  const nullMark = `<NULL:${randomBytes(8).toString("hex")}>`;
  const args = [
    ...connArgs(where),
    "--no-password",
    "--no-psqlrc",
    "--quiet",
    "--csv",
    "--tuples-only",
    `--pset=null=${nullMark}`,
    "--set=ON_ERROR_STOP=1",
    `--dbname=${info}`,
    `--command=${sql}`,
  ];
  try {
    const r = await runPg(where, "psql", args, { stdout: "capture", readOnly: true }, ctx);
    return parseCsv(r.stdout).map((row) => row.map((v) => (v === nullMark ? null : v)));
  } catch (e) {
    throw pgFailure(e, "psql", where);
  }
}

// ---- where the programs run --------------------------------------------------------------

interface RunIo {
  stdin?: StdinSpec;
  stdout: StdoutSpec;
  readOnly?: boolean;
  note?: string;
}

/** The password for where, read and registered as a secret; undefined when none is configured. */
function passwordOf(where: PgWhere, ctx: Context): string | undefined {
  if (where.password !== undefined && where.passwordFile !== undefined) {
    throw new UsageError("PostgreSQL connection: give password or passwordFile, not both");
  }
  let pw = where.password;
  if (where.passwordFile !== undefined) {
    let text: string;
    try {
      text = readFileSync(where.passwordFile, "utf8");
    } catch (e) {
      throw new UsageError(`password file ${where.passwordFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, "check the path and that this user can read it");
    }
    pw = text.split("\n")[0].replace(/\r$/, "");
    if (pw === "") throw new UsageError(`password file ${where.passwordFile}: the first line is empty`);
  }
  if (pw === undefined) return undefined;
  ctx.secrets.add(pw);
  ctx.secrets.add(shellQuote(pw)); // exec prints env as PGPASSWORD='quoted value'
  if (/[\n\0]/.test(pw)) throw new UsageError("PostgreSQL password: contains a newline or NUL, which cannot be passed safely");
  return pw;
}

/** Reads the password line over ssh, then runs the tool with it in PGPASSWORD. */
const READ_PASSWORD = 'IFS= read -r PGPASSWORD || { echo "lifeboat: no password on stdin" >&2; exit 111; }; export PGPASSWORD; exec "$@"';

/** Runs one pg client program where `where` says, with the password passed out of argv. */
async function runPg(where: PgWhere, tool: string, args: string[], io: RunIo, ctx: Context): Promise<ExecResult> {
  const pw = passwordOf(where, ctx);
  const bin = where.binDir ? posix.join(where.binDir, tool) : tool;
  const common = { stdout: io.stdout, readOnly: io.readOnly, note: io.note, ctx };
  if (where.container !== undefined) {
    return dockerExec(where.container, [bin, ...args], {
      ...common,
      stdin: io.stdin,
      user: where.osUser ?? "postgres",
      dockerHost: where.dockerHost,
      env: pw === undefined ? undefined : { PGPASSWORD: pw },
    });
  }
  if (where.ssh !== undefined) {
    if (pw === undefined) return exec(sshCommand(where.ssh, [bin, ...args]), { ...common, stdin: io.stdin });
    const argv = sshCommand(where.ssh, ["sh", "-c", READ_PASSWORD, "sh", bin, ...args]);
    return exec(argv, { ...common, stdin: withPasswordLine(pw, io.stdin ?? "ignore") });
  }
  return exec([bin, ...args], { ...common, stdin: io.stdin, env: pw === undefined ? undefined : { PGPASSWORD: pw } });
}

function withPasswordLine(pw: string, stdin: StdinSpec): StdinSpec {
  const line = Buffer.from(pw + "\n");
  if (stdin === "ignore") return line;
  if (stdin === "inherit") throw new UsageError("a password over ssh travels on stdin, so stdin cannot be inherited");
  if (typeof stdin === "string" || stdin instanceof Uint8Array) return Buffer.concat([line, Buffer.from(stdin)]);
  const src = stdin instanceof Readable ? stdin : createReadStream(stdin.file);
  return Readable.from((async function* () {
    yield line;
    yield* src;
  })(), { objectMode: false });
}

function connArgs(where: PgWhere): string[] {
  const a: string[] = [];
  if (where.host !== undefined) a.push(`--host=${where.host}`);
  if (where.port !== undefined) {
    if (!Number.isInteger(where.port) || where.port < 1 || where.port > 65535) throw new UsageError(`PostgreSQL port ${where.port}: not a port number`);
    a.push(`--port=${where.port}`);
  }
  if (where.user !== undefined) a.push(`--username=${where.user}`);
  return a;
}

function restrictArgs(key: string | undefined): string[] {
  if (key === undefined) return [];
  if (!/^[A-Za-z0-9]+$/.test(key)) throw new UsageError(`restrictKey ${JSON.stringify(key)}: use letters and digits only`);
  return [`--restrict-key=${key}`];
}

/** A libpq conninfo string: key='value' pairs, quoted so any value (spaces, quotes, '=') is taken literally. */
function conninfo(params: Record<string, string>): string {
  return Object.entries(params)
    .map(([k, v]) => `${k}='${v.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`)
    .join(" ");
}

/** Where, in words, for messages: "127.0.0.1:55432", "container db", "ssh root@h:2222 → 127.0.0.1:5432". */
export function describeWhere(where: PgWhere): string {
  const server = where.host === undefined && where.port === undefined
    ? ""
    : where.host?.startsWith("/")
      ? `socket ${where.host}${where.port ? ` port ${where.port}` : ""}`
      : `${where.host ?? "localhost"}:${where.port ?? 5432}`;
  if (where.container !== undefined) return `container ${where.container}${where.dockerHost ? ` on ${where.dockerHost}` : ""}${server ? ` → ${server}` : ""}`;
  if (where.ssh !== undefined) {
    const t = where.ssh;
    return `ssh ${t.user ? `${t.user}@` : ""}${t.host}${t.port ? `:${t.port}` : ""}${server ? ` → ${server}` : ""}`;
  }
  return server || "local socket";
}

/** Turns a failed pg program into an error that names the server and says what to do. */
function pgFailure(e: unknown, tool: string, where: PgWhere): unknown {
  if (!(e instanceof ExecError)) return e;
  const on = `${tool} on ${describeWhere(where)}`;
  const exit = e.code === null ? "did not start" : `exit ${e.code}`;
  const err = e.stderr;
  const auth = /password authentication failed for user "([^"]*)"/.exec(err);
  if (auth) {
    return new LifeboatError(`${on}: password authentication failed for user "${auth[1]}" (${exit})`, {
      hint: where.passwordFile ? `check the password in ${where.passwordFile} (it is not shown here)` : "check the password setting (it is not shown here)",
      cause: e,
    });
  }
  if (/no password supplied|password is required/i.test(err)) {
    return new LifeboatError(`${on}: the server asks for a password and none was given (${exit})`, { hint: "set password or passwordFile", cause: e });
  }
  if (!/FATAL:/.test(err) && /could not connect|connection to server .*failed|Connection refused|could not translate host name|timeout expired|No such file or directory\s*\n?\s*Is the server running/i.test(err)) {
    return new LifeboatError(`${on}: cannot connect to the server (${exit}): ${keyLines(err)}`, { hint: "is PostgreSQL running there, and are host and port right?", cause: e });
  }
  if (e.code === 127 || /command not found|not found in \$PATH|executable file not found|No such file or directory/.test(err) && !/ERROR:/.test(err)) {
    return new LifeboatError(`${on}: ${tool} was not found (${exit}): ${keyLines(err)}`, { hint: "install the PostgreSQL client there, or set binDir", cause: e });
  }
  return new LifeboatError(`${on} failed (${exit}): ${keyLines(err)}`, { cause: e });
}

/** The lines of stderr that say what went wrong (ERROR/FATAL/error:), else its last lines. */
function keyLines(stderr: string): string {
  const lines = stderr.split("\n").map((l) => l.trim()).filter(Boolean);
  const key = lines.filter((l) => /\b(ERROR|FATAL|PANIC):|\berror:/.test(l));
  return (key.length ? key.slice(0, 3) : lines.slice(-3)).join(" | ") || "(no message)";
}

// ---- dumps: tool stdout → (gzip) → .partial file → rename ---------------------------------

async function dumpTo(where: PgWhere, tool: string, args: string[], out: string | Writable, opts: PgDumpOutputOptions, what?: string): Promise<DumpResult> {
  const ctx = opts.ctx ?? useContext();
  const level = opts.gzip === true ? 6 : opts.gzip === false ? undefined : opts.gzip;
  if (level !== undefined && (!Number.isInteger(level) || level < 1 || level > 9)) throw new UsageError(`gzip level ${level}: use 1–9`);
  const started = Date.now();
  const final = typeof out === "string" ? resolve(out) : undefined;
  const label = `${tool}${what === undefined ? "" : ` ${what}`} from ${describeWhere(where)}`;
  const run = async (io: RunIo) => {
    try {
      return await runPg(where, tool, args, io, ctx);
    } catch (e) {
      throw pgFailure(e, tool, where);
    }
  };

  if (ctx.dryRun) {
    const into = final === undefined ? "(stream)" : shellQuote(final);
    await run({ stdout: "ignore", note: level === undefined ? `> ${into}` : `| gzip -${level} > ${into}` });
    return { path: final, bytes: 0, written: 0, ms: 0, dryRun: true };
  }

  const progress = opts.progress === false ? null : ctx.log.progress(label);
  let bytes = 0;
  let written = 0;
  /** The tool's output into the partial file: straight from its stdout, or through gzip. */
  const fill = async (file: string) => {
    if (level !== undefined) {
      ({ bytes, written } = await streamThrough(run, createWriteStream(file), level, progress));
      return;
    }
    // The tool writes straight into the file; its size is the progress.
    const timer = progress
      ? setInterval(() => {
        const size = sizeOf(file);
        progress.add(size - bytes);
        bytes = size;
      }, 250)
      : null;
    try {
      await run({ stdout: { file, inPlace: true } });
    } finally {
      if (timer) clearInterval(timer);
    }
    const size = sizeOf(file);
    progress?.add(size - bytes);
    bytes = written = size;
  };
  try {
    if (final !== undefined) await captureToFile(final, fill, { fsync: opts.fsync, label });
    else ({ bytes, written } = await streamThrough(run, out as Writable, level, progress));
  } catch (e) {
    progress?.fail(`${label} failed`);
    throw e;
  }
  const ms = Date.now() - started;
  progress?.done(`${label}: ${formatBytes(bytes)}${level !== undefined ? ` → ${formatBytes(written)} gzipped` : ""}${final ? ` into ${final}` : ""}`);
  return { path: final, bytes, written, ms, dryRun: false };
}

function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** Runs the tool with stdout → counter → (gzip) → dest, and waits for both ends. */
async function streamThrough(
  run: (io: RunIo) => Promise<ExecResult>,
  dest: Writable,
  level: number | undefined,
  progress: Progress | null,
): Promise<{ bytes: number; written: number }> {
  let bytes = 0;
  let written = 0;
  const inner = new PassThrough();
  const after = counting((n) => (written += n));
  const sink = level === undefined ? pipeline(inner, after, dest) : pipeline(inner, createParallelGzip({ level }), after, dest);
  // The tool's stdout goes into a relay that never fails: if writing breaks (ENOSPC, a closed
  // stream), the rest of the tool's output is dropped and the write error is reported below.
  const stdout = relay(inner, "discard", (n) => {
    bytes += n;
    progress?.add(n);
  });
  const [ran, sank] = await Promise.allSettled([run({ stdout }), sink]);
  // A write failure is the cause of whatever the tool then saw.
  if (sank.status === "rejected") throw sank.reason;
  if (ran.status === "rejected") throw ran.reason;
  return { bytes, written };
}

/** The program stopped reading its stdin (it exited, usually on an error it reports itself). */
class StoppedReading extends Error {}

/**
 * A Writable that forwards into target with backpressure, and ends it at the end. When target
 * goes away (destroyed by its own pipeline), the rest is dropped ("discard") or the write fails
 * ("fail"). Either way no error travels back into target's owner: exec's own plumbing stays quiet.
 */
function relay(target: Writable, onGone: "discard" | "fail", onBytes?: (n: number) => void): Writable {
  target.on("error", () => {}); // reported by the pipeline that owns target
  const gone = (cb: (e?: Error) => void) => (onGone === "discard" ? cb() : cb(new StoppedReading("the program stopped reading its input")));
  return new Writable({
    write(chunk: Buffer, _e: BufferEncoding, cb: (e?: Error) => void) {
      onBytes?.(chunk.length);
      if (target.destroyed || target.writableEnded) return gone(cb);
      if (target.write(chunk)) return cb();
      const onDrain = () => {
        target.off("close", onClose);
        cb();
      };
      const onClose = () => {
        target.off("drain", onDrain);
        gone(cb);
      };
      target.once("drain", onDrain);
      target.once("close", onClose);
    },
    final(cb: (e?: Error) => void) {
      if (!target.destroyed && !target.writableEnded) target.end();
      cb();
    },
  });
}

function counting(onBytes: (n: number) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback) {
      onBytes(chunk.length);
      cb(null, chunk);
    },
  });
}

// ---- loads: file or stream → (gunzip) → filters → tool stdin -----------------------------

async function loadFrom(
  where: PgWhere,
  tool: string,
  args: string[],
  input: string | Readable,
  opts: { gzip?: boolean; progress?: boolean; ctx: Context },
  filters: Transform[],
): Promise<LoadResult> {
  const ctx = opts.ctx;
  const started = Date.now();
  const file = typeof input === "string" ? resolve(input) : undefined;
  // In dry-run the file may be one the dry run did not write (an archive it did not unpack): report, do not fail.
  if (file !== undefined && !existsSync(file) && !ctx.dryRun) throw new UsageError(`${tool}: dump file ${file} does not exist`);
  const gz = opts.gzip ?? (file !== undefined && file.endsWith(".gz"));
  const label = `${tool} ${file !== undefined ? basename(file) : "(stream)"} into ${describeWhere(where)}`;
  const fail = (e: unknown) => {
    const f = pgFailure(e, tool, where);
    if (f instanceof LifeboatError && e instanceof ExecError && e.code !== null && /ERROR:/.test(e.stderr)) {
      return new LifeboatError(`${label}: stopped at the first error (exit ${e.code}): ${keyLines(e.stderr)}`, {
        hint: "a cluster dump loads into a fresh cluster; an error here usually means the target already holds some of this data",
        cause: e,
      });
    }
    return f;
  };

  if (ctx.dryRun) {
    const from = file === undefined ? "(stream)" : shellQuote(file);
    try {
      await runPg(where, tool, args, { stdout: "ignore", note: gz ? `< ${from} (gunzipped)` : `< ${from}` }, ctx);
    } catch (e) {
      throw fail(e);
    }
    return { bytes: 0, ms: 0, dryRun: true };
  }

  const progress = opts.progress === false ? null : ctx.log.progress(label, file !== undefined ? { total: statSync(file).size } : {});
  let bytes = 0;
  const src = file !== undefined ? createReadStream(file) : (input as Readable);
  // file → count → (gunzip) → filters → relay → feed, and feed is the tool's stdin. If reading
  // breaks, feed is ended cleanly (the tool sees EOF) and the read error is reported below.
  const feed = new PassThrough();
  const chain: (Readable | Writable)[] = [src, counting((n) => {
    bytes += n;
    progress?.add(n);
  })];
  if (gz) chain.push(createGunzip());
  chain.push(...filters, relay(feed, "fail"));
  const feeding = pipeline(chain as unknown as [Readable, Writable]).catch((e) => {
    if (!feed.destroyed && !feed.writableEnded) feed.end();
    throw e;
  });
  const [ran, fed] = await Promise.allSettled([runPg(where, tool, args, { stdin: feed, stdout: "ignore" }, ctx), feeding]);
  if (ran.status === "rejected" || fed.status === "rejected") {
    progress?.fail(`${label} failed`);
    const why = fed.status === "rejected" ? (fed.reason as Error) : undefined;
    if (why && !(why instanceof StoppedReading)) {
      // The input broke (unreadable file, corrupt or truncated gzip): whatever the tool did, the load is incomplete.
      throw new LifeboatError(`${label}: reading the dump failed: ${why.message}; what was loaded is incomplete`, {
        hint: "check the dump file (gzip -t for .gz); reload into a fresh target",
        cause: why,
      });
    }
    if (ran.status === "rejected") throw fail(ran.reason);
    throw new LifeboatError(`${label}: ${tool} exited 0 before reading all of the dump; what was loaded may be incomplete`, { cause: why });
  }
  const ms = Date.now() - started;
  progress?.done(`${label}: ${formatBytes(bytes)}`);
  return { bytes, ms, dryRun: false };
}

/**
 * Where a line of SQL ends: outside (null), or inside a "quoted name", a 'literal', an E'escaped
 * literal', a $tag$ dollar-quoted body or a /* block comment *\/ (the state names its closer).
 */
type QuoteState = null | string;

/** The quote state after a line, given the state it started in; a -- comment outside quotes runs to the line's end. */
function quotesAfter(line: string, state: QuoteState): QuoteState {
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (state === null) {
      if (c === "-" && line[i + 1] === "-") return null;
      if (c === "/" && line[i + 1] === "*") {
        state = "*/";
        i++;
      } else if (c === '"') state = '"';
      else if (c === "'") state = (line[i - 1] === "E" || line[i - 1] === "e") && !/[A-Za-z0-9_$]/.test(line[i - 2] ?? "") ? "E'" : "'";
      else if (c === "$" && !/[A-Za-z0-9_$]/.test(line[i - 1] ?? "")) {
        const tag = /^\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$/.exec(line.slice(i))?.[0];
        if (tag) {
          state = tag;
          i += tag.length - 1;
        }
      }
    } else if (state === "E'" && c === "\\") i++;
    else if (state === "*/" || state.startsWith("$")) {
      if (line.startsWith(state, i)) {
        i += state.length - 1;
        state = null;
      }
    } else if (c === state[state.length - 1]) {
      if (line[i + 1] === c) i++; // a doubled quote stays inside
      else state = null;
    }
  }
  return state;
}

/**
 * Drops `CREATE ROLE x;` lines for roles that already exist, in the roles section of a
 * pg_dumpall script (before the first \connect or COPY); after that, bytes pass untouched.
 * Only whole statements count: a line inside a quoted role name or a literal (a name may hold a
 * newline and `CREATE ROLE postgres;` after it) is passed on as it is.
 */
function skipCreateRoles(roles: string[], ctx: Context): Transform {
  const skip = new Set<string>();
  for (const r of roles) {
    skip.add(`CREATE ROLE ${r};`);
    skip.add(`CREATE ROLE "${r.replace(/"/g, '""')}";`);
  }
  let scanning = true;
  let quotes: QuoteState = null;
  let pending: Buffer = Buffer.alloc(0);
  return new Transform({
    transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback) {
      if (!scanning) return cb(null, chunk);
      let buf = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      const outParts: Buffer[] = [];
      let start = 0;
      for (;;) {
        const nl = buf.indexOf(10, start);
        if (nl < 0) break;
        const line = buf.subarray(start, nl).toString("utf8");
        const outside = quotes === null;
        if (outside && skip.has(line.trimEnd())) {
          ctx.log.debug(`skipped "${line.trim()}": the role exists in the target`);
        } else {
          outParts.push(buf.subarray(start, nl + 1));
        }
        start = nl + 1;
        quotes = quotesAfter(line, quotes);
        // The roles section ends there, whatever the quotes seemed to say: at worst a line is not
        // skipped (psql then stops at "role exists"); the data after it is never looked at.
        if (line.startsWith("\\connect") || line.startsWith("COPY ")) {
          scanning = false;
          break;
        }
      }
      const rest = buf.subarray(start);
      if (scanning) {
        pending = Buffer.from(rest);
      } else {
        outParts.push(rest);
        pending = Buffer.alloc(0);
      }
      buf = Buffer.alloc(0);
      cb(null, outParts.length ? Buffer.concat(outParts) : undefined);
    },
    flush(cb: TransformCallback) {
      cb(null, pending.length ? pending : undefined);
    },
  });
}

/** Parses psql --csv output: a quoted field may hold commas, quotes and newlines. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = "";
  let inQuotes = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inQuotes) {
      if (c !== '"') field += c;
      else if (text[i + 1] === '"') {
        field += '"';
        i++;
      } else inQuotes = false;
    } else if (c === '"') inQuotes = true;
    else if (c === ",") {
      row.push(field);
      field = "";
    } else if (c === "\n") {
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
    } else field += c;
  }
  if (field !== "" || row.length) rows.push([...row, field]);
  return rows;
}

/**
 * Waits until the server accepts connections (`pg_isready -q`, locally, in the container or
 * over ssh), for a restore into a database that is still starting. Times out with a clear error.
 * @example await pgReady({ container: "deis-database" }, { timeoutMs: 600_000 });
 */
export function pgReady(where: PgWhere, opts: WaitOptions = {}): Promise<WaitResult> {
  const bin = where.binDir ? posix.join(where.binDir, "pg_isready") : "pg_isready";
  const argv = [bin, "-q", ...connArgs(where)];
  const command = where.container !== undefined
    ? [...dockerCli(where.dockerHost), "exec", "-u", where.osUser ?? "postgres", "--", where.container, ...argv]
    : where.ssh !== undefined
      ? sshCommand(where.ssh, argv)
      : argv;
  return waitForHealthy({ command }, { label: `PostgreSQL (${describeWhere(where)})`, ...opts });
}

/** Options for {@link pgLoadDumpAll}. */
export interface PgLoadDumpAllOptions extends PsqlFileOptions {
  /**
   * A marker file (e.g. in the restore's staging dir) that says "started" while the load runs and
   * "done" once it ended. A retry that finds it started knows a load was cut off (run killed,
   * server died) and first drops what that load made: every database but postgres and the
   * templates, every role but the connecting one. One that finds it done loads nothing: the load
   * finished and the run was killed before it could record so. Default: none (a retry onto a
   * half-loaded or loaded server then fails).
   */
  marker?: string;
}

/** Drops what a cut-off pg_dumpall load made: databases but postgres/templates, roles but the connecting one. */
const DROP_PARTIAL_LOAD = String.raw`
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND datname IS NOT NULL AND datname <> 'postgres';
SELECT format('DROP DATABASE IF EXISTS %I', datname) FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres' \gexec
SELECT format('DROP OWNED BY %I CASCADE', rolname) FROM pg_roles WHERE rolname !~ '^pg_' AND rolname <> current_user \gexec
SELECT format('DROP ROLE IF EXISTS %I', rolname) FROM pg_roles WHERE rolname !~ '^pg_' AND rolname <> current_user \gexec
`;

/**
 * Loads a pg_dumpall text dump into an EMPTY server with psql, so that a load cut off midway
 * can simply be run again: with `marker`, the retry first drops what the cut-off load made
 * (nothing inside the postgres database itself is dropped).
 * @example await pgLoadDumpAll({ container: "deis-database" }, `${staging}/dump_all.sql`, { marker: `${staging}/.load-started` });
 */
export async function pgLoadDumpAll(where: PgWhere, file: string, opts: PgLoadDumpAllOptions = {}): Promise<LoadResult> {
  const ctx = opts.ctx ?? useContext();
  const { marker, ...load } = opts;
  const said = marker && !ctx.dryRun && existsSync(marker) ? readFileSync(marker, "utf8").trim() || "started" : ""; // empty: an older lifeboat's "started"
  if (said === "done") {
    ctx.log.info(`${file.split("/").pop()} was loaded into ${describeWhere(where)} by an interrupted run (${marker} says done): not loaded again`);
    return { bytes: statSync(file).size, ms: 0, dryRun: false };
  }
  if (said) {
    ctx.log.warn(`an earlier load into ${describeWhere(where)} was cut off: dropping what it loaded first`);
    await psqlFile(where, Readable.from([DROP_PARTIAL_LOAD]), { progress: false, ctx });
  }
  const mark = (state: string) => (ctx.dryRun ? ctx.log.command(`echo ${state} > ${marker}`, "dry-run") : writeFileSync(marker!, `${state}\n`, { mode: 0o600 }));
  if (marker) mark("started");
  const r = await psqlFile(where, file, { ...load, ctx });
  if (marker) mark("done");
  return r;
}
