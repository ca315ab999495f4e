// needs: ceph sshd
// DIRECTORY chains off-site (lib/filechain.ts through lib/offsite.ts), against the lab's RGW, its
// sshd and a local path: each run goes as one archive of the files it shipped plus its manifest; any run is
// fetched back (its chain's archives up to it) and put together byte for byte; retention drops
// whole chains only; a damaged copy is refused; and the Xenon recipes with offsite.to and
// directory.from (a stand-in host, the store gone locally).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  chainAssemble, chainFetch, chainOffsiteRuns, chainPruneOffsite, chainPush, chainShip, listNames, s3Client, s3MakeBucket, s3RemoveBucket,
  type ChainOffsiteOptions,
} from "../lib/mod.ts";
import { needLab } from "../tasks/drills/lab.ts";
import { runRecipe } from "../tasks/drills/hoss.ts";
import { diffDocuments, exampleDocuments, hostFlags, seedExamples, startXenonHost, stopXenonHosts, xenonRequest, xenonSite } from "../tasks/drills/xenon.ts";
import { cleanupTmp, testContext, tmp } from "./helpers.ts";

const lab = needLab("ceph", "sshd");
testContext();
const s3creds = { endpoint: lab.LAB_S3_ENDPOINT, region: lab.LAB_S3_REGION || "us-east-1", accessKey: lab.LAB_S3_ACCESS_KEY, secretKey: lab.LAB_S3_SECRET_KEY };
const s3 = s3Client(s3creds);
const bucket = `lbchain-${process.pid}`;
const opts: ChainOffsiteOptions = { s3: s3creds, ssh: { identityFile: lab.LAB_SSH_KEY, knownHostsFile: lab.LAB_SSH_KNOWN_HOSTS }, progress: false, label: "xenon-store" };
test.before(async () => void (await s3MakeBucket(s3, bucket)));
test.after(async () => {
  await s3RemoveBucket(s3, bucket, { purge: true });
  s3.destroy();
  cleanupTmp();
});

/** A workspace of immutable files changed like an index between backups, shipped as runs; snapshots of each run's files. */
async function chain(store: string): Promise<{ runs: string[]; snapshots: Record<string, Buffer>[] }> {
  const ws = tmp();
  const runs: string[] = [];
  const snapshots: Record<string, Buffer>[] = [];
  const snap = () => Object.fromEntries(listNames(ws).map((n) => [n, readFileSync(join(ws, n))]));
  const steps = [
    () => ["_0.cfs", "_0.si", "segments_1", "name with spaces.cfs"].forEach((n) => writeFileSync(join(ws, n), randomBytes(20_000))),
    () => (rmSync(join(ws, "segments_1")), ["_1.cfs", "_1.si", "segments_2"].forEach((n) => writeFileSync(join(ws, n), randomBytes(3_000)))),
    () => (rmSync(join(ws, "segments_2")), rmSync(join(ws, "_0.cfs")), ["_2.cfs", "segments_3"].forEach((n) => writeFileSync(join(ws, n), randomBytes(3_000)))),
  ];
  for (const [i, change] of steps.entries()) {
    const before = listNames(ws);
    change();
    const run = `2026-11-2${i + 1}T100000Z`;
    await chainShip(ws, store, { run, full: i === 0, before });
    runs.push(run);
    snapshots.push(snap());
  }
  return { runs, snapshots };
}

const assembled = (dir: string) => Object.fromEntries(listNames(dir).map((n) => [n, readFileSync(join(dir, n))]));

test("one run pushed to two destinations side by side arrives at both under the run's name (each push packs in a folder of its own)", async () => {
  const store = join(tmp(), "store");
  const { runs } = await chain(store);
  const dests = [join(tmp(), "offsite a"), join(tmp(), "offsite b")];
  for (const d of dests) await chainPush(store, runs[0], d, opts);
  await Promise.all(dests.map((d) => chainPush(store, runs[1], d, opts)));
  for (const d of dests) assert.equal((await chainOffsiteRuns(d, opts)).map((l) => l.run), runs.slice(0, 2), d);
  assert.equal(readdirSync(join(store, ".outbox")), [], "no local archive left behind");
});

for (const kind of ["s3", "ssh", "local"] as const) {
  test(`${kind}: each run goes as one archive; runs 2 and 3 come back byte for byte from the off-site copies alone`, async () => {
    const store = join(tmp(), "store");
    const dest = kind === "s3" ? `s3://${bucket}/chains ${kind}` : kind === "ssh" ? `ssh://root@${lab.LAB_SSH_HOST}:${lab.LAB_SSH_PORT}${encodeURI(join(tmp(), "ssh copies"))}` : join(tmp(), "offsite dir");
    const { runs, snapshots } = await chain(store);
    const pushed = [];
    for (const r of runs) pushed.push(await chainPush(store, r, dest, opts));
    assert.equal(pushed.map((p) => p.files), [4, 3, 2], "each archive holds only the files its run shipped");
    const listed = await chainOffsiteRuns(dest, opts);
    assert.equal(listed.map((l) => [l.chain, l.run]), runs.map((r) => [runs[0], r]));
    assert.ok(!existsSync(join(store, ".outbox")) || readdirSync(join(store, ".outbox")).length === 0, "no local archive left behind");
    rmSync(store, { recursive: true }); // only the off-site copies remain
    for (const [i, run] of [[1, runs[1]], [2, "latest"]] as const) {
      const fetched = join(tmp(), "fetched");
      const { run: got, store: from } = await chainFetch(dest, run, fetched, opts);
      assert.is(from, fetched);
      assert.is(got, runs[i]);
      const out = join(tmp(), "run");
      await chainAssemble(fetched, got, out);
      assert.equal(assembled(out), snapshots[i]);
    }
  });
}

test("retention drops whole chains only; a damaged copy is refused (exit 3) and nothing is kept", async () => {
  const store = join(tmp(), "store");
  const dest = join(tmp(), "offsite");
  const { runs } = await chain(store);
  for (const r of runs) await chainPush(store, r, dest, opts);
  // a new chain: a full run after the three
  const ws = tmp();
  writeFileSync(join(ws, "_9.cfs"), randomBytes(1000));
  await chainShip(ws, store, { run: "2026-11-25T100000Z", full: true, before: [] });
  await chainPush(store, "2026-11-25T100000Z", dest, opts);
  assert.equal(await chainPruneOffsite(dest, { ...opts, keepRuns: 2 }), [], "the two newest runs span both chains: nothing goes");
  const dropped = await chainPruneOffsite(dest, { ...opts, keepRuns: 1 });
  assert.equal(dropped, runs.map((r) => `xenon-store-${runs[0]}-${r}.tar.gz`));
  assert.equal((await chainOffsiteRuns(dest, opts)).map((r) => r.run), ["2026-11-25T100000Z"]);
  const gone = await chainFetch(dest, runs[1], join(tmp(), "x"), opts).then(() => null, (e: { message: string; hint?: string }) => e);
  assert.match(gone?.message ?? "", /^no run 2026-11-22T100000Z at /);
  assert.is(gone?.hint, "runs there: 2026-11-25T100000Z");
  // a damaged copy
  const name = readdirSync(dest).find((n) => n.endsWith(".tar.gz"))!;
  const bytes = readFileSync(join(dest, name));
  bytes[bytes.length >> 1] ^= 0xff;
  writeFileSync(join(dest, name), bytes);
  const into = join(tmp(), "fetched");
  const err = await chainFetch(dest, "latest", into, opts).then(() => null, (e: { exitCode?: number; message: string }) => e);
  assert.is(err?.exitCode, 3, err?.message);
  assert.match(err!.message, /sha256/);
  assert.equal(existsSync(into) ? readdirSync(into) : [], []);
});

test("dry run: chainPush says what it would copy and copies nothing", async () => {
  const store = join(tmp(), "store");
  mkdirSync(store);
  const dest = join(tmp(), "offsite");
  const { ctx, logs } = testContext({ argv: ["--dry-run"] });
  testContext();
  const r = await chainPush(store, "2026-11-26T100000Z", dest, { ...opts, ctx });
  assert.is(r.files, 0);
  assert.match(logs(), /pack the files run 2026-11-26T100000Z shipped with its manifest into xenon-store-CHAIN-2026-11-26T100000Z\.tar\.gz and copy it to /);
  assert.ok(!existsSync(dest) || readdirSync(dest).length === 0);
});

test("xenon recipes: DIRECTORY runs copied to the RGW (offsite.to); with the local store gone, run 2 restores from there (directory.from) onto a fresh host", async () => {
  const work = tmp();
  const site = xenonSite(work);
  const env = { LIFEBOAT_OFFSITE_S3_ENDPOINT: s3creds.endpoint, LIFEBOAT_OFFSITE_S3_REGION: s3creds.region, LIFEBOAT_OFFSITE_S3_ACCESS_KEY: s3creds.accessKey, LIFEBOAT_OFFSITE_S3_SECRET_KEY: s3creds.secretKey };
  const dest = `s3://${bucket}/xenon store`;
  const a = await startXenonHost("node-a");
  try {
    await seedExamples(a.url, Array.from({ length: 30 }, (_, i) => `o-${i}`), { blobBytes: 2048 });
    const b1 = await runRecipe("xenon-backup", [...hostFlags(a), "--config", site, "--backup.type=DIRECTORY", "--directory.full", `--offsite.to=${dest}`], { env });
    assert.is(b1.code, 0, b1.output);
    await xenonRequest(`${a.url}/core/examples/o-1`, "DELETE");
    await seedExamples(a.url, ["o-new"]);
    const b2 = await runRecipe("xenon-backup", [...hostFlags(a), "--config", site, "--backup.type=DIRECTORY", `--offsite.to=${dest}`], { env });
    assert.is(b2.code, 0, b2.output);
    assert.match(b2.output, /off-site +s3:\/\/.*xenon-store-.*\.tar\.gz/);
    assert.not.match(b2.output + b1.output, s3creds.secretKey);
    const want = await exampleDocuments(a.url);
    rmSync(join(work, "store"), { recursive: true });
    const fresh = await startXenonHost("node-a");
    const r = await runRecipe("xenon-restore", ["latest", ...hostFlags(fresh, true), "--config", site, `--directory.from=${dest}`, "--yes"], { env });
    assert.is(r.code, 0, r.output);
    assert.equal(diffDocuments(want, await exampleDocuments(fresh.url)), []);
  } finally {
    await stopXenonHosts();
  }
});

test.run();
