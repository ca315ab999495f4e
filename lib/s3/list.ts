// s3/list.ts: s3List, every object under a prefix (ListObjectsV2 on the lean path, 1000 a
// page), and the small readers of what a listing gives (URL-encoded keys, quoted ETags).
import { parseXmlBody } from "@aws-sdk/core/protocols";
import { useContext } from "../context.ts";
import type { S3BucketOptions } from "./buckets.ts";
import type { S3Handle } from "./client.ts";
import { call, patiently } from "./errors.ts";
import { wire, WIRE, XML_CONTEXT } from "./fast.ts";

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
  let token: string | undefined;
  let first = true;
  const w = WIRE.get(client)!;
  do {
    if (signal.aborted) throw signal.reason;
    const query: Record<string, string> = { "list-type": "2", "encoding-type": "url", "max-keys": "1000" };
    if (prefix) query.prefix = prefix;
    if (token) query["continuation-token"] = token;
    // ListObjectsV2 on the lean path, its XML read by the SDK's parser: a third of the SDK
    // client's time for a cold process. The first page fails fast (a wrong endpoint or key);
    // later pages ride out a gateway restart.
    const page: ListPage = await call(client, `list s3://${bucket}/${prefix}`, () =>
      patiently(first ? w.maxAttempts : 10, async () => {
        const res = await wire(client, { method: "GET", bucket, query, signal });
        return (await parseXmlBody(res.body, XML_CONTEXT)) ?? {};
      }, signal));
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

