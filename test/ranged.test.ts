// lib/ranged.ts on its own: receiveRangedPuts fed ranged PUTs directly (the way Xenon's
// FileUtils.putFile sends them: END exclusive, any order), its refusals (a truncated stream,
// overlapping, out-of-range and mis-sized chunks, a changing total, chunks that stop coming), and
// serveRanged's answers to ranged and plain GETs. No lab.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { receiveRangedPuts, serveRanged, UsageError, VerifyError } from "../lib/mod.ts";
import { cleanupTmp, freePort, testContext, tmp } from "./helpers.ts";

testContext();
test.after(cleanupTmp);

const put = (url: string, data: Buffer, start: number, end: number, total: number) =>
  fetch(url, { method: "PUT", headers: { "content-range": `bytes ${start}-${end}/${total}`, "content-type": "application/octet-stream" }, body: new Uint8Array(data.subarray(start, end)) }).then((r) => r.status);

/** Sends `data` in chunks of `size`, in the order given (indexes of chunks), `inFlight` at a time. */
async function send(url: string, data: Buffer, size: number, order?: number[], inFlight = 10): Promise<number[]> {
  const n = Math.ceil(data.length / size);
  const todo = [...(order ?? Array.from({ length: n }, (_, i) => i))];
  const statuses: number[] = [];
  while (todo.length) {
    const batch = todo.splice(0, inFlight);
    statuses.push(...await Promise.all(batch.map((i) => put(url, data, i * size, Math.min(data.length, (i + 1) * size), data.length))));
  }
  return statuses;
}

/** Nothing but the finished file (no hidden partial file) is left in the folder. */
const leftovers = (dir: string) => readdirSync(dir);

test("chunks in any order, several in flight, give back the exact bytes, atomically and 0600; a PUT to /backup.zip without the token is 404", async () => {
  const dir = tmp();
  const data = randomBytes(5 * 65536 + 123);
  const order = [5, 2, 0, 4, 1, 3];
  let guessed = 0;
  const got = await receiveRangedPuts(join(dir, "b.zip"), {}, async (url) => {
    // someone else who can connect, sending to the path without the token, is answered 404
    guessed = await put(new URL("/backup.zip", url).href, randomBytes(65536), 0, 65536, data.length);
    return send(url, data, 65536, order, 3);
  });
  assert.is(guessed, 404);
  assert.is(got.bytes, data.length);
  assert.is(got.chunks, 6);
  assert.ok(Buffer.compare(readFileSync(join(dir, "b.zip")), data) === 0);
  assert.is(statSync(join(dir, "b.zip")).mode & 0o777, 0o600);
  assert.equal(leftovers(dir), ["b.zip"]);
});

test("a truncated stream (the sender says done with a chunk missing) is refused and leaves no file", async () => {
  const dir = tmp();
  const data = randomBytes(4 * 1000);
  const err = await receiveRangedPuts(join(dir, "b.zip"), {}, (url) => send(url, data, 1000, [0, 1, 3])).then(() => null, (e: Error) => e);
  assert.instance(err, VerifyError);
  assert.match(err!.message, /truncated: .* arrived when the sender said it was done; missing 2000-3000/);
  assert.equal(leftovers(dir), []);
});

test("Xenon's empty fill-up PUTs at the end (bytes T-T/T, its last batch of 10) are answered 200 and add nothing", async () => {
  const dir = tmp();
  const data = randomBytes(3 * 1000);
  const statuses: number[] = [];
  const got = await receiveRangedPuts(join(dir, "b.zip"), {}, async (url) => {
    // upstream putChunks: 3 real chunks, then 7 empty ones, all in one batch
    statuses.push(...await Promise.all([...[0, 1, 2].map((i) => put(url, data, i * 1000, (i + 1) * 1000, 3000)), ...Array.from({ length: 7 }, () => put(url, data, 3000, 3000, 3000))]));
  });
  assert.equal(statuses, Array(10).fill(200));
  assert.is(got.bytes, 3000);
  assert.is(got.chunks, 3);
  assert.ok(Buffer.compare(readFileSync(join(dir, "b.zip")), data) === 0);
});

test("an overlapping chunk is refused (409) and fails the receive", async () => {
  const dir = tmp();
  const data = randomBytes(3000);
  const statuses: number[] = [];
  const err = await receiveRangedPuts(join(dir, "b.zip"), {}, async (url) => {
    statuses.push(await put(url, data, 0, 1000, 3000));
    statuses.push(await put(url, data, 500, 1500, 3000));
  }).then(() => null, (e: Error) => e);
  assert.equal(statuses, [200, 409]);
  assert.match(err!.message, /refused a chunk: bytes 500-1500\/3000 overlaps bytes 0-1000 already received/);
  assert.equal(leftovers(dir), []);
});

test("out-of-range and mis-sized chunks, a changing total and a missing Content-Range are refused", async () => {
  const data = randomBytes(2000);
  const cases: [string, (url: string) => Promise<number>, number, RegExp][] = [
    ["END past TOTAL", (url) => put(url, data, 1000, 2001, 2000), 416, /out of range/],
    ["START not before END", (url) => put(url, data, 1000, 1000, 2000), 416, /out of range/],
    ["a body shorter than its range", (url) => fetch(url, { method: "PUT", headers: { "content-range": "bytes 0-1000/2000" }, body: new Uint8Array(data.subarray(0, 999)) }).then((r) => r.status), 400, /the body has 999 bytes, the range says 1000/],
    ["a changing total", async (url) => (await put(url, data, 0, 1000, 2000), put(url, data, 1000, 2000, 2001)), 400, /total 2001 differs from the 2000/],
    ["no Content-Range", (url) => fetch(url, { method: "PUT", body: new Uint8Array(data) }).then((r) => r.status), 400, /no usable Content-Range/],
  ];
  for (const [what, sendBad, status, message] of cases) {
    const dir = tmp();
    let got = 0;
    const err = await receiveRangedPuts(join(dir, "b.zip"), {}, async (url) => void (got = await sendBad(url))).then(() => null, (e: Error) => e);
    assert.is(got, status, what);
    assert.match(err?.message ?? "", message, what);
    assert.equal(leftovers(dir), [], what);
  }
});

test("chunks that stop coming: the receiver gives up with a clear error (idle timeout) and keeps nothing", async () => {
  const dir = tmp();
  const data = randomBytes(3000);
  let release = () => {};
  const err = await receiveRangedPuts(join(dir, "b.zip"), { idleTimeoutMs: 300 }, async (url) => {
    await put(url, data, 0, 1000, 3000);
    await new Promise<void>((r) => (release = r)); // the sender hangs
  }).then(() => null, (e: Error) => e);
  release();
  assert.match(err!.message, /no chunk for \d+ s after 1000 B of 2.93 KiB; the sender stopped/);
  assert.equal(leftovers(dir), []);
});

test("a sender that never sends: the receiver gives up after the first-chunk timeout, naming the URL it gave", async () => {
  const dir = tmp();
  let release = () => {};
  const err = await receiveRangedPuts(join(dir, "b.zip"), { firstChunkTimeoutMs: 300 }, () => new Promise<void>((r) => (release = r))).then(() => null, (e: Error) => e);
  release();
  assert.match(err!.message, /no chunk came within/);
  assert.match((err as { hint?: string }).hint ?? "", /can the Xenon host reach http:\/\/127\.0\.0\.1:\d+\/[0-9a-f]{32}\/backup\.zip/);
});

test("serveRanged: only the unguessable path is served (/backup.zip alone is 404); Range bytes=S-E answers [S, E) with an exclusive-end Content-Range; a plain GET the whole file; 416 past the end", async () => {
  const dir = tmp();
  const data = randomBytes(1_200_000);
  writeFileSync(join(dir, "f.zip"), data);
  const r = await serveRanged(join(dir, "f.zip"), {}, async (url) => {
    const first = await fetch(url, { headers: { range: "bytes=0-524288" } });
    const body = Buffer.from(await first.arrayBuffer());
    const last = await fetch(url, { headers: { range: "bytes=1048576-1572864" } });
    const tail = Buffer.from(await last.arrayBuffer());
    const whole = Buffer.from(await (await fetch(url)).arrayBuffer());
    const past = await fetch(url, { headers: { range: "bytes=1200000-1300000" } });
    const other = await fetch(url.replace("/backup.zip", "/other"));
    const guessed = await fetch(new URL("/backup.zip", url));
    return { first: [first.status, first.headers.get("content-range"), body], last: [last.status, last.headers.get("content-range"), tail], whole, past: past.status, other: other.status, guessed: guessed.status, url };
  });
  const { first, last, whole, past, other, guessed, url } = r.result;
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/[0-9a-f]{32}\/backup\.zip$/, "a path no one can guess");
  assert.is(guessed, 404, "GET /backup.zip without the token");
  assert.equal(first.slice(0, 2), [206, "bytes 0-524288/1200000"]);
  assert.ok(Buffer.compare(first[2] as Buffer, data.subarray(0, 524288)) === 0);
  assert.equal(last.slice(0, 2), [206, "bytes 1048576-1200000/1200000"]);
  assert.ok(Buffer.compare(last[2] as Buffer, data.subarray(1048576)) === 0);
  assert.ok(Buffer.compare(whole, data) === 0);
  assert.is(past, 416);
  assert.is(other, 404);
  assert.is(r.requests, 4);
  assert.ok(!existsSync(join(dir, "f.zip.partial")));
});

test("serveRanged: http.url's host, port and path prefix are kept (an older trailing /backup.zip dropped); one that is not a URL is refused before anything listens", async () => {
  const dir = tmp();
  writeFileSync(join(dir, "f.zip"), "zip bytes");
  const port = await freePort();
  const r = await serveRanged(join(dir, "f.zip"), { port, publicUrl: `http://127.0.0.1:${port}/prefix/backup.zip` }, async (url) => ({ url, status: (await fetch(url)).status }));
  assert.match(r.result.url, new RegExp(`^http://127\\.0\\.0\\.1:${port}/prefix/[0-9a-f]{32}/backup\\.zip$`));
  assert.is(r.result.status, 200);
  for (const bad of ["backup-host", "backup-host:8098"]) {
    let err: Error | undefined;
    try {
      await serveRanged(join(dir, "f.zip"), { port, publicUrl: bad }, async () => 0);
    } catch (e) {
      err = e as Error;
    }
    assert.instance(err, UsageError, bad);
    assert.match(err!.message, /http\.url .* (is not a URL|names no host)/);
  }
  // nothing was left listening on the port
  const again = await serveRanged(join(dir, "f.zip"), { port }, async (url) => (await fetch(url)).status);
  assert.is(again.result, 200);
});

test.run();
