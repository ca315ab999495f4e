// Behaviour of lib/s3/ (s3Client, buckets, s3List, s3Sync) against the lab's real Ceph RADOS Gateway (test/lab/ceph.sh up).
// Every test uses its own bucket, named lbt-PID-N, removed at the end.
// Run: node --import=tsx test/s3.test.ts
// needs: ceph
//   LIFEBOAT_S3_RESTART=0 skips the test that restarts the lab's Ceph (ceph.sh down/up);
//   LIFEBOAT_S3_ONLY=words runs only the tests whose names contain them.
import { test as uvuTest } from "uvu";
import * as assert from "uvu/assert";
import { spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, statSync, writeFileSync } from "node:fs";
import http from "node:http";
import { join, resolve } from "node:path";
import process from "node:process";
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { createContext } from "../lib/context.ts";
import { InterruptedError, LifeboatError, VerifyError } from "../lib/errors.ts";
import {
  readS3Index,
  s3BucketExists,
  s3Client,
  s3EscapedPath,
  s3List,
  s3MakeBucket,
  s3RemoveBucket,
  s3Sync,
  s3UnescapePath,
  S3_ESCAPED_DIR,
  S3_INDEX_NAME,
  S3_TMP_DIR,
  type S3Handle,
  type S3Object,
} from "../lib/s3.ts";
import { releaseBuffer } from "../lib/s3/etag.ts";
import { WIRE, wire } from "../lib/s3/fast.ts";
import { cleanupTmp, testContext, tmp } from "./helpers.ts";
import { LAB_DIR, needLab } from "../tasks/drills/lab.ts";

const only = process.env.LIFEBOAT_S3_ONLY;
const test = Object.assign((name: string, fn: () => void | Promise<void>) => void ((!only || name.includes(only)) && uvuTest(name, fn)), uvuTest);
const lab = needLab("ceph");
const creds = { endpoint: lab.LAB_S3_ENDPOINT, accessKey: lab.LAB_S3_ACCESS_KEY, secretKey: lab.LAB_S3_SECRET_KEY, region: lab.LAB_S3_REGION };
let { logs } = testContext();
const s3 = s3Client(creds);
const sdk = await s3.sdk(); // the SDK's own client, for fixtures made the way other tools make them
const MiB = 1024 * 1024;

let n = 0;
const buckets: string[] = [];
async function bucket(): Promise<string> {
  const b = `lbt-${process.pid}-${++n}`;
  buckets.push(b);
  await s3MakeBucket(s3, b);
  return b;
}

async function listing(b: string, client: S3Handle = s3): Promise<S3Object[]> {
  const out: S3Object[] = [];
  for await (const o of s3List(client, b)) out.push(o);
  return out.sort((x, y) => (x.key < y.key ? -1 : 1));
}

/** key → [size, etag]: what the Deis drill compares. */
async function fingerprint(b: string): Promise<Record<string, [number, string]>> {
  return Object.fromEntries((await listing(b)).map((o) => [o.key, [o.size, o.etag]]));
}

/** Files under dir, relative, "/"-separated, sorted. */
function files(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, p: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const rel = p ? `${p}/${e.name}` : e.name;
      if (e.isDirectory()) walk(join(d, e.name), rel);
      else out.push(rel);
    }
  };
  walk(dir, "");
  return out.sort();
}

async function putMultipart(b: string, key: string, data: Buffer, partSize: number, extra: Record<string, unknown> = {}): Promise<string> {
  const { UploadId } = await sdk.send(new CreateMultipartUploadCommand({ Bucket: b, Key: key, ...extra }));
  const parts = [];
  for (let i = 0, p = 1; i < data.length; i += partSize, p++) {
    const r = await sdk.send(new UploadPartCommand({ Bucket: b, Key: key, UploadId, PartNumber: p, Body: data.subarray(i, i + partSize) }));
    parts.push({ ETag: r.ETag, PartNumber: p });
  }
  await sdk.send(new CompleteMultipartUploadCommand({ Bucket: b, Key: key, UploadId, MultipartUpload: { Parts: parts } }));
  const h = await sdk.send(new HeadObjectCommand({ Bucket: b, Key: key }));
  return h.ETag!.replace(/"/g, "");
}

/** The ETag S3 gives bytes uploaded in parts of partSize: the MD5 of the parts' MD5s, then "-N". */
function multipartEtag(data: Buffer, partSize: number): string {
  const parts: Buffer[] = [];
  for (let at = 0; at < data.length; at += partSize) parts.push(createHash("md5").update(data.subarray(at, at + partSize)).digest());
  return `${createHash("md5").update(Buffer.concat(parts)).digest("hex")}-${parts.length}`;
}

/** A loopback proxy in front of the gateway that can damage or cut GET bodies of chosen keys. */
async function proxy(opts: {
  corrupt?: (path: string) => boolean;
  cutAfter?: number;
  stall?: boolean;
  corruptPut?: (path: string) => boolean;
  /** Requests that get no answer at all (the connection stays open). */
  hang?: (method: string, path: string) => boolean;
  /** Requests (method, raw URL with query) held until release(); a held request goes on as the proxy then is (up or down). */
  hold?: (method: string, url: string) => boolean;
  /**
   * A multipart completion (POST ?uploadId=) goes through, but its answer is lost: the client
   * gets Ceph's "already in progress" 500, as after a gateway restart mid-completion, and so
   * does every later completion of it.
   */
  lostCompletion?: boolean;
  /**
   * The first multipart completion is answered 200 with an `<Error>` body ("error") or with no
   * body ("empty"), without reaching the gateway: S3's way of failing a completion after it has
   * begun answering.
   */
  failedCompletion200?: "error" | "empty";
}) {
  const up = new URL(creds.endpoint);
  let damaged = 0;
  let isDown = false;
  let released = false;
  const held: (() => void)[] = [];
  const seen: string[] = [];
  const completing = new Set<string>();
  const inProgress = (res: http.ServerResponse) => {
    damaged++;
    res.writeHead(500, { "content-type": "application/xml" });
    res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>This multipart completion is already in progress</Message></Error>`);
  };
  const server = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    if (opts.hold?.(req.method!, req.url!) && !released) return void held.push(() => handle(req, res));
    handle(req, res);
  });
  const handle = (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (isDown) return void req.socket.destroy(); // the gateway is gone: the connection drops
    if (opts.hang?.(req.method!, decodeURIComponent(req.url!.split("?")[0]))) {
      damaged++;
      return req.resume();
    }
    if (req.method === "POST" && opts.failedCompletion200 && damaged === 0 && new URL(req.url!, "http://x").searchParams.has("uploadId")) {
      damaged++;
      req.resume();
      res.writeHead(200, { "content-type": "application/xml" });
      return void res.end(opts.failedCompletion200 === "empty" ? "" : `<?xml version="1.0" encoding="UTF-8"?>\n\n<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error>`);
    }
    const uploadId = req.method === "POST" && opts.lostCompletion ? new URL(req.url!, "http://x").searchParams.get("uploadId") : null;
    if (uploadId && completing.has(uploadId)) return void (req.resume(), inProgress(res));
    if (uploadId) {
      completing.add(uploadId);
      const fwd = http.request({ host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
        r.resume();
        r.on("end", () => inProgress(res)); // the gateway completed it; the answer is lost
      });
      fwd.on("error", () => res.destroy());
      return void req.pipe(fwd);
    }
    const fwd = http.request({ host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode!, r.headers);
      const hit = req.method === "GET" && opts.corrupt?.(decodeURIComponent(req.url!.split("?")[0]));
      if (!hit) return void r.pipe(res);
      damaged++;
      let sent = 0;
      r.on("data", (chunk: Buffer) => {
        if (opts.cutAfter !== undefined && sent + chunk.length > opts.cutAfter) {
          res.write(chunk.subarray(0, opts.cutAfter - sent));
          sent = opts.cutAfter;
          if (opts.stall) return r.pause(); // hold the connection open, send nothing more
          return res.destroy();
        }
        if (sent === 0 && opts.cutAfter === undefined) chunk = Buffer.concat([Buffer.from([chunk[0] ^ 0xff]), chunk.subarray(1)]);
        sent += chunk.length;
        res.write(chunk);
      });
      r.on("end", () => res.end());
    });
    fwd.on("error", () => res.destroy());
    if (req.method === "PUT" && opts.corruptPut?.(decodeURIComponent(req.url!.split("?")[0]))) {
      // Flip the first byte of the body on its way to the gateway (which then stores and ETags the damaged bytes).
      damaged++;
      let first = true;
      req.on("data", (chunk: Buffer) => {
        fwd.write(first ? Buffer.concat([Buffer.from([chunk[0] ^ 0xff]), chunk.subarray(1)]) : chunk);
        first = false;
      });
      req.on("end", () => fwd.end());
      return;
    }
    req.pipe(fwd);
  };
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    damaged: () => damaged,
    /** Requests seen so far, as "METHOD URL". */
    seen: () => seen,
    held: () => held.length,
    release: () => {
      released = true;
      for (const go of held.splice(0)) go();
    },
    /** Every request from now on has its connection dropped; up() ends that. */
    down: () => {
      isDown = true;
      server.closeAllConnections();
    },
    up: () => void (isDown = false),
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

const HOSTILE = [
  "plain/file.txt",
  "with space/and 'quotes' \"double\"",
  "$(touch pwned)/`id`;rm -rf x",
  "ünïcødé/日本語/🚀",
  "new\nline",
  "carriage\rreturn",
  "-leading-dash",
  "../escape-up",
  "a/../../escape-deeper",
  "./dot",
  ".",
  "double//slash",
  "/leading-slash",
  "trailing/",
  "x".repeat(300) + "/long-segment",
  "a",
  "a/b",
  ".lifeboat-s3-index.jsonl",
  "%2F-percent",
  "tab\tand\u0001control",
];

test("releaseBuffer frees a download piece that owns its memory, and leaves pool slices, views and small buffers whole", () => {
  const whole = Buffer.allocUnsafeSlow(64 << 10).fill(7);
  releaseBuffer(whole);
  if (process.versions.deno) assert.is(whole.length, 64 << 10); // not on Deno (its node:http differs)
  else assert.is(whole.length, 0, "the 64 KiB piece was not freed");
  const pooled = Buffer.allocUnsafe(100).fill(1); // a slice of Buffer's shared pool
  const neighbour = Buffer.allocUnsafe(100).fill(2);
  releaseBuffer(pooled);
  assert.is(pooled.length, 100);
  assert.ok(neighbour.every((b) => b === 2));
  const big = Buffer.alloc(128 << 10, 3);
  const view = big.subarray(0, 64 << 10); // shares big's memory: not its own
  releaseBuffer(view);
  assert.is(big.length, 128 << 10);
  assert.ok(big.every((b) => b === 3));
  const small = Buffer.allocUnsafeSlow(4096).fill(4);
  releaseBuffer(small);
  assert.is(small.length, 4096);
});

test("s3Client ignores stray AWS_* variables and config files", async () => {
  const dir = tmp();
  writeFileSync(join(dir, "config"), "[default]\nregion = eu-west-9\nendpoint_url = http://127.0.0.1:9\ns3 =\n  addressing_style = virtual\n");
  writeFileSync(join(dir, "credentials"), "[default]\naws_access_key_id = AKIASTRAY\naws_secret_access_key = stray\n");
  const stray: Record<string, string> = {
    AWS_ACCESS_KEY_ID: "AKIASTRAY", AWS_SECRET_ACCESS_KEY: "stray", AWS_SESSION_TOKEN: "stray", AWS_PROFILE: "default",
    AWS_REGION: "eu-west-9", AWS_DEFAULT_REGION: "eu-west-9", AWS_ENDPOINT_URL: "http://127.0.0.1:9", AWS_ENDPOINT_URL_S3: "http://127.0.0.1:9",
    AWS_CONFIG_FILE: join(dir, "config"), AWS_SHARED_CREDENTIALS_FILE: join(dir, "credentials"), AWS_CA_BUNDLE: "/nonexistent.pem",
    AWS_USE_DUALSTACK_ENDPOINT: "true", AWS_USE_FIPS_ENDPOINT: "true", AWS_RETRY_MODE: "adaptive", AWS_MAX_ATTEMPTS: "1",
    AWS_REQUEST_CHECKSUM_CALCULATION: "WHEN_SUPPORTED", AWS_DEFAULTS_MODE: "mobile", AWS_S3_DISABLE_MULTIREGION_ACCESS_POINTS: "false",
  };
  const saved = Object.fromEntries(Object.keys(stray).map((k) => [k, process.env[k]]));
  Object.assign(process.env, stray);
  const c = s3Client(creds);
  try {
    const b = `lbt-${process.pid}-env`;
    buckets.push(b);
    await s3MakeBucket(c, b);
    const src = tmp();
    writeFileSync(join(src, "f"), "hello");
    await s3Sync(src, `s3://${b}`, { client: c });
    assert.equal((await listing(b, c)).map((o) => o.key), ["f"]);
  } finally {
    c.destroy();
    for (const [k, v] of Object.entries(saved)) v === undefined ? delete process.env[k] : (process.env[k] = v);
  }
});

test("make, exists, list beyond 1000 keys, and remove with purge", async () => {
  const b = await bucket();
  assert.ok(await s3BucketExists(s3, b));
  assert.is(await s3MakeBucket(s3, b), false, "an existing bucket of ours is fine");
  const keys = Array.from({ length: 1203 }, (_, i) => `k/${String(i).padStart(5, "0")}`);
  const queue = [...keys];
  await Promise.all(Array.from({ length: 24 }, async () => {
    for (let k; (k = queue.shift()); ) await sdk.send(new PutObjectCommand({ Bucket: b, Key: k, Body: k }));
  }));
  const listed = await listing(b);
  assert.is(listed.length, 1203);
  assert.equal(listed.map((o) => o.key), keys);
  assert.is(listed[7].etag, createHash("md5").update(keys[7]).digest("hex"));
  let underPrefix = 0;
  for await (const _ of s3List(s3, b, "k/0000")) underPrefix++;
  assert.is(underPrefix, 10);
  assert.is(await s3RemoveBucket(s3, b, { purge: true }), 1203);
  assert.not.ok(await s3BucketExists(s3, b));
});

test("a bucket named like the runbook's db_wal (an underscore) syncs both ways", async () => {
  const b = `lbt_${process.pid}_wal`;
  buckets.push(b);
  assert.ok(await s3MakeBucket(s3, b));
  const src = tmp();
  writeFileSync(join(src, "000000010000000000000001"), randomBytes(1000));
  assert.is((await s3Sync(src, `s3://${b}`, { client: s3 })).uploaded, 1);
  assert.is((await s3Sync(`s3://${b}`, tmp(), { client: s3 })).downloaded, 1);
});

test("a download writes its files 0600 and makes its folders 0700, the destination too, whatever the umask", async () => {
  const b = await bucket();
  const src = tmp();
  mkdirSync(join(src, "a/b"), { recursive: true });
  writeFileSync(join(src, "a/b/wal"), randomBytes(1000));
  writeFileSync(join(src, "top"), randomBytes(10));
  await s3Sync(src, `s3://${b}`, { client: s3 });
  const old = process.umask(0o022);
  try {
    const root = tmp();
    const dst = join(root, "backups/.staging/buckets", b);
    assert.is((await s3Sync(`s3://${b}`, dst, { client: s3 })).downloaded, 2);
    for (const d of ["backups", "backups/.staging", "backups/.staging/buckets", `backups/.staging/buckets/${b}`, `backups/.staging/buckets/${b}/a`, `backups/.staging/buckets/${b}/a/b`]) {
      assert.is(statSync(join(root, d)).mode & 0o777, 0o700, d);
    }
    for (const f of ["a/b/wal", "top"]) assert.is(statSync(join(dst, f)).mode & 0o777, 0o600, f);
  } finally {
    process.umask(old);
  }
});

test("dry-run prints mb, uploads, deletes and rb and changes nothing", async () => {
  const b = await bucket();
  const src = tmp();
  writeFileSync(join(src, "new"), "new");
  await sdk.send(new PutObjectCommand({ Bucket: b, Key: "extra", Body: "x" }));
  const { ctx, logs: dryLogs } = testContext({ argv: ["--dry-run"] });
  const name = `lbt-${process.pid}-never`;
  assert.is(await s3MakeBucket(s3, name, { ctx }), false);
  const r = await s3Sync(src, `s3://${b}`, { client: s3, delete: true, ctx });
  assert.ok(r.dryRun);
  assert.is(r.uploaded, 1);
  assert.is(r.deleted, 1);
  const down = tmp();
  const d = await s3Sync(`s3://${b}`, down, { client: s3, ctx });
  assert.is(d.downloaded, 1);
  await s3RemoveBucket(s3, b, { purge: true, ctx });
  ({ logs } = testContext()); // back to a normal context
  const text = dryLogs();
  assert.match(text, `[dry-run] s3 mb s3://${name}`);
  assert.match(text, `[dry-run] s3 upload new → s3://${b}/new`);
  assert.match(text, `[dry-run] s3 delete s3://${b}/extra`);
  assert.match(text, `[dry-run] s3 download s3://${b}/extra → extra`);
  assert.match(text, `[dry-run] s3 rb --purge (1 objects) s3://${b}`);
  assert.not.ok(await s3BucketExists(s3, name));
  assert.equal((await listing(b)).map((o) => o.key), ["extra"]);
  assert.equal(readdirSync(down), []);
});

test("a dry-run upload from a dir an earlier step would make prints the sync; a real one refuses the missing dir", async () => {
  const missing = join(tmp(), "unpacked-later");
  const { ctx, logs: dryLogs } = testContext({ argv: ["--dry-run"] });
  const r = await s3Sync(missing, "s3://db_wal", { client: s3, ctx });
  ({ logs } = testContext());
  assert.ok(r.dryRun);
  assert.match(dryLogs(), `[dry-run] s3 sync ${missing} s3://db_wal`);
  try {
    await s3Sync(missing, "s3://db_wal", { client: s3 });
    assert.unreachable("a real sync from a missing dir is refused");
  } catch (e) {
    assert.match((e as Error).message, /source dir .* does not exist/);
  }
});

test("download then upload reproduces keys, bytes, multipart ETags, content types and metadata", async () => {
  const b = await bucket();
  const big = randomBytes(31 * MiB + 12345);
  const odd = randomBytes(7 * MiB + 1);
  const etags = {
    five: await putMultipart(b, "blobs/five", big, 5 * MiB, { ContentType: "application/x-tar", Metadata: { origin: "deis" } }), // rclone, SDKs
    eight: await putMultipart(b, "blobs/eight", big, 8 * MiB), // aws cli
    fifteen: await putMultipart(b, "blobs/fifteen", big, 15 * MiB), // s3cmd
    six: await putMultipart(b, "blobs/six", big, 6 * MiB), // a whole MiB no client defaults to
    one: await putMultipart(b, "blobs/one-part", odd, 8 * MiB),
  };
  assert.match(etags.five, /-7$/);
  assert.match(etags.one, /-1$/);
  for (let i = 0; i < 30; i++) {
    await sdk.send(new PutObjectCommand({ Bucket: b, Key: `wal_005/${i}`, Body: randomBytes(3000 + i), ContentType: "text/x-wal", Metadata: { seq: String(i) } }));
  }
  await sdk.send(new PutObjectCommand({ Bucket: b, Key: "empty", Body: "", ContentLength: 0 }));
  const before = await fingerprint(b);

  const dir = tmp();
  const down = await s3Sync(`s3://${b}`, dir, { client: s3 });
  assert.is(down.objects, 36);
  assert.is(down.downloaded, 36);
  assert.is(down.unverified, 0);
  assert.is(down.bytes, Object.values(before).reduce((n, [size]) => n + size, 0));
  assert.equal(readFileSync(join(dir, "blobs/five")), big);
  assert.ok(existsSync(join(dir, S3_INDEX_NAME)));
  assert.not.ok(existsSync(join(dir, S3_TMP_DIR)), "no temp dir left behind");
  const index = readS3Index(join(dir, S3_INDEX_NAME));
  assert.is(index.get("blobs/five")?.partSize, 5 * MiB);
  assert.is(index.get("blobs/fifteen")?.partSize, 15 * MiB);
  assert.is(index.get("blobs/six")?.partSize, 6 * MiB);

  // destroy, recreate, restore
  await s3RemoveBucket(s3, b, { purge: true });
  await s3MakeBucket(s3, b);
  const up = await s3Sync(dir, `s3://${b}`, { client: s3 });
  assert.is(up.uploaded, 36);
  assert.equal(await fingerprint(b), before, "keys, sizes and ETags are identical");
  assert.not.ok(Object.keys(await fingerprint(b)).some((k) => k.startsWith(".lifeboat")), "the index is not uploaded");
  const h = await sdk.send(new HeadObjectCommand({ Bucket: b, Key: "blobs/five" }));
  assert.is(h.ContentType, "application/x-tar");
  assert.equal(h.Metadata, { origin: "deis" });
  const w = await sdk.send(new HeadObjectCommand({ Bucket: b, Key: "wal_005/7" }));
  assert.is(w.ContentType, "text/x-wal");
  assert.equal(w.Metadata, { seq: "7" });
});

test("a multipart ETag no part size reproduces is kept, warned about and not re-downloaded", async () => {
  const b = await bucket();
  const data = randomBytes(7 * MiB + 1);
  await putMultipart(b, "odd", data, 6 * MiB + 4096); // what no client does by default
  const dir = tmp();
  const r = await s3Sync(`s3://${b}`, dir, { client: s3 });
  assert.is(r.unverified, 1);
  assert.equal(readFileSync(join(dir, "odd")), data);
  assert.match(logs(), "no likely part size reproduces the multipart ETag");
  const again = await s3Sync(`s3://${b}`, dir, { client: s3, rehash: true });
  assert.equal([again.downloaded, again.skipped, again.unverified], [0, 1, 1]);
});

test("a multipart object whose likeliest part size is not its own is verified by reading the file back", async () => {
  ({ logs } = testContext()); // only this test's log lines
  const b = await bucket();
  const data = randomBytes(13 * MiB + 1);
  // 3 parts of 6 MiB; 5 MiB parts would also make 3, and 5 MiB is hashed first as the body arrives.
  const etag = await putMultipart(b, "six", data, 6 * MiB);
  assert.match(etag, /-3$/);
  const dir = tmp();
  const r = await s3Sync(`s3://${b}`, dir, { client: s3 });
  assert.equal([r.downloaded, r.unverified], [1, 0]);
  assert.equal(readFileSync(join(dir, "six")), data);
  assert.is(readS3Index(join(dir, S3_INDEX_NAME)).get("six")?.partSize, 6 * MiB);
  assert.not.match(logs(), "no likely part size reproduces");
});

test("a multipart download cut short is retried and completes whole", async () => {
  const b = await bucket();
  const data = randomBytes(11 * MiB);
  await putMultipart(b, "cut", data, 5 * MiB);
  let cuts = 0;
  const p = await proxy({ corrupt: (path) => path.endsWith("/cut") && cuts++ < 2, cutAfter: 6 * MiB });
  const c = s3Client({ ...creds, endpoint: p.endpoint });
  try {
    const dir = tmp();
    const r = await s3Sync(`s3://${b}`, dir, { client: c });
    assert.equal([r.downloaded, r.unverified], [1, 0]);
    assert.is(cuts, 3);
    assert.equal(readFileSync(join(dir, "cut")), data);
    assert.is(readS3Index(join(dir, S3_INDEX_NAME)).get("cut")?.partSize, 5 * MiB);
  } finally {
    c.destroy();
    await p.close();
  }
});

test("hostile keys round-trip exactly and never land outside the destination", async () => {
  const b = await bucket();
  for (const k of HOSTILE) await sdk.send(new PutObjectCommand({ Bucket: b, Key: k, Body: `content of ${JSON.stringify(k)}` }));
  const before = await fingerprint(b);
  assert.is(Object.keys(before).length, HOSTILE.length, "the gateway took every key");
  const root = tmp();
  const dir = join(root, "inner", "dest");
  mkdirSync(dir, { recursive: true });
  const r = await s3Sync(`s3://${b}`, dir, { client: s3 });
  assert.is(r.downloaded, HOSTILE.length);
  // Nothing outside dir: root holds only inner/dest, and no pwned file anywhere.
  assert.equal(files(root).filter((f) => !f.startsWith("inner/dest/")), []);
  assert.not.ok(existsSync(join(process.cwd(), "pwned")));
  for (const f of files(dir)) {
    assert.ok(realpathSync(join(dir, f)).startsWith(realpathSync(dir) + "/"), f);
  }
  assert.is(readFileSync(join(dir, "plain/file.txt"), "utf8"), `content of "plain/file.txt"`);
  assert.is(readFileSync(join(dir, "a/b"), "utf8"), `content of "a/b"`);
  assert.is(readFileSync(join(dir, s3EscapedPath("a")), "utf8"), `content of "a"`, "the object that is also a prefix is escaped");
  assert.ok(r.escaped >= 9);
  for (const f of files(dir).filter((f) => f.startsWith(`${S3_ESCAPED_DIR}/`))) {
    assert.ok(f.split("/").every((seg) => Buffer.byteLength(seg) <= 255 && seg !== ".." && seg !== "."), f);
  }
  // restore into a fresh bucket: identical
  const b2 = await bucket();
  await s3Sync(dir, `s3://${b2}`, { client: s3 });
  assert.equal(await fingerprint(b2), before);
  // and every one of them can be deleted again, by a delete sync and by a purge
  assert.is((await s3Sync(tmp(), `s3://${b2}`, { client: s3, delete: true })).deleted, HOSTILE.length);
  assert.equal(await listing(b2), []);
  assert.is(await s3RemoveBucket(s3, b, { purge: true }), HOSTILE.length);
  assert.not.ok(await s3BucketExists(s3, b));
});

test("a key with .. never escapes the destination", async () => {
  const b = await bucket();
  await sdk.send(new PutObjectCommand({ Bucket: b, Key: "../../../../../../tmp/lifeboat-escape", Body: "x" }));
  await sdk.send(new PutObjectCommand({ Bucket: b, Key: "ok/../../outside", Body: "y" }));
  const dir = join(tmp(), "d");
  await s3Sync(`s3://${b}`, dir, { client: s3 });
  assert.not.ok(existsSync("/tmp/lifeboat-escape"));
  assert.not.ok(existsSync(join(dir, "..", "outside")));
  assert.equal(files(dir).filter((f) => !f.startsWith(S3_ESCAPED_DIR) && f !== S3_INDEX_NAME), []);
  assert.is(files(dir).filter((f) => f.startsWith(S3_ESCAPED_DIR)).length, 2);
});

test("a symlinked directory in the destination is not written through", async () => {
  const b = await bucket();
  await sdk.send(new PutObjectCommand({ Bucket: b, Key: "link/file", Body: "data" }));
  const outside = tmp();
  const dir = tmp();
  spawnSync("ln", ["-s", outside, join(dir, "link")]);
  await s3Sync(`s3://${b}`, dir, { client: s3 });
  assert.equal(readdirSync(outside), []);
  assert.is(readFileSync(join(dir, s3EscapedPath("link/file")), "utf8"), "data");
});

test("escaped names decode back to their keys", () => {
  for (const k of [...HOSTILE, "", "ä".repeat(400), "%".repeat(300)]) {
    const p = s3EscapedPath(k);
    assert.is(s3UnescapePath(p), k);
    assert.ok(p.split("/").every((seg) => seg.length > 0 && Buffer.byteLength(seg) <= 255 && seg !== ".."));
  }
  assert.is(s3UnescapePath(`${S3_ESCAPED_DIR}/not%escaped.key`), null);
});

test("a re-sync is a no-op in both directions and delete removes extras on either side", async () => {
  const b = await bucket();
  const src = tmp();
  mkdirSync(join(src, "d"));
  for (let i = 0; i < 20; i++) writeFileSync(join(src, "d", `f${i}`), randomBytes(100 + i));
  const first = await s3Sync(src, `s3://${b}/pre`, { client: s3 });
  assert.is(first.uploaded, 20);
  assert.ok((await listing(b)).every((o) => o.key.startsWith("pre/d/")));
  const again = await s3Sync(src, `s3://${b}/pre`, { client: s3 });
  assert.equal([again.uploaded, again.skipped], [0, 20]);
  const again2 = await s3Sync(src, `s3://${b}/pre`, { client: s3, rehash: true });
  assert.equal([again2.uploaded, again2.skipped], [0, 20], "the same with every file read again");

  await sdk.send(new PutObjectCommand({ Bucket: b, Key: "pre/d/extra", Body: "x" }));
  await sdk.send(new PutObjectCommand({ Bucket: b, Key: "other/kept", Body: "x" }));
  const kept = await s3Sync(src, `s3://${b}/pre`, { client: s3 });
  assert.is(kept.deleted, 0);
  const del = await s3Sync(src, `s3://${b}/pre`, { client: s3, delete: true });
  assert.is(del.deleted, 1);
  assert.is((await listing(b)).length, 21, "only the prefix is synced: other/kept stays");

  const dir = tmp();
  await s3Sync(`s3://${b}/pre`, dir, { client: s3 });
  const noop = await s3Sync(`s3://${b}/pre`, dir, { client: s3 });
  assert.equal([noop.downloaded, noop.skipped], [0, 20]);
  writeFileSync(join(dir, "d", "local-only"), "x");
  const r = await s3Sync(`s3://${b}/pre`, dir, { client: s3, delete: true });
  assert.is(r.deleted, 1);
  assert.not.ok(existsSync(join(dir, "d", "local-only")));
});

test("compare: size misses a same-size change, checksum catches it", async () => {
  const b = await bucket();
  const src = tmp();
  writeFileSync(join(src, "f"), "aaaa");
  await s3Sync(src, `s3://${b}`, { client: s3 });
  writeFileSync(join(src, "f"), "bbbb");
  const bySize = await s3Sync(src, `s3://${b}`, { client: s3, compare: "size" });
  assert.is(bySize.uploaded, 0);
  const bySum = await s3Sync(src, `s3://${b}`, { client: s3 });
  assert.is(bySum.uploaded, 1);
  const dir = tmp();
  await s3Sync(`s3://${b}`, dir, { client: s3 });
  assert.is(readFileSync(join(dir, "f"), "utf8"), "bbbb");
});

test("uploads in parts above the threshold and reports bytes in the manifest's terms", async () => {
  const b = await bucket();
  const src = tmp();
  const data = randomBytes(11 * MiB);
  writeFileSync(join(src, "big"), data);
  writeFileSync(join(src, "small"), "s");
  const r = await s3Sync(src, `s3://${b}`, { client: s3, multipartThreshold: 6 * MiB, partSize: 5 * MiB });
  assert.equal([r.objects, r.bytes, r.uploaded, r.transferredBytes], [2, data.length + 1, 2, data.length + 1]);
  const o = (await listing(b)).find((x) => x.key === "big")!;
  assert.match(o.etag, /-3$/);
  assert.match(logs(), /s3 sync .* → s3:\/\/.*: 2 objects/);
});

test("a corrupted download is retried, and refused when it stays corrupt", async () => {
  const b = await bucket();
  await sdk.send(new PutObjectCommand({ Bucket: b, Key: "good", Body: "fine" }));
  await sdk.send(new PutObjectCommand({ Bucket: b, Key: "bad", Body: "will be damaged in transit" }));
  const p = await proxy({ corrupt: (path) => path.endsWith("/bad") });
  const c = s3Client({ ...creds, endpoint: p.endpoint });
  try {
    const dir = tmp();
    const err = await s3Sync(`s3://${b}`, dir, { client: c, attempts: 3 }).catch((e) => e);
    assert.instance(err, VerifyError);
    assert.match(err.message, /bad: received bytes have MD5 [0-9a-f]+, ETag is [0-9a-f]+ \(after 3 attempts\)/);
    assert.is(p.damaged(), 3);
    assert.not.ok(existsSync(join(dir, "bad")), "no damaged file under the real name");
    assert.is(readFileSync(join(dir, "good"), "utf8"), "fine");
    assert.not.ok(existsSync(join(dir, S3_TMP_DIR)));
  } finally {
    c.destroy();
    await p.close();
  }
});

test("a corrupted upload is caught by its ETag and sent again", async () => {
  const b = await bucket();
  const src = tmp();
  writeFileSync(join(src, "x"), "precious bytes");
  let left = 2;
  const p = await proxy({ corruptPut: (path) => path.endsWith("/x") && left-- > 0 });
  const c = s3Client({ ...creds, endpoint: p.endpoint });
  try {
    const r = await s3Sync(src, `s3://${b}`, { client: c });
    assert.is(r.uploaded, 1);
    assert.is(p.damaged(), 2);
  } finally {
    c.destroy();
    await p.close();
  }
  const o = (await listing(b))[0];
  assert.is(o.etag, createHash("md5").update("precious bytes").digest("hex"), "the stored object is the good one");
});

test("a missing bucket is named in the error, with what to do", async () => {
  const err = await s3Sync(`s3://lbt-${process.pid}-no-such-bucket`, tmp(), { client: s3 }).catch((e) => e);
  assert.match(err.message, `list s3://lbt-${process.pid}-no-such-bucket/: no such bucket`);
  assert.match(err.hint, "create it first");
});

test("an index kept outside the synced dir works the same, and the dir holds only the objects", async () => {
  const b = await bucket();
  const data = randomBytes(9 * MiB);
  const etag = await putMultipart(b, "m", data, 5 * MiB, { ContentType: "x/y" });
  const dir = tmp();
  const index = join(tmp(), "db_wal.index.jsonl");
  await s3Sync(`s3://${b}`, dir, { client: s3, index });
  assert.equal(readdirSync(dir), ["m"]);
  assert.is(readS3Index(index).get("m")?.partSize, 5 * MiB);
  const b2 = await bucket();
  await s3Sync(dir, `s3://${b2}`, { client: s3, index });
  assert.equal(await fingerprint(b2), { m: [data.length, etag] });
  assert.is((await sdk.send(new HeadObjectCommand({ Bucket: b2, Key: "m" }))).ContentType, "x/y");
});

test("a gateway that stops answering is timed out and the transfer sent again", async () => {
  const b = await bucket();
  await sdk.send(new PutObjectCommand({ Bucket: b, Key: "down", Body: "d" }));
  const src = tmp();
  writeFileSync(join(src, "up"), "u");
  let left = 2;
  const p = await proxy({ hang: (method, path) => (path.endsWith("/up") || path.endsWith("/down")) && left-- > 0 });
  const c = s3Client({ ...creds, endpoint: p.endpoint, requestTimeoutMs: 500 });
  try {
    const t = Date.now();
    assert.is((await s3Sync(src, `s3://${b}`, { client: c })).uploaded, 1);
    assert.is((await s3Sync(`s3://${b}`, tmp(), { client: c })).downloaded, 2);
    assert.is(p.damaged(), 2);
    assert.ok(Date.now() - t < 10000);
  } finally {
    c.destroy();
    await p.close();
  }
});

test("a download cut mid-body is retried and completes", async () => {
  const b = await bucket();
  const data = randomBytes(3 * MiB);
  await sdk.send(new PutObjectCommand({ Bucket: b, Key: "cut", Body: data }));
  let cuts = 0;
  const p = await proxy({ corrupt: (path) => path.endsWith("/cut") && cuts++ < 2, cutAfter: MiB });
  const c = s3Client({ ...creds, endpoint: p.endpoint });
  try {
    const dir = tmp();
    const r = await s3Sync(`s3://${b}`, dir, { client: c });
    assert.is(r.downloaded, 1);
    assert.is(cuts, 3);
    assert.equal(readFileSync(join(dir, "cut")), data);
  } finally {
    c.destroy();
    await p.close();
  }
});

test("a killed download leaves no half file under the real name, and the next sync cleans up", async () => {
  const b = await bucket();
  const data = randomBytes(4 * MiB);
  await sdk.send(new PutObjectCommand({ Bucket: b, Key: "slow/object", Body: data }));
  const p = await proxy({ corrupt: (path) => path.endsWith("/slow/object"), cutAfter: MiB, stall: true });
  const dir = tmp();
  const script = `
    import { s3Client, s3Sync } from ${JSON.stringify(resolve("lib/s3.ts"))};
    const c = s3Client(${JSON.stringify({ ...creds, endpoint: p.endpoint })});
    await s3Sync("s3://${b}", ${JSON.stringify(dir)}, { client: c });`;
  const child = spawn(process.execPath, ["--import=tsx", "--input-type=module", "-e", script], { stdio: "ignore" });
  try {
    const tmpDir = join(dir, S3_TMP_DIR, String(child.pid));
    const deadline = Date.now() + 20000;
    const partial = () => existsSync(tmpDir) && readdirSync(tmpDir).some((f) => statSync(join(tmpDir, f)).size >= MiB);
    while (!partial() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(partial(), "the child got half-way");
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    assert.not.ok(existsSync(join(dir, "slow/object")), "nothing under the real name");
  } finally {
    child.kill("SIGKILL");
    await p.close();
  }
  const r = await s3Sync(`s3://${b}`, dir, { client: s3 });
  assert.is(r.downloaded, 1);
  assert.equal(readFileSync(join(dir, "slow/object")), data);
  assert.not.ok(existsSync(join(dir, S3_TMP_DIR)), "the dead sync's temp dir is gone");
});

test("wrong keys fail with access denied, naming the endpoint, secret masked", async () => {
  const b = await bucket();
  const secret = "Wr0ngSecretKeyThatMustNotAppear";
  const c = s3Client({ ...creds, secretKey: secret });
  try {
    const err = await s3Sync(tmp(), `s3://${b}`, { client: c }).catch((e) => e);
    assert.match(err.message, `s3 ${creds.endpoint}`);
    assert.match(err.message, "access denied (SignatureDoesNotMatch)");
    assert.match(err.hint, "access key and secret key");
    assert.not.match(err.message, secret);
    const bad = s3Client({ ...creds, accessKey: "NOSUCHACCESSKEY0000" });
    const err2 = await s3BucketExists(bad, b).catch((e) => e);
    bad.destroy();
    assert.match(err2.message, /access denied \((InvalidAccessKeyId|Forbidden)\)|access denied/);
  } finally {
    c.destroy();
  }
  assert.not.match(logs(), "Wr0ngSecretKeyThatMustNotAppear");
});

test("an unreachable endpoint fails quickly with a clear error", async () => {
  const c = s3Client({ ...creds, endpoint: "http://127.0.0.1:9" });
  const t = Date.now();
  const err = await s3Sync(tmp(), "s3://anything", { client: c }).catch((e) => e);
  c.destroy();
  assert.ok(Date.now() - t < 3000, `took ${Date.now() - t} ms`);
  assert.match(err.message, "s3 http://127.0.0.1:9: list s3://anything/: gateway unreachable (ECONNREFUSED");
  assert.match(err.hint, "is the gateway running");
});

test("memory stays flat while a 192 MiB object goes up and comes back", async () => {
  const b = await bucket();
  const src = tmp();
  const f = join(src, "huge");
  const block = randomBytes(MiB);
  writeFileSync(f, "");
  for (let i = 0; i < 192; i++) writeFileSync(f, block, { flag: "a" });
  globalThis.gc?.();
  const base = process.memoryUsage().rss;
  let peak = base;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  try {
    await s3Sync(src, `s3://${b}`, { client: s3, multipartThreshold: 16 * MiB });
    const dir = tmp();
    await s3Sync(`s3://${b}`, dir, { client: s3 });
    assert.is(statSync(join(dir, "huge")).size, 192 * MiB);
  } finally {
    clearInterval(timer);
  }
  const grew = (peak - base) / MiB;
  assert.ok(grew < 128, `RSS grew ${grew.toFixed(0)} MiB`);
});

test("a paused gateway (SIGSTOP for 4 s) holds the sync, which then completes", async () => {
  const pid = Number(readFileSync(join(LAB_DIR, "ceph/run/client.rgw.a.pid"), "utf8"));
  const b = await bucket();
  const src = tmp();
  for (let i = 0; i < 300; i++) writeFileSync(join(src, `f${i}`), randomBytes(2048));
  const sync = s3Sync(src, `s3://${b}`, { client: s3, concurrency: 8 });
  await new Promise((r) => setTimeout(r, 150));
  process.kill(pid, "SIGSTOP");
  await new Promise((r) => setTimeout(r, 4000));
  process.kill(pid, "SIGCONT");
  const r = await sync;
  assert.is(r.objects, 300);
  assert.is((await listing(b)).length, 300);
});

test("the gateway restarted mid-sync (ceph.sh down, then up) is ridden out by retries and the sync completes", async () => {
  if (process.env.LIFEBOAT_S3_RESTART === "0") return;
  const b = await bucket();
  const src = tmp();
  for (let i = 0; i < 400; i++) writeFileSync(join(src, `f${i}`), randomBytes(4096));
  let finished = 0;
  const sync = s3Sync(src, `s3://${b}`, { client: s3, concurrency: 4, attempts: 14 }).finally(() => (finished = Date.now()));
  await new Promise((r) => setTimeout(r, 300));
  const ceph = resolve("test/lab/ceph.sh");
  spawnSync("bash", [ceph, "down"], { stdio: "ignore" });
  const down = Date.now();
  assert.is(finished, 0, "the sync was still running when the gateway went down");
  assert.is(spawnSync("bash", [ceph, "up"], { stdio: "ignore" }).status, 0, "ceph.sh up");
  const r = await sync;
  assert.ok(finished > down);
  assert.is(r.uploaded, 400);
  assert.is((await listing(b)).length, 400);
});

/** Multipart uploads still open in the bucket (each holds its parts' space until aborted). */
async function openUploads(b: string): Promise<string[]> {
  const out = await sdk.send(new ListMultipartUploadsCommand({ Bucket: b }));
  return (out.Uploads ?? []).map((u) => `${u.Key} ${u.UploadId}`);
}

/** Resolves when cond() holds (polled); a guard against a test that would wait forever. */
async function until(cond: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 1200; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`never happened: ${what}`);
}

/** The outcome of p, or a failure when it never settles: the run did not stop. */
function settles<T>(p: Promise<T>, what: string): Promise<T | Error> {
  return Promise.race([
    p.catch((e: Error) => e),
    new Promise<Error>((r) => setTimeout(() => r(new Error(`${what} did not stop`)), 45_000).unref()),
  ]);
}

/** A context of its own, to interrupt one sync without touching the tests' default one. */
function runContext() {
  return createContext({ name: "s3-interrupt", argv: [], env: {}, sink: { write: () => true, isTTY: false }, interactive: false });
}

test("a multipart upload that fails while the gateway is down is aborted: no upload is left behind", async () => {
  const b = await bucket();
  const src = tmp();
  writeFileSync(join(src, "big"), randomBytes(12 * MiB));
  const p = await proxy({ hold: (m, url) => m === "PUT" && url.includes("partNumber=") });
  const c = s3Client({ ...creds, endpoint: p.endpoint });
  try {
    const sync = s3Sync(src, `s3://${b}`, { client: c, multipartThreshold: 5 * MiB, partSize: 5 * MiB, attempts: 2, progress: false }).catch((e) => e);
    await until(() => p.held() > 0, "a part upload started");
    p.down();
    p.release();
    // The parts fail (2 attempts); the abort of the upload is tried while the gateway is still down.
    await until(() => p.seen().some((r) => r.startsWith("DELETE ") && r.includes("uploadId=")), "an abort was tried");
    p.up();
    const err = await sync;
    assert.instance(err, LifeboatError);
    assert.match(err.message, "failed to upload");
    assert.equal(await openUploads(b), [], "the failed upload was aborted once the gateway answered again");
    assert.equal(await listing(b), []);
  } finally {
    c.destroy();
    await p.close();
  }
});

test("a multipart completion answered 'already in progress' is confirmed by the object's ETag", async () => {
  const b = await bucket();
  const src = tmp();
  const data = randomBytes(12 * MiB);
  writeFileSync(join(src, "big"), data);
  const p = await proxy({ lostCompletion: true });
  const c = s3Client({ ...creds, endpoint: p.endpoint });
  try {
    const r = await s3Sync(src, `s3://${b}`, { client: c, multipartThreshold: 5 * MiB, partSize: 5 * MiB, attempts: 3, progress: false });
    assert.is(r.uploaded, 1);
    assert.ok(p.damaged() >= 1, "the completion's answer was lost");
    const expected = multipartEtag(data, 5 * MiB);
    assert.equal(await fingerprint(b), { big: [12 * MiB, expected] });
    assert.equal(await openUploads(b), []);
  } finally {
    c.destroy();
    await p.close();
  }
});

for (const kind of ["error", "empty"] as const) test(`a multipart completion answered 200 with ${kind === "error" ? "an error document" : "no body"} is retried, not taken for success`, async () => {
  const b = await bucket();
  const src = tmp();
  const data = randomBytes(11 * MiB);
  writeFileSync(join(src, "big"), data);
  const p = await proxy({ failedCompletion200: kind });
  const c = s3Client({ ...creds, endpoint: p.endpoint });
  try {
    const r = await s3Sync(src, `s3://${b}`, { client: c, multipartThreshold: 5 * MiB, partSize: 5 * MiB, attempts: 3, progress: false });
    assert.is(r.uploaded, 1);
    assert.is(p.damaged(), 1, "the first completion got the error document");
    assert.is(p.seen().filter((x) => x.startsWith("POST ") && x.includes("uploadId=")).length, 2, "the completion was sent again");
    assert.equal(await fingerprint(b), { big: [11 * MiB, multipartEtag(data, 5 * MiB)] });
    assert.equal(await openUploads(b), []);
  } finally {
    c.destroy();
    await p.close();
  }
});

test("a refused HEAD gives its connection back at once (it held it until the 60 s socket timeout)", async () => {
  const b = await bucket();
  const c = s3Client({ ...creds, maxSockets: 1 });
  try {
    const err = await wire(c, { method: "HEAD", bucket: b, key: "not-there" }).catch((e) => e);
    assert.is(err?.name, "NotFound");
    const agent = WIRE.get(c)!.httpAgent;
    const count = (m: NodeJS.ReadOnlyDict<unknown[]>) => Object.values(m).reduce((n, l) => n + (l?.length ?? 0), 0);
    await until(() => count(agent.sockets) === 0 && count(agent.freeSockets) === 1, "the socket is free again");
  } finally {
    c.destroy();
  }
});

test("an upload in parts never loads the SDK's client (23 MiB and 0.1 s of CPU)", () => {
  // A fresh process: this one has loaded the client for its own bucket calls.
  const src = tmp();
  writeFileSync(join(src, "a-big"), randomBytes(11 * MiB));
  const script = `
    const s3 = await import(${JSON.stringify(new URL("../lib/s3.ts", import.meta.url).href)});
    const c = s3.s3Client(${JSON.stringify(creds)});
    const r = await s3.s3Sync(${JSON.stringify(src)}, "s3://" + process.argv[1], { client: c, multipartThreshold: 5 << 20, partSize: 5 << 20, index: false, progress: false });
    c.destroy();
    const { createRequire } = await import("node:module");
    const sdk = Object.keys(createRequire(import.meta.url).cache).filter((k) => k.includes("@aws-sdk/client-s3/"));
    console.log(JSON.stringify({ uploaded: r.uploaded, sdk }));`;
  return bucket().then((b) => {
    const out = spawnSync(process.execPath, [...process.execArgv, "--input-type=module", "-e", script, b], { encoding: "utf8" });
    assert.is(out.status, 0, out.stderr);
    const got = JSON.parse(out.stdout.trim().split("\n").pop()!);
    assert.equal(got, { uploaded: 1, sdk: [] });
  });
});

test("an interrupted upload stops at once, aborts its multipart upload and leaves only whole objects", async () => {
  const b = await bucket();
  const src = tmp();
  writeFileSync(join(src, "big"), randomBytes(12 * MiB));
  for (let i = 0; i < 40; i++) writeFileSync(join(src, `f${i}`), randomBytes(4096));
  // Part 2 of big never gets an answer: only the interrupt can end this sync.
  const p = await proxy({ hold: (m, url) => m === "PUT" && /[?&]partNumber=2(&|$)/.test(url) });
  const c = s3Client({ ...creds, endpoint: p.endpoint, requestTimeoutMs: 600_000 });
  const ctx = runContext();
  try {
    const sync = s3Sync(src, `s3://${b}`, { client: c, ctx, multipartThreshold: 5 * MiB, partSize: 5 * MiB, concurrency: 4, progress: false });
    await until(() => p.held() > 0, "part 2 was sent");
    ctx.abort(new InterruptedError("SIGINT"));
    const err = await settles(sync, "the interrupted upload");
    assert.instance(err, InterruptedError);
    assert.equal(await openUploads(b), [], "the multipart upload was aborted");
    for (const o of await listing(b)) {
      assert.is.not(o.key, "big");
      assert.is(o.etag, createHash("md5").update(readFileSync(join(src, o.key))).digest("hex"), `${o.key} is whole`);
    }
  } finally {
    c.destroy();
    await p.close();
  }
});

test("an interrupted download stops at once and leaves no partial file under a final name", async () => {
  const b = await bucket();
  const src = tmp();
  writeFileSync(join(src, "big"), randomBytes(3 * MiB));
  for (let i = 0; i < 40; i++) writeFileSync(join(src, `f${i}`), randomBytes(4096));
  await s3Sync(src, `s3://${b}`, { client: s3, progress: false });
  const p = await proxy({ hold: (m, url) => m === "GET" && url.startsWith(`/${b}/big`) });
  const c = s3Client({ ...creds, endpoint: p.endpoint, requestTimeoutMs: 600_000 });
  const ctx = runContext();
  const dst = tmp();
  try {
    const sync = s3Sync(`s3://${b}`, dst, { client: c, ctx, concurrency: 4, progress: false });
    await until(() => p.held() > 0, "big was asked for");
    ctx.abort(new InterruptedError("SIGTERM"));
    const err = await settles(sync, "the interrupted download");
    assert.instance(err, InterruptedError);
    assert.not.ok(existsSync(join(dst, "big")), "no big under its final name");
    for (const f of files(dst).filter((f) => !f.startsWith(".lifeboat-s3-"))) {
      assert.ok(readFileSync(join(dst, f)).equals(readFileSync(join(src, f))), `${f} is whole`);
    }
    assert.equal(existsSync(join(dst, S3_TMP_DIR)) ? files(join(dst, S3_TMP_DIR)) : [], [], "no temp file left");
  } finally {
    c.destroy();
    await p.close();
  }
});

test("an interrupted s3List stops at once with the interrupt", async () => {
  const b = await bucket();
  const p = await proxy({ hold: (m, url) => m === "GET" && url.includes("list-type=2") });
  const c = s3Client({ ...creds, endpoint: p.endpoint, requestTimeoutMs: 600_000 });
  const ctx = runContext();
  try {
    const listed = (async () => {
      for await (const _ of s3List(c, b, "", { ctx })) { /* none */ }
    })();
    await until(() => p.held() > 0, "the listing was asked for");
    ctx.abort(new InterruptedError("SIGINT"));
    assert.instance(await settles(listed, "the interrupted listing"), InterruptedError);
  } finally {
    c.destroy();
    await p.close();
  }
});

test.after(async () => {
  for (const b of buckets) await s3RemoveBucket(s3, b, { purge: true }).catch((e) => console.error(`left behind: ${b}: ${e.message}`));
  s3.destroy();
  cleanupTmp();
});

test.run();
