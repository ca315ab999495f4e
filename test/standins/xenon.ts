// A STAND-IN for a VMware Xenon host (xenon-common, master @ b6fb48b7, 2018), for the Xenon
// recipes' tests and drill. Xenon is a Java framework whose host cannot be built or downloaded
// here. This is not Xenon: it is a small Node HTTP server on 127.0.0.1 that follows the upstream
// code of the parts the recipes touch (../shared/research/upstream.md §1, with the upstream file
// for each fact), and passes ports of upstream's own tests (test/xenon-standin.test.ts).
//
// What it does, as Xenon does:
//   - PATCH /core/management with BackupRequest / RestoreRequest / AutoBackupConfiguration
//     (ServiceHostManagementService.handlePatch): "empty body", "kind is required", "unknown
//     request" (400); "backup destination must be specified." and the ZIP-to-directory /
//     DIRECTORY-to-file refusals (500, LuceneDocumentIndexBackupService.validateBackupRequest);
//     "destination is required." (500) for a restore; a destination with no scheme 400
//     ("Missing scheme"), an ftp: one 500 ('Provider "ftp" not installed'). Failures answer a
//     ServiceErrorResponse {message, statusCode, documentKind}. Success echoes the request
//     (with backupType rewritten to STREAM for http destinations).
//   - The index is a directory (<sandbox>/lucene) of immutable segment files (_N.cfs, the
//     version records, and _N.si, their count and sha256) plus a commit point segments_N that
//     lists them; a held write.lock. Commits happen on maintenance (1 s when dirty), before a
//     backup and at a clean stop; a merge writes a new segment and drops merged ones, so an
//     incremental backup adds new files and deletes unused ones exactly as in Xenon. A commit
//     point naming a missing or damaged file fails the host at start, like Lucene.
//   - Backups copy only the commit's files (commit 00ef8228): ZIP is a flat zip of them
//     (overwriting an existing file), DIRECTORY copies the new ones and deletes the unused
//     ones, never overwriting, STREAM writes a temp zip and PUTs it as FileUtils.putChunks
//     does: batches of 10 PUTs of 512 KiB with `Content-Range: bytes start-end/total`, end
//     EXCLUSIVE, a batch past the end filled with EMPTY PUTs `bytes total-total/total`, the 10th
//     PUT's completion starting the next batch (so up to 19 in flight), retry count 0,
//     application/octet-stream.
//   - Restores: http(s) by FileUtils.getFile (first `Range: bytes=0-524288`; a 200 without
//     Content-Range is the whole file; then up to 10 ranges at a time, the 10th's completion
//     asking for the next set; "no data" on an empty body); a local zip is extracted into the
//     index dir without clearing it; a local directory moves the existing index aside
//     (lucene.<micros>) and copies in. Then the index is reopened at its newest commit, and
//     timeSnapshotBoundaryMicros drops every version updated after the boundary (deletes
//     included), which brings back the version at or before it (performTimeSnapshotRecovery).
//   - The index keeps EVERY version of every document (version history); a DELETE is a
//     version too. Documents started in memory keep serving their state until the host
//     restarts, which is why the wiki says a host MUST be restarted after a restore; factory
//     queries and /core/document-index read the index and see restored data at once.
//   - Auto-backup (host arguments --isAutoBackupEnabled, --autoBackupDirectory DIR, default
//     <sandbox>/auto-backup; createAutoBackupConsumer): each maintenance commit of the document
//     index that committed something runs a DIRECTORY backup into that directory; commits that
//     come while one runs are counted as skipped and coalesced into ONE re-run; a failure is
//     counted and does not block later ones (7aa9bdd9). GET /core/management/stats has
//     autoBackupPerformedCount / autoBackupSkippedCount (from the start, at 0) and
//     autoBackupFailedCount (from the first failure), each with PerHour and PerDay suffixes.
//     AutoBackupConfiguration {enable} toggles it at runtime; GET /core/management shows
//     isAutoBackupEnabled and autoBackupDirectoryReference.
//   - /core/examples and upstream's test factory /test/indexed-metadata-examples
//     (IndexedMetadataExampleService, same state) on the document index: ExampleServiceState
//     with the ServiceDocument fields listed below; POST "initial state is required" / "name is
//     required" 400; PATCH merges name, tags, keyValues, counter; PUT replaces), `?$expand`,
//     /core/document-index?documentSelfLink=… (latest version, &documentVersion=N,
//     &includeDeleted, a trailing * for a prefix; 400 "documentSelfLink query parameter is
//     required"), direct query tasks on documentSelfLink, GET /core/management
//     (ServiceHostState: id, httpPort, systemInfo, codeProperties), DELETE /core/management (202,
//     then a clean stop), a remote PATCH to /core/document-index-backup (405).
//   - The in-memory index (indexServiceLink /core/in-memory-document-index) behind the factory
//     /test/in-memory-examples (upstream's InMemoryExampleService), with --in-memory: same
//     files, held in memory, gone when the process stops.
//   - documentOwner is the host id (--id, else the one kept in <sandbox>/serviceHostState.json,
//     else a new random one); restored documents keep the owner they were written with.
//   - Auth, when started with --auth-token T: every request needs `x-xenon-auth-token: T` or
//     `Authorization: Bearer T`, else 403; with --basic USER:PASS, POST /core/authn/basic with
//     basic auth answers a token in x-xenon-auth-token.
//   - for tests (not upstream): every management PATCH appends its request kind's last part
//     (BackupRequest, RestoreRequest …) as a line to <sandbox>/patches.log, which outlives
//     restarts; --fault stream-drop-last-chunk makes a STREAM skip the PUT of its last bytes and
//     still answer 200 (what a lossy proxy would leave a receiver with).
//
// What it leaves out (not modelled; a test that needs one of these cannot rely on the stand-in):
//   - Lucene's real file formats: the files are JSON, not Lucene codecs, so no index upgrade.
//   - ServiceDocument fields it never writes: documentDescription, documentSourceLink,
//     documentTransactionId, documentSignature (the wiki's sample has one); documentEpoch is
//     always 0 and documentAuthPrincipalLink always /core/authz/system-user. ExampleServiceState's
//     sortedCounter, id, required and isFromMigration are stored as given, never checked.
//   - Metadata indexing (INDEX_METADATA): /test/indexed-metadata-examples is indexed like any
//     other factory. performTimeSnapshotRecovery's tombstone reset (marking the newest version
//     at or before the boundary "active" again) has no counterpart: here the current version is
//     always derived from the version history, so dropping the later versions is all it takes.
//   - Version retention: ExampleService's VERSION_RETENTION_LIMIT (100) and index grooming;
//     every version is kept forever.
//   - Stats other than the auto-backup counters, and those are plain counters (no hourly/daily
//     time-series bins).
//   - Every other service, replication and node groups, synchronization, authorization beyond
//     one token, OData ($filter and friends), query tasks beyond one documentSelfLink/field
//     clause, the other management request kinds (operation tracing, request logging,
//     SynchronizeWithPeersRequest: "unknown request" here), the ignored `bearer` field.
//   - Per-port sandbox subfolders (the index is <sandbox>/lucene).
//   - Upstream's http-restore quirks: restoring from a partial download after a failed one
//     (here a failed download fails the restore and leaves the index as it was), and waiting
//     forever for bytes a server never sends (here: "download … ended at N of T bytes").
//
//   node --import=tsx test/standins/xenon.ts --port 8000 --sandbox DIR [--id HOSTID] [--in-memory]
//        [--auth-token T] [--basic USER:PASS] [--isAutoBackupEnabled] [--autoBackupDirectory DIR]
//        [--fault stream-drop-last-chunk]                  prints "xenon stand-in listening on URL"
import { randomUUID, createHash } from "node:crypto";
import { appendFileSync, closeSync, createWriteStream, existsSync, fsyncSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync, writeSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir, cpus, totalmem, freemem } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";
import yauzl from "yauzl";
import yazl from "yazl";

const KIND_PREFIX = "com:vmware:xenon:services:common:ServiceHostManagementService:";
export const BACKUP_KIND = `${KIND_PREFIX}BackupRequest`;
export const RESTORE_KIND = `${KIND_PREFIX}RestoreRequest`;
export const AUTO_BACKUP_KIND = `${KIND_PREFIX}AutoBackupConfiguration`;
const EXAMPLE_KIND = "com:vmware:xenon:services:common:ExampleService:ExampleServiceState";
const ERROR_KIND = "com:vmware:xenon:common:ServiceErrorResponse";
export const DOCUMENT_INDEX = "/core/document-index";
export const IN_MEMORY_INDEX = "/core/in-memory-document-index";
const CHUNK = 512 * 1024;
const IN_FLIGHT = 10;

/** An error with the status Operation.fail would give it. */
class Fail extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}
const illegalArgument = (m: string) => new Fail(400, m);
const illegalState = (m: string) => new Fail(500, m);

let lastMicros = 0;
/** Utils.getNowMicrosUtc: strictly increasing. */
export function nowMicros(): number {
  lastMicros = Math.max(Date.now() * 1000, lastMicros + 1);
  return lastMicros;
}

// ---- the index: immutable files plus a commit point ------------------------------------------

/** Where an index keeps its files: a folder, or memory (Lucene's RAMDirectory). */
interface Dir {
  list(): string[];
  read(name: string): Buffer;
  write(name: string, data: Buffer | string): void;
  remove(name: string): void;
}

function diskDir(path: string): Dir {
  mkdirSync(path, { recursive: true });
  return {
    list: () => readdirSync(path).filter((n) => statSync(join(path, n)).isFile()).sort(),
    read: (n) => readFileSync(join(path, n)),
    write: (n, d) => {
      const fd = openSync(join(path, n), "wx"); // immutable: never overwritten
      try {
        writeSync(fd, typeof d === "string" ? Buffer.from(d) : d);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    },
    remove: (n) => rmSync(join(path, n), { force: true }),
  };
}

function memoryDir(): Dir {
  const files = new Map<string, Buffer>();
  return {
    list: () => [...files.keys()].sort(),
    read: (n) => {
      const b = files.get(n);
      if (!b) throw new Error(`${n}: no such file`);
      return b;
    },
    write: (n, d) => void files.set(n, typeof d === "string" ? Buffer.from(d) : d),
    remove: (n) => void files.delete(n),
  };
}

/** A stored version of a document (every field of ServiceDocument and ExampleServiceState). */
export type Doc = Record<string, unknown> & {
  documentSelfLink: string;
  documentVersion: number;
  documentUpdateTimeMicros: number;
  documentUpdateAction: string;
};

interface Segment {
  name: string;
  docs: Doc[];
}

/** The newest segments_N generation among names (-1 when none). */
function newestGeneration(names: string[]): number {
  let g = -1;
  for (const n of names) {
    const m = /^segments_(\d+)$/.exec(n);
    if (m) g = Math.max(g, Number(m[1]));
  }
  return g;
}

/** The document index: all versions, a commit point over immutable segment files. */
class Index {
  segments: Segment[] = [];
  buffer: Doc[] = [];
  generation = 0;
  nextSegment = 0;
  dir: Dir;
  constructor(dir: Dir) {
    this.dir = dir;
    this.open();
  }

  /** Reads the newest commit point and its segments (a missing or damaged file fails). */
  open(): void {
    const names = this.dir.list();
    const gen = newestGeneration(names);
    this.segments = [];
    this.buffer = [];
    this.generation = Math.max(gen, 0);
    this.nextSegment = 0;
    for (const n of names) {
      const m = /^_(\d+)\./.exec(n);
      if (m) this.nextSegment = Math.max(this.nextSegment, Number(m[1]) + 1);
    }
    if (gen < 0) return;
    const commit = JSON.parse(this.dir.read(`segments_${gen}`).toString()) as { segments: string[] };
    for (const name of commit.segments) {
      const si = JSON.parse(this.dir.read(`${name}.si`).toString()) as { docCount: number; sha256: string };
      const cfs = this.dir.read(`${name}.cfs`);
      if (createHash("sha256").update(cfs).digest("hex") !== si.sha256) throw new Error(`segment ${name}: checksum mismatch in ${name}.cfs (CorruptIndexException)`);
      const docs = cfs.toString().split("\n").filter(Boolean).map((l) => JSON.parse(l) as Doc);
      if (docs.length !== si.docCount) throw new Error(`segment ${name}: ${docs.length} docs, ${name}.si says ${si.docCount}`);
      this.segments.push({ name, docs });
    }
  }

  /** Every version, committed or not, oldest first. */
  all(): Doc[] {
    return [...this.segments.flatMap((s) => s.docs), ...this.buffer];
  }

  add(doc: Doc): void {
    this.buffer.push(doc);
  }

  /** The files of the current commit point (what a backup copies). */
  commitFiles(): string[] {
    if (!this.segments.length && newestGeneration(this.dir.list()) < 0) return [];
    return [`segments_${this.generation}`, ...this.segments.flatMap((s) => [`${s.name}.cfs`, `${s.name}.si`])].sort();
  }

  private writeSegment(docs: Doc[]): Segment {
    const name = `_${(this.nextSegment++).toString(36)}`;
    const cfs = Buffer.from(docs.map((d) => JSON.stringify(d)).join("\n") + "\n");
    this.dir.write(`${name}.cfs`, cfs);
    this.dir.write(`${name}.si`, JSON.stringify({ name, docCount: docs.length, sha256: createHash("sha256").update(cfs).digest("hex") }));
    return { name, docs };
  }

  /** Flushes the buffer into a new segment, merges when there are many, writes segments_N+1, deletes unused files; false when there was nothing to commit. */
  commit(force = false): boolean {
    if (!this.buffer.length && !force) return false;
    if (this.buffer.length) this.segments.push(this.writeSegment(this.buffer));
    this.buffer = [];
    if (this.segments.length > 8) {
      // a tiered merge, roughly: the five newest (smallest) segments become one
      const merged = this.segments.splice(-5);
      this.segments.push(this.writeSegment(merged.flatMap((s) => s.docs)));
    }
    this.writeCommit();
    return true;
  }

  /** Replaces every segment by one holding docs (a forced merge), and commits. */
  rewrite(docs: Doc[]): void {
    this.buffer = [];
    this.segments = docs.length ? [this.writeSegment(docs)] : [];
    this.writeCommit();
  }

  private writeCommit(): void {
    this.generation++;
    this.dir.write(`segments_${this.generation}`, JSON.stringify({ generation: this.generation, segments: this.segments.map((s) => s.name) }));
    const keep = new Set([...this.commitFiles(), "write.lock"]);
    for (const n of this.dir.list()) if (!keep.has(n)) this.dir.remove(n); // IndexWriter.deleteUnusedFiles
  }
}

/** Latest version of every self link (tombstones included), from the oldest-first list. */
function latestOf(versions: Doc[]): Map<string, Doc> {
  const m = new Map<string, Doc>();
  for (const d of versions) {
    const cur = m.get(d.documentSelfLink);
    if (!cur || d.documentVersion >= cur.documentVersion) m.set(d.documentSelfLink, d);
  }
  return m;
}

// ---- zips -----------------------------------------------------------------------------------

/** FileUtils.zipFiles: a flat zip, one entry per file named by its basename. */
function zipTo(dir: Dir, names: string[], dest: string): Promise<void> {
  const zip = new yazl.ZipFile();
  for (const n of names) zip.addBuffer(dir.read(n), n);
  zip.end();
  const tmp = `${dest}.${process.pid}.tmp`;
  return new Promise((ok, fail) => {
    const out = zip.outputStream.pipe(createWriteStream(tmp));
    out.on("error", fail);
    out.on("close", () => {
      try {
        renameSync(tmp, dest);
        ok();
      } catch (e) {
        fail(e);
      }
    });
  });
}

/** FileUtils.extractZipArchive: every entry of a zip, by name (ZipException on a damaged zip). */
function readZip(path: string): Promise<Map<string, Buffer>> {
  return new Promise((ok, fail) => {
    yauzl.open(path, { lazyEntries: true, validateEntrySizes: true }, (err, zip) => {
      if (err || !zip) return fail(new Fail(500, `java.util.zip.ZipException: ${err?.message ?? "cannot open"}`));
      const out = new Map<string, Buffer>();
      zip.on("error", (e: Error) => fail(new Fail(500, `java.util.zip.ZipException: ${e.message}`)));
      zip.on("end", () => ok(out));
      zip.on("entry", (entry: yauzl.Entry) => {
        zip.openReadStream(entry, (e, stream) => {
          if (e || !stream) return fail(new Fail(500, `java.util.zip.ZipException: ${e?.message}`));
          const parts: Buffer[] = [];
          stream.on("data", (b: Buffer) => parts.push(b));
          stream.on("error", (x: Error) => fail(new Fail(500, `java.util.zip.ZipException: ${x.message}`)));
          stream.on("end", () => {
            out.set(entry.fileName, Buffer.concat(parts));
            zip.readEntry();
          });
        });
      });
      zip.readEntry();
    });
  });
}

// ---- the host ----------------------------------------------------------------------------------

/** Options for {@link startXenonHost}. */
export interface XenonHostOptions {
  /** The sandbox folder: the index lives in SANDBOX/lucene. */
  sandbox: string;
  /** Port on 127.0.0.1 (default: any free one). */
  port?: number;
  /** Host id (default: the one in SANDBOX/serviceHostState.json, else a new one). */
  id?: string;
  /** Start the in-memory index and /test/in-memory-examples. */
  inMemory?: boolean;
  /** Require this token on every request. */
  authToken?: string;
  /** USER:PASS accepted by POST /core/authn/basic (which answers the token). */
  basic?: string;
  /** Commit every this many ms when there are uncommitted versions (default 1000; 0: never). */
  maintenanceMs?: number;
  /** Host argument isAutoBackupEnabled: a DIRECTORY backup into autoBackupDirectory after each commit of the document index's maintenance. */
  isAutoBackupEnabled?: boolean;
  /** Host argument autoBackupDirectory (default SANDBOX/auto-backup). */
  autoBackupDirectory?: string;
  /** Called when DELETE /core/management stops the host. */
  onStop?: () => void;
  /**
   * For tests, not upstream: "stream-drop-last-chunk" makes a STREAM backup skip its last PUT
   * and still answer 200 (what a proxy that loses a chunk would leave the receiver with).
   */
  fault?: "stream-drop-last-chunk";
}

/** A running stand-in host. */
export interface XenonHost {
  url: string;
  port: number;
  id: string;
  sandbox: string;
  /** Commits and stops (a clean stop, like host.stop()). */
  close(): Promise<void>;
  /** Stops without a commit (a kill -9): uncommitted versions are lost. */
  crash(): Promise<void>;
  /**
   * One maintenance pass now (upstream's in-process POST of a MaintenanceRequest to the index):
   * commits what is pending; a commit of the document index notifies the auto-backup.
   */
  maintain(): void;
  /** Resolves once no auto-backup is running or queued (for tests). */
  autoBackupIdle(): Promise<void>;
  /** The document index (for tests). */
  index: Index;
}

/**
 * Starts a stand-in Xenon host on 127.0.0.1.
 * @example const host = await startXenonHost({ sandbox: tmp(), id: "node-a" }); … await host.close();
 */
export async function startXenonHost(opts: XenonHostOptions): Promise<XenonHost> {
  mkdirSync(opts.sandbox, { recursive: true });
  const stateFile = join(opts.sandbox, "serviceHostState.json");
  const saved = existsSync(stateFile) ? (JSON.parse(readFileSync(stateFile, "utf8")) as { id: string }).id : undefined;
  const id = opts.id ?? saved ?? randomUUID();
  writeFileSync(stateFile, JSON.stringify({ id }));
  const luceneDir = join(opts.sandbox, "lucene");
  const indexes = new Map<string, Index>();
  const disk = new Index(diskDir(luceneDir));
  writeFileSync(join(luceneDir, "write.lock"), "");
  indexes.set(DOCUMENT_INDEX, disk);
  if (opts.inMemory) indexes.set(IN_MEMORY_INDEX, new Index(memoryDir()));
  const factories = new Map<string, string>([["/core/examples", DOCUMENT_INDEX], ["/test/indexed-metadata-examples", DOCUMENT_INDEX]]);
  if (opts.inMemory) factories.set("/test/in-memory-examples", IN_MEMORY_INDEX);
  /** Started document services: they keep their state until the host restarts. */
  const started = new Map<string, Doc>();
  const tokens = new Set<string>(opts.authToken ? [opts.authToken] : []);
  let autoBackupEnabled = !!opts.isAutoBackupEnabled;
  const autoBackupDir = opts.autoBackupDirectory ?? join(opts.sandbox, "auto-backup");

  const indexOf = (link: string) => {
    const ix = indexes.get(link);
    if (!ix) throw new Fail(404, `Service not found: ${link}`);
    return ix;
  };
  const factoryOf = (selfLink: string) => [...factories.keys()].find((f) => selfLink.startsWith(`${f}/`));
  const latest = (ix: Index, link: string) => latestOf(ix.all().filter((d) => d.documentSelfLink === link)).get(link);
  const live = (ix: Index) => [...latestOf(ix.all()).values()].filter((d) => d.documentUpdateAction !== "DELETE");

  function write(ix: Index, prev: Doc | undefined, state: Record<string, unknown>, action: string): Doc {
    const doc: Doc = {
      keyValues: {},
      ...state,
      documentSelfLink: String(state.documentSelfLink),
      documentVersion: prev ? prev.documentVersion + 1 : 0,
      documentEpoch: 0,
      documentKind: EXAMPLE_KIND,
      documentUpdateTimeMicros: nowMicros(),
      documentUpdateAction: action,
      documentExpirationTimeMicros: 0,
      documentOwner: prev?.documentOwner ?? id,
      documentAuthPrincipalLink: "/core/authz/system-user",
    };
    ix.add(doc);
    if (action === "DELETE") started.delete(doc.documentSelfLink);
    else started.set(doc.documentSelfLink, doc);
    return doc;
  }

  /** The document's state: the started service's, else the index's latest (404 when deleted or missing). */
  function getDoc(link: string): Doc {
    const s = started.get(link);
    if (s) return s;
    const factory = factoryOf(link);
    const d = factory ? latest(indexOf(factories.get(factory)!), link) : undefined;
    if (!d || d.documentUpdateAction === "DELETE") throw new Fail(404, `Service not found: ${link}`);
    started.set(link, d);
    return d;
  }

  // ---- backup and restore (LuceneDocumentIndexBackupService) ----

  function destinationPath(dest: unknown): { scheme: string; path?: string; uri: string } {
    const uri = String(dest);
    const m = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(uri);
    if (!m) throw illegalArgument("Missing scheme");
    const scheme = m[1].toLowerCase();
    if (scheme === "http" || scheme === "https") return { scheme, uri };
    if (scheme !== "file") throw illegalState(`Provider "${scheme}" not installed`);
    return { scheme, uri, path: fileURLToPath(new URL(uri)).replace(/(.)\/+$/, "$1") };
  }

  async function backup(req: Record<string, unknown>): Promise<Record<string, unknown>> {
    const body = { ...req };
    body.backupType ??= "ZIP";
    body.indexServiceLink ??= DOCUMENT_INDEX;
    body.backupServiceLink ??= "/core/document-index-backup";
    if (req.destination == null) throw illegalState("backup destination must be specified.");
    const dest = destinationPath(req.destination);
    if (dest.scheme === "http" || dest.scheme === "https") body.backupType = "STREAM";
    if (body.backupType === "ZIP" && dest.path && existsSync(dest.path) && statSync(dest.path).isDirectory()) {
      throw illegalState(`destination ${dest.path} must be a local file for zip backup.`);
    }
    if (body.backupType === "DIRECTORY" && dest.path && existsSync(dest.path) && !statSync(dest.path).isDirectory()) {
      throw illegalState(`destination ${dest.path} must be a local directory for incremental backup.`);
    }
    const ix = indexOf(String(body.indexServiceLink));
    ix.commit(ix.generation === 0); // writer.commit(), then the snapshot
    const files = ix.commitFiles();
    if (body.backupType === "ZIP") {
      await zipTo(ix.dir, files, dest.path!);
    } else if (body.backupType === "DIRECTORY") {
      mkdirSync(dest.path!, { recursive: true });
      const have = new Set(readdirSync(dest.path!));
      for (const f of files) if (!have.has(f)) writeFileSync(join(dest.path!, f), ix.dir.read(f));
      const want = new Set(files);
      for (const f of have) if (!want.has(f) && statSync(join(dest.path!, f)).isFile()) unlinkSync(join(dest.path!, f));
    } else if (body.backupType === "STREAM") {
      const tmpDir = mkdtempSync(join(tmpdir(), "xenon-stream-"));
      const tmpZip = join(tmpDir, `lucene-${nowMicros()}.zip`);
      try {
        await zipTo(ix.dir, files, tmpZip);
        await putFile(dest.uri, readFileSync(tmpZip), opts.fault === "stream-drop-last-chunk");
      } finally {
        rmSync(tmpDir, { recursive: true, force: true });
      }
    } else {
      throw illegalArgument(`unknown backupType ${String(body.backupType)}`);
    }
    return body;
  }

  async function restore(req: Record<string, unknown>): Promise<Record<string, unknown>> {
    const body = { ...req };
    body.indexServiceLink ??= DOCUMENT_INDEX;
    body.backupServiceLink ??= "/core/document-index-backup";
    if (req.destination == null) throw illegalState("destination is required.");
    const dest = destinationPath(req.destination);
    const ix = indexOf(String(body.indexServiceLink));
    const inMemory = body.indexServiceLink === IN_MEMORY_INDEX;
    let files: Map<string, Buffer>;
    if (dest.scheme === "http" || dest.scheme === "https") {
      files = await readZipBuffer(await getFile(dest.uri));
    } else if (existsSync(dest.path!) && statSync(dest.path!).isFile()) {
      files = await readZip(dest.path!);
    } else if (existsSync(dest.path!) && statSync(dest.path!).isDirectory()) {
      files = new Map(readdirSync(dest.path!).filter((n) => statSync(join(dest.path!, n)).isFile()).map((n) => [n, readFileSync(join(dest.path!, n))]));
      if (!inMemory) {
        // archiveCorruptIndexFiles: move what is there aside
        const aside = `${luceneDir}.${nowMicros()}`;
        renameSync(luceneDir, aside);
        mkdirSync(luceneDir);
        ix.dir = diskDir(luceneDir);
      }
    } else {
      throw new Fail(500, `java.nio.file.NoSuchFileException: ${dest.path}`);
    }
    const previous = ix.dir;
    if (inMemory) ix.dir = memoryDir();
    for (const [name, data] of files) {
      ix.dir.remove(name); // extraction replaces a file of the same name
      ix.dir.write(name, data);
    }
    try {
      ix.open();
    } catch (e) {
      if (inMemory) ix.dir = previous;
      ix.open();
      throw new Fail(500, `org.apache.lucene.index.CorruptIndexException: ${(e as Error).message}`);
    }
    const boundary = req.timeSnapshotBoundaryMicros;
    if (boundary != null) {
      const b = Number(boundary);
      ix.rewrite(ix.all().filter((d) => d.documentUpdateTimeMicros <= b));
    }
    return body;
  }

  // ---- auto-backup (LuceneDocumentIndexBackupService.createAutoBackupConsumer) ----

  /** ServiceHostManagementService's stats: the auto-backup counters, PerHour and PerDay (initializeStats creates performed and skipped at 0). */
  const stats = new Map<string, { name: string; latestValue: number; accumulatedValue: number; version: number; lastUpdateMicrosUtc: number; kind: string }>();
  const adjustStat = (name: string, delta: number) => {
    const st = stats.get(name) ?? { name, latestValue: 0, accumulatedValue: 0, version: 0, lastUpdateMicrosUtc: nowMicros(), kind: "com:vmware:xenon:common:ServiceStats:ServiceStat" };
    st.latestValue += delta;
    st.accumulatedValue += delta;
    st.version++;
    st.lastUpdateMicrosUtc = nowMicros();
    stats.set(name, st);
  };
  const incrementAutoBackupStat = (prefix: string) => {
    adjustStat(`${prefix}PerHour`, 1);
    adjustStat(`${prefix}PerDay`, 1);
  };
  for (const prefix of ["autoBackupPerformedCount", "autoBackupSkippedCount"]) for (const suffix of ["PerHour", "PerDay"]) adjustStat(`${prefix}${suffix}`, 0);
  /** The running auto-backup (null when none), and whether a commit came while it ran. */
  let autoBackupRunning: Promise<void> | null = null;
  let receivedWhileBackupInProgress = false;
  /** The consumer of the document index's commit notifications. */
  function onCommit(): void {
    if (!autoBackupEnabled) return;
    if (autoBackupRunning) {
      incrementAutoBackupStat("autoBackupSkippedCount");
      receivedWhileBackupInProgress = true; // coalesced: one re-run covers every commit that came meanwhile
      return;
    }
    // an in-process PATCH to the backup service: sent, so it runs after this notification returns
    autoBackupRunning = Promise.resolve()
      .then(() => backup({ kind: BACKUP_KIND, destination: pathToFileURL(autoBackupDir).href, backupType: "DIRECTORY" }))
      .then(() => incrementAutoBackupStat("autoBackupPerformedCount"), (e: Error) => {
        process.stderr.write(`Auto backup failed. ${e.message}\n`);
        incrementAutoBackupStat("autoBackupFailedCount"); // and go on: later backups are not blocked (7aa9bdd9)
      })
      .then(() => {
        autoBackupRunning = null;
        if (receivedWhileBackupInProgress) {
          receivedWhileBackupInProgress = false;
          onCommit(); // processQueuedBackUps: re-trigger the notification
        }
      });
  }

  // ---- http ----

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      const f = e instanceof Fail ? e : new Fail(500, (e as Error)?.message ?? String(e));
      reply(res, f.status, { message: f.message, statusCode: f.status, documentKind: ERROR_KIND, errorCode: 0 });
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const u = new URL(req.url ?? "/", "http://x");
    const path = u.pathname.replace(/(.)\/+$/, "$1");
    const method = req.method ?? "GET";
    const raw = await readBody(req);
    if (path === "/core/authn/basic" && method === "POST" && opts.basic) {
      const auth = req.headers.authorization ?? "";
      if (!auth.startsWith("Basic ") || Buffer.from(auth.slice(6), "base64").toString() !== opts.basic) throw new Fail(403, "forbidden");
      const token = randomUUID();
      tokens.add(token);
      res.setHeader("x-xenon-auth-token", token);
      return reply(res, 200, {});
    }
    if (tokens.size || opts.basic) {
      const given = (req.headers["x-xenon-auth-token"] as string | undefined) ?? (req.headers.authorization?.startsWith("Bearer ") ? req.headers.authorization.slice(7) : undefined);
      if (!given || !tokens.has(given)) throw new Fail(403, "forbidden");
    }
    const json = (): Record<string, unknown> | null => {
      if (!raw.length) return null;
      try {
        return JSON.parse(raw.toString());
      } catch {
        throw illegalArgument("body is not JSON");
      }
    };

    if (path === "/core/management") {
      if (method === "GET") {
        return reply(res, 200, {
          id,
          httpPort: port,
          bindAddress: "127.0.0.1",
          storageSandboxFileReference: `file:${opts.sandbox}`,
          systemInfo: { availableProcessorCount: cpus().length, totalMemoryByteCount: totalmem(), freeMemoryByteCount: freemem(), maxMemoryByteCount: totalmem() },
          codeProperties: { "git.commit.id": "stand-in", "git.commit.time": "2018-12-10" },
          isAutoBackupEnabled: autoBackupEnabled,
          autoBackupDirectoryReference: pathToFileURL(autoBackupDir).href,
          documentSelfLink: "/core/management",
          documentKind: "com:vmware:xenon:common:ServiceHost:ServiceHostState",
        });
      }
      if (method === "DELETE") {
        reply(res, 202, {});
        setTimeout(() => void close().then(() => opts.onStop?.()), 10);
        return;
      }
      if (method === "PATCH") {
        const body = json();
        if (!body) throw illegalArgument("empty body");
        if (!body.kind) throw illegalArgument("kind is required");
        appendFileSync(join(opts.sandbox, "patches.log"), `${String(body.kind).split(":").pop()}\n`);
        if (body.kind === BACKUP_KIND) return reply(res, 200, await backup(body));
        if (body.kind === RESTORE_KIND) return reply(res, 200, await restore(body));
        if (body.kind === AUTO_BACKUP_KIND) {
          autoBackupEnabled = !!body.enable; // host.setAutoBackupEnabled: checked on each commit, so it toggles at runtime
          return reply(res, 200, { ...body, enable: autoBackupEnabled });
        }
        throw illegalArgument("unknown request");
      }
      throw new Fail(405, `Action not supported: ${method}`);
    }
    if (path === "/core/management/stats") {
      if (method !== "GET") throw new Fail(405, `Action not supported: ${method}`);
      return reply(res, 200, { kind: "com:vmware:xenon:common:ServiceStats", documentSelfLink: path, entries: Object.fromEntries(stats) });
    }
    if (path === "/core/document-index-backup") throw new Fail(405, `Action not supported: ${method}`);
    if (path === DOCUMENT_INDEX || path === IN_MEMORY_INDEX) {
      const ix = indexOf(path);
      const link = u.searchParams.get("documentSelfLink");
      if (!link) throw illegalArgument("documentSelfLink query parameter is required");
      const includeDeleted = u.searchParams.has("includeDeleted");
      const version = u.searchParams.get("documentVersion");
      if (link.endsWith("*")) {
        const docs = [...latestOf(ix.all()).values()].filter((d) => d.documentSelfLink.startsWith(link.slice(0, -1)) && (includeDeleted || d.documentUpdateAction !== "DELETE"));
        return reply(res, 200, { documentLinks: docs.map((d) => d.documentSelfLink).sort(), documents: Object.fromEntries(docs.map((d) => [d.documentSelfLink, d])), documentCount: docs.length });
      }
      const versions = ix.all().filter((d) => d.documentSelfLink === link);
      const d = version != null ? versions.find((v) => v.documentVersion === Number(version)) : latestOf(versions).get(link);
      if (!d || (d.documentUpdateAction === "DELETE" && !includeDeleted)) return reply(res, 200, null);
      return reply(res, 200, d);
    }
    if (path === "/core/query-tasks" || path === "/core/local-query-tasks") {
      if (method !== "POST") throw new Fail(405, `Action not supported: ${method}`);
      const q = json() as { querySpec?: { query?: { term?: { propertyName: string; matchValue: string } } } } | null;
      const term = q?.querySpec?.query?.term;
      if (!term) throw illegalArgument("querySpec.query.term is required (the stand-in supports one field clause)");
      const docs = [...indexes.values()].flatMap((ix) => live(ix)).filter((d) => String(d[term.propertyName]) === term.matchValue);
      return reply(res, 200, { ...q, taskInfo: { stage: "FINISHED", isDirect: true }, results: { documentLinks: docs.map((d) => d.documentSelfLink), documents: Object.fromEntries(docs.map((d) => [d.documentSelfLink, d])), documentCount: docs.length } });
    }
    const factory = factories.has(path) ? path : undefined;
    if (factory) {
      const ix = indexOf(factories.get(factory)!);
      if (method === "GET") {
        const docs = live(ix).filter((d) => d.documentSelfLink.startsWith(`${factory}/`)).sort((a, b) => (a.documentSelfLink < b.documentSelfLink ? -1 : 1));
        const expand = u.searchParams.has("$expand") || u.searchParams.has("expand");
        return reply(res, 200, {
          documentLinks: docs.map((d) => d.documentSelfLink),
          ...(expand ? { documents: Object.fromEntries(docs.map((d) => [d.documentSelfLink, d])) } : {}),
          documentCount: docs.length,
          documentVersion: 0,
          documentOwner: id,
        });
      }
      if (method === "POST") {
        const body = json();
        if (!body) throw illegalArgument("initial state is required");
        if (body.name == null) throw illegalArgument("name is required");
        const given = body.documentSelfLink ? String(body.documentSelfLink) : randomUUID();
        const link = given.startsWith(`${factory}/`) ? given : `${factory}/${given.replace(/^\/+/, "")}`;
        const prev = latest(ix, link);
        if (prev && prev.documentUpdateAction !== "DELETE") throw new Fail(409, `service already started: ${link}`);
        return reply(res, 200, write(ix, prev, { ...body, documentSelfLink: link }, "POST"));
      }
      throw new Fail(405, `Action not supported: ${method}`);
    }
    const owner = factoryOf(path);
    if (owner) {
      const ix = indexOf(factories.get(owner)!);
      const cur = getDoc(path);
      if (method === "GET") return reply(res, 200, cur);
      if (method === "DELETE") return reply(res, 200, write(ix, cur, { ...cur }, "DELETE"));
      const body = json();
      if (!body) throw illegalArgument("body is required");
      if (method === "PUT") {
        if (body.name == null) throw illegalArgument("name is required");
        return reply(res, 200, write(ix, cur, { ...body, documentSelfLink: path }, "PUT"));
      }
      if (method === "PATCH") {
        const next: Record<string, unknown> = { ...cur };
        if (body.name != null) next.name = body.name;
        if (body.counter != null) next.counter = body.counter;
        if (body.tags != null) next.tags = [...new Set([...((cur.tags as string[]) ?? []), ...(body.tags as string[])])];
        if (body.keyValues != null) next.keyValues = { ...(cur.keyValues as object), ...(body.keyValues as object) };
        return reply(res, 200, write(ix, cur, next, "PATCH"));
      }
      throw new Fail(405, `Action not supported: ${method}`);
    }
    throw new Fail(404, `Service not found: ${path}`);
  }

  await new Promise<void>((ok, fail) => {
    server.once("error", fail);
    server.listen(opts.port ?? 0, "127.0.0.1", ok);
  });
  const port = (server.address() as AddressInfo).port;
  const maintain = () => {
    for (const [link, ix] of indexes) if (ix.commit() && link === DOCUMENT_INDEX) onCommit(); // publish(CommitInfo) when something was committed
  };
  const maintenance = (opts.maintenanceMs ?? 1000) > 0 ? setInterval(maintain, opts.maintenanceMs ?? 1000) : null;
  maintenance?.unref();
  let closed = false;
  const stop = async (commit: boolean) => {
    if (closed) return;
    closed = true;
    if (maintenance) clearInterval(maintenance);
    if (commit) for (const ix of indexes.values()) ix.commit();
    server.closeAllConnections();
    await new Promise((ok) => server.close(ok));
    rmSync(join(luceneDir, "write.lock"), { force: true });
  };
  const close = () => stop(true);
  const autoBackupIdle = async () => {
    while (autoBackupRunning) await autoBackupRunning;
  };
  return { url: `http://127.0.0.1:${port}`, port, id, sandbox: opts.sandbox, close, crash: () => stop(false), index: disk, maintain, autoBackupIdle };
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((ok, fail) => {
    const parts: Buffer[] = [];
    req.on("data", (b: Buffer) => parts.push(b));
    req.on("end", () => ok(Buffer.concat(parts)));
    req.on("error", fail);
  });
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  const text = body === null ? "" : JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json; charset=UTF-8", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function readZipBuffer(data: Buffer): Promise<Map<string, Buffer>> {
  const dir = mkdtempSync(join(tmpdir(), "xenon-restore-"));
  const file = join(dir, `restore-${nowMicros()}.zip`);
  writeFileSync(file, data);
  return readZip(file).finally(() => rmSync(dir, { recursive: true, force: true }));
}

/**
 * FileUtils.putFile / putChunks: a batch of 10 PUTs of up to 512 KiB, `Content-Range: bytes
 * start-end/total` with end EXCLUSIVE, application/octet-stream, retry count 0 (the first failure
 * fails the upload). Each batch is 10 PUTs even past the end of the file: the rest are EMPTY
 * PUTs `bytes total-total/total`. The 10th PUT's completion starts the next batch, so up to 19
 * can be in flight. Done when every PUT sent has completed and the file's end was reached.
 * dropLast (a test fault, not upstream) skips the PUT of the last bytes and counts it as done.
 */
export function putFile(uri: string, data: Buffer, dropLast = false): Promise<void> {
  const total = data.length;
  return new Promise((ok, fail) => {
    let count = 0;
    let fileIsDone = false;
    let settled = false;
    const send = (start: number, end: number): Promise<void> => {
      if (dropLast && start < end && end === total) return Promise.resolve();
      return fetch(uri, {
        method: "PUT",
        headers: { "content-type": "application/octet-stream", "content-range": `bytes ${start}-${end}/${total}` },
        body: data.subarray(start, end) as unknown as BodyInit,
      }).then(async (r) => {
        const text = await r.text();
        if (r.status >= 400) throw new Fail(r.status >= 500 ? r.status : 500, `PUT ${uri} (bytes ${start}-${end}/${total}): ${r.status} ${text}`.trim());
      }, (e: Error & { cause?: Error }) => {
        throw new Fail(500, `PUT ${uri}: ${e.cause?.message ?? e.message}`);
      });
    };
    const putChunks = (off: number) => {
      let start = off;
      let end = Math.min(off + CHUNK, total);
      for (let i = 0; i < IN_FLIGHT; i++) {
        count++;
        fileIsDone = end >= total;
        const startNextChunk = i === IN_FLIGHT - 1;
        const next = end;
        send(start, end).then(() => {
          if (settled) return;
          if (--count === 0 && fileIsDone) {
            settled = true;
            return ok();
          }
          if (startNextChunk) putChunks(next);
        }, (e: Error) => {
          if (!settled) (settled = true), fail(e);
        });
        start = end; // range.nextChunk(): the next range starts at this one's end, clamped to the file
        end = Math.min(end + CHUNK, total);
      }
    };
    putChunks(0);
  });
}

/**
 * FileUtils.getFile / getChunks: a first GET with `Range: bytes=0-524288`; a response without
 * Content-Range is the whole file (a plain 200 works); else up to 10 GETs for the next ranges
 * (end exclusive, clamped to the total), the 10th's completion asking for the next set, each
 * body written at its Content-Range start, done when the bytes written reach the total. An empty
 * body fails with "no data". Where upstream would wait forever for bytes a server never sent,
 * this fails with "download … ended at N of T bytes".
 */
export function getFile(uri: string): Promise<Buffer> {
  const get = async (start: number, end: number) => {
    let r: Response;
    try {
      r = await fetch(uri, { headers: { range: `bytes=${start}-${end}` } });
    } catch (e) {
      throw new Fail(500, `GET ${uri}: ${(e as Error & { cause?: Error }).cause?.message ?? (e as Error).message}`);
    }
    const body = Buffer.from(await r.arrayBuffer());
    if (r.status >= 400) throw new Fail(r.status >= 500 ? r.status : 500, `GET ${uri}: ${r.status} ${body.toString().slice(0, 200)}`.trim());
    if (!body.length) throw illegalState("no data");
    const cr = r.headers.get("content-range");
    const m = cr ? /^bytes (\d+)-(\d+)\/(\d+)$/.exec(cr) : null;
    return { body, range: m ? { start: Number(m[1]), end: Number(m[2]), total: Number(m[3]) } : null };
  };
  return new Promise((ok, fail) => {
    let settled = false;
    const done = (e: Error | null, b?: Buffer) => {
      if (settled) return;
      settled = true;
      if (e) fail(e);
      else ok(b!);
    };
    let out = Buffer.alloc(0);
    let total = 0;
    let written = 0;
    let pending = 0;
    const writeBody = (body: Buffer, at: number) => {
      body.copy(out, at);
      written += body.length;
      if (written >= total) done(null, out);
    };
    const getChunks = (from: number) => {
      let end = from;
      for (let i = 0; i < IN_FLIGHT && end < total; i++) {
        const start = end;
        end = Math.min(start + CHUNK, total);
        const getNextSet = i === IN_FLIGHT - 1 && end < total;
        const next = end;
        pending++;
        get(start, next).then((g) => {
          pending--;
          if (settled) return;
          writeBody(g.body, g.range ? g.range.start : start);
          if (getNextSet) getChunks(next);
          else if (!pending && written < total) done(illegalState(`download of ${uri} ended at ${written} of ${total} bytes`));
        }, (e: Error) => done(e));
      }
    };
    get(0, CHUNK).then((first) => {
      if (!first.range) return done(null, first.body);
      total = first.range.total;
      out = Buffer.alloc(total);
      writeBody(first.body, first.range.start);
      if (settled) return;
      getChunks(first.range.end);
      if (!pending) done(illegalState(`download of ${uri} ended at ${written} of ${total} bytes`));
    }, (e: Error) => done(e));
  });
}

// ---- command line: a host in its own process (the drill restarts it) ---------------------------

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  const flag = (name: string) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const sandbox = flag("sandbox");
  if (!sandbox) {
    process.stderr.write("usage: xenon.ts --sandbox DIR [--port P] [--id HOSTID] [--in-memory] [--auth-token T] [--basic USER:PASS] [--isAutoBackupEnabled] [--autoBackupDirectory DIR] [--fault stream-drop-last-chunk]\n");
    process.exit(2);
  }
  try {
    const host = await startXenonHost({
      sandbox,
      port: flag("port") ? Number(flag("port")) : undefined,
      id: flag("id"),
      inMemory: args.includes("--in-memory"),
      authToken: flag("auth-token") ?? process.env.XENON_AUTH_TOKEN,
      basic: flag("basic") ?? process.env.XENON_BASIC,
      fault: flag("fault") as XenonHostOptions["fault"],
      isAutoBackupEnabled: args.includes("--isAutoBackupEnabled"),
      autoBackupDirectory: flag("autoBackupDirectory"),
      onStop: () => process.exit(0),
    });
    process.stdout.write(`xenon stand-in listening on ${host.url} (id ${host.id})\n`);
    const quit = () => void host.close().then(() => process.exit(0));
    process.on("SIGTERM", quit);
    process.on("SIGINT", quit);
  } catch (e) {
    process.stderr.write(`xenon stand-in failed to start: ${(e as Error).message}\n`);
    process.exit(1);
  }
}
