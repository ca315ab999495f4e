// lib/s3/ when the gateway dies and stays down: a sync fails within a bounded time with an error
// naming the gateway and the cause, instead of retrying every object in turn (a bucket of a few
// hundred objects took many minutes: the deis-backup fault case "radosgw stays down").
// A stand-in gateway on loopback answers the listing, then goes away (refused) or goes silent.
// No lab. Run: node --import=tsx test/s3-gateway-down.test.ts
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createHash } from "node:crypto";
import http from "node:http";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { s3Client, s3Sync } from "../lib/s3.ts";
import { cleanupTmp, testContext, tmp } from "./helpers.ts";

testContext();

/** A gateway stand-in holding `count` small objects in bucket "bkt"; after the first listing it dies as told. */
async function gateway(count: number, then: "refuse" | "silent") {
  const body = (i: number) => Buffer.from(`object ${i}\n`);
  const md5 = (b: Buffer) => createHash("md5").update(b).digest("hex");
  let gets = 0;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url!, "http://x");
    if (url.searchParams.get("list-type") === "2") {
      const items = Array.from({ length: count }, (_, i) =>
        `<Contents><Key>o${i}</Key><Size>${body(i).length}</Size><ETag>"${md5(body(i))}"</ETag><LastModified>2020-01-01T00:00:00.000Z</LastModified></Contents>`);
      res.writeHead(200, { "content-type": "application/xml" });
      return void res.end(`<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>bkt</Name><IsTruncated>false</IsTruncated>${items.join("")}</ListBucketResult>`, () => {
        if (then === "refuse") {
          server.close();
          server.closeAllConnections();
        }
      });
    }
    gets++;
    req.resume(); // silent: never answered
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const endpoint = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  return {
    endpoint,
    gets: () => gets,
    close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}

/** The sync's outcome, or "still running" once boundMs has passed (the bound the test asserts). */
function within<T>(p: Promise<T>, boundMs: number): Promise<T | Error | "still running"> {
  let timer: ReturnType<typeof setTimeout>;
  const late = new Promise<"still running">((r) => (timer = setTimeout(() => r("still running"), boundMs)));
  return Promise.race([p.catch((e: Error) => e), late]).finally(() => clearTimeout(timer));
}

test("a sync whose gateway dies and stays down fails after one transfer's retries, naming the gateway, the cause and the attempts", async () => {
  const g = await gateway(40, "refuse");
  const c = s3Client({ endpoint: g.endpoint, accessKey: "AK", secretKey: "SK" });
  const dir = tmp();
  try {
    const t0 = Date.now();
    // 4 attempts: 0.5 + 1 + 2 s of backoff per object. Retried object after object, 40 objects
    // 2 at a time take 20 × 3.5 s = 70 s; the first object to give up must end the sync.
    const r = await within(s3Sync("s3://bkt", dir, { client: c, concurrency: 2, attempts: 4, progress: false }), 20_000);
    assert.ok(r instanceof Error, `the sync ${r === "still running" ? "was still running after 20 s" : "succeeded"}`);
    const msg = (r as Error).message;
    assert.match(msg, g.endpoint);
    assert.match(msg, /gateway unreachable \(ECONNREFUSED/);
    assert.match(msg, /after 4 attempts over \d+(\.\d)? s/);
    assert.ok(Date.now() - t0 < 20_000);
    // no half file under a final name, nothing but the sync's own temp dir left
    assert.equal(readdirSync(dir).filter((n) => !n.startsWith(".lifeboat-s3-")), []);
  } finally {
    c.destroy();
    await g.close();
  }
});

test("a gateway that goes silent is given up on after maxOutageMs, not after every attempt's socket timeout", async () => {
  const g = await gateway(10, "silent");
  // a silent socket times out after 300 ms; 10 attempts with 27.5 s of backoff would take ~30 s per object
  const c = s3Client({ endpoint: g.endpoint, accessKey: "AK", secretKey: "SK", requestTimeoutMs: 300 });
  const dir = tmp();
  try {
    const r = await within(s3Sync("s3://bkt", dir, { client: c, concurrency: 2, progress: false, maxOutageMs: 2000 }), 15_000);
    assert.ok(r instanceof Error, `the sync ${r === "still running" ? "was still running after 15 s" : "succeeded"}`);
    assert.match((r as Error).message, g.endpoint);
    assert.match((r as Error).message, /did not answer in time/);
    assert.match((r as Error).message, /after \d+ attempts over \d+(\.\d)? s/);
    assert.not.ok(existsSync(join(dir, "o0")));
  } finally {
    c.destroy();
    await g.close();
  }
});

test.after(() => cleanupTmp());
test.run();
