// remote: files, free space and ports of a host, over ssh (lib/ssh.ts quotes every command).
//
//   sshFetch    tar named members of a remote dir into a local dir (owners by number, modes kept)
//   sshPut      copy a local file to a remote path, atomically (partial name, then mv)
//   sshGet      copy a remote file to a local path, atomically (size checked, a full disk named)
//   sshList     names in a remote dir (find -maxdepth 1), for picking snapshots
//   sshListFiles  its regular files with their sizes (a name-and-size diff)
//   sshFreeSpace  bytes available to a remote dir (df)
//   sshTunnel   a local port forwarded to a port that listens only on the host itself
//
// Everything streams: no file passes through memory. Each honours --dry-run: writes print the
// exact commands and run none; sshList and sshFreeSpace are read-only probes that run anyway.
import { spawn, type ChildProcess } from "node:child_process";
import { createReadStream, createWriteStream, existsSync, mkdirSync, rmSync, statSync } from "node:fs";
import { createServer, connect } from "node:net";
import { dirname } from "node:path";
import process from "node:process";
import { PassThrough } from "node:stream";
import { useContext, type Context } from "./context.ts";
import { LifeboatError } from "./errors.ts";
import { displayCommand, exec } from "./exec.ts";
import { captureToFile } from "./files.ts";
import { ssh, sshCommand, sshWhere, type SshTarget } from "./ssh.ts";

/** Options for {@link sshFetch}. */
export interface SshFetchOptions {
  /** Members of remoteRoot to fetch (default ["."]: all of it). A missing member is an error unless `optional`. */
  members?: string[];
  /** Skip members that do not exist on the host instead of failing (default false). */
  optional?: boolean;
  /** Run tar under `sudo -n`. */
  sudo?: boolean;
  ctx?: Context;
}

/**
 * Streams `tar -C remoteRoot -c MEMBERS` from a host into `tar -x` in localDir (created 0700):
 * modes and numeric owners kept, so the files can be packed and later put back as they were.
 * @example
 * // haproxy's two dirs, relative to /etc as LambdaStack archives them
 * await sshFetch(lb, "/etc", `${stage}/haproxy_etc`, { members: ["haproxy", "ssl/haproxy"] });
 */
export async function sshFetch(target: SshTarget, remoteRoot: string, localDir: string, opts: SshFetchOptions = {}): Promise<{ members: string[] }> {
  const ctx = opts.ctx ?? useContext();
  let members = opts.members ?? ["."];
  if (opts.optional) members = await sshExisting(target, remoteRoot, members, ctx);
  if (!ctx.dryRun) mkdirSync(localDir, { recursive: true, mode: 0o700 });
  if (!members.length) return { members };
  // through a file, not a pipe: `tar -x` stops reading at the end-of-archive blocks while ssh is
  // still writing the padding, which would fail the stream; sshTar's file is complete or absent
  const tarFile = `${localDir.replace(/\/+$/, "")}.fetch.tar`;
  try {
    const tarArgv = ["env", "LC_ALL=C", "tar", "-C", remoteRoot, "-c", "-p", "--numeric-owner", "-f", "-", "--", ...members.map((m) => (m.startsWith("-") ? `./${m}` : m))];
    await ssh(target, opts.sudo ? ["sudo", "-n", ...tarArgv] : tarArgv, { stdout: { file: tarFile }, ctx });
    await exec(["tar", "-C", localDir, "-x", "-p", "--numeric-owner", "--same-owner", "-f", tarFile], { ctx });
  } finally {
    if (!ctx.dryRun) rmSync(tarFile, { force: true });
  }
  return { members };
}

/** The members that exist under remoteRoot (read-only). */
async function sshExisting(target: SshTarget, remoteRoot: string, members: string[], ctx: Context): Promise<string[]> {
  const r = await ssh(target, ["sh", "-c", 'cd -- "$1" || exit 0; shift; for m in "$@"; do [ -e "$m" ] && printf "%s\\0" "$m"; done; exit 0', "sh", remoteRoot, ...members], { readOnly: true, ctx });
  return r.stdout.split("\0").filter(Boolean);
}

/** Options for {@link sshPut} and {@link sshGet}. */
export interface SshCopyOptions {
  /** File mode of the copy (default 0600). */
  mode?: number;
  /** sshGet only: the copy is local scratch read to verify something (it changes nothing on any host), so a dry run makes it too, printed as a [probe]. */
  readOnly?: boolean;
  ctx?: Context;
}

/**
 * Copies a local file to a host: written under `.partial-NAME` beside the destination (its dir
 * created 0700), checked to have the local file's size, fsynced, then renamed, so the destination
 * is whole or absent. (The size check matters: when this process dies mid-copy, ssh sees its
 * input end and the remote `cat` ends as if the file were whole.)
 * @example await sshPut(repo, "/tmp/stage/haproxy_etc_20260101-120000.tar.gz", "/lsbackup/mounted/haproxy_etc_20260101-120000.tar.gz");
 */
export async function sshPut(target: SshTarget, localFile: string, remotePath: string, opts: SshCopyOptions = {}): Promise<void> {
  const ctx = opts.ctx ?? useContext();
  const mode = (opts.mode ?? 0o600).toString(8);
  const size = ctx.dryRun && !existsSync(localFile) ? 0 : statSync(localFile).size;
  const script = 'set -e; d=$(dirname -- "$1"); mkdir -p -m 700 -- "$d"; p="$d/.partial-$(basename -- "$1")"; umask 077; cat > "$p"; ' +
    'n=$(wc -c < "$p"); if [ "$n" -ne "$3" ]; then rm -f -- "$p"; echo "lifeboat: $1: $n of $3 bytes arrived; nothing kept" >&2; exit 1; fi; ' +
    'chmod "$2" -- "$p"; sync -- "$p" 2>/dev/null || true; mv -f -- "$p" "$1"';
  await ssh(target, ["sh", "-c", script, "sh", remotePath, mode, String(size)], { stdin: ctx.dryRun ? { file: localFile } : createReadStream(localFile), ctx });
}

/**
 * Copies a file from a host to a local path, whole or not at all: the bytes stream through a
 * write stream into a hidden partial name beside localFile (captureToFile), which is renamed into
 * place only when ssh succeeded, the stream reported no error and the size matches the remote
 * file's (printed by the same remote command before the bytes: ssh itself exits 0 when it cannot
 * write its output). A full local disk fails with "no space left on FOLDER"; nothing is left
 * under either name on failure. With `readOnly` (a copy fetched only to be verified) it runs in
 * a dry run too.
 * @example await sshGet(repo, "/lsbackup/mounted/postgresql_20260101-120000.tar.gz", `${stage}/postgresql.tar.gz`);
 */
export async function sshGet(target: SshTarget, remotePath: string, localFile: string, opts: SshCopyOptions = {}): Promise<void> {
  const ctx = opts.ctx ?? useContext();
  const mode = opts.mode ?? 0o600;
  // one line: the remote size on stderr (a marked line), then the bytes on stdout
  const argv = ["sh", "-c", 'n=$(wc -c < "$1") || exit 1; echo "lifeboat-size $n" >&2; exec cat -- "$1"', "sh", remotePath];
  if (ctx.dryRun && !opts.readOnly) {
    await ssh(target, argv, { stdout: { file: localFile, mode }, ctx }); // printed, not run
    return;
  }
  mkdirSync(dirname(localFile), { recursive: true, mode: 0o700 });
  const where = `${sshWhere(target)}:${remotePath}`;
  await captureToFile(localFile, async (tmp) => {
    const r = await ssh(target, argv, { stdout: createWriteStream(tmp, { flags: "w", mode }), readOnly: opts.readOnly, ctx });
    const want = Number(/^lifeboat-size (\d+)$/m.exec(r.stderr)?.[1]);
    const got = statSync(tmp).size;
    if (!Number.isFinite(want)) throw new LifeboatError(`sshGet ${where}: the remote size was not reported`);
    if (got !== want) throw new LifeboatError(`sshGet ${where} → ${localFile}: ${got} of ${want} bytes written`);
  }, { mode, label: `copy ${where} to ${localFile}` });
}

/**
 * The names directly in a remote dir ([] when it does not exist). A read-only probe.
 * @example const names = await sshList(repo, "/lsbackup/mounted");
 */
export async function sshList(target: SshTarget, remoteDir: string, opts: { ctx?: Context } = {}): Promise<string[]> {
  const r = await ssh(target, ["sh", "-c", '[ -d "$1" ] || exit 0; cd -- "$1" && find . -mindepth 1 -maxdepth 1 -printf "%P\\0"', "sh", remoteDir], { readOnly: true, ctx: opts.ctx });
  return r.stdout.split("\0").filter(Boolean).sort();
}

/**
 * The regular files directly in a remote dir with their sizes, sorted by name ([] when it does
 * not exist): what `ls -l` shows, for a name-and-size diff. A read-only probe.
 * @example const files = await sshListFiles(xenonHost, "/var/backups/xenon-workspace"); // [{ name: "_0.cfs", size: 20480 }, …]
 */
export async function sshListFiles(target: SshTarget, remoteDir: string, opts: { ctx?: Context } = {}): Promise<{ name: string; size: number }[]> {
  const r = await ssh(target, ["sh", "-c", '[ -d "$1" ] || exit 0; cd -- "$1" && find . -mindepth 1 -maxdepth 1 -type f -printf "%P\\0%s\\0"', "sh", remoteDir], { readOnly: true, ctx: opts.ctx });
  const f = r.stdout.split("\0");
  const out: { name: string; size: number }[] = [];
  for (let i = 0; i + 1 < f.length; i += 2) out.push({ name: f[i], size: Number(f[i + 1]) });
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * Bytes available to a remote dir (`df -P -B1`); a dir not made yet counts as its nearest
 * existing parent. A read-only probe.
 * @example const free = await sshFreeSpace(repo, "/lsbackup/mounted");
 */
export async function sshFreeSpace(target: SshTarget, remoteDir: string, opts: { ctx?: Context } = {}): Promise<number> {
  const script = 'd=$1; while [ ! -e "$d" ] && [ "$d" != / ]; do d=$(dirname -- "$d"); done; df -P -B1 -- "$d" | tail -1';
  const r = await ssh(target, ["sh", "-c", script, "sh", remoteDir], { readOnly: true, ctx: opts.ctx });
  const avail = Number(r.stdout.trim().split(/\s+/)[3]);
  if (!Number.isFinite(avail)) throw new LifeboatError(`df ${sshWhere(target)}:${remoteDir}: unexpected output ${JSON.stringify(r.stdout.slice(0, 200))}`);
  return avail;
}

/**
 * Disk usage of remote paths in bytes (`du -s -b -c`), missing ones counted as 0. A read-only probe.
 * @example const need = await sshUsage(host, ["/etc/haproxy", "/etc/ssl/haproxy"]);
 */
export async function sshUsage(target: SshTarget, paths: string[], opts: { ctx?: Context } = {}): Promise<number> {
  if (!paths.length) return 0;
  const r = await ssh(target, ["sh", "-c", 'n=0; for p in "$@"; do [ -e "$p" ] && n=$((n + $(du -s -b -- "$p" | cut -f1))); done; echo $n', "sh", ...paths], { readOnly: true, ctx: opts.ctx });
  return Number(r.stdout.trim()) || 0;
}

/** Options for {@link sshTunnel}. */
export interface SshTunnelOptions {
  /** The address the port listens on, as the host sees it (default 127.0.0.1). */
  remoteHost?: string;
  /** How long to wait for the forward to accept connections, in ms (default 15 000). */
  timeoutMs?: number;
  ctx?: Context;
}

/** An open tunnel: a local URL for the remote port. */
export interface SshTunnel {
  /** http://127.0.0.1:LOCALPORT */
  url: string;
  port: number;
  /** Stops ssh (idempotent). */
  close(): Promise<void>;
}

/**
 * Forwards a free local port to a port that listens only on the host itself (`ssh -N -L`), for
 * admin APIs bound to loopback (Prometheus :9090, RabbitMQ management :15672, search :9200).
 * A tunnel changes nothing on the host, so a dry run opens it too (printed as a `[probe]`): the
 * read-only calls through it (health, listings) answer, and the helpers print the others.
 * @example
 * const t = await sshTunnel(promHost.ssh, 9090);
 * try { await httpJson(`${t.url}/api/v1/admin/tsdb/snapshot`, { method: "POST" }); } finally { await t.close(); }
 */
export async function sshTunnel(target: SshTarget, remotePort: number, opts: SshTunnelOptions = {}): Promise<SshTunnel> {
  const ctx = opts.ctx ?? useContext();
  const port = await freePort();
  const fwd = `127.0.0.1:${port}:${opts.remoteHost ?? "127.0.0.1"}:${remotePort}`;
  const base = sshCommand(target, []);
  // sshCommand ends with "--" and the (empty) remote command: a tunnel runs none (-N)
  const argv = [base[0], "-N", "-o", "ExitOnForwardFailure=yes", "-L", fwd, ...base.slice(1, base.indexOf("--"))];
  ctx.log.command(`${displayCommand(argv)} &`, ctx.dryRun ? "probe" : "run");
  const child: ChildProcess = spawn(argv[0], argv.slice(1), { stdio: ["ignore", "ignore", "pipe"], detached: true });
  let stderr = "";
  child.stderr?.on("data", (b: Buffer) => (stderr = (stderr + b.toString()).slice(-2000)));
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    ctx.signal.removeEventListener("abort", onAbort);
    try {
      process.kill(-child.pid!, "SIGTERM");
    } catch { /* gone */ }
    await Promise.race([exited, new Promise((r) => setTimeout(r, 2000))]);
  };
  const onAbort = () => void close();
  ctx.signal.addEventListener("abort", onAbort);
  const deadline = Date.now() + (opts.timeoutMs ?? 15_000);
  for (;;) {
    if (child.exitCode !== null || child.signalCode) break;
    if (await canConnect(port)) return { url: `http://127.0.0.1:${port}`, port, close };
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await close();
  throw new LifeboatError(`ssh tunnel to ${sshWhere(target)} port ${remotePort} did not open${stderr ? `: ${stderr.trim().split("\n").pop()}` : ""}`, {
    hint: "check that the host answers on ssh and allows TCP forwarding (AllowTcpForwarding)",
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const p = (srv.address() as { port: number }).port;
      srv.close(() => resolve(p));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1");
    s.once("connect", () => (s.destroy(), resolve(true)));
    s.once("error", () => resolve(false));
  });
}

/** Options for {@link sshPush}. */
export interface SshPushOptions {
  /** Members of localDir to send (default ["."]). */
  members?: string[];
  /** Patterns not to send (tar --exclude), e.g. "./manifest.json". */
  exclude?: string[];
  /** Run tar under `sudo -n` on the host. */
  sudo?: boolean;
  ctx?: Context;
}

/**
 * Streams a local dir into `tar -x` under remoteDir (created when missing), owners by number and
 * modes as recorded: the way back for {@link sshFetch}.
 * @example await sshPush(lb, `${unpacked}`, "/etc", { exclude: ["./manifest.json"] });
 */
export async function sshPush(target: SshTarget, localDir: string, remoteDir: string, opts: SshPushOptions = {}): Promise<void> {
  const ctx = opts.ctx ?? useContext();
  const tarArgv = ["tar", "-C", localDir, "-c", "--numeric-owner", "-f", "-"];
  for (const x of opts.exclude ?? []) tarArgv.push(`--exclude=${x}`);
  tarArgv.push("--", ...(opts.members ?? ["."]));
  const pipe = new PassThrough();
  const pack = exec(tarArgv, { stdout: pipe, ctx });
  const untar = ["env", "LC_ALL=C", "sh", "-c", 'mkdir -p -- "$1" && exec tar -C "$1" -x -p --no-overwrite-dir --numeric-owner --same-owner -f -', "sh", remoteDir];
  try {
    await ssh(target, opts.sudo ? ["sudo", "-n", ...untar] : untar, { stdin: pipe, ctx });
  } catch (e) {
    await pack.catch(() => {});
    throw e;
  }
  await pack;
}

/**
 * Deletes everything directly inside each remote dir, keeping the dirs (LambdaStack's
 * clear_directories: `file: state=absent` on each entry). Missing dirs are created.
 * @example await sshClear(prom, ["/var/lib/prometheus"]);
 */
export async function sshClear(target: SshTarget, dirs: string[], opts: { sudo?: boolean; ctx?: Context } = {}): Promise<void> {
  // find takes no "--": a relative dir ("-delete", "!", "(") would be read as its expression: ./DIR.
  const argv = ["sh", "-c", 'for d in "$@"; do case $d in /*) ;; *) d="./$d" ;; esac; mkdir -p -- "$d" && find "$d" -mindepth 1 -maxdepth 1 -exec rm -rf -- {} + || exit 1; done', "sh", ...dirs];
  await ssh(target, opts.sudo ? ["sudo", "-n", ...argv] : argv, { ctx: opts.ctx });
}
