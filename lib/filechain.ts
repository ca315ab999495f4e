// filechain: incremental backups of a folder of immutable files (Xenon's DIRECTORY backups,
// Lucene index files), kept in a store folder so that ANY run can be put together again.
//
// Store layout (a local folder; see docs/xenon.md for ssh and S3 through the off-site code):
//   STORE/files/CHAIN/NAME     each immutable file, shipped once per chain (0600)
//   STORE/runs/RUN.json        one manifest per run: its chain and EVERY file that snapshot needs
//                              (name, size, sha256), what it added and what it dropped
// A chain starts at a full run (the workspace was cleared, everything is new) and grows with
// incremental runs that ship only the names that are new. A run's manifest is written last,
// atomically: a run killed before it is not a run. Pruning drops run manifests and then only
// the files no kept run lists.
//
// Off-site (chainPush, chainFetch, chainPruneOffsite; through lib/offsite.ts, so s3://, ssh://
// and local paths): each run goes as ONE archive of the files it shipped plus its manifest,
// LABEL-CHAIN-RUN.tar.gz[.age], copied and verified there by offsiteCopy (it appears under its
// name only when whole, so its manifest arrives last). Any run is put together again from the
// archives of its chain up to it (chainFetch, then chainAssemble). Off-site retention drops
// whole chains only: a run's archive holds files that later runs of its chain may still need.
import { copyFileSync, createReadStream, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import process from "node:process";
import { join } from "node:path";
import { LifeboatError, UsageError, VerifyError } from "./errors.ts";
import { useContext, type Context } from "./context.ts";
import { captureToFile } from "./files.ts";
import { removeArchive, unpackArchive, type AgeOptions } from "./archive.ts";
import { backupArchive, stamp } from "./backups.ts";
import { offsiteCopy, offsiteFetch, offsiteList, offsiteRemove, parseOffsite, type OffsiteOptions } from "./offsite.ts";

/** One file a run needs. */
export interface ChainFile {
  name: string;
  size: number;
  sha256: string;
}

/** A run's manifest (STORE/runs/RUN.json). */
export interface ChainRun<M = unknown> {
  run: string;
  chain: string;
  full: boolean;
  at: string;
  files: ChainFile[];
  added: string[];
  removed: string[];
  /** Bytes shipped by this run. */
  shippedBytes: number;
  /** The names this run copied into the store (the rest were there already). */
  shipped?: string[];
  meta?: M;
}

/** Options for {@link chainShip}. */
export interface ChainShipOptions<M> {
  /** The run's id (a UTC stamp): the manifest's name. */
  run: string;
  /** A full run starts a new chain (the workspace was cleared before the backup). */
  full: boolean;
  /** The workspace's names before the backup (the runbook's "ls /backup" kept from last time). */
  before: string[];
  /** Recorded in the manifest. */
  meta?: M;
  /**
   * The workspace is on another host (a DIRECTORY backup over ssh): its files as listed there
   * (sshListFiles). Then `workspace` is a local folder holding only the files fetched from it,
   * which must be at least those {@link chainWanted} names; each must have its listed size.
   */
  listing?: { name: string; size: number }[];
  /**
   * The run is a resumed one: its manifest may be in the store already (the run was killed after
   * writing it, before it could record so), and is then returned as it is. Otherwise an existing
   * manifest of that name is refused (default false).
   */
  resumed?: boolean;
  ctx?: Context;
}

const safeName = (n: string) => n !== "." && n !== ".." && !n.includes("/") && !n.includes("\0");

/**
 * The regular files in a folder, sorted ("ls /backup"); [] when it does not exist.
 * @example const before = listNames("/backup");
 */
export function listNames(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((n) => statSync(join(dir, n)).isFile()).sort();
}

/** Every run in the store, oldest first. */
export function chainRuns<M = unknown>(store: string): ChainRun<M>[] {
  const dir = join(store, "runs");
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((n) => n.endsWith(".json") && !n.startsWith(".")).sort().map((n) => JSON.parse(readFileSync(join(dir, n), "utf8")) as ChainRun<M>);
}

/**
 * A name for the next run of a store: the UTC stamp of now (seconds), or, when the store's newest
 * run already has that second or a later one (two runs within one second), the second after it.
 * Run manifests are named by it and must never replace one another.
 * @example const run = chainRunName("/srv/xenon-store"); // "2026-11-21T101501Z" when …101500Z exists
 */
export function chainRunName(store: string, now: Date = new Date()): string {
  const dir = join(store, "runs");
  const newest = existsSync(dir) ? readdirSync(dir).filter((n) => n.endsWith(".json") && !n.startsWith(".")).map((n) => n.slice(0, -5)).sort().at(-1) : undefined;
  const run = stamp(now);
  if (!newest || run > newest) return run;
  const after = runDate(newest).getTime() + 1000;
  return Number.isNaN(after) ? run : stamp(new Date(after));
}

async function sha256(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const b of createReadStream(path)) h.update(b as Buffer);
  return h.digest("hex");
}

/**
 * Ships a workspace after a backup into the store: compares names with `before` (index files
 * are immutable, so names suffice), copies the files the chain does not hold yet, and writes
 * the run's manifest listing every file the snapshot needs. An incremental run joins the
 * newest run's chain; a full run starts its own. In a dry run it only says what it would do.
 * @example const r = await chainShip("/backup", "/srv/xenon-store", { run: stamp(), full: false, before });
 */
export async function chainShip<M>(workspace: string, store: string, opts: ChainShipOptions<M>): Promise<ChainRun<M>> {
  const ctx = opts.ctx ?? useContext();
  const listed = opts.listing && new Map(opts.listing.map((f) => [f.name, f.size]));
  const after = listed ? [...listed.keys()].sort() : ctx.dryRun && !existsSync(workspace) ? [] : listNames(workspace);
  const prev = chainRuns<M>(store).at(-1);
  if (!opts.full && !prev) throw new UsageError(`the store ${store} holds no run yet: the first run must be a full one`, "run it with --full (the daily full backup)");
  const chain = opts.full ? opts.run : prev!.chain;
  const was = new Set(opts.before);
  const now = new Set(after);
  const added = after.filter((n) => !was.has(n));
  const removed = opts.before.filter((n) => !now.has(n));
  if (ctx.dryRun) {
    ctx.log.command(`ship the new files of ${workspace} to ${store}/files/${chain}/ and write ${store}/runs/${opts.run}.json`, "dry-run");
    return { run: opts.run, chain, full: opts.full, at: new Date().toISOString(), files: [], added, removed, shippedBytes: 0, meta: opts.meta };
  }
  if (existsSync(join(store, "runs", `${opts.run}.json`))) {
    if (opts.resumed) {
      ctx.log.info(`run ${opts.run} is in ${store} already (the interrupted run shipped it): kept as it is`);
      return JSON.parse(readFileSync(join(store, "runs", `${opts.run}.json`), "utf8")) as ChainRun<M>;
    }
    throw new LifeboatError(`the store ${store} already holds a run ${opts.run}: a run's manifest is never replaced`, { hint: "name each run with chainRunName(store)" });
  }
  const bad = after.filter((n) => !safeName(n));
  if (bad.length) throw new LifeboatError(`${workspace}: unusable file names ${JSON.stringify(bad)}`);
  const known = new Map((prev && prev.chain === chain ? prev.files : []).map((f) => [f.name, f]));
  const files: ChainFile[] = [];
  const shipped: string[] = [];
  let shippedBytes = 0;
  const folder = join(store, "files", chain);
  mkdirSync(folder, { recursive: true, mode: 0o700 });
  for (const name of after) {
    const src = join(workspace, name);
    const size = listed ? listed.get(name)! : statSync(src).size;
    const stored = join(folder, name);
    const old = known.get(name);
    if (old && was.has(name) && existsSync(stored) && statSync(stored).size === size) {
      files.push(old); // immutable: same name, same bytes as the run before
      continue;
    }
    if (listed && !existsSync(src)) throw new LifeboatError(`${name} (${size} bytes on the host) was not fetched into ${workspace}, and chain ${chain} does not hold it`, { hint: "fetch the names chainWanted lists; run the backup again" });
    if (listed && statSync(src).size !== size) throw new VerifyError(`${name}: ${statSync(src).size} bytes fetched into ${workspace}, the host listed ${size}`, [`${name}: size mismatch`], "the fetch was cut off or the file changed on the host; run the backup again");
    const sum = await sha256(src);
    if (existsSync(stored)) {
      if ((await sha256(stored)) !== sum) {
        throw new VerifyError(`${name} in ${workspace} differs from the ${name} already in chain ${chain}: index files must be immutable`, [], "start a new chain with a full run (--full)");
      }
    } else await captureToFile(stored, async (tmp) => copyFileSync(src, tmp), { label: `${name} into ${folder}` });
    // Shipped by this run: not in the chain's newest run, also when it is in the store already (a
    // run killed while shipping copied it): its off-site archive must hold it (chainPush).
    if (!known.has(name)) {
      shippedBytes += size;
      shipped.push(name);
    }
    files.push({ name, size, sha256: sum });
  }
  const run: ChainRun<M> = { run: opts.run, chain, full: opts.full, at: new Date().toISOString(), files, added, removed, shippedBytes, shipped, meta: opts.meta };
  await captureToFile(join(store, "runs", `${opts.run}.json`), async (tmp) => writeFileSync(tmp, JSON.stringify(run, null, 2) + "\n"));
  return run;
}

/**
 * Which files of a workspace on another host (its listing: names and sizes) a run must fetch
 * before {@link chainShip} with `listing`: those that were not in the workspace before the backup
 * (`before`) or that the newest run's chain does not hold under the same name and size (index
 * files are immutable, so names and sizes against that run's manifest suffice); every file for a
 * full run, which starts a chain. The same rule chainShip applies to a local workspace.
 * @example const fetch = chainWanted(store, await sshListFiles(host, "/backup"), { full: false, before });
 */
export function chainWanted(store: string, listing: { name: string; size: number }[], opts: { full: boolean; before: string[] }): string[] {
  const prev = opts.full ? undefined : chainRuns(store).at(-1);
  const held = new Map((prev?.files ?? []).map((f) => [f.name, f.size]));
  const was = new Set(opts.before);
  const folder = prev ? join(store, "files", prev.chain) : "";
  return listing.filter((f) => !was.has(f.name) || held.get(f.name) !== f.size || !existsSync(join(folder, f.name)) || statSync(join(folder, f.name)).size !== f.size).map((f) => f.name);
}

/**
 * Puts one run's files together in an empty folder, checking each file's size and sha256
 * against the run's manifest (a VerifyError, exit 3, names the first damaged or missing file).
 * @example const run = await chainAssemble("/srv/xenon-store", "2026-11-21T101500Z", "/tmp/restore");
 */
export async function chainAssemble<M = unknown>(store: string, run: string, dir: string, opts: { ctx?: Context } = {}): Promise<ChainRun<M>> {
  const ctx = opts.ctx ?? useContext();
  const manifest = join(store, "runs", `${run}.json`);
  if (!existsSync(manifest)) {
    const runs = chainRuns(store).map((r) => r.run);
    throw new UsageError(`no run ${run} in ${store}`, runs.length ? `runs there: ${runs.slice(-8).join(", ")}` : "the store holds no runs");
  }
  const r = JSON.parse(readFileSync(manifest, "utf8")) as ChainRun<M>;
  if (ctx.dryRun) {
    ctx.log.command(`assemble run ${run} (${r.files.length} files of chain ${r.chain}) into ${dir}`, "dry-run");
    return r;
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (readdirSync(dir).length) throw new LifeboatError(`cannot assemble run ${run} into ${dir}: the folder is not empty`);
  const problems: string[] = [];
  for (const f of r.files) {
    const src = join(store, "files", r.chain, f.name);
    if (!safeName(f.name)) problems.push(`${f.name}: unsafe name in the manifest`);
    else if (!existsSync(src)) problems.push(`${f.name}: missing from ${join(store, "files", r.chain)}`);
    else if (statSync(src).size !== f.size) problems.push(`${f.name}: ${statSync(src).size} bytes, the manifest says ${f.size}`);
    else if ((await sha256(src)) !== f.sha256) problems.push(`${f.name}: sha256 mismatch`);
    else copyFileSync(src, join(dir, f.name));
  }
  if (problems.length) {
    rmSync(dir, { recursive: true, force: true });
    throw new VerifyError(`run ${run} in ${store} cannot be put together: ${problems[0]}${problems.length > 1 ? ` (and ${problems.length - 1} more)` : ""}`, problems, "restore another run; nothing was restored");
  }
  return r;
}

/** Options for {@link chainPrune}. */
export interface ChainPruneOptions {
  /** Keep the newest this many runs (at least 1). */
  keepRuns: number;
  ctx?: Context;
}

/**
 * Drops the oldest run manifests beyond keepRuns, then the files no kept run lists (whole
 * chains when none of their runs is kept). Never removes a file a kept run needs. In a dry run
 * it lists what it would remove.
 * @example const p = await chainPrune("/srv/xenon-store", { keepRuns: 48 });
 */
export async function chainPrune(store: string, opts: ChainPruneOptions): Promise<{ runs: string[]; files: number; bytes: number }> {
  const ctx = opts.ctx ?? useContext();
  const keep = Math.max(1, opts.keepRuns);
  const runs = chainRuns(store);
  const drop = runs.slice(0, Math.max(0, runs.length - keep));
  const kept = runs.slice(drop.length);
  const needed = new Set(kept.flatMap((r) => r.files.map((f) => `${r.chain}/${f.name}`)));
  const doomed: string[] = [];
  const filesDir = join(store, "files");
  for (const chain of existsSync(filesDir) ? readdirSync(filesDir) : []) {
    for (const name of readdirSync(join(filesDir, chain))) if (!needed.has(`${chain}/${name}`)) doomed.push(`${chain}/${name}`);
  }
  let bytes = 0;
  for (const f of doomed) bytes += statSync(join(filesDir, f)).size;
  const say = `prune ${store}: ${drop.length} run(s), ${doomed.length} file(s) no kept run needs`;
  if (ctx.dryRun) {
    ctx.log.command(say, "dry-run");
    return { runs: drop.map((r) => r.run), files: doomed.length, bytes };
  }
  for (const r of drop) rmSync(join(store, "runs", `${r.run}.json`), { force: true });
  for (const f of doomed) rmSync(join(filesDir, f), { force: true });
  for (const chain of existsSync(filesDir) ? readdirSync(filesDir) : []) if (!readdirSync(join(filesDir, chain)).length) rmSync(join(filesDir, chain), { recursive: true });
  return { runs: drop.map((r) => r.run), files: doomed.length, bytes };
}

/** Options for {@link chainPush}, {@link chainFetch} and {@link chainPruneOffsite}. */
export interface ChainOffsiteOptions extends OffsiteOptions {
  /** The run archives' name before CHAIN-RUN (default "chain"), e.g. "xenon-store". */
  label?: string;
  /** age: a passphrase or recipients encrypt the run archives; a passphrase or identities open them. */
  age?: AgeOptions;
}

const STAMP = "\\d{4}-\\d{2}-\\d{2}T\\d{6}Z";
const runDate = (run: string) => new Date(run.replace(/^(\d{4}-\d{2}-\d{2}T\d{2})(\d{2})(\d{2})Z$/, "$1:$2:$3Z"));
const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** The run archives at a destination: name, chain, run, url; oldest first. */
export async function chainOffsiteRuns(dest: string, opts: ChainOffsiteOptions = {}): Promise<{ name: string; chain: string; run: string; url: string }[]> {
  const re = new RegExp(`^${escapeRe(opts.label ?? "chain")}-(${STAMP})-(${STAMP})\\.tar\\.gz(\\.age)?$`);
  const out: { name: string; chain: string; run: string; url: string }[] = [];
  for (const e of await offsiteList(dest, opts)) {
    const m = re.exec(e.name);
    if (m) out.push({ name: e.name, chain: m[1], run: m[2], url: e.path });
  }
  return out.sort((a, b) => a.run.localeCompare(b.run));
}

/**
 * Copies one run off-site: packs the files it shipped and its manifest into
 * LABEL-CHAIN-RUN.tar.gz (a lifeboat archive: sha256, manifest, age when asked), copies it to
 * `dest` with offsiteCopy (verified there), and removes the local archive. A run whose archive is
 * there already and verified is not sent again. In a dry run it says what it would copy.
 * @example await chainPush("/var/backups/xenon-store", r.run, "s3://offsite/xenon", { s3, label: "xenon-store" });
 */
export async function chainPush(store: string, run: string, dest: string, opts: ChainOffsiteOptions = {}): Promise<{ url: string; bytes: number; files: number }> {
  const ctx = opts.ctx ?? useContext();
  const label = opts.label ?? "chain";
  const manifest = join(store, "runs", `${run}.json`);
  if (ctx.dryRun && !existsSync(manifest)) {
    ctx.log.command(`pack the files run ${run} shipped with its manifest into ${label}-CHAIN-${run}.tar.gz and copy it to ${parseOffsite(dest, opts).url} (verified there)`, "dry-run");
    return { url: dest, bytes: 0, files: 0 };
  }
  if (!existsSync(manifest)) throw new UsageError(`no run ${run} in ${store}`);
  const r = JSON.parse(readFileSync(manifest, "utf8")) as ChainRun;
  const names = r.shipped ?? (r.full ? r.files.map((f) => f.name) : r.added);
  // One folder per run and destination (pushes to two destinations run side by side), emptied
  // first: a killed push's archive there would make this one take the next second's name, which
  // names no run off-site.
  const box = join(store, ".outbox", `${run}-${createHash("sha256").update(dest).digest("hex").slice(0, 12)}`);
  const staging = join(box, "stage");
  rmSync(box, { recursive: true, force: true });
  mkdirSync(join(staging, "files", r.chain), { recursive: true, mode: 0o700 });
  mkdirSync(join(staging, "runs"), { mode: 0o700 });
  try {
    for (const n of names) copyFileSync(join(store, "files", r.chain, n), join(staging, "files", r.chain, n));
    copyFileSync(manifest, join(staging, "runs", `${run}.json`));
    const packed = await backupArchive<ChainRun>(staging, { folder: box, name: `${label}-${r.chain}`, startedAt: runDate(run), meta: { ...r, meta: undefined }, age: opts.age, ctx });
    const copied = await offsiteCopy(packed.path, dest, opts);
    return { url: copied.url, bytes: packed.bytes, files: names.length };
  } finally {
    rmSync(box, { recursive: true, force: true });
  }
}

/**
 * Fetches from `dest` the archives a run needs (its own and those of the earlier runs of its
 * chain), each checked against its sha256 and manifest, and unpacks them into `store` (a new or
 * empty folder), which then holds files/CHAIN/… and runs/…json as a local store does: put the
 * run together with {@link chainAssemble}. `run` may be "latest". Resolves to the run's id and
 * the store. In a dry run it fetches and unpacks into a temporary folder instead (removed when
 * the process ends), so the steps after it can read the run's manifest.
 * @example const { run, store } = await chainFetch("s3://offsite/xenon", "latest", "/var/tmp/restore-store", { s3, label: "xenon-store" });
 */
export async function chainFetch(dest: string, run: string, store: string, opts: ChainOffsiteOptions = {}): Promise<{ run: string; store: string }> {
  const ctx = opts.ctx ?? useContext();
  const all = await chainOffsiteRuns(dest, opts);
  const target = run === "latest" ? all.at(-1) : all.find((a) => a.run === run);
  if (!target) {
    throw new UsageError(`no run ${run} at ${parseOffsite(dest, opts).url}`, all.length ? `runs there: ${all.slice(-8).map((a) => a.run).join(", ")}` : `no ${opts.label ?? "chain"}-… archives there`);
  }
  const wanted = all.filter((a) => a.chain === target.chain && a.run <= target.run);
  if (!wanted.some((a) => a.run === target.chain)) {
    throw new VerifyError(`run ${target.run} cannot be put together from ${parseOffsite(dest, opts).url}: the archive of its chain's full run ${target.chain} is missing`, [], "restore a run of another chain");
  }
  // a dry run writes only into its own temporary folder, so that later steps can read the run
  const live: Context = ctx.dryRun ? Object.create(ctx, { dryRun: { value: false } }) : ctx;
  if (ctx.dryRun) {
    const into = mkdtempSync(join(tmpdir(), "lifeboat-chain-dry-"));
    process.once("exit", () => rmSync(into, { recursive: true, force: true }));
    ctx.log.command(`fetch ${wanted.length} archive(s) of chain ${target.chain} up to run ${target.run} from ${parseOffsite(dest, opts).url} and unpack them into ${store} (into ${into} for this dry run)`, "probe");
    store = into;
  }
  mkdirSync(store, { recursive: true, mode: 0o700 });
  if (readdirSync(store).length) throw new LifeboatError(`cannot fetch into ${store}: the folder is not empty`);
  const work = mkdtempSync(join(tmpdir(), "lifeboat-chain-fetch-"));
  try {
    for (const a of wanted) {
      const local = await offsiteFetch(a.url, join(work, "in"), { ...opts, ctx: live });
      const into = join(work, a.run);
      await unpackArchive(local, into, { decrypt: opts.age, ctx: live });
      removeArchive(local);
      for (const sub of ["files", "runs"]) {
        for (const dir of sub === "files" ? readdirSync(join(into, "files")).map((c) => join("files", c)) : ["runs"]) {
          mkdirSync(join(store, dir), { recursive: true, mode: 0o700 });
          for (const n of readdirSync(join(into, dir))) renameSync(join(into, dir, n), join(store, dir, n));
        }
      }
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return { run: target.run, store };
}

/**
 * Off-site retention: keeps the newest `keepRuns` run archives at `dest` and every archive of
 * their chains (later runs may need the files an earlier one shipped), and removes the archives
 * of every other chain. Resolves to the names removed (in a dry run: that would be removed).
 * @example await chainPruneOffsite("s3://offsite/xenon", { keepRuns: 48, s3, label: "xenon-store" });
 */
export async function chainPruneOffsite(dest: string, opts: ChainOffsiteOptions & { keepRuns: number }): Promise<string[]> {
  const all = await chainOffsiteRuns(dest, opts);
  const keptChains = new Set(all.slice(-Math.max(1, opts.keepRuns)).map((a) => a.chain));
  const drop = all.filter((a) => !keptChains.has(a.chain)).map((a) => a.name);
  await offsiteRemove(dest, drop, opts);
  return drop;
}
