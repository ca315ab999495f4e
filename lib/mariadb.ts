// MariaDB / MySQL: dump a database or the users and grants, load a dump, ask small questions.
//
// MariaDB's own client programs do the work (mariadb-dump, mariadb; the mysqldump/mysql names
// of older installs work too through `names`), run on this host against a server reached by
// TCP or socket. Credentials never reach argv or logs: a password (registered as a secret) is
// written into a private option file (mode 0600, in a 0700 temp folder, removed after the run)
// passed as --defaults-file; an operator's own option file (`defaultsFile`) is included by it or
// used as it is. Dumps stream into a hidden partial file renamed into place only when the tool
// exited 0; a load streams the file into the client's stdin.
import { mkdtempSync, rmSync, statSync, writeFileSync, createReadStream } from "node:fs";
import { tmpdir } from "node:os";
import { join, posix, resolve } from "node:path";
import { Readable } from "node:stream";
import { exec } from "./exec.ts";
import { UsageError } from "./errors.ts";
import { captureToFile } from "./files.ts";
import { useContext, type Context } from "./context.ts";

/** A MariaDB (or MySQL) server, reached with the client programs on this host. */
export interface MariaDbServer {
  /** Host name or address (default: the option file's, else the local socket). */
  host?: string;
  /** TCP port (default 3306). */
  port?: number;
  /** Unix socket path, instead of host/port. */
  socket?: string;
  /** Login user (default: the option file's, else the OS user's name). */
  user?: string;
  /** Password (a secret: only ever written into the private option file). */
  password?: string;
  /** An option file with a [client] section (user, password, host…), e.g. /etc/mysql/debian.cnf. */
  defaultsFile?: string;
  /** Where mariadb-dump and mariadb are (default: PATH). */
  binDir?: string;
}

/** Options common to the helpers. */
export interface MariaDbOptions {
  /** The context (default: the current one). */
  ctx?: Context;
}

/** What a dump or a load did. */
export interface MariaDbResult {
  /** Bytes written (dump) or read (load). */
  bytes: number;
  ms: number;
  dryRun: boolean;
}

/** Databases of the server itself, never dumped as user data. */
export const MARIADB_SYSTEM_DATABASES = ["information_schema", "performance_schema", "mysql", "sys"] as const;

/** An identifier in backquotes, as MariaDB quotes it (a backquote doubled). */
export function mariadbIdent(name: string): string {
  if (name.includes("\0")) throw new UsageError(`MariaDB name ${JSON.stringify(name)} contains NUL`);
  return "`" + name.replaceAll("`", "``") + "`";
}

/** An option-file value in double quotes (backslash and quote escaped). */
function optValue(v: string): string {
  if (/[\n\r\0]/.test(v)) throw new UsageError("a MariaDB option value contains a newline or NUL, which an option file cannot hold");
  return `"${v.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

/**
 * Runs fn with the argv prefix every client needs: --defaults-file (first, as the clients
 * require), then host, port, socket, user, and utf8mb4 as the connection's character set.
 */
async function withClient<T>(server: MariaDbServer, ctx: Context, fn: (args: string[]) => Promise<T>): Promise<T> {
  let dir: string | undefined;
  const args: string[] = [];
  if (server.password !== undefined && server.password !== "") {
    ctx.secrets.add(server.password);
    dir = mkdtempSync(join(tmpdir(), "lifeboat-mariadb-")); // 0700
    const file = join(dir, "client.cnf");
    const lines = [...(server.defaultsFile ? [`!include ${resolve(server.defaultsFile)}`] : []), "[client]", `password=${optValue(server.password)}`, ""];
    writeFileSync(file, lines.join("\n"), { mode: 0o600 });
    args.push(`--defaults-file=${file}`);
  } else if (server.defaultsFile) {
    args.push(`--defaults-file=${resolve(server.defaultsFile)}`);
  }
  if (server.socket) args.push(`--socket=${server.socket}`);
  else {
    if (server.host) args.push(`--host=${server.host}`);
    if (server.port !== undefined) {
      if (!Number.isInteger(server.port) || server.port < 1 || server.port > 65535) throw new UsageError(`MariaDB port ${server.port}: not a port number`);
      args.push(`--port=${server.port}`, "--protocol=TCP");
    }
  }
  if (server.user) args.push(`--user=${server.user}`);
  args.push("--default-character-set=utf8mb4");
  try {
    return await fn(args);
  } finally {
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

const bin = (server: MariaDbServer, tool: string) => (server.binDir ? posix.join(server.binDir, tool) : tool);

/** The server in words, for messages: "127.0.0.1:3306", "socket /run/mysqld/mysqld.sock". */
export function describeMariaDb(server: MariaDbServer): string {
  if (server.socket) return `socket ${server.socket}`;
  if (server.host || server.port) return `${server.host ?? "localhost"}:${server.port ?? 3306}`;
  return server.defaultsFile ? `the server of ${server.defaultsFile}` : "the local server";
}

/** Undoes the --batch escapes (\\t \\n \\0 \\\\); NULL stays the string "NULL" unless the column is NULL: returned as null. */
function unescapeBatch(v: string): string | null {
  if (v === "NULL") return null;
  return v.replace(/\\(.)/g, (_, c: string) => ({ t: "\t", n: "\n", "0": "\0", "\\": "\\" })[c] ?? c);
}

/**
 * Runs SQL (sent on stdin, not argv) and returns the rows, each a list of column values (null
 * for NULL). Read-only by intent: it runs in dry-run too (a probe).
 * @example const names = (await mariadbQuery(server, "SHOW DATABASES")).map((r) => r[0]);
 */
export async function mariadbQuery(server: MariaDbServer, sql: string, opts: MariaDbOptions & { database?: string } = {}): Promise<(string | null)[][]> {
  const ctx = opts.ctx ?? useContext();
  const out = await withClient(server, ctx, (args) =>
    exec([bin(server, "mariadb"), ...args, "--batch", "--skip-column-names", ...(opts.database ? [`--database=${opts.database}`] : [])], { stdin: sql, readOnly: true, ctx }));
  return out.stdout.split("\n").filter((l) => l !== "").map((l) => l.split("\t").map(unescapeBatch));
}

/**
 * The user databases of a server (every database but {@link MARIADB_SYSTEM_DATABASES}), sorted. A probe.
 * @example for (const db of await mariadbDatabases(server)) await mariadbDump(server, db, `${stage}/${db}.sql`);
 */
export async function mariadbDatabases(server: MariaDbServer, opts: MariaDbOptions = {}): Promise<string[]> {
  const rows = await mariadbQuery(server, "SELECT schema_name FROM information_schema.schemata ORDER BY schema_name", opts);
  return rows.map((r) => String(r[0])).filter((n) => !(MARIADB_SYSTEM_DATABASES as readonly string[]).includes(n));
}

async function dumpTo(server: MariaDbServer, args: string[], out: string, what: string, ctx: Context): Promise<MariaDbResult> {
  const t0 = Date.now();
  const final = resolve(out);
  return withClient(server, ctx, async (conn) => {
    const argv = [bin(server, "mariadb-dump"), ...conn, ...args];
    if (ctx.dryRun) {
      await exec(argv, { stdout: "ignore", note: `> ${final}`, ctx });
      return { bytes: 0, ms: 0, dryRun: true };
    }
    await captureToFile(final, (tmp) => exec(argv, { stdout: { file: tmp, inPlace: true }, ctx }).then(() => {}), { label: `mariadb-dump ${what} from ${describeMariaDb(server)}` });
    return { bytes: statSync(final).size, ms: Date.now() - t0, dryRun: false };
  });
}

/**
 * Dumps one database as SQL with `mariadb-dump --single-transaction --routines --events
 * --triggers --hex-blob --databases NAME` (so the dump creates the database with its character
 * set and collation, then its tables), into a file written atomically (mode 0600). Any name
 * works: it is one argv word after `--databases --`.
 * @example await mariadbDump({ socket: "/run/mysqld/mysqld.sock", user: "root" }, "wordpress", "stage/mariadb/wordpress.sql");
 */
export function mariadbDump(server: MariaDbServer, database: string, out: string, opts: MariaDbOptions = {}): Promise<MariaDbResult> {
  const ctx = opts.ctx ?? useContext();
  // "--" ends the options: a database named "--version" or "-r/some/file" is a name, not an option (mariadb-dump reads options anywhere).
  return dumpTo(server, ["--single-transaction", "--routines", "--events", "--triggers", "--hex-blob", "--databases", "--", database], out, database, ctx);
}

/**
 * Dumps the accounts and their grants (`mariadb-dump --system=users`: CREATE USER and GRANT
 * statements) into a file written atomically (mode 0600), for an admin to load on a new server.
 * @example await mariadbDumpUsers(server, "stage/mariadb/users.sql");
 */
export function mariadbDumpUsers(server: MariaDbServer, out: string, opts: MariaDbOptions = {}): Promise<MariaDbResult> {
  const ctx = opts.ctx ?? useContext();
  return dumpTo(server, ["--system=users", "--insert-ignore"], out, "users and grants", ctx);
}

/**
 * Loads a dump made by {@link mariadbDump}: with `drop`, `DROP DATABASE IF EXISTS NAME` first
 * (the dump then creates it again), then the file streamed into `mariadb` (stdin, never argv).
 * @example await mariadbLoad(server, "restored/2026.11.24-db/mariadb/wordpress.sql", { drop: "wordpress" });
 */
export async function mariadbLoad(server: MariaDbServer, file: string, opts: MariaDbOptions & { drop?: string } = {}): Promise<MariaDbResult> {
  const ctx = opts.ctx ?? useContext();
  const t0 = Date.now();
  const bytes = statSync(file).size;
  const pre = opts.drop !== undefined ? `DROP DATABASE IF EXISTS ${mariadbIdent(opts.drop)};\n` : "";
  await withClient(server, ctx, (args) => {
    const argv = [bin(server, "mariadb"), ...args, "--batch"];
    if (ctx.dryRun) return exec(argv, { stdin: "ignore", note: `< ${pre ? `(${pre.trim()}) + ` : ""}${file}`, ctx });
    const input = Readable.from((async function* () {
      if (pre) yield Buffer.from(pre);
      yield* createReadStream(file, { highWaterMark: 1 << 20 });
    })(), { objectMode: false });
    return exec(argv, { stdin: input, ctx });
  });
  return { bytes, ms: Date.now() - t0, dryRun: ctx.dryRun };
}
