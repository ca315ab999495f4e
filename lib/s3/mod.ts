// s3/: S3-compatible gateways (Ceph RADOS Gateway, MinIO, AWS): a client, bucket calls,
// listings and a verified, streaming sync, one concern per file:
//
//   client.ts   s3Client: the SDK's client and the lean request path on one set of sockets
//   fast.ts     the lean request path (signed GET/PUT without the SDK's middleware)
//   errors.ts   S3Error, which failures may pass, and retries (lib/retry.ts)
//   buckets.ts  s3BucketExists, s3MakeBucket, s3RemoveBucket, deleting keys
//   list.ts     s3List
//   keys.ts     reserved names, s3:// URLs, escaping keys that cannot be local paths
//   etag.ts     ETag arithmetic, hashing readers and writers
//   index.ts    the index a sync keeps beside the objects
//   sync.ts     s3Sync, its options and report; upload.ts and download.ts do each direction,
//   run.ts      with what they share
//
// The AWS SDK v3 does the protocol. Bucket calls and deletes go through its client; object
// bodies, listings and uploads in parts go through the lean path (fast.ts: the SDK's signer and
// XML parser over node:http). A streamed body
// cannot be replayed by the SDK, so each transfer runs in lib/retry.ts's loop with the SDK's
// error classification, reopening the file (or restarting the download) on each attempt: a
// gateway restart is ridden out. Concurrency is lib/limit.ts's.
export { s3Client, type S3Handle, type S3Options } from "./client.ts";
export { S3Error } from "./errors.ts";
export { s3BucketExists, s3MakeBucket, s3RemoveBucket, type S3BucketOptions, type S3RemoveBucketOptions } from "./buckets.ts";
export { s3List, type S3Object } from "./list.ts";
export { parseS3Url, s3EscapedPath, s3UnescapePath, S3_ESCAPED_DIR, S3_INDEX_NAME, S3_TMP_DIR } from "./keys.ts";
export { readS3Index, type S3IndexEntry } from "./index.ts";
export { s3Sync, type S3SyncOptions, type S3SyncReport } from "./sync.ts";
