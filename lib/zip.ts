// zip: check that a zip file is complete before anything trusts it.
//
// Xenon's ZIP and STREAM backups are flat zips of index files. A zip is complete when its end
// of central directory is there, every entry the central directory lists can be read, and
// every entry's bytes match the CRC-32 and size the central directory records. yauzl reads the
// structure (and refuses a missing or inconsistent central directory); zlib.crc32 checks the
// bytes, streamed entry by entry (constant memory). A complete zip can still be refused: an
// unsafe name (absolute, "..", a backslash; yauzl's own name check is reported as such), an
// entry in a folder (Xenon's are flat), or other files than the backup recorded (`expect`).
import { existsSync, statSync } from "node:fs";
import { crc32 } from "node:zlib";
import type { Entry, ZipFile } from "yauzl";
import { VerifyError } from "./errors.ts";
import { useContext, type Context } from "./context.ts";

/** One entry of a verified zip. */
export interface ZipEntryInfo {
  /** The entry's name as stored. */
  name: string;
  /** Uncompressed size in bytes. */
  size: number;
  /** CRC-32 of the uncompressed bytes (checked). */
  crc32: number;
}

/** Options for {@link verifyZip}. */
export interface VerifyZipOptions {
  /** Refuse entries in folders (names with "/"), as Xenon's backups are flat (default true). */
  flat?: boolean;
  /** The entries the zip must hold exactly (name and CRC-32, as a backup recorded them); any other set fails. */
  expect?: { name: string; crc32?: number }[];
  ctx?: Context;
}

/** What {@link verifyZip} found. */
export interface ZipReport {
  path: string;
  /** Size of the zip file. */
  bytes: number;
  entries: ZipEntryInfo[];
}

/**
 * Checks a zip: central directory present and consistent, every entry readable, its size and
 * CRC-32 as recorded, names safe (no absolute path, no `..`, no backslash; flat unless flat
 * is false).
 * Throws a VerifyError (exit 3) naming the file and the first problem. In a dry run a zip that
 * does not exist yet is described, not read.
 * @example const z = await verifyZip("/var/backups/xenon.zip"); console.log(z.entries.length);
 */
export async function verifyZip(path: string, opts: VerifyZipOptions = {}): Promise<ZipReport> {
  const ctx = opts.ctx ?? useContext();
  if (ctx.dryRun && !existsSync(path)) {
    ctx.log.command(`verify zip ${path} (central directory, sizes, CRC-32)`, "dry-run");
    return { path, bytes: 0, entries: [] };
  }
  const bad = (why: string) => {
    why = why.replace(/\.+$/, "");
    return new VerifyError(`zip ${path}: ${why}; it is not a complete zip`, [why], "take the backup again; nothing was restored from it");
  };
  const refuse = (why: string) => new VerifyError(`zip ${path}: ${why}; refused`, [why], "this zip was not written by Xenon's backup; do not restore from it");
  const unsafe = (name: string) => refuse(`unsafe entry name ${JSON.stringify(name)} (absolute, "..", or a backslash)`);
  /** yauzl refuses such names itself (its validateFileName), before lifeboat sees the entry. */
  const yauzlError = (e: Error) => {
    const m = /^(?:invalid relative path|absolute path|invalid characters in fileName): (.*)$/s.exec(e.message);
    return m ? unsafe(m[1]) : bad(e.message);
  };
  let bytes: number;
  try {
    bytes = statSync(path).size;
  } catch (e) {
    throw new VerifyError(`zip ${path}: ${(e as Error).message}`);
  }
  const { default: yauzl } = await import("yauzl");
  const zip = await new Promise<ZipFile>((ok, fail) =>
    yauzl.open(path, { lazyEntries: true, autoClose: false, validateEntrySizes: true, strictFileNames: true }, (err, z) => (err || !z ? fail(bad(err?.message ?? "cannot open")) : ok(z)))
  );
  const entries: ZipEntryInfo[] = [];
  try {
    await new Promise<void>((ok, fail) => {
      zip.on("error", (e: Error) => fail(yauzlError(e)));
      zip.on("end", () => ok());
      zip.on("entry", (entry: Entry) => {
        const name = entry.fileName;
        if (name.startsWith("/") || name.split("/").includes("..") || name.includes("\\")) return fail(unsafe(name));
        if (opts.flat !== false && name.includes("/")) return fail(refuse(`entry ${JSON.stringify(name)} is in a folder; Xenon's backups are flat`));
        zip.openReadStream(entry, (e, stream) => {
          if (e || !stream) return fail(bad(`${name}: ${e?.message ?? "unreadable"}`));
          let crc = 0;
          let size = 0;
          stream.on("data", (b: Buffer) => {
            crc = crc32(b, crc);
            size += b.length;
          });
          stream.on("error", (x: Error) => fail(bad(`${name}: ${x.message}`)));
          stream.on("end", () => {
            if (ctx.signal.aborted) return fail(ctx.signal.reason);
            if (crc >>> 0 !== entry.crc32 >>> 0) return fail(bad(`${name}: CRC-32 ${hex(crc)} where the central directory says ${hex(entry.crc32)}`));
            entries.push({ name, size, crc32: crc >>> 0 });
            zip.readEntry();
          });
        });
      });
      zip.readEntry();
    });
  } finally {
    zip.close();
  }
  if (opts.expect) {
    const key = (e: { name: string; crc32?: number }) => `${e.name}:${e.crc32}`;
    const want = new Set(opts.expect.map(key));
    const got = new Set(entries.map(key));
    const missing = [...want].filter((k) => !got.has(k));
    const extra = [...got].filter((k) => !want.has(k));
    if (missing.length || extra.length) {
      throw new VerifyError(`zip ${path}: its files differ from the list the backup recorded`, [...missing.map((k) => `missing or changed: ${k}`), ...extra.map((k) => `not in the backup's list: ${k}`)], "restore refused; take the archive again");
    }
  }
  return { path, bytes, entries };
}

const hex = (n: number) => (n >>> 0).toString(16).padStart(8, "0");
