// s3/fast.ts: the lean request path for object bodies (GET, PUT, part uploads) and listings.
// It is the SDK's own SignatureV4 and NodeHttpHandler, and the SDK's XML error parser for
// refusals, without the client's per-command middleware; see `Wire` for why.
import type { Readable } from "node:stream";
import type { S3Client } from "@aws-sdk/client-s3";
import { loadRestXmlErrorCode, parseXmlErrorBody } from "@aws-sdk/core/protocols";
import { extendedEncodeURIComponent, HttpRequest } from "@smithy/core/protocols";
import { type NodeHttpHandler, streamCollector } from "@smithy/node-http-handler";
import type { SignatureV4 } from "@smithy/signature-v4";
import type { S3Handle } from "./client.ts";

/**
 * The per-object path: GET and PUT of object bodies, and part uploads. It is the SDK's own
 * SignatureV4 and NodeHttpHandler, and the SDK's XML error parser for refusals, without the
 * per-command middleware stack (endpoint rules, schema serde, checksum and user-agent
 * plugins), which costs about 1 ms of CPU per request, 4 times the request itself: on a small
 * machine shared with the gateway that decides the speed of thousands of small objects.
 * Keys are encoded as the SDK encodes them. Every other call goes through the full client.
 */
export interface Wire {
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
export const XML_CONTEXT = { streamCollector } as any;
export const WIRE = new WeakMap<S3Handle, Wire>();

export interface WireResponse {
  status: number;
  /** Lower-case header names. */
  headers: Record<string, string>;
  body: Readable;
}

export async function wire(h: S3Handle, op: {
  method: "GET" | "PUT";
  bucket: string;
  /** The object; none for a call on the bucket itself (a listing). */
  key?: string;
  query?: Record<string, string>;
  headers?: Record<string, string | undefined>;
  body?: Readable;
  length?: number;
  /** Cancels the request (the sync's interrupt). */
  signal?: AbortSignal;
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
  const { response } = await w.handler.handle(signed as HttpRequest, { abortSignal: op.signal as any });
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
