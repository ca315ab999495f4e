// s3/buckets.ts: bucket calls through the SDK's client: exists, make (`s3cmd mb`), remove
// (`s3cmd rb`, with purge), and deleting keys in batches of 1000.
import type { ObjectIdentifier } from "@aws-sdk/client-s3";
import { useContext, type Context } from "../context.ts";
import { onceOf, sdkLib, type S3Handle } from "./client.ts";
import { call, patiently, S3Error, s3Error } from "./errors.ts";
import { decodeKey, s3List } from "./list.ts";

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

/** Deletes keys (versions), 1000 per DeleteObjects request; returns how many. */
export async function deleteKeys(client: S3Handle, bucket: string, ids: ObjectIdentifier[], attempts = 3, signal?: AbortSignal): Promise<number> {
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
    }), { abortSignal: signal as any }), signal));
    if (out.Errors?.length) {
      const first = out.Errors[0];
      throw new S3Error(`s3 ${client.endpoint}: delete from ${bucket}: ${out.Errors.length} objects not deleted, first ${first.Key}: ${first.Code} ${first.Message ?? ""}`,
        first.Code ?? "DeleteError", undefined, undefined, undefined);
    }
    n += batch.length;
  }
  for (const o of odd) {
    await call(client, `delete s3://${bucket}/${o.Key}`, () =>
      patiently(attempts, () => once.send(new DeleteObjectCommand({ Bucket: bucket, ...o }), { abortSignal: signal as any }), signal));
    n++;
  }
  return n;
}

