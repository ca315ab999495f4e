// The Xenon drill against the stand-in host (test/standins/xenon.ts), each host its own process so
// that the restore's restart command really stops and starts it: seed documents (hostile names,
// a document with version history that is deleted at the end), then
//   1. ZIP: xenon-backup, xenon-restore onto a fresh host (another id: the recipe prints --id=OLD);
//   2. point in time: the same archive restored with --at onto a fresh host gives the documents
//      of that instant, the deleted one back at version 5;
//   3. STREAM: xenon-backup through lifeboat's receiver, restored over http through lifeboat's
//      Range server onto a fresh host;
//   4. DIRECTORY: a chain of three runs (a full, then deletes, patches and new documents between
//      runs), runs 2 and 3 restored onto fresh hosts;
//   5. refusals: a corrupted archive, a truncated zip and a zip with a wrong CRC-32 in well-formed
//      archives (exit 3, no RestoreRequest reaches the host); a STREAM that loses its last chunk
//      (the receiver refuses it, exit 3, no archive); Xenon's own errors shown plainly: a STREAM
//      to an ftp: URL, a ZIP whose destination is a directory; a host that never comes back after
//      the restart.
// Every restore is compared document by document (name, counter, keyValues, version, owner).
// Used by test/xenon.test.ts and the drill:xenon task (make drill-xenon). Needs no lab piece.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { backupArchive, formatBytes, shellJoin, stamp, unpackArchive } from "../../lib/mod.ts";
import { freePort, runRecipe, type RecipeRun } from "./hoss.ts";
import { drillTask } from "./lab.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url)).replace(/\/$/, "");

/** A stand-in host in its own process. */
export interface XenonHost {
  url: string;
  /** Its folder: sandbox/, host.log, pid, restart.sh. */
  dir: string;
  id: string;
  /** The restart command for the restore (`restart` setting): stops the process and starts it again. */
  restart: string[];
  /** Stops it (and waits until it is gone); a temp folder it made is removed. */
  stop(): Promise<void>;
}

/** Options for {@link startXenonHost}. */
export interface XenonHostOptions {
  /** Folder for the host (default: a new temp folder, removed again by `stop()`). */
  dir?: string;
  /** The in-memory index (`--in-memory`): its documents are gone when the process stops. */
  inMemory?: boolean;
  /** Every request needs this token (`--auth-token`). */
  authToken?: string;
  /** USER:PASS for POST /core/authn/basic (`--basic`). */
  basic?: string;
  /** A test fault of the stand-in (`--fault`): "stream-drop-last-chunk" loses a STREAM's last PUT and answers 200. */
  fault?: "stream-drop-last-chunk";
}

const running = new Set<XenonHost>();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts a stand-in Xenon host as `node --import=tsx test/standins/xenon.ts` (setsid, its own
 * process group), writes DIR/restart.sh, and waits until GET /core/management answers.
 * @example const h = await startXenonHost("node-a"); … await h.stop();
 */
export async function startXenonHost(id: string, opts: XenonHostOptions = {}): Promise<XenonHost> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), "lifeboat-xenon-host-"));
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const argv = ["node", "--import=tsx", "test/standins/xenon.ts", "--port", String(port), "--sandbox", `${dir}/sandbox`, "--id", id];
  if (opts.inMemory) argv.push("--in-memory");
  if (opts.authToken) argv.push("--auth-token", opts.authToken);
  if (opts.basic) argv.push("--basic", opts.basic);
  if (opts.fault) argv.push("--fault", opts.fault);
  const pid = shellJoin([`${dir}/pid`]);
  const start = `cd ${shellJoin([ROOT])} && (setsid ${shellJoin(argv)} >>${shellJoin([`${dir}/host.log`])} 2>&1 & echo $! >${pid})`;
  const stop = `kill -TERM $(cat ${pid}) 2>/dev/null; while kill -0 $(cat ${pid}) 2>/dev/null; do sleep 0.1; done`;
  writeFileSync(`${dir}/restart.sh`, `${stop}\n${start}\n`);
  writeFileSync(`${dir}/stop.sh`, `${stop}\n`);
  await new Promise((ok) => spawn("bash", ["-c", start], { stdio: "ignore" }).on("close", ok));
  const url = `http://127.0.0.1:${port}`;
  const host: XenonHost = {
    url, dir, id,
    restart: ["bash", `${dir}/restart.sh`],
    stop: async () => {
      running.delete(host);
      await new Promise((ok) => spawn("bash", [`${dir}/stop.sh`], { stdio: "ignore" }).on("close", ok));
      if (!opts.dir) rmSync(dir, { recursive: true, force: true });
    },
  };
  running.add(host);
  for (let i = 0; i < 200; i++) {
    if (await fetch(`${url}/core/management`).then((r) => r.status < 500, () => false)) return host;
    await sleep(100);
  }
  const log = readFileSync(`${dir}/host.log`, "utf8");
  await host.stop();
  throw new Error(`the Xenon stand-in did not start: ${log}`);
}

/** Stops every host {@link startXenonHost} started that is still running. */
export async function stopXenonHosts(): Promise<void> {
  await Promise.all([...running].map((h) => h.stop()));
}

/** One JSON request to a host; `body` is null when the answer had none. */
export async function xenonRequest(url: string, method = "GET", body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const r = await fetch(url, { method, headers: { "content-type": "application/json", ...headers }, body: body === undefined ? undefined : JSON.stringify(body) });
  const t = await r.text();
  return { status: r.status, body: t ? JSON.parse(t) : null };
}

/** Options for {@link seedExamples} and {@link exampleDocuments}. */
export interface ExamplesOptions {
  /** The factory (default /core/examples; /test/in-memory-examples on the in-memory index). */
  factory?: string;
  /** Request headers (an auth token). */
  headers?: Record<string, string>;
  /** seedExamples: a random (incompressible) string of about this many bytes in keyValues.blob (default none). */
  blobBytes?: number;
}

/** POSTs one example document per name (selfLink = name). */
export async function seedExamples(url: string, names: string[], opts: ExamplesOptions = {}): Promise<void> {
  const factory = opts.factory ?? "/core/examples";
  for (const n of names) {
    const keyValues: Record<string, string> = { k: `v ${n}` };
    if (opts.blobBytes) keyValues.blob = randomBytes(Math.ceil(opts.blobBytes * 3 / 4)).toString("base64");
    const r = await xenonRequest(`${url}${factory}`, "POST", { name: n, documentSelfLink: n, counter: n.length, keyValues }, opts.headers);
    if (r.status !== 200) throw new Error(`seeding ${n} into ${url}${factory}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
  }
}

/** Every document of a factory as "name|counter|keyValues|version|owner", by selfLink (each one GET: after a restore only the restart makes them right). */
export async function exampleDocuments(url: string, opts: ExamplesOptions = {}): Promise<Record<string, string>> {
  const links = (await xenonRequest(`${url}${opts.factory ?? "/core/examples"}`, "GET", undefined, opts.headers)).body.documentLinks as string[];
  const out: Record<string, string> = {};
  for (const l of links) {
    const d = (await xenonRequest(`${url}${l}`, "GET", undefined, opts.headers)).body;
    out[l] = `${d.name}|${d.counter}|${JSON.stringify(d.keyValues)}|${d.documentVersion}|${d.documentOwner}`;
  }
  return out;
}

/** The differences between two document maps, one line each ([] when equal). */
export function diffDocuments(want: Record<string, string>, got: Record<string, string>): string[] {
  const out: string[] = [];
  for (const k of Object.keys(want)) if (got[k] !== want[k]) out.push(`${k}: ${got[k] ?? "missing"}, want ${want[k]}`);
  for (const k of Object.keys(got)) if (!(k in want)) out.push(`${k}: present, want absent`);
  return out;
}

/** Writes DIR/site.yaml for both recipes (folders under DIR); the host's url and restart come as flags. */
export function xenonSite(dir: string, extra: string[] = []): string {
  const site = join(dir, "site.yaml");
  writeFileSync(site, [
    `backups: { dir: ${JSON.stringify(`${dir}/backups`)} }`,
    `staging: ${JSON.stringify(`${dir}/staging`)}`,
    `directory: { workspace: ${JSON.stringify(`${dir}/workspace`)}, store: ${JSON.stringify(`${dir}/store`)} }`,
    `state-dir: ${JSON.stringify(`${dir}/state`)}`,
    "restart-timeout: 30",
    ...extra,
    "",
  ].join("\n"));
  return site;
}

/** Flags that point a recipe at a host: --url, and for a restore --restart (the host's restart.sh). */
export const hostFlags = (h: XenonHost, restore = false): string[] => [`--url=${h.url}`, ...(restore ? [`--restart=${h.restart.join(",")}`] : [])];

/** The newest xenon-backup archive in DIR/backups. */
export function newestArchive(dir: string): string {
  const all = existsSync(`${dir}/backups`) ? readdirSync(`${dir}/backups`).filter((f) => /^xenon-backup-.*\.tar\.(gz|zst)$/.test(f)).sort() : [];
  if (!all.length) throw new Error(`no xenon-backup archive in ${dir}/backups`);
  return join(dir, "backups", all.at(-1)!);
}

/** Options for {@link xenonDrill}. */
export interface XenonDrillOptions {
  log?: (line: string) => void;
  /** Keep the temp dir (archives, store, host logs). */
  keep?: boolean;
  echo?: boolean;
  signal?: AbortSignal;
  /** Documents seeded (default 200). */
  documents?: number;
  /** Random bytes in each seeded document (default 8 KiB: the zip spans several 512 KiB chunks). */
  blobBytes?: number;
}

/** What the drill found. */
export interface XenonDrillResult {
  dir: string;
  documents: number;
  /** Differences per restore ([] each when the drill passed). */
  diffs: { zip: string[]; pointInTime: string[]; streamHttp: string[]; directoryRun2: string[]; directoryRun3: string[] };
  /** The restore onto the fresh host printed --id=node-a and warned that the ids differ. */
  idAdvice: boolean;
  zipBytes: number;
  streamChunks: number;
  httpRequests: number;
  /** Bytes each DIRECTORY run shipped to the store, and the files each needs. */
  shipped: number[];
  runFiles: number[];
  /** "exit N: last error line" of each refusal. */
  refusals: { corrupted: string; truncatedZip: string; badCrc: string; truncatedStream: string; upstream: string; zipIntoDirectory: string; neverBack: string };
  /** The restores of the corrupted archive, the truncated zip and the bad CRC sent no RestoreRequest (the host's patches.log). */
  corruptedNoPatch: boolean;
  /** The truncated STREAM left no archive behind. */
  truncatedStreamNoArchive: boolean;
  backupMs: number[];
  restoreMs: number[];
}

/**
 * Runs the drill; throws when a recipe fails where it should not.
 * @example const r = await xenonDrill({ log: console.error }); r.diffs.zip // []
 */
export async function xenonDrill(opts: XenonDrillOptions = {}): Promise<XenonDrillResult> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const dir = mkdtempSync(join(tmpdir(), "lifeboat-xenon-drill-"));
  const site = xenonSite(dir);
  const result: XenonDrillResult = {
    dir, documents: 0, diffs: { zip: [], pointInTime: [], streamHttp: [], directoryRun2: [], directoryRun3: [] }, idAdvice: false,
    zipBytes: 0, streamChunks: 0, httpRequests: 0, shipped: [], runFiles: [], refusals: { corrupted: "", truncatedZip: "", badCrc: "", truncatedStream: "", upstream: "", zipIntoDirectory: "", neverBack: "" },
    corruptedNoPatch: false, truncatedStreamNoArchive: false, backupMs: [], restoreMs: [],
  };
  const recipeRun = async (name: string, args: string[]): Promise<RecipeRun> => {
    const r = await runRecipe(name, [...args, "--config", site, "--yes"], { echo: opts.echo, signal: opts.signal });
    log(`${name} ${args.filter((a) => !a.startsWith("--url=") && !a.startsWith("--restart=")).join(" ")}: exit ${r.code} (${(r.ms / 1000).toFixed(1)} s)`);
    (name === "xenon-backup" ? result.backupMs : result.restoreMs).push(r.ms);
    return r;
  };
  const must = async (name: string, args: string[]) => {
    const r = await recipeRun(name, args);
    if (r.code !== 0) throw new Error(`${name} ${args.join(" ")} exited ${r.code}:\n${r.output}`);
    return r;
  };
  const own = new Set<XenonHost>();
  const startHost = async (id: string, hostDir: string, hostOpts: Omit<XenonHostOptions, "dir"> = {}) => {
    const h = await startXenonHost(id, { ...hostOpts, dir: hostDir });
    own.add(h);
    return h;
  };
  /** Restores onto a fresh host, compares, stops it. */
  const restoreFresh = async (id: string, what: string, args: string[], want: Record<string, string>) => {
    const fresh = await startHost(id, join(dir, `host-${id}-${result.restoreMs.length}`));
    try {
      const r = await must("xenon-restore", [what, ...hostFlags(fresh, true), ...args]);
      return { r, diffs: diffDocuments(want, await exampleDocuments(fresh.url)) };
    } finally {
      await fresh.stop();
    }
  };
  try {
    // seed: hostile names, and one document with a version history that ends deleted
    const a = await startHost("node-a", join(dir, "host-a"));
    const n = opts.documents ?? 200;
    const names = [...Array.from({ length: n - 4 }, (_, i) => `doc-${i}-${"x".repeat(i % 40)}`), "name with spaces", "quote ' and \" $(x)", "ünïcødé ✓", "-leading-dash"];
    await seedExamples(a.url, names, { blobBytes: opts.blobBytes ?? 8192 });
    await seedExamples(a.url, ["pit"]);
    for (let i = 1; i <= 5; i++) await xenonRequest(`${a.url}/core/examples/pit`, "PATCH", { name: `v${i}` });
    await sleep(20);
    const instant = new Date().toISOString();
    const atInstant = await exampleDocuments(a.url);
    await sleep(20);
    for (let i = 6; i <= 9; i++) await xenonRequest(`${a.url}/core/examples/pit`, "PATCH", { name: `v${i}` });
    await xenonRequest(`${a.url}/core/examples/pit`, "DELETE");
    for (let i = 0; i < 5; i++) await xenonRequest(`${a.url}/core/examples/doc-${i}-${"x".repeat(i)}`, "PATCH", { name: `patched-${i}`, counter: 1000 + i });
    const want = await exampleDocuments(a.url);
    result.documents = Object.keys(want).length;
    log(`seeded ${result.documents} documents on ${a.url} (pit: 9 versions then deleted; point in time ${instant})`);

    // 1. ZIP onto a fresh host with another id
    await must("xenon-backup", hostFlags(a));
    const archive = newestArchive(dir);
    result.zipBytes = statSync(archive).size;
    const zip = await restoreFresh("node-b", archive, [], want);
    result.diffs.zip = zip.diffs;
    result.idAdvice = /start the new node with --id=node-a/.test(zip.r.output);
    log(`ZIP ${formatBytes(result.zipBytes)}: ${zip.diffs.length} differences`);

    // 2. point in time: the same archive as of the instant
    const pit = await restoreFresh("node-a", archive, [`--at=${instant}`], atInstant);
    result.diffs.pointInTime = pit.diffs;
    log(`point in time ${instant}: ${pit.diffs.length} differences (pit back at version ${atInstant["/core/examples/pit"]?.split("|")[3]})`);

    // 3. STREAM through lifeboat's receiver, then an http restore through lifeboat's Range server
    const stream = await must("xenon-backup", [...hostFlags(a), "--backup.type=STREAM"]);
    result.streamChunks = Number(/received .* in (\d+) chunks/.exec(stream.output)?.[1] ?? 0);
    const http = await restoreFresh("node-a", newestArchive(dir), ["--deliver=http"], want);
    result.diffs.streamHttp = http.diffs;
    result.httpRequests = Number(/served .* in (\d+) requests/.exec(http.r.output)?.[1] ?? 0);
    log(`STREAM in ${result.streamChunks} chunks, http restore in ${result.httpRequests} requests: ${http.diffs.length} differences`);

    // 4. DIRECTORY: three runs with deletes, patches and new documents between them
    await must("xenon-backup", [...hostFlags(a), "--backup.type=DIRECTORY", "--directory.full"]);
    for (let i = 10; i < 15; i++) await xenonRequest(`${a.url}/core/examples/${encodeURIComponent(names[i])}`, "DELETE");
    for (let i = 15; i < 20; i++) await xenonRequest(`${a.url}/core/examples/${encodeURIComponent(names[i])}`, "PATCH", { name: `run2-${i}` });
    await seedExamples(a.url, Array.from({ length: 10 }, (_, i) => `new-${i}`));
    await must("xenon-backup", [...hostFlags(a), "--backup.type=DIRECTORY"]);
    const at2 = await exampleDocuments(a.url);
    for (let i = 20; i < 25; i++) await xenonRequest(`${a.url}/core/examples/${encodeURIComponent(names[i])}`, "DELETE");
    await seedExamples(a.url, ["third run"]);
    await must("xenon-backup", [...hostFlags(a), "--backup.type=DIRECTORY", "--directory.keep-runs=3"]);
    const at3 = await exampleDocuments(a.url);
    const runs = readdirSync(`${dir}/store/runs`).sort().map((f) => JSON.parse(readFileSync(`${dir}/store/runs/${f}`, "utf8")) as { run: string; shippedBytes: number; files: unknown[] });
    result.shipped = runs.map((r) => r.shippedBytes);
    result.runFiles = runs.map((r) => r.files.length);
    result.diffs.directoryRun2 = (await restoreFresh("node-a", runs[1].run, [], at2)).diffs;
    result.diffs.directoryRun3 = (await restoreFresh("node-a", "latest", [], at3)).diffs;
    log(`DIRECTORY runs shipped ${result.shipped.map(formatBytes).join(", ")} (files needed ${result.runFiles.join(", ")}); run 2: ${result.diffs.directoryRun2.length} differences, run 3: ${result.diffs.directoryRun3.length}`);

    // 5. refusals
    const bytes = readFileSync(archive);
    bytes[Math.floor(bytes.length / 2)] ^= 0xff;
    const bad = join(dir, "corrupt", "xenon-backup-corrupt.tar.gz");
    mkdirSync(join(dir, "corrupt"));
    writeFileSync(bad, bytes);
    const b = await startHost("node-b", join(dir, "host-refusals"));
    /** No RestoreRequest reached b (the stand-in logs every management PATCH) and it holds no documents. */
    const untouched = async () => !patchesOf(b).includes("RestoreRequest") && Object.keys(await exampleDocuments(b.url)).length === 0;
    let r = await recipeRun("xenon-restore", [bad, ...hostFlags(b, true)]);
    result.refusals.corrupted = `exit ${r.code}: ${lastError(r.output)}`;
    result.corruptedNoPatch = await untouched();
    r = await recipeRun("xenon-backup", [...hostFlags(a), "--backup.type=STREAM", "--stream.url=ftp://127.0.0.1/backup.zip"]);
    result.refusals.upstream = `exit ${r.code}: ${lastError(r.output)}`;
    // a truncated zip, then a zip with one wrong CRC-32, each inside a well-formed archive (sha256
    // sidecars that match): the zip check refuses them before the PATCH
    const unpacked = join(dir, "unpacked");
    const report = await unpackArchive<Record<string, unknown>>(archive, unpacked);
    const innerZip = join(unpacked, "xenon-backup.zip");
    const original = readFileSync(innerZip);
    truncateSync(innerZip, Math.floor(original.length / 2));
    const cut = await backupArchive(unpacked, { folder: join(dir, "truncated"), name: "xenon-backup", meta: report.manifest!.meta, recipe: "xenon-backup" });
    r = await recipeRun("xenon-restore", [cut.path, ...hostFlags(b, true)]);
    result.refusals.truncatedZip = `exit ${r.code}: ${lastError(r.output)}`;
    result.corruptedNoPatch &&= await untouched();
    writeFileSync(innerZip, spoilZipCrc(original));
    const crc = await backupArchive(unpacked, { folder: join(dir, "bad-crc"), name: "xenon-backup", meta: report.manifest!.meta, recipe: "xenon-backup" });
    r = await recipeRun("xenon-restore", [crc.path, ...hostFlags(b, true)]);
    result.refusals.badCrc = `exit ${r.code}: ${lastError(r.output)}`;
    result.corruptedNoPatch &&= await untouched();
    // a STREAM that loses its last chunk while Xenon answers 200: lifeboat's receiver refuses it, no archive
    const f = await startHost("node-f", join(dir, "host-fault"), { fault: "stream-drop-last-chunk" });
    await seedExamples(f.url, Array.from({ length: 150 }, (_, i) => `f-${i}`), { blobBytes: 8192 }); // about 1 MiB zipped: two chunks at least
    const archivesBefore = archivesIn(dir);
    r = await recipeRun("xenon-backup", [...hostFlags(f), "--backup.type=STREAM"]);
    result.refusals.truncatedStream = `exit ${r.code}: ${lastError(r.output)}`;
    result.truncatedStreamNoArchive = archivesIn(dir).join() === archivesBefore.join() && patchesOf(f).includes("BackupRequest");
    // a ZIP whose destination is a directory (a leftover in staging): Xenon's own refusal, shown plainly
    const staging = join(dir, "staging-dirs");
    const now = Date.now();
    for (let s = -5; s < 300; s++) mkdirSync(join(staging, `backup-${stamp(new Date(now + s * 1000))}`, "xenon-backup.zip"), { recursive: true });
    r = await recipeRun("xenon-backup", [...hostFlags(a), `--staging=${staging}`]);
    result.refusals.zipIntoDirectory = `exit ${r.code}: ${lastError(r.output)}`;
    writeFileSync(join(dir, "kill.sh"), readFileSync(join(b.dir, "stop.sh")));
    r = await recipeRun("xenon-restore", [archive, `--url=${b.url}`, `--restart=bash,${join(dir, "kill.sh")}`, "--restart-timeout=3"]);
    result.refusals.neverBack = `exit ${r.code}: ${lastError(r.output)}`;
    log(`refusals: ${Object.entries(result.refusals).map(([k, v]) => `${k} ${v}`).join("; ")}`);
    return result;
  } finally {
    await Promise.all([...own].map((h) => h.stop()));
    if (!opts.keep) rmSync(dir, { recursive: true, force: true });
  }
}

/** The kinds of management PATCH a stand-in host took (its SANDBOX/patches.log), oldest first. */
function patchesOf(h: XenonHost): string[] {
  const log = join(h.dir, "sandbox", "patches.log");
  return existsSync(log) ? readFileSync(log, "utf8").split("\n").filter(Boolean) : [];
}

/** The xenon-backup archives in DIR/backups. */
function archivesIn(dir: string): string[] {
  return existsSync(`${dir}/backups`) ? readdirSync(`${dir}/backups`).filter((f) => f.startsWith("xenon-backup-")).sort() : [];
}

/**
 * A copy of a zip whose first `.cfs` entry has a wrong CRC-32 in the central directory (its
 * bytes unchanged): a well-formed zip that only the CRC check refuses.
 */
export function spoilZipCrc(zip: Buffer): Buffer {
  const out = Buffer.from(zip);
  const end = out.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (end < 0) throw new Error("no end of central directory record");
  let at = out.readUInt32LE(end + 16);
  for (let i = 0; i < out.readUInt16LE(end + 10); i++) {
    const nameLen = out.readUInt16LE(at + 28);
    const name = out.toString("utf8", at + 46, at + 46 + nameLen);
    if (name.endsWith(".cfs")) {
      out.writeUInt32LE((out.readUInt32LE(at + 16) ^ 0x00ff00ff) >>> 0, at + 16);
      return out;
    }
    at += 46 + nameLen + out.readUInt16LE(at + 30) + out.readUInt16LE(at + 32);
  }
  throw new Error("no .cfs entry in the zip");
}

/** The last error lines of a recipe's output. */
export function lastError(output: string): string {
  return output.split("\n").filter((l) => /error|refused|mismatch|missing|gave up|✖/i.test(l)).slice(-2).join(" | ").slice(0, 400);
}

/** What is wrong with a drill result ([] when it passed). */
export function xenonDrillProblems(r: XenonDrillResult): string[] {
  const out = Object.entries(r.diffs).flatMap(([k, d]) => d.slice(0, 5).map((x) => `${k}: ${x}`));
  if (!r.idAdvice) out.push("the ZIP restore onto a node with another id did not print --id=node-a");
  if (!/^exit 3:/.test(r.refusals.corrupted) || !r.corruptedNoPatch) out.push(`corrupted archive: ${r.refusals.corrupted}${r.corruptedNoPatch ? "" : " (a PATCH was sent)"}`);
  if (!/^exit 3:.*not a complete zip/.test(r.refusals.truncatedZip)) out.push(`truncated zip: ${r.refusals.truncatedZip}`);
  if (!/^exit 3:.*\.cfs: CRC-32 [0-9a-f]{8} where the central directory says [0-9a-f]{8}/.test(r.refusals.badCrc)) out.push(`zip with a wrong CRC-32: ${r.refusals.badCrc}`);
  if (!/^exit 3:.*stream into .*: truncated: .* arrived when the sender said it was done; missing \d+-\d+/.test(r.refusals.truncatedStream) || !r.truncatedStreamNoArchive) out.push(`truncated STREAM: ${r.refusals.truncatedStream}${r.truncatedStreamNoArchive ? "" : " (an archive was made, or no BackupRequest was sent)"}`);
  if (!/^exit 1:.*refused the backup \(HTTP 500\): destination \S+\/xenon-backup\.zip must be a local file for zip backup\./.test(r.refusals.zipIntoDirectory)) out.push(`Xenon's ZIP-into-a-directory error not shown plainly: ${r.refusals.zipIntoDirectory}`);
  if (!/^exit 1:.*refused the backup \(HTTP 500\): Provider "ftp" not installed/.test(r.refusals.upstream)) out.push(`Xenon's own error not shown plainly: ${r.refusals.upstream}`);
  if (!/^exit 1:.*gave up waiting for the Xenon host/.test(r.refusals.neverBack)) out.push(`host never back: ${r.refusals.neverBack}`);
  if (r.shipped.length !== 3) out.push(`the store holds ${r.shipped.length} DIRECTORY runs, want 3 (one run's manifest replaced another's?)`);
  if (!(r.shipped[1] < r.shipped[0] && r.shipped[2] < r.shipped[0])) out.push(`incremental runs shipped ${r.shipped.join(", ")} bytes, not less than the full`);
  return out;
}

/** The drill as a task: make drill-xenon. */
export const xenonDrillTask = drillTask({
  name: "drill:xenon",
  needs: [],
  description: "Xenon (stand-in hosts): ZIP, point in time, STREAM + http restore, a DIRECTORY chain restored at runs 2 and 3, refusals",
  run: async (ctx) => {
    const r = await xenonDrill({ log: (l) => ctx.log.info(l), signal: ctx.signal });
    const problems = xenonDrillProblems(r);
    if (problems.length) throw new Error(`drill:xenon found problems: ${problems.slice(0, 10).join("; ")}`);
    ctx.log.ok(`${r.documents} documents equal after every restore (ZIP, point in time, STREAM + http, DIRECTORY runs 2 and 3); refusals as expected`);
  },
});
