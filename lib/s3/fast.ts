// s3/fast.ts: the lean request path for object bodies (GET, PUT, part uploads, ranges), HEAD
// and listings: the SDK's own SignatureV4 signs, node:http carries, the SDK's XML parser reads
// refusals; no per-command middleware. Its modules are loaded on first use (see `wireDeps`).
import { Buffer } from "node:buffer";
import type { Agent as HttpAgent, IncomingMessage } from "node:http";
import type { Agent as HttpsAgent } from "node:https";
import type { Readable } from "node:stream";
import type { S3Client } from "@aws-sdk/client-s3";
import type { SignatureV4 } from "@smithy/signature-v4";
import type { S3Handle } from "./client.ts";
import { builtinModule } from "../lazy.ts";
import { FileSource, releaseBuffer } from "./etag.ts";

// Not `import … from "node:http"`: see builtinModule.
const http = builtinModule<typeof import("node:http")>("node:http");
const https = builtinModule<typeof import("node:https")>("node:https");

/**
 * The per-object path: GET, PUT and HEAD of objects, uploads in parts (start, parts, completion,
 * abort), listings. It is the SDK's own SignatureV4 over node:http, without the client's
 * per-command middleware stack (endpoint rules, schema serde, checksum and user-agent plugins),
 * which costs about 1 ms of CPU per request, 4 times the request itself: on a small machine
 * shared with the gateway that decides the speed of thousands of small objects. Keys are
 * encoded as the SDK encodes them. Every other call (bucket calls, deletes) goes through the
 * full client.
 */
export interface Wire {
  url: URL;
  pathStyle: boolean;
  httpAgent: HttpAgent;
  httpsAgent: HttpsAgent;
  /** Give up connecting after this many ms. */
  connectTimeoutMs: number;
  /** Give up on a socket silent this many ms (body included). */
  socketTimeoutMs: number;
  /** The signer, made on first use. */
  signer(): Promise<SignatureV4>;
  /** Attempts for calls that should fail fast (S3Options.maxAttempts). */
  maxAttempts: number;
  /** The SDK clients, made on first use. */
  clients(): Promise<{ sdk: S3Client; once: S3Client }>;
}

export const WIRE = new WeakMap<S3Handle, Wire>();

type Deps = {
  SignatureV4: typeof import("@smithy/signature-v4").SignatureV4;
  Sha256: typeof import("@smithy/core/checksum").Sha256;
  HttpRequest: typeof import("@smithy/core/protocols").HttpRequest;
  encode: typeof import("@smithy/core/protocols").extendedEncodeURIComponent;
  queryString: typeof import("@smithy/core/protocols").buildQueryString;
  parseXML: typeof import("@aws-sdk/xml-builder").parseXML;
  XmlNode: typeof import("@aws-sdk/xml-builder").XmlNode;
};
let deps: Deps | undefined;
let loading: Promise<Deps> | undefined;

/**
 * The signer, request type and XML parser, loaded once, on first use: a process that imports
 * lib/ but makes no S3 request never loads them, and the SDK's client module (a tenth of a
 * cold start) is loaded only by calls that need it (client.ts, sdkLib).
 */
export function wireDeps(): Promise<Deps> {
  return (loading ??= Promise.all([
    import("@smithy/signature-v4"),
    import("@smithy/core/checksum"),
    import("@smithy/core/protocols"),
    import("@aws-sdk/xml-builder"),
  ]).then(([sig, ck, proto, xml]) => (deps = {
    SignatureV4: sig.SignatureV4, Sha256: ck.Sha256, HttpRequest: proto.HttpRequest, encode: proto.extendedEncodeURIComponent, queryString: proto.buildQueryString, parseXML: xml.parseXML,
    XmlNode: xml.XmlNode,
  })));
}

/** The XML parser, once wireDeps() has resolved (every response that is parsed came through wire). */
export function parseXml(text: string): any {
  return deps!.parseXML(text);
}

/**
 * A CompleteMultipartUpload request's body: the parts, in order, with their ETags, built by the
 * SDK's XML builder. Once wireDeps() has resolved (the upload's start came through wire).
 */
export function completionXml(parts: { ETag: string | undefined; PartNumber: number }[]): Buffer {
  const { XmlNode } = deps!;
  const doc = new XmlNode("CompleteMultipartUpload").addAttribute("xmlns", "http://s3.amazonaws.com/doc/2006-03-01/");
  for (const p of parts) doc.addChildNode(new XmlNode("Part").addChildNode(XmlNode.of("ETag", p.ETag ?? "")).addChildNode(XmlNode.of("PartNumber", String(p.PartNumber))));
  return Buffer.from(doc.toString(), "utf8");
}

export interface WireResponse {
  status: number;
  /** Lower-case header names. */
  headers: Record<string, string>;
  body: Readable;
}

/** One request on the lean path. */
export interface WireRequest {
  method: "GET" | "PUT" | "HEAD" | "POST" | "DELETE";
  bucket: string;
  /** The object; none for a call on the bucket itself (a listing). */
  key?: string;
  query?: Record<string, string>;
  headers?: Record<string, string | undefined>;
  /** A stream (a file's bytes) or a small document (a multipart completion's part list). */
  body?: Readable | Buffer;
  /** The body's length (a Buffer's is its own). */
  length?: number;
  /** Cancels the request (the sync's interrupt). */
  signal?: AbortSignal;
}

/** Sends one signed request; resolves with a 2xx response (its body unread), rejects with the gateway's error code as the error's name. */
export async function wire(h: S3Handle, op: WireRequest): Promise<WireResponse> {
  const w = WIRE.get(h)!;
  const d = deps ?? (await wireDeps());
  const signer = await w.signer();
  const headers: Record<string, string> = { "x-amz-content-sha256": "UNSIGNED-PAYLOAD" };
  for (const [k, v] of Object.entries(op.headers ?? {})) if (v !== undefined) headers[k] = v;
  headers.host = w.pathStyle ? w.url.host : `${op.bucket}.${w.url.host}`;
  const length = op.length ?? (Buffer.isBuffer(op.body) ? op.body.length : undefined);
  if (length !== undefined) headers["content-length"] = String(length);
  const base = w.url.pathname.replace(/\/$/, "");
  const keyPath = op.key === undefined ? undefined : op.key.split("/").map(d.encode).join("/");
  const path = w.pathStyle ? `${base}/${op.bucket}${keyPath === undefined ? "" : `/${keyPath}`}` : `${base}/${keyPath ?? ""}`;
  const hostname = w.pathStyle ? w.url.hostname : `${op.bucket}.${w.url.hostname}`;
  const req = new d.HttpRequest({
    protocol: w.url.protocol,
    hostname,
    port: w.url.port ? Number(w.url.port) : undefined,
    method: op.method,
    path,
    query: op.query,
    headers,
  });
  const signed = await signer.sign(req);
  const query = op.query ? d.queryString(op.query) : "";
  const response = await send(w, hostname, op.method, `${path}${query ? `?${query}` : ""}`, signed.headers, op.body, op.signal);
  const status = response.statusCode ?? 0;
  const hd = response.headers as Record<string, string>;
  if (status >= 200 && status < 300) return { status, headers: hd, body: response };
  let data: any;
  try {
    // A HEAD's answer has no body, but unread it would hold the socket.
    const text = op.method === "HEAD" ? (response.resume(), "") : await readSmall(response, 1 << 20);
    data = text ? d.parseXML(text) : undefined;
  } catch {
    data = undefined;
  }
  throw gatewayError(status, data, hd);
}

/** The gateway's refusal as an error named by its code, shaped as the SDK's are (errors.ts classifies both alike). */
function gatewayError(status: number, data: any, hd: Record<string, string>): Error {
  const code = data?.Error?.Code ?? data?.Code ?? (status === 404 ? "NotFound" : `HTTP${status}`);
  return Object.assign(new Error(data?.Error?.Message ?? data?.Message ?? code), {
    name: code,
    $fault: status >= 500 ? "server" : "client",
    $metadata: { httpStatusCode: status, requestId: hd["x-amz-request-id"] },
  });
}

/**
 * A request whose answer is a small XML document (a multipart upload's start or completion),
 * parsed by the SDK's parser. An error document rejects like {@link wire}'s refusals, also under
 * a 200: S3 may answer a completion that fails after it began with 200 and an `<Error>` body.
 * As the SDK does (its throw-200-exceptions rule), such an answer, or an empty one, counts as a
 * 503: a passing failure, tried again.
 * @example const r = await wireXml(h, { method: "POST", bucket, key, query: { uploads: "" } }); r.InitiateMultipartUploadResult.UploadId
 */
export async function wireXml(h: S3Handle, op: WireRequest): Promise<any> {
  const res = await wire(h, op);
  const text = await readSmall(res.body, 1 << 20);
  if (!text.trim()) throw gatewayError(503, { Error: { Code: "InternalError", Message: `the gateway answered ${res.status} with an empty body` } }, res.headers);
  const data = deps!.parseXML(text);
  if (data && typeof data === "object" && Object.hasOwn(data, "Error")) throw gatewayError(503, data, res.headers);
  return data;
}

/** A timeout, named as the SDK names it (errors.ts classifies it as transient and as an outage). */
function timeoutError(msg: string): Error {
  return Object.assign(new Error(msg), { name: "TimeoutError", code: "ETIMEDOUT" });
}

/**
 * One HTTP request on the handle's kept-alive sockets: connect within connectTimeoutMs, and no
 * socket silent for socketTimeoutMs while the request or its response body is under way.
 */
function send(
  w: Wire, hostname: string, method: string, path: string, headers: Record<string, string>, body: Readable | Buffer | undefined, signal: AbortSignal | undefined,
): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const tls = w.url.protocol === "https:";
    const req = (tls ? https : http).request({
      protocol: w.url.protocol,
      hostname,
      port: w.url.port || undefined,
      method,
      path,
      headers,
      agent: tls ? w.httpsAgent : w.httpAgent,
      signal,
    });
    let connectTimer: ReturnType<typeof setTimeout> | undefined;
    const fail = (e: Error) => {
      if (connectTimer) clearTimeout(connectTimer);
      req.destroy(e);
      if (body && !Buffer.isBuffer(body)) body.destroy();
      reject(e);
    };
    req.once("socket", (sock) => {
      releaseReads(sock);
      if (sock.connecting) {
        connectTimer = setTimeout(() => fail(timeoutError(`connection not made in ${w.connectTimeoutMs} ms`)), w.connectTimeoutMs);
        sock.once("connect", () => clearTimeout(connectTimer));
      }
    });
    // Covers the request and then the response: the socket is the same (a body read later keeps it).
    req.setTimeout(w.socketTimeoutMs, () => fail(timeoutError(`socket silent for ${w.socketTimeoutMs} ms`)));
    req.once("error", (e) => fail(e));
    req.once("response", (res) => {
      if (connectTimer) clearTimeout(connectTimer);
      res.once("end", () => req.setTimeout(0));
      res.once("error", () => req.destroy());
      resolve(res);
    });
    if (body instanceof FileSource) body.sendTo(req).catch(fail); // its buffers are used again: no garbage per chunk
    else if (Buffer.isBuffer(body)) req.end(body);
    else if (body) {
      body.once("error", (e) => fail(e));
      body.pipe(req);
    } else req.end();
  });
}

const RELEASING = new WeakSet<object>();

/**
 * Frees each read of a socket once node:http has parsed it (the parser copies the body pieces out
 * of it, so nothing else holds it): a download's socket reads are otherwise garbage that V8 frees
 * late. After the current 'data' dispatch (a microtask), so whatever order the listeners run in
 * (node:http adds its own again for each request on a kept-alive socket). Once per socket.
 */
function releaseReads(sock: { on(e: "data", f: (d: Buffer) => void): unknown }): void {
  if (RELEASING.has(sock)) return;
  RELEASING.add(sock);
  sock.on("data", (d: Buffer) => queueMicrotask(() => releaseBuffer(d)));
}

/** The body as text, at most max bytes (an error document). */
async function readSmall(body: Readable, max: number): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of body as AsyncIterable<Buffer>) {
    if (n < max) chunks.push(c);
    n += c.length;
  }
  return Buffer.concat(chunks).toString("utf8");
}
