// S3: a client for S3-compatible gateways (Ceph RADOS Gateway, MinIO, AWS) and a verified,
// streaming sync between a local directory and s3://bucket[/prefix], in either direction.
//
// The AWS SDK v3 does the protocol. Listings, bucket calls, multipart bookkeeping and deletes
// go through its client (standard retries, `maxAttempts`). Object bodies (GET, PUT, part
// uploads) go through the SDK's own SignatureV4 and NodeHttpHandler without the client's
// per-command middleware, which costs about 1 ms of CPU per request, 4 times the request
// itself (see `wire`); refusals are parsed by the SDK's XML error parser. A streamed body
// cannot be replayed by the SDK, so each transfer runs inside a loop driven by the SDK's
// ConfiguredRetryStrategy and error classification, which reopens the file (or restarts the
// download) on each attempt: a gateway restart is ridden out.
//
// Mapping. `s3://b/p` ↔ `dir` maps key `p/REL` to `dir/REL`. A REL that cannot be a safe,
// 1:1 local path (empty or `.`/`..` segments, `//`, a trailing `/`, a segment over 255 bytes,
// a NUL, a first segment starting with `.lifeboat-s3-`, or a key that is both an object and a
// prefix of other keys, such as `a` beside `a/b`) is stored under `.lifeboat-s3-escaped/`,
// percent-encoded (every byte but A-Z a-z 0-9 _ -), cut into 240-byte directories, ending in
// `.key`. The name alone gives the key back, so the round trip is exact even without the index.
//
// The index. A download writes `dir/.lifeboat-s3-index.jsonl` (or the `index` path given):
// a header line, then one line per object with its key, local path, size, ETag, the part size
// that reproduces a multipart ETag, content type, user metadata and the local file's mtime.
// An upload of a dir with an index re-sends each object with its recorded part size, content
// type and metadata, so keys, bytes and ETags come back identical. Names starting with
// `.lifeboat-s3-` at the top of the dir are never uploaded as objects.
//
// Comparison. "checksum" (the default) compares the local MD5 (or MD5-of-part-MD5s for a
// multipart ETag) with the ETag; the index caches each file's ETag with its size and mtime, so
// an unchanged file is not read again (`rehash: true` reads every file). "size" compares sizes.
//
// Downloads stream into `.lifeboat-s3-tmp/PID/` under the destination, are checked against the
// ETag, and are renamed into place: a killed sync never leaves a half file under a real name.
// Uploads are checked against the ETag the gateway returns.
import { createHash, type Hash } from "node:crypto";
import {
  closeSync,
  existsSync,
  futimesSync,
  lstatSync,
  mkdirSync,
  open,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmdirSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import * as fsp from "node:fs/promises";
import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import { basename, dirname, join, resolve } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import process from "node:process";
import type { ObjectIdentifier, S3Client } from "@aws-sdk/client-s3";
import { loadRestXmlErrorCode, parseXmlBody, parseXmlErrorBody } from "@aws-sdk/core/protocols";
import { Sha256 } from "@smithy/core/checksum";
import { extendedEncodeURIComponent, HttpRequest } from "@smithy/core/protocols";
import { ConfiguredRetryStrategy, isServerError, isThrottlingError, isTransientError } from "@smithy/core/retry";
import { NodeHttpHandler, streamCollector } from "@smithy/node-http-handler";
import { SignatureV4 } from "@smithy/signature-v4";
import { partialFile } from "./files.ts";
import { LifeboatError, UsageError, VerifyError } from "./errors.ts";
import { useContext, type Context } from "./context.ts";
import { pidAlive } from "./lock.ts";
import { formatBytes, formatDuration, type Progress } from "./log.ts";

/** Reserved top-level name of the index in a synced dir; never uploaded. */
export const S3_INDEX_NAME = ".lifeboat-s3-index.jsonl";
/** Reserved top-level dir holding objects whose keys cannot be local paths; their keys are uploaded, not this name. */
export const S3_ESCAPED_DIR = ".lifeboat-s3-escaped";
/** Reserved top-level dir for downloads in progress. */
export const S3_TMP_DIR = ".lifeboat-s3-tmp";
const RESERVED = ".lifeboat-s3-";
const INDEX_FORMAT = "lifeboat-s3-index/1";
const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------------
// client

/** Options for {@link s3Client}. */
export interface S3Options {
  /** Gateway URL, http or https, e.g. "http://127.0.0.1:7480". */
  endpoint: string;
  /** Signing region (default "us-east-1"); Ceph takes its zonegroup name or any region. */
  region?: string;
  /** Access key id; registered as a secret. */
  accessKey: string;
  /** Secret access key; registered as a secret. */
  secretKey: string;
  /** Path-style URLs, http://host/bucket/key (default true: Ceph and MinIO, and bucket names such as db_wal). */
  forcePathStyle?: boolean;
  /** Attempts per request for calls without a streamed body: bucket calls, listings (default 3; SDK standard retry). */
  maxAttempts?: number;
  /** Sockets kept open to the gateway (default 64; a sync uses up to its concurrency). */
  maxSockets?: number;
  /** Give up connecting after this many ms (default 5000). */
  connectTimeoutMs?: number;
  /** Give up on a request whose socket stays silent this many ms, body included (default 60000); the transfer is then retried. */
  requestTimeoutMs?: number;
  /** PEM file of the CA that signed an https endpoint (default: Node's trust store). AWS_CA_BUNDLE is never read. */
  caFile?: string;
  /** The context whose secrets learn the keys (default: the current one). */
  ctx?: Context;
}

/** A connection to one S3 endpoint; pass it to every s3* helper. */
export interface S3Handle {
  /** The SDK's client (standard retries, maxAttempts) on the same sockets, for calls lifeboat has no helper for. */
  sdk(): Promise<S3Client>;
  /** Endpoint URL, as given. */
  readonly endpoint: string;
  readonly region: string;
  /** Closes the kept-alive sockets. */
  destroy(): void;
}

type SdkModule = typeof import("@aws-sdk/client-s3");
let sdkModule: Promise<SdkModule> | undefined;
/**
 * The SDK's S3 client module, loaded on first use: a sync that only lists, GETs and PUTs
 * never needs it, and loading it is a tenth of a cold start.
 */
function sdkLib(): Promise<SdkModule> {
  return (sdkModule ??= import("@aws-sdk/client-s3"));
}

/** The SDK client without retries, for calls made inside a transfer's own retry loop (see patiently). */
async function onceOf(h: S3Handle): Promise<S3Client> {
  return (await WIRE.get(h)!.clients()).once;
}

/**
 * Makes an S3 client from explicit settings only: no AWS_* variable, profile or config file is
 * read, so a stray environment cannot change the endpoint, keys or region.
 * @example
 * const s3 = s3Client({ endpoint: "http://127.0.0.1:7480", accessKey, secretKey });
 * await s3Sync("s3://registry", "/backup/registry", { client: s3 });
 * s3.destroy();
 */
export function s3Client(opts: S3Options): S3Handle {
  const ctx = opts.ctx ?? useContext();
  let url: URL;
  try {
    url = new URL(opts.endpoint);
  } catch {
    throw new UsageError(`s3: endpoint '${opts.endpoint}' is not a URL`, "give it as http://HOST:PORT or https://HOST");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(`s3: endpoint '${opts.endpoint}' is not http or https`, "give it as http://HOST:PORT or https://HOST");
  }
  if (!opts.accessKey || !opts.secretKey) {
    throw new UsageError(`s3 ${opts.endpoint}: access key or secret key is empty`, "set both keys for this gateway");
  }
  ctx.secrets.add(opts.accessKey);
  ctx.secrets.add(opts.secretKey);
  // The SDK warns on stderr, once per process, that it will drop Node 20 in 2027.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  const maxSockets = opts.maxSockets ?? 64;
  const agent = { keepAlive: true, keepAliveMsecs: 1000, maxSockets, maxFreeSockets: maxSockets };
  const httpAgent = new HttpAgent(agent);
  const httpsAgent = new HttpsAgent({ ...agent, ...(opts.caFile ? { ca: readFileSync(opts.caFile) } : {}) });
  const region = opts.region ?? "us-east-1";
  const credentials = { accessKeyId: opts.accessKey, secretAccessKey: opts.secretKey };
  const handler = new NodeHttpHandler({
    httpAgent,
    httpsAgent,
    connectionTimeout: opts.connectTimeoutMs ?? 5000,
    // A silent socket, not a slow transfer, is what fails: big bodies on slow links take long.
    // (The handler's requestTimeout only warns unless told to throw, and counts the whole upload.)
    socketTimeout: opts.requestTimeoutMs ?? 60000,
  });
  const make = (S3: SdkModule["S3Client"], maxAttempts: number) =>
    new S3({
      endpoint: opts.endpoint,
      region,
      credentials,
      forcePathStyle: opts.forcePathStyle ?? true,
      maxAttempts,
      retryMode: "standard",
      requestHandler: handler,
      // Everything the SDK would otherwise look up in AWS_* variables or ~/.aws/config:
      defaultsMode: "standard",
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      useArnRegion: false,
      useDualstackEndpoint: false,
      useFipsEndpoint: false,
      useAccelerateEndpoint: false,
      disableMultiregionAccessPoints: true,
      disableS3ExpressSessionAuth: true,
      sigv4aSigningRegionSet: [region],
      authSchemePreference: ["sigv4"],
      userAgentAppId: "lifeboat",
      followRegionRedirects: false,
    });
  let made: { sdk: S3Client; once: S3Client } | undefined;
  let making: Promise<{ sdk: S3Client; once: S3Client }> | undefined;
  const clients = () =>
    (making ??= sdkLib().then(({ S3Client: S3 }) => (made = { sdk: make(S3, opts.maxAttempts ?? 3), once: make(S3, 1) })));
  const handle: S3Handle = {
    sdk: async () => (await clients()).sdk,
    endpoint: opts.endpoint,
    region,
    destroy() {
      made?.sdk.destroy();
      made?.once.destroy();
      handler.destroy();
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  };
  WIRE.set(handle, {
    url,
    pathStyle: opts.forcePathStyle ?? true,
    handler,
    signer: new SignatureV4({ credentials, region, service: "s3", sha256: Sha256, uriEscapePath: false, applyChecksum: false }),
    maxAttempts: opts.maxAttempts ?? 3,
    clients,
  });
  return handle;
}

/**
 * The per-object path: GET and PUT of object bodies, and part uploads. It is the SDK's own
 * SignatureV4 and NodeHttpHandler, and the SDK's XML error parser for refusals, without the
 * per-command middleware stack (endpoint rules, schema serde, checksum and user-agent
 * plugins), which costs about 1 ms of CPU per request, 4 times the request itself: on a small
 * machine shared with the gateway that decides the speed of thousands of small objects.
 * Keys are encoded as the SDK encodes them. Every other call goes through the full client.
 */
interface Wire {
  url: URL;
  pathStyle: boolean;
  handler: NodeHttpHandler;
  signer: SignatureV4;
  /** Attempts for calls that should fail fast (S3Options.maxAttempts). */
  maxAttempts: number;
  /** The SDK clients, made on first use. */
  clients(): Promise<{ sdk: S3Client; once: S3Client }>;
}

/** What the SDK's XML parser needs: a way to read a body. */
const XML_CONTEXT = { streamCollector } as any;
const WIRE = new WeakMap<S3Handle, Wire>();

interface WireResponse {
  status: number;
  /** Lower-case header names. */
  headers: Record<string, string>;
  body: Readable;
}

async function wire(h: S3Handle, op: {
  method: "GET" | "PUT";
  bucket: string;
  /** The object; none for a call on the bucket itself (a listing). */
  key?: string;
  query?: Record<string, string>;
  headers?: Record<string, string | undefined>;
  body?: Readable;
  length?: number;
}): Promise<WireResponse> {
  const w = WIRE.get(h)!;
  const headers: Record<string, string> = { "x-amz-content-sha256": "UNSIGNED-PAYLOAD" };
  for (const [k, v] of Object.entries(op.headers ?? {})) if (v !== undefined) headers[k] = v;
  headers.host = w.pathStyle ? w.url.host : `${op.bucket}.${w.url.host}`;
  if (op.length !== undefined) headers["content-length"] = String(op.length);
  const base = w.url.pathname.replace(/\/$/, "");
  const keyPath = op.key === undefined ? undefined : op.key.split("/").map(extendedEncodeURIComponent).join("/");
  const req = new HttpRequest({
    protocol: w.url.protocol,
    hostname: w.pathStyle ? w.url.hostname : `${op.bucket}.${w.url.hostname}`,
    port: w.url.port ? Number(w.url.port) : undefined,
    method: op.method,
    path: w.pathStyle ? `${base}/${op.bucket}${keyPath === undefined ? "" : `/${keyPath}`}` : `${base}/${keyPath ?? ""}`,
    query: op.query,
    headers,
    body: op.body,
  });
  const signed = await w.signer.sign(req);
  const { response } = await w.handler.handle(signed as HttpRequest);
  const status = response.statusCode;
  if (status >= 200 && status < 300) return { status, headers: response.headers, body: response.body as Readable };
  let data: any;
  try {
    data = await parseXmlErrorBody(response.body, XML_CONTEXT);
  } catch {
    data = undefined;
  }
  const code = loadRestXmlErrorCode(response, data) ?? `HTTP${status}`;
  throw Object.assign(new Error(data?.Error?.Message ?? data?.Message ?? code), {
    name: code,
    $fault: status >= 500 ? "server" : "client",
    $metadata: { httpStatusCode: status, requestId: response.headers["x-amz-request-id"] },
  });
}

/** Object headers a PUT carries (the index's record of them). */
function putHeaders(e: S3IndexEntry | undefined): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {
    "content-type": e?.contentType,
    "cache-control": e?.cacheControl,
    "content-disposition": e?.contentDisposition,
    "content-encoding": e?.contentEncoding,
    "content-language": e?.contentLanguage,
  };
  for (const [k, v] of Object.entries(e?.metadata ?? {})) out[`x-amz-meta-${k}`] = v;
  return out;
}

/** The index's record of an object's headers, from a GET's response headers. */
function headersFromWire(hd: Record<string, string>): Partial<S3IndexEntry> {
  const out: Partial<S3IndexEntry> = {};
  if (hd["content-type"]) out.contentType = hd["content-type"];
  if (hd["cache-control"]) out.cacheControl = hd["cache-control"];
  if (hd["content-disposition"]) out.contentDisposition = hd["content-disposition"];
  if (hd["content-encoding"]) out.contentEncoding = hd["content-encoding"];
  if (hd["content-language"]) out.contentLanguage = hd["content-language"];
  const meta: Record<string, string> = {};
  for (const [k, v] of Object.entries(hd)) if (k.startsWith("x-amz-meta-")) meta[k.slice(11)] = v;
  if (Object.keys(meta).length) out.metadata = meta;
  if (hd["last-modified"]) out.lastModified = new Date(hd["last-modified"]).toISOString();
  return out;
}

/** An S3 call failed; `code` is the gateway's error code (AccessDenied, NoSuchBucket …) or the network error code. */
export class S3Error extends LifeboatError {
  readonly code: string;
  readonly status?: number;
  constructor(message: string, code: string, status: number | undefined, hint: string | undefined, cause: unknown) {
    super(message, { hint, cause });
    this.code = code;
    this.status = status;
  }
}

const DENIED = new Set(["AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden", "InvalidToken"]);
const UNREACHABLE = new Set(["ECONNREFUSED", "ENOTFOUND", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN", "ETIMEDOUT", "ECONNRESET", "TimeoutError"]);

function errCode(e: any): string {
  return String(e?.code ?? e?.errors?.[0]?.code ?? e?.Code ?? e?.name ?? "Error");
}

/** Turns an SDK or network error into an S3Error that names the endpoint, the call and what to do. */
function s3Error(h: S3Handle, what: string, e: unknown): Error {
  if (e instanceof LifeboatError) return e;
  const err = e as any;
  const status: number | undefined = err?.$metadata?.httpStatusCode;
  const name: string = err?.name && err.name !== "Error" ? err.name : errCode(err);
  const where = `s3 ${h.endpoint}: ${what}`;
  if (DENIED.has(name) || status === 403) {
    return new S3Error(`${where}: access denied (${name})`, name, status,
      "check the access key and secret key for this gateway, and that the user may use this bucket", e);
  }
  if (name === "NoSuchBucket") {
    return new S3Error(`${where}: no such bucket`, name, status, "create it first (s3MakeBucket, like `s3cmd mb`), or check its name", e);
  }
  const code = errCode(err);
  if (name === "TimeoutError" || code === "ETIMEDOUT") {
    return new S3Error(`${where}: the gateway did not answer in time (${err?.message ?? code})`, "TimeoutError", status,
      "is it overloaded or stopped? A Ceph cluster that is full (`ceph health`) leaves writes unanswered", e);
  }
  if (UNREACHABLE.has(code) || UNREACHABLE.has(name)) {
    return new S3Error(`${where}: gateway unreachable (${code}: ${err?.message ?? ""})`, code, status,
      "is the gateway running and listening there? check the endpoint URL and port", e);
  }
  const msg = err?.message && err.message !== name && err.message !== "UnknownError" ? `: ${err.message}` : "";
  const hint = name === "InvalidBucketName"
    ? "bucket names are 3-63 lowercase letters, digits, dots and hyphens; Ceph takes _ and capitals only with `rgw relaxed s3 bucket names = true`"
    : undefined;
  return new S3Error(`${where}: ${name}${status ? ` (HTTP ${status})` : ""}${msg}`, name, status, hint, e);
}

async function call<T>(h: S3Handle, what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw s3Error(h, what, e);
  }
}

/** A body that did not match its ETag: retried, and reported as VerifyError once attempts run out. */
class ChecksumMismatch extends Error {
  readonly $retryable = {};
}

const RETRYABLE_STREAM_CODES = new Set(["ERR_STREAM_PREMATURE_CLOSE", "ECONNRESET", "EPIPE", "ECONNABORTED", "ERR_SOCKET_CONNECTION_TIMEOUT"]);

/** The SDK's classification of an error, plus the stream errors a dropped connection gives. */
function errorType(e: any): "TRANSIENT" | "THROTTLING" | "SERVER_ERROR" | "CLIENT_ERROR" {
  if (e instanceof LifeboatError) return "CLIENT_ERROR";
  if (isThrottlingError(e)) return "THROTTLING";
  if (isTransientError(e) || RETRYABLE_STREAM_CODES.has(e?.code) || e?.message === "aborted") return "TRANSIENT";
  if (isServerError(e)) return "SERVER_ERROR";
  return "CLIENT_ERROR";
}

/**
 * Runs one transfer with the SDK's ConfiguredRetryStrategy: transient failures (connection
 * refused or reset, timeouts, 5xx, throttling, a body that failed its checksum) are retried
 * with exponential backoff (250 ms doubling, at most 4 s apart), so a gateway restart is
 * ridden out; anything else fails at once.
 */
async function patiently<T>(attempts: number, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn(); // the common case, without making a strategy per object
  } catch (first) {
    const strategy = new ConfiguredRetryStrategy(attempts, (n: number) => Math.min(4000, 250 * 2 ** n));
    let token = await strategy.acquireInitialRetryToken("lifeboat-s3");
    for (let e = first; ; ) {
      try {
        token = await strategy.refreshRetryTokenForRetry(token, { errorType: errorType(e), error: e as Error } as any);
      } catch {
        throw e;
      }
      try {
        const out = await fn();
        strategy.recordSuccess(token);
        return out;
      } catch (next) {
        e = next;
      }
    }
  }
}

/** One transfer with retries; what is left after the last attempt becomes an S3Error or, for bad bytes, a VerifyError. */
async function transfer<T>(s: SyncState, target: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await patiently(s.attempts, fn);
  } catch (e) {
    if (e instanceof ChecksumMismatch) {
      throw new VerifyError(`s3 ${target}: ${e.message} (after ${s.attempts} attempts)`, [e.message],
        "the bytes kept differing from the ETag: check the gateway's health and the disk; run the sync again");
    }
    throw s3Error(s.h, target, e);
  }
}

/** Runs fn for every item, at most n at once; every item runs, then the failures are thrown together. */
async function forEachLimit<T>(items: readonly T[], n: number, fn: (item: T) => Promise<void>): Promise<unknown[]> {
  const errors: unknown[] = [];
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++];
      try {
        await fn(item);
      } catch (e) {
        errors.push(e);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return errors;
}

/** A counting semaphore: at most n requests in flight across files and parts. */
function limiter(n: number) {
  let active = 0;
  const waiting: (() => void)[] = [];
  return async <T>(fn: () => Promise<T>): Promise<T> => {
    if (active < n) active++;
    else await new Promise<void>((r) => waiting.push(r));
    try {
      return await fn();
    } finally {
      const wake = waiting.shift();
      if (wake) wake();
      else active--;
    }
  };
}

// ---------------------------------------------------------------------------------
// buckets and listings

/** Options for the bucket helpers. */
export interface S3BucketOptions {
  /** The context (default: the current one). */
  ctx?: Context;
}

/** Options for {@link s3RemoveBucket}. */
export interface S3RemoveBucketOptions extends S3BucketOptions {
  /** Delete every object, version and unfinished multipart upload first (default false: only an empty bucket goes). */
  purge?: boolean;
}

/** One object of a listing. */
export interface S3Object {
  key: string;
  size: number;
  /** ETag without quotes: an MD5 in hex, or "MD5-N" for a multipart upload of N parts. */
  etag: string;
  lastModified: Date;
}

/**
 * True when the bucket exists and these keys may use it.
 * @example if (!(await s3BucketExists(s3, "db_wal"))) await s3MakeBucket(s3, "db_wal");
 */
export async function s3BucketExists(client: S3Handle, bucket: string): Promise<boolean> {
  try {
    const { HeadBucketCommand } = await sdkLib();
    await (await client.sdk()).send(new HeadBucketCommand({ Bucket: bucket }));
    return true;
  } catch (e: any) {
    if (e?.$metadata?.httpStatusCode === 404 || e?.name === "NotFound" || e?.name === "NoSuchBucket") return false;
    throw s3Error(client, `head bucket ${bucket}`, e);
  }
}

/**
 * Creates a bucket (`s3cmd mb`); an existing bucket of the same owner is fine. Returns true when it was created.
 * In dry-run it prints `[dry-run] s3 mb s3://NAME` and creates nothing.
 * @example await s3MakeBucket(s3, "db_wal");
 */
export async function s3MakeBucket(client: S3Handle, bucket: string, opts: S3BucketOptions = {}): Promise<boolean> {
  const ctx = opts.ctx ?? useContext();
  if (ctx.dryRun) {
    ctx.log.command(`s3 mb s3://${bucket}`, "dry-run");
    return false;
  }
  // Ceph answers 200 to creating a bucket its user already has: ask first.
  if (await s3BucketExists(client, bucket)) return false;
  ctx.log.command(`s3 mb s3://${bucket}`, "run");
  try {
    const { CreateBucketCommand } = await sdkLib();
    await (await client.sdk()).send(new CreateBucketCommand({ Bucket: bucket }));
    return true;
  } catch (e: any) {
    if (e?.name === "BucketAlreadyOwnedByYou") return false;
    throw s3Error(client, `make bucket ${bucket}`, e);
  }
}

/**
 * Removes a bucket (`s3cmd rb`); with `purge`, first every object, version, delete marker and
 * unfinished multipart upload in it. Returns how many objects (versions) were deleted.
 * A missing bucket is not an error. In dry-run it prints what it would remove.
 * @example await s3RemoveBucket(s3, "scratch", { purge: true });
 */
export async function s3RemoveBucket(client: S3Handle, bucket: string, opts: S3RemoveBucketOptions = {}): Promise<number> {
  const ctx = opts.ctx ?? useContext();
  if (!(await s3BucketExists(client, bucket))) return 0;
  if (ctx.dryRun) {
    let n = 0;
    if (opts.purge) for await (const _ of s3List(client, bucket)) n++;
    ctx.log.command(`s3 rb${opts.purge ? ` --purge (${n} objects)` : ""} s3://${bucket}`, "dry-run");
    return n;
  }
  ctx.log.command(`s3 rb${opts.purge ? " --purge" : ""} s3://${bucket}`, "run");
  const { AbortMultipartUploadCommand, DeleteBucketCommand, ListMultipartUploadsCommand, ListObjectVersionsCommand } = await sdkLib();
  const sdk = await client.sdk();
  let deleted = 0;
  if (opts.purge) {
    let keyMarker: string | undefined;
    let uploadMarker: string | undefined;
    do {
      const page = await call(client, `list uploads of ${bucket}`, () =>
        sdk.send(new ListMultipartUploadsCommand({ Bucket: bucket, KeyMarker: keyMarker, UploadIdMarker: uploadMarker })));
      for (const u of page.Uploads ?? []) {
        await call(client, `abort upload of ${bucket}/${u.Key}`, () =>
          sdk.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: u.Key!, UploadId: u.UploadId! })));
      }
      keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
      uploadMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
    } while (keyMarker);
    let vKey: string | undefined;
    let vId: string | undefined;
    do {
      const page = await call(client, `list versions of ${bucket}`, () =>
        sdk.send(new ListObjectVersionsCommand({ Bucket: bucket, KeyMarker: vKey, VersionIdMarker: vId, EncodingType: "url" })));
      const ids: ObjectIdentifier[] = [...(page.Versions ?? []), ...(page.DeleteMarkers ?? [])].map((v) => ({
        Key: decodeKey(v.Key!),
        VersionId: v.VersionId === "null" ? undefined : v.VersionId,
      }));
      deleted += await deleteKeys(client, bucket, ids);
      vKey = page.IsTruncated ? decodeKey(page.NextKeyMarker!) : undefined;
      vId = page.IsTruncated ? page.NextVersionIdMarker : undefined;
    } while (vKey);
  }
  await call(client, `remove bucket ${bucket}`, () => sdk.send(new DeleteBucketCommand({ Bucket: bucket })));
  return deleted;
}

async function deleteKeys(client: S3Handle, bucket: string, ids: ObjectIdentifier[], attempts = 3): Promise<number> {
  const { DeleteObjectCommand, DeleteObjectsCommand } = await sdkLib();
  const once = await onceOf(client);
  // A key with a control character cannot travel in DeleteObjects' XML body (Ceph answers 400
  // for the whole batch): such keys go one by one, in the URL.
  const odd = ids.filter((o) => /[\u0000-\u001f\u007f]/.test(o.Key ?? ""));
  const plain = ids.filter((o) => !odd.includes(o));
  let n = 0;
  for (let i = 0; i < plain.length; i += 1000) {
    const batch = plain.slice(i, i + 1000);
    const out = await call(client, `delete ${batch.length} objects from ${bucket}`, () =>
      patiently(attempts, () => once.send(new DeleteObjectsCommand({
      Bucket: bucket,
      Delete: { Objects: batch, Quiet: true },
      // Ceph and MinIO want Content-MD5 here; the SDK would send a CRC32 header instead.
      ChecksumAlgorithm: "MD5",
    }))));
    if (out.Errors?.length) {
      const first = out.Errors[0];
      throw new S3Error(`s3 ${client.endpoint}: delete from ${bucket}: ${out.Errors.length} objects not deleted, first ${first.Key}: ${first.Code} ${first.Message ?? ""}`,
        first.Code ?? "DeleteError", undefined, undefined, undefined);
    }
    n += batch.length;
  }
  for (const o of odd) {
    await call(client, `delete s3://${bucket}/${o.Key}`, () => patiently(attempts, () => once.send(new DeleteObjectCommand({ Bucket: bucket, ...o }))));
    n++;
  }
  return n;
}

/** Keys come URL-encoded (encoding-type=url), so that keys with control characters survive the XML. */
function decodeKey(k: string): string {
  return decodeURIComponent(k.replace(/\+/g, " "));
}

function stripEtag(e: string | undefined): string {
  return (e ?? "").replace(/^W\//, "").replace(/^"|"$/g, "");
}

/**
 * Lists every object under a prefix (all of them when prefix is empty), 1000 per request,
 * following continuation tokens.
 * @example for await (const o of s3List(s3, "registry", "docker/")) console.log(o.key, o.size);
 */
export async function* s3List(client: S3Handle, bucket: string, prefix = ""): AsyncGenerator<S3Object> {
  let token: string | undefined;
  let first = true;
  const w = WIRE.get(client)!;
  do {
    const query: Record<string, string> = { "list-type": "2", "encoding-type": "url", "max-keys": "1000" };
    if (prefix) query.prefix = prefix;
    if (token) query["continuation-token"] = token;
    // ListObjectsV2 on the lean path, its XML read by the SDK's parser: a third of the SDK
    // client's time for a cold process. The first page fails fast (a wrong endpoint or key);
    // later pages ride out a gateway restart.
    const page: ListPage = await call(client, `list s3://${bucket}/${prefix}`, () =>
      patiently(first ? w.maxAttempts : 10, async () => {
        const res = await wire(client, { method: "GET", bucket, query });
        return (await parseXmlBody(res.body, XML_CONTEXT)) ?? {};
      }));
    first = false;
    for (const o of asArray(page.Contents)) {
      yield { key: decodeKey(o.Key ?? ""), size: Number(o.Size ?? 0), etag: stripEtag(o.ETag), lastModified: new Date(o.LastModified ?? 0) };
    }
    token = page.IsTruncated === "true" ? page.NextContinuationToken : undefined;
  } while (token);
}

/** A ListObjectsV2 result as the SDK's XML parser gives it: strings, and one element or an array. */
interface ListPage {
  Contents?: { Key?: string; Size?: string; ETag?: string; LastModified?: string } | { Key?: string; Size?: string; ETag?: string; LastModified?: string }[];
  IsTruncated?: string;
  NextContinuationToken?: string;
}

function asArray<T>(v: T | T[] | undefined): T[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

// ---------------------------------------------------------------------------------
// local names

/** Splits "s3://bucket/some/prefix" into bucket and a prefix that is "" or ends in "/". */
export function parseS3Url(url: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([^/]+)(?:\/(.*))?$/.exec(url);
  if (!m) throw new UsageError(`'${url}' is not an s3:// URL`, "write it as s3://BUCKET or s3://BUCKET/PREFIX");
  let prefix = m[2] ?? "";
  if (prefix && !prefix.endsWith("/")) prefix += "/";
  return { bucket: m[1], prefix };
}

const NAME_MAX = 255;
const CHUNK = 240;

/** The escaped local path (relative to the synced dir) of a key that cannot be a path. */
export function s3EscapedPath(rel: string): string {
  let enc = "";
  for (const b of Buffer.from(rel, "utf8")) {
    const c = String.fromCharCode(b);
    enc += /[A-Za-z0-9_-]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  const parts: string[] = [];
  let i = 0;
  while (enc.length - i > CHUNK) {
    let end = i + CHUNK;
    if (enc[end - 1] === "%") end -= 1;
    else if (enc[end - 2] === "%") end -= 2;
    parts.push(enc.slice(i, end));
    i = end;
  }
  parts.push(enc.slice(i) + ".key");
  return `${S3_ESCAPED_DIR}/${parts.join("/")}`;
}

/** The key (relative to the prefix) an escaped path stands for, or null when the name is not one of ours. */
export function s3UnescapePath(path: string): string | null {
  if (!path.startsWith(`${S3_ESCAPED_DIR}/`) || !path.endsWith(".key")) return null;
  const enc = path.slice(S3_ESCAPED_DIR.length + 1, -4).replace(/\//g, "");
  if (!/^(?:[A-Za-z0-9_-]|%[0-9A-F]{2})*$/.test(enc)) return null;
  const bytes = Buffer.from(enc.replace(/%([0-9A-F]{2})|([A-Za-z0-9_-])/g, (_, h, c) => (h ? String.fromCharCode(parseInt(h, 16)) : c)), "latin1");
  return bytes.toString("utf8");
}

/** True when REL can be used as a local path as it is (conflicts with other keys aside). */
function plainPathOk(rel: string): boolean {
  if (rel === "") return false;
  const segs = rel.split("/");
  if (segs[0].startsWith(RESERVED)) return false;
  for (const s of segs) {
    if (s === "" || s === "." || s === ".." || s.includes("\0") || Buffer.byteLength(s) > NAME_MAX) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------
// ETags and hashing

type Scheme = { kind: "md5" } | { kind: "multipart"; parts: number } | { kind: "opaque" };

function schemeOf(etag: string): Scheme {
  if (/^[0-9a-f]{32}$/i.test(etag)) return { kind: "md5" };
  const m = /^[0-9a-f]{32}-(\d+)$/i.exec(etag);
  if (m) return { kind: "multipart", parts: Number(m[1]) };
  return { kind: "opaque" };
}

/** Part sizes that give `parts` parts for `size` bytes, the likeliest first (hints, then the common client defaults). */
function partSizeCandidates(size: number, parts: number, hints: (number | undefined)[] = []): number[] {
  if (parts <= 1) return [Math.max(size, 1)];
  const fits = (p: number) => p > 0 && Math.ceil(size / p) === parts;
  const out: number[] = [];
  const add = (p: number | undefined) => {
    if (p && fits(p) && !out.includes(p)) out.push(p);
  };
  hints.forEach(add);
  // lifeboat, rclone, the SDK: 5 MiB; aws cli, boto3: 8 MiB; s3cmd: 15 MiB; minio: 16 MiB and up.
  [5, 8, 15, 16, 10, 32, 50, 64, 100, 128, 256, 512, 1024].forEach((m) => add(m * MiB));
  // Whole MiB sizes in range, then the smallest exact size.
  const lo = Math.ceil(size / parts);
  for (let p = Math.ceil(lo / MiB) * MiB; fits(p) && out.length < 24; p += MiB) add(p);
  add(lo);
  return out.slice(0, 24);
}

/** MD5 of everything it is given, and/or MD5-of-part-MD5s for several part sizes; counts bytes. */
class Hasher {
  bytes = 0;
  readonly #whole: Hash | null;
  readonly #cands: { size: number; cur: Hash; filled: number; digests: Buffer[] }[];

  constructor(opts: { whole: boolean; partSizes?: number[] }) {
    this.#whole = opts.whole ? createHash("md5") : null;
    this.#cands = (opts.partSizes ?? []).map((size) => ({ size, cur: createHash("md5"), filled: 0, digests: [] }));
  }

  update(chunk: Buffer): void {
    this.bytes += chunk.length;
    this.#whole?.update(chunk);
    for (const c of this.#cands) {
      let off = 0;
      while (off < chunk.length) {
        const take = Math.min(c.size - c.filled, chunk.length - off);
        c.cur.update(off === 0 && take === chunk.length ? chunk : chunk.subarray(off, off + take));
        c.filled += take;
        off += take;
        if (c.filled === c.size) {
          c.digests.push(c.cur.digest());
          c.cur = createHash("md5");
          c.filled = 0;
        }
      }
    }
  }

  /** The whole MD5 in hex (once, at the end). */
  md5(): string {
    return this.#whole!.digest("hex");
  }

  /** ETag "md5-N" for each part size (once, at the end). */
  multipart(): { partSize: number; etag: string }[] {
    return this.#cands.map((c) => {
      const digests = c.filled > 0 || c.digests.length === 0 ? [...c.digests, c.cur.digest()] : c.digests;
      return { partSize: c.size, etag: `${createHash("md5").update(Buffer.concat(digests)).digest("hex")}-${digests.length}` };
    });
  }
}

const CHUNK_READ = 256 << 10;

/**
 * len bytes of a file from start, hashed as they are read. Reads are synchronous and at most
 * 256 KiB: on this kind of machine a thread-pool round trip per open, read and close costs more
 * than the read itself, and thousands of small files are the common case.
 */
class FileSource extends Readable {
  #fd: number | null = null;
  #pos: number;
  #left: number;
  readonly #path: string;
  readonly #hash: Hasher;
  readonly #onBytes?: (n: number) => void;

  constructor(path: string, start: number, len: number, hash: Hasher, onBytes?: (n: number) => void) {
    super({ highWaterMark: CHUNK_READ });
    this.#path = path;
    this.#pos = start;
    this.#left = len;
    this.#hash = hash;
    this.#onBytes = onBytes;
  }

  override _read(): void {
    try {
      if (this.#left <= 0) {
        this.push(null);
        return;
      }
      this.#fd ??= openSync(this.#path, "r");
      const buf = Buffer.allocUnsafe(Math.min(CHUNK_READ, this.#left));
      const n = readSync(this.#fd, buf, 0, buf.length, this.#pos);
      if (n === 0) {
        this.destroy(Object.assign(new Error(`${this.#path}: file shrank while it was read`), { code: "EFILECHANGED" }));
        return;
      }
      const chunk = n === buf.length ? buf : buf.subarray(0, n);
      this.#pos += n;
      this.#left -= n;
      this.#hash.update(chunk);
      this.#onBytes?.(n);
      this.push(chunk);
    } catch (e) {
      this.destroy(e as Error);
    }
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (this.#fd !== null) closeSync(this.#fd);
    this.#fd = null;
    cb(err);
  }
}

/**
 * Streams a response body into a new file (O_EXCL), hashing it, and sets its mtime. The open
 * goes to the thread pool (creating a file can wait on the filesystem's journal while other
 * data is written back); the writes, into the page cache, are synchronous, one chunk at a time,
 * as FileSource reads.
 */
async function saveBody(path: string, body: Readable, hash: Hasher, onBytes: (n: number) => void, mtime?: Date): Promise<void> {
  const fd = await new Promise<number>((ok, fail) => open(path, "wx", 0o644, (e, fd) => (e ? fail(e) : ok(fd))));
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      for (let off = 0; off < chunk.length; ) off += writeSync(fd, chunk, off);
      hash.update(chunk);
      onBytes(chunk.length);
    }
    if (mtime) futimesSync(fd, mtime, mtime);
  } finally {
    closeSync(fd);
  }
}

/** Reads a local file and tells whether it matches an ETag; gives the part size that reproduces a multipart one. */
async function localMatches(
  path: string, size: number, etag: string, hints: (number | undefined)[], md5?: string,
): Promise<{ match: boolean; partSize?: number }> {
  const scheme = schemeOf(etag);
  if (scheme.kind === "opaque") return { match: true };
  const cands = scheme.kind === "multipart" ? partSizeCandidates(size, scheme.parts, hints) : [];
  const tap = new Hasher({ whole: scheme.kind === "md5" || !!md5, partSizes: cands });
  await pipeline(new FileSource(path, 0, size, tap), async function* (src) {
    for await (const _ of src) { /* drain */ }
  });
  if (scheme.kind === "md5") return { match: tap.md5() === etag.toLowerCase() };
  const hit = tap.multipart().find((m) => m.etag === etag.toLowerCase());
  // An unverified object (see S3IndexEntry.unverified) is compared by the MD5 the index kept.
  return hit ? { match: true, partSize: hit.partSize } : { match: !!md5 && tap.md5() === md5 };
}

// ---------------------------------------------------------------------------------
// the index

/** One object as the index records it. */
export interface S3IndexEntry {
  /** Key relative to the synced prefix. */
  rel: string;
  /** Local path relative to the synced dir ("/"-separated): rel itself, or its escaped name. */
  path: string;
  size: number;
  etag: string;
  /** Part size that reproduces a multipart ETag. */
  partSize?: number;
  contentType?: string;
  cacheControl?: string;
  contentDisposition?: string;
  contentEncoding?: string;
  contentLanguage?: string;
  /** User metadata (x-amz-meta-*). */
  metadata?: Record<string, string>;
  /** Last-Modified on the gateway, ISO 8601. */
  lastModified?: string;
  /** The local file's mtime when it was known to hold this ETag. */
  mtimeMs?: number;
  /** No part size reproduced the multipart ETag: the bytes were read twice alike but not checked against it. */
  unverified?: boolean;
  /** MD5 of the content, kept for unverified objects. */
  md5?: string;
}

interface IndexHeader {
  format: string;
  endpoint?: string;
  bucket?: string;
  prefix?: string;
  writtenAt?: string;
  objects?: number;
  bytes?: number;
}

/** Reads an index written by s3Sync (entries by local path); an absent or foreign file gives an empty index. */
export function readS3Index(path: string): Map<string, S3IndexEntry> & { writtenAt?: number } {
  const out: Map<string, S3IndexEntry> & { writtenAt?: number } = new Map<string, S3IndexEntry>();
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return out;
  }
  const lines = text.split("\n");
  try {
    const head = JSON.parse(lines[0]) as IndexHeader;
    if (head.format !== INDEX_FORMAT) return out;
    out.writtenAt = Date.parse(head.writtenAt ?? "") || 0;
    for (const line of lines.slice(1)) {
      if (!line) continue;
      const e = JSON.parse(line) as S3IndexEntry;
      out.set(e.path, e);
    }
  } catch {
    return new Map();
  }
  return out;
}

function writeIndex(path: string, head: IndexHeader, entries: S3IndexEntry[]): void {
  entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const lines = [JSON.stringify(head)];
  for (const e of entries) lines.push(JSON.stringify(e));
  mkdirSync(dirname(path), { recursive: true });
  const f = partialFile(path);
  try {
    writeFileSync(f.tmp, lines.join("\n") + "\n", { mode: 0o600 });
    f.commit();
  } catch (e) {
    f.discard();
    throw e;
  }
}

/**
 * The ETag the index holds for a local file that is unchanged since (same size and mtime).
 * An mtime within 2 s of the index's writing is not trusted (git's "racily clean" rule): a
 * write in the same clock tick leaves the mtime as it was.
 */
function cachedEtag(e: S3IndexEntry | undefined, st: { size: number; mtimeMs: number }, writtenAt: number): string | undefined {
  return e && e.mtimeMs === st.mtimeMs && e.size === st.size && e.mtimeMs < writtenAt - 2000 ? e.etag : undefined;
}

// ---------------------------------------------------------------------------------
// sync

/** Options for {@link s3Sync}. */
export interface S3SyncOptions {
  /** The gateway connection (from s3Client). */
  client: S3Handle;
  /** Remove what the source does not have from the destination (default false). */
  delete?: boolean;
  /** How to tell that an object is unchanged: "checksum" (default, MD5 against the ETag) or "size". */
  compare?: "checksum" | "size";
  /** Read every local file for "checksum", not trusting the index's cached ETags (default false). */
  rehash?: boolean;
  /** Transfers (requests) in flight at once (default 24). */
  concurrency?: number;
  /** Files at least this big are uploaded in parts (default 64 MiB), unless the index says how they were uploaded. */
  multipartThreshold?: number;
  /** Part size for new multipart uploads (default 8 MiB; raised to keep 10 000 parts at most). */
  partSize?: number;
  /** Attempts per transfer before the sync reports it failed (default 10, about 25 s of backoff). */
  attempts?: number;
  /** Where the index lives: a path (outside the dir, or inside it: it is never an object), or false for none (default: `.lifeboat-s3-index.jsonl` in the dir). */
  index?: string | false;
  /** Show byte progress (default true). */
  progress?: boolean;
  /** The context (default: the current one). */
  ctx?: Context;
}

/** What a sync did; `objects` and `bytes` describe the source, as a manifest records it. */
export interface S3SyncReport {
  direction: "upload" | "download";
  source: string;
  destination: string;
  /** Objects (files) in the source, and their bytes. */
  objects: number;
  bytes: number;
  uploaded: number;
  downloaded: number;
  deleted: number;
  /** Unchanged objects that were not transferred. */
  skipped: number;
  /** Bytes sent or received. */
  transferredBytes: number;
  /** Keys kept under an escaped local name (see S3_ESCAPED_DIR). */
  escaped: number;
  /** Downloads whose multipart ETag no part size reproduces (kept, warned about, marked in the index). */
  unverified: number;
  /** The index read or written, if any. */
  index: string | null;
  dryRun: boolean;
  durationMs: number;
}

interface LocalFile {
  /** Path relative to the dir, "/"-separated. */
  path: string;
  abs: string;
  size: number;
  mtimeMs: number;
}

/** Regular files under root, skipping the reserved top-level names other than the escaped dir. */
function walkLocal(root: string, ctx: Context, warn: boolean, skip: string | null): Map<string, LocalFile> {
  const out = new Map<string, LocalFile>();
  const visit = (dir: string, prefix: string) => {
    let ents;
    try {
      ents = readdirSync(dir, { withFileTypes: true });
    } catch (e: any) {
      if (e.code === "ENOENT" && prefix === "") return;
      throw e;
    }
    for (const d of ents) {
      const rel = prefix ? `${prefix}/${d.name}` : d.name;
      if (!prefix && d.name.startsWith(RESERVED) && d.name !== S3_ESCAPED_DIR) continue;
      const abs = join(dir, d.name);
      // An index given a place inside the dir is never an object, nor is its partial copy.
      if (skip && (abs === skip || abs.startsWith(partialPrefix(skip)))) continue;
      if (d.isDirectory()) visit(abs, rel);
      else if (d.isFile()) {
        const st = statSync(abs);
        out.set(rel, { path: rel, abs, size: st.size, mtimeMs: st.mtimeMs });
      } else if (warn) ctx.log.warn(`s3 sync: not a regular file, not uploaded: ${abs}`);
    }
  };
  visit(root, "");
  return out;
}

/** How an index being written is named (lib/files.ts partialFile): DIR/.partial-NAME.PID. */
function partialPrefix(index: string): string {
  return join(dirname(index), `.partial-${basename(index)}.`);
}

function isS3(p: string): boolean {
  return p.startsWith("s3://");
}

/**
 * Syncs a local dir and `s3://bucket[/prefix]`, in the direction given by the argument order,
 * like `s3cmd sync`: only new and changed objects move, `delete` removes extras at the
 * destination, every transfer is checked against its ETag, and dry-run lists what would happen.
 * @example
 * const r = await s3Sync("s3://db_wal", `${dir}/db_wal`, { client: s3, delete: true });
 * manifest.meta.db_wal = { objects: r.objects, bytes: r.bytes };
 * await s3Sync(`${dir}/db_wal`, "s3://db_wal", { client: s3 }); // restore: same keys, bytes and ETags
 */
export async function s3Sync(src: string, dst: string, opts: S3SyncOptions): Promise<S3SyncReport> {
  if (isS3(src) === isS3(dst)) {
    throw new UsageError(`s3 sync ${src} ${dst}: exactly one side must be an s3:// URL`, "sync a local dir to s3://BUCKET[/PREFIX] or back");
  }
  const ctx = opts.ctx ?? useContext();
  const up = !isS3(src);
  const dir = resolve(up ? src : dst);
  const { bucket, prefix } = parseS3Url(up ? dst : src);
  const indexPath = opts.index === false ? null : opts.index ? resolve(opts.index) : join(dir, S3_INDEX_NAME);
  const s = {
    ctx,
    h: opts.client,
    dir,
    bucket,
    prefix,
    indexPath,
    checksum: (opts.compare ?? "checksum") === "checksum",
    rehash: opts.rehash ?? false,
    concurrency: Math.max(1, opts.concurrency ?? 24),
    threshold: opts.multipartThreshold ?? 64 * MiB,
    partSize: Math.max(5 * MiB, opts.partSize ?? 8 * MiB),
    attempts: Math.max(1, opts.attempts ?? 10),
    delete: opts.delete ?? false,
    progress: opts.progress ?? true,
    started: Date.now(),
    made: new Set<string>(),
    label: `${src} → ${dst}`,
  };
  if (!WIRE.has(s.h)) throw new UsageError("s3 sync: client was not made by s3Client()");
  if (up && !existsSync(dir)) throw new UsageError(`s3 sync: source dir ${dir} does not exist`);
  return up ? upload(s, src, dst) : download(s, src, dst);
}

type SyncState = {
  ctx: Context;
  h: S3Handle;
  dir: string;
  bucket: string;
  prefix: string;
  indexPath: string | null;
  checksum: boolean;
  rehash: boolean;
  concurrency: number;
  threshold: number;
  partSize: number;
  attempts: number;
  delete: boolean;
  progress: boolean;
  started: number;
  /** "SRC → DST" for messages. */
  label: string;
  /** Dirs made under the destination so far. */
  made: Set<string>;
  /** Whether the gateway answers HEAD ?partNumber=1 with the part's length (Ceph 16 does not); unknown until tried. */
  partHeads?: boolean;
};

async function listRemote(s: SyncState): Promise<Map<string, S3Object>> {
  const out = new Map<string, S3Object>();
  for await (const o of s3List(s.h, s.bucket, s.prefix)) out.set(o.key, o);
  return out;
}

function failAll(s: SyncState, verb: string, errors: unknown[]): never {
  const first = errors[0] as Error;
  const lines = errors.slice(0, 10).map((e) => `  ${(e as Error).message}`);
  if (errors.length > 10) lines.push(`  … and ${errors.length - 10} more`);
  const what = `s3 sync ${s.label}: ${errors.length} object${errors.length === 1 ? "" : "s"} failed to ${verb}:\n${lines.join("\n")}`;
  if (errors.every((e) => e instanceof VerifyError)) throw new VerifyError(what, lines, (first as LifeboatError).hint);
  throw new LifeboatError(what, {
    hint: (first as LifeboatError).hint ?? "run the sync again: objects already done are skipped",
    cause: first,
  });
}

function startProgress(s: SyncState, label: string, total: number): Progress {
  if (!s.progress || s.ctx.dryRun || total === 0) return { add() {}, total() {}, done() {}, fail() {} };
  return s.ctx.log.progress(label, { total });
}

function summary(r: S3SyncReport, withTime = true): string {
  const moved = r.direction === "upload" ? `uploaded ${r.uploaded}` : `downloaded ${r.downloaded}`;
  return `s3 sync ${r.source} → ${r.destination}: ${r.objects} objects, ${formatBytes(r.bytes)}; ${moved} (${formatBytes(r.transferredBytes)}), ` +
    `deleted ${r.deleted}, unchanged ${r.skipped}${r.escaped ? `, ${r.escaped} under escaped names` : ""}` +
    `${r.unverified ? `, ${r.unverified} not verifiable against their ETag` : ""}${withTime ? ` (${formatDuration(r.durationMs)})` : ""}`;
}

// ----- upload

async function upload(s: SyncState, src: string, dst: string): Promise<S3SyncReport> {
  const { ctx } = s;
  const listing = listRemote(s);
  await new Promise((r) => setImmediate(r)); // the first list request is on the wire while the dir is read
  const index = s.indexPath ? readS3Index(s.indexPath) : readS3Index("");
  const local = walkLocal(s.dir, ctx, true, s.indexPath);
  const remote = await listing;

  interface Job { file: LocalFile; key: string; rel: string; entry?: S3IndexEntry; remote?: S3Object }
  const jobs: Job[] = [];
  const keep = new Set<string>();
  const entries: S3IndexEntry[] = [];
  let bytes = 0;
  let escaped = 0;
  for (const file of local.values()) {
    let rel = file.path;
    if (file.path.startsWith(`${S3_ESCAPED_DIR}/`)) {
      const k = s3UnescapePath(file.path);
      if (k === null) {
        ctx.log.warn(`s3 sync: ${file.abs} is not an escaped key name; not uploaded`);
        continue;
      }
      rel = k;
      escaped++;
    }
    const key = s.prefix + rel;
    keep.add(key);
    bytes += file.size;
    const e = index.get(file.path);
    jobs.push({ file, key, rel, entry: e && e.rel === rel ? e : undefined, remote: remote.get(key) });
  }

  // Which files differ from their object: size first, then the ETag (cached in the index, or read).
  const todo: Job[] = [];
  let fromCache = 0;
  const errs = await forEachLimit(jobs, s.concurrency, async (j) => {
    const r = j.remote;
    let same = !!r && r.size === j.file.size;
    if (same && s.checksum) {
      const cached = s.rehash ? undefined : cachedEtag(j.entry, j.file, index.writtenAt ?? 0);
      if (cached !== undefined) {
        same = cached === r!.etag;
        fromCache++;
      } else {
        const m = await localMatches(j.file.abs, j.file.size, r!.etag, [j.entry?.partSize, s.partSize], j.entry?.etag === r!.etag ? j.entry.md5 : undefined);
        same = m.match;
        if (same && j.entry) j.entry = { ...j.entry, etag: r!.etag, partSize: m.partSize ?? j.entry.partSize };
      }
    }
    if (same) entries.push({ ...(j.entry ?? { rel: j.rel, path: j.file.path }), size: j.file.size, etag: r!.etag, mtimeMs: j.file.mtimeMs, rel: j.rel, path: j.file.path });
    else todo.push(j);
  });
  if (errs.length) failAll(s, "compare", errs);
  const extras = s.delete ? [...remote.keys()].filter((k) => !keep.has(k)) : [];

  const report: S3SyncReport = {
    direction: "upload", source: src, destination: dst, objects: jobs.length, bytes,
    uploaded: todo.length, downloaded: 0, deleted: extras.length, skipped: jobs.length - todo.length,
    transferredBytes: todo.reduce((n, j) => n + j.file.size, 0), escaped, unverified: 0, index: s.indexPath, dryRun: ctx.dryRun, durationMs: 0,
  };
  if (ctx.dryRun) {
    for (const j of todo) ctx.log.command(`s3 upload ${j.file.path} → s3://${s.bucket}/${j.key}`, "dry-run");
    for (const k of extras) ctx.log.command(`s3 delete s3://${s.bucket}/${k}`, "dry-run");
    report.durationMs = Date.now() - s.started;
    return report;
  }

  const progress = startProgress(s, `upload → s3://${s.bucket}/${s.prefix}`, report.transferredBytes);
  const limit = limiter(s.concurrency);
  todo.sort((a, b) => b.file.size - a.file.size);
  const upErrs = await forEachLimit(todo, s.concurrency, async (j) => {
    entries.push(await uploadFile(s, j.file, j.key, j.rel, j.entry, limit, progress));
  });
  if (upErrs.length) {
    progress.fail();
    failAll(s, "upload", upErrs);
  }
  if (extras.length) {
    await call(s.h, `delete extras in s3://${s.bucket}/${s.prefix}`, () =>
      deleteKeys(s.h, s.bucket, extras.map((Key) => ({ Key })), s.attempts));
  }
  // Nothing changed and the index knew it all: it stays as it is.
  const unchanged = todo.length === 0 && extras.length === 0 && fromCache === jobs.length && index.size === jobs.length;
  if (s.indexPath && !unchanged) {
    // The source may be read-only: the index only saves work next time.
    try {
      writeIndex(s.indexPath, indexHeader(s, entries), entries);
    } catch (e) {
      ctx.log.warn(`s3 sync: could not write the index ${s.indexPath} (${(e as Error).message}); the next sync reads every file again`);
    }
  }
  return finish(s, report, progress);
}

function finish(s: SyncState, report: S3SyncReport, progress: Progress): S3SyncReport {
  report.durationMs = Date.now() - s.started;
  if (s.progress && report.transferredBytes > 0) progress.done(summary(report, false)); // the spinner adds the time
  else s.ctx.log.info(summary(report));
  return report;
}

function indexHeader(s: SyncState, entries: S3IndexEntry[]): IndexHeader {
  return {
    format: INDEX_FORMAT,
    endpoint: s.h.endpoint,
    bucket: s.bucket,
    prefix: s.prefix,
    writtenAt: new Date().toISOString(),
    objects: entries.length,
    bytes: entries.reduce((n, e) => n + e.size, 0),
  };
}

/** The object's headers as the index recorded them. */
function headersOf(e: S3IndexEntry | undefined) {
  return {
    ContentType: e?.contentType,
    CacheControl: e?.cacheControl,
    ContentDisposition: e?.contentDisposition,
    ContentEncoding: e?.contentEncoding,
    ContentLanguage: e?.contentLanguage,
    Metadata: e?.metadata,
  };
}

async function uploadFile(
  s: SyncState, file: LocalFile, key: string, rel: string, entry: S3IndexEntry | undefined,
  limit: ReturnType<typeof limiter>, progress: Progress,
): Promise<S3IndexEntry> {
  const recorded = entry && entry.size === file.size ? entry : undefined;
  const scheme = recorded ? schemeOf(recorded.etag) : undefined;
  const multipart = scheme ? scheme.kind === "multipart" : file.size >= s.threshold;
  let partSize = recorded?.partSize ?? s.partSize;
  if (!recorded?.partSize) while (Math.ceil(file.size / partSize) > 10000) partSize *= 2;
  const target = `upload ${file.path} → s3://${s.bucket}/${key}`;
  const headers = headersOf(entry);
  let etag: string;
  if (!multipart) {
    etag = await transfer(s, target, () => limit(async () => {
      const tap = new Hasher({ whole: true });
      const body = new FileSource(file.abs, 0, file.size, tap, (n) => progress.add(n));
      try {
        const out = await wire(s.h, { method: "PUT", bucket: s.bucket, key, body, length: file.size, headers: putHeaders(entry) });
        out.body.resume();
        const got = stripEtag(out.headers.etag);
        checkSent(tap, file, got, tap.md5(), target);
        return got;
      } catch (e) {
        progress.add(-tap.bytes);
        body.destroy();
        throw e;
      }
    }));
  } else {
    etag = await uploadMultipart(s, file, key, partSize, headers, target, limit, progress);
  }
  return { ...(entry ?? {}), rel, path: file.path, size: file.size, etag, partSize: multipart ? partSize : undefined, mtimeMs: file.mtimeMs };
}

function checkSent(tap: Hasher, file: LocalFile, etag: string, local: string, target: string): void {
  if (tap.bytes !== file.size) {
    throw new LifeboatError(`s3 ${target}: the file changed while it was read (${tap.bytes} bytes, expected ${file.size})`, {
      hint: "stop whatever writes to it, or sync a snapshot",
    });
  }
  if (schemeOf(etag).kind !== "opaque" && etag.toLowerCase() !== local) {
    throw new ChecksumMismatch(`the gateway's ETag ${etag} does not match the sent bytes (${local})`);
  }
}

async function uploadMultipart(
  s: SyncState, file: LocalFile, key: string, partSize: number, headers: ReturnType<typeof headersOf>, target: string,
  limit: ReturnType<typeof limiter>, progress: Progress,
): Promise<string> {
  const { AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CreateMultipartUploadCommand, HeadObjectCommand } = await sdkLib();
  const once = await onceOf(s.h);
  const created = await transfer(s, target, () =>
    once.send(new CreateMultipartUploadCommand({ Bucket: s.bucket, Key: key, ...headers })));
  const uploadId = created.UploadId!;
  const n = Math.max(1, Math.ceil(file.size / partSize));
  try {
    const digests: Buffer[] = new Array(n);
    const parts = await Promise.all(Array.from({ length: n }, (_, i) => transfer(s, `${target} part ${i + 1}/${n}`, () => limit(async () => {
      const start = i * partSize;
      const len = Math.min(partSize, file.size - start);
      const tap = new Hasher({ whole: true });
      const body = new FileSource(file.abs, start, len, tap, (b) => progress.add(b));
      try {
        const out = await wire(s.h, {
          method: "PUT", bucket: s.bucket, key, body, length: len, query: { partNumber: String(i + 1), uploadId },
        });
        out.body.resume();
        const md5 = tap.md5();
        if (tap.bytes !== len) checkSent(tap, { ...file, size: len }, "", "", `${target} part ${i + 1}`);
        const got = stripEtag(out.headers.etag);
        if (got.toLowerCase() !== md5) throw new ChecksumMismatch(`part ${i + 1}: ETag ${got} does not match the sent bytes (${md5})`);
        digests[i] = Buffer.from(md5, "hex");
        return { ETag: out.headers.etag, PartNumber: i + 1 };
      } catch (e) {
        progress.add(-tap.bytes);
        body.destroy();
        throw e;
      }
    }))));
    const expected = `${createHash("md5").update(Buffer.concat(digests)).digest("hex")}-${n}`;
    let tries = 0;
    const done = await transfer(s, `${target} complete`, async () => {
      try {
        tries++;
        const out = await once.send(new CompleteMultipartUploadCommand({ Bucket: s.bucket, Key: key, UploadId: uploadId, MultipartUpload: { Parts: parts } }));
        // Ceph 16 answers <ETag></ETag>: ask for it.
        if (out.ETag) return stripEtag(out.ETag);
        return stripEtag((await once.send(new HeadObjectCommand({ Bucket: s.bucket, Key: key }))).ETag);
      } catch (e: any) {
        // A retried complete whose first try went through: the object is there.
        if (tries > 1 && e?.name === "NoSuchUpload") {
          return stripEtag((await once.send(new HeadObjectCommand({ Bucket: s.bucket, Key: key }))).ETag);
        }
        throw e;
      }
    });
    if (done !== expected) {
      throw new VerifyError(`s3 ${target}: multipart ETag ${done} does not match the sent parts (${expected})`, [], "run the sync again");
    }
    return done;
  } catch (e) {
    await once.send(new AbortMultipartUploadCommand({ Bucket: s.bucket, Key: key, UploadId: uploadId })).catch(() => {});
    throw e;
  }
}

// ----- download

/** Decides each key's local path: itself when safe and free, else its escaped name. */
function mapKeys(s: SyncState, remote: Map<string, S3Object>, local: Map<string, LocalFile>, deleting: (p: string) => boolean): Map<string, string> {
  const rels = [...remote.keys()].map((k) => k.slice(s.prefix.length));
  const plain = rels.filter(plainPathOk);
  const dirs = new Set<string>();
  for (const r of plain) {
    for (let i = r.indexOf("/"); i >= 0; i = r.indexOf("/", i + 1)) dirs.add(r.slice(0, i));
  }
  // What is on disk where a dir or a file must go (a file not being deleted, a dir, a symlink).
  const kind = new Map<string, "dir" | "other" | "none">();
  const onDisk = (p: string) => {
    let k = kind.get(p);
    if (k === undefined) {
      try {
        const st = lstatSync(join(s.dir, p));
        k = st.isDirectory() ? "dir" : "other";
      } catch {
        k = "none";
      }
      kind.set(p, k);
    }
    return k;
  };
  const out = new Map<string, string>();
  for (const rel of rels) {
    const abs = join(s.dir, rel);
    let ok = plainPathOk(rel) && !dirs.has(rel) && (!s.indexPath || (abs !== s.indexPath && !abs.startsWith(partialPrefix(s.indexPath))));
    if (ok) {
      if (onDisk(rel) === "dir") ok = false;
      for (let i = rel.indexOf("/"); ok && i >= 0; i = rel.indexOf("/", i + 1)) {
        const d = rel.slice(0, i);
        const k = onDisk(d);
        // A file in the way stays unless it is being deleted; a symlink (perhaps to outside) always stays.
        if (k === "other" && !(local.has(d) && deleting(d))) ok = false;
      }
    }
    out.set(s.prefix + rel, ok ? rel : s3EscapedPath(rel));
  }
  return out;
}

async function download(s: SyncState, src: string, dst: string): Promise<S3SyncReport> {
  const { ctx } = s;
  const listing = listRemote(s);
  await new Promise((r) => setImmediate(r)); // the first list request is on the wire while the dir is read
  const local = walkLocal(s.dir, ctx, false, s.indexPath);
  const index = s.indexPath ? readS3Index(s.indexPath) : readS3Index("");
  const remote = await listing;
  const unmapped = new Set(local.keys());
  const mapping = mapKeys(s, remote, local, (p) => s.delete && unmapped.has(p));
  for (const p of mapping.values()) unmapped.delete(p);
  const extras = s.delete ? [...unmapped] : [];

  interface Job { obj: S3Object; rel: string; path: string; file?: LocalFile; entry?: S3IndexEntry }
  const jobs: Job[] = [];
  let bytes = 0;
  let escaped = 0;
  for (const [key, path] of mapping) {
    const obj = remote.get(key)!;
    const rel = key.slice(s.prefix.length);
    if (path !== rel) escaped++;
    bytes += obj.size;
    const e = index.get(path);
    jobs.push({ obj, rel, path, file: local.get(path), entry: e && e.rel === rel ? e : undefined });
  }

  const todo: Job[] = [];
  const entries: S3IndexEntry[] = [];
  const needHead: Job[] = [];
  let fromCache = 0;
  const errs = await forEachLimit(jobs, s.concurrency, async (j) => {
    const f = j.file;
    let same = !!f && f.size === j.obj.size;
    let partSize = j.entry?.etag === j.obj.etag ? j.entry.partSize : undefined;
    if (same && s.checksum) {
      const cached = s.rehash ? undefined : cachedEtag(j.entry, f!, index.writtenAt ?? 0);
      if (cached !== undefined) {
        same = cached === j.obj.etag;
        fromCache++;
      } else {
        const m = await localMatches(f!.abs, f!.size, j.obj.etag, [j.entry?.partSize], j.entry?.etag === j.obj.etag ? j.entry.md5 : undefined);
        same = m.match;
        partSize = m.partSize ?? partSize;
      }
    }
    if (!same) return void todo.push(j);
    const base = j.entry?.etag === j.obj.etag ? j.entry : undefined;
    const e: S3IndexEntry = { ...(base ?? {}), rel: j.rel, path: j.path, size: j.obj.size, etag: j.obj.etag, partSize, mtimeMs: f!.mtimeMs };
    entries.push(e);
    if (!base && s.indexPath) needHead.push({ ...j, entry: e });
  });
  if (errs.length) failAll(s, "compare", errs);

  const report: S3SyncReport = {
    direction: "download", source: src, destination: dst, objects: jobs.length, bytes,
    uploaded: 0, downloaded: todo.length, deleted: extras.length, skipped: jobs.length - todo.length,
    transferredBytes: todo.reduce((n, j) => n + j.obj.size, 0), escaped, unverified: 0, index: s.indexPath, dryRun: ctx.dryRun, durationMs: 0,
  };
  if (ctx.dryRun) {
    for (const k of extras) ctx.log.command(`s3 delete local ${k}`, "dry-run");
    for (const j of todo) ctx.log.command(`s3 download s3://${s.bucket}/${j.obj.key} → ${j.path}`, "dry-run");
    report.durationMs = Date.now() - s.started;
    return report;
  }

  // Deletes first, so that a file in the way of a new directory is gone before it is needed.
  for (const p of extras) {
    unlinkSync(join(s.dir, p));
    pruneDirs(s.dir, p);
  }
  const tmpRoot = join(s.dir, S3_TMP_DIR);
  cleanTmp(tmpRoot);
  const tmpDir = join(tmpRoot, String(process.pid));
  mkdirSync(tmpDir, { recursive: true });
  const progress = startProgress(s, `download s3://${s.bucket}/${s.prefix} →`, report.transferredBytes);
  const limit = limiter(s.concurrency);
  todo.sort((a, b) => b.obj.size - a.obj.size);
  let seq = 0;
  const heads = new Set(needHead);
  const downErrs = await forEachLimit([...todo, ...needHead], s.concurrency, async (j) => {
    if (heads.has(j)) {
      // Unchanged, but the index lacks its headers: ask for them (and the part size).
      const head = await headFor(s, j.obj, j.entry!.partSize, limit);
      Object.assign(j.entry!, head);
      return;
    }
    entries.push(await downloadObject(s, j.obj, j.rel, j.path, j.entry, tmpDir, () => seq++, limit, progress));
  });
  rmSync(tmpDir, { recursive: true, force: true });
  try {
    rmdirSync(tmpRoot);
  } catch { /* another sync's files */ }
  const unchanged = todo.length === 0 && extras.length === 0 && needHead.length === 0 && fromCache === jobs.length && index.size === jobs.length;
  if (s.indexPath && !unchanged) writeIndex(s.indexPath, indexHeader(s, entries), entries);
  if (downErrs.length) {
    progress.fail();
    failAll(s, "download", downErrs);
  }
  report.unverified = entries.filter((e) => e.unverified).length;
  return finish(s, report, progress);
}

/** Removes the per-process temp dirs of syncs that are no longer running. */
function cleanTmp(tmpRoot: string): void {
  let names: string[];
  try {
    names = readdirSync(tmpRoot);
  } catch {
    return;
  }
  for (const n of names) if (!/^\d+$/.test(n) || !pidAlive(Number(n))) rmSync(join(tmpRoot, n), { recursive: true, force: true });
}

/** After a delete, removes the dirs it left empty, up to the root. */
function pruneDirs(root: string, path: string): void {
  for (let d = dirname(path); d !== "." && d !== ""; d = dirname(d)) {
    try {
      rmdirSync(join(root, d));
    } catch {
      return;
    }
  }
}

function headersFrom(out: {
  ContentType?: string; CacheControl?: string; ContentDisposition?: string; ContentEncoding?: string;
  ContentLanguage?: string; Metadata?: Record<string, string>; LastModified?: Date;
}): Partial<S3IndexEntry> {
  const h: Partial<S3IndexEntry> = {};
  if (out.ContentType) h.contentType = out.ContentType;
  if (out.CacheControl) h.cacheControl = out.CacheControl;
  if (out.ContentDisposition) h.contentDisposition = out.ContentDisposition;
  if (out.ContentEncoding) h.contentEncoding = out.ContentEncoding;
  if (out.ContentLanguage) h.contentLanguage = out.ContentLanguage;
  if (out.Metadata && Object.keys(out.Metadata).length) h.metadata = out.Metadata;
  if (out.LastModified) h.lastModified = out.LastModified.toISOString();
  return h;
}

/** HEAD of an object (part 1 of a multipart one, whose length is the part size). */
async function headFor(s: SyncState, obj: S3Object, partSize: number | undefined, limit: ReturnType<typeof limiter>): Promise<Partial<S3IndexEntry>> {
  const askPart = schemeOf(obj.etag).kind === "multipart" && !partSize && s.partHeads !== false;
  const { HeadObjectCommand } = await sdkLib();
  const once = await onceOf(s.h);
  const out = await transfer(s, `head s3://${s.bucket}/${obj.key}`, () => limit(() =>
    once.send(new HeadObjectCommand({ Bucket: s.bucket, Key: obj.key, PartNumber: askPart ? 1 : undefined }))));
  const h = headersFrom(out);
  if (askPart) {
    s.partHeads = !!out.PartsCount;
    if (out.PartsCount && out.ContentLength) h.partSize = Number(out.ContentLength);
  }
  return h;
}

async function downloadObject(
  s: SyncState, obj: S3Object, rel: string, path: string, entry: S3IndexEntry | undefined, tmpDir: string,
  nextSeq: () => number, limit: ReturnType<typeof limiter>, progress: Progress,
): Promise<S3IndexEntry> {
  const target = `download s3://${s.bucket}/${obj.key}`;
  const scheme = schemeOf(obj.etag);
  // The part size: from the index, else from HEAD ?partNumber=1, else guessed among the likely ones.
  let hint = entry?.etag === obj.etag ? entry.partSize : undefined;
  if (scheme.kind === "multipart" && !hint && s.partHeads !== false) hint = (await headFor(s, obj, undefined, limit)).partSize;
  let firstMd5: string | undefined;
  return transfer(s, target, () => limit(async () => {
    const res = await wire(s.h, { method: "GET", bucket: s.bucket, key: obj.key });
    const etag = stripEtag(res.headers.etag);
    const size = Number(res.headers["content-length"] ?? 0);
    const modified = res.headers["last-modified"] ? new Date(res.headers["last-modified"]) : undefined;
    const sch = schemeOf(etag);
    const cands = sch.kind === "multipart" ? partSizeCandidates(size, sch.parts, [hint]) : [];
    const tap = new Hasher({ whole: sch.kind !== "opaque", partSizes: cands });
    const tmp = join(tmpDir, String(nextSeq()));
    try {
      await saveBody(tmp, res.body, tap, (n) => progress.add(n), modified);
      if (tap.bytes !== size) throw Object.assign(new Error(`short body: ${tap.bytes} of ${size} bytes`), { code: "ECONNRESET" });
      let partSize: number | undefined;
      let unverified: Partial<S3IndexEntry> = {};
      if (sch.kind === "md5") {
        const md5 = tap.md5();
        if (md5 !== etag.toLowerCase()) throw new ChecksumMismatch(`received bytes have MD5 ${md5}, ETag is ${etag}`);
      } else if (sch.kind === "multipart") {
        const hit = tap.multipart().find((m) => m.etag === etag.toLowerCase());
        const md5 = tap.md5();
        if (hit) partSize = hit.partSize;
        else if (md5 === firstMd5) {
          // Parts of unusual or unequal sizes: no part size reproduces the ETag. Two reads gave the same bytes: keep them.
          unverified = { unverified: true, md5 };
          s.ctx.log.warn(`s3 ${target}: no likely part size reproduces the multipart ETag ${etag}; the bytes read twice alike ` +
            `(MD5 ${md5}) and are kept unverified; an upload will give this object a different ETag`);
        } else {
          firstMd5 ??= md5;
          throw new ChecksumMismatch(`received bytes match multipart ETag ${etag} for none of the part sizes ${cands.map((c) => formatBytes(c)).join(", ")}`);
        }
      }
      const final = join(s.dir, path);
      const parent = dirname(final);
      if (!s.made.has(parent)) {
        mkdirSync(parent, { recursive: true });
        s.made.add(parent);
      }
      await fsp.rename(tmp, final); // in the thread pool too: it can wait on the journal
      const mtimeMs = modified ? modified.getTime() : statSync(final).mtimeMs;
      return { ...headersFromWire(res.headers), rel, path, size, etag, partSize, ...unverified, mtimeMs } as S3IndexEntry;
    } catch (e) {
      res.body.destroy(); // a body left unread would hold its socket
      progress.add(-tap.bytes);
      rmSync(tmp, { force: true });
      throw e;
    }
  }));
}

