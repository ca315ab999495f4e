// S3: a client for S3-compatible gateways and a verified, streaming sync. The code is in
// lib/s3/, one concern per file (lib/s3/mod.ts lists them); the sync is lib/s3/sync.ts.
export * from "./s3/mod.ts";
