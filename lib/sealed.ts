// Sealed files: a byte stream gzipped, encrypted (age, or ccrypt with a key file) and written
// atomically, with the sha256 of the bytes on disk; and the way back, verified first.
//
// ccrypt has no integrity check (a truncated file decrypts to truncated plaintext with exit 0),
// so a sealed file is only trusted against the sha256 recorded when it was written: `verifySealed`
// checks the sha256, then decrypts and gunzips to the end, before anything reads it for real.
// Everything streams: memory stays constant whatever the size. gzip is pigz when installed
// (lib/compress.ts); node-tar and age-encryption are loaded at first use.
import { createHash } from "node:crypto";
import { chmodSync, createReadStream, createWriteStream, existsSync, lstatSync, mkdirSync, readdirSync, rmdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { PassThrough, Readable, Transform, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { LifeboatError, VerifyError } from "./errors.ts";
import { exec, ExecError } from "./exec.ts";
import { captureToFile, diskFull, partialFile } from "./files.ts";
import { startCompressor } from "./compress.ts";
import { fileDigest } from "./checksum.ts";
import { useContext, type Context } from "./context.ts";
import type { AgeOptions } from "./archive.ts";

/** How a sealed file is encrypted. */
export type Seal =
  /** age, with a passphrase or recipients (writing) / a passphrase or identities (reading). */
  | { kind: "age"; age: AgeOptions }
  /** ccrypt with a key file (`ccrypt -e -k KEYFILE`), HCoop's `.aescrypt` files. */
  | { kind: "ccrypt"; keyFile: string }
  /** Only gzip (tests, or a target that encrypts by itself). */
  | { kind: "none" };

/** The file name suffix of a sealed file: ".gz.age", ".gz.aescrypt" or ".gz". */
export function sealSuffix(seal: Seal): string {
  return seal.kind === "age" ? ".gz.age" : seal.kind === "ccrypt" ? ".gz.aescrypt" : ".gz";
}

/** What {@link sealToFile} wrote. */
export interface SealResult {
  path: string;
  /** Bytes on disk. */
  bytes: number;
  /** sha256 (hex) of the bytes on disk. */
  sha256: string;
  /** Bytes before gzip. */
  plainBytes: number;
}

/** Options for {@link sealToFile}. */
export interface SealOptions {
  seal: Seal;
  /** gzip level (default 6, as gzip). */
  level?: number;
  /** How the producer is described in dry-run and errors, e.g. "vos dump -id user.pat.backup". */
  label?: string;
  ctx?: Context;
}

function hashing(hash: ReturnType<typeof createHash>, count: (n: number) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _e, cb) {
      hash.update(chunk);
      count(chunk.length);
      cb(null, chunk);
    },
  });
}

/**
 * Runs produce(sink), which writes a stream into sink and ends it (e.g. exec's stdout), and
 * stores it gzipped and encrypted at path: a hidden partial file, renamed into place only when
 * every stage succeeded. In dry-run it prints what it would write and calls nothing.
 * @example
 * await sealToFile((sink) => exec(["vos", "dump", "-id", "user.pat.backup"], { stdout: sink }), "/backups/2026.11.29-user.pat.dump.gz.age", { seal: { kind: "age", age } });
 */
export async function sealToFile(produce: (sink: Writable) => Promise<unknown>, path: string, opts: SealOptions): Promise<SealResult> {
  const ctx = opts.ctx ?? useContext();
  const how = opts.seal.kind === "ccrypt" ? ` | ccrypt -e -k ${opts.seal.keyFile}` : opts.seal.kind === "age" ? " | age -e" : "";
  if (ctx.dryRun) {
    ctx.log.command(`${opts.label ?? "(stream)"} | gzip${how} > ${path}`, "dry-run");
    return { path, bytes: 0, sha256: "", plainBytes: 0 };
  }
  return captureToFile(path, async (tmp) => {
    let plainBytes = 0;
    let bytes = 0;
    const hash = createHash("sha256");
    const counter = new Transform({ transform(c: Buffer, _e, cb) { plainBytes += c.length; cb(null, c); } });
    // The key first: nothing is started when it is missing or wrong.
    let encrypter: import("age-encryption").Encrypter | undefined;
    if (opts.seal.kind === "age") {
      if (!opts.seal.age.passphrase && !opts.seal.age.recipients?.length) throw new LifeboatError("age encryption needs a passphrase or recipients", { hint: "set age.passphrase(-file) or age.recipients" });
      const { Encrypter } = await import("age-encryption");
      encrypter = new Encrypter();
      if (opts.seal.age.passphrase) encrypter.setPassphrase(opts.seal.age.passphrase);
      for (const r of opts.seal.age.recipients ?? []) encrypter.addRecipient(r);
    }
    const comp = startCompressor({ level: opts.level ?? 6, ctx });
    const gz = comp.output;
    const jobs: Promise<unknown>[] = [comp.done];
    let encrypted: Readable;
    if (encrypter) {
      const web = Readable.toWeb(gz) as unknown as ReadableStream<Uint8Array>;
      encrypted = Readable.fromWeb((await encrypter.encrypt(web)) as unknown as import("node:stream/web").ReadableStream<Uint8Array>);
    } else if (opts.seal.kind === "ccrypt") {
      const out = new PassThrough();
      jobs.push(exec(["ccrypt", "-e", "-k", opts.seal.keyFile], { stdin: gz, stdout: out, ctx }));
      encrypted = out;
    } else encrypted = gz;
    const producer = new PassThrough();
    jobs.push(pipeline(producer, counter, comp.input));
    jobs.push(pipeline(encrypted, hashing(hash, (n) => (bytes += n)), createWriteStream(tmp, { mode: 0o600 })));
    jobs.unshift(produce(producer));
    const settled = await Promise.allSettled(jobs);
    const failed = settled.find((s) => s.status === "rejected") as PromiseRejectedResult | undefined;
    if (failed) {
      for (const s of [producer, comp.input, gz, encrypted]) s.destroy();
      throw failed.reason;
    }
    return { path, bytes, sha256: hash.digest("hex"), plainBytes };
  }, { label: opts.label ?? path });
}

/** Options for {@link verifySealed} and {@link unsealTo}. */
export interface UnsealOptions {
  seal: Seal;
  /** The sha256 recorded when the file was written: checked before anything is decrypted. */
  sha256?: string;
  /** Bytes on disk recorded when written (a cheaper first check). */
  bytes?: number;
  ctx?: Context;
}

/** Streams the plaintext of a sealed file (decrypt, gunzip) into sink; `tap` sees the file's bytes as they are read. */
async function plainInto(path: string, sink: Writable, o: UnsealOptions, ctx: Context, tap?: Transform): Promise<void> {
  const name = path.split("/").pop();
  // The file's bytes, through tap when there is one (one read serves the sha256 and the unsealing).
  const fileBytes = (): Readable => {
    const file = createReadStream(path, { highWaterMark: 1 << 20 });
    if (!tap) return file;
    file.on("error", (e) => tap.destroy(e));
    return file.pipe(tap);
  };
  if (o.seal.kind === "ccrypt") {
    // ccrypt's output goes through a PassThrough, so its exit code (4: wrong key) is what exec
    // reports, not gunzip's complaint about the empty stream that follows.
    const between = new PassThrough();
    const tail = pipeline(between, createGunzip(), sink).then(() => null, (e: Error) => e);
    try {
      await exec(["ccrypt", "-c", "-d", "-k", o.seal.keyFile], { stdin: tap ? fileBytes() : { file: path }, stdout: between, ctx });
    } catch (e) {
      // With the error: a PassThrough destroyed without one may never settle the pipeline behind it,
      // and an interrupted run would then hang on `tail` (node exits 13, the lock still held).
      between.destroy(e as Error);
      await tail;
      if (e instanceof ExecError && e.code === 4) throw new VerifyError(`${name}: the ccrypt key ${o.seal.keyFile} does not open it`, [], "check the key file; nothing was restored");
      throw e;
    }
    const err = await tail;
    if (err) throw new VerifyError(`${name}: not a whole gzip stream after decryption (${err.message})`, [], "the file is damaged or the key is wrong; use another copy");
    return;
  }
  const file = fileBytes();
  let plain: Readable = file;
  if (o.seal.kind === "age") {
    const { Decrypter } = await import("age-encryption");
    const d = new Decrypter();
    if (o.seal.age.passphrase) d.addPassphrase(o.seal.age.passphrase);
    for (const id of o.seal.age.identities ?? []) d.addIdentity(id);
    try {
      plain = Readable.fromWeb((await d.decrypt(Readable.toWeb(file) as unknown as ReadableStream<Uint8Array>)) as unknown as import("node:stream/web").ReadableStream<Uint8Array>);
    } catch (e) {
      file.destroy();
      throw new VerifyError(`${name}: the age passphrase or identity does not open it (${(e as Error).message})`, [], "check the key; nothing was restored");
    }
  }
  await pipeline(plain, createGunzip(), sink).catch((e: Error) => {
    throw new VerifyError(`${name}: damaged (${e.message})`, [], "use another copy; nothing was restored");
  });
}

/** sha256 and size of a file, streamed. */
export async function fileSha256(path: string): Promise<{ sha256: string; bytes: number }> {
  const d = await fileDigest(path, "sha256");
  return { sha256: d.digest, bytes: d.bytes };
}

/**
 * Proves a sealed file is whole and opens with the key: its sha256 (when recorded), then a full
 * decrypt + gunzip to nowhere. Throws VerifyError (exit 3) naming the file otherwise. Read-only:
 * runs in dry-run too (when the file is there).
 * @example await verifySealed(file, { seal, sha256: manifest.files[name].sha256 });
 */
export async function verifySealed(path: string, o: UnsealOptions): Promise<{ bytes: number; plainBytes: number }> {
  const ctx = o.ctx ?? useContext();
  const got = await fileSha256(path);
  checkRecorded(path, got, o);
  let plainBytes = 0;
  await plainInto(path, new Writable({ write(c: Buffer, _e, cb) { plainBytes += c.length; cb(); } }), o, ctx);
  return { bytes: got.bytes, plainBytes };
}

/** Throws VerifyError (exit 3) when a file's size or sha256 is not what was recorded. */
function checkRecorded(path: string, got: { sha256: string; bytes: number }, o: { sha256?: string; bytes?: number }): void {
  const name = path.split("/").pop();
  if (o.bytes !== undefined && got.bytes !== o.bytes) {
    throw new VerifyError(`${name}: ${got.bytes} bytes, the manifest says ${o.bytes} (truncated or damaged)`, [], "use another copy (backup-manager get); nothing was restored");
  }
  if (o.sha256 && got.sha256 !== o.sha256) {
    throw new VerifyError(`${name}: sha256 mismatch (file ${got.sha256.slice(0, 12)}…, manifest ${o.sha256.slice(0, 12)}…); the file is damaged or truncated`, [], "use another copy (backup-manager get); nothing was restored");
  }
}

/**
 * Streams the plaintext of a sealed file into sink (decrypt → gunzip). Verify first with
 * {@link verifySealed}: this one trusts the file.
 * @example await unsealTo(file, childStdin, { seal });
 */
export async function unsealTo(path: string, sink: Writable, o: UnsealOptions): Promise<void> {
  await plainInto(path, sink, o, o.ctx ?? useContext());
}

/**
 * Writes a JSON file atomically (partial name, fsync, rename), mode 0600; in dry-run prints
 * what it would write. For the manifests beside sealed files.
 * @example await writeJsonFile(`${dir}/2026.11.29-manifest.json`, manifest);
 */
export async function writeJsonFile(path: string, value: unknown, opts: { ctx?: Context } = {}): Promise<void> {
  const ctx = opts.ctx ?? useContext();
  if (ctx.dryRun) {
    ctx.log.command(`write ${path}`, "dry-run");
    return;
  }
  await captureToFile(path, async (tmp) => writeFileSync(tmp, JSON.stringify(value, null, 2) + "\n", { mode: 0o600 }));
}

/**
 * Seals a folder's regular files (one level, names sorted) as one tar: `tar -c | gzip | age|ccrypt`
 * into path, atomically, with its sha256 (the runbook's YYYY.MM.DD-databases.tar.gz.aescrypt).
 * In dry-run it prints the pipeline, also when the folder does not exist yet.
 * @example const r = await sealTreeToFile(`${stage}/db`, `${day}/2026.11.29-databases.tar.gz.age`, { seal });
 */
export async function sealTreeToFile(dir: string, path: string, opts: SealOptions): Promise<SealResult> {
  const names = existsSync(dir) ? readdirSync(dir).filter((n) => statSync(`${dir}/${n}`).isFile()).sort() : [];
  const label = opts.label ?? `tar -C ${dir} -c ${names.length ? names.join(" ") : "."}`;
  const { create: tarCreate } = await import("tar");
  return sealToFile((sink) => pipeline(tarCreate({ cwd: dir, portable: true }, names.map((n) => `./${n}`)) as unknown as Readable, sink), path, { ...opts, label });
}

/** The entries a sealed tree holds and unsealTreeTo writes: regular files at its top level. */
const isPlainTopFile = (path: string, type: string | undefined) => type === "File" && !path.replace(/^\.\//, "").includes("/");

/**
 * Why dir is not what unpacking the sealed tar at path gives (null when it is: the same names,
 * each file's bytes equal, mode 0600). Reads the archive once, checked against sha256/bytes, and
 * each file in dir once; writes nothing.
 */
async function unpackedAlready(path: string, dir: string, o: UnsealOptions, ctx: Context): Promise<string | null> {
  if (o.bytes !== undefined) checkRecorded(path, { sha256: "", bytes: statSync(path).size }, { bytes: o.bytes });
  const { Parser } = await import("tar");
  const inArchive = new Map<string, { sha256: string; bytes: number }>();
  const parser = new Parser({ strict: true });
  parser.on("entry", (e: import("tar").ReadEntry) => {
    const name = e.path.replace(/^\.\//, "");
    if (!isPlainTopFile(e.path, e.type)) return void e.resume();
    const h = createHash("sha256");
    let n = 0;
    e.on("data", (d: Buffer) => (h.update(d), (n += d.length)));
    e.on("end", () => inArchive.set(name, { sha256: h.digest("hex"), bytes: n }));
  });
  const hash = createHash("sha256");
  let bytes = 0;
  try {
    await plainInto(path, parser as unknown as Writable, { ...o, ctx }, ctx, hashing(hash, (k) => (bytes += k)));
  } catch (e) {
    if (o.sha256 && !ctx.signal.aborted) checkRecorded(path, await fileSha256(path), o);
    throw e;
  }
  checkRecorded(path, { sha256: hash.digest("hex"), bytes }, o);
  const here = readdirSync(dir).sort();
  const extra = here.filter((n) => !inArchive.has(n));
  if (extra.length) return `${extra.slice(0, 3).join(", ")}${extra.length > 3 ? ", …" : ""} not from ${path.split("/").pop()}`;
  const missing = [...inArchive.keys()].filter((n) => !here.includes(n));
  if (missing.length) return `without ${missing.slice(0, 3).join(", ")}${missing.length > 3 ? ", …" : ""}`;
  for (const n of here) {
    const st = lstatSync(join(dir, n)); // a link is not what the unpack writes
    const want = inArchive.get(n)!;
    if (!st.isFile() || st.size !== want.bytes || (st.mode & 0o777) !== 0o600 || (await fileSha256(join(dir, n))).sha256 !== want.sha256) return `${n} differs from the archive's`;
  }
  return null;
}

/**
 * Unpacks a sealed tar (from {@link sealTreeToFile}) into dir, which must be new or empty, or
 * already hold exactly the archive's files (a run killed after its last move: nothing is written):
 * decrypt → gunzip → untar, regular files only (no links, devices, absolute paths or `..`),
 * mode 0600. The file is read once: with `sha256`/`bytes` it is checked as it is unpacked, into
 * a hidden `.partial-NAME.PID` folder beside dir that is moved into place only when the file was
 * whole and opened; otherwise nothing appears at dir (a killed run's folder is removed by the next).
 * Returns the names written. In dry-run it prints what it would do.
 * @example await unsealTreeTo(f, "/vicepa/hcoop-backups/restored/2026.11.29-db", { seal, sha256, bytes });
 */
export async function unsealTreeTo(path: string, dir: string, o: UnsealOptions): Promise<string[]> {
  const ctx = o.ctx ?? useContext();
  if (ctx.dryRun) {
    ctx.log.command(`${o.seal.kind === "ccrypt" ? `ccrypt -cdk ${o.seal.keyFile} < ${path}` : o.seal.kind === "age" ? `age -d < ${path}` : `cat ${path}`} | gunzip | tar -C ${dir} -x`, "dry-run");
    return [];
  }
  if (existsSync(dir) && readdirSync(dir).length) {
    // A run killed after it moved the folder into place (before its step was recorded) finds its
    // own work here: accepted when the folder holds exactly the archive's files, byte for byte.
    const differs = await unpackedAlready(path, dir, o, ctx);
    if (differs === null) {
      ctx.log.info(`${dir} already holds every file of ${path.split("/").pop()}, byte for byte: nothing to unpack`);
      return readdirSync(dir).sort();
    }
    throw new LifeboatError(`${dir} is not empty (${differs})`, { hint: "move it away or remove it; nothing was unpacked", exitCode: 5 });
  }
  // A size that is already wrong is said before anything is decrypted.
  if (o.bytes !== undefined) checkRecorded(path, { sha256: "", bytes: statSync(path).size }, { bytes: o.bytes });
  mkdirSync(dirname(dir), { recursive: true, mode: 0o700 });
  const stage = partialFile(dir);
  rmSync(stage.tmp, { recursive: true, force: true });
  mkdirSync(stage.tmp, { mode: 0o700 });
  const names: string[] = [];
  const refused: string[] = [];
  const hash = createHash("sha256");
  let bytes = 0;
  try {
    const { extract: tarExtract } = await import("tar");
    const unpack = tarExtract({
      cwd: stage.tmp, strict: true, preservePaths: false,
      filter: (p, entry) => {
        const ok = isPlainTopFile(p, (entry as { type?: string }).type);
        (ok ? names : refused).push(p);
        return ok;
      },
    });
    let unpackError: NodeJS.ErrnoException | undefined;
    const done = new Promise<void>((res, rej) => { unpack.on("close", () => res()); unpack.on("error", (e: Error) => rej((unpackError ??= e))); });
    done.catch(() => {}); // awaited below; it may reject (ENOSPC) while the file is still being read
    const sink = new Writable({
      write(c: Buffer, _e, cb) { if (unpack.write(c)) cb(); else unpack.once("drain", () => cb()); },
      final(cb) { unpack.end(); done.then(() => cb(), cb); },
    });
    try {
      await plainInto(path, sink, { ...o, ctx }, ctx, hashing(hash, (n) => (bytes += n)));
      await done;
    } catch (e) {
      // A full disk is named as such (not as a damaged file); a damaged file by its sha256 (the
      // cause) rather than by what decrypting it said.
      if (unpackError?.code === "ENOSPC" || diskFull(stage.tmp)) {
        throw new LifeboatError(`no space left on ${dirname(dir)} while unpacking ${path.split("/").pop()} (${(unpackError ?? (e as Error)).message.split("\n")[0]})`, {
          hint: `free space on ${dirname(dir)}; nothing was left there`, cause: e,
        });
      }
      if (o.sha256 && !ctx.signal.aborted) checkRecorded(path, await fileSha256(path), o);
      throw e;
    }
    checkRecorded(path, { sha256: hash.digest("hex"), bytes }, o);
    const out = names.map((n) => n.replace(/^\.\//, ""));
    for (const n of out) chmodSync(join(stage.tmp, n), 0o600);
    if (existsSync(dir)) rmdirSync(dir); // new or empty (checked above)
    stage.commit();
    if (refused.length) ctx.log.warn(`${path.split("/").pop()}: left out ${refused.length} entr${refused.length === 1 ? "y" : "ies"} that are not plain files: ${refused.slice(0, 5).join(", ")}`);
    return out;
  } catch (e) {
    rmSync(stage.tmp, { recursive: true, force: true });
    throw e;
  }
}
