// Archives: a directory packed into NAME.tar.gz or NAME.tar.zst (optionally age-encrypted) with
// a manifest.json inside that lists every entry with its size, mode and sha256.
//
// Pack has two ways, which write the same archives and the same manifest records:
// - GNU tar piped into pigz or zstd, which writes the file (the usual way: unencrypted, with a
//   compressor program installed). No archive byte passes through this process: it hashes each
//   file's content in a read of its own just ahead of tar (from the page cache), and the
//   compressed file as it grows, then checks that nothing in the tree changed meanwhile (ctime,
//   mtime, size, mode, owner), because its manifest describes the walk and tar read the files.
// - node-tar in this process, each file read once and hashed on the way (the entry's content,
//   not its header or padding), then handed to the compressor — in-process parallel gzip when
//   pigz is missing (lib/compress.ts), or pigz/zstd as a child — and through age when encrypted.
// The manifest is the last entry. The archive is written to a hidden `.partial-…` file and
// renamed into place only when complete, so a killed run never leaves a complete-looking archive.
//
// Verify reads the whole archive once, checks every entry against the manifest and checks every
// path for safety; `quick` checks only the sidecars and that the key opens it. Unpack does the
// full check in the same pass as it extracts: it writes into a hidden staging folder inside the
// target and moves the entries into place only when every check passed, so a damaged, truncated,
// wrongly keyed or hostile archive leaves nothing that looks restored. The compression is told
// by the magic bytes (inside the age layer for an encrypted archive).
//
// Names are POSIX names: `Z:`, `a:b` and `c:\x` are ordinary relative names on Linux, so
// pack keeps them as they are (node-tar's preservePaths: the paths come from our own walk)
// and unpack hands them to node-tar as `./Z:` so its Windows-style root stripping leaves
// them alone, while `/…` and `..` are still refused. Symlinks are created last, after
// every file is written (as GNU tar's delayed links), exactly as recorded: node-tar would
// rewrite absolute targets, and nothing may be written through a link anyway.
//
// node-tar and age-encryption are loaded at first use, so a process that never packs pays nothing.
// Every stage stops when the context's signal aborts (SIGINT/SIGTERM) and throws its reason.
import { createHash, randomBytes } from "node:crypto";
import {
  chmodSync,
  closeSync,
  createReadStream,
  createWriteStream,
  existsSync,
  fstatSync,
  lchownSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  readSync,
  renameSync,
  rmdirSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { basename, dirname, isAbsolute, join, relative, resolve, win32 } from "node:path";
import { hostname } from "node:os";
import { Readable, Transform, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { constants as zc, gunzipSync } from "node:zlib";
import process from "node:process";
import type { Header, ReadEntry, WriteEntry } from "tar";
import type { Stats } from "node:fs";
import { LifeboatError, RefusedError, VerifyError } from "./errors.ts";
import { compressionOf, compressorCommand, startCompressor, startDecompressor, TAR_SUFFIX, type Compression } from "./compress.ts";
import { flushBehind, isStalePartial, partialFile, partialPath, type PartialFile } from "./files.ts";
import { throwIfAborted, useContext, type Context } from "./context.ts";
import { pidAlive } from "./lock.ts";
import { exec, ExecError, shellQuote, which } from "./exec.ts";
import { formatBytes, type Progress } from "./log.ts";
import { settledWithin } from "./retry.ts";
import { HASH_OFF_THREAD, hashFileOffThread } from "./checksum.ts";
import { expandHome, type SettingSpecs, type SettingValues } from "./settings.ts";

export type { Compression } from "./compress.ts";

/** The manifest's file name inside every lifeboat archive. */
export const MANIFEST_NAME = "manifest.json";
/** Format tag written into every manifest. */
export const MANIFEST_FORMAT = "lifeboat-archive/1";

/** One entry of the archive, as the manifest records it. */
export interface ManifestEntry {
  /** Relative path, "/"-separated, no trailing slash. */
  path: string;
  type: "file" | "dir" | "symlink" | "hardlink";
  /** Bytes of content (0 for dirs and links). */
  size: number;
  /** Permission bits, e.g. 0o640. */
  mode: number;
  uid: number;
  gid: number;
  /** Modification time, ISO 8601. */
  mtime: string;
  /** sha256 of the content (files only). */
  sha256?: string;
  /** Link target (symlinks and hardlinks). */
  target?: string;
}

/**
 * What manifest.json holds. `M` is the recipe's own record (`meta`): a recipe declares it
 * once and passes it to both sides, `backupArchive<M>` and `verifyArchive<M>`, so tsc
 * checks that the restore reads what the backup wrote.
 */
export interface Manifest<M = Record<string, unknown>> {
  format: typeof MANIFEST_FORMAT;
  /** Recipe or task that made the archive. */
  recipe: string;
  host: string;
  startedAt: string;
  finishedAt: string;
  /** Versions of the tools involved (lifeboat, node, zlib, tar, and whatever the recipe adds). */
  tools: Record<string, string>;
  /** Whatever the recipe adds: endpoints, object counts, dump sizes … */
  meta: M;
  totals: { files: number; dirs: number; symlinks: number; hardlinks: number; bytes: number };
  entries: ManifestEntry[];
}

/** age encryption settings: a passphrase or recipients (age1…) for packing; a passphrase or identities for reading. */
export interface AgeOptions {
  /** Passphrase (scrypt). Take it from a file, env or a command: never argv alone. */
  passphrase?: string;
  /** age recipients (age1…) to encrypt for. */
  recipients?: string[];
  /** age identities (AGE-SECRET-KEY-1…) to decrypt with; see {@link readAgeIdentities}. */
  identities?: string[];
}

/**
 * The age settings every recipe and archive task reads, as one table: in a site file they
 * are one `age:` block (`passphrase`, `recipients`, `identity-file`); on the command line
 * `--age.passphrase-file F`, `--age.recipients age1…`, `--age.identity-file F`.
 * A backup encrypts with the passphrase or for the recipients; a restore or verify opens
 * with the passphrase or the identity file. Turn the values into AgeOptions with {@link ageOptions}.
 */
export const AGE_SETTINGS = {
  "age.passphrase": { describe: "age passphrase: encrypts a new archive, opens an encrypted one", secret: true },
  "age.recipients": { type: "list", describe: "age recipients (age1…) to encrypt a new archive for" },
  "age.identity-file": { describe: "age identity file (AGE-SECRET-KEY-…) that opens an archive encrypted for recipients" },
} as const satisfies SettingSpecs;

/**
 * AgeOptions from the {@link AGE_SETTINGS} values (reads the identity file when one is set).
 * @example const age = ageOptions(ctx.settings); await verifyArchive(path, { decrypt: age });
 */
export function ageOptions(s: Partial<SettingValues<typeof AGE_SETTINGS>>): AgeOptions {
  const identity = s["age.identity-file"];
  return {
    passphrase: s["age.passphrase"] || undefined,
    recipients: s["age.recipients"]?.length ? [...s["age.recipients"]] : undefined,
    identities: identity ? readAgeIdentities(expandHome(identity)) : undefined,
  };
}

/**
 * The compression settings a backup recipe reads: `archive.compression` (gzip|zstd) and
 * `archive.level`. Turn them into packArchive/backupArchive options with {@link compressionOptions}.
 */
export const COMPRESSION_SETTINGS = {
  "archive.compression": { choices: ["gzip", "zstd"], default: "gzip", describe: "how new archives are compressed: gzip (NAME.tar.gz, pigz when installed) or zstd (NAME.tar.zst)" },
  "archive.level": { type: "number", describe: "compression level (gzip 1-9, default 6; zstd 1-19, default 3)" },
} as const satisfies SettingSpecs;

/**
 * {@link COMPRESSION_SETTINGS} for a system's settings table, read only by its backup recipe(s)
 * (a restore finds the compression in the archive's first bytes).
 * @example export const settings = { ...AGE_SETTINGS, ...compressionSettings(["deis-backup"] as const) };
 */
export function compressionSettings<R extends readonly string[]>(backup: R) {
  return {
    "archive.compression": { ...COMPRESSION_SETTINGS["archive.compression"], usedBy: backup },
    "archive.level": { ...COMPRESSION_SETTINGS["archive.level"], usedBy: backup },
  } as const;
}

/**
 * Pack options from the {@link COMPRESSION_SETTINGS} values.
 * @example await backupArchive(stage, { folder, name: "deis-backup", ...compressionOptions(ctx.settings) });
 */
export function compressionOptions(s: Partial<SettingValues<typeof COMPRESSION_SETTINGS>>): { compression: Compression; level?: number } {
  return { compression: s["archive.compression"] === "zstd" ? "zstd" : "gzip", level: s["archive.level"] || undefined };
}

/** The file name of an archive: NAME.tar.gz or NAME.tar.zst, with .age when encrypted. */
export function archiveName(name: string, compression: Compression = "gzip", encrypted = false): string {
  return `${name}${TAR_SUFFIX[compression]}${encrypted ? ".age" : ""}`;
}

/** Options for {@link packArchive}. */
export interface PackOptions<M = Record<string, unknown>> {
  /** Recorded as manifest.recipe (default: the context's name). */
  recipe?: string;
  /** Recipe-specific facts recorded in the manifest. */
  meta?: M;
  /** Extra tool versions for the manifest. */
  tools?: Record<string, string>;
  /** When the backup started (default: now). */
  startedAt?: Date;
  /** Encrypt with age (passphrase or recipients). */
  encrypt?: AgeOptions;
  /** gzip (default; pigz when installed) or zstd (the zstd program). Name the file .tar.gz or .tar.zst to match. */
  compression?: Compression;
  /** Compression level: gzip 1–9 (default 6), zstd 1–19 (default 3). */
  level?: number;
  /** Compression threads (default: CPU count, max 4). */
  workers?: number;
  /** Show byte progress (default true). */
  progress?: boolean;
  ctx?: Context;
}

/** Options for {@link verifyArchive}. */
export interface VerifyOptions {
  /** Key material for an encrypted archive. */
  decrypt?: AgeOptions;
  /** Refuse archives without a manifest (default true). With false, plain tarballs from other tools pass the path checks only. */
  requireManifest?: boolean;
  /** Show byte progress (default true). */
  progress?: boolean;
  /**
   * Record the result beside the archive (NAME.verified: when, and whether it passed), so
   * list and prune know which backups are good. In dry-run nothing is recorded, and an
   * archive that does not exist (a dry run packs nothing) is reported instead of failing.
   */
  record?: boolean;
  /**
   * Check without reading the whole archive: the sidecars agree (NAME.sha256, NAME.info.json),
   * the key opens it and its first bytes are the compression and tar header they say; the
   * report's `info` (recipe, meta) comes from NAME.info.json. For a restore, whose
   * unpackArchive does the full check as it unpacks (and checks the manifest says what
   * info.json said). Without NAME.info.json it reads the whole archive. Never recorded.
   */
  quick?: boolean;
  ctx?: Context;
}

/** Options for {@link unpackArchive}. */
export interface UnpackOptions extends VerifyOptions {
  /** Extract into a target that is not empty (existing files are replaced). */
  force?: boolean;
  /** Restore owners (uid/gid) from the archive; only effective as root. */
  sameOwner?: boolean;
}

/** What verifyArchive found. */
export interface VerifyReport<M = Record<string, unknown>> {
  /** The manifest, when the archive has one (null after a quick verify: see info). */
  manifest: Manifest<M> | null;
  /** recipe, meta, totals, sha256: from NAME.info.json (checked against the manifest by a full read), else from the manifest. */
  info: ArchiveInfo<M> | null;
  /** True when only the quick checks ran (see {@link VerifyOptions.quick}). */
  quick: boolean;
  /** Entries seen (manifest excluded). */
  entries: number;
  /** Content bytes seen. */
  bytes: number;
  /** sha256 of the archive file itself. */
  sha256: string;
  encrypted: boolean;
}

const AGE_MAGIC = "age-encryption.org/v1\n";

/** Reads age identities (AGE-SECRET-KEY-…) from an identity file, as `age -i` does. */
export function readAgeIdentities(path: string): string[] {
  const keys = readFileSync(path, "utf8")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.startsWith("AGE-SECRET-KEY-"));
  if (keys.length === 0) throw new LifeboatError(`identity file ${path} holds no AGE-SECRET-KEY line`);
  const ctx = useContext();
  for (const k of keys) ctx.secrets.add(k);
  return keys;
}

// ---------------------------------------------------------------------------------
// pack

interface WalkEntry {
  rel: string;
  type: ManifestEntry["type"];
  size: number;
  /** What lstat said when walked: the manifest's record on the GNU tar path, and the "changed while packed" check (numbers only: a tree may hold millions). */
  st: WalkStat;
  /** A hardlink's first path (the entry that carries the content). */
  target?: string;
}

type WalkStat = Pick<Stats, "mode" | "uid" | "gid" | "size" | "mtimeMs" | "ctimeMs">;
const walkStat = (st: Stats): WalkStat => ({ mode: st.mode, uid: st.uid, gid: st.gid, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs });

/** Lists a tree in sorted order; sockets, fifos and devices are skipped with a warning. */
function walk(root: string, ctx: Context): { entries: WalkEntry[]; bytes: number; skipped: string[] } {
  const entries: WalkEntry[] = [];
  const skipped: string[] = [];
  let bytes = 0;
  const inodes = new Map<string, string>();
  const visit = (dir: string, prefix: string) => {
    const names = readdirSync(dir).sort();
    for (const name of names) {
      const rel = prefix ? `${prefix}/${name}` : name;
      const lst = lstatSync(join(dir, name));
      const st = walkStat(lst);
      if (lst.isDirectory()) {
        entries.push({ rel, type: "dir", size: 0, st });
        visit(join(dir, name), rel);
      } else if (lst.isFile()) {
        const ino = `${lst.dev}:${lst.ino}`;
        const first = lst.nlink > 1 ? inodes.get(ino) : undefined;
        if (lst.nlink > 1 && !first) inodes.set(ino, rel);
        entries.push(first ? { rel, type: "hardlink", size: 0, st, target: first } : { rel, type: "file", size: st.size, st });
        if (!first) bytes += st.size;
      } else if (lst.isSymbolicLink()) {
        entries.push({ rel, type: "symlink", size: 0, st, target: readlinkSync(join(dir, name)) });
      } else {
        skipped.push(rel);
        ctx.log.warn(`not archived (socket, fifo or device): ${rel}`);
      }
    }
  };
  visit(root, "");
  return { entries, bytes, skipped };
}

/**
 * Makes sure a folder for archives exists: a missing one (and any missing parent) is
 * created 0700, whatever the umask. An existing folder is never changed; when others
 * than its owner may read or enter it, a warning names it and its mode.
 * @example ensureBackupFolder("/var/backups/lifeboat");
 */
export function ensureBackupFolder(dir: string, ctx: Context = useContext()): void {
  let st;
  try {
    st = statSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  if (st) {
    if (!st.isDirectory()) throw new LifeboatError(`backups folder ${dir} is not a directory`, { hint: "point the backups folder elsewhere" });
    const mode = st.mode & 0o7777;
    if (mode & 0o077) {
      ctx.log.warn(`backups folder ${dir} is ${mode.toString(8).padStart(4, "0")}: others than its owner can reach it (lifeboat creates 0700 and leaves an existing folder as it is; chmod 700 it)`);
    }
    return;
  }
  if (ctx.dryRun) return void ctx.log.command(`mkdir -p -m 700 -- ${shellQuote(dir)}`, "dry-run");
  const first = mkdirSync(dir, { recursive: true, mode: 0o700 });
  // mkdir's mode is narrowed by the umask: set exactly 0700 on every folder made here.
  if (first) for (let d = resolve(dir); d.length >= resolve(first).length; d = dirname(d)) chmodSync(d, 0o700);
}

/** Removes what killed runs left in a backups folder: `.partial-*` files of dead processes and sidecars without an archive. */
export function cleanLeftovers(dir: string, ctx: Context = useContext()): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return removed;
  }
  for (const name of names) {
    const side = /^(.*)\.(sha256|info\.json|verified)$/.exec(name);
    if (isStalePartial(name) || (side && !names.includes(side[1]))) removed.push(name);
  }
  if (ctx.dryRun) {
    for (const name of removed) ctx.log.command(`rm -rf -- ${shellQuote(join(dir, name))}`, "dry-run");
    return removed;
  }
  for (const name of removed) rmSync(join(dir, name), { force: true, recursive: true });
  if (removed.length) ctx.log.warn(`removed leftovers of an interrupted run in ${dir}: ${removed.join(", ")}`);
  return removed;
}

function toolVersions(extra: Record<string, string> = {}): Record<string, string> {
  let lifeboat = "unknown";
  try {
    lifeboat = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).version;
  } catch { /* not in a checkout */ }
  return { lifeboat, node: process.version, zlib: process.versions.zlib ?? "", tar: "node-tar 7", ...extra };
}

/** Hashes a stream of bytes on the way through. */
function hashing(hash: ReturnType<typeof createHash>): Transform {
  return new Transform({
    transform(chunk: Buffer, _e, cb) {
      hash.update(chunk);
      cb(null, chunk);
    },
  });
}

function entryType(t: string | undefined): ManifestEntry["type"] | null {
  switch (t) {
    case "File":
    case "OldFile":
    case "ContiguousFile":
      return "file";
    case "Directory":
      return "dir";
    case "SymbolicLink":
      return "symlink";
    case "Link":
      return "hardlink";
    default:
      return null;
  }
}

/** What a tar header records of an entry, as the manifest keeps it (mtime in whole seconds, as ustar stores it). */
function recordOf(h: Header | ReadEntry, path: string): ManifestEntry {
  const type = entryType(h.type) ?? "file";
  const mtime = h.mtime ?? new Date(0);
  return {
    path,
    type,
    size: 0,
    mode: (h.mode ?? 0) & 0o7777,
    uid: h.uid ?? 0,
    gid: h.gid ?? 0,
    mtime: new Date(Math.floor(mtime.getTime() / 1000) * 1000).toISOString(),
    ...(type === "symlink" || type === "hardlink" ? { target: h.linkpath } : {}),
  };
}

function normPath(p: string): string {
  let s = p.replace(/\/+$/, "");
  while (s.startsWith("./")) s = s.slice(2);
  return s === "." ? "" : s;
}

/**
 * Packs a directory into a verified archive and resolves to its manifest.
 * Files are 0600 and a missing backups directory is created 0700.
 * @example
 * const manifest = await packArchive("/tmp/stage", "/backups/deis-2026-11-21T101500Z.tar.zst", { compression: "zstd", meta: { buckets: 2 } });
 */
export async function packArchive<M = Record<string, unknown>>(sourceDir: string, archivePath: string, options: PackOptions<M> = {}): Promise<Manifest<M>> {
  const ctx = options.ctx ?? useContext();
  throwIfAborted(ctx);
  const started = options.startedAt ?? new Date();
  if (ctx.dryRun && !existsSync(sourceDir)) {
    // A dry run stages nothing, so a recipe's staging dir may not exist yet: say what would be packed.
    ctx.log.command(`pack ${sourceDir} (as the steps before would fill it) into ${archivePath}`, "dry-run");
    return manifestOf(ctx, options, started, new Date(), []);
  }
  const st = statSync(sourceDir);
  if (!st.isDirectory()) throw new LifeboatError(`packArchive: ${sourceDir} is not a directory`);
  const outDir = dirname(archivePath);
  const tree = walk(sourceDir, ctx);
  if (tree.entries.some((e) => e.rel === MANIFEST_NAME)) {
    throw new LifeboatError(`packArchive: ${sourceDir} has a top-level ${MANIFEST_NAME}; lifeboat reserves that name for the archive's manifest`, {
      hint: "move it into a subdirectory of the staging dir",
    });
  }
  const encrypt = options.encrypt && (options.encrypt.passphrase || options.encrypt.recipients?.length) ? options.encrypt : undefined;
  const compression = options.compression ?? "gzip";
  if (ctx.dryRun) {
    ctx.log.command(
      `pack ${sourceDir} (${tree.entries.length} entries, ${formatBytes(tree.bytes)}) into ${archivePath} (${compression}${encrypt ? ", age-encrypted" : ""})`,
      "dry-run",
    );
    return manifestOf(ctx, options, started, new Date(), tree.entries.map((e) => ({ path: e.rel, type: e.type, size: e.size, mode: 0, uid: 0, gid: 0, mtime: "" })));
  }
  ensureBackupFolder(outDir, ctx);
  cleanLeftovers(outDir, ctx);
  const partial = partialFile(archivePath);
  // The fast path: GNU tar piped into pigz or zstd, which writes the file; this process only hashes.
  // Not for age (its stream passes through here), in-process gzip, or a folder inside the tree
  // (the partial files would change the tree while it is read).
  const child = encrypt ? null : compressorCommand({ compression, level: options.level, workers: options.workers });
  const gnu = child && !isInside(resolve(outDir), resolve(sourceDir)) ? await gnuTarVersion(ctx) : null;
  const progress = options.progress === false ? null : ctx.log.progress(`pack ${basename(archivePath)}`, { total: tree.bytes });
  if (child && gnu) {
    try {
      const tools = { compressor: child.tool, tar: gnu, ...options.tools };
      const r = await packWithGnuTar(sourceDir, tree.entries, archivePath, partial, child.argv, progress, (entries) => manifestOf(ctx, { ...options, tools }, started, new Date(), entries), ctx);
      return finishPack(archivePath, partial, r.manifest, r.sha256, r.tarBytes, false, compression, progress);
    } catch (e) {
      progress?.fail(`pack ${basename(archivePath)} failed`);
      partial.discard();
      throw packFailure(e as Error, sourceDir, archivePath, ctx);
    }
  }
  const { Header, Pack, ReadEntry } = await import("tar");

  // Each entry's record, in walk order; files are hashed as node-tar reads them (see onWriteEntry).
  const slots: ManifestEntry[] = new Array(tree.entries.length);
  const index = new Map(tree.entries.map((e, i) => [e.rel, i]));
  let pending = tree.entries.length;
  let allSeen: () => void = () => {};
  const allSeenP = new Promise<void>((r) => (allSeen = r));
  if (pending === 0) allSeen();
  const onWriteEntry = (we: WriteEntry) => {
    const rel = normPath(we.path);
    const i = index.get(rel);
    if (i === undefined) return; // the manifest, added last
    const hash = we.type === "File" ? createHash("sha256") : null;
    let size = 0;
    if (hash) {
      // The content goes through write(); the header and the last block's padding do not, and
      // node-tar may zero-fill the rest of its read buffer: hash exactly stat.size bytes.
      let left = we.stat?.size ?? 0;
      const write = we.write.bind(we) as (chunk: Buffer, ...rest: unknown[]) => boolean;
      (we as unknown as { write: typeof write }).write = (chunk: Buffer, ...rest: unknown[]) => {
        const take = Math.min(left, chunk.length);
        if (take > 0) {
          hash.update(take === chunk.length ? chunk : chunk.subarray(0, take));
          left -= take;
          size += take;
        }
        return write(chunk, ...rest);
      };
    }
    we.once("end", () => {
      slots[i] = { ...recordOf(we.header!, rel), size, ...(hash ? { sha256: hash.digest("hex") } : {}) };
      if (--pending === 0) allSeen();
    });
  };

  // Small reads and few entries in flight keep memory flat (node-tar reads 16 MiB at a time by default).
  // preservePaths: the paths are our walk's relative names, and `Z:` or `c:\x` must stay as they are.
  const pack = new Pack({ cwd: sourceDir, noDirRecurse: true, strict: true, portable: false, preservePaths: true, maxReadSize: 1 << 20, jobs: 2, onWriteEntry });
  const fileHash = createHash("sha256");
  let fed = 0;
  const counting = new Transform({
    highWaterMark: 256 << 10,
    transform(chunk: Buffer, _e, cb) {
      fed += chunk.length;
      progress?.add(chunk.length);
      cb(null, chunk);
    },
  });
  const encrypter = encrypt ? await ageEncrypter(encrypt) : null; // a bad recipient fails here, before anything starts
  // Unencrypted, the compressor writes the file itself and the file is hashed as read back
  // (fewer copies and wake-ups here); encrypted, its output passes through age and is hashed on the way.
  const comp = startCompressor({ compression, level: options.level, workers: options.workers, toFile: encrypter ? undefined : partial.tmp, ctx });
  let packError: Error | null = null;
  const fail = (e: Error) => {
    packError ??= e;
    counting.destroy(e);
    comp.input.destroy(e);
    if (encrypter) comp.output.destroy(e); // else it is unused: the compressor writes the file
  };
  (pack as unknown as Readable).on("error", fail);
  counting.on("error", fail);
  comp.input.on("error", fail);
  (pack as unknown as Readable).pipe(counting).pipe(comp.input);
  let body: Readable = comp.output;
  if (encrypter) {
    const web = Readable.toWeb(body) as unknown as ReadableStream<Uint8Array>;
    body = Readable.fromWeb((await encrypter.encrypt(web)) as unknown as import("node:stream/web").ReadableStream<Uint8Array>);
    body.on("error", fail);
  }
  const done = encrypter
    ? Promise.all([comp.done, pipeline(body, hashing(fileHash), createWriteStream(partial.tmp, { mode: 0o600 }))])
    : comp.done.then(() => pipeline(createReadStream(partial.tmp, { highWaterMark: 1 << 20, signal: ctx.signal }), hashing(fileHash), new Writable({ write: (_c, _e, cb) => cb() })));
  const onAbort = () => fail(ctx.signal.reason);
  ctx.signal.addEventListener("abort", onAbort, { once: true });

  try {
    for (const e of tree.entries) pack.add(e.rel);
    await Promise.race([allSeenP, done.then(() => { throw new LifeboatError("archive stream ended early"); })]);
    if (packError) throw packError;
    const manifest = manifestOf(ctx, { ...options, tools: { compressor: comp.tool, ...options.tools } }, started, new Date(), slots);
    const text = Buffer.from(JSON.stringify(manifest, null, 2) + "\n");
    const header = new Header({ path: MANIFEST_NAME, mode: 0o600, size: text.length, type: "File", mtime: new Date(), uid: 0, gid: 0 });
    const re = new ReadEntry(header);
    pack.add(re);
    re.end(text);
    pack.end();
    await done;
    throwIfAborted(ctx);
    if (packError) throw packError;
    return finishPack(archivePath, partial, manifest, fileHash.digest("hex"), fed, !!encrypt, compression, progress);
  } catch (e) {
    progress?.fail(`pack ${basename(archivePath)} failed`);
    fail(e as Error);
    (pack as unknown as Readable).destroy?.();
    const toolError = await done.then(() => null, (x: Error) => (x instanceof ExecError ? x : null));
    partial.discard();
    // The compressor's own verdict (its exit status and stderr, e.g. "No space left") says more than the broken pipe here.
    throw packFailure(toolError ?? packError ?? (e as Error), sourceDir, archivePath, ctx);
  } finally {
    ctx.signal.removeEventListener("abort", onAbort);
  }
}

/** Writes the sidecars of a packed archive and renames it into place. */
function finishPack<M>(archivePath: string, partial: PartialFile, manifest: Manifest<M>, sha: string, tarBytes: number, encrypted: boolean, compression: Compression, progress: Progress | null): Manifest<M> {
  const base = basename(archivePath);
  const written: string[] = [];
  try {
    for (const [suffix, text] of [[".sha256", `${sha}  ${base}\n`], [".info.json", JSON.stringify(infoOf(manifest, sha, tarBytes, encrypted, compression), null, 2) + "\n"]]) {
      writeSidecar(`${archivePath}${suffix}`, text);
      written.push(`${archivePath}${suffix}`);
    }
    partial.commit();
  } catch (e) {
    // A write-back failed (a fsync said EIO or ENOSPC): no sidecar of ours without its archive.
    for (const p of written) rmSync(p, { force: true });
    throw e;
  }
  progress?.done(`packed ${base}: ${manifest.entries.length} entries, ${formatBytes(manifest.totals.bytes)} → ${formatBytes(statSync(archivePath).size)}`);
  return manifest;
}

/** The error a failed pack throws: a full disk named as such, an interrupt as its reason, anything else as "packing … failed". */
function packFailure(err: Error, sourceDir: string, archivePath: string, ctx: Context): Error {
  if ((err as NodeJS.ErrnoException).code === "ENOSPC" || /no space left/i.test(err.message)) {
    return new LifeboatError(`no space left on the device of ${dirname(archivePath)} while writing ${basename(archivePath)}`, {
      hint: "free space or choose another backups folder; nothing was left behind",
      cause: err,
    });
  }
  return err instanceof LifeboatError || ctx.signal.aborted ? err : new LifeboatError(`packing ${sourceDir} into ${archivePath} failed: ${err.message}`, { cause: err });
}

/** True when path is dir or inside it (both resolved). */
function isInside(path: string, dir: string): boolean {
  const r = relative(dir, path);
  return r === "" || (!r.startsWith("..") && !isAbsolute(r));
}

let gnuTarSeen: Promise<string | null> | undefined;

/** "GNU tar 1.34" when `tar` on PATH is GNU tar (asked once per process), else null. */
function gnuTarVersion(ctx: Context): Promise<string | null> {
  gnuTarSeen ??= which("tar")
    ? exec(["tar", "--version"], { readOnly: true, ctx, env: { LC_ALL: "C" } }).then(
      (r) => /^tar \(GNU tar\) (\S+)/.exec(r.stdout)?.[1] ?? null,
      () => null,
    ).then((v) => (v ? `GNU tar ${v}` : null))
    : Promise.resolve(null);
  return gnuTarSeen;
}

/** Bytes GNU tar has written per checkpoint dot (--checkpoint=100 records of 20 × 512 bytes). */
const CHECKPOINT_BYTES = 100 * 20 * 512;
/** How far the content hashing may run ahead of tar: near enough that tar reads the pages it just read. */
const HASH_AHEAD = 256 << 20;

/**
 * `tar` reads the names on stdin (NUL-separated, verbatim: newlines, leading dashes and
 * backslashes are names) from the tree, then the manifest from its own folder; its stream goes
 * straight into the compressor, which writes the partial file. Both run under
 * `setpriv --pdeathsig KILL` where it exists, so they die with this shell, which dies with lifeboat.
 * The compressor's failure is named before tar's (a full disk makes tar's write fail too).
 */
const PACK_SCRIPT = `set -u
umask 077
out=$1 n=$2
shift 2
tar_args=("\${@:1:n}")
shift "$n"
pd=()
if command -v setpriv >/dev/null 2>&1; then pd=(setpriv --pdeathsig KILL); fi
"\${pd[@]}" tar "\${tar_args[@]}" | "\${pd[@]}" "$@" > "$out"
st=("\${PIPESTATUS[@]}")
if [ "\${st[1]}" != 0 ]; then echo "lifeboat: $1 exited \${st[1]}" >&2; exit 65; fi
if [ "\${st[0]}" != 0 ]; then echo "lifeboat: tar exited \${st[0]}" >&2; exit 64; fi
`;

/**
 * The fast pack: GNU tar | pigz (or zstd) > the partial file, while this process hashes each
 * file's content for the manifest (a read of its own, kept at most HASH_AHEAD ahead of tar, so
 * tar reads from the page cache) and the archive's bytes as the compressor writes them. The
 * manifest goes in last: tar's name list stays open until it is written. Every entry is checked
 * again afterwards: one that changed since the walk (ctime, mtime or size) fails the pack, as the
 * manifest would not describe what tar read.
 */
async function packWithGnuTar<M>(
  sourceDir: string,
  entries: WalkEntry[],
  archivePath: string,
  partial: PartialFile,
  compressor: string[],
  progress: Progress | null,
  manifestFor: (entries: ManifestEntry[]) => Manifest<M>,
  ctx: Context,
): Promise<{ manifest: Manifest<M>; sha256: string; tarBytes: number }> {
  const mdir = partialPath(`${archivePath}.manifest`); // a killed run's is a stale partial: cleanLeftovers removes it
  mkdirSync(mdir, { mode: 0o700 });
  writeFileSync(partial.tmp, "", { mode: 0o600 }); // there for the hash to follow; the shell truncates it
  let manifestWritten: () => void = () => {};
  const manifestReady = new Promise<void>((r) => (manifestWritten = r));
  async function* names() {
    for (let i = 0; i < entries.length; i += 1000) yield Buffer.from(entries.slice(i, i + 1000).map((e) => `${e.rel}\0`).join(""));
    await manifestReady; // tar archives the manifest when this list ends
  }
  const tarArgs = [
    "--create", "--file=-", "--format=gnu", "--no-recursion", "--totals", "--checkpoint=100", "--checkpoint-action=dot",
    `--directory=${resolve(sourceDir)}`, "--null", "--verbatim-files-from", "--no-unquote", "--files-from=-",
    `--directory=${resolve(mdir)}`, MANIFEST_NAME,
  ];
  let tarOut = 0;
  let wake: () => void = () => {};
  let stderrTail = "";
  // The pipeline stops (its process group killed) when the run is interrupted or the hashing fails.
  const stop = new AbortController();
  const onAbort = () => {
    stop.abort(ctx.signal.reason);
    wake();
  };
  ctx.signal.addEventListener("abort", onAbort, { once: true });
  const done = exec(["bash", "-c", PACK_SCRIPT, "lifeboat-pack", partial.tmp, String(tarArgs.length), ...tarArgs, ...compressor], {
    stdin: Readable.from(names()),
    stdout: "ignore",
    env: { LC_ALL: "C" },
    readOnly: true,
    killWithParent: true,
    note: `  (GNU tar | ${compressor[0]} > ${partial.tmp})`,
    onStderr: (chunk) => {
      let dots = 0;
      for (const b of chunk) if (b === 0x2e) dots++;
      if (dots) {
        tarOut += dots * CHECKPOINT_BYTES;
        progress?.add(dots * CHECKPOINT_BYTES);
        wake();
      }
      stderrTail = (stderrTail + chunk.toString("utf8")).slice(-16384);
    },
    ctx: { ...ctx, signal: stop.signal },
  });
  const finished = done.then(() => {}, (e: Error) => {
    stop.abort(e);
    wake();
  });
  const manifestP = (async () => {
    const hashes = await hashContents(sourceDir, entries, stop.signal, () => tarOut, (w) => (wake = w));
    const manifest = manifestFor(entries.map((e): ManifestEntry => recordOfStat(e, hashes.get(e.rel))));
    writeFileSync(join(mdir, MANIFEST_NAME), JSON.stringify(manifest, null, 2) + "\n", { mode: 0o600 });
    return manifest;
  })().finally(() => manifestWritten());
  const shaP = hashGrowingFile(partial.tmp, finished, stop.signal);
  const behind = flushBehind(partial.tmp); // the commit's fsync then has only the tail to write
  try {
    const [manifest, sha256] = await Promise.all([manifestP, shaP, done]);
    await behind.stop();
    throwIfAborted(ctx);
    const changed = entries.filter((e) => changedSince(join(sourceDir, e.rel), e.st)).map((e) => e.rel);
    if (changed.length) {
      throw new LifeboatError(`${changed.length} entr${changed.length === 1 ? "y" : "ies"} of ${sourceDir} changed while being packed: ${changed.slice(0, 5).map((p) => JSON.stringify(p)).join(", ")}${changed.length > 5 ? " …" : ""}`, {
        hint: "the archive would not match its manifest; stop what writes there (or pack a copy or snapshot) and run again",
      });
    }
    const total = /Total bytes written: (\d+)/.exec(stderrTail);
    return { manifest, sha256, tarBytes: total ? Number(total[1]) : tarOut };
  } catch (e) {
    const toolFailed = stop.signal.reason instanceof ExecError ? stop.signal.reason : null; // set by `finished` before this runs
    stop.abort(e);
    wake();
    await Promise.allSettled([finished, manifestP, shaP, behind.stop()]);
    if (ctx.signal.aborted) throw ctx.signal.reason;
    // The tool's own verdict (e.g. "No space left", "Cannot open: Permission denied") says more than an aborted read here.
    throw toolFailed ? tarFailure(toolFailed, stderrTail) : e;
  } finally {
    ctx.signal.removeEventListener("abort", onAbort);
    rmSync(mdir, { recursive: true, force: true });
  }
}

/** tar's or the compressor's failure, in its own words (without the checkpoint dots and the totals). */
function tarFailure(e: ExecError, stderr: string): Error {
  const lines = stderr.split("\n").map((l) => l.replace(/^\.+/, "").trim()).filter((l) => l && !/^Total bytes written/.test(l));
  return new LifeboatError(lines.slice(-6).join("; ") || e.message, { cause: e });
}

/** True when an entry's lstat differs from the walk's in ctime, mtime, size, mode or owner (or it is gone). */
function changedSince(path: string, was: WalkStat): boolean {
  let now: Stats;
  try {
    now = lstatSync(path);
  } catch {
    return true;
  }
  return now.ctimeMs !== was.ctimeMs || now.mtimeMs !== was.mtimeMs || now.size !== was.size || now.mode !== was.mode || now.uid !== was.uid || now.gid !== was.gid;
}

/** The manifest record of a walked entry, as a tar header records it (see recordOf). */
function recordOfStat(e: WalkEntry, sha256: string | undefined): ManifestEntry {
  return {
    path: e.rel,
    type: e.type,
    size: e.type === "file" ? e.size : 0,
    mode: e.st.mode & 0o7777,
    uid: e.st.uid,
    gid: e.st.gid,
    mtime: new Date(Math.floor(e.st.mtimeMs / 1000) * 1000).toISOString(),
    ...(e.type === "symlink" || e.type === "hardlink" ? { target: e.target } : {}),
    ...(sha256 ? { sha256 } : {}),
  };
}

/**
 * sha256 of every file's content, read with one reused buffer, at most HASH_AHEAD bytes ahead
 * of tarOut() (waiting for onWake between; if tar shows no progress for 5 s, no longer). A file
 * whose size is not what the walk saw fails.
 */
async function hashContents(root: string, entries: WalkEntry[], signal: AbortSignal, tarOut: () => number, onWake: (w: () => void) => void): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const buf = Buffer.allocUnsafe(1 << 20);
  let hashed = 0;
  let throttle = true; // off if tar's progress stops showing (it would otherwise wait forever)
  for (const e of entries) {
    if (e.type !== "file") continue;
    // Synchronous reads (a MiB from the page cache at a time), yielding between them: a third
    // less CPU than reads through the thread pool, and this CPU comes out of the compressor's.
    const fd = openSync(join(root, e.rel), "r");
    try {
      const h = createHash("sha256");
      let size = 0;
      for (;;) {
        await yieldNow();
        if (signal.aborted) throw signal.reason;
        while (throttle && hashed - tarOut() > HASH_AHEAD && !signal.aborted) {
          const before = tarOut();
          await settledWithin(new Promise<void>((r) => onWake(r)), 5000);
          if (tarOut() === before) throttle = false;
        }
        const n = readSync(fd, buf, 0, buf.length, null);
        if (!n) break;
        h.update(n === buf.length ? buf : buf.subarray(0, n));
        size += n;
        hashed += n;
      }
      if (size !== e.size) throw new LifeboatError(`${join(root, e.rel)} changed while being packed (${e.size} bytes when listed, ${size} when read)`, { hint: "stop what writes there (or pack a copy or snapshot) and run again" });
      out.set(e.rel, h.digest("hex"));
    } finally {
      closeSync(fd);
    }
  }
  return out;
}

/** Lets the event loop run (I/O callbacks included) before going on. */
const yieldNow = () => new Promise<void>((r) => setImmediate(r));

/**
 * sha256 of a file another process is writing, read as it grows (one reused buffer), until
 * `finished` has settled and the end is reached.
 */
async function hashGrowingFile(path: string, finished: Promise<void>, signal: AbortSignal): Promise<string> {
  let over = false;
  void finished.then(() => (over = true));
  const fd = openSync(path, "r");
  try {
    const h = createHash("sha256");
    const buf = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      if (signal.aborted) throw signal.reason;
      const wasOver = over;
      const n = readSync(fd, buf, 0, buf.length, null); // from the page cache the compressor just wrote (see hashContents)
      if (n) {
        h.update(n === buf.length ? buf : buf.subarray(0, n));
        await yieldNow();
        continue;
      }
      if (wasOver) return h.digest("hex");
      await settledWithin(finished, 20);
    }
  } finally {
    closeSync(fd);
  }
}

function writeSidecar(path: string, text: string): void {
  const f = partialFile(path);
  try {
    writeFileSync(f.tmp, text, { mode: 0o600 });
    f.commit();
  } catch (e) {
    f.discard();
    throw e;
  }
}

function manifestOf<M>(ctx: Context, o: PackOptions<M>, started: Date, finished: Date, entries: ManifestEntry[]): Manifest<M> {
  const totals = { files: 0, dirs: 0, symlinks: 0, hardlinks: 0, bytes: 0 };
  for (const e of entries) {
    if (e.type === "file") {
      totals.files++;
      totals.bytes += e.size;
    } else if (e.type === "dir") totals.dirs++;
    else if (e.type === "symlink") totals.symlinks++;
    else totals.hardlinks++;
  }
  return {
    format: MANIFEST_FORMAT,
    recipe: o.recipe ?? ctx.name,
    host: hostname(),
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    tools: toolVersions(o.tools),
    meta: o.meta ?? ({} as M),
    totals,
    entries,
  };
}

/** The sidecar NAME.info.json: what `list` shows, and a quick verify returns, without opening the archive. */
export interface ArchiveInfo<M = Record<string, unknown>> {
  recipe: string;
  host: string;
  startedAt: string;
  finishedAt: string;
  sha256: string;
  encrypted: boolean;
  /** How the tar stream is compressed (absent in archives made before zstd: gzip). */
  compression?: Compression;
  totals: Manifest["totals"];
  tarBytes: number;
  meta: M;
}

function infoOf<M>(m: Manifest<M>, sha256: string, tarBytes: number, encrypted: boolean, compression: Compression | null): ArchiveInfo<M> {
  return { recipe: m.recipe, host: m.host, startedAt: m.startedAt, finishedAt: m.finishedAt, sha256, encrypted, ...(compression ? { compression } : {}), totals: m.totals, tarBytes, meta: m.meta };
}

/** An age Encrypter for a passphrase or recipients (throws on a malformed recipient). */
async function ageEncrypter(o: AgeOptions) {
  const { Encrypter } = await import("age-encryption");
  const e = new Encrypter();
  if (o.passphrase) e.setPassphrase(o.passphrase);
  for (const r of o.recipients ?? []) e.addRecipient(r);
  return e;
}

// ---------------------------------------------------------------------------------
// read side: open (decrypt, decompress), check paths, compare with the manifest

function sniff(path: string): "age" | Compression | "tar" | "unknown" {
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.alloc(512);
    const n = readSync(fd, buf, 0, 512, 0);
    if (buf.subarray(0, AGE_MAGIC.length).toString("latin1") === AGE_MAGIC) return "age";
    const c = compressionOf(buf.subarray(0, n));
    if (c) return c;
    if (n === 512 && buf.subarray(257, 262).toString("latin1") === "ustar") return "tar";
    return "unknown";
  } finally {
    closeSync(fd);
  }
}

const notAnArchive = (path: string) => new VerifyError(`${basename(path)} is not a tar, tar.gz, tar.zst or age file`, [], "is this the right file?");
const keyError = (path: string, e: unknown) =>
  new VerifyError(`archive ${basename(path)}: the passphrase or identity does not open it (${(e as Error).message})`, [], "check the key; nothing was written");

/** An age Decrypter with the key material, or a VerifyError saying none was given. */
async function decrypterFor(path: string, o: VerifyOptions) {
  const k = o.decrypt ?? {};
  if (!k.passphrase && !k.identities?.length) {
    throw new VerifyError(`archive ${basename(path)} is encrypted and no passphrase or identity was given`, [], "pass the passphrase (file, env or command) or the age identity file");
  }
  const { Decrypter } = await import("age-encryption");
  const d = new Decrypter();
  if (k.passphrase) d.addPassphrase(k.passphrase);
  for (const id of k.identities ?? []) d.addIdentity(id);
  return d;
}

/** Resolves to the first chunk of a stream and puts it back (to tell the compression inside the age layer). */
function peek(r: Readable): Promise<Buffer> {
  return new Promise((res, rej) => {
    const done = (b: Buffer) => {
      r.off("readable", onReadable).off("end", onEnd).off("error", rej);
      res(b);
    };
    const onReadable = () => {
      const c = r.read() as Buffer | null;
      if (c === null) return;
      r.unshift(c);
      done(c);
    };
    const onEnd = () => done(Buffer.alloc(0));
    r.on("readable", onReadable).once("end", onEnd).once("error", rej);
  });
}

interface Opened {
  /** The compressed (or plain) tar bytes, after the age layer. */
  source: Readable;
  compression: Compression | null;
  encrypted: boolean;
  /** The sha256 of the archive file, once the source has been read to its end. */
  sha256(): Promise<string>;
  /** Stops what runs beside the source (the hashing thread) after a failure. */
  cancel(): void;
}

/** From this size on, the archive file is hashed on a worker thread beside the reader (below, a thread costs more than it saves). */
const HASH_OFF_THREAD_FROM = 64 << 20;

/**
 * Opens an archive: file → sha256 of every byte (and progress) → [age] = the tar stream's
 * compressed bytes, with the compression told by the magic bytes. A big archive is hashed on a
 * worker thread reading the same file (checked by its device and inode, and the byte count):
 * this thread parses, hashes and writes every entry, and an unpack waits for it.
 */
async function openArchive(path: string, o: VerifyOptions, onBytes: (n: number) => void, signal: AbortSignal): Promise<Opened> {
  const kind = sniff(path);
  if (kind === "unknown") throw notAnArchive(path);
  const decrypter = kind === "age" ? await decrypterFor(path, o) : null;
  const fd = openSync(path, "r");
  const st = fstatSync(fd);
  // An abort destroys the file stream, and with it every stage after it.
  const file = createReadStream("", { fd, signal, highWaterMark: 1 << 20 });
  // A big archive is hashed by a thread of its own, paced by what is read here (in MiB); a small one here.
  const offThread = st.size >= HASH_OFF_THREAD_FROM && HASH_OFF_THREAD;
  const fileHash = offThread ? null : createHash("sha256");
  const pace = new Int32Array(new SharedArrayBuffer(4));
  const stop = new AbortController();
  const digest = offThread ? hashFileOffThread(path, { signal: AbortSignal.any([signal, stop.signal]), pace }) : null;
  digest?.catch(() => {}); // awaited in sha256()
  let read = 0;
  const hasher = new Transform({
    transform(chunk: Buffer, _e, cb) {
      read += chunk.length;
      fileHash?.update(chunk);
      if (digest && read >> 20 !== Atomics.load(pace, 0)) {
        Atomics.store(pace, 0, read >> 20);
        Atomics.notify(pace, 0);
      }
      onBytes(chunk.length);
      cb(null, chunk);
    },
  });
  const cancel = () => stop.abort(new Error("cancelled"));
  const sha256 = async () => {
    if (!digest) return fileHash!.digest("hex");
    Atomics.store(pace, 0, 0x7fffffff); // the reading here is over: let the thread finish the file
    Atomics.notify(pace, 0);
    const d = await digest.catch((e: Error) => {
      throw new VerifyError(`archive ${basename(path)} could not be read (${e.message})`, [], "check the disk it is on, or use another copy");
    });
    if (d.dev !== Number(st.dev) || d.ino !== Number(st.ino) || d.bytes !== read) {
      throw new VerifyError(`archive ${basename(path)} changed while it was read (${read} bytes read, ${d.bytes} hashed)`, [], "make sure nothing writes or replaces the archive, and run again");
    }
    return d.digest;
  };
  file.on("error", (e) => hasher.destroy(e));
  hasher.once("close", () => file.destroy()); // a failure downstream: the descriptor is closed now, not at exit
  file.pipe(hasher);
  if (!decrypter) return { source: hasher, compression: kind === "tar" ? null : kind as Compression, encrypted: false, sha256, cancel };
  let plain: Readable;
  try {
    plain = Readable.fromWeb((await decrypter.decrypt(Readable.toWeb(hasher) as unknown as ReadableStream<Uint8Array>)) as unknown as import("node:stream/web").ReadableStream<Uint8Array>);
  } catch (e) {
    file.destroy();
    cancel();
    throw keyError(path, e);
  }
  const head = await peek(plain).catch((e) => {
    cancel();
    throw e;
  });
  return { source: plain, compression: compressionOf(head), encrypted: true, sha256, cancel };
}

/** Streams an opened archive's tar bytes into a tar consumer (Parser or Unpack), decompressing on the way. */
async function pump(opened: Opened, consumer: Writable, ctx: Context): Promise<void> {
  if (!opened.compression) return pipeline(opened.source, consumer, { signal: ctx.signal });
  const d = startDecompressor(opened.compression, { ctx });
  if ((d.input as unknown) === d.output) return pipeline(opened.source, d.input, consumer, { signal: ctx.signal });
  try {
    await Promise.all([pipeline(opened.source, d.input), pipeline(d.output, consumer), d.done]);
  } catch (e) {
    // A decompressor that stops on damaged input ends its output early, and the tar reader may
    // report "truncated" first: when its output has ended, its own verdict is the truer one.
    const decoder = d.output.readableEnded ? await d.done.then(() => undefined, (x: unknown) => x) : undefined;
    for (const s of [opened.source, d.input, d.output]) s.destroy();
    throw decoder ?? e;
  }
}

/** A read failure as the operator should read it: truncated, damaged, or unreadable. */
function readError(path: string, e: unknown): Error {
  if (e instanceof VerifyError || e instanceof RefusedError) return e;
  const msg = (e as Error).message;
  const what = /unexpected end|premature|truncat/i.test(msg)
    ? "is truncated"
    : /incorrect header check|invalid|crc|check|stored block|distance|bad|corrupt|unknown|frame|prefix/i.test(msg)
      ? "is damaged"
      : "could not be read";
  return new VerifyError(`archive ${basename(path)} ${what} (${msg})`, [], "the archive is unusable; nothing was written. Use another copy.");
}

/** Why a path is unsafe to extract, or null. Names are POSIX names: `c:\\x` is relative. */
function pathProblem(p: string): string | null {
  if (p.includes("\0")) return "contains a NUL byte";
  if (p.startsWith("/")) return "is an absolute path";
  if (p.split(/[\\/]/).includes("..")) return "contains '..'";
  return null;
}

/** A relative POSIX name that node-tar would take for a Windows root (`Z:`, `c:\\x`, `\\x`) and strip. */
function looksRooted(p: string): boolean {
  return !p.startsWith("/") && (win32.isAbsolute(p) || win32.parse(p).root !== "");
}

/** One entry being read: its record, and the sha256 of its content so far (files). */
interface Rec {
  entry: ManifestEntry;
  hash: ReturnType<typeof createHash> | null;
}

/**
 * The checks of one read of an archive, entry by entry as the headers come (path safety, types,
 * links, duplicates), and the content hashes as the bodies pass. Shared by verify and unpack.
 */
class EntryCheck {
  readonly recs = new Map<string, Rec>();
  readonly symlinks = new Set<string>();
  readonly problems: string[] = [];
  manifestChunks: Buffer[] = [];
  manifestBytes = 0;
  manifests = 0;
  entries = 0;
  bytes = 0;

  /** Records an entry from its header. Returns what its content feeds ("manifest" or its record), or null when refused or skipped. */
  admit(e: ReadEntry): Rec | "manifest" | null {
    const p = normPath(e.path);
    const type = entryType(e.type);
    if (p === MANIFEST_NAME && type === "file") {
      if (++this.manifests > 1) this.problems.push(`${MANIFEST_NAME}: appears twice; refused`);
      return "manifest";
    }
    if (p === "") return null; // "./", the root itself
    this.entries++;
    const before = this.problems.length;
    const bad = pathProblem(e.path);
    if (bad) this.problems.push(`${JSON.stringify(e.path)}: ${bad}; refused`);
    if (!type) this.problems.push(`${JSON.stringify(e.path)}: ${e.type} entries (devices, fifos …) are refused`);
    const parts = p.split("/");
    for (let i = 1; i < parts.length; i++) {
      const prefix = parts.slice(0, i).join("/");
      if (this.symlinks.has(prefix)) {
        this.problems.push(`${JSON.stringify(p)}: goes through the symlink ${JSON.stringify(prefix)}; refused`);
        break;
      }
    }
    if (type === "hardlink") {
      const t = e.linkpath ?? "";
      const tb = pathProblem(t);
      const target = this.recs.get(normPath(t));
      if (tb || target?.entry.type !== "file") {
        this.problems.push(`${JSON.stringify(p)}: hardlink to ${JSON.stringify(t)} ${tb ?? "outside the archive's earlier files"}; refused`);
      }
    }
    if (this.recs.has(p)) this.problems.push(`${JSON.stringify(p)}: appears twice; refused`);
    if (type === "symlink") this.symlinks.add(p);
    const rec: Rec = { entry: recordOf(e, p), hash: type === "file" ? createHash("sha256") : null };
    this.recs.set(p, rec);
    return this.problems.length > before ? null : rec;
  }

  /** Content of an admitted entry. */
  add(to: Rec | "manifest", chunk: Buffer): void {
    if (to === "manifest") {
      this.manifestBytes += chunk.length;
      if (this.manifestBytes <= 64 << 20) this.manifestChunks.push(chunk);
      return;
    }
    to.hash?.update(chunk);
    to.entry.size += chunk.length;
    this.bytes += chunk.length;
  }

  /** Every entry as read (call once, at the end). */
  seen(): Map<string, ManifestEntry> {
    const out = new Map<string, ManifestEntry>();
    for (const [p, r] of this.recs) out.set(p, r.hash ? { ...r.entry, sha256: r.hash.digest("hex") } : r.entry);
    return out;
  }
}

/** Seconds since the epoch, as tar stores an mtime. */
const seconds = (iso: string) => Math.floor(Date.parse(iso) / 1000);

/** One problem line per difference between what the archive holds and what its manifest records. */
function compareWithManifest(m: Manifest<unknown>, seen: Map<string, ManifestEntry>): string[] {
  const problems: string[] = [];
  const listed = new Map(m.entries.map((e) => [e.path, e]));
  for (const [p, got] of seen) {
    const want = listed.get(p);
    if (!want) {
      problems.push(`${p}: in the archive but not in the manifest`);
      continue;
    }
    if (want.type !== got.type) {
      problems.push(`${p}: type ${got.type}, manifest says ${want.type}`);
      continue;
    }
    if (want.size !== got.size) problems.push(`${p}: size ${got.size}, manifest says ${want.size}`);
    else if (want.sha256 !== got.sha256) problems.push(`${p}: sha256 mismatch`);
    if (want.mode !== got.mode) problems.push(`${p}: mode ${got.mode.toString(8)}, manifest says ${want.mode.toString(8)}`);
    if (want.uid !== got.uid || want.gid !== got.gid) problems.push(`${p}: owner ${got.uid}:${got.gid}, manifest says ${want.uid}:${want.gid}`);
    if (seconds(want.mtime) !== seconds(got.mtime)) problems.push(`${p}: mtime ${got.mtime}, manifest says ${want.mtime}`);
    if ((want.target ?? "") !== (got.target ?? "")) problems.push(`${p}: link target ${JSON.stringify(got.target ?? "")}, manifest says ${JSON.stringify(want.target ?? "")}`);
  }
  for (const p of listed.keys()) if (!seen.has(p)) problems.push(`${p}: listed in the manifest but missing from the archive`);
  return problems;
}

function readJson<T>(path: string): T | undefined {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as T;
  } catch {
    return undefined;
  }
}

/** The hex digest in NAME.sha256, or undefined when there is none. */
function sidecarSha(archivePath: string): string | undefined {
  try {
    return readFileSync(`${archivePath}.sha256`, "utf8").split(/\s+/)[0] || undefined;
  } catch {
    return undefined;
  }
}

/** What one full read found, before the verdict. */
interface ReadResult {
  check: EntryCheck;
  sha256: string;
  encrypted: boolean;
  compression: Compression | null;
}

/**
 * The verdict on a full read: the manifest parses and matches every entry, the sidecars
 * (NAME.sha256, NAME.info.json) agree with the bytes and the manifest. Throws VerifyError.
 */
function verdict<M>(archivePath: string, r: ReadResult, o: VerifyOptions): { report: VerifyReport<M>; seen: Map<string, ManifestEntry> } {
  const base = basename(archivePath);
  const problems = [...r.check.problems];
  let manifest: Manifest<M> | null = null;
  if (r.check.manifests) {
    try {
      manifest = JSON.parse(Buffer.concat(r.check.manifestChunks).toString("utf8"));
      if (manifest?.format !== MANIFEST_FORMAT) problems.push(`manifest.json: unknown format ${JSON.stringify(manifest?.format)}`);
    } catch {
      problems.push("manifest.json: not valid JSON");
    }
  }
  if (!manifest && o.requireManifest !== false && !problems.length) {
    throw new VerifyError(`archive ${base} has no ${MANIFEST_NAME}: not a lifeboat archive, or cut short`, [], "for a tarball made by another tool, extract it with requireManifest: false");
  }
  const seen = r.check.seen();
  if (manifest) problems.push(...compareWithManifest(manifest, seen));
  const side = sidecarSha(archivePath);
  if (side && side !== r.sha256) problems.push(`${base}: file sha256 differs from ${base}.sha256`);
  const info = readJson<ArchiveInfo<M>>(`${archivePath}.info.json`);
  if (info && manifest) {
    // A quick verify answered from this sidecar: the manifest must say the same.
    if (info.sha256 !== r.sha256) problems.push(`${base}.info.json: sha256 differs from the archive's`);
    else if (info.recipe !== manifest.recipe || JSON.stringify(info.meta) !== JSON.stringify(manifest.meta)) problems.push(`${base}.info.json: recipe or meta differs from the manifest`);
  }
  if (problems.length) {
    const first = problems[0];
    throw new VerifyError(`archive ${base}: ${first}${problems.length > 1 ? ` (and ${problems.length - 1} more)` : ""}; the archive is damaged or unsafe`, problems, "restore refused before touching anything; use another copy");
  }
  const report: VerifyReport<M> = {
    manifest,
    info: info ?? (manifest ? infoOf(manifest, r.sha256, 0, r.encrypted, r.compression) : null),
    entries: r.check.entries,
    bytes: r.check.bytes,
    sha256: r.sha256,
    encrypted: r.encrypted,
    quick: false,
  };
  return { report, seen };
}

/** Reads every entry once (verify): hashes, path safety and type checks. */
async function scan(path: string, o: VerifyOptions, ctx: Context): Promise<ReadResult> {
  const { Parser } = await import("tar");
  const progress = o.progress === false ? null : ctx.log.progress(`verify ${basename(path)}`, { total: statSync(path).size });
  const check = new EntryCheck();
  const wanted = new WeakMap<object, Rec | "manifest">();
  const parser = new Parser({
    strict: true,
    filter: (_p: string, e: ReadEntry | Stats) => {
      const to = check.admit(e as ReadEntry);
      if (to) wanted.set(e, to);
      return !!to;
    },
  });
  parser.on("entry", (e: ReadEntry) => {
    const to = wanted.get(e)!;
    e.on("data", (d: Buffer) => check.add(to, d));
  });
  const warnings: string[] = [];
  parser.on("warn", (_code: string, message: string) => warnings.push(message));
  let opened: Opened | undefined;
  let sha256: string;
  try {
    opened = await openArchive(path, o, (n) => progress?.add(n), ctx.signal);
    await pump(opened, parser as unknown as Writable, ctx);
    sha256 = await opened.sha256();
  } catch (e) {
    opened?.cancel();
    progress?.fail(`verify ${basename(path)} failed`);
    throwIfAborted(ctx);
    throw readError(path, e);
  }
  if (warnings.length) {
    progress?.fail(`verify ${basename(path)} failed`);
    throw new VerifyError(`archive ${basename(path)} is damaged (${warnings[0]})`, warnings, "the archive is unusable; nothing was written. Use another copy.");
  }
  if (check.problems.length) progress?.fail(`verify ${basename(path)}: ${check.problems.length} problem(s)`);
  else progress?.done(`verified ${basename(path)}: ${check.entries} entries, ${formatBytes(check.bytes)}`);
  return { check, sha256, encrypted: opened.encrypted, compression: opened.compression };
}

/**
 * The quick check: the sidecars agree, the key opens the archive, and its first bytes are the
 * compression and tar header the sidecar says. Reads the first 64 KiB. Null when there is no
 * NAME.info.json to answer from (the caller reads the whole archive instead).
 */
async function quickScan<M>(path: string, o: VerifyOptions): Promise<VerifyReport<M> | null> {
  const info = readJson<ArchiveInfo<M>>(`${path}.info.json`);
  if (!info?.totals || typeof info.sha256 !== "string") return null;
  const base = basename(path);
  const kind = sniff(path);
  if (kind === "unknown") throw notAnArchive(path);
  const problems: string[] = [];
  const side = sidecarSha(path);
  if (side && side !== info.sha256) problems.push(`${base}.sha256 and ${base}.info.json record different sha256`);
  if (info.encrypted !== (kind === "age")) problems.push(`${base}.info.json says ${info.encrypted ? "encrypted" : "not encrypted"}, the file is ${kind === "age" ? "" : "not "}age-encrypted`);
  let head: Buffer;
  if (kind === "age") {
    const d = await decrypterFor(path, o);
    const file = createReadStream(path, { highWaterMark: 1 << 16 });
    try {
      let plain: ReadableStream<Uint8Array>;
      try {
        plain = (await d.decrypt(Readable.toWeb(file) as unknown as ReadableStream<Uint8Array>)) as unknown as ReadableStream<Uint8Array>;
      } catch (e) {
        throw keyError(path, e);
      }
      const reader = plain.getReader();
      try {
        head = Buffer.from((await reader.read()).value ?? new Uint8Array());
      } catch (e) {
        throw readError(path, e);
      }
      await reader.cancel().catch(() => {});
    } finally {
      file.destroy();
    }
  } else {
    const fd = openSync(path, "r");
    try {
      head = Buffer.alloc(1 << 16);
      head = head.subarray(0, readSync(fd, head, 0, head.length, 0));
    } finally {
      closeSync(fd);
    }
  }
  const compression = compressionOf(head);
  if ((info.compression ?? "gzip") !== compression) problems.push(`${base}.info.json says ${info.compression ?? "gzip"}, the data is ${compression ?? "not compressed"}`);
  let tarHead: Buffer | null = compression === null ? head : null;
  if (compression === "gzip") {
    try {
      tarHead = gunzipSync(head, { finishFlush: zc.Z_SYNC_FLUSH });
    } catch (e) {
      throw readError(path, e);
    }
  }
  if (tarHead) {
    const { Header } = await import("tar");
    if (tarHead.length < 512 || !new Header(tarHead.subarray(0, 512)).cksumValid) problems.push(`${base}: the first tar header is damaged`);
  }
  if (problems.length) {
    throw new VerifyError(`archive ${base}: ${problems[0]}${problems.length > 1 ? ` (and ${problems.length - 1} more)` : ""}`, problems, "the archive or its sidecars are damaged; use another copy");
  }
  const t = info.totals;
  return { manifest: null, info, entries: t.files + t.dirs + t.symlinks + t.hardlinks, bytes: t.bytes, sha256: info.sha256, encrypted: kind === "age", quick: true };
}

/**
 * Reads the whole archive and checks every entry (type, size, sha256, mode, owner, mtime,
 * link target) against the manifest and every path for safety. Rejects with VerifyError
 * (exit 3) listing what is wrong. With `record`, writes NAME.verified beside it, passed or failed.
 * With `quick`, reads only the sidecars and the first bytes (see {@link VerifyOptions.quick}):
 * for a restore, whose unpackArchive does the full check as it unpacks.
 * @example
 * const report = await verifyArchive<DeisMeta>("/backups/deis-….tar.gz", { decrypt: { passphrase }, record: true });
 * const { info } = await verifyArchive<DeisMeta>(archive, { decrypt, quick: true }); // info.meta: the recipe's record
 */
export async function verifyArchive<M = Record<string, unknown>>(archivePath: string, options: VerifyOptions = {}): Promise<VerifyReport<M>> {
  const ctx = options.ctx ?? useContext();
  if (options.record && ctx.dryRun && !existsSync(archivePath)) {
    // A dry run's pack step wrote nothing: say what would be verified.
    ctx.log.command(`verify ${archivePath}`, "dry-run");
    return { manifest: null, info: null, entries: 0, bytes: 0, sha256: "", encrypted: false, quick: false };
  }
  if (options.quick) {
    throwIfAborted(ctx);
    if (!existsSync(archivePath)) throw new VerifyError(`archive ${archivePath} does not exist`, [], "check the path");
    const q = await quickScan<M>(archivePath, options);
    if (q) return q;
    ctx.log.debug(`${basename(archivePath)}: no .info.json beside it, so the quick verify reads the whole archive`);
  }
  if (!options.record) return (await verifyScan<M>(archivePath, options)).report;
  const st = statSync(archivePath);
  const stamp = (ok: boolean, error?: string) => {
    if (ctx.dryRun) return;
    const text = JSON.stringify({ ok, at: new Date().toISOString(), size: st.size, mtimeMs: st.mtimeMs, error }) + "\n";
    writeFileSync(`${archivePath}.verified`, text, { mode: 0o600 });
  };
  try {
    const report = (await verifyScan<M>(archivePath, options)).report;
    stamp(true);
    return report;
  } catch (e) {
    // An interrupted verify says nothing about the archive.
    if (!ctx.signal.aborted) stamp(false, (e as Error).message);
    throw e;
  }
}

async function verifyScan<M>(archivePath: string, options: VerifyOptions): Promise<{ report: VerifyReport<M>; seen: Map<string, ManifestEntry> }> {
  const ctx = options.ctx ?? useContext();
  throwIfAborted(ctx);
  if (!existsSync(archivePath)) throw new VerifyError(`archive ${archivePath} does not exist`, [], "check the path");
  return verdict<M>(archivePath, await scan(archivePath, options, ctx), options);
}

/** A staging folder of an unpack in progress: hidden, inside the target, named after its process. */
const STAGING = /^\.partial-unpack-[0-9a-f]+\.(\d+)$/;

/**
 * Verifies and extracts an archive into targetDir in one read: entries go into a hidden
 * staging folder inside the target, and move into place only when the whole file's sha256,
 * every entry's checks and the manifest passed; otherwise the staging folder is removed and
 * VerifyError (exit 3) says why. Refuses a non-empty target unless `force` (then what is
 * there is replaced, folders merged); never writes outside the target. In dry-run it reads
 * the archive (a full verify) and says what it would extract.
 * @example await unpackArchive(archive, "/var/lib/app", { sameOwner: true, decrypt: { identities } });
 */
export async function unpackArchive<M = Record<string, unknown>>(archivePath: string, targetDir: string, options: UnpackOptions = {}): Promise<VerifyReport<M>> {
  const ctx = options.ctx ?? useContext();
  throwIfAborted(ctx);
  if (!existsSync(archivePath)) throw new VerifyError(`archive ${archivePath} does not exist`, [], "check the path");
  let existing: string[] = [];
  try {
    existing = readdirSync(targetDir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  const stale = existing.filter((n) => STAGING.test(n));
  existing = existing.filter((n) => !STAGING.test(n));
  if (existing.length && !options.force) {
    throw new RefusedError(
      `target ${targetDir} is not empty (${existing.length} entries: ${existing.slice(0, 5).join(", ")}${existing.length > 5 ? " …" : ""})`,
      "restore into an empty directory, or pass force to replace what is there",
    );
  }
  if (ctx.dryRun) {
    const { report } = await verifyScan<M>(archivePath, options);
    ctx.log.command(`extract ${basename(archivePath)} (${report.entries} entries, ${formatBytes(report.bytes)}) into ${targetDir}`, "dry-run");
    return report;
  }
  // What a killed unpack left: its staging folder, never anything that looks restored.
  for (const n of stale) if (!pidAlive(Number(STAGING.exec(n)![1]))) rmSync(join(targetDir, n), { recursive: true, force: true });
  const created = !existsSync(targetDir);
  mkdirSync(targetDir, { recursive: true, mode: 0o700 });
  const staging = join(targetDir, `.partial-unpack-${randomBytes(6).toString("hex")}.${process.pid}`);
  mkdirSync(staging, { mode: 0o700 });
  // The synchronous unpacker: each piece of tar the decompressor hands over is written out
  // before the next, from this thread. node-tar's async one sends every open, write and close
  // through the thread pool; on 2 cores those round trips and wake-ups cost more than the
  // writes (1 GiB: 3.8 s against 3.0 s, and half the system time). Decompression still runs
  // on the pool, beside it.
  const { UnpackSync: Unpack } = await import("tar");
  const preserveOwner = !!options.sameOwner && process.getuid?.() === 0;
  const progress = options.progress === false ? null : ctx.log.progress(`extract ${basename(archivePath)}`, { total: statSync(archivePath).size });
  const check = new EntryCheck();
  const wanted = new WeakMap<object, Rec | "manifest">();
  const symlinks: ManifestEntry[] = [];
  const warnings: string[] = [];
  // After a failed write, UnpackSync closes the file's descriptor but goes on writing the
  // entry's later pieces to that number, and sets its mtime and closes it again at the entry's
  // end: by then the number may be another file's. So at the first error (strict: every entry
  // error is an 'error', raised inside the failing write) the entry streams we hand it are
  // destroyed, which ends their pieces and their 'end', and no later entry is admitted.
  const flowing = new Set<Transform>();
  let broken = false;
  const unpack = new Unpack({
    cwd: staging,
    strict: true,
    preservePaths: false,
    preserveOwner,
    processUmask: 0,
    filter: (p: string, e: ReadEntry | Stats) => {
      if (broken) return false;
      const entry = e as ReadEntry;
      const to = check.admit(entry);
      if (!to) return false;
      wanted.set(entry, to);
      if (to !== "manifest" && to.entry.type === "symlink") {
        symlinks.push(to.entry); // placed last, once everything checked out
        return false;
      }
      // `Z:` → `./Z:`: node-tar strips what looks like a Windows root; on POSIX it is a name.
      if (looksRooted(p)) entry.path = `./${p}`;
      if (entry.type === "Link" && entry.linkpath && looksRooted(entry.linkpath)) entry.linkpath = `./${entry.linkpath}`;
      return true;
    },
    // Files' content is hashed on its way to disk.
    transform: ((e: ReadEntry) => {
      const to = wanted.get(e);
      if (!to) return undefined;
      const t = new Transform({
        transform(chunk: Buffer, _e, cb) {
          check.add(to, chunk);
          cb(null, chunk);
        },
      });
      flowing.add(t);
      t.once("close", () => flowing.delete(t));
      return t;
    }) as unknown as (e: ReadEntry) => ReadEntry,
    onwarn: (_code: string, message: string) => warnings.push(message),
  });
  unpack.prependListener("error", () => {
    broken = true;
    for (const t of flowing) t.destroy();
    flowing.clear();
  });
  let done: { report: VerifyReport<M>; seen: Map<string, ManifestEntry> };
  try {
    let opened: Opened | undefined;
    let sha256: string;
    try {
      opened = await openArchive(archivePath, options, (n) => progress?.add(n), ctx.signal);
      await pump(opened, unpack as unknown as Writable, ctx);
      sha256 = await opened.sha256();
    } catch (e) {
      opened?.cancel();
      throwIfAborted(ctx);
      // A system call's failure (Deno names its errno code but not the call): the disk, not the archive.
      if ((e as NodeJS.ErrnoException).syscall || /^E[A-Z0-9]+$/.test(String((e as NodeJS.ErrnoException).code))) {
        const full = (e as NodeJS.ErrnoException).code === "ENOSPC";
        throw new LifeboatError(`extracting ${basename(archivePath)} into ${targetDir} failed: ${full ? "no space left on the device" : (e as Error).message}`, {
          hint: "nothing was restored; fix the target and run again",
          cause: e,
        });
      }
      throw readError(archivePath, e);
    }
    if (warnings.length) throw new VerifyError(`archive ${basename(archivePath)} is damaged (${warnings[0]})`, warnings, "the archive is unusable; nothing was restored. Use another copy.");
    const { report, seen } = verdict<M>(archivePath, { check, sha256, encrypted: opened.encrypted, compression: opened.compression }, options);
    if (check.manifests) rmSync(join(staging, MANIFEST_NAME), { force: true });
    for (const l of symlinks) placeSymlink(staging, l, preserveOwner);
    moveInto(staging, targetDir);
    rmdirSync(staging);
    done = { report, seen };
  } catch (e) {
    progress?.fail(`extract ${basename(archivePath)} failed: nothing restored`);
    rmSync(staging, { recursive: true, force: true });
    if (created) {
      try {
        rmdirSync(targetDir);
      } catch { /* not ours alone */ }
    }
    throw e;
  }
  // node-tar creates directories u+rwx so it can fill them; set their recorded modes
  // now, deepest first, as GNU tar does.
  const dirs = [...done.seen.values()].filter((e) => e.type === "dir").sort((a, b) => b.path.length - a.path.length);
  for (const d of dirs) chmodSync(join(targetDir, d.path), d.mode);
  progress?.done(`restored ${done.report.entries} entries (${formatBytes(done.report.bytes)}) into ${targetDir}`);
  return done.report;
}

/** Moves a staging folder's entries into the target: new names are renamed in, folders merged, files and links replaced. */
function moveInto(from: string, to: string): void {
  for (const name of readdirSync(from)) {
    const src = join(from, name);
    const dst = join(to, name);
    let there: Stats | undefined;
    try {
      there = lstatSync(dst);
    } catch { /* a new name */ }
    const isDir = lstatSync(src).isDirectory();
    if (there?.isDirectory() && isDir) {
      moveInto(src, dst);
      rmdirSync(src);
      continue;
    }
    if (there?.isDirectory()) {
      throw new LifeboatError(`restoring ${JSON.stringify(name)} into ${to} failed: a directory is in its place`, { hint: "move it away and restore again" });
    }
    if (there && isDir) unlinkSync(dst); // a file or link where the archive has a folder (forced restore)
    renameSync(src, dst);
  }
}

/**
 * Creates one symlink as recorded (target text unchanged, owner when preserving owners,
 * mtime), after every file is in place. The path was checked: relative, no `..`, not
 * below another symlink.
 */
function placeSymlink(targetDir: string, l: ManifestEntry, preserveOwner: boolean): void {
  const at = join(targetDir, l.path);
  mkdirSync(dirname(at), { recursive: true });
  try {
    symlinkSync(l.target ?? "", at);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST" || lstatSync(at).isDirectory()) {
      throw new LifeboatError(`extracting the symlink ${JSON.stringify(l.path)} into ${targetDir} failed: ${(e as Error).message}`, {
        hint: "a directory is in its place; move it away and restore again",
        cause: e,
      });
    }
    unlinkSync(at);
    symlinkSync(l.target ?? "", at);
  }
  if (preserveOwner) lchownSync(at, l.uid, l.gid);
  const mtime = new Date(l.mtime);
  try {
    lutimesSync(at, mtime, mtime);
  } catch { /* a filesystem without symlink times */ }
}

/** Deletes an archive with its sidecars. */
export function removeArchive(archivePath: string): void {
  for (const p of [archivePath, `${archivePath}.sha256`, `${archivePath}.info.json`, `${archivePath}.verified`]) {
    try {
      unlinkSync(p);
    } catch { /* gone */ }
  }
}
