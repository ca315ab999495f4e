// Archives: a directory packed into NAME.tar.gz (optionally age-encrypted) with a
// manifest.json inside that lists every entry with its size, mode and sha256.
//
// Pack streams each file once: the tar stream is teed into node-tar's own Parser, which
// hashes exactly the bytes that went into the archive, and the manifest is appended as
// the last entry. The archive is written to a hidden `.partial-…` file and renamed into
// place only when complete, so a killed run never leaves a complete-looking archive.
//
// Verify reads the whole archive, checks every entry against the manifest and checks
// every path for safety. Unpack verifies first and only then writes, so a damaged,
// truncated or hostile archive is refused before the target is touched.
//
// Names are POSIX names: `Z:`, `a:b` and `c:\x` are ordinary relative names on Linux, so
// pack keeps them as they are (node-tar's preservePaths: the paths come from our own walk)
// and unpack hands them to node-tar as `./Z:` so its Windows-style root stripping leaves
// them alone, while `/…` and `..` are still refused. Symlinks are created last, after
// every file is written (as GNU tar's delayed links), exactly as recorded: node-tar would
// rewrite absolute targets, and nothing may be written through a link anyway.
//
// Every stage stops when the context's signal aborts (SIGINT/SIGTERM) and throws its reason.
import { createHash } from "node:crypto";
import {
  chmodSync,
  closeSync,
  createReadStream,
  createWriteStream,
  existsSync,
  lchownSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { basename, dirname, join, resolve, win32 } from "node:path";
import { hostname } from "node:os";
import { PassThrough, Readable, Transform, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import process from "node:process";
import { Decrypter, Encrypter } from "age-encryption";
import { Header, Pack, Parser, ReadEntry, Unpack } from "tar";
import type { Stats } from "node:fs";
import { LifeboatError, RefusedError, VerifyError } from "./errors.ts";
import { createParallelGzip } from "./compress.ts";
import { partialFile } from "./files.ts";
import { throwIfAborted, useContext, type Context } from "./context.ts";
import { pidAlive } from "./lock.ts";
import { shellQuote } from "./exec.ts";
import { formatBytes } from "./log.ts";
import { expandHome, type SettingSpecs, type SettingValues } from "./settings.ts";

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
  /** gzip level 1–9 (default 6). */
  level?: number;
  /** Compression workers (default: CPU count, max 4). */
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
  /** The manifest, when the archive has one. */
  manifest: Manifest<M> | null;
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
}

/** Lists a tree in sorted order; sockets, fifos and devices are skipped with a warning. */
function walk(root: string, ctx: Context): { entries: WalkEntry[]; bytes: number; skipped: string[] } {
  const entries: WalkEntry[] = [];
  const skipped: string[] = [];
  let bytes = 0;
  const inodes = new Set<string>();
  const visit = (dir: string, prefix: string) => {
    const names = readdirSync(dir).sort();
    for (const name of names) {
      const rel = prefix ? `${prefix}/${name}` : name;
      const st = lstatSync(join(dir, name));
      if (st.isDirectory()) {
        entries.push({ rel, type: "dir", size: 0 });
        visit(join(dir, name), rel);
      } else if (st.isFile()) {
        const ino = `${st.dev}:${st.ino}`;
        const hard = st.nlink > 1 && inodes.has(ino);
        if (st.nlink > 1) inodes.add(ino);
        entries.push({ rel, type: hard ? "hardlink" : "file", size: hard ? 0 : st.size });
        if (!hard) bytes += st.size;
      } else if (st.isSymbolicLink()) {
        entries.push({ rel, type: "symlink", size: 0 });
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
    const m = /^\.partial-.*\.(\d+)$/.exec(name);
    const side = /^(.*)\.(sha256|info\.json|verified)$/.exec(name);
    if ((m && !pidAlive(Number(m[1]))) || (side && !names.includes(side[1]))) removed.push(name);
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
function hashing(hash: ReturnType<typeof createHash>, onBytes?: (n: number) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _e, cb) {
      hash.update(chunk);
      onBytes?.(chunk.length);
      cb(null, chunk);
    },
  });
}

function entryType(t: string): ManifestEntry["type"] | null {
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

/** The manifest's record of a tar entry whose body was read (size bytes, hashed for files). */
function entryOf(e: ReadEntry, path: string, size: number, hash: ReturnType<typeof createHash> | null): ManifestEntry {
  const type = entryType(e.type) ?? "file";
  return {
    path,
    type,
    size,
    mode: (e.mode ?? 0) & 0o7777,
    uid: e.uid ?? 0,
    gid: e.gid ?? 0,
    mtime: (e.mtime ?? new Date(0)).toISOString(),
    ...(hash ? { sha256: hash.digest("hex") } : {}),
    ...(type === "symlink" || type === "hardlink" ? { target: e.linkpath } : {}),
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
 * const manifest = await packArchive("/tmp/stage", "/backups/deis-2026-11-21T101500Z.tar.gz", { meta: { buckets: 2 } });
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
  if (ctx.dryRun) {
    ctx.log.command(
      `pack ${sourceDir} (${tree.entries.length} entries, ${formatBytes(tree.bytes)}) into ${archivePath}${encrypt ? " (age-encrypted)" : ""}`,
      "dry-run",
    );
    return manifestOf(ctx, options, started, new Date(), tree.entries.map((e) => ({ path: e.rel, type: e.type, size: e.size, mode: 0, uid: 0, gid: 0, mtime: "" })));
  }
  ensureBackupFolder(outDir, ctx);
  cleanLeftovers(outDir, ctx);
  const partial = partialFile(archivePath);

  const seen: ManifestEntry[] = [];
  const parser = new Parser({ strict: true });
  let expect = tree.entries.length;
  let allSeen: () => void = () => {};
  const allSeenP = new Promise<void>((r) => (allSeen = r));
  if (expect === 0) allSeen();
  parser.on("entry", (e: ReadEntry) => {
    const type = entryType(e.type);
    const hash = type === "file" ? createHash("sha256") : null;
    let size = 0;
    e.on("data", (d: Buffer) => {
      hash?.update(d);
      size += d.length;
    });
    e.on("end", () => {
      if (e.path === MANIFEST_NAME) return;
      seen.push(entryOf(e, normPath(e.path), size, hash));
      if (--expect === 0) allSeen();
    });
  });

  // Small reads and few entries in flight keep memory flat (node-tar reads 16 MiB at a time by default).
  // preservePaths: the paths are our walk's relative names, and `Z:` or `c:\x` must stay as they are.
  const pack = new Pack({ cwd: sourceDir, noDirRecurse: true, strict: true, portable: false, preservePaths: true, maxReadSize: 1 << 20, jobs: 2 });
  const progress = options.progress === false ? null : ctx.log.progress(`pack ${basename(archivePath)}`, { total: tree.bytes });
  const fileHash = createHash("sha256");
  const tee = new PassThrough();
  pack.on("data", (d: Buffer) => {
    parser.write(d);
  });
  let fed = 0;
  const counting = new Transform({
    transform(chunk: Buffer, _e, cb) {
      fed += chunk.length;
      progress?.add(chunk.length);
      cb(null, chunk);
    },
  });
  const gz = createParallelGzip({ level: options.level, workers: options.workers });
  let body: Readable = (pack as unknown as Readable).pipe(counting).pipe(gz);
  let packError: Error | null = null;
  const fail = (e: Error) => {
    packError ??= e;
    tee.destroy(e);
  };
  (pack as unknown as Readable).on("error", fail);
  parser.on("error", fail);
  counting.on("error", fail);
  gz.on("error", fail);
  if (encrypt) body = await ageEncrypt(body, encrypt);
  body.on("error", fail);
  const out = createWriteStream(partial.tmp, { mode: 0o600 });
  const done = pipeline(body, tee, hashing(fileHash), out);
  const onAbort = () => fail(ctx.signal.reason);
  ctx.signal.addEventListener("abort", onAbort, { once: true });

  try {
    for (const e of tree.entries) pack.add(e.rel);
    await Promise.race([allSeenP, done.then(() => { throw new LifeboatError("archive stream ended early"); })]);
    if (packError) throw packError;
    const manifest = manifestOf(ctx, options, started, new Date(), seen);
    const text = Buffer.from(JSON.stringify(manifest, null, 2) + "\n");
    const header = new Header({ path: MANIFEST_NAME, mode: 0o600, size: text.length, type: "File", mtime: new Date(), uid: 0, gid: 0 });
    const re = new ReadEntry(header);
    pack.add(re);
    re.end(text);
    pack.end();
    await done;
    parser.end();
    throwIfAborted(ctx);
    const sha = fileHash.digest("hex");
    const base = basename(archivePath);
    writeSidecar(`${archivePath}.sha256`, `${sha}  ${base}\n`);
    writeSidecar(`${archivePath}.info.json`, JSON.stringify(infoOf(manifest, sha, fed, !!encrypt), null, 2) + "\n");
    partial.commit();
    progress?.done(`packed ${base}: ${manifest.entries.length} entries, ${formatBytes(manifest.totals.bytes)} → ${formatBytes(statSync(archivePath).size)}`);
    return manifest;
  } catch (e) {
    progress?.fail(`pack ${basename(archivePath)} failed`);
    (pack as unknown as Readable).destroy?.();
    await done.catch(() => {});
    partial.discard();
    const err = packError ?? (e as Error);
    if ((err as NodeJS.ErrnoException).code === "ENOSPC") {
      throw new LifeboatError(`no space left on the device of ${outDir} while writing ${basename(archivePath)}`, {
        hint: "free space or choose another backups folder; nothing was left behind",
        cause: err,
      });
    }
    throw err instanceof LifeboatError ? err : new LifeboatError(`packing ${sourceDir} into ${archivePath} failed: ${err.message}`, { cause: err });
  } finally {
    ctx.signal.removeEventListener("abort", onAbort);
  }
}

function writeSidecar(path: string, text: string): void {
  const f = partialFile(path);
  writeFileSync(f.tmp, text, { mode: 0o600 });
  f.commit();
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

/** The sidecar NAME.info.json: what `list` shows without opening the archive. */
export interface ArchiveInfo<M = Record<string, unknown>> {
  recipe: string;
  host: string;
  startedAt: string;
  finishedAt: string;
  sha256: string;
  encrypted: boolean;
  totals: Manifest["totals"];
  tarBytes: number;
  meta: M;
}

function infoOf<M>(m: Manifest<M>, sha256: string, tarBytes: number, encrypted: boolean): ArchiveInfo<M> {
  return { recipe: m.recipe, host: m.host, startedAt: m.startedAt, finishedAt: m.finishedAt, sha256, encrypted, totals: m.totals, tarBytes, meta: m.meta };
}

async function ageEncrypt(input: Readable, o: AgeOptions): Promise<Readable> {
  const e = new Encrypter();
  if (o.passphrase) e.setPassphrase(o.passphrase);
  for (const r of o.recipients ?? []) e.addRecipient(r);
  const web = Readable.toWeb(input) as unknown as ReadableStream<Uint8Array>;
  return Readable.fromWeb((await e.encrypt(web)) as unknown as import("node:stream/web").ReadableStream<Uint8Array>);
}

// ---------------------------------------------------------------------------------
// read side: open (decrypt, gunzip), check paths, compare with the manifest

function sniff(path: string): "age" | "gzip" | "tar" | "unknown" {
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.alloc(512);
    const n = readSync(fd, buf, 0, 512, 0);
    if (buf.subarray(0, AGE_MAGIC.length).toString("latin1") === AGE_MAGIC) return "age";
    if (n >= 2 && buf[0] === 0x1f && buf[1] === 0x8b) return "gzip";
    if (n === 512 && buf.subarray(257, 262).toString("latin1") === "ustar") return "tar";
    return "unknown";
  } finally {
    closeSync(fd);
  }
}

/**
 * Opens an archive as pipeline stages that yield tar bytes (file → sha256 → [age] → [gunzip]),
 * feeding the raw file's sha256 and byte progress. Callers pipeline(...stages, consumer), so
 * an error anywhere rejects that one pipeline.
 */
async function openTarStream(
  path: string,
  o: VerifyOptions,
  fileHash: ReturnType<typeof createHash>,
  onBytes: (n: number) => void,
  signal: AbortSignal,
): Promise<{ stages: (Readable | Transform)[]; encrypted: boolean }> {
  const kind = sniff(path);
  // An abort destroys the file stream: for an encrypted archive it sits outside the caller's pipeline.
  const file = createReadStream(path, { signal });
  const hasher = hashing(fileHash, onBytes);
  let stages: (Readable | Transform)[] = [file, hasher];
  if (kind === "age") {
    const d = new Decrypter();
    const k = o.decrypt ?? {};
    if (!k.passphrase && !k.identities?.length) {
      file.destroy();
      throw new VerifyError(`archive ${basename(path)} is encrypted and no passphrase or identity was given`, [], "pass the passphrase (file, env or command) or the age identity file");
    }
    if (k.passphrase) d.addPassphrase(k.passphrase);
    for (const id of k.identities ?? []) d.addIdentity(id);
    file.on("error", (e) => hasher.destroy(e));
    file.pipe(hasher);
    try {
      const plain = await d.decrypt(Readable.toWeb(hasher) as unknown as ReadableStream<Uint8Array>);
      stages = [Readable.fromWeb(plain as unknown as import("node:stream/web").ReadableStream<Uint8Array>)];
    } catch (e) {
      file.destroy();
      throw new VerifyError(`archive ${basename(path)}: the passphrase or identity does not open it (${(e as Error).message})`, [], "check the key; nothing was written");
    }
  }
  const inner = kind === "age" ? "gzip" : kind;
  if (inner === "gzip") stages.push(createGunzip());
  else if (inner !== "tar") {
    file.destroy();
    throw new VerifyError(`${basename(path)} is not a tar, tar.gz or age file`, [], "is this the right file?");
  }
  return { stages, encrypted: kind === "age" };
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

interface Scan {
  manifest: Manifest | null;
  seen: Map<string, ManifestEntry>;
  problems: string[];
  entries: number;
  bytes: number;
}

/** Reads every entry once: hashes, path safety and type checks. */
async function scan(path: string, o: VerifyOptions, ctx: Context): Promise<Scan & { sha256: string; encrypted: boolean }> {
  const fileHash = createHash("sha256");
  const size = statSync(path).size;
  const progress = o.progress === false ? null : ctx.log.progress(`verify ${basename(path)}`, { total: size });
  const problems: string[] = [];
  const seen = new Map<string, ManifestEntry>();
  const symlinks = new Set<string>();
  let manifestText: string | null = null;
  let entries = 0;
  let bytes = 0;
  const parser = new Parser({ strict: true });
  parser.on("entry", (e: ReadEntry) => {
    const p = normPath(e.path);
    const type = entryType(e.type);
    const isManifest = p === MANIFEST_NAME && type === "file";
    const chunks: Buffer[] = [];
    const hash = type === "file" ? createHash("sha256") : null;
    let n = 0;
    e.on("data", (d: Buffer) => {
      hash?.update(d);
      n += d.length;
      if (isManifest && n <= 64 << 20) chunks.push(d);
    });
    e.on("end", () => {
      if (isManifest) {
        manifestText = Buffer.concat(chunks).toString("utf8");
        return;
      }
      if (p === "") return; // "./", the root itself
      entries++;
      bytes += n;
      const bad = pathProblem(e.path);
      if (bad) problems.push(`${JSON.stringify(e.path)}: ${bad}; refused`);
      if (!type) problems.push(`${JSON.stringify(e.path)}: ${e.type} entries (devices, fifos …) are refused`);
      const parts = p.split("/");
      for (let i = 1; i < parts.length; i++) {
        const prefix = parts.slice(0, i).join("/");
        if (symlinks.has(prefix)) {
          problems.push(`${JSON.stringify(p)}: goes through the symlink ${JSON.stringify(prefix)}; refused`);
          break;
        }
      }
      if (type === "hardlink") {
        const t = e.linkpath ?? "";
        const tb = pathProblem(t);
        const tn = normPath(t);
        if (tb || !seen.has(tn) || seen.get(tn)!.type !== "file") {
          problems.push(`${JSON.stringify(p)}: hardlink to ${JSON.stringify(t)} ${tb ?? "outside the archive's earlier files"}; refused`);
        }
      }
      if (seen.has(p)) problems.push(`${JSON.stringify(p)}: appears twice; refused`);
      if (type === "symlink") symlinks.add(p);
      seen.set(p, entryOf(e, p, n, hash));
    });
  });
  const warnings: string[] = [];
  parser.on("warn", (_code: string, message: string) => warnings.push(message));

  let encrypted = false;
  try {
    const opened = await openTarStream(path, o, fileHash, (n) => progress?.add(n), ctx.signal);
    encrypted = opened.encrypted;
    await pipeline([...opened.stages, parser as unknown as Writable], { signal: ctx.signal });
  } catch (e) {
    progress?.fail(`verify ${basename(path)} failed`);
    throwIfAborted(ctx);
    if (e instanceof VerifyError) throw e;
    const msg = (e as Error).message;
    const what = /unexpected end|premature|truncat/i.test(msg)
      ? "is truncated"
      : /incorrect header check|invalid|crc|check|stored block|distance|bad/i.test(msg)
        ? "is damaged"
        : "could not be read";
    throw new VerifyError(`archive ${basename(path)} ${what} (${msg})`, [], "the archive is unusable; nothing was written. Use another copy.");
  }
  if (warnings.length) {
    progress?.fail(`verify ${basename(path)} failed`);
    throw new VerifyError(`archive ${basename(path)} is damaged (${warnings[0]})`, warnings, "the archive is unusable; nothing was written. Use another copy.");
  }
  let manifest: Manifest | null = null;
  if (manifestText !== null) {
    try {
      manifest = JSON.parse(manifestText);
      if (manifest?.format !== MANIFEST_FORMAT) problems.push(`manifest.json: unknown format ${JSON.stringify(manifest?.format)}`);
    } catch {
      problems.push("manifest.json: not valid JSON");
    }
  }
  const sha256 = fileHash.digest("hex");
  if (problems.length) progress?.fail(`verify ${basename(path)}: ${problems.length} problem(s)`);
  else progress?.done(`verified ${basename(path)}: ${entries} entries, ${formatBytes(bytes)}`);
  return { manifest, seen, problems, entries, bytes, sha256, encrypted };
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

/**
 * Reads the whole archive and checks every entry (type, size, sha256, mode, owner, mtime,
 * link target) against the manifest and every path for safety. Rejects with VerifyError
 * (exit 3) listing what is wrong. With `record`, writes NAME.verified beside it, passed or failed.
 * @example const report = await verifyArchive<DeisMeta>("/backups/deis-….tar.gz", { decrypt: { passphrase }, record: true });
 */
export async function verifyArchive<M = Record<string, unknown>>(archivePath: string, options: VerifyOptions = {}): Promise<VerifyReport<M>> {
  if (!options.record) return (await verifyScan<M>(archivePath, options)).report;
  const ctx = options.ctx ?? useContext();
  if (ctx.dryRun && !existsSync(archivePath)) {
    // A dry run's pack step wrote nothing: say what would be verified.
    ctx.log.command(`verify ${archivePath}`, "dry-run");
    return { manifest: null, entries: 0, bytes: 0, sha256: "", encrypted: false };
  }
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
  const base = basename(archivePath);
  try {
    statSync(archivePath);
  } catch {
    throw new VerifyError(`archive ${archivePath} does not exist`, [], "check the path");
  }
  const r = await scan(archivePath, options, ctx);
  const problems = [...r.problems];
  if (!r.manifest && options.requireManifest !== false && !problems.length) {
    throw new VerifyError(`archive ${base} has no ${MANIFEST_NAME}: not a lifeboat archive, or cut short`, [], "for a tarball made by another tool, extract it with requireManifest: false");
  }
  if (r.manifest) problems.push(...compareWithManifest(r.manifest, r.seen));
  try {
    const side = readFileSync(`${archivePath}.sha256`, "utf8").split(/\s+/)[0];
    if (side && side !== r.sha256) problems.push(`${base}: file sha256 differs from ${base}.sha256`);
  } catch { /* no sidecar: the manifest is the authority */ }
  if (problems.length) {
    const first = problems[0];
    throw new VerifyError(`archive ${base}: ${first}${problems.length > 1 ? ` (and ${problems.length - 1} more)` : ""}; the archive is damaged or unsafe`, problems, "restore refused before touching anything; use another copy");
  }
  return { report: { manifest: r.manifest as Manifest<M> | null, entries: r.entries, bytes: r.bytes, sha256: r.sha256, encrypted: r.encrypted }, seen: r.seen };
}

/**
 * Verifies an archive, then extracts it into targetDir. Refuses a non-empty target
 * unless `force`; never writes outside the target.
 * @example await unpackArchive(archive, "/var/lib/app", { sameOwner: true, decrypt: { identities } });
 */
export async function unpackArchive<M = Record<string, unknown>>(archivePath: string, targetDir: string, options: UnpackOptions = {}): Promise<VerifyReport<M>> {
  const ctx = options.ctx ?? useContext();
  const { report, seen } = await verifyScan<M>(archivePath, options);
  let existing: string[] = [];
  try {
    existing = readdirSync(targetDir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  if (existing.length && !options.force) {
    throw new RefusedError(
      `target ${targetDir} is not empty (${existing.length} entries: ${existing.slice(0, 5).join(", ")}${existing.length > 5 ? " …" : ""})`,
      "restore into an empty directory, or pass force to replace what is there",
    );
  }
  if (ctx.dryRun) {
    ctx.log.command(`extract ${basename(archivePath)} (${report.entries} entries, ${formatBytes(report.bytes)}) into ${targetDir}`, "dry-run");
    return report;
  }
  throwIfAborted(ctx);
  mkdirSync(targetDir, { recursive: true, mode: 0o700 });
  const isRoot = process.getuid?.() === 0;
  const preserveOwner = !!options.sameOwner && isRoot;
  const progress = options.progress === false ? null : ctx.log.progress(`extract ${basename(archivePath)}`, { total: statSync(archivePath).size });
  const warnings: string[] = [];
  const symlinks: ManifestEntry[] = [];
  const unpack = new Unpack({
    cwd: targetDir,
    strict: true,
    preservePaths: false,
    preserveOwner,
    processUmask: 0,
    filter: (p: string, e?: ReadEntry | Stats) => {
      const entry = e as ReadEntry;
      const rel = normPath(p);
      if (report.manifest && rel === MANIFEST_NAME) return false;
      if (entry.type === "SymbolicLink") {
        if (rel) symlinks.push(seen.get(rel) ?? entryOf(entry, rel, 0, null));
        return false;
      }
      // `Z:` → `./Z:`: node-tar strips what looks like a Windows root; on POSIX it is a name.
      if (looksRooted(p)) entry.path = `./${p}`;
      if (entry.type === "Link" && entry.linkpath && looksRooted(entry.linkpath)) entry.linkpath = `./${entry.linkpath}`;
      return true;
    },
    onwarn: (_code: string, message: string) => warnings.push(message),
  });
  const fileHash = createHash("sha256");
  try {
    const opened = await openTarStream(archivePath, options, fileHash, (n) => progress?.add(n), ctx.signal);
    await pipeline([...opened.stages, unpack as unknown as Writable], { signal: ctx.signal });
  } catch (e) {
    progress?.fail();
    throwIfAborted(ctx);
    throw new LifeboatError(`extracting ${basename(archivePath)} into ${targetDir} failed: ${(e as Error).message}`, { cause: e });
  }
  if (fileHash.digest("hex") !== report.sha256) {
    throw new VerifyError(`archive ${basename(archivePath)} changed while it was being restored`, [], "the archive file was modified during the restore; check the target and run again");
  }
  if (warnings.length) {
    progress?.fail();
    throw new LifeboatError(`extracting ${basename(archivePath)}: ${warnings[0]}`);
  }
  for (const l of symlinks) placeSymlink(targetDir, l, preserveOwner);
  // node-tar creates directories u+rwx so it can fill them; set their recorded modes
  // now, deepest first, as GNU tar does.
  const dirs = [...seen.values()].filter((e) => e.type === "dir").sort((a, b) => b.path.length - a.path.length);
  for (const d of dirs) chmodSync(join(targetDir, d.path), d.mode);
  progress?.done(`restored ${report.entries} entries (${formatBytes(report.bytes)}) into ${targetDir}`);
  return report;
}

/**
 * Creates one symlink as recorded (target text unchanged, owner when preserving owners,
 * mtime), after every file is in place. The path was checked by verify: relative, no
 * `..`, not below another symlink.
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
    unlinkSync(at); // forced restore: replace what is there, as node-tar does for files
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
