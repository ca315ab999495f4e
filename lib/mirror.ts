// Mirrors: folders of immutable files (a day of HCoop dumps) kept at an off-site destination,
// file by file, each checked there against the sha256 recorded when it was written.
//
//   ssh://USER@HOST:PORT/DIR     HCoop's rsync.net: DIR/SUB/NAME on an ssh host
//   /mnt/offsite/hcoop           a local path (an NFS or object-store mount)
//   s3://…                       not yet for mirrors (lib/offsite.ts copies single archives there)
//
// Destinations are parsed, and reached, as lib/offsite.ts does (parseOffsite, its ssh and key
// options), but a mirror copies any file name, not only NAME.tar.gz archives: a copy of
// DIR/SUB/NAME is written as .partial-NAME.PID, hashed on the way in (on the remote host), and
// renamed into place only when its sha256 and size match; then NAME.sha256 (sha256sum format)
// is written beside it, and a later copy of the same bytes is skipped. A free-space check
// refuses a copy that would not fit BEFORE the first byte is sent (HCoop's target filled up).
import { createHash } from "node:crypto";
import { copyFileSync, createReadStream, createWriteStream, existsSync, readdirSync, readFileSync, rmSync, statfsSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import process from "node:process";
import { LifeboatError, UsageError, VerifyError } from "./errors.ts";
import { useContext, type Context } from "./context.ts";
import { captureToFile } from "./files.ts";
import { formatBytes } from "./log.ts";
import { parseOffsite, type OffsiteDest, type OffsiteOptions } from "./offsite.ts";
import { fileSha256 } from "./sealed.ts";
import { ssh } from "./ssh.ts";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";

/** One file of a mirrored folder, as recorded when it was written. */
export interface MirrorFile {
  name: string;
  sha256: string;
  bytes: number;
}

/** What {@link mirrorPut} did. */
export interface MirrorPutResult {
  /** Where the folder is: DEST/SUB. */
  url: string;
  sent: string[];
  /** Already there with the same sha256: not sent again. */
  skipped: string[];
  bytes: number;
}

const HASH = `h() { if command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 -r; else sha256sum; fi; }`;
/** $1 dir, $2 partial, $3 name: receive stdin as the partial (hashed as written), print sha256 and size. */
const SH_PUT = `${HASH}; set -e; umask 077; mkdir -p -- "$1"; cd -- "$1"
for f in ".partial-$3".*; do if [ -e "$f" ]; then rm -f -- "$f"; fi; done
exec 3>&1
rc=$( { { tee -- "$2"; echo "$?" >&4; } | h >&3; } 4>&1 )
if [ "$rc" != 0 ]; then echo "writing $1/$2 failed (tee exit $rc)" >&2; rm -f -- "$2"; exit 1; fi
stat -c %s -- "$2"`;
/** $1 dir, $2 partial, $3 name, $4 sidecar text: the partial into place, then NAME.sha256. */
const SH_FINISH = `set -e; umask 077; cd -- "$1"; mv -f -- "$2" "$3"; printf %s "$4" > ".partial-$3.sha256.$$"; mv -f -- ".partial-$3.sha256.$$" "$3.sha256"`;
/** $1 dir, then names: for each present NAME: NAME NUL size NUL sidecar NUL. */
const SH_PROBE = `cd -- "$1" 2>/dev/null || exit 0; shift; for n in "$@"; do if [ -f "$n" ]; then printf '%s\\0' "$n"; stat -c %s -- "$n" | tr -d '\\n'; printf '\\0'; cat -- "$n.sha256" 2>/dev/null || true; printf '\\0'; fi; done`;
/** $1 dir: every SUB/NAME (not sidecars, not partials): SUB/NAME NUL size NUL. */
const SH_LIST = `[ -d "$1" ] || exit 0; cd -- "$1"; find . -mindepth 2 -maxdepth 2 -type f ! -name '*.sha256' ! -name '.partial-*' -printf '%P\\0%s\\0'`;
/** $1 dir: bytes available there (df of the nearest existing folder). */
const SH_FREE = `d=$1; while [ ! -d "$d" ]; do d=$(dirname -- "$d"); done; df -P -B1 -- "$d" | awk 'NR==2 {print $4}'`;
const sh = (script: string, ...args: string[]) => ["sh", "-c", script, "sh", ...args];

function dest(to: string, opts: OffsiteOptions): Exclude<OffsiteDest, { kind: "s3" }> {
  const d = parseOffsite(to, opts);
  if (d.kind === "s3") throw new UsageError(`${to}: mirrors of day folders go to ssh:// or a local path (s3:// is not done yet)`, "use ssh://USER@HOST/DIR (rsync.net) or a mounted path");
  return d;
}

function checkSub(sub: string): string {
  if (!sub || sub === "." || sub === ".." || sub.includes("/") || sub.includes("\0") || sub.startsWith("-")) throw new UsageError(`${JSON.stringify(sub)} is not a folder name`);
  return sub;
}

const sidecar = (f: MirrorFile) => `${f.sha256}  ${f.name}\n`;

/**
 * Bytes available at a destination (df on the ssh host, statfs locally). A read-only probe.
 * @example const free = await mirrorFree("ssh://hcoopbackup@rsync.net/hcoop", { ssh });
 */
export async function mirrorFree(to: string, opts: OffsiteOptions = {}): Promise<number> {
  const ctx = opts.ctx ?? useContext();
  const d = dest(to, opts);
  if (d.kind === "ssh") return Number((await ssh(d.target, sh(SH_FREE, d.dir), { readOnly: true, ctx })).stdout.trim());
  let p = d.dir;
  while (!existsSync(p) && p !== "/") p = dirname(p);
  const s = statfsSync(p);
  return Number(s.bavail) * Number(s.bsize);
}

/**
 * Copies files of localDir to DEST/SUB in the order given (put the manifest last), each
 * verified there by its sha256 before it takes its name; files already there with the same
 * sha256 are skipped. Refuses, before sending anything, when the destination has less free
 * space than the bytes to send (+10 %). In dry-run it prints each copy.
 * @example await mirrorPut("/vicepa/hcoop-backups/2026.11.24", "ssh://hcoopbackup@usw-s001.rsync.net/hcoop", "2026.11.24", files, { ssh });
 */
export async function mirrorPut(localDir: string, to: string, sub: string, files: readonly MirrorFile[], opts: OffsiteOptions = {}): Promise<MirrorPutResult> {
  const ctx = opts.ctx ?? useContext();
  const d = dest(to, opts);
  checkSub(sub);
  const url = `${d.url}/${sub}`;
  const res: MirrorPutResult = { url, sent: [], skipped: [], bytes: 0 };
  const dir = `${d.dir}/${sub}`;
  const have = await probe(d, dir, files.map((f) => f.name), ctx);
  const todo = files.filter((f) => {
    const h = have.get(f.name);
    if (h && h.bytes === f.bytes && h.sha256 === f.sha256) {
      res.skipped.push(f.name);
      return false;
    }
    return true;
  });
  const need = todo.reduce((a, f) => a + f.bytes, 0);
  const free = await mirrorFree(to, opts);
  if (todo.length && free < need * 1.1) {
    throw new LifeboatError(`not enough space at ${url}: ${formatBytes(free)} free, this copy needs about ${formatBytes(need * 1.1)}; nothing was sent`, {
      hint: "free space there (hcoop-prune --yes applies retention by weekly chain), or raise the quota", exitCode: 1,
    });
  }
  for (const f of todo) {
    const src = join(localDir, f.name);
    if (ctx.dryRun) {
      ctx.log.command(`copy ${src} → ${url}/${f.name} (sha256 checked there before it takes its name)`, "dry-run");
      continue;
    }
    if (d.kind === "ssh") {
      const partial = `.partial-${f.name}.${process.pid}`;
      const put = await ssh(d.target, sh(SH_PUT, dir, partial, f.name), { stdin: createReadStream(src, { highWaterMark: 1 << 20 }) as never, ctx });
      const [line, size] = put.stdout.trim().split("\n");
      const got = (line ?? "").split(/\s+/)[0];
      if (got !== f.sha256 || Number(size) !== f.bytes) {
        await ssh(d.target, ["rm", "-f", "--", `${dir}/${partial}`], { ctx }).catch(() => {});
        throw new VerifyError(`${url}/${f.name}: the copy has sha256 ${got.slice(0, 16)}… and ${size} bytes, the file ${f.sha256.slice(0, 16)}… and ${f.bytes}; it was removed`, [], "check the local file (it may have changed since the backup) and the link; run again");
      }
      await ssh(d.target, sh(SH_FINISH, dir, partial, f.name, sidecar(f)), { ctx });
    } else {
      await captureToFile(join(dir, f.name), async (tmp) => {
        copyFileSync(src, tmp);
        const got = await fileSha256(tmp);
        if (got.sha256 !== f.sha256 || got.bytes !== f.bytes) throw new VerifyError(`${url}/${f.name}: the copy's sha256 ${got.sha256.slice(0, 16)}… differs from the recorded ${f.sha256.slice(0, 16)}…`, [], "check the local file and the destination's storage");
      }, { label: `copy of ${f.name} to ${url}` });
      await captureToFile(join(dir, `${f.name}.sha256`), async (tmp) => writeFileSync(tmp, sidecar(f)));
    }
    res.sent.push(f.name);
    res.bytes += f.bytes;
    ctx.log.info(`copied and verified: ${url}/${f.name} (${formatBytes(f.bytes)})`);
  }
  return res;
}

async function probe(d: Exclude<OffsiteDest, { kind: "s3" }>, dir: string, names: string[], ctx: Context): Promise<Map<string, { bytes: number; sha256: string }>> {
  const out = new Map<string, { bytes: number; sha256: string }>();
  if (d.kind === "local") {
    for (const n of names) {
      const p = join(dir, n);
      if (existsSync(p) && existsSync(`${p}.sha256`)) out.set(n, { bytes: statSync(p).size, sha256: readFileSync(`${p}.sha256`, "utf8").split(/\s+/)[0] });
    }
    return out;
  }
  const f = (await ssh(d.target, sh(SH_PROBE, dir, ...names), { readOnly: true, ctx })).stdout.split("\0");
  for (let i = 0; i + 2 < f.length; i += 3) out.set(f[i], { bytes: Number(f[i + 1]), sha256: f[i + 2].split(/\s+/)[0] });
  return out;
}

/**
 * The folders at a destination and their files (sidecars and partials left out), sorted.
 * A read-only probe.
 * @example const days = await mirrorList("ssh://hcoopbackup@rsync.net/hcoop", { ssh }); days.get("2026.11.24")
 */
export async function mirrorList(to: string, opts: OffsiteOptions = {}): Promise<Map<string, { name: string; bytes: number }[]>> {
  const ctx = opts.ctx ?? useContext();
  const d = dest(to, opts);
  const out = new Map<string, { name: string; bytes: number }[]>();
  const add = (sub: string, name: string, bytes: number) => {
    if (!out.has(sub)) out.set(sub, []);
    out.get(sub)!.push({ name, bytes });
  };
  if (d.kind === "local") {
    if (!existsSync(d.dir)) return out;
    for (const sub of readdirSync(d.dir)) {
      if (!statSync(join(d.dir, sub)).isDirectory()) continue;
      for (const n of readdirSync(join(d.dir, sub))) if (!n.endsWith(".sha256") && !n.startsWith(".partial-") && statSync(join(d.dir, sub, n)).isFile()) add(sub, n, statSync(join(d.dir, sub, n)).size);
    }
  } else {
    const f = (await ssh(d.target, sh(SH_LIST, d.dir), { readOnly: true, ctx })).stdout.split("\0");
    for (let i = 0; i + 1 < f.length; i += 2) {
      const [sub, name] = f[i].split("/");
      add(sub, name, Number(f[i + 1]));
    }
  }
  for (const v of out.values()) v.sort((a, b) => a.name.localeCompare(b.name));
  return new Map([...out.entries()].sort(([a], [b]) => a.localeCompare(b)));
}

/**
 * A small file of a mirrored folder as text (a manifest), or undefined when it is not there.
 * A read-only probe.
 * @example const m = JSON.parse(await mirrorRead(to, "2026.11.24", "2026.11.24-manifest.json") ?? "null");
 */
export async function mirrorRead(to: string, sub: string, name: string, opts: OffsiteOptions = {}): Promise<string | undefined> {
  const ctx = opts.ctx ?? useContext();
  const d = dest(to, opts);
  const p = `${d.dir}/${checkSub(sub)}/${name}`;
  if (d.kind === "local") return existsSync(p) ? readFileSync(p, "utf8") : undefined;
  const r = await ssh(d.target, sh(`if [ -f "$1" ]; then cat -- "$1"; else exit 3; fi`, p), { readOnly: true, okCodes: [0, 3], ctx });
  return r.code === 3 ? undefined : r.stdout;
}

/**
 * Fetches DEST/SUB/NAME to localPath, checking its bytes against the sha256 given (from the
 * day's manifest): the file takes its name only when they match (exit 3 otherwise). Runs in
 * dry-run too when the restore needs the bytes to verify; nothing is restored from it there.
 * @example await mirrorGet(to, "2026.11.24", "2026.11.24-user.alice.dump.gz.age", "/vicepa/hcoop-backups/2026.11.24/…", { sha256 });
 */
export async function mirrorGet(to: string, sub: string, name: string, localPath: string, want: { sha256: string; bytes?: number }, opts: OffsiteOptions = {}): Promise<{ path: string; bytes: number }> {
  const ctx = opts.ctx ?? useContext();
  const d = dest(to, opts);
  const src = `${d.dir}/${checkSub(sub)}/${name}`;
  const url = `${d.url}/${sub}/${name}`;
  let bytes = 0;
  await captureToFile(localPath, async (tmp) => {
    const hash = createHash("sha256");
    const tap = new Transform({ transform(c: Buffer, _e, cb) { hash.update(c); bytes += c.length; cb(null, c); } });
    const out = createWriteStream(tmp, { mode: 0o600 });
    if (d.kind === "local") {
      if (!existsSync(src)) throw new UsageError(`${url} does not exist`, "hcoop-list --remote shows what is there");
      await pipeline(createReadStream(src), tap, out);
    } else {
      const piping = pipeline(tap, out);
      await ssh(d.target, ["cat", "--", src], { stdout: tap, readOnly: true, ctx });
      await piping;
    }
    const got = hash.digest("hex");
    if (got !== want.sha256 || (want.bytes !== undefined && bytes !== want.bytes)) {
      throw new VerifyError(`${url}: fetched ${bytes} bytes with sha256 ${got.slice(0, 16)}…, the manifest says ${want.bytes ?? "?"} bytes and ${want.sha256.slice(0, 16)}…; the remote copy is damaged`, [], "use another copy; nothing was kept");
    }
  }, { label: `fetch of ${url}` });
  ctx.log.info(`fetched and verified: ${url} (${formatBytes(bytes)})`);
  return { path: localPath, bytes };
}

/**
 * Removes whole folders at a destination (retention). In dry-run it prints what it would remove.
 * @example await mirrorRemove(to, ["2026.10.04", "2026.10.05"], { ssh });
 */
export async function mirrorRemove(to: string, subs: readonly string[], opts: OffsiteOptions = {}): Promise<void> {
  const ctx = opts.ctx ?? useContext();
  const d = dest(to, opts);
  if (!subs.length) return;
  subs.forEach(checkSub);
  if (d.kind === "local") {
    for (const s of subs) {
      if (ctx.dryRun) ctx.log.command(`rm -rf -- ${join(d.dir, s)}`, "dry-run");
      else rmSync(join(d.dir, s), { recursive: true, force: true });
    }
    return;
  }
  await ssh(d.target, sh(`set -e; cd -- "$1"; shift; for s in "$@"; do rm -rf -- "$s"; done`, d.dir, ...subs), { ctx });
}
