// Off-site copies: every archive also kept away from the machines it protects.
//
// A destination is one of
//   s3://BUCKET/PREFIX              an S3 gateway (offsite.s3.* settings: endpoint, region, keys)
//   ssh://USER@HOST:PORT/DIR        a directory on an ssh host (/~/DIR: relative to the login's home)
//   /mnt/offsite/deis               a local path: an NFS, SMB or object-store mount
//
// A copy is the archive plus its sidecars (NAME.sha256, NAME.info.json), written so that
// nothing incomplete ever carries the final name: on ssh and local paths the archive is
// written as `.partial-NAME.PID` and renamed; on S3 an object appears only when its upload
// completes, the archive goes first and its sidecars after it, and a failed multipart upload
// is aborted (one left by a killed run is aborted by the next run). Then the copy's bytes are
// checked against the archive's sha256 (ssh: flushed with sync, then sha256 on the remote host,
// openssl's or sha256sum's, of the file read back; local: read back; S3: the object's ETag against the MD5s computed here of the
// bytes sent), and NAME.verified is written beside it, as for local archives.
//
// Listing, pruning (the same GFS rules as archive:prune, through planPrune) and fetching for
// a restore work on every kind. A remote that cannot be reached or is full fails with its
// name and the cause; the local archive is never touched by a failed copy.
//
// The same destinations also hold folders of plain files (SUB/NAME: a day of dumps with its
// manifest; lib/mirror.ts builds on these): offsitePutFile, offsiteFileSums, offsiteFiles,
// offsiteReadFile, offsiteGetFile, offsiteRemoveDirs and offsiteFree, through the same
// transports and checks (S3 uploads go through the same s3PutFile as archives).
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { closeSync, copyFileSync, createReadStream, existsSync, linkSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statfsSync, statSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import process from "node:process";
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { LifeboatError, UsageError, VerifyError } from "./errors.ts";
import { useContext, type Context } from "./context.ts";
import { captureToFile, fsyncPath, partialPath } from "./files.ts";
import { formatBytes, formatDuration } from "./log.ts";
import { cleanLeftovers, removeArchive, type ArchiveInfo } from "./archive.ts";
import { listBackups, planPrune, type BackupEntry, type PrunePlan, type PrunePolicy } from "./backups.ts";
import { expandHome, type SettingSpecs, type SettingValues } from "./settings.ts";
import { ssh, sshWhere, type SshTarget } from "./ssh.ts";
import { s3Client, sdkLib, type S3Handle } from "./s3/client.ts";
import { s3Error } from "./s3/errors.ts";
import { readS3Index } from "./s3/index.ts";
import { S3_INDEX_NAME } from "./s3/keys.ts";
import { s3List } from "./s3/list.ts";
import { s3Sync } from "./s3/sync.ts";

const BACKUP_KEYS = ["offsite.to", "offsite.keep-local", "offsite.keep-last", "offsite.keep-daily", "offsite.keep-weekly", "offsite.keep-monthly"] as const;

/**
 * The `offsite.*` settings every recipe understands; spread into a system's settings table
 * with {@link offsiteSettings} (which marks the copy and retention keys as the backup's).
 */
export const OFFSITE_SETTINGS = {
  "offsite.to": { type: "list", describe: "off-site destinations for each new archive: s3://BUCKET/PREFIX, ssh://USER@HOST:PORT/DIR, or a local path (an NFS or object-store mount); empty: no copy", default: [] },
  "offsite.s3.endpoint": { describe: "S3 gateway URL of the s3:// destinations, e.g. https://s3.eu-central-1.amazonaws.com or http://rgw.backup.example:7480" },
  "offsite.s3.region": { describe: "signing region of the off-site S3 gateway", default: "us-east-1" },
  "offsite.s3.access-key": { describe: "access key of the off-site S3 gateway", secret: true },
  "offsite.s3.secret-key": { describe: "secret key of the off-site S3 gateway", secret: true },
  "offsite.ssh.identity-file": { describe: "ssh private key for the ssh:// destinations (default: ssh's own)" },
  "offsite.ssh.known-hosts": { describe: "known_hosts file for the ssh:// destinations; with it, host keys are checked strictly" },
  "offsite.keep-local": { type: "number", describe: "after every copy is verified, keep only the newest N archives locally (older ones only when each destination has a verified copy); 0: keep all", default: 0 },
  "offsite.keep-last": { type: "number", describe: "off-site retention: keep the newest N copies at each destination (0 and no other keep-*: keep all)", default: 0 },
  "offsite.keep-daily": { type: "number", describe: "off-site retention: keep one copy per day for N days", default: 0 },
  "offsite.keep-weekly": { type: "number", describe: "off-site retention: keep one copy per ISO week for N weeks", default: 0 },
  "offsite.keep-monthly": { type: "number", describe: "off-site retention: keep one copy per month for N months", default: 0 },
} as const satisfies SettingSpecs;

type WithUsedBy<T, R> = { [K in keyof T]: K extends (typeof BACKUP_KEYS)[number] ? T[K] & { readonly usedBy: R } : T[K] };

/**
 * {@link OFFSITE_SETTINGS} for a system's table: the copy and retention keys are read by its
 * backup recipe(s) only; the connection keys (offsite.s3.*, offsite.ssh.*) by every recipe,
 * since a restore fetches an off-site archive with them.
 * @example export const settings = { …, ...AGE_SETTINGS, ...offsiteSettings(["deis-backup"] as const) } as const satisfies SettingSpecs;
 */
export function offsiteSettings<R extends readonly string[]>(backup: R): WithUsedBy<typeof OFFSITE_SETTINGS, R> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(OFFSITE_SETTINGS)) out[k] = (BACKUP_KEYS as readonly string[]).includes(k) ? { ...v, usedBy: backup } : v;
  return out as WithUsedBy<typeof OFFSITE_SETTINGS, R>;
}

/** How to reach off-site destinations. */
export interface OffsiteOptions {
  /** The S3 gateway of s3:// destinations (keys are registered as secrets). */
  s3?: { endpoint: string; region?: string; accessKey: string; secretKey: string };
  /** ssh key and known_hosts for ssh:// destinations. */
  ssh?: { identityFile?: string; knownHostsFile?: string };
  /** S3 transfers in flight for one copy (default 16). */
  concurrency?: number;
  /** Attempts per S3 transfer before the copy fails (default 10, about 25 s of backoff). */
  attempts?: number;
  /** Show byte progress (default true). */
  progress?: boolean;
  ctx?: Context;
}

/** Options for {@link offsiteBackup}: where to copy, and the retention that follows. */
export interface OffsiteBackupOptions extends OffsiteOptions {
  /** Destinations (offsite.to). */
  to: readonly string[];
  /** Keep the newest N archives locally once every copy is verified (0: keep all). */
  keepLocal?: number;
  /** Retention at each destination; nothing is removed when every keep-* is 0. */
  policy?: PrunePolicy;
}

/**
 * OffsiteBackupOptions from the {@link OFFSITE_SETTINGS} values, as ageOptions does for age.
 * @example await offsiteBackup(pack.output.path, offsiteOptions(ctx.settings));
 */
export function offsiteOptions(s: Partial<SettingValues<typeof OFFSITE_SETTINGS>>): OffsiteBackupOptions {
  const endpoint = s["offsite.s3.endpoint"];
  return {
    to: [...(s["offsite.to"] ?? [])],
    s3: endpoint ? { endpoint, region: s["offsite.s3.region"] || undefined, accessKey: s["offsite.s3.access-key"] ?? "", secretKey: s["offsite.s3.secret-key"] ?? "" } : undefined,
    ssh: { identityFile: s["offsite.ssh.identity-file"] ? expandHome(s["offsite.ssh.identity-file"]) : undefined, knownHostsFile: s["offsite.ssh.known-hosts"] ? expandHome(s["offsite.ssh.known-hosts"]) : undefined },
    keepLocal: s["offsite.keep-local"] ?? 0,
    policy: { keepLast: s["offsite.keep-last"], keepDaily: s["offsite.keep-daily"], keepWeekly: s["offsite.keep-weekly"], keepMonthly: s["offsite.keep-monthly"] },
  };
}

/** A parsed destination. */
export type OffsiteDest =
  | { kind: "s3"; url: string; bucket: string; prefix: string }
  | { kind: "ssh"; url: string; target: SshTarget; dir: string }
  | { kind: "local"; url: string; dir: string };

/** True for s3:// and ssh:// URLs (a local path is not off-site in this sense). */
export function isOffsiteUrl(s: string): boolean {
  return /^(s3|ssh):\/\//.test(s);
}

/**
 * Parses a destination: s3://BUCKET[/PREFIX], ssh://[USER@]HOST[:PORT]/DIR (/~/DIR for a
 * directory under the login's home), or a local path.
 * @example parseOffsite("ssh://backup@vault.example:2222/srv/lifeboat") // { kind: "ssh", dir: "/srv/lifeboat", … }
 */
export function parseOffsite(dest: string, opts: Pick<OffsiteOptions, "ssh"> = {}): OffsiteDest {
  if (dest.startsWith("s3://")) {
    const m = /^s3:\/\/([^/]+)(?:\/(.*))?$/.exec(dest);
    if (!m || !m[1]) throw new UsageError(`off-site destination '${dest}' is not an s3:// URL`, "write it as s3://BUCKET or s3://BUCKET/PREFIX");
    let prefix = (m[2] ?? "").replace(/\/+$/, "");
    if (prefix) prefix += "/";
    return { kind: "s3", url: `s3://${m[1]}/${prefix}`, bucket: m[1], prefix };
  }
  if (dest.startsWith("ssh://")) {
    let u: URL;
    try {
      u = new URL(dest);
    } catch {
      throw new UsageError(`off-site destination '${dest}' is not an ssh:// URL`, "write it as ssh://USER@HOST:PORT/DIR");
    }
    let dir = decodeURIComponent(u.pathname);
    if (!u.hostname || !dir || dir === "/") throw new UsageError(`off-site destination '${dest}' names no directory`, "write it as ssh://USER@HOST:PORT/DIR, e.g. ssh://backup@vault:22/srv/lifeboat");
    if (dir.startsWith("/~/")) dir = dir.slice(3) || ".";
    dir = dir.replace(/(.)\/+$/, "$1");
    const target: SshTarget = {
      host: u.hostname.replace(/^\[(.*)\]$/, "$1"),
      port: u.port ? Number(u.port) : undefined,
      user: u.username ? decodeURIComponent(u.username) : undefined,
      identityFile: opts.ssh?.identityFile || undefined,
      knownHostsFile: opts.ssh?.knownHostsFile || undefined,
    };
    return { kind: "ssh", url: `ssh://${sshWhere(target)}${dir.startsWith("/") ? "" : "/~/"}${dir}`, target, dir };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(dest)) throw new UsageError(`off-site destination '${dest}': only s3://, ssh:// and local paths are understood`, "mount other stores (NFS, SMB, rclone mount) and give the mount's path");
  const dir = resolve(expandHome(dest));
  return { kind: "local", url: dir, dir };
}

/** Splits the URL of one off-site archive into its destination and name. */
function splitArchiveUrl(url: string, opts: OffsiteOptions): { dest: OffsiteDest; name: string } {
  const cut = url.replace(/\/+$/, "");
  const i = cut.lastIndexOf("/");
  const name = cut.slice(i + 1);
  if (i < 0 || !ARCHIVE.test(name)) throw new UsageError(`'${url}' does not name an archive (NAME.tar.gz or NAME.tar.zst, .age when encrypted)`, "give the archive's full URL, as offsite:list shows it");
  const base = cut.slice(0, i);
  const dest = parseOffsite(base.endsWith(":/") || base === "s3:/" ? `${base}/` : base, opts);
  return { dest, name };
}

const ARCHIVE = /\.tar\.(gz|zst)(\.age)?$/;
const SIDECARS = [".sha256", ".info.json"] as const;

/** What NAME.verified says about an off-site copy. */
interface Stamp {
  ok: boolean;
  at: string;
  size: number;
  /** ssh: the file's mtime in seconds; local: mtimeMs as listBackups reads it. */
  mtime?: number;
  mtimeMs?: number;
  /** S3: the object's ETag. */
  etag?: string;
  sha256?: string;
  /** How the bytes were checked. */
  method?: string;
  error?: string;
}

/** What {@link offsiteCopy} did. */
export interface OffsiteCopyResult {
  /** Where the copy is: the archive's URL (or path) at the destination. */
  url: string;
  /** The destination as given. */
  dest: string;
  bytes: number;
  sha256: string;
  /** The copy's bytes were checked and NAME.verified written there. */
  verified: boolean;
  /** A verified copy was already there: nothing was sent. */
  skipped: boolean;
  /** How the bytes were checked ("sha256 on HOST", "read back", "ETag …"). */
  method: string;
  durationMs: number;
  dryRun: boolean;
}

/**
 * Copies an archive and its sidecars to a destination, checks the copy's bytes, and marks it
 * verified there (NAME.verified). A verified copy already there is left alone. The archive is
 * first checked against its own NAME.sha256 (free when its NAME.verified is fresh). A failure
 * names the destination and the cause, leaves nothing under the final name, and never touches
 * the local archive.
 * @example
 * await offsiteCopy("/var/backups/lifeboat/deis-backup-2026-11-21T101500Z.tar.gz", "s3://offsite/deis",
 *   { s3: { endpoint: "https://s3.example", accessKey, secretKey } });
 */
export async function offsiteCopy(archive: string, dest: string, opts: OffsiteOptions = {}): Promise<OffsiteCopyResult> {
  const ctx = opts.ctx ?? useContext();
  const d = parseOffsite(dest, opts);
  const name = basename(archive);
  const t0 = Date.now();
  const base: OffsiteCopyResult = { url: urlOf(d, name), dest, bytes: 0, sha256: "", verified: false, skipped: false, method: "", durationMs: 0, dryRun: ctx.dryRun };
  if (!ARCHIVE.test(name)) throw new UsageError(`${archive} is not an archive (NAME.tar.gz or NAME.tar.zst, .age when encrypted)`, "give a backup made by a lifeboat recipe or archive:pack");
  if (ctx.dryRun && !existsSync(archive)) {
    ctx.log.command(`copy ${archive} (+ .sha256, .info.json) → ${base.url}, then verify it there`, "dry-run");
    return base;
  }
  const { sha256, size } = await localChecksum(archive, ctx);
  const r = { ...base, sha256, bytes: size };
  try {
    const done = d.kind === "s3" ? await copyS3(archive, d, r, opts, ctx) : d.kind === "ssh" ? await copySsh(archive, d, r, opts, ctx) : await copyLocal(archive, d, r, ctx);
    done.durationMs = Date.now() - t0;
    if (!ctx.dryRun) ctx.log.ok(`${done.skipped ? "already there, verified" : "copied and verified"}: ${done.url} (${formatBytes(size)}, ${done.method}${done.skipped ? "" : `, ${formatDuration(done.durationMs)}`})`);
    return done;
  } catch (e) {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    throw failure(`off-site copy of ${name} to ${d.url}`, e, `the local archive ${archive} is kept as it was; fix the cause and run again (a copy that completed is not sent twice)`);
  }
}

/** A LifeboatError that names what failed and where, keeping the cause's exit code (3 for a verify failure). */
function failure(what: string, e: unknown, hint: string): LifeboatError {
  const msg = ((e as Error)?.message ?? String(e));
  if (e instanceof VerifyError) return new VerifyError(`${what}: ${msg}`, e.problems, hint);
  return new LifeboatError(`${what} failed: ${msg}`, { hint: (e as LifeboatError)?.hint ? `${(e as LifeboatError).hint}; ${hint}` : hint, cause: e, exitCode: (e as LifeboatError)?.exitCode });
}

function urlOf(d: OffsiteDest, name: string): string {
  return d.kind === "s3" ? `${d.url}${name}` : d.kind === "ssh" ? `${d.url}/${name}` : join(d.dir, name);
}

/** The archive's sha256 from its sidecar, checked against the bytes unless a fresh NAME.verified vouches for them. */
async function localChecksum(archive: string, ctx: Context): Promise<{ sha256: string; size: number }> {
  let st;
  try {
    st = statSync(archive);
  } catch {
    throw new UsageError(`archive ${archive} does not exist`, "check the path (archive:list shows the backups of a folder)");
  }
  let side = "";
  try {
    side = readFileSync(`${archive}.sha256`, "utf8").split(/\s+/)[0];
  } catch { /* none */ }
  const stamp = readJson<Stamp>(`${archive}.verified`);
  const fresh = stamp?.ok && stamp.size === st.size && stamp.mtimeMs === st.mtimeMs;
  if (side && fresh) return { sha256: side, size: st.size };
  const got = await sha256File(archive);
  if (side && got !== side) {
    throw new VerifyError(`archive ${basename(archive)}: its bytes differ from ${basename(archive)}.sha256; the local archive is damaged`, [`${archive}: sha256 ${got}, sidecar says ${side}`],
      "not copied off-site; make a new backup, or run archive:verify to see what is wrong");
  }
  if (!side) ctx.log.warn(`${archive} has no .sha256 sidecar: copying it with the checksum computed now (${got.slice(0, 16)}…)`);
  return { sha256: got, size: st.size };
}

async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  await pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), async function* (src) {
    for await (const c of src) h.update(c as Buffer);
  });
  return h.digest("hex");
}

function readJson<T>(path: string): T | undefined {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as T;
  } catch {
    return undefined;
  }
}

function parseJson<T>(text: string | undefined): T | undefined {
  if (!text) return undefined;
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined;
  }
}

function sidecarText(archive: string): { suffix: string; text: string }[] {
  const out: { suffix: string; text: string }[] = [];
  for (const suffix of SIDECARS) {
    try {
      out.push({ suffix, text: readFileSync(`${archive}${suffix}`, "utf8") });
    } catch { /* a sidecar the archive does not have */ }
  }
  return out;
}

function stampText(s: Stamp): string {
  return JSON.stringify(s) + "\n";
}

// ── local paths ────────────────────────────────────────────────────────────────────────

async function copyLocal(archive: string, d: Extract<OffsiteDest, { kind: "local" }>, r: OffsiteCopyResult, ctx: Context): Promise<OffsiteCopyResult> {
  const path = join(d.dir, basename(archive));
  r.method = "read back";
  if (resolve(archive) === resolve(path)) throw new UsageError(`off-site destination ${d.dir} is the archive's own folder`, "give another place");
  if (ctx.dryRun) {
    ctx.log.command(`cp ${archive} ${partialPath(path)} && mv … ${path}; sidecars ${SIDECARS.join(", ")}; read back and compare sha256`, "dry-run");
    return r;
  }
  const have = listBackups(d.dir).find((e) => e.name === basename(archive));
  const stamp = readJson<Stamp>(`${path}.verified`);
  if (have?.verified === "passed" && stamp?.sha256 === r.sha256) return { ...r, verified: true, skipped: true };
  mkdirSync(d.dir, { recursive: true, mode: 0o700 });
  cleanLeftovers(d.dir, ctx);
  await captureToFile(path, async (tmp) => {
    copyFileSync(archive, tmp);
    const got = await sha256File(tmp); // read back before it gets its name
    if (got !== r.sha256) throw new VerifyError(`the copy's sha256 ${got} differs from the archive's ${r.sha256}`, [`${path}: sha256 mismatch`], "check the destination's storage");
  }, { label: `copy of ${basename(archive)} to ${d.dir}` });
  for (const s of sidecarText(archive)) writeAtomic(`${path}${s.suffix}`, s.text);
  const st = statSync(path);
  writeAtomic(`${path}.verified`, stampText({ ok: true, at: new Date().toISOString(), size: st.size, mtimeMs: st.mtimeMs, sha256: r.sha256, method: "read back" }));
  return { ...r, verified: true };
}

function writeAtomic(path: string, text: string): void {
  const tmp = partialPath(path);
  const fd = openSync(tmp, "w", 0o600);
  try {
    const buf = Buffer.from(text);
    for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off);
  } finally {
    closeSync(fd);
  }
  fsyncPath(tmp);
  renameSync(tmp, path);
}

// ── ssh ────────────────────────────────────────────────────────────────────────────────
// Each remote step is `sh -c SCRIPT sh ARGS…`: the scripts are constant text, the names
// arrive as positional parameters, quoted once by ssh() for the remote shell.

/** sha256 of stdin, computed on the remote host: OpenSSL's (SHA extensions: ~5× coreutils' on the lab machine) when there, else sha256sum. */
const SH_HASH = `h() { if command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 -r; else sha256sum; fi; }`;

/** `sidecars SUFFIX TEXT …`: writes each NAME+SUFFIX (NAME is $n) through its own partial name. */
const SH_SIDECARS = `sidecars() { while [ $# -ge 2 ]; do printf %s "$2" > ".partial-$n$1.$$"; mv -f -- ".partial-$n$1.$$" "$n$1"; shift 2; done; }`;

/**
 * In DIR (the current directory), receives a file on stdin as .partial-NAME.PID (after removing this
 * file's leftovers) and flushes it to the disk. Args: DIR PARTIAL NAME. The file is hashed after,
 * read back, not `tee | hash`: on the lab machine the pipe through tee made a 1 GiB copy twice as
 * slow, and the read-back checks what the file holds, not what passed by.
 */
const SH_RECEIVE = `for f in ".partial-$3".*; do if [ -e "$f" ]; then rm -f -- "$f"; fi; done
if ! cat > "$2"; then echo "writing $1/$2 failed" >&2; rm -f -- "$2"; exit 1; fi
sync -- "$2" 2>/dev/null || sync`;

/** {@link SH_RECEIVE}, then prints the sha256 of the file read back (openssl or sha256sum), then size:mtime. */
const SH_PUT = `${SH_HASH}; set -e; umask 077; mkdir -p -- "$1"; cd -- "$1"
${SH_RECEIVE}
h < "$2"
stat -c %s:%Y -- "$2"`;

/**
 * {@link SH_PUT} for an archive, all in one ssh session (each session costs a login). First, when
 * NAME is there with this sha256 and size, and its NAME.verified says so for the file as it is now
 * (size and mtime), it prints "present" and reads nothing. Otherwise it receives the archive; when
 * the file read back has the archive's sha256 and size, it is renamed into place, its sidecars are
 * written (each through its own partial name), then NAME.verified; when not, the partial is
 * removed. Prints sha256, size:mtime, then "renamed" once all is in place.
 * Args: DIR PARTIAL NAME SHA256 BYTES METHOD, then SUFFIX TEXT pairs.
 */
const SH_PUT_ARCHIVE = `${SH_HASH}; set -e; umask 077; mkdir -p -- "$1"; cd -- "$1"
if [ -f "$3" ] && [ -f "$3.verified" ]; then
  st=$(stat -c %s:%Y -- "$3"); v=$(cat -- "$3.verified")
  case $v in *'"ok":true'*) case $v in *'"sha256":"'"$4"'"'*) case $v in *'"size":'"\${st%%:*}"[,}]*) case $v in *'"mtime":'"\${st#*:}"[,}]*)
    if [ "\${st%%:*}" = "$5" ]; then echo present; exit 0; fi;; esac;; esac;; esac;; esac
fi
${SH_RECEIVE}
got=$(h < "$2"); got=\${got%% *}; st=$(stat -c %s:%Y -- "$2"); printf '%s\\n%s\\n' "$got" "$st"
p=$2; n=$3; want=$4; bytes=$5; method=$6; shift 6
if [ "$got" != "$want" ] || [ "\${st%%:*}" != "$bytes" ]; then rm -f -- "$p"; exit 0; fi
mv -f -- "$p" "$n"
stamp=$(printf '{"ok":true,"at":"%s","size":%s,"mtime":%s,"sha256":"%s","method":"%s"}' "$(date -u +%Y-%m-%dT%H:%M:%S.000Z)" "\${st%%:*}" "\${st#*:}" "$got" "$method")
${SH_SIDECARS}; sidecars "$@" .verified "$stamp
"
echo renamed`;

/** Renames the partial into place, then writes each sidecar (SUFFIX TEXT pairs) through its own partial name. */
const SH_FINISH = `${SH_SIDECARS}; set -e; umask 077; cd -- "$1"; p=$2; n=$3; shift 3
if [ -n "$p" ]; then mv -f -- "$p" "$n"; fi
sidecars "$@"`;

/** Every archive in DIR: NAME, size:mtime, info.json, verified, each ended by NUL. */
const SH_LIST = `[ -d "$1" ] || exit 0; cd -- "$1"
for f in *.tar.gz *.tar.gz.age *.tar.zst *.tar.zst.age; do
  [ -f "$f" ] || continue
  printf '%s\\0' "$f"; stat -c %s:%Y -- "$f" | tr -d '\\n'; printf '\\0'
  cat -- "$f.info.json" 2>/dev/null || true; printf '\\0'
  cat -- "$f.verified" 2>/dev/null || true; printf '\\0'
done`;

/** sha256 of NAME read back, size:mtime, and the sidecar's line. */
const SH_CHECK = `${SH_HASH}; set -e; cd -- "$1"; h < "$2"; stat -c %s:%Y -- "$2"; cat -- "$2.sha256" 2>/dev/null || true`;

/** Removes each NAME with its sidecars: the archive first, so a half-done removal lists nothing. */
const SH_REMOVE = `set -e; cd -- "$1"; shift; for n in "$@"; do rm -f -- "$n"; rm -f -- "$n.sha256" "$n.info.json" "$n.verified"; done`;

function sh(script: string, ...args: string[]): string[] {
  return ["sh", "-c", script, "sh", ...args];
}

async function copySsh(archive: string, d: Extract<OffsiteDest, { kind: "ssh" }>, r: OffsiteCopyResult, opts: OffsiteOptions, ctx: Context): Promise<OffsiteCopyResult> {
  const name = basename(archive);
  const partial = `.partial-${name}.${process.pid}`;
  r.method = `sha256 on ${d.target.host}`;
  const progress = opts.progress === false || ctx.dryRun ? null : ctx.log.progress(`copy ${name} → ${d.url}`, { total: r.bytes });
  const sidecars = sidecarText(archive).flatMap((s) => [s.suffix, s.text]);
  let put;
  try {
    // ssh reads the archive itself (no copy through this process) and dies with this process, even a SIGKILLed one
    let sent = 0;
    const onStdinRead = (n: number) => void (progress?.add(n - sent), (sent = n));
    put = await ssh(d.target, sh(SH_PUT_ARCHIVE, d.dir, partial, name, r.sha256 || "SHA256", String(r.bytes), r.method, ...sidecars), { stdin: { file: archive }, onStdinRead, killWithParent: true, ctx });
  } catch (e) {
    progress?.fail();
    throw e;
  }
  if (ctx.dryRun) return r;
  const lines = put.stdout.trim().split("\n");
  if (lines[0] === "present") {
    progress?.done(`${name} is already at ${d.url}, verified`);
    return { ...r, verified: true, skipped: true };
  }
  progress?.done(`sent ${name} to ${d.url}`);
  const got = (lines[0] ?? "").split(/\s+/)[0];
  const size = Number((lines[1] ?? "").split(":")[0]);
  if (got !== r.sha256 || size !== r.bytes || lines[2] !== "renamed") {
    throw new VerifyError(`the copy on ${d.target.host} has sha256 ${got || "?"} and ${size} bytes, the archive ${r.sha256} and ${r.bytes}; it was removed`,
      [`${d.url}/${name}: sha256 mismatch`], "check the remote disk and the link; run the copy again");
  }
  return { ...r, verified: true };
}

// ── S3 ─────────────────────────────────────────────────────────────────────────────────

function client(d: OffsiteDest, opts: OffsiteOptions, ctx: Context): S3Handle {
  if (!opts.s3?.endpoint) throw new UsageError(`off-site destination ${d.url} needs an S3 gateway`, "set offsite.s3.endpoint, offsite.s3.access-key and offsite.s3.secret-key");
  return s3Client({ ...opts.s3, maxAttempts: opts.attempts, ctx });
}

async function sdkCall<T>(h: S3Handle, what: string, fn: (c: Awaited<ReturnType<S3Handle["sdk"]>>, m: Awaited<ReturnType<typeof sdkLib>>) => Promise<T>): Promise<T> {
  try {
    return await fn(await h.sdk(), await sdkLib());
  } catch (e) {
    throw s3Error(h, what, e);
  }
}

async function getText(h: S3Handle, bucket: string, key: string): Promise<string | undefined> {
  try {
    const out = await (await h.sdk()).send(new (await sdkLib()).GetObjectCommand({ Bucket: bucket, Key: key }));
    return await out.Body!.transformToString();
  } catch (e) {
    if ((e as Error)?.name === "NoSuchKey" || (e as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode === 404) return undefined;
    throw s3Error(h, `get s3://${bucket}/${key}`, e);
  }
}

async function putText(h: S3Handle, bucket: string, key: string, text: string): Promise<void> {
  const body = Buffer.from(text);
  const md5 = createHash("md5").update(body).digest("hex");
  const out = await sdkCall(h, `put s3://${bucket}/${key}`, (c, m) => c.send(new m.PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentLength: body.length })));
  const etag = (out.ETag ?? "").replace(/"/g, "");
  if (etag && etag !== md5) throw new VerifyError(`s3://${bucket}/${key}: ETag ${etag} does not match the bytes sent (${md5})`, [], "run the copy again");
}

async function head(h: S3Handle, bucket: string, key: string): Promise<{ size: number; etag: string } | undefined> {
  try {
    const out = await (await h.sdk()).send(new (await sdkLib()).HeadObjectCommand({ Bucket: bucket, Key: key }));
    return { size: Number(out.ContentLength ?? 0), etag: (out.ETag ?? "").replace(/"/g, "") };
  } catch (e) {
    if ((e as Error)?.name === "NotFound" || (e as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode === 404) return undefined;
    throw s3Error(h, `head s3://${bucket}/${key}`, e);
  }
}

/** Aborts the multipart uploads a killed run left under exactly this key (their parts take space and are never visible). */
async function abortLeftUploads(h: S3Handle, bucket: string, key: string, ctx: Context): Promise<number> {
  const out = await sdkCall(h, `list multipart uploads in s3://${bucket}/${key}`, (c, m) => c.send(new m.ListMultipartUploadsCommand({ Bucket: bucket, Prefix: key })));
  let n = 0;
  for (const u of out.Uploads ?? []) {
    if (u.Key !== key || !u.UploadId) continue;
    await sdkCall(h, `abort multipart upload of s3://${bucket}/${key}`, (c, m) => c.send(new m.AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: u.UploadId })));
    n++;
  }
  if (n) ctx.log.warn(`aborted ${n} unfinished upload(s) of s3://${bucket}/${key} left by an interrupted copy`);
  return n;
}

async function copyS3(archive: string, d: Extract<OffsiteDest, { kind: "s3" }>, r: OffsiteCopyResult, opts: OffsiteOptions, ctx: Context): Promise<OffsiteCopyResult> {
  const name = basename(archive);
  const key = d.prefix + name;
  if (ctx.dryRun) {
    ctx.log.command(`s3 upload ${archive} → s3://${d.bucket}/${key} (multipart, checked against its ETag)`, "dry-run");
    for (const s of [...SIDECARS, ".verified"]) ctx.log.command(`s3 put s3://${d.bucket}/${key}${s}`, "dry-run");
    return { ...r, method: "ETag" };
  }
  const h = client(d, opts, ctx);
  try {
    const old = await head(h, d.bucket, key);
    const stamp = parseJson<Stamp>(await getText(h, d.bucket, `${key}.verified`));
    if (old && stamp?.ok && stamp.etag === old.etag && stamp.size === old.size && stamp.sha256 === r.sha256 && old.size === r.bytes) {
      return { ...r, verified: true, skipped: true, method: `ETag ${old.etag}` };
    }
    const method = await s3PutFile(h, archive, d.bucket, d.prefix, r.bytes, opts, ctx);
    for (const s of sidecarText(archive)) await putText(h, d.bucket, `${key}${s.suffix}`, s.text);
    await putText(h, d.bucket, `${key}.verified`, stampText({ ok: true, at: new Date().toISOString(), size: r.bytes, etag: method.etag, sha256: r.sha256, method: method.text }));
    return { ...r, verified: true, method: method.text };
  } finally {
    h.destroy();
  }
}

/**
 * Uploads one local file as s3://BUCKET/PREFIX+basename through s3Sync's upload path (multipart,
 * per-part and whole ETag checks, retries, abort on failure): a one-file dir beside the file (a
 * hard link: no copy) is synced, after aborting uploads a killed run left under the key. Then
 * the object's ETag and size are checked against what was sent. The key appears only whole.
 */
async function s3PutFile(h: S3Handle, file: string, bucket: string, prefix: string, bytes: number, opts: OffsiteOptions, ctx: Context): Promise<{ etag: string; text: string }> {
  const name = basename(file);
  const key = prefix + name;
  const staging = join(dirname(file), `.partial-offsite-${name}.${process.pid}`);
  try {
    await abortLeftUploads(h, bucket, key, ctx);
    rmSync(staging, { recursive: true, force: true });
    mkdirSync(staging, { mode: 0o700 });
    try {
      linkSync(file, join(staging, name));
    } catch (e) {
      throw new LifeboatError(`cannot link ${file} into ${staging} (${(e as Error).message})`, { hint: "the file's folder must be writable by this user", cause: e });
    }
    await s3Sync(staging, `s3://${bucket}/${prefix}`, { client: h, concurrency: opts.concurrency ?? 16, attempts: opts.attempts, progress: opts.progress, ctx });
    const sent = readS3Index(join(staging, S3_INDEX_NAME)).get(name);
    const now = await head(h, bucket, key);
    if (!sent || !now || now.etag !== sent.etag || now.size !== bytes) {
      throw new VerifyError(`s3://${bucket}/${key} has ETag ${now?.etag ?? "(none)"} and ${now?.size ?? 0} bytes after the upload; the bytes sent give ${sent?.etag ?? "?"} and ${bytes}`,
        [`${key}: ETag mismatch`], "another writer may share this key; run the copy again");
    }
    return { etag: now.etag, text: `ETag ${now.etag}${sent.partSize ? ` (${sent.partSize / 1048576} MiB parts)` : ""}` };
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

// ── verify, list, prune, fetch ──────────────────────────────────────────────────────────

/** What {@link offsiteVerify} found. */
export interface OffsiteVerifyResult {
  url: string;
  ok: boolean;
  /** sha256 of the copy's bytes as read back. */
  sha256: string;
  /** What its NAME.sha256 says. */
  expected: string;
  size: number;
}

/**
 * Reads an off-site copy back (ssh: sha256 on the remote host (openssl, else sha256sum); S3: a GET hashed here; local:
 * read here), compares it with its NAME.sha256, and records the result there (NAME.verified,
 * passed or failed). A mismatch throws VerifyError (exit 3) after recording it.
 * @example await offsiteVerify("s3://offsite/deis/deis-backup-2026-11-21T101500Z.tar.gz", { s3 });
 */
export async function offsiteVerify(url: string, opts: OffsiteOptions = {}): Promise<OffsiteVerifyResult> {
  const ctx = opts.ctx ?? useContext();
  const { dest: d, name } = splitArchiveUrl(url, opts);
  const where = urlOf(d, name);
  let got = "", expected = "", size = 0;
  let record: (s: Stamp) => Promise<void>;
  let stampBase: Partial<Stamp> = {};
  if (d.kind === "local") {
    const path = join(d.dir, name);
    if (!existsSync(path)) throw new UsageError(`${where} does not exist`, "offsite:list shows the copies there");
    got = await sha256File(path);
    expected = (readFileSync(`${path}.sha256`, "utf8").split(/\s+/)[0]) ?? "";
    const st = statSync(path);
    size = st.size;
    stampBase = { size, mtimeMs: st.mtimeMs, method: "read back" };
    record = async (s) => writeAtomic(`${path}.verified`, stampText(s));
  } else if (d.kind === "ssh") {
    const out = (await ssh(d.target, sh(SH_CHECK, d.dir, name), { readOnly: true, ctx })).stdout.split("\n");
    got = (out[0] ?? "").split(/\s+/)[0];
    const [sz, mtime] = (out[1] ?? "").split(":").map(Number);
    size = sz;
    expected = (out[2] ?? "").split(/\s+/)[0];
    stampBase = { size, mtime, method: `sha256 on ${d.target.host}` };
    record = async (s) => void (await ssh(d.target, sh(SH_FINISH, d.dir, "", name, ".verified", stampText(s)), { ctx }));
  } else {
    const h = client(d, opts, ctx);
    try {
      const key = d.prefix + name;
      const now = await head(h, d.bucket, key);
      if (!now) throw new UsageError(`${where} does not exist`, "offsite:list shows the copies there");
      expected = ((await getText(h, d.bucket, `${key}.sha256`)) ?? "").split(/\s+/)[0];
      const hash = createHash("sha256");
      const out = await sdkCall(h, `get ${where}`, (c, m) => c.send(new m.GetObjectCommand({ Bucket: d.bucket, Key: key }), { abortSignal: ctx.signal as never }));
      for await (const chunk of out.Body as AsyncIterable<Buffer>) hash.update(chunk);
      got = hash.digest("hex");
      size = now.size;
      stampBase = { size, etag: now.etag, method: "read back (sha256)" };
      if (!ctx.dryRun) await putText(h, d.bucket, `${key}.verified`, stampText({ ok: got === expected && !!expected, at: new Date().toISOString(), ...stampBase, sha256: got, ...(got === expected ? {} : { error: "sha256 mismatch" }) } as Stamp));
    } finally {
      h.destroy();
    }
    record = async () => {};
  }
  const ok = !!expected && got === expected;
  if (!ctx.dryRun) await record({ ok, at: new Date().toISOString(), ...stampBase, sha256: got, ...(ok ? {} : { error: expected ? "sha256 mismatch" : "no .sha256 sidecar" }) } as Stamp);
  if (!ok) {
    throw new VerifyError(`off-site copy ${where}: ${expected ? `sha256 ${got} differs from its .sha256 (${expected})` : "has no .sha256 sidecar to check against"}; the copy is damaged`,
      [`${where}: sha256 mismatch`], "do not restore from this copy; copy the archive there again (offsite:copy), or use another copy");
  }
  ctx.log.ok(`verified ${where}: sha256 ${got.slice(0, 16)}…, ${formatBytes(size)}`);
  return { url: where, ok, sha256: got, expected, size };
}

/**
 * Lists the archives at a destination, newest first, as listBackups does for a folder: name,
 * when it was taken, size, and whether its NAME.verified is passed, failed, or missing or stale
 * (for another file than the one there). `path` is the copy's URL. Read-only (runs in dry-run).
 * @example for (const c of await offsiteList("ssh://backup@vault/srv/lifeboat", { ssh })) console.log(c.name, c.verified);
 */
export async function offsiteList(dest: string, opts: OffsiteOptions = {}): Promise<BackupEntry[]> {
  const ctx = opts.ctx ?? useContext();
  const d = parseOffsite(dest, opts);
  if (d.kind === "local") return listBackups(d.dir);
  const out: BackupEntry[] = [];
  const entry = (name: string, size: number, mtime: Date, info: ArchiveInfo | undefined, fresh: boolean, stamp: Stamp | undefined): BackupEntry => ({
    path: urlOf(d, name),
    name,
    size,
    createdAt: new Date(info?.startedAt ?? stampOfName(name) ?? mtime),
    recipe: info?.recipe ?? "",
    encrypted: name.endsWith(".age"),
    verified: fresh && stamp ? (stamp.ok ? "passed" : "failed") : "never",
    verifiedAt: fresh && stamp ? new Date(stamp.at) : undefined,
    info,
  });
  if (d.kind === "ssh") {
    const text = (await ssh(d.target, sh(SH_LIST, d.dir), { readOnly: true, ctx })).stdout;
    const f = text.split("\0");
    for (let i = 0; i + 3 < f.length; i += 4) {
      const [size, mtime] = f[i + 1].split(":").map(Number);
      const stamp = parseJson<Stamp>(f[i + 3]);
      out.push(entry(f[i], size, new Date(mtime * 1000), parseJson<ArchiveInfo>(f[i + 2]), !!stamp && stamp.size === size && stamp.mtime === mtime, stamp));
    }
  } else {
    const h = client(d, opts, ctx);
    try {
      const objs = new Map<string, { size: number; etag: string; lastModified: Date }>();
      try {
        for await (const o of s3List(h, d.bucket, d.prefix, { ctx })) objs.set(o.key.slice(d.prefix.length), o);
      } catch (e) {
        throw s3Error(h, `list ${d.url}`, e);
      }
      const names = [...objs.keys()].filter((k) => !k.includes("/") && !k.startsWith(".") && ARCHIVE.test(k));
      for (const name of names) {
        const o = objs.get(name)!;
        const [info, stampText] = await Promise.all([
          objs.has(`${name}.info.json`) ? getText(h, d.bucket, `${d.prefix}${name}.info.json`) : undefined,
          objs.has(`${name}.verified`) ? getText(h, d.bucket, `${d.prefix}${name}.verified`) : undefined,
        ]);
        const stamp = parseJson<Stamp>(stampText);
        out.push(entry(name, o.size, o.lastModified, parseJson<ArchiveInfo>(info), !!stamp && stamp.etag === o.etag && stamp.size === o.size, stamp));
      }
    } finally {
      h.destroy();
    }
  }
  return out.sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || b.name.localeCompare(a.name));
}

/** The time in a NAME-2026-11-21T101500Z.tar.gz name, when there is one. */
function stampOfName(name: string): Date | undefined {
  const m = /-(\d{4}-\d{2}-\d{2})T(\d{2})(\d{2})(\d{2})Z\.tar\.(gz|zst)(\.age)?$/.exec(name);
  return m ? new Date(`${m[1]}T${m[2]}:${m[3]}:${m[4]}Z`) : undefined;
}

/** Options for {@link offsitePrune}. */
export interface OffsitePruneOptions extends OffsiteOptions {
  /** Actually delete (otherwise, and in dry-run, the plan is only printed). */
  yes?: boolean;
}

/**
 * Applies a retention policy to the copies at a destination with archive:prune's rules
 * (planPrune: restic's forget, in UTC), never removing the newest verified copy. A dry run
 * unless `yes`. Refuses a policy that keeps nothing.
 * @example await offsitePrune("s3://offsite/deis", { keepDaily: 7, keepWeekly: 4, keepMonthly: 12 }, { s3, yes: true });
 */
export async function offsitePrune(dest: string, policy: PrunePolicy, opts: OffsitePruneOptions = {}): Promise<PrunePlan> {
  const ctx = opts.ctx ?? useContext();
  if (!policy.keepLast && !policy.keepDaily && !policy.keepWeekly && !policy.keepMonthly) {
    throw new UsageError(`off-site prune ${dest}: the policy keeps nothing`, "set at least one of keep-last, keep-daily, keep-weekly, keep-monthly");
  }
  const d = parseOffsite(dest, opts);
  const plan = planPrune(await offsiteList(dest, opts), policy);
  const go = !!opts.yes && !ctx.dryRun;
  for (const k of plan.keep) ctx.log.info(`keep    ${k.entry.path}  (${k.reasons.join(", ")})`);
  for (const r of plan.remove) ctx.log.info(`${go ? "remove" : "would remove"}  ${r.path}  ${formatBytes(r.size)}`);
  if (!plan.keep.some((k) => k.entry.verified === "passed") && plan.remove.length) ctx.log.warn(`no kept copy at ${d.url} is verified; run offsite:copy or offsiteVerify on the newest one`);
  if (!go || !plan.remove.length) return plan;
  await offsiteRemove(dest, plan.remove.map((r) => r.name), opts);
  return plan;
}

/** Options for {@link offsiteFetch}. */
export interface OffsiteFetchOptions extends OffsiteOptions {}

/**
 * Fetches an off-site archive and its sidecars into a local folder (created 0700), checks
 * the bytes against its NAME.sha256, and returns the local path. The archive appears under its
 * name only once whole and checked (a local path, such as a mount, is copied the same way). In dry-run it fetches
 * into a temporary folder (nothing is restored from it; it goes when the process ends), so the
 * restore's verify step can still read the archive.
 * @example const path = await offsiteFetch("s3://offsite/deis/deis-backup-2026-11-21T101500Z.tar.gz", "/var/backups/restore", { s3 });
 */
export async function offsiteFetch(url: string, dir: string, opts: OffsiteFetchOptions = {}): Promise<string> {
  const ctx = opts.ctx ?? useContext();
  const { dest: d, name } = isOffsiteUrl(url) ? splitArchiveUrl(url, opts) : { dest: parseOffsite(dirname(url)), name: basename(url) };
  const where = urlOf(d, name);
  let into = dir;
  if (ctx.dryRun) {
    into = mkdtempSync(join(tmpdir(), "lifeboat-fetch-"));
    process.once("exit", () => rmSync(into, { recursive: true, force: true }));
    ctx.log.command(`fetch ${where} → ${join(dir, name)} (into ${into} for this dry run)`, "probe");
  }
  const path = join(into, name);
  mkdirSync(into, { recursive: true, mode: 0o700 });
  const t0 = Date.now();
  try {
    const sums: Record<string, string | undefined> = {};
    let got = "";
    if (d.kind === "local") {
      const src = join(d.dir, name);
      if (!existsSync(src)) throw new UsageError(`${src} does not exist`, "offsite:list shows the copies there");
      for (const s of SIDECARS) sums[s] = existsSync(`${src}${s}`) ? readFileSync(`${src}${s}`, "utf8") : undefined;
      got = await captureToFile(path, async (tmp) => {
        copyFileSync(src, tmp);
        return check(await sha256File(tmp));
      }, { label: `fetch of ${where}` });
    } else if (d.kind === "ssh") {
      for (const s of SIDECARS) sums[s] = (await ssh(d.target, sh(`cat -- "$1/$2" 2>/dev/null || true`, d.dir, `${name}${s}`), { readOnly: true, ctx })).stdout || undefined;
      got = await captureToFile(path, async (tmp) => {
        const hash = createHash("sha256");
        const fd = openSync(tmp, "w", 0o600);
        const sink = new Writable({
          write(chunk: Buffer, _e, cb) {
            try {
              hash.update(chunk);
              for (let off = 0; off < chunk.length; ) off += writeSync(fd, chunk, off);
              cb();
            } catch (e) {
              cb(e as Error);
            }
          },
        });
        try {
          await ssh(d.target, ["cat", "--", `${d.dir}/${name}`], { stdout: sink, readOnly: true, ctx });
        } finally {
          closeSync(fd);
        }
        return check(hash.digest("hex"));
      }, { label: `fetch of ${where}` });
    } else if (d.kind === "s3") {
      const h = client(d, opts, ctx);
      try {
        const key = d.prefix + name;
        for (const s of SIDECARS) sums[s] = await getText(h, d.bucket, `${key}${s}`);
        got = await captureToFile(path, async (tmp) => {
          const hash = createHash("sha256");
          const out = await sdkCall(h, `get ${where}`, (c, m) => c.send(new m.GetObjectCommand({ Bucket: d.bucket, Key: key }), { abortSignal: ctx.signal as never }));
          const fd = openSync(tmp, "w", 0o600);
          try {
            for await (const chunk of out.Body as AsyncIterable<Buffer>) {
              hash.update(chunk);
              for (let off = 0; off < chunk.length; ) off += writeSync(fd, chunk, off);
            }
          } finally {
            closeSync(fd);
          }
          return check(hash.digest("hex"));
        }, { label: `fetch of ${where}` });
      } finally {
        h.destroy();
      }
    }
    function check(sha: string): string {
      const want = (sums[".sha256"] ?? "").split(/\s+/)[0];
      if (!want) throw new VerifyError(`it has no .sha256 sidecar: its bytes cannot be checked`, [], "fetch another copy, or copy the archive there again");
      if (sha !== want) throw new VerifyError(`the fetched bytes have sha256 ${sha}, its .sha256 says ${want}; the off-site copy is damaged`, [`${name}: sha256 mismatch`], "use another copy; nothing was kept");
      return sha;
    }
    for (const s of SIDECARS) if (sums[s] !== undefined) writeAtomic(`${path}${s}`, sums[s]!);
    ctx.log.ok(`fetched ${where} → ${path} (${formatBytes(statSync(path).size)}, sha256 ${got.slice(0, 16)}… matches, ${formatDuration(Date.now() - t0)})`);
    return path;
  } catch (e) {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    throw failure(`fetch of ${where}`, e, "nothing was kept under its name; check the destination and run again");
  }
}

/** What {@link offsiteBackup} did. */
export interface OffsiteBackupResult {
  copies: OffsiteCopyResult[];
  /** Local archives removed by keep-local. */
  removedLocal: string[];
  /** Copies removed by the off-site retention, per destination. */
  removedRemote: Record<string, string[]>;
}

/**
 * A backup recipe's whole off-site step: copies the archive to every destination (each one
 * verified there), then, when every copy verified, keeps the newest `keepLocal` archives in the
 * archive's folder (an older one is removed only when every destination has a verified copy of
 * it), then applies `policy` at each destination. A destination that fails does not stop the
 * others; the step then fails naming each, and removes nothing locally.
 * @example step("offsite", "copy the archive off-site", () => offsiteBackup(pack.output.path, offsiteOptions(s)), { when: s["offsite.to"].length > 0 });
 */
export async function offsiteBackup(archive: string, opts: OffsiteBackupOptions): Promise<OffsiteBackupResult> {
  const ctx = opts.ctx ?? useContext();
  const result: OffsiteBackupResult = { copies: [], removedLocal: [], removedRemote: {} };
  const failed: { dest: string; error: unknown }[] = [];
  for (const dest of opts.to) {
    try {
      result.copies.push(await offsiteCopy(archive, dest, opts));
    } catch (e) {
      if (ctx.signal.aborted) throw e;
      ctx.log.error((e as Error).message.split("\n")[0]);
      failed.push({ dest, error: e });
    }
  }
  const p = opts.policy ?? {};
  if (p.keepLast || p.keepDaily || p.keepWeekly || p.keepMonthly) {
    for (const c of result.copies) result.removedRemote[c.dest] = (await offsitePrune(c.dest, p, { ...opts, yes: true })).remove.map((r) => r.name);
  }
  if (failed.length) {
    const first = failed[0].error as LifeboatError;
    throw new LifeboatError(`off-site copy failed for ${failed.length} of ${opts.to.length} destination(s): ${failed.map((f) => f.dest).join(", ")}: ${first.message}`, {
      hint: `the local archive ${archive} is kept, and no local archive was removed; ${first.hint ?? "fix the cause and run again"}`,
      exitCode: first.exitCode,
      cause: first,
    });
  }
  if (opts.keepLocal && opts.keepLocal > 0) result.removedLocal = await keepLocal(dirname(archive), opts.keepLocal, opts, ctx);
  return result;
}

/** Keeps the newest `keep` local archives; an older one goes only when every destination lists a verified copy of it. */
async function keepLocal(dir: string, keep: number, opts: OffsiteBackupOptions, ctx: Context): Promise<string[]> {
  const local = listBackups(dir);
  const old = local.slice(keep);
  if (!old.length) return [];
  const verifiedAt = await Promise.all(opts.to.map(async (dest) => new Set((await offsiteList(dest, opts)).filter((c) => c.verified === "passed").map((c) => c.name))));
  const removed: string[] = [];
  for (const e of old) {
    const missing = opts.to.filter((_, i) => !verifiedAt[i].has(e.name));
    if (missing.length) {
      ctx.log.warn(`keep-local: ${e.name} kept: no verified copy at ${missing.join(", ")}`);
      continue;
    }
    if (ctx.dryRun) ctx.log.command(`remove ${e.path} (+ sidecars): verified copies at ${opts.to.join(", ")}`, "dry-run");
    else {
      removeArchive(e.path);
      ctx.log.info(`keep-local: removed ${e.name} (verified off-site at ${opts.to.length} destination(s))`);
    }
    removed.push(e.name);
  }
  return removed;
}

/**
 * Removes the named archives (each with its sidecars, the archive first) at a destination, as
 * offsitePrune removes the ones its plan drops; for callers with their own rules (the DIRECTORY
 * chains of lib/filechain.ts drop whole chains). Names that are not there are no error. In
 * dry-run it only says what it would remove.
 * @example await offsiteRemove("s3://offsite/xenon", ["xenon-store-2026-11-01T000000Z-2026-11-01T000000Z.tar.gz"], { s3 });
 */
export async function offsiteRemove(dest: string, names: readonly string[], opts: OffsiteOptions = {}): Promise<void> {
  const ctx = opts.ctx ?? useContext();
  const d = parseOffsite(dest, opts);
  const bad = names.filter((n) => !ARCHIVE.test(n) || n.includes("/"));
  if (bad.length) throw new UsageError(`off-site remove in ${d.url}: not archive names: ${bad.slice(0, 3).join(", ")}`);
  if (!names.length) return;
  if (ctx.dryRun) {
    ctx.log.command(`remove ${names.length} archive(s) with their sidecars from ${d.url}: ${names.slice(0, 3).join(", ")}${names.length > 3 ? ", …" : ""}`, "dry-run");
    return;
  }
  try {
    if (d.kind === "local") for (const n of names) removeArchive(join(d.dir, n));
    else if (d.kind === "ssh") await ssh(d.target, sh(SH_REMOVE, d.dir, ...names), { ctx });
    else {
      const h = client(d, opts, ctx);
      try {
        // The archive first, then its sidecars: an interrupted removal lists nothing half-gone.
        for (const suffixes of [[""], [".sha256", ".info.json", ".verified"]]) {
          const keys = names.flatMap((n) => suffixes.map((s) => ({ Key: `${d.prefix}${n}${s}` })));
          for (let i = 0; i < keys.length; i += 1000) {
            const out = await sdkCall(h, `delete in ${d.url}`, (c, m) => c.send(new m.DeleteObjectsCommand({ Bucket: d.bucket, Delete: { Objects: keys.slice(i, i + 1000), Quiet: true } })));
            if (out.Errors?.length) throw new LifeboatError(`delete in ${d.url}: ${out.Errors.map((x) => `${x.Key}: ${x.Code}`).slice(0, 5).join("; ")}`);
          }
        }
      } finally {
        h.destroy();
      }
    }
  } catch (e) {
    throw failure(`off-site remove in ${d.url}`, e, "some archives may be left; run it again");
  }
}

// ── files under a destination: folders of files (lib/mirror.ts) ────────────────────────
// The same destinations, transports and checks as the archives above, for any file addressed
// as SUB/NAME (a day folder of dumps, say): written under no final name until whole and checked
// (ssh: sha256 on the remote of the flushed file; local: read back; S3: s3PutFile's ETag check),
// then NAME.sha256 (sha256sum format) beside it. Reads hash what they receive.

/** One file under a destination, as {@link offsiteFiles} lists it (sidecars and partials left out). */
export interface OffsiteFileEntry {
  /** SUB/NAME */
  path: string;
  bytes: number;
}

/** SUB/NAME split and checked: two plain names, neither empty, "." or "..", nor starting with "-". */
function subName(path: string): [string, string] {
  const parts = path.split("/");
  const bad = (p: string) => !p || p === "." || p === ".." || p.startsWith("-") || p.includes("\0");
  if (parts.length !== 2 || parts.some(bad)) throw new UsageError(`${JSON.stringify(path)} is not SUB/NAME (two plain names)`);
  return parts as [string, string];
}

const fileSidecar = (name: string, sha256: string) => `${sha256}  ${name}\n`;

/** For each NAME given that is in DIR: NAME NUL size NUL NAME.sha256's text NUL. */
const SH_SUMS = `cd -- "$1" 2>/dev/null || exit 0; shift; for n in "$@"; do if [ -f "$n" ]; then printf '%s\\0' "$n"; stat -c %s -- "$n" | tr -d '\\n'; printf '\\0'; cat -- "$n.sha256" 2>/dev/null || true; printf '\\0'; fi; done`;
/** Every SUB/NAME in DIR (not sidecars, not partials): SUB/NAME NUL size NUL. */
const SH_FILES = `[ -d "$1" ] || exit 0; cd -- "$1"; find . -mindepth 2 -maxdepth 2 -type f ! -name '*.sha256' ! -name '.*' -printf '%P\\0%s\\0'`;
/** Bytes available at DIR (df of the nearest folder that exists). */
const SH_FREE = `d=$1; while [ ! -d "$d" ]; do d=$(dirname -- "$d"); done; df -P -B1 -- "$d" | awk 'NR==2 {print $4}'`;

/**
 * Copies a local file to DEST/SUB/NAME, checks the copy's bytes there against `want` before it
 * takes its name, then writes NAME.sha256 beside it. In dry-run it prints the copy. A failure
 * names the destination and the cause and leaves nothing under the final name.
 * @example await offsitePutFile("/vicepa/hcoop-backups/2026.11.24/2026.11.24-user.alice.dump.gz.age", "s3://offsite/hcoop", "2026.11.24/2026.11.24-user.alice.dump.gz.age", { sha256, bytes }, { s3 });
 */
export async function offsitePutFile(local: string, dest: string, path: string, want: { sha256: string; bytes: number }, opts: OffsiteOptions = {}): Promise<{ url: string; method: string }> {
  const ctx = opts.ctx ?? useContext();
  const d = parseOffsite(dest, opts);
  const [sub, name] = subName(path);
  const url = d.kind === "s3" ? `${d.url}${path}` : `${d.url}/${path}`;
  if (ctx.dryRun) {
    ctx.log.command(`copy ${local} → ${url} (${d.kind === "s3" ? "ETag" : "sha256"} checked there before it takes its name), then ${name}.sha256`, "dry-run");
    return { url, method: "" };
  }
  try {
    if (d.kind === "local") {
      const dir = join(d.dir, sub);
      await captureToFile(join(dir, name), async (tmp) => {
        copyFileSync(local, tmp);
        const got = await sha256File(tmp);
        if (got !== want.sha256 || statSync(tmp).size !== want.bytes) throw new VerifyError(`the copy's sha256 ${got.slice(0, 16)}… differs from the file's ${want.sha256.slice(0, 16)}…`, [`${url}: sha256 mismatch`], "check the local file and the destination's storage");
      }, { label: `copy of ${name} to ${dir}` });
      writeAtomic(join(dir, `${name}.sha256`), fileSidecar(name, want.sha256));
      return { url, method: "read back" };
    }
    if (d.kind === "ssh") {
      const dir = `${d.dir}/${sub}`;
      const partial = `.partial-${name}.${process.pid}`;
      const put = await ssh(d.target, sh(SH_PUT, dir, partial, name), { stdin: { file: local }, killWithParent: true, ctx });
      const lines = put.stdout.trim().split("\n");
      const got = (lines[0] ?? "").split(/\s+/)[0];
      const size = Number((lines[1] ?? "").split(":")[0]);
      if (got !== want.sha256 || size !== want.bytes) {
        await ssh(d.target, ["rm", "-f", "--", `${dir}/${partial}`], { ctx }).catch(() => {});
        throw new VerifyError(`the copy on ${d.target.host} has sha256 ${got.slice(0, 16) || "?"}… and ${size} bytes, the file ${want.sha256.slice(0, 16)}… and ${want.bytes}; it was removed`, [`${url}: sha256 mismatch`], "check the local file (it may have changed) and the link; run again");
      }
      await ssh(d.target, sh(SH_FINISH, dir, partial, name, ".sha256", fileSidecar(name, want.sha256)), { ctx });
      return { url, method: `sha256 on ${d.target.host}` };
    }
    const h = client(d, opts, ctx);
    try {
      const m = await s3PutFile(h, local, d.bucket, `${d.prefix}${sub}/`, want.bytes, { ...opts, progress: false }, ctx);
      await putText(h, d.bucket, `${d.prefix}${path}.sha256`, fileSidecar(name, want.sha256));
      return { url, method: m.text };
    } finally {
      h.destroy();
    }
  } catch (e) {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    throw failure(`copy of ${local} to ${url}`, e, "the local file is kept as it was; fix the cause and run again");
  }
}

/**
 * The files NAME of DEST/SUB among `names` that are there: their bytes and the sha256 their
 * NAME.sha256 records ("" when it has none). A read-only probe.
 * @example const have = await offsiteFileSums("s3://offsite/hcoop", "2026.11.24", names, { s3 });
 */
export async function offsiteFileSums(dest: string, sub: string, names: readonly string[], opts: OffsiteOptions = {}): Promise<Map<string, { bytes: number; sha256: string }>> {
  const ctx = opts.ctx ?? useContext();
  const d = parseOffsite(dest, opts);
  names.forEach((n) => subName(`${sub}/${n}`));
  const out = new Map<string, { bytes: number; sha256: string }>();
  const first = (t: string | undefined) => (t ?? "").split(/\s+/)[0];
  if (d.kind === "local") {
    for (const n of names) {
      const p = join(d.dir, sub, n);
      if (existsSync(p)) out.set(n, { bytes: statSync(p).size, sha256: existsSync(`${p}.sha256`) ? first(readFileSync(`${p}.sha256`, "utf8")) : "" });
    }
  } else if (d.kind === "ssh") {
    if (!names.length) return out;
    const f = (await ssh(d.target, sh(SH_SUMS, `${d.dir}/${sub}`, ...names), { readOnly: true, ctx })).stdout.split("\0");
    for (let i = 0; i + 2 < f.length; i += 3) out.set(f[i], { bytes: Number(f[i + 1]), sha256: first(f[i + 2]) });
  } else {
    const h = client(d, opts, ctx);
    try {
      const objs = new Map<string, number>();
      try {
        for await (const o of s3List(h, d.bucket, `${d.prefix}${sub}/`, { ctx })) objs.set(o.key.slice(d.prefix.length + sub.length + 1), o.size);
      } catch (e) {
        throw s3Error(h, `list ${d.url}${sub}/`, e);
      }
      for (const n of names) {
        if (!objs.has(n)) continue;
        out.set(n, { bytes: objs.get(n)!, sha256: objs.has(`${n}.sha256`) ? first(await getText(h, d.bucket, `${d.prefix}${sub}/${n}.sha256`)) : "" });
      }
    } finally {
      h.destroy();
    }
  }
  return out;
}

/**
 * Every SUB/NAME file at a destination (two levels; sidecars, hidden and partial files left
 * out), sorted. A read-only probe.
 * @example for (const f of await offsiteFiles("ssh://hcoopbackup@rsync.net/hcoop", { ssh })) console.log(f.path, f.bytes);
 */
export async function offsiteFiles(dest: string, opts: OffsiteOptions = {}): Promise<OffsiteFileEntry[]> {
  const ctx = opts.ctx ?? useContext();
  const d = parseOffsite(dest, opts);
  const out: OffsiteFileEntry[] = [];
  const keep = (path: string) => {
    const parts = path.split("/");
    return parts.length === 2 && !parts.some((p) => !p || p.startsWith(".")) && !path.endsWith(".sha256");
  };
  if (d.kind === "local") {
    if (!existsSync(d.dir)) return out;
    for (const sub of readdirSync(d.dir)) {
      if (sub.startsWith(".") || !statSync(join(d.dir, sub)).isDirectory()) continue;
      for (const n of readdirSync(join(d.dir, sub))) {
        const st = statSync(join(d.dir, sub, n));
        if (st.isFile() && keep(`${sub}/${n}`)) out.push({ path: `${sub}/${n}`, bytes: st.size });
      }
    }
  } else if (d.kind === "ssh") {
    const f = (await ssh(d.target, sh(SH_FILES, d.dir), { readOnly: true, ctx })).stdout.split("\0");
    for (let i = 0; i + 1 < f.length; i += 2) if (keep(f[i])) out.push({ path: f[i], bytes: Number(f[i + 1]) });
  } else {
    const h = client(d, opts, ctx);
    try {
      for await (const o of s3List(h, d.bucket, d.prefix, { ctx })) {
        const path = o.key.slice(d.prefix.length);
        if (keep(path)) out.push({ path, bytes: o.size });
      }
    } catch (e) {
      throw s3Error(h, `list ${d.url}`, e);
    } finally {
      h.destroy();
    }
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/**
 * A small file DEST/SUB/NAME as text (a manifest), or undefined when it is not there. A read-only probe.
 * @example const m = await offsiteReadFile("s3://offsite/hcoop", "2026.11.24/2026.11.24-manifest.json", { s3 });
 */
export async function offsiteReadFile(dest: string, path: string, opts: OffsiteOptions = {}): Promise<string | undefined> {
  const ctx = opts.ctx ?? useContext();
  const d = parseOffsite(dest, opts);
  subName(path);
  if (d.kind === "local") return existsSync(join(d.dir, path)) ? readFileSync(join(d.dir, path), "utf8") : undefined;
  if (d.kind === "ssh") {
    const r = await ssh(d.target, sh(`if [ -f "$1" ]; then cat -- "$1"; else exit 3; fi`, `${d.dir}/${path}`), { readOnly: true, okCodes: [0, 3], ctx });
    return r.code === 3 ? undefined : r.stdout;
  }
  const h = client(d, opts, ctx);
  try {
    return await getText(h, d.bucket, `${d.prefix}${path}`);
  } finally {
    h.destroy();
  }
}

/**
 * Streams DEST/SUB/NAME into the local file `into` (created 0600), hashing it on the way;
 * returns its sha256 and bytes for the caller to check (lib/mirror.ts's mirrorGet compares
 * them with a manifest and keeps the file only when they match). A read-only probe of the remote.
 * @example const got = await offsiteGetFile("s3://offsite/hcoop", "2026.11.24/x.dump.gz.age", tmp, { s3 });
 */
export async function offsiteGetFile(dest: string, path: string, into: string, opts: OffsiteOptions = {}): Promise<{ sha256: string; bytes: number }> {
  const ctx = opts.ctx ?? useContext();
  const d = parseOffsite(dest, opts);
  subName(path);
  const url = d.kind === "s3" ? `${d.url}${path}` : `${d.url}/${path}`;
  const hash = createHash("sha256");
  let bytes = 0;
  const fd = openSync(into, "w", 0o600);
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      try {
        hash.update(chunk);
        bytes += chunk.length;
        for (let off = 0; off < chunk.length; ) off += writeSync(fd, chunk, off);
        cb();
      } catch (e) {
        cb(e as Error);
      }
    },
  });
  try {
    if (d.kind === "local") {
      if (!existsSync(join(d.dir, path))) throw new UsageError(`${url} does not exist`);
      await pipeline(createReadStream(join(d.dir, path), { highWaterMark: 1 << 20 }), sink);
    } else if (d.kind === "ssh") {
      await ssh(d.target, ["cat", "--", `${d.dir}/${path}`], { stdout: sink, readOnly: true, ctx });
    } else {
      const h = client(d, opts, ctx);
      try {
        const out = await sdkCall(h, `get ${url}`, (c, m) => c.send(new m.GetObjectCommand({ Bucket: d.bucket, Key: `${d.prefix}${path}` }), { abortSignal: ctx.signal as never }));
        await pipeline(out.Body as AsyncIterable<Buffer>, sink);
      } finally {
        h.destroy();
      }
    }
  } catch (e) {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    throw failure(`fetch of ${url}`, e, "check the destination and run again");
  } finally {
    closeSync(fd);
  }
  return { sha256: hash.digest("hex"), bytes };
}

/** Options for {@link offsiteRemoveDirs}. */
export interface RemoveDirsOptions extends OffsiteOptions {
  /** The file that marks a folder complete (the one written last: its manifest). It is removed first, alone, so a removal cut short leaves a folder that reads as incomplete. */
  marker?: (sub: string) => string;
}

/**
 * Removes whole folders DEST/SUB (retention of folders of files). On S3 every object under
 * SUB/ goes, the files before their sidecars. `marker` names the file that marks a folder
 * complete (the one written last, e.g. its manifest): it goes first, alone, so that a removal cut
 * short leaves a folder that reads as incomplete. In dry-run it only says what it would remove.
 * @example await offsiteRemoveDirs("s3://offsite/hcoop", ["2026.10.04", "2026.10.05"], { s3 });
 */
export async function offsiteRemoveDirs(dest: string, subs: readonly string[], opts: RemoveDirsOptions = {}): Promise<void> {
  const ctx = opts.ctx ?? useContext();
  const d = parseOffsite(dest, opts);
  subs.forEach((s) => subName(`${s}/x`));
  const marker = (s: string) => (opts.marker ? subName(`${s}/${opts.marker(s)}`)[1] : "");
  if (!subs.length) return;
  if (ctx.dryRun) {
    ctx.log.command(`remove ${subs.length} folder(s) from ${d.url}: ${subs.join(", ")}`, "dry-run");
    return;
  }
  try {
    if (d.kind === "local") {
      for (const s of subs) {
        if (marker(s)) rmSync(join(d.dir, s, marker(s)), { force: true });
        rmSync(join(d.dir, s), { recursive: true, force: true });
      }
    } else if (d.kind === "ssh") {
      await ssh(d.target, sh(`set -e; cd -- "$1"; shift; while [ $# -gt 1 ]; do [ -z "$2" ] || rm -f -- "$1/$2"; rm -rf -- "$1"; shift 2; done`, d.dir, ...subs.flatMap((s) => [s, marker(s)])), { ctx });
    } else {
      const h = client(d, opts, ctx);
      try {
        for (const s of subs) {
          const keys: string[] = [];
          for await (const o of s3List(h, d.bucket, `${d.prefix}${s}/`, { ctx })) keys.push(o.key);
          keys.sort((a, b) => Number(a.endsWith(".sha256")) - Number(b.endsWith(".sha256")));
          const first = marker(s) ? `${d.prefix}${s}/${marker(s)}` : "";
          if (keys.includes(first)) {
            // alone and before the rest: a removal cut short leaves a folder without its marker
            await sdkCall(h, `delete ${d.url}${s}/${marker(s)}`, (c, m) => c.send(new m.DeleteObjectCommand({ Bucket: d.bucket, Key: first })));
            keys.splice(keys.indexOf(first), 1);
          }
          for (let i = 0; i < keys.length; i += 1000) {
            const out = await sdkCall(h, `delete in ${d.url}${s}/`, (c, m) => c.send(new m.DeleteObjectsCommand({ Bucket: d.bucket, Delete: { Objects: keys.slice(i, i + 1000).map((Key) => ({ Key })), Quiet: true } })));
            if (out.Errors?.length) throw new LifeboatError(`delete in ${d.url}${s}/: ${out.Errors.map((x) => `${x.Key}: ${x.Code}`).slice(0, 5).join("; ")}`);
          }
        }
      } finally {
        h.destroy();
      }
    }
  } catch (e) {
    throw failure(`off-site remove in ${d.url}`, e, "some folders may be left in part; run it again");
  }
}

/**
 * Bytes available at a destination (df on the ssh host, statfs locally); undefined for S3,
 * where no free space is reported (a quota shows only as a refused upload). A read-only probe.
 * @example const free = await offsiteFree("ssh://hcoopbackup@rsync.net/hcoop", { ssh });
 */
export async function offsiteFree(dest: string, opts: OffsiteOptions = {}): Promise<number | undefined> {
  const ctx = opts.ctx ?? useContext();
  const d = parseOffsite(dest, opts);
  if (d.kind === "s3") return undefined;
  if (d.kind === "ssh") return Number((await ssh(d.target, sh(SH_FREE, d.dir), { readOnly: true, ctx })).stdout.trim());
  let p = d.dir;
  while (!existsSync(p) && p !== "/") p = dirname(p);
  const s = statfsSync(p);
  return Number(s.bavail) * Number(s.bsize);
}
