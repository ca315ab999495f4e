// Mirrors: folders of immutable files (a day of dumps with its manifest) kept at an off-site
// destination, file by file, each checked there against the sha256 recorded when it was written.
//
//   s3://BUCKET/PREFIX           SUB/NAME objects on an S3 gateway (offsite.s3.* settings)
//   ssh://USER@HOST:PORT/DIR     DIR/SUB/NAME on an ssh host (HCoop's rsync.net)
//   /mnt/offsite/hcoop           a local path (an NFS or object-store mount)
//
// A thin layer over lib/offsite.ts, whose destinations, transports and checks it uses (one
// off-site code path): offsitePutFile writes each file under no final name until its bytes are
// checked there (ssh: sha256 of the flushed file on the remote; S3: the ETag of the bytes sent;
// local: read back), then NAME.sha256 beside it. What this file adds is the folder: files go in
// the order given (the manifest last, so a folder without it is incomplete), a file already there
// with the same sha256 is skipped, a copy that would not fit is refused BEFORE the first byte is
// sent (ssh and local report free space; S3 does not), and a fetch is kept only when its sha256
// and size match what the caller recorded.
import { join } from "node:path";
import { LifeboatError, UsageError, VerifyError } from "./errors.ts";
import { useContext } from "./context.ts";
import { captureToFile } from "./files.ts";
import { formatBytes } from "./log.ts";
import { offsiteFiles, offsiteFileSums, offsiteFree, offsiteGetFile, offsitePutFile, offsiteReadFile, offsiteRemoveDirs, parseOffsite, type OffsiteOptions, type RemoveDirsOptions } from "./offsite.ts";

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

function checkSub(sub: string): string {
  if (!sub || sub === "." || sub === ".." || sub.includes("/") || sub.includes("\0") || sub.startsWith("-") || sub.startsWith(".")) throw new UsageError(`${JSON.stringify(sub)} is not a folder name`);
  return sub;
}

function folderUrl(to: string, sub: string, opts: OffsiteOptions): string {
  const d = parseOffsite(to, opts);
  return d.kind === "s3" ? `${d.url}${sub}` : `${d.url}/${sub}`;
}

/**
 * Bytes available at a destination (df on the ssh host, statfs locally; undefined on S3). A read-only probe.
 * @example const free = await mirrorFree("ssh://hcoopbackup@rsync.net/hcoop", { ssh });
 */
export function mirrorFree(to: string, opts: OffsiteOptions = {}): Promise<number | undefined> {
  return offsiteFree(to, opts);
}

/**
 * Copies files of localDir to DEST/SUB in the order given (put the manifest last), each
 * verified there before it takes its name; files already there with the same sha256 are
 * skipped. Refuses, before sending anything, when the destination reports less free space than
 * the bytes to send (+10 %). In dry-run it prints each copy.
 * @example await mirrorPut("/vicepa/hcoop-backups/2026.11.24", "s3://offsite/hcoop", "2026.11.24", files, { s3 });
 */
export async function mirrorPut(localDir: string, to: string, sub: string, files: readonly MirrorFile[], opts: OffsiteOptions = {}): Promise<MirrorPutResult> {
  const ctx = opts.ctx ?? useContext();
  checkSub(sub);
  const url = folderUrl(to, sub, opts);
  const res: MirrorPutResult = { url, sent: [], skipped: [], bytes: 0 };
  const have = await offsiteFileSums(to, sub, files.map((f) => f.name), opts);
  const todo = files.filter((f) => {
    const h = have.get(f.name);
    if (h && h.bytes === f.bytes && h.sha256 === f.sha256) {
      res.skipped.push(f.name);
      return false;
    }
    return true;
  });
  const need = todo.reduce((a, f) => a + f.bytes, 0);
  const free = await offsiteFree(to, opts);
  if (todo.length && free !== undefined && free < need * 1.1) {
    throw new LifeboatError(`not enough space at ${url}: ${formatBytes(free)} free, this copy needs about ${formatBytes(need * 1.1)}; nothing was sent`, {
      hint: "free space there (retention), or raise the quota", exitCode: 1,
    });
  }
  for (const f of todo) {
    const r = await offsitePutFile(join(localDir, f.name), to, `${sub}/${f.name}`, f, opts);
    if (ctx.dryRun) continue;
    res.sent.push(f.name);
    res.bytes += f.bytes;
    ctx.log.info(`copied and verified: ${r.url} (${formatBytes(f.bytes)}, ${r.method})`);
  }
  return res;
}

/**
 * The folders at a destination and their files (sidecars and partials left out), sorted.
 * A read-only probe.
 * @example const days = await mirrorList("s3://offsite/hcoop", { s3 }); days.get("2026.11.24")
 */
export async function mirrorList(to: string, opts: OffsiteOptions = {}): Promise<Map<string, { name: string; bytes: number }[]>> {
  const out = new Map<string, { name: string; bytes: number }[]>();
  for (const f of await offsiteFiles(to, opts)) {
    const [sub, name] = f.path.split("/");
    if (!out.has(sub)) out.set(sub, []);
    out.get(sub)!.push({ name, bytes: f.bytes });
  }
  return out;
}

/**
 * A small file of a mirrored folder as text (a manifest), or undefined when it is not there.
 * A read-only probe.
 * @example const m = JSON.parse(await mirrorRead(to, "2026.11.24", "2026.11.24-manifest.json") ?? "null");
 */
export function mirrorRead(to: string, sub: string, name: string, opts: OffsiteOptions = {}): Promise<string | undefined> {
  return offsiteReadFile(to, `${checkSub(sub)}/${name}`, opts);
}

/**
 * Fetches DEST/SUB/NAME to localPath, checking its bytes against the sha256 given (from the
 * folder's manifest): the file takes its name only when they match (VerifyError, exit 3,
 * otherwise; nothing is kept). Runs in dry-run too when a restore needs the bytes to verify.
 * @example await mirrorGet(to, "2026.11.24", "2026.11.24-user.alice.dump.gz.age", "/vicepa/hcoop-backups/2026.11.24/…", { sha256 });
 */
export async function mirrorGet(to: string, sub: string, name: string, localPath: string, want: { sha256: string; bytes?: number }, opts: OffsiteOptions = {}): Promise<{ path: string; bytes: number }> {
  const ctx = opts.ctx ?? useContext();
  const url = `${folderUrl(to, checkSub(sub), opts)}/${name}`;
  let bytes = 0;
  await captureToFile(localPath, async (tmp) => {
    const got = await offsiteGetFile(to, `${sub}/${name}`, tmp, opts);
    bytes = got.bytes;
    if (got.sha256 !== want.sha256 || (want.bytes !== undefined && got.bytes !== want.bytes)) {
      throw new VerifyError(`${url}: fetched ${got.bytes} bytes with sha256 ${got.sha256.slice(0, 16)}…, the manifest says ${want.bytes ?? "?"} bytes and ${want.sha256.slice(0, 16)}…; the remote copy is damaged`, [`${name}: sha256 mismatch`], "use another copy; nothing was kept");
    }
  }, { label: `fetch of ${url}` });
  ctx.log.info(`fetched and verified: ${url} (${formatBytes(bytes)})`);
  return { path: localPath, bytes };
}

/** Options for {@link mirrorRemove}: `marker`, the file that marks a folder complete (its manifest), is removed first, alone. */
export type MirrorRemoveOptions = RemoveDirsOptions;

/**
 * Removes whole folders at a destination (retention), each folder's marker first. In dry-run it prints what it would remove.
 * @example await mirrorRemove(to, ["2026.10.04", "2026.10.05"], { s3, marker: (day) => `${day}-manifest.json` });
 */
export function mirrorRemove(to: string, subs: readonly string[], opts: MirrorRemoveOptions = {}): Promise<void> {
  subs.forEach(checkSub);
  return offsiteRemoveDirs(to, subs, opts);
}
