// s3/list.ts: s3List, every object under a prefix (ListObjectsV2 on the lean path, 1000 a
// page), and the small readers of what a listing gives (URL-encoded keys, quoted ETags).
import { Buffer } from "node:buffer";
import { useContext } from "../context.ts";
import type { S3BucketOptions } from "./buckets.ts";
import type { S3Handle } from "./client.ts";
import { call, patiently } from "./errors.ts";
import { parseXml, wire, WIRE } from "./fast.ts";

/** One object of a listing. */
export interface S3Object {
  key: string;
  size: number;
  /** ETag without quotes: an MD5 in hex, or "MD5-N" for a multipart upload of N parts. */
  etag: string;
  lastModified: Date;
}

/** Keys come URL-encoded (encoding-type=url), so that keys with control characters survive the XML. */
export function decodeKey(k: string): string {
  return decodeURIComponent(k.replace(/\+/g, " "));
}

/** An ETag without W/ and quotes. */
export function stripEtag(e: string | undefined): string {
  return (e ?? "").replace(/^W\//, "").replace(/^"|"$/g, "");
}

/**
 * Lists every object under a prefix (all of them when prefix is empty), 1000 per request,
 * following continuation tokens. When the context's signal aborts (SIGINT/SIGTERM), the
 * request in flight is cancelled and the interrupt is thrown (`opts.ctx`: default the current context).
 * @example for await (const o of s3List(s3, "registry", "docker/")) console.log(o.key, o.size);
 */
export async function* s3List(client: S3Handle, bucket: string, prefix = "", opts: S3BucketOptions = {}): AsyncGenerator<S3Object> {
  const { signal } = opts.ctx ?? useContext();
  const w = WIRE.get(client)!;
  // ListObjectsV2 on the lean path. The first page fails fast (a wrong endpoint or key); later
  // pages ride out a gateway restart.
  const fetchPage = (token: string | undefined): Promise<string> => {
    const query: Record<string, string> = { "list-type": "2", "encoding-type": "url", "max-keys": "1000" };
    if (prefix) query.prefix = prefix;
    if (token) query["continuation-token"] = token;
    return call(client, `list s3://${bucket}/${prefix}`, () =>
      patiently(token ? 10 : w.maxAttempts, async () => readText((await wire(client, { method: "GET", bucket, query, signal })).body), signal));
  };
  let next: Promise<string> | undefined = fetchPage(undefined);
  while (next) {
    if (signal.aborted) throw signal.reason;
    const text: string = await next;
    // The next page is asked for before this one is parsed (the gateway lists while we parse):
    // its token is read off the end of the text, and checked against the parsed one below.
    const early = tokenAtEnd(text);
    next = early === undefined ? undefined : fetchPage(early);
    next?.catch(() => {}); // awaited below, or dropped when the caller stops early
    const page: ListPage = parseXml(text)?.ListBucketResult ?? {};
    const token = page.IsTruncated === "true" ? page.NextContinuationToken : undefined;
    if (token !== early) next = token ? fetchPage(token) : undefined;
    for (const o of asArray(page.Contents)) {
      yield { key: decodeKey(o.Key ?? ""), size: Number(o.Size ?? 0), etag: stripEtag(o.ETag), lastModified: new Date(o.LastModified ?? 0) };
    }
  }
}

/** The continuation token of a truncated page, found without parsing it (undefined when absent or escaped). */
function tokenAtEnd(text: string): string | undefined {
  if (!text.includes("<IsTruncated>true</IsTruncated>")) return undefined;
  const open = "<NextContinuationToken>";
  const i = text.lastIndexOf(open);
  const j = text.indexOf("</NextContinuationToken>", i);
  if (i < 0 || j < 0) return undefined;
  const t = text.slice(i + open.length, j);
  return t && !t.includes("&") && !t.includes("<") ? t : undefined;
}

/** A listing's body as text (a page is at most 1000 entries). */
async function readText(body: AsyncIterable<Buffer>): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c);
  return Buffer.concat(chunks).toString("utf8");
}

/** A ListObjectsV2 result as the SDK's XML parser (@aws-sdk/xml-builder) gives it: strings, and one element or an array. */
interface ListPage {
  Contents?: { Key?: string; Size?: string; ETag?: string; LastModified?: string } | { Key?: string; Size?: string; ETag?: string; LastModified?: string }[];
  IsTruncated?: string;
  NextContinuationToken?: string;
}

function asArray<T>(v: T | T[] | undefined): T[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

