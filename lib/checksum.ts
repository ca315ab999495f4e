// checksum: `sha1sum`-format files beside archives, as LambdaStack's backup role writes them
// (`<sha1hex>  <archive basename>\n` in `<archive>.sha1`) and its recovery checks them.
import { createHash } from "node:crypto";
import { createReadStream, existsSync, readFileSync, writeFileSync, renameSync } from "node:fs";
import { basename } from "node:path";
import { pipeline } from "node:stream/promises";
import process from "node:process";
import { useContext, type Context } from "./context.ts";
import { VerifyError } from "./errors.ts";

/**
 * The sha1 of a file, hex, read as a stream.
 * @example const hex = await sha1File("/lsbackup/mounted/haproxy_etc_20260101-120000.tar.gz");
 */
export async function sha1File(path: string): Promise<string> {
  const h = createHash("sha1");
  await pipeline(createReadStream(path), h);
  return h.digest("hex");
}

/**
 * Writes `<path>.sha1` in sha1sum format (`sha1sum -c` checks it), atomically, 0600. In dry-run
 * it says so and writes nothing.
 * @example const sumFile = await writeSha1File(archive);   // archive + ".sha1"
 */
export async function writeSha1File(path: string, opts: { ctx?: Context } = {}): Promise<string> {
  const ctx = opts.ctx ?? useContext();
  const out = `${path}.sha1`;
  if (ctx.dryRun) {
    ctx.log.info(`[dry-run] sha1sum ${basename(path)} > ${out}`);
    return out;
  }
  const tmp = `${out}.partial-${process.pid}`;
  writeFileSync(tmp, `${await sha1File(path)}  ${basename(path)}\n`, { mode: 0o600 });
  renameSync(tmp, out);
  return out;
}

/**
 * Checks a file against its sha1sum-format file (default `<path>.sha1`): the sum must be the
 * file's and the name must be the file's. Throws a VerifyError (exit 3) saying which.
 * @example await checkSha1File(localCopy, `${localCopy}.sha1`);
 */
export async function checkSha1File(path: string, sumFile = `${path}.sha1`, opts: { name?: string } = {}): Promise<string> {
  const label = opts.name ?? basename(path);
  if (!existsSync(sumFile)) throw new VerifyError(`${label}: no checksum file ${basename(sumFile)}`, [], "the archive cannot be trusted without it; restore refused before touching anything");
  const line = readFileSync(sumFile, "utf8").split("\n")[0] ?? "";
  const m = /^([0-9a-f]{40}) [ *](.+)$/.exec(line.trim());
  if (!m) throw new VerifyError(`${label}: ${basename(sumFile)} is not in sha1sum format: ${JSON.stringify(line.slice(0, 80))}`, [], "the checksum file is damaged; restore refused before touching anything");
  if (m[2] !== label) throw new VerifyError(`${label}: ${basename(sumFile)} is for ${m[2]}`, [], "the checksum file belongs to another archive; restore refused before touching anything");
  const actual = await sha1File(path);
  if (actual !== m[1]) throw new VerifyError(`${label}: sha1 mismatch (file ${actual}, ${basename(sumFile)} says ${m[1]})`, [], "the archive or its checksum is damaged; restore refused before touching anything");
  return actual;
}
