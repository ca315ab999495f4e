/**
 * OpenSearch STAND-IN for the lifeboat test lab (the Hoss search index).
 *
 * Why a stand-in: real OpenSearch cannot run on the lab machines. No JVM distribution or
 * OpenSearch tarball is reachable (only Debian packages and the npm registry are), and a
 * JVM node is too heavy for 2 shared cores anyway. So this is a small node:http server
 * that implements ONLY the documented subset of the REST API listed below, following the
 * OpenSearch 2.x / Elasticsearch reference for paths, status codes and response shapes.
 * Anything outside the subset answers like a real node answers an unknown route (400 "no
 * handler found"), or 400 naming the unimplemented feature; it never pretends.
 *
 *   node --import=tsx test/standins/opensearch.ts --port 9201 --data DIR [--path-repo DIR]...
 *        [--user NAME --password-file FILE]
 *   -> one stdout line {"ready":true,"port":N,...} once listening on 127.0.0.1 (port 0 = any).
 *   import { startOpenSearch } from "./standins/opensearch.ts"   (in-process, for tests)
 *
 * Runs under Node (via tsx) and Deno (node: built-ins only, no dependencies).
 *
 * The subset:
 *   GET|HEAD /                          cluster info, version.number 2.11.0
 *   GET /_cluster/health[/INDEX]        wait_for_status=green|yellow|red, timeout=30s (408 on timeout)
 *   PUT /INDEX  GET|HEAD /INDEX  DELETE /INDEX  POST /INDEX/_close|_open
 *   PUT|POST /INDEX/_doc/ID  POST /INDEX/_doc  PUT|POST /INDEX/_create/ID  POST /INDEX/_update/ID
 *   GET|HEAD|DELETE /INDEX/_doc/ID       (op_type, if_seq_no/if_primary_term, refresh=true|wait_for)
 *   POST [/INDEX]/_bulk                  NDJSON index|create|delete|update(doc, doc_as_upsert)
 *   POST|GET [/TARGET]/_refresh  GET|POST [/TARGET]/_count  GET|POST [/TARGET]/_search
 *        queries: match_all, match_none, ids, term (exact value of a field path), bool.filter|must of
 *        those; from, size, sort on _id/_doc/field, track_total_hits; index.max_result_window 10000
 *   GET /_cat/indices[/PATTERN]          text (v, h, s) or ?format=json
 *   PUT|POST|GET|DELETE /_snapshot/REPO  GET /_snapshot[/_all]  POST /_snapshot/REPO/_verify
 *        type fs only; settings.location must lie under a --path-repo root, as path.repo requires
 *        (no --path-repo = path.repo empty = every fs repository refused, like the real node)
 *   PUT|POST /_snapshot/REPO/SNAP        indices, ignore_unavailable, include_global_state, metadata, partial
 *   GET /_snapshot/REPO/SNAP[,SNAP|*|_all]   DELETE /_snapshot/REPO/SNAP
 *   POST /_snapshot/REPO/SNAP/_restore   indices, ignore_unavailable, rename_pattern,
 *        rename_replacement, index_settings, ignore_index_settings
 *
 * Behaviour kept from the real thing because backup/restore tests depend on it:
 *   - near-real-time search: _search/_count see writes only after a refresh (explicit, ?refresh,
 *     or the 1 s refresh_interval); GET by id is realtime;
 *   - single node: an index with number_of_replicas > 0 (the default is 1) leaves its replicas
 *     unassigned, so cluster health is YELLOW until replicas are set to 0, exactly as on a
 *     one-node OpenSearch (an empty cluster, or replicas 0, is green);
 *   - a body needs Content-Type application/json (application/x-ndjson for _bulk): 406 otherwise;
 *     _bulk must end with a newline;
 *   - restore onto an open index with the same name fails (500 snapshot_restore_exception); onto a
 *     closed one it replaces it; restored indices get a new index uuid;
 *   - wildcard or _all index deletion is refused (action.destructive_requires_name=true);
 *   - one node per data dir (node.lock); repositories survive a restart (cluster state);
 *   - a repository registered on a fresh node over an existing location sees the snapshots there;
 *   - allocation filtering by node name (index.routing.allocation.require._name, set at creation):
 *     a name other than this node's leaves the index's primaries unassigned, so its health (and the
 *     cluster's) is RED, searches on it fail (503 search_phase_execution_exception) and so do reads
 *     and writes by id (503 unavailable_shards_exception, at once: the real node waits 1m first);
 *   - a snapshot of an index whose primary is unassigned is refused before it starts (500
 *     snapshot_exception "Indices don't have primary shards [...]"), as OpenSearch 2.x does, unless
 *     the request says partial: true; then it ends PARTIAL with the shard's failure ("primary shard is
 *     not allocated") and restoring that index is refused ("wasn't fully snapshotted").
 *     (Elasticsearch before 7.6 recorded the refused case as a FAILED snapshot instead.)
 *
 * Storage (real files). --data DIR: _state/cluster.json (cluster uuid, repositories),
 * indices/<uuid>/{_state.json,docs.ndjson,translog.ndjson}. A repository location holds
 * index-N (repository data) + index.latest (N as 8 bytes big-endian), snap-<uuid>.dat (snapshot
 * info), meta-<uuid>.dat (global state), indices/<id>/meta-<uuid>.dat (index metadata),
 * indices/<id>/0/snap-<uuid>.dat (file list with sha256) and indices/<id>/0/__<hash> (gzipped
 * NDJSON documents, shared between snapshots when unchanged, checked on restore). The layout
 * mirrors the real blob store; the bytes inside are our own JSON, not Lucene/SMILE.
 *
 * Left out: analysis and full-text queries, mappings beyond storing what was given, aliases,
 * templates, data streams, scroll/PIT, the _status API, TLS and the security plugin's users/roles
 * (only optional HTTP basic auth with one user: 401 "Unauthorized" like the security plugin).
 */
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import crypto from "node:crypto";
import zlib from "node:zlib";
import process from "node:process";
import { Buffer } from "node:buffer";
import { setInterval, clearInterval, setTimeout } from "node:timers";
import { fileURLToPath } from "node:url";

const VERSION = "2.11.0";
const VERSION_ID = 136327827; // OpenSearch Version.id for 2.11.0 (2110099 ^ 0x08000000)
const MAX_CONTENT_LENGTH = 100 * 1024 * 1024;
const MAX_RESULT_WINDOW = 10000;
const REFRESH_INTERVAL_MS = 1000;
const TRANSLOG_FLUSH_OPS = 5000;

// ---------------------------------------------------------------------------------------------
// Errors, in the OpenSearch shape: {"error":{"root_cause":[...],"type","reason",...},"status"}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Obj = { [k: string]: Json };

class OsError extends Error {
  readonly status: number;
  readonly type: string;
  readonly reason: string;
  readonly extra: Obj;
  readonly causedBy?: OsError;
  constructor(status: number, type: string, reason: string, extra: Obj = {}, causedBy?: OsError) {
    super(reason);
    this.status = status;
    this.type = type;
    this.reason = reason;
    this.extra = extra;
    this.causedBy = causedBy;
  }
  body(): Obj {
    const root = this.causedBy ?? this;
    const err: Obj = {
      root_cause: [{ type: root.type, reason: root.reason, ...root.extra }],
      type: this.type,
      reason: this.reason,
      ...this.extra,
    };
    if (this.causedBy) err.caused_by = { type: this.causedBy.type, reason: this.causedBy.reason, ...this.causedBy.extra };
    return { error: err, status: this.status };
  }
}

/** Errors whose real body is {"error":"text","status":N} (REST layer, not an exception). */
class PlainError extends Error {
  readonly status: number;
  readonly text: string;
  readonly headers: Record<string, string>;
  constructor(status: number, text: string, headers: Record<string, string> = {}) {
    super(text);
    this.status = status;
    this.text = text;
    this.headers = headers;
  }
}

const indexNotFound = (name: string) =>
  new OsError(404, "index_not_found_exception", `no such index [${name}]`, {
    "resource.type": "index_or_alias",
    "resource.id": name,
    index_uuid: "_na_",
    index: name,
  });
const repoMissing = (repo: string) => new OsError(404, "repository_missing_exception", `[${repo}] missing`);
const repoException = (repo: string, msg: string) => new OsError(500, "repository_exception", `[${repo}] ${msg}`);
const badRequest = (reason: string) => new OsError(400, "illegal_argument_exception", reason);
const notImplemented = (what: string) =>
  new OsError(400, "illegal_argument_exception", `[opensearch stand-in] ${what} is not implemented by the lifeboat stand-in`);

// ---------------------------------------------------------------------------------------------
// Small helpers

function uuid(): string {
  return crypto.randomBytes(16).toString("base64url").slice(0, 22);
}
function autoId(): string {
  return crypto.randomBytes(15).toString("base64url");
}
function writeAtomic(file: string, data: string | Buffer): void {
  const tmp = `${file}.tmp-${process.pid}-${crypto.randomBytes(4).toString("hex")}`;
  fs.writeFileSync(tmp, data);
  fs.renameSync(tmp, file);
}
function readJson<T = Obj>(file: string): T {
  return JSON.parse(fs.readFileSync(file, "utf8")) as T;
}
function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
function boolParam(q: URLSearchParams, name: string, dflt = false): boolean {
  const v = q.get(name);
  if (v === null) return dflt;
  return v === "" || v === "true";
}
function parseTime(v: string | null, dfltMs: number): number {
  if (!v) return dfltMs;
  const m = /^(\d+(?:\.\d+)?)(nanos|micros|ms|s|m|h|d)?$/.exec(v.trim());
  if (!m) throw new OsError(400, "parse_exception", `failed to parse setting [timeout] with value [${v}] as a time value: unit is missing or unrecognized`);
  const n = Number(m[1]);
  const unit = { nanos: 1e-6, micros: 1e-3, ms: 1, s: 1000, m: 60000, h: 3600000, d: 86400000 }[m[2] ?? "ms"]!;
  return n * unit;
}
function humanBytes(n: number): string {
  const units = ["b", "kb", "mb", "gb", "tb"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n}b` : `${Math.round(v * 10) / 10}${units[i]}`;
}
function dirSize(dir: string): number {
  let total = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    total += e.isDirectory() ? dirSize(p) : fs.statSync(p).size;
  }
  return total;
}
function globToRegExp(glob: string): RegExp {
  return new RegExp("^" + glob.split("*").map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*") + "$");
}
/** Value at a dotted path of a document, for term queries and sorting. */
function fieldValue(src: unknown, field: string): unknown {
  if (isObj(src) && field in src) return src[field];
  let cur: unknown = src;
  for (const part of field.split(".")) {
    if (!isObj(cur)) return undefined;
    cur = cur[part];
  }
  return cur;
}
function deepMerge(base: Obj, patch: Obj): Obj {
  const out: Obj = { ...base };
  for (const [k, v] of Object.entries(patch)) out[k] = isObj(v) && isObj(out[k]) ? deepMerge(out[k] as Obj, v) : v;
  return out;
}

function validateIndexName(name: string): void {
  const bad = (why: string) => new OsError(400, "invalid_index_name_exception", `Invalid index name [${name}], ${why}`, { "index_uuid": "_na_", index: name });
  if (name !== name.toLowerCase()) throw bad("must be lowercase");
  if (/[\\/*?"<>| ,#:]/.test(name)) throw bad('must not contain the following characters [ , ", *, \\, <, |, ,, >, /, ?, #, :]');
  if (/^[_\-+]/.test(name)) throw bad("must not start with '_', '-', or '+'");
  if (name === "." || name === "..") throw bad("must not be '.' or '..'");
  if (Buffer.byteLength(name) > 255) throw bad("index name is too long, (" + Buffer.byteLength(name) + " > 255)");
  if (name === "") throw bad("must not be empty");
}

function validateSnapshotName(repo: string, name: string): void {
  const bad = (why: string) => new OsError(400, "invalid_snapshot_name_exception", `[${repo}:${name}] Invalid snapshot name [${name}], ${why}`);
  if (name === "") throw bad("cannot be empty");
  if (/\s/.test(name)) throw bad("must not contain whitespace");
  if (name.includes(",")) throw bad("must not contain ','");
  if (name.includes("#")) throw bad("must not contain '#'");
  if (name.startsWith("_")) throw bad("must not start with '_'");
  if (name !== name.toLowerCase()) throw bad("must be lowercase");
  if (/[\\/*?"<>|]/.test(name)) throw bad('must not contain the following characters [\\, /, *, ?, ", <, >, |]');
}

/** Flattens {"index":{"number_of_shards":1}} / {"index.number_of_shards":"1"} into {number_of_shards:"1"}. */
function flattenSettings(s: unknown, prefix = ""): Record<string, string> {
  const out: Record<string, string> = {};
  if (!isObj(s)) return out;
  for (const [k, v] of Object.entries(s)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (isObj(v)) Object.assign(out, flattenSettings(v, key));
    else if (v !== null) out[key.replace(/^index\./, "")] = Array.isArray(v) ? v.join(",") : String(v);
  }
  return out;
}
function nestSettings(flat: Record<string, string>): Obj {
  const out: Obj = {};
  for (const [k, v] of Object.entries(flat)) {
    const parts = k.split(".");
    let cur = out;
    for (const p of parts.slice(0, -1)) cur = (isObj(cur[p]) ? cur[p] : (cur[p] = {})) as Obj;
    cur[parts[parts.length - 1]] = v;
  }
  return out;
}
function checkSettings(flat: Record<string, string>): void {
  const shards = Number(flat.number_of_shards ?? "1");
  if (!Number.isInteger(shards) || shards < 1 || shards > 1024)
    throw badRequest(`Failed to parse value [${flat.number_of_shards}] for setting [index.number_of_shards] must be >= 1 and <= 1024`);
  const reps = Number(flat.number_of_replicas ?? "1");
  if (!Number.isInteger(reps) || reps < 0)
    throw badRequest(`Failed to parse value [${flat.number_of_replicas}] for setting [index.number_of_replicas] must be >= 0`);
}

// ---------------------------------------------------------------------------------------------
// Indices: documents in memory, persisted as docs.ndjson (compacted) + translog.ndjson (appended)

interface Doc {
  id: string;
  version: number;
  seqNo: number;
  primaryTerm: number;
  src: string; // the _source, as normalized JSON text
}
interface IndexMeta {
  name: string;
  uuid: string;
  creation_date: number;
  settings: Record<string, string>; // without the "index." prefix
  mappings: Obj;
  aliases: Obj;
  state: "open" | "close";
}

function docLine(d: Doc): string {
  return `{"_id":${JSON.stringify(d.id)},"_version":${d.version},"_seq_no":${d.seqNo},"_primary_term":${d.primaryTerm},"_source":${d.src}}`;
}
function parseDocLine(line: string): Doc {
  const o = JSON.parse(line) as Obj;
  return {
    id: String(o._id),
    version: Number(o._version),
    seqNo: Number(o._seq_no),
    primaryTerm: Number(o._primary_term ?? 1),
    src: JSON.stringify(o._source),
  };
}

class Index {
  docs = new Map<string, Doc>();
  /** What search and count see: the documents as of the last refresh. */
  visible = new Map<string, Doc>();
  maxSeqNo = -1;
  private translogOps = 0;
  private pendingRefresh = false;
  private parsed = new WeakMap<Doc, unknown>();

  readonly dir: string;
  meta: IndexMeta;
  private constructor(dir: string, meta: IndexMeta) {
    this.dir = dir;
    this.meta = meta;
  }

  get name() {
    return this.meta.name;
  }
  get shards() {
    return Number(this.meta.settings.number_of_shards ?? "1");
  }
  get replicas() {
    return Number(this.meta.settings.number_of_replicas ?? "1");
  }
  /** True when allocation filtering keeps the primaries off the only node (routing.allocation.require._name). */
  unassignedOn(nodeName: string): boolean {
    const want = this.meta.settings["routing.allocation.require._name"];
    return want !== undefined && want !== "" && !want.split(",").map((s) => s.trim()).includes(nodeName);
  }

  static create(indicesDir: string, meta: IndexMeta, docs: Doc[] = [], maxSeqNo = -1): Index {
    const dir = path.join(indicesDir, meta.uuid);
    fs.mkdirSync(dir, { recursive: true });
    const ix = new Index(dir, meta);
    for (const d of docs) ix.docs.set(d.id, d);
    ix.maxSeqNo = Math.max(maxSeqNo, ...docs.map((d) => d.seqNo), -1);
    ix.flush();
    writeAtomic(path.join(dir, "_state.json"), JSON.stringify(meta, null, 1)); // last: marks the index complete
    ix.visible = new Map(ix.docs);
    return ix;
  }

  static load(dir: string): Index | undefined {
    const stateFile = path.join(dir, "_state.json");
    if (!fs.existsSync(stateFile)) return undefined; // an index whose creation never completed
    const ix = new Index(dir, readJson<IndexMeta>(stateFile));
    const docsFile = path.join(dir, "docs.ndjson");
    if (fs.existsSync(docsFile)) {
      for (const line of fs.readFileSync(docsFile, "utf8").split("\n")) {
        if (!line) continue;
        if (line.startsWith('{"checkpoint"')) {
          ix.maxSeqNo = Math.max(ix.maxSeqNo, Number((JSON.parse(line) as { checkpoint: { max_seq_no: number } }).checkpoint.max_seq_no));
          continue;
        }
        const d = parseDocLine(line);
        ix.docs.set(d.id, d);
        ix.maxSeqNo = Math.max(ix.maxSeqNo, d.seqNo);
      }
    }
    const tlog = path.join(dir, "translog.ndjson");
    if (fs.existsSync(tlog)) {
      for (const line of fs.readFileSync(tlog, "utf8").split("\n")) {
        if (!line) continue;
        let op: Obj;
        try {
          op = JSON.parse(line) as Obj;
        } catch {
          break; // a torn last line after a crash: everything before it is kept
        }
        if (op.op === "delete") ix.docs.delete(String(op._id));
        else ix.docs.set(String(op._id), parseDocLine(line));
        ix.maxSeqNo = Math.max(ix.maxSeqNo, Number(op._seq_no));
        ix.translogOps++;
      }
    }
    ix.visible = new Map(ix.docs); // recovery makes everything searchable, as a real restart does
    return ix;
  }

  saveMeta(): void {
    writeAtomic(path.join(this.dir, "_state.json"), JSON.stringify(this.meta, null, 1));
  }

  source(d: Doc): unknown {
    let v = this.parsed.get(d);
    if (v === undefined) {
      v = JSON.parse(d.src);
      this.parsed.set(d, v);
    }
    return v;
  }

  /** Applies write operations in memory and appends them to the translog (one write per request). */
  log(lines: string[]): void {
    if (lines.length === 0) return;
    fs.appendFileSync(path.join(this.dir, "translog.ndjson"), lines.join("\n") + "\n");
    this.translogOps += lines.length;
    this.pendingRefresh = true;
    if (this.translogOps >= TRANSLOG_FLUSH_OPS) this.flush();
  }

  put(id: string, src: string): Doc {
    const prev = this.docs.get(id);
    const d: Doc = { id, version: (prev?.version ?? 0) + 1, seqNo: ++this.maxSeqNo, primaryTerm: 1, src };
    this.docs.set(id, d);
    return d;
  }
  remove(id: string): { version: number; seqNo: number } | undefined {
    const prev = this.docs.get(id);
    if (!prev) return undefined;
    this.docs.delete(id);
    return { version: prev.version + 1, seqNo: ++this.maxSeqNo };
  }

  /** Compacts: rewrites docs.ndjson from memory, then empties the translog. */
  flush(): void {
    const lines = [JSON.stringify({ checkpoint: { max_seq_no: this.maxSeqNo } })];
    for (const d of this.docs.values()) lines.push(docLine(d));
    writeAtomic(path.join(this.dir, "docs.ndjson"), lines.join("\n") + "\n");
    fs.writeFileSync(path.join(this.dir, "translog.ndjson"), "");
    this.translogOps = 0;
  }

  refresh(): void {
    if (!this.pendingRefresh) return;
    this.visible = new Map(this.docs);
    this.pendingRefresh = false;
  }

  storeSize(): number {
    try {
      return dirSize(this.dir);
    } catch {
      return 0;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Snapshot repositories (type fs): real files under the location, read afresh on every request

interface RepoSettings {
  type: string;
  settings: Obj;
}
interface RepoSnapshotEntry {
  name: string;
  uuid: string;
  state: string;
  start_time_in_millis: number;
  version: string;
}
interface RepoData {
  generation: number;
  snapshots: RepoSnapshotEntry[];
  indices: Record<string, { id: string; snapshots: string[] }>;
}
interface ShardFile {
  name: string;
  physical: string;
  length: number;
  checksum: string;
}
interface ShardSnapshot {
  name: string;
  index_version: number;
  start_time: number;
  time: number;
  doc_count: number;
  max_seq_no: number;
  files: ShardFile[];
}

class FsRepository {
  readonly name: string;
  readonly location: string;
  readonly readonly: boolean;
  constructor(name: string, location: string, readonly: boolean) {
    this.name = name;
    this.location = location;
    this.readonly = readonly;
  }

  private latestGeneration(): number {
    const latest = path.join(this.location, "index.latest");
    if (fs.existsSync(latest)) {
      const b = fs.readFileSync(latest);
      if (b.length === 8) return Number(b.readBigInt64BE(0));
    }
    let gen = -1;
    if (fs.existsSync(this.location))
      for (const f of fs.readdirSync(this.location)) {
        const m = /^index-(\d+)$/.exec(f);
        if (m) gen = Math.max(gen, Number(m[1]));
      }
    return gen;
  }

  data(): RepoData {
    const gen = this.latestGeneration();
    if (gen < 0) return { generation: -1, snapshots: [], indices: {} };
    const file = path.join(this.location, `index-${gen}`);
    if (!fs.existsSync(file)) throw repoException(this.name, `could not read repository data from index blob [index-${gen}]`);
    const d = readJson<RepoData>(file);
    d.generation = gen;
    return d;
  }

  /** Writes the next generation; fails if another node wrote it first. */
  writeData(d: RepoData): void {
    const next = d.generation + 1;
    const body = JSON.stringify({ ...d, generation: next }, null, 1);
    try {
      fs.writeFileSync(path.join(this.location, `index-${next}`), body, { flag: "wx" });
    } catch (e) {
      if ((e as { code?: string }).code === "EEXIST")
        throw repoException(this.name, `concurrent modification of the index-N file, expected current generation [${d.generation}], actual current generation [${this.latestGeneration()}]`);
      throw e;
    }
    const latest = Buffer.alloc(8);
    latest.writeBigInt64BE(BigInt(next));
    writeAtomic(path.join(this.location, "index.latest"), latest);
    if (d.generation >= 0) fs.rmSync(path.join(this.location, `index-${d.generation}`), { force: true });
    d.generation = next;
  }

  file(...parts: string[]): string {
    return path.join(this.location, ...parts);
  }

  snapshotInfo(e: RepoSnapshotEntry): Obj {
    const f = this.file(`snap-${e.uuid}.dat`);
    if (!fs.existsSync(f)) throw new OsError(404, "snapshot_missing_exception", `[${this.name}:${e.name}/${e.uuid}] is missing`);
    return readJson<{ snapshot: Obj }>(f).snapshot;
  }
}

// ---------------------------------------------------------------------------------------------
// The node

export interface StartOptions {
  port?: number;
  dataDir: string;
  pathRepo?: string | string[];
  user?: string;
  password?: string;
  clusterName?: string;
}
export interface RunningOpenSearch {
  url: string;
  port: number;
  close(): Promise<void>;
}

interface Req {
  method: string;
  segs: string[];
  uri: string;
  query: URLSearchParams;
  body: Buffer;
  contentType: string;
}
interface Res {
  status: number;
  body: unknown;
  text?: string;
}
const ok = (body: unknown, status = 200): Res => ({ status, body });

const heldLocks = new Set<string>();

class Node {
  readonly indices = new Map<string, Index>();
  readonly repos = new Map<string, RepoSettings>();
  readonly indicesDir: string;
  readonly stateFile: string;
  readonly lockFile: string;
  clusterUuid = "";
  nodeId = "";
  readonly nodeName: string;
  readonly clusterName: string;
  readonly pathRepo: string[];
  private timer?: ReturnType<typeof setInterval>;

  readonly dataDir: string;
  constructor(dataDir: string, pathRepo: string[], clusterName: string) {
    this.dataDir = dataDir;
    this.indicesDir = path.join(dataDir, "indices");
    this.stateFile = path.join(dataDir, "_state", "cluster.json");
    this.lockFile = path.join(dataDir, "node.lock");
    this.pathRepo = pathRepo.map((p) => path.resolve(p));
    this.clusterName = clusterName;
    this.nodeName = "lifeboat-standin";
  }

  open(): void {
    fs.mkdirSync(path.join(this.dataDir, "_state"), { recursive: true });
    fs.mkdirSync(this.indicesDir, { recursive: true });
    this.lock();
    if (fs.existsSync(this.stateFile)) {
      const st = readJson<{ cluster_uuid: string; node_id: string; repositories: Record<string, RepoSettings> }>(this.stateFile);
      this.clusterUuid = st.cluster_uuid;
      this.nodeId = st.node_id;
      for (const [k, v] of Object.entries(st.repositories ?? {})) this.repos.set(k, v);
    } else {
      this.clusterUuid = uuid();
      this.nodeId = uuid();
      this.saveState();
    }
    for (const e of fs.readdirSync(this.indicesDir, { withFileTypes: true })) {
      if (!e.isDirectory()) continue;
      const ix = Index.load(path.join(this.indicesDir, e.name));
      if (ix) this.indices.set(ix.name, ix);
      else fs.rmSync(path.join(this.indicesDir, e.name), { recursive: true, force: true });
    }
    this.timer = setInterval(() => {
      for (const ix of this.indices.values()) ix.refresh();
    }, REFRESH_INTERVAL_MS);
    this.timer.unref();
  }

  private lock(): void {
    const abs = path.resolve(this.dataDir);
    if (heldLocks.has(abs)) throw new Error(`failed to obtain node locks on [${abs}]: already used by a node in this process`);
    if (fs.existsSync(this.lockFile)) {
      const pid = Number(fs.readFileSync(this.lockFile, "utf8").trim());
      let alive = false;
      if (pid && pid !== process.pid) {
        try {
          process.kill(pid, 0);
          alive = true;
        } catch {
          alive = false;
        }
      }
      if (alive) throw new Error(`failed to obtain node locks on [${abs}]: held by process ${pid}`);
    }
    fs.writeFileSync(this.lockFile, String(process.pid));
    heldLocks.add(abs);
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    for (const ix of this.indices.values()) ix.flush();
    fs.rmSync(this.lockFile, { force: true });
    heldLocks.delete(path.resolve(this.dataDir));
  }

  saveState(): void {
    const repositories: Record<string, Json> = {};
    for (const [k, v] of this.repos) repositories[k] = v as unknown as Json;
    writeAtomic(this.stateFile, JSON.stringify({ cluster_uuid: this.clusterUuid, node_id: this.nodeId, repositories }, null, 1));
  }

  // --- index expressions -------------------------------------------------------------------

  /** Resolves "a,b,log-*,-log-old,_all" to existing indices (open ones only for wildcards). */
  resolve(expr: string | string[] | undefined, opts: { ignoreUnavailable?: boolean; includeClosed?: boolean } = {}): Index[] {
    const parts = (Array.isArray(expr) ? expr : (expr ?? "_all").split(",")).map((s) => s.trim()).filter(Boolean);
    const picked = new Map<string, Index>();
    if (parts.length === 0 || (parts.length === 1 && parts[0] === "_all")) parts.splice(0, parts.length, "*");
    for (const p of parts) {
      if (p.startsWith("-") && picked.size > 0) {
        const re = globToRegExp(p.slice(1));
        for (const k of [...picked.keys()]) if (re.test(k)) picked.delete(k);
        continue;
      }
      if (p.includes("*")) {
        const re = globToRegExp(p);
        for (const ix of this.indices.values()) {
          if (ix.name.startsWith(".") && !p.startsWith(".")) continue; // hidden unless asked for
          if (!opts.includeClosed && ix.meta.state !== "open") continue;
          if (re.test(ix.name)) picked.set(ix.name, ix);
        }
        continue;
      }
      const ix = this.indices.get(p);
      if (!ix) {
        if (opts.ignoreUnavailable) continue;
        throw indexNotFound(p);
      }
      picked.set(p, ix);
    }
    return [...picked.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  index(name: string): Index {
    const ix = this.indices.get(name);
    if (!ix) throw indexNotFound(name);
    return ix;
  }
  openIndex(name: string): Index {
    const ix = this.index(name);
    if (ix.meta.state !== "open")
      throw new OsError(400, "index_closed_exception", "closed", { index_uuid: ix.meta.uuid, index: name });
    if (ix.unassignedOn(this.nodeName))
      throw new OsError(503, "unavailable_shards_exception", `[${name}][0] primary shard is not active Timeout: [1m]`);
    return ix;
  }

  createIndex(name: string, body: Obj = {}): Index {
    validateIndexName(name);
    if (this.indices.has(name)) {
      const ix = this.indices.get(name)!;
      throw new OsError(400, "resource_already_exists_exception", `index [${name}/${ix.meta.uuid}] already exists`, { index_uuid: ix.meta.uuid, index: name });
    }
    const settings: Record<string, string> = { number_of_shards: "1", number_of_replicas: "1", ...flattenSettings(body.settings) };
    checkSettings(settings);
    const meta: IndexMeta = {
      name,
      uuid: uuid(),
      creation_date: Date.now(),
      settings,
      mappings: isObj(body.mappings) ? body.mappings : {},
      aliases: isObj(body.aliases) ? body.aliases : {},
      state: "open",
    };
    const ix = Index.create(this.indicesDir, meta);
    this.indices.set(name, ix);
    return ix;
  }

  deleteIndex(ix: Index): void {
    this.indices.delete(ix.name);
    fs.rmSync(ix.dir, { recursive: true, force: true });
  }

  /** The index for a write: auto-created like action.auto_create_index=true. */
  writeTarget(name: string): Index {
    if (!this.indices.has(name)) this.createIndex(name);
    return this.openIndex(name);
  }

  // --- health --------------------------------------------------------------------------------

  health(indices: Index[]): Obj {
    let primaries = 0;
    let unassigned = 0;
    let red = false;
    for (const ix of indices) {
      if (ix.unassignedOn(this.nodeName)) {
        red = true;
        unassigned += ix.shards * (1 + ix.replicas);
        continue;
      }
      primaries += ix.shards;
      unassigned += ix.shards * ix.replicas; // one node: replicas can never be assigned
    }
    const status = red ? "red" : unassigned > 0 ? "yellow" : "green";
    return {
      cluster_name: this.clusterName,
      status,
      timed_out: false,
      number_of_nodes: 1,
      number_of_data_nodes: 1,
      discovered_master: true,
      discovered_cluster_manager: true,
      active_primary_shards: primaries,
      active_shards: primaries,
      relocating_shards: 0,
      initializing_shards: 0,
      unassigned_shards: unassigned,
      delayed_unassigned_shards: 0,
      number_of_pending_tasks: 0,
      number_of_in_flight_fetch: 0,
      task_max_waiting_in_queue_millis: 0,
      active_shards_percent_as_number: primaries + unassigned === 0 ? 100.0 : (primaries / (primaries + unassigned)) * 100,
    };
  }

  // --- repositories -----------------------------------------------------------------------------

  resolveLocation(repo: string, location: unknown): string {
    if (typeof location !== "string" || location === "") throw repoException(repo, "missing location");
    if (this.pathRepo.length === 0)
      throw repoException(repo, `location [${location}] doesn't match any of the locations specified by path.repo because this setting is empty`);
    const abs = path.isAbsolute(location) ? path.normalize(location) : path.resolve(this.pathRepo[0], location);
    for (const root of this.pathRepo) {
      const rel = path.relative(root, abs);
      if (rel === "" || (rel !== ".." && !rel.startsWith(".." + path.sep) && !path.isAbsolute(rel))) return abs;
    }
    throw repoException(repo, `location [${location}] doesn't match any of the locations specified by path.repo`);
  }

  repo(name: string): FsRepository {
    const r = this.repos.get(name);
    if (!r) throw repoMissing(name);
    const s = r.settings;
    return new FsRepository(name, this.resolveLocation(name, s.location), s.readonly === true || s.readonly === "true");
  }
}

// ---------------------------------------------------------------------------------------------
// Request handling

function parseBody(req: Req, required = false): Obj {
  if (req.body.length === 0) {
    if (required) throw new OsError(400, "parse_exception", "request body is required");
    return {};
  }
  let v: unknown;
  try {
    v = JSON.parse(req.body.toString("utf8"));
  } catch (e) {
    throw new OsError(400, "parse_exception", `Failed to parse content to map: ${(e as Error).message}`);
  }
  if (!isObj(v)) throw new OsError(400, "parse_exception", "request body must be a JSON object");
  return v;
}

function parseSource(req: Req, ixName: string, id: string | null): string {
  let v: unknown;
  try {
    v = JSON.parse(req.body.toString("utf8"));
  } catch (e) {
    throw new OsError(400, "mapper_parsing_exception", `failed to parse`, {}, new OsError(400, "json_parse_exception", (e as Error).message));
  }
  if (!isObj(v))
    throw new OsError(400, "mapper_parsing_exception", `failed to parse, document is empty or not an object`, { index: ixName, ...(id ? { id } : {}) });
  return JSON.stringify(v);
}

function shardsInfo(ix: Index): Obj {
  return { total: 1 + ix.replicas, successful: 1, failed: 0 };
}

function writeResult(ix: Index, d: { id: string; version: number; seqNo: number; primaryTerm?: number }, result: string, forced: boolean): Obj {
  const out: Obj = {
    _index: ix.name,
    _id: d.id,
    _version: d.version,
    result,
    _shards: shardsInfo(ix),
    _seq_no: d.seqNo,
    _primary_term: d.primaryTerm ?? 1,
  };
  if (forced) out.forced_refresh = true;
  return out;
}

function versionConflict(ix: Index, id: string, reason: string): OsError {
  return new OsError(409, "version_conflict_engine_exception", `[${id}]: version conflict, ${reason}`, { index: ix.name, shard: "0", index_uuid: ix.meta.uuid });
}

function checkIfSeqNo(ix: Index, id: string, q: URLSearchParams): void {
  const s = q.get("if_seq_no");
  const t = q.get("if_primary_term");
  if (s === null && t === null) return;
  const cur = ix.docs.get(id);
  if (!cur)
    throw versionConflict(ix, id, `required seqNo [${s}], primary term [${t}] but no document was found`);
  if (Number(s) !== cur.seqNo || Number(t ?? 1) !== cur.primaryTerm)
    throw versionConflict(ix, id, `required seqNo [${s}], primary term [${t}]. current document has seqNo [${cur.seqNo}] and primary term [${cur.primaryTerm}]`);
}

function afterWrite(ix: Index, q: URLSearchParams): boolean {
  const r = q.get("refresh");
  if (r === "" || r === "true" || r === "wait_for") {
    ix.refresh();
    return r !== "wait_for";
  }
  return false;
}

// --- search ----------------------------------------------------------------------------------------

type Pred = (src: unknown, id: string) => boolean;

function compileQuery(q: unknown): Pred {
  if (q === undefined || q === null) return () => true;
  if (!isObj(q) || Object.keys(q).length !== 1) throw new OsError(400, "parsing_exception", "query malformed, must start with start_object");
  const [kind, arg] = Object.entries(q)[0];
  switch (kind) {
    case "match_all":
      return () => true;
    case "match_none":
      return () => false;
    case "ids": {
      const values = isObj(arg) && Array.isArray(arg.values) ? arg.values.map(String) : [];
      const set = new Set(values);
      return (_s, id) => set.has(id);
    }
    case "term": {
      if (!isObj(arg) || Object.keys(arg).length !== 1) throw new OsError(400, "parsing_exception", "[term] query malformed, no start_object after query name");
      const [field, spec] = Object.entries(arg)[0];
      const want = isObj(spec) ? spec.value : spec;
      return (src, id) => {
        if (field === "_id") return id === String(want);
        const v = fieldValue(src, field);
        return Array.isArray(v) ? v.some((x) => x === want) : v === want;
      };
    }
    case "bool": {
      if (!isObj(arg)) throw new OsError(400, "parsing_exception", "[bool] malformed");
      for (const k of Object.keys(arg)) if (!["must", "filter", "must_not", "should", "minimum_should_match"].includes(k)) throw notImplemented(`bool clause [${k}]`);
      const list = (v: Json | undefined) => (v === undefined ? [] : Array.isArray(v) ? v : [v]).map(compileQuery);
      const must = [...list(arg.must), ...list(arg.filter)];
      const not = list(arg.must_not);
      const should = list(arg.should);
      return (s, id) => must.every((p) => p(s, id)) && !not.some((p) => p(s, id)) && (should.length === 0 || must.length > 0 || should.some((p) => p(s, id)));
    }
    default:
      throw notImplemented(`query [${kind}]`);
  }
}

interface SortKey {
  field: string;
  desc: boolean;
}
function parseSort(sort: unknown): SortKey[] {
  if (sort === undefined || sort === null) return [];
  const items = Array.isArray(sort) ? sort : typeof sort === "string" ? sort.split(",") : [sort];
  return items.map((it) => {
    if (typeof it === "string") {
      const [field, order] = it.split(":");
      return { field, desc: order === "desc" };
    }
    if (isObj(it) && Object.keys(it).length === 1) {
      const [field, o] = Object.entries(it)[0];
      const order = isObj(o) ? o.order : o;
      return { field, desc: order === "desc" };
    }
    throw new OsError(400, "parsing_exception", "malformed sort");
  });
}
function cmp(a: unknown, b: unknown): number {
  if (a === b) return 0;
  if (a === undefined || a === null) return 1; // missing values last
  if (b === undefined || b === null) return -1;
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(a) < String(b) ? -1 : 1;
}

function runSearch(node: Node, target: string | undefined, req: Req, countOnly: boolean): Obj {
  const t0 = Date.now();
  const body = parseBody(req);
  const q = req.query;
  for (const p of ["q", "scroll"]) if (q.has(p)) throw notImplemented(`search parameter [${p}]`);
  for (const k of Object.keys(body))
    if (!["query", "size", "from", "sort", "track_total_hits", "_source"].includes(k)) throw notImplemented(`search body field [${k}]`);
  const indices = node.resolve(target, { ignoreUnavailable: boolParam(q, "ignore_unavailable") });
  for (const ix of indices) if (ix.meta.state !== "open") throw new OsError(400, "index_closed_exception", "closed", { index_uuid: ix.meta.uuid, index: ix.name });
  for (const ix of indices)
    if (ix.unassignedOn(node.nodeName))
      throw new OsError(503, "search_phase_execution_exception", "all shards failed", { phase: "query", grouped: true, failed_shards: [] });
  const pred = compileQuery(body.query);
  const hits: { ix: Index; d: Doc }[] = [];
  for (const ix of indices) for (const d of ix.visible.values()) if (pred(ix.source(d), d.id)) hits.push({ ix, d });
  const shardTotal = indices.reduce((n, ix) => n + ix.shards, 0);
  const shards = { total: shardTotal, successful: shardTotal, skipped: 0, failed: 0 };
  if (countOnly) return { count: hits.length, _shards: shards };

  const size = Number(q.get("size") ?? body.size ?? 10);
  const from = Number(q.get("from") ?? body.from ?? 0);
  if (!Number.isInteger(size) || size < 0) throw badRequest(`[size] parameter cannot be negative, found [${size}]`);
  if (!Number.isInteger(from) || from < 0) throw badRequest(`[from] parameter cannot be negative, found [${from}]`);
  if (from + size > MAX_RESULT_WINDOW)
    throw badRequest(
      `Result window is too large, from + size must be less than or equal to: [${MAX_RESULT_WINDOW}] but was [${from + size}]. See the scroll api for a more efficient way to request large data sets. This limit can be set by changing the [index.max_result_window] index level setting.`,
    );
  const sort = parseSort(q.get("sort") ?? body.sort);
  const keyOf = (h: { ix: Index; d: Doc }, k: SortKey): unknown =>
    k.field === "_id" ? h.d.id : k.field === "_doc" ? h.d.seqNo : k.field === "_score" ? 1 : fieldValue(h.ix.source(h.d), k.field);
  if (sort.length)
    hits.sort((a, b) => {
      for (const k of sort) {
        const c = cmp(keyOf(a, k), keyOf(b, k));
        if (c !== 0) return k.desc ? -c : c;
      }
      return 0;
    });
  const wantSource = body._source !== false && q.get("_source") !== "false";
  const page = hits.slice(from, from + size).map((h) => {
    const hit: Obj = { _index: h.ix.name, _id: h.d.id, _score: sort.length ? null : 1.0 };
    if (wantSource) hit._source = h.ix.source(h.d) as Json;
    if (sort.length) hit.sort = sort.map((k) => (keyOf(h, k) ?? null) as Json);
    return hit;
  });
  const tth = q.get("track_total_hits") ?? body.track_total_hits ?? MAX_RESULT_WINDOW;
  const hitsObj: Obj = {};
  if (tth !== false && tth !== "false") {
    const cap = tth === true || tth === "true" ? Infinity : Number(tth);
    hitsObj.total = hits.length > cap ? { value: cap, relation: "gte" } : { value: hits.length, relation: "eq" };
  }
  hitsObj.max_score = sort.length || hits.length === 0 ? null : 1.0;
  hitsObj.hits = page;
  return { took: Date.now() - t0, timed_out: false, _shards: shards, hits: hitsObj };
}

// --- _cat/indices ------------------------------------------------------------------------------

function catIndices(node: Node, pattern: string | undefined, q: URLSearchParams): Res {
  const indices = node.resolve(pattern ?? "*", { includeClosed: true });
  const wildcardMiss = pattern && !pattern.includes("*") && indices.length === 0;
  if (wildcardMiss) throw indexNotFound(pattern!);
  const bytes = q.get("bytes");
  const fmt = (n: number) => (bytes === "b" ? String(n) : bytes === "kb" ? String(Math.floor(n / 1024)) : humanBytes(n));
  let rows = indices.map((ix) => {
    const size = ix.storeSize();
    return {
      health: ix.unassignedOn(node.nodeName) ? "red" : ix.replicas > 0 ? "yellow" : "green",
      status: ix.meta.state,
      index: ix.name,
      uuid: ix.meta.uuid,
      pri: String(ix.shards),
      rep: String(ix.replicas),
      "docs.count": ix.meta.state === "open" ? String(ix.visible.size) : null,
      "docs.deleted": ix.meta.state === "open" ? "0" : null,
      "store.size": fmt(size),
      "pri.store.size": fmt(size),
    } as Record<string, string | null>;
  });
  const s = q.get("s");
  if (s)
    for (const key of s.split(",").reverse()) {
      const [col, order] = key.split(":");
      rows = rows.sort((a, b) => {
        const x = a[col] ?? "";
        const y = b[col] ?? "";
        const c = /^\d+$/.test(x) && /^\d+$/.test(y) ? Number(x) - Number(y) : x < y ? -1 : x > y ? 1 : 0;
        return order === "desc" ? -c : c;
      });
    }
  const all = ["health", "status", "index", "uuid", "pri", "rep", "docs.count", "docs.deleted", "store.size", "pri.store.size"];
  const cols = q.get("h") ? q.get("h")!.split(",").filter((c) => all.includes(c)) : all;
  if (q.get("format") === "json") return ok(rows.map((r) => Object.fromEntries(cols.map((c) => [c, r[c]]))));
  const table = [...(q.has("v") ? [cols] : []), ...rows.map((r) => cols.map((c) => r[c] ?? ""))];
  const widths = cols.map((_, i) => Math.max(...table.map((r) => r[i].length)));
  const text = table.map((r) => r.map((v, i) => v.padEnd(widths[i])).join(" ").trimEnd() + "\n").join("");
  return { status: 200, body: null, text };
}

// --- snapshots -------------------------------------------------------------------------------------

function snapshotInfo(name: string, id: string, indices: string[], globalState: boolean, start: number, end: number, shards: number, metadata?: Json, failures: Obj[] = []): Obj {
  const info: Obj = {
    snapshot: name,
    uuid: id,
    version_id: VERSION_ID,
    version: VERSION,
    remote_store_index_shallow_copy: false,
    indices,
    data_streams: [],
    include_global_state: globalState,
  };
  if (metadata !== undefined) info.metadata = metadata;
  Object.assign(info, {
    state: failures.length ? "PARTIAL" : "SUCCESS",
    start_time: new Date(start).toISOString(),
    start_time_in_millis: start,
    end_time: new Date(end).toISOString(),
    end_time_in_millis: end,
    duration_in_millis: end - start,
    failures,
    shards: { total: shards, failed: failures.length, successful: shards - failures.length },
  });
  return info;
}

function createSnapshot(node: Node, repoName: string, snap: string, req: Req): Res {
  const repo = node.repo(repoName);
  validateSnapshotName(repoName, snap);
  if (repo.readonly) throw repoException(repoName, "cannot create snapshot in a readonly repository");
  const body = parseBody(req);
  const data = repo.data();
  if (data.snapshots.some((s) => s.name === snap))
    throw new OsError(400, "invalid_snapshot_name_exception", `[${repoName}:${snap}] Invalid snapshot name [${snap}], snapshot with the same name already exists`);
  const expr = body.indices as string | string[] | undefined;
  const all = expr === undefined || expr === "_all" || (Array.isArray(expr) && expr.length === 0);
  const indices = all ? [...node.indices.values()].sort((a, b) => a.name.localeCompare(b.name)) : node.resolve(expr, { ignoreUnavailable: body.ignore_unavailable === true, includeClosed: true });
  const globalState = body.include_global_state !== false;
  const start = Date.now();
  const id = uuid();
  const missing = indices.filter((ix) => ix.meta.state === "open" && ix.unassignedOn(node.nodeName));
  if (missing.length && body.partial !== true)
    throw new OsError(500, "snapshot_exception", `[${repoName}:${snap}/${id}] Indices don't have primary shards [${missing.map((ix) => ix.name).join(", ")}]`);
  fs.mkdirSync(repo.location, { recursive: true });
  let shardTotal = 0;
  const failures: Obj[] = [];
  for (const ix of indices) {
    const entry = (data.indices[ix.name] ??= { id: uuid(), snapshots: [] });
    const shardDir = repo.file("indices", entry.id, "0");
    if (missing.includes(ix)) {
      // partial: the index metadata is kept, the shard is a failure
      fs.mkdirSync(shardDir, { recursive: true });
      const meta = { name: ix.name, uuid: ix.meta.uuid, creation_date: ix.meta.creation_date, settings: ix.meta.settings, mappings: ix.meta.mappings, aliases: ix.meta.aliases, state: ix.meta.state };
      writeAtomic(repo.file("indices", entry.id, `meta-${id}.dat`), JSON.stringify(meta, null, 1));
      entry.snapshots.push(id);
      failures.push({ index: ix.name, index_uuid: ix.name, shard_id: 0, reason: "primary shard is not allocated", node_id: null, status: "INTERNAL_SERVER_ERROR" });
      shardTotal += ix.shards;
      continue;
    }
    fs.mkdirSync(shardDir, { recursive: true });
    const lines: string[] = [];
    for (const d of ix.docs.values()) lines.push(docLine(d)); // a snapshot flushes: every acknowledged write
    const blob = zlib.gzipSync(Buffer.from(lines.length ? lines.join("\n") + "\n" : ""));
    const checksum = crypto.createHash("sha256").update(blob).digest("hex");
    const blobName = `__${checksum.slice(0, 32)}`;
    if (!fs.existsSync(path.join(shardDir, blobName))) writeAtomic(path.join(shardDir, blobName), blob); // unchanged data is shared
    const shard: ShardSnapshot = {
      name: snap,
      index_version: VERSION_ID,
      start_time: start,
      time: Date.now() - start,
      doc_count: ix.docs.size,
      max_seq_no: ix.maxSeqNo,
      files: [{ name: blobName, physical: "docs.ndjson.gz", length: blob.length, checksum }],
    };
    writeAtomic(path.join(shardDir, `snap-${id}.dat`), JSON.stringify(shard, null, 1));
    const meta = { name: ix.name, uuid: ix.meta.uuid, creation_date: ix.meta.creation_date, settings: ix.meta.settings, mappings: ix.meta.mappings, aliases: ix.meta.aliases, state: ix.meta.state };
    writeAtomic(repo.file("indices", entry.id, `meta-${id}.dat`), JSON.stringify(meta, null, 1));
    entry.snapshots.push(id);
    shardTotal += ix.shards;
  }
  if (globalState)
    writeAtomic(repo.file(`meta-${id}.dat`), JSON.stringify({ cluster_uuid: node.clusterUuid, persistent_settings: {}, templates: {} }, null, 1));
  const info = snapshotInfo(snap, id, indices.map((i) => i.name), globalState, start, Date.now(), shardTotal, body.metadata, failures);
  writeAtomic(repo.file(`snap-${id}.dat`), JSON.stringify({ snapshot: info }, null, 1));
  data.snapshots.push({ name: snap, uuid: id, state: info.state as string, start_time_in_millis: start, version: VERSION });
  repo.writeData(data);
  return boolParam(req.query, "wait_for_completion") ? ok({ snapshot: info }) : ok({ accepted: true });
}

function getSnapshots(node: Node, repoName: string, names: string, q: URLSearchParams): Res {
  const repo = node.repo(repoName);
  const data = repo.data();
  const ignore = boolParam(q, "ignore_unavailable");
  const picked: RepoSnapshotEntry[] = [];
  for (const n of names.split(",")) {
    if (n === "_all" || n.includes("*")) {
      const re = globToRegExp(n === "_all" ? "*" : n);
      for (const s of data.snapshots) if (re.test(s.name) && !picked.includes(s)) picked.push(s);
    } else if (n === "_current") {
      continue; // nothing is ever in progress here
    } else {
      const s = data.snapshots.find((x) => x.name === n);
      if (!s) {
        if (ignore) continue;
        throw new OsError(404, "snapshot_missing_exception", `[${repoName}:${n}] is missing`);
      }
      if (!picked.includes(s)) picked.push(s);
    }
  }
  picked.sort((a, b) => a.start_time_in_millis - b.start_time_in_millis || a.name.localeCompare(b.name));
  const verbose = boolParam(q, "verbose", true);
  const out: Obj[] = [];
  for (const s of picked) {
    let info: Obj;
    try {
      info = repo.snapshotInfo(s);
    } catch (e) {
      if (ignore) continue;
      throw e;
    }
    out.push(verbose ? info : { snapshot: info.snapshot, uuid: info.uuid, indices: info.indices, data_streams: [], state: info.state });
  }
  return ok({ snapshots: out });
}

function deleteSnapshot(node: Node, repoName: string, names: string): Res {
  const repo = node.repo(repoName);
  if (repo.readonly) throw repoException(repoName, "cannot delete snapshot from a readonly repository");
  const data = repo.data();
  const doomed: RepoSnapshotEntry[] = [];
  for (const n of names.split(",")) {
    const re = globToRegExp(n === "_all" ? "*" : n);
    const hit = data.snapshots.filter((s) => (n.includes("*") || n === "_all" ? re.test(s.name) : s.name === n));
    if (hit.length === 0 && !n.includes("*") && n !== "_all") throw new OsError(404, "snapshot_missing_exception", `[${repoName}:${n}] is missing`);
    doomed.push(...hit);
  }
  const gone = new Set(doomed.map((s) => s.uuid));
  data.snapshots = data.snapshots.filter((s) => !gone.has(s.uuid));
  const touched: { name: string; id: string }[] = [];
  for (const [name, entry] of Object.entries(data.indices)) {
    const before = entry.snapshots.length;
    entry.snapshots = entry.snapshots.filter((u) => !gone.has(u));
    if (entry.snapshots.length !== before) touched.push({ name, id: entry.id });
    if (entry.snapshots.length === 0) delete data.indices[name];
  }
  repo.writeData(data); // the new generation first; then the unreferenced files go
  for (const u of gone) {
    fs.rmSync(repo.file(`snap-${u}.dat`), { force: true });
    fs.rmSync(repo.file(`meta-${u}.dat`), { force: true });
  }
  for (const t of touched) {
    const dir = repo.file("indices", t.id);
    if (!Object.values(data.indices).some((e) => e.id === t.id)) {
      fs.rmSync(dir, { recursive: true, force: true });
      continue;
    }
    const shardDir = path.join(dir, "0");
    for (const u of gone) {
      fs.rmSync(path.join(dir, `meta-${u}.dat`), { force: true });
      fs.rmSync(path.join(shardDir, `snap-${u}.dat`), { force: true });
    }
    const live = new Set<string>();
    for (const f of fs.readdirSync(shardDir))
      if (/^snap-.*\.dat$/.test(f)) for (const file of readJson<ShardSnapshot>(path.join(shardDir, f)).files) live.add(file.name);
    for (const f of fs.readdirSync(shardDir)) if (f.startsWith("__") && !live.has(f)) fs.rmSync(path.join(shardDir, f), { force: true });
  }
  return ok({ acknowledged: true });
}

function restoreSnapshot(node: Node, repoName: string, snap: string, req: Req): Res {
  const repo = node.repo(repoName);
  const body = parseBody(req);
  const data = repo.data();
  const entry = data.snapshots.find((s) => s.name === snap);
  if (!entry) throw new OsError(404, "snapshot_missing_exception", `[${repoName}:${snap}] is missing`);
  const info = repo.snapshotInfo(entry);
  const tag = `[${repoName}:${snap}/${entry.uuid}]`;
  const restoreErr = (msg: string) => new OsError(500, "snapshot_restore_exception", `${tag} ${msg}`);
  const inSnap = (info.indices as string[]) ?? [];

  // which indices
  let chosen: string[];
  const expr = body.indices as string | string[] | undefined;
  if (expr === undefined || expr === "_all" || (Array.isArray(expr) && expr.length === 0)) chosen = [...inSnap];
  else {
    const set = new Set<string>();
    for (const p of (Array.isArray(expr) ? expr : expr.split(",")).map((s) => s.trim()).filter(Boolean)) {
      if (p.startsWith("-")) {
        const re = globToRegExp(p.slice(1));
        for (const n of [...set]) if (re.test(n)) set.delete(n);
      } else if (p.includes("*")) {
        const re = globToRegExp(p);
        for (const n of inSnap) if (re.test(n)) set.add(n);
      } else if (inSnap.includes(p)) set.add(p);
      else if (body.ignore_unavailable !== true) throw indexNotFound(p);
    }
    chosen = [...set];
  }

  // target names (rename_pattern is a Java regex; the common subset is the same in JavaScript)
  let rename: (n: string) => string = (n) => n;
  if (typeof body.rename_pattern === "string") {
    const re = new RegExp(body.rename_pattern, "g");
    const rep = typeof body.rename_replacement === "string" ? body.rename_replacement : "";
    rename = (n) => n.replace(re, rep);
  }
  const plan: { from: string; to: string; meta: IndexMeta; shard: ShardSnapshot; dir: string }[] = [];
  const targets = new Map<string, string>();
  for (const name of chosen) {
    const to = rename(name);
    if (targets.has(to)) throw restoreErr(`indices [${targets.get(to)}] and [${name}] are renamed into the same index [${to}]`);
    targets.set(to, name);
    validateIndexName(to);
    const ie = data.indices[name];
    if (!ie) throw restoreErr(`index [${name}] is missing from the repository data`);
    const dir = repo.file("indices", ie.id);
    const metaFile = path.join(dir, `meta-${entry.uuid}.dat`);
    const shardFile = path.join(dir, "0", `snap-${entry.uuid}.dat`);
    if (((info.failures as Obj[] | undefined) ?? []).some((f) => f.index === name)) {
      if (body.partial === true) throw notImplemented("restoring a partially snapshotted index (partial: true)");
      throw restoreErr(`index [${name}] wasn't fully snapshotted - cannot restore`);
    }
    if (!fs.existsSync(metaFile) || !fs.existsSync(shardFile)) throw restoreErr(`failed to read the metadata of index [${name}]: missing files`);
    const meta = readJson<IndexMeta>(metaFile);
    const existing = node.indices.get(to);
    if (existing && existing.meta.state === "open")
      throw restoreErr(
        `cannot restore index [${to}] because an open index with same name already exists in the cluster. Either close or delete the existing index or restore the index under a different name by providing a rename pattern and replacement name`,
      );
    if (existing && String(existing.shards) !== String(meta.settings.number_of_shards ?? "1"))
      throw restoreErr(`cannot restore index [${to}] with [${existing.shards}] shards from a snapshot of index [${name}] with [${meta.settings.number_of_shards}] shards`);
    plan.push({ from: name, to, meta, shard: readJson<ShardSnapshot>(shardFile), dir });
  }

  // read and check every blob before touching the cluster
  const loaded: { p: (typeof plan)[number]; docs: Doc[] }[] = [];
  for (const p of plan) {
    const docs: Doc[] = [];
    for (const f of p.shard.files) {
      const file = path.join(p.dir, "0", f.name);
      if (!fs.existsSync(file)) throw restoreErr(`failed to restore index [${p.from}]: blob [${f.name}] is missing`);
      const blob = fs.readFileSync(file);
      const sum = crypto.createHash("sha256").update(blob).digest("hex");
      if (blob.length !== f.length || sum !== f.checksum)
        throw restoreErr(`failed to restore index [${p.from}]: checksum failed (hardware problem?) : expected=${f.checksum} actual=${sum} (resource=${f.physical})`);
      for (const line of zlib.gunzipSync(blob).toString("utf8").split("\n")) if (line) docs.push(parseDocLine(line));
    }
    if (docs.length !== p.shard.doc_count) throw restoreErr(`failed to restore index [${p.from}]: expected ${p.shard.doc_count} documents, found ${docs.length}`);
    loaded.push({ p, docs });
  }

  let shards = 0;
  for (const { p, docs } of loaded) {
    const existing = node.indices.get(p.to);
    if (existing) node.deleteIndex(existing);
    let settings: Record<string, string> = { ...p.meta.settings };
    const ignored = body.ignore_index_settings;
    for (const k of (Array.isArray(ignored) ? ignored.map(String) : typeof ignored === "string" ? ignored.split(",") : [])) delete settings[k.replace(/^index\./, "")];
    settings = { ...settings, ...flattenSettings(body.index_settings) };
    checkSettings(settings);
    const meta: IndexMeta = { name: p.to, uuid: uuid(), creation_date: p.meta.creation_date, settings, mappings: p.meta.mappings, aliases: body.include_aliases === false ? {} : p.meta.aliases, state: "open" };
    node.indices.set(p.to, Index.create(node.indicesDir, meta, docs, p.shard.max_seq_no));
    shards += Number(settings.number_of_shards ?? "1");
  }
  if (!boolParam(req.query, "wait_for_completion")) return ok({ accepted: true });
  return ok({ snapshot: { snapshot: snap, indices: loaded.map((l) => l.p.to), shards: { total: shards, failed: 0, successful: shards } } });
}

function putRepository(node: Node, name: string, req: Req): Res {
  if (name.startsWith("_") || /[\s,#*/\\"<>|?]/.test(name)) throw repoException(name, "Invalid repository name, must not start with '_' or contain whitespace or ',', '#', '*', '/', '\\', '\"', '<', '>', '|', '?'");
  const body = parseBody(req, true);
  const wrap = (e: OsError) => new OsError(500, "repository_exception", `[${name}] failed to create repository`, {}, e);
  if (body.type !== "fs") throw wrap(repoException(name, `repository type [${String(body.type)}] does not exist`));
  const settings = isObj(body.settings) ? body.settings : {};
  let location: string;
  try {
    location = node.resolveLocation(name, settings.location);
  } catch (e) {
    throw e instanceof OsError ? wrap(e) : e;
  }
  if (boolParam(req.query, "verify", true)) {
    try {
      fs.mkdirSync(location, { recursive: true });
      const probe = path.join(location, `tests-${uuid()}`);
      fs.mkdirSync(probe);
      fs.writeFileSync(path.join(probe, "master.dat"), node.nodeId);
      fs.rmSync(probe, { recursive: true, force: true });
    } catch (e) {
      throw new OsError(500, "repository_verification_exception", `[${name}] path  is not accessible on cluster-manager node`, {}, new OsError(500, "i_o_exception", (e as Error).message));
    }
  }
  node.repos.set(name, { type: "fs", settings });
  node.saveState();
  return ok({ acknowledged: true });
}

// --- routing -----------------------------------------------------------------------------------

function handle(node: Node, req: Req): Res | Promise<Res> {
  const { method, segs, query: q } = req;
  const m = method === "HEAD" ? "GET" : method;
  const [a, b, c, d] = segs;
  const n = segs.length;
  const none = (): never => {
    throw new PlainError(400, `no handler found for uri [${req.uri}] and method [${method}]`);
  };
  const allow = (...methods: string[]): void => {
    if (!methods.includes(m))
      throw new PlainError(405, `Incorrect HTTP method for uri [${req.uri}] and method [${method}], allowed: [${methods.join(", ")}]`, { Allow: methods.join(",") });
  };

  if (n === 0) {
    allow("GET");
    return ok({
      name: node.nodeName,
      cluster_name: node.clusterName,
      cluster_uuid: node.clusterUuid,
      version: {
        distribution: "opensearch",
        number: VERSION,
        build_type: "tar",
        build_hash: "lifeboat-standin",
        build_date: "2023-10-13T02:55:55.511945994Z",
        build_snapshot: false,
        lucene_version: "9.7.0",
        minimum_wire_compatibility_version: "7.10.0",
        minimum_index_compatibility_version: "7.0.0",
      },
      tagline: "The OpenSearch Project: https://opensearch.org/",
    });
  }

  if (a === "_cluster" && b === "health" && n <= 3) {
    allow("GET");
    return clusterHealth(node, c, q);
  }
  if (a === "_cat" && b === "indices" && n <= 3) {
    allow("GET");
    return catIndices(node, c, q);
  }
  if (a === "_bulk" && n === 1) {
    allow("POST", "PUT");
    return bulk(node, undefined, req);
  }
  if (a === "_refresh" && n === 1) {
    allow("POST", "GET");
    return refresh(node, undefined);
  }
  if ((a === "_search" || a === "_count") && n === 1) {
    allow("GET", "POST");
    return ok(runSearch(node, undefined, req, a === "_count"));
  }

  if (a === "_snapshot") {
    if (n === 1 || (n === 2 && (b === "_all" || b === "*") && m === "GET")) {
      allow("GET");
      const out: Obj = {};
      for (const [k, v] of node.repos) out[k] = v as unknown as Json;
      return ok(out);
    }
    if (n === 2) {
      allow("GET", "PUT", "POST", "DELETE");
      if (m === "GET") {
        const out: Obj = {};
        for (const name of b.split(",")) {
          const r = node.repos.get(name);
          if (!r) throw repoMissing(name);
          out[name] = r as unknown as Json;
        }
        return ok(out);
      }
      if (m === "DELETE") {
        if (!node.repos.has(b)) throw repoMissing(b);
        node.repos.delete(b);
        node.saveState();
        return ok({ acknowledged: true });
      }
      return putRepository(node, b, req);
    }
    if (n === 3 && c === "_verify") {
      allow("POST");
      const repo = node.repo(b);
      fs.mkdirSync(repo.location, { recursive: true });
      return ok({ nodes: { [node.nodeId]: { name: node.nodeName } } });
    }
    if (n === 3) {
      allow("GET", "PUT", "POST", "DELETE");
      if (m === "GET") return getSnapshots(node, b, c, q);
      if (m === "DELETE") return deleteSnapshot(node, b, c);
      return createSnapshot(node, b, c, req);
    }
    if (n === 4 && d === "_restore") {
      allow("POST");
      return restoreSnapshot(node, b, c, req);
    }
    if (n === 4 && d === "_status") throw notImplemented("the snapshot _status API");
    return none();
  }

  if (a.startsWith("_")) return none();

  // /{index}...
  if (n === 1) {
    allow("GET", "PUT", "DELETE");
    if (m === "PUT") {
      const ix = node.createIndex(a, parseBody(req));
      return ok({ acknowledged: true, shards_acknowledged: true, index: ix.name });
    }
    if (m === "DELETE") {
      const parts = a.split(",");
      if (parts.some((p) => p === "_all" || p.includes("*")))
        throw badRequest("Wildcard expressions or all indices are not allowed");
      const targets = node.resolve(parts, { includeClosed: true, ignoreUnavailable: boolParam(q, "ignore_unavailable") });
      for (const ix of targets) node.deleteIndex(ix);
      return ok({ acknowledged: true });
    }
    const out: Obj = {};
    for (const ix of node.resolve(a, { includeClosed: true, ignoreUnavailable: boolParam(q, "ignore_unavailable") })) {
      out[ix.name] = {
        aliases: ix.meta.aliases,
        mappings: ix.meta.mappings,
        settings: {
          index: {
            ...nestSettings(ix.meta.settings),
            creation_date: String(ix.meta.creation_date),
            uuid: ix.meta.uuid,
            version: { created: String(VERSION_ID) },
            provided_name: ix.name,
            ...(ix.meta.state === "close" ? { verified_before_close: "true" } : {}),
          },
        },
      };
    }
    return ok(out);
  }

  switch (b) {
    case "_doc":
    case "_create":
    case "_update":
      if (n === 2 && b === "_doc") {
        allow("POST");
        return indexDoc(node, a, autoId(), req, "create");
      }
      if (n !== 3) return none();
      if (b === "_create") {
        allow("PUT", "POST");
        return indexDoc(node, a, c, req, "create");
      }
      if (b === "_update") {
        allow("POST");
        return updateDoc(node, a, c, req);
      }
      allow("GET", "PUT", "POST", "DELETE");
      if (m === "GET") return getDoc(node, a, c, method === "HEAD");
      if (m === "DELETE") return deleteDoc(node, a, c, req);
      return indexDoc(node, a, c, req, q.get("op_type") === "create" ? "create" : "index");
    case "_bulk":
      if (n !== 2) return none();
      allow("POST", "PUT");
      return bulk(node, a, req);
    case "_refresh":
      if (n !== 2) return none();
      allow("POST", "GET");
      return refresh(node, a);
    case "_count":
    case "_search":
      if (n !== 2) return none();
      allow("GET", "POST");
      return ok(runSearch(node, a, req, b === "_count"));
    case "_close":
    case "_open": {
      if (n !== 2) return none();
      allow("POST");
      if (a.split(",").some((p) => p === "_all" || p.includes("*"))) throw badRequest("Wildcard expressions or all indices are not allowed");
      const targets = node.resolve(a, { includeClosed: true });
      for (const ix of targets) {
        if (b === "_close" && ix.meta.state === "open") ix.flush();
        ix.meta.state = b === "_close" ? "close" : "open";
        ix.saveMeta();
      }
      if (b === "_open") return ok({ acknowledged: true, shards_acknowledged: true });
      const indices: Obj = {};
      for (const ix of targets) indices[ix.name] = { closed: true };
      return ok({ acknowledged: true, shards_acknowledged: true, indices });
    }
    default:
      return none();
  }
}

async function clusterHealth(node: Node, target: string | undefined, q: URLSearchParams): Promise<Res> {
  const rank = { green: 0, yellow: 1, red: 2 } as Record<string, number>;
  const want = q.get("wait_for_status");
  if (want !== null && !(want in rank)) throw badRequest(`unknown cluster health status [${want}]`);
  const timeout = parseTime(q.get("timeout"), 30000);
  const deadline = Date.now() + timeout;
  for (;;) {
    const indices = target ? node.resolve(target, { includeClosed: true }) : [...node.indices.values()];
    const h = node.health(indices);
    if (want === null || rank[h.status as string] <= rank[want]) return ok(h);
    if (Date.now() >= deadline) return ok({ ...h, timed_out: true }, 408);
    await new Promise((r) => setTimeout(r, Math.min(100, Math.max(1, deadline - Date.now()))));
  }
}

function refresh(node: Node, target: string | undefined): Res {
  const indices = node.resolve(target);
  let total = 0;
  let ok_ = 0;
  for (const ix of indices) {
    ix.refresh();
    total += ix.shards * (1 + ix.replicas);
    ok_ += ix.shards;
  }
  return ok({ _shards: { total, successful: ok_, failed: 0 } });
}

function indexDoc(node: Node, index: string, id: string, req: Req, opType: "index" | "create"): Res {
  if (Buffer.byteLength(id) > 512) throw new OsError(400, "action_request_validation_exception", `Validation Failed: 1: id [${id}] is too long, must be no longer than 512 bytes but was: ${Buffer.byteLength(id)};`);
  if (req.body.length === 0) throw new OsError(400, "action_request_validation_exception", "Validation Failed: 1: source is missing;2: content type is missing;");
  const src = parseSource(req, index, id);
  const ix = node.writeTarget(index);
  const cur = ix.docs.get(id);
  if (opType === "create" && cur) throw versionConflict(ix, id, `document already exists (current version [${cur.version}])`);
  checkIfSeqNo(ix, id, req.query);
  const d = ix.put(id, src);
  ix.log([`{"op":"index",${docLine(d).slice(1)}`]);
  const forced = afterWrite(ix, req.query);
  return ok(writeResult(ix, d, cur ? "updated" : "created", forced), cur ? 200 : 201);
}

function updateDoc(node: Node, index: string, id: string, req: Req): Res {
  const body = parseBody(req, true);
  if (!isObj(body.doc)) throw notImplemented("update without [doc] (scripts)");
  const ix = node.openIndex(index);
  const cur = ix.docs.get(id);
  if (!cur && body.doc_as_upsert !== true)
    throw new OsError(404, "document_missing_exception", `[${id}]: document missing`, { index_uuid: ix.meta.uuid, shard: "0", index: ix.name });
  checkIfSeqNo(ix, id, req.query);
  const merged = JSON.stringify(cur ? deepMerge(ix.source(cur) as Obj, body.doc) : body.doc);
  if (cur && merged === cur.src) return ok({ _index: ix.name, _id: id, _version: cur.version, result: "noop", _shards: { total: 0, successful: 0, failed: 0 }, _seq_no: cur.seqNo, _primary_term: cur.primaryTerm });
  const d = ix.put(id, merged);
  ix.log([`{"op":"index",${docLine(d).slice(1)}`]);
  const forced = afterWrite(ix, req.query);
  return ok(writeResult(ix, d, cur ? "updated" : "created", forced), cur ? 200 : 201);
}

function getDoc(node: Node, index: string, id: string, head: boolean): Res {
  const ix = node.openIndex(index);
  const d = ix.docs.get(id); // realtime
  if (!d) return ok({ _index: ix.name, _id: id, found: false }, 404);
  return ok(head ? {} : { _index: ix.name, _id: id, _version: d.version, _seq_no: d.seqNo, _primary_term: d.primaryTerm, found: true, _source: ix.source(d) });
}

function deleteDoc(node: Node, index: string, id: string, req: Req): Res {
  const ix = node.openIndex(index);
  checkIfSeqNo(ix, id, req.query);
  const r = ix.remove(id);
  if (!r) {
    return ok({ _index: ix.name, _id: id, _version: 1, result: "not_found", _shards: shardsInfo(ix), _seq_no: ++ix.maxSeqNo, _primary_term: 1 }, 404);
  }
  ix.log([JSON.stringify({ op: "delete", _id: id, _seq_no: r.seqNo })]);
  const forced = afterWrite(ix, req.query);
  return ok(writeResult(ix, { id, ...r }, "deleted", forced));
}

function bulk(node: Node, defaultIndex: string | undefined, req: Req): Res {
  const t0 = Date.now();
  const text = req.body.toString("utf8");
  if (text.length === 0) throw new OsError(400, "action_request_validation_exception", "Validation Failed: 1: no requests added;");
  if (!text.endsWith("\n")) throw badRequest("The bulk request must be terminated by a newline [\\n]");
  const lines = text.split("\n");
  lines.pop();
  const items: Obj[] = [];
  const logs = new Map<Index, string[]>();
  const touched = new Set<Index>();
  let errors = false;
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() === "") continue;
    let action: Obj;
    try {
      action = JSON.parse(lines[i]) as Obj;
    } catch (e) {
      throw new OsError(400, "x_content_parse_exception", `[${i + 1}:1] Malformed action/metadata line [${i + 1}]: ${(e as Error).message}`);
    }
    const kinds = Object.keys(action);
    if (kinds.length !== 1 || !["index", "create", "delete", "update"].includes(kinds[0]))
      throw badRequest(`Malformed action/metadata line [${i + 1}], expected one of [create, delete, index, update] but found [${kinds[0]}]`);
    const kind = kinds[0];
    const meta = isObj(action[kind]) ? (action[kind] as Obj) : {};
    const indexName = String(meta._index ?? defaultIndex ?? "");
    if (!indexName) throw new OsError(400, "action_request_validation_exception", "Validation Failed: 1: index is missing;");
    let id = meta._id === undefined || meta._id === null ? undefined : String(meta._id);
    let sourceLine: string | undefined;
    if (kind !== "delete") {
      i++;
      if (i >= lines.length) throw badRequest(`The bulk request must be terminated by a newline [\\n]`);
      sourceLine = lines[i];
    }
    const item: Obj = { _index: indexName, _id: id ?? null };
    try {
      if (kind === "delete") {
        if (!id) throw new OsError(400, "action_request_validation_exception", "Validation Failed: 1: id is missing;");
        const ix = node.openIndex(indexName);
        const r = ix.remove(id);
        if (!r) Object.assign(item, { _version: 1, result: "not_found", _shards: shardsInfo(ix), _seq_no: ++ix.maxSeqNo, _primary_term: 1, status: 404 });
        else {
          (logs.get(ix) ?? logs.set(ix, []).get(ix)!).push(JSON.stringify({ op: "delete", _id: id, _seq_no: r.seqNo }));
          touched.add(ix);
          Object.assign(item, writeResult(ix, { id, ...r }, "deleted", false), { status: 200 });
        }
      } else {
        let parsed: unknown;
        try {
          parsed = JSON.parse(sourceLine!);
        } catch (e) {
          throw new OsError(400, "mapper_parsing_exception", "failed to parse", {}, new OsError(400, "json_parse_exception", (e as Error).message));
        }
        if (!isObj(parsed)) throw new OsError(400, "mapper_parsing_exception", "failed to parse, document is empty");
        let src: string;
        let ix: Index;
        if (kind === "update") {
          if (!id) throw new OsError(400, "action_request_validation_exception", "Validation Failed: 1: id is missing;");
          if (!isObj(parsed.doc)) throw notImplemented("bulk update without [doc] (scripts)");
          ix = node.openIndex(indexName);
          const cur = ix.docs.get(id);
          if (!cur && parsed.doc_as_upsert !== true)
            throw new OsError(404, "document_missing_exception", `[${id}]: document missing`, { index_uuid: ix.meta.uuid, shard: "0", index: ix.name });
          src = JSON.stringify(cur ? deepMerge(ix.source(cur) as Obj, parsed.doc) : parsed.doc);
        } else {
          ix = node.writeTarget(indexName);
          src = JSON.stringify(parsed);
          id ??= autoId();
          item._id = id;
        }
        const cur = ix.docs.get(id!);
        if (kind === "create" && cur) throw versionConflict(ix, id!, `document already exists (current version [${cur.version}])`);
        const d = ix.put(id!, src);
        (logs.get(ix) ?? logs.set(ix, []).get(ix)!).push(`{"op":"index",${docLine(d).slice(1)}`);
        touched.add(ix);
        Object.assign(item, writeResult(ix, d, cur ? "updated" : "created", false), { status: cur ? 200 : 201 });
      }
    } catch (e) {
      if (!(e instanceof OsError)) throw e;
      errors = true;
      const err = e.body().error as Obj;
      delete err.root_cause;
      Object.assign(item, { status: e.status, error: err });
    }
    items.push({ [kind]: item });
  }
  for (const [ix, l] of logs) ix.log(l);
  for (const ix of touched) afterWrite(ix, req.query);
  return ok({ took: Date.now() - t0, errors, items });
}

// ---------------------------------------------------------------------------------------------
// HTTP server

export async function startOpenSearch(opts: StartOptions): Promise<RunningOpenSearch> {
  const pathRepo = opts.pathRepo === undefined ? [] : Array.isArray(opts.pathRepo) ? opts.pathRepo : [opts.pathRepo];
  const node = new Node(path.resolve(opts.dataDir), pathRepo, opts.clusterName ?? "opensearch");
  node.open();
  const auth = opts.user !== undefined ? Buffer.from(`${opts.user}:${opts.password ?? ""}`) : undefined;

  const server = http.createServer((request, response) => {
    const send = (status: number, body: string, type: string, headers: Record<string, string> = {}) => {
      response.writeHead(status, { "content-type": type, "content-length": Buffer.byteLength(body), ...headers });
      response.end(request.method === "HEAD" ? undefined : body);
    };
    if (auth) {
      const h = request.headers.authorization ?? "";
      const given = h.startsWith("Basic ") ? Buffer.from(h.slice(6), "base64") : Buffer.alloc(0);
      if (given.length !== auth.length || !crypto.timingSafeEqual(given, auth)) {
        request.resume();
        send(401, "Unauthorized", "text/plain; charset=UTF-8", { "www-authenticate": 'Basic realm="OpenSearch Security"' });
        return;
      }
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let tooBig = false;
    request.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_CONTENT_LENGTH) tooBig = true;
      else chunks.push(chunk);
    });
    request.on("end", async () => {
      const url = new URL(request.url ?? "/", "http://127.0.0.1");
      const pretty = url.searchParams.has("pretty");
      try {
        if (tooBig) throw new PlainError(413, `Request content length exceeds [${MAX_CONTENT_LENGTH}] bytes`);
        const body = Buffer.concat(chunks);
        const contentType = String(request.headers["content-type"] ?? "");
        if (body.length > 0) {
          const mime = contentType.split(";")[0].trim().toLowerCase();
          if (mime !== "application/json" && mime !== "application/x-ndjson")
            throw new PlainError(406, `Content-Type header [${contentType}] is not supported`);
        }
        const segs = url.pathname.split("/").filter((s) => s !== "").map((s) => decodeURIComponent(s));
        const res = await handle(node, { method: request.method ?? "GET", segs, uri: url.pathname + url.search, query: url.searchParams, body, contentType });
        if (res.text !== undefined) send(res.status, res.text, "text/plain; charset=UTF-8");
        else send(res.status, (pretty ? JSON.stringify(res.body, null, 2) : JSON.stringify(res.body)) + (pretty ? "\n" : ""), "application/json; charset=UTF-8");
      } catch (e) {
        if (e instanceof OsError) send(e.status, JSON.stringify(e.body(), null, pretty ? 2 : undefined), "application/json; charset=UTF-8");
        else if (e instanceof PlainError) send(e.status, JSON.stringify({ error: e.text, status: e.status }), "application/json; charset=UTF-8", e.headers);
        else {
          const err = new OsError(500, "exception", String((e as Error)?.message ?? e));
          process.stderr.write(`opensearch stand-in: ${(e as Error)?.stack ?? e}\n`);
          send(500, JSON.stringify(err.body()), "application/json; charset=UTF-8");
        }
      }
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", (e) => {
      node.close();
      reject(e);
    });
    server.listen(opts.port ?? 9200, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  let closed = false;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    async close() {
      if (closed) return;
      closed = true;
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        const s = server as { closeAllConnections?: () => void };
        if (typeof s.closeAllConnections === "function") s.closeAllConnections();
      });
      node.close();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// CLI

function isMain(): boolean {
  const m = (import.meta as { main?: boolean }).main;
  if (typeof m === "boolean") return m; // Deno
  const argv1 = process.argv[1];
  if (!argv1) return false;
  try {
    return fs.realpathSync(argv1) === fs.realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

async function main(argv: string[]): Promise<void> {
  const opts: StartOptions = { dataDir: "", port: 9200 };
  const repos: string[] = [];
  let passwordFile: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].includes("=") ? [argv[i].slice(0, argv[i].indexOf("=")), argv[i].slice(argv[i].indexOf("=") + 1)] : [argv[i], undefined];
    const val = () => inline ?? argv[++i];
    switch (flag) {
      case "--port": opts.port = Number(val()); break;
      case "--data": opts.dataDir = val(); break;
      case "--path-repo": repos.push(...val().split(",")); break;
      case "--user": opts.user = val(); break;
      case "--password-file": passwordFile = val(); break;
      case "--cluster-name": opts.clusterName = val(); break;
      default:
        process.stderr.write(`usage: opensearch.ts --port N --data DIR [--path-repo DIR]... [--user NAME --password-file FILE]\nunknown argument: ${argv[i]}\n`);
        process.exit(2);
    }
  }
  if (!opts.dataDir) {
    process.stderr.write("opensearch stand-in: --data DIR is required\n");
    process.exit(2);
  }
  if ((opts.user === undefined) !== (passwordFile === undefined)) {
    process.stderr.write("opensearch stand-in: --user and --password-file go together\n");
    process.exit(2);
  }
  if (passwordFile) opts.password = fs.readFileSync(passwordFile, "utf8").replace(/\r?\n$/, "");
  opts.pathRepo = repos;
  let srv: RunningOpenSearch;
  try {
    srv = await startOpenSearch(opts);
  } catch (e) {
    process.stderr.write(`opensearch stand-in: ${(e as Error).message}\n`);
    process.exit(1);
  }
  const stop = () => {
    srv.close().then(() => process.exit(0), () => process.exit(1));
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  process.stdout.write(JSON.stringify({ ready: true, port: srv.port, url: srv.url, pid: process.pid, version: VERSION }) + "\n");
}

if (isMain()) void main(process.argv.slice(2));
