// lib/filechain.ts: retention of a local store (chainPrune keeps every file a kept run lists,
// across two chains, and each kept run still reassembles byte for byte); with the workspace on
// another host (Xenon DIRECTORY over ssh): chainWanted names only the files the store's chain
// does not hold; chainShip {listing} ships the fetched ones, lists every file of the snapshot,
// and refuses a fetched file whose size is not the host's. No lab: the "host" listing is given
// as data.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { chainAssemble, chainPrune, chainRunName, chainRuns, chainShip, chainWanted, listNames, VerifyError } from "../lib/mod.ts";
import { cleanupTmp, testContext, tmp } from "./helpers.ts";

testContext();
test.after(() => cleanupTmp());

/** Writes files into a fresh folder; returns it and their listing. */
function fetched(files: Record<string, string>): { dir: string; listing: { name: string; size: number }[] } {
  const dir = join(tmp(), "fetched");
  mkdirSync(dir);
  for (const [n, body] of Object.entries(files)) writeFileSync(join(dir, n), body);
  return { dir, listing: Object.entries(files).map(([name, body]) => ({ name, size: Buffer.byteLength(body) })) };
}

test("chainWanted: a full run wants every file, an incremental one only the names (or sizes) its chain does not hold", async () => {
  const store = join(tmp(), "store");
  const one = fetched({ "_0.cfs": "zero", "segments_1": "s1" });
  assert.equal(chainWanted(store, one.listing, { full: true, before: [] }), ["_0.cfs", "segments_1"]);
  await chainShip(one.dir, store, { run: "2026-11-30T010000Z", full: true, before: [], listing: one.listing });
  const host = [{ name: "_0.cfs", size: 4 }, { name: "_1.cfs", size: 3 }, { name: "segments_2", size: 2 }, { name: "segments_1", size: 99 }];
  assert.equal(chainWanted(store, host, { full: false, before: ["_0.cfs", "segments_1"] }), ["_1.cfs", "segments_2", "segments_1"]);
  assert.equal(chainWanted(store, host, { full: false, before: ["segments_1"] }), ["_0.cfs", "_1.cfs", "segments_2", "segments_1"], "a name not in the workspace before the PATCH is fetched");
});

test("chainShip {listing}: run 2 ships only the fetched files and lists every file; a fetched size other than the host's is refused (exit 3) and writes no run", async () => {
  const store = join(tmp(), "store");
  const one = fetched({ "_0.cfs": "zero", "segments_1": "s1" });
  await chainShip(one.dir, store, { run: "2026-11-30T010000Z", full: true, before: [], listing: one.listing });
  const two = fetched({ "_1.cfs": "one" });
  const listing = [{ name: "_0.cfs", size: 4 }, { name: "_1.cfs", size: 3 }, { name: "segments_2", size: 2 }];
  writeFileSync(join(two.dir, "segments_2"), "s2");
  const r = await chainShip(two.dir, store, { run: "2026-11-30T020000Z", full: false, before: ["_0.cfs", "segments_1"], listing });
  assert.equal(r.files.map((f) => f.name), ["_0.cfs", "_1.cfs", "segments_2"]);
  assert.equal(r.shipped, ["_1.cfs", "segments_2"]);
  assert.equal(r.removed, ["segments_1"]);
  const three = fetched({ "_2.cfs": "cut" });
  const err = await chainShip(three.dir, store, { run: "2026-11-30T030000Z", full: false, before: listing.map((f) => f.name), listing: [...listing, { name: "_2.cfs", size: 300 }] }).then(() => null, (e) => e);
  assert.ok(err instanceof VerifyError, String(err));
  assert.match(err.message, /_2\.cfs: 3 bytes fetched into .*, the host listed 300/);
  assert.is(err.exitCode, 3);
  assert.equal(chainRuns(store).map((x) => x.run), ["2026-11-30T010000Z", "2026-11-30T020000Z"]);
  assert.ok(!existsSync(join(store, "runs", "2026-11-30T030000Z.json")));
});

test("two runs within one second get two names (chainRunName), and chainShip never replaces a run's manifest", async () => {
  const store = join(tmp(), "store");
  const now = new Date("2026-11-30T02:58:43.200Z");
  assert.is(chainRunName(store, now), "2026-11-30T025843Z", "an empty store: the stamp of now");
  const one = fetched({ "_0.cfs": "zero", "segments_1": "s1" });
  await chainShip(one.dir, store, { run: chainRunName(store, now), full: true, before: [] });
  const second = chainRunName(store, new Date("2026-11-30T02:58:43.900Z"));
  assert.is(second, "2026-11-30T025844Z", "the same second as the newest run: the second after it");
  const two = fetched({ "_0.cfs": "zero", "_1.cfs": "one", "segments_2": "s2" });
  await chainShip(two.dir, store, { run: second, full: false, before: ["_0.cfs", "segments_1"] });
  assert.equal(chainRuns(store).map((r) => r.run), ["2026-11-30T025843Z", "2026-11-30T025844Z"]);
  assert.is(chainRunName(store, new Date("2026-11-30T02:59:00Z")), "2026-11-30T025900Z", "a later second: the stamp of now");
  const err = await chainShip(two.dir, store, { run: "2026-11-30T025844Z", full: false, before: ["_0.cfs", "_1.cfs", "segments_2"] }).then(() => null, (e) => e);
  assert.match(String(err?.message), /already holds a run 2026-11-30T025844Z/);
  assert.equal(chainRuns(store).map((r) => r.full), [true, false], "both manifests as shipped");
});

test("a resumed run finds its own work: its manifest is returned as it is, and files a killed ship already copied still count as this run's shipped", async () => {
  const store = join(tmp(), "store");
  const one = fetched({ "_0.cfs": "zero", "segments_1": "s1" });
  await chainShip(one.dir, store, { run: "2026-11-30T030000Z", full: true, before: [] });
  const two = fetched({ "_0.cfs": "zero", "_1.cfs": "one", "segments_2": "s2" });
  const before = ["_0.cfs", "segments_1"];
  // killed while shipping: _1.cfs copied into the chain, no manifest written
  writeFileSync(join(store, "files", "2026-11-30T030000Z", "_1.cfs"), "one");
  const r = await chainShip(two.dir, store, { run: "2026-11-30T030100Z", full: false, before, resumed: true });
  assert.equal(r.shipped!.sort(), ["_1.cfs", "segments_2"], "what the chain's newest run did not hold, copied now or before");
  assert.is(r.shippedBytes, 5);
  // killed after the manifest was written: the resumed ship returns that manifest, and writes nothing
  const again = await chainShip(two.dir, store, { run: "2026-11-30T030100Z", full: false, before, resumed: true });
  assert.equal(again, JSON.parse(readFileSync(join(store, "runs", "2026-11-30T030100Z.json"), "utf8")));
  assert.equal(again.shipped!.sort(), ["_1.cfs", "segments_2"]);
  assert.equal(chainRuns(store).map((x) => x.run), ["2026-11-30T030000Z", "2026-11-30T030100Z"]);
});

test("chainPrune keeps every file a kept run lists across two chains, removes the rest, and each kept run still reassembles byte for byte", async () => {
  const store = join(tmp(), "store");
  const ws = join(tmp(), "workspace");
  mkdirSync(ws);
  // a Lucene-like index: immutable files, each commit point naming what it needs
  const bytes = new Map<string, Buffer>();
  const file = (name: string) => {
    if (!bytes.has(name)) bytes.set(name, randomBytes(200 + bytes.size * 37));
    return bytes.get(name)!;
  };
  /** One DIRECTORY backup: the workspace becomes exactly `names` (new ones added, unused ones deleted), then shipped. */
  const snapshots = new Map<string, Record<string, string>>();
  const backup = async (run: string, names: string[], full = false) => {
    if (full) for (const n of listNames(ws)) rmSync(join(ws, n)); // the daily full clears the workspace
    const before = listNames(ws);
    for (const n of before) if (!names.includes(n)) rmSync(join(ws, n));
    for (const n of names) if (!before.includes(n)) writeFileSync(join(ws, n), file(n));
    await chainShip(ws, store, { run, full, before });
    snapshots.set(run, Object.fromEntries(names.map((n) => [n, file(n).toString("hex")])));
  };
  const A = "2026-11-30T010000Z";
  const B = "2026-11-30T050000Z";
  await backup(A, ["_0.cfs", "_0.si", "segments_1"], true);
  await backup("2026-11-30T020000Z", ["_0.cfs", "_0.si", "_1.cfs", "_1.si", "segments_2"]);
  await backup("2026-11-30T030000Z", ["_0.cfs", "_0.si", "_1.cfs", "_1.si", "_2.cfs", "_2.si", "segments_3"]);
  await backup("2026-11-30T040000Z", ["_2.cfs", "_2.si", "_3.cfs", "_3.si", "segments_4"]); // a merge dropped _0 and _1
  await backup(B, ["_2.cfs", "_2.si", "_3.cfs", "_3.si", "segments_4"], true); // the next daily full: a new chain
  await backup("2026-11-30T060000Z", ["_2.cfs", "_2.si", "_3.cfs", "_3.si", "_4.cfs", "_4.si", "segments_5"]);
  assert.equal(chainRuns(store).map((r) => r.chain), [A, A, A, A, B, B]);
  const stored = (chain: string) => readdirSync(join(store, "files", chain)).sort();
  assert.equal(stored(A), ["_0.cfs", "_0.si", "_1.cfs", "_1.si", "_2.cfs", "_2.si", "_3.cfs", "_3.si", "segments_1", "segments_2", "segments_3", "segments_4"]);

  const p = await chainPrune(store, { keepRuns: 3 });
  assert.equal(p.runs, [A, "2026-11-30T020000Z", "2026-11-30T030000Z"]);
  const gone = ["_0.cfs", "_0.si", "_1.cfs", "_1.si", "segments_1", "segments_2", "segments_3"];
  assert.is(p.files, gone.length);
  assert.is(p.bytes, gone.reduce((n, f) => n + file(f).length, 0));
  assert.equal(chainRuns(store).map((r) => r.run), ["2026-11-30T040000Z", B, "2026-11-30T060000Z"]);
  assert.equal(stored(A), ["_2.cfs", "_2.si", "_3.cfs", "_3.si", "segments_4"], "chain A keeps exactly what its kept run 4 lists, though run 1 (its full) is gone");
  assert.equal(stored(B), ["_2.cfs", "_2.si", "_3.cfs", "_3.si", "_4.cfs", "_4.si", "segments_4", "segments_5"], "chain B untouched");
  const reassembled = async (run: string) => {
    const dir = join(tmp(), `run-${run}`);
    await chainAssemble(store, run, dir);
    return Object.fromEntries(readdirSync(dir).sort().map((n) => [n, readFileSync(join(dir, n)).toString("hex")]));
  };
  for (const run of ["2026-11-30T040000Z", B, "2026-11-30T060000Z"]) assert.equal(await reassembled(run), snapshots.get(run), `run ${run} byte for byte`);
  const err = await chainAssemble(store, "2026-11-30T020000Z", join(tmp(), "x")).then(() => null, (e: Error) => e);
  assert.match(String(err?.message), /no run 2026-11-30T020000Z/);

  // keep 2: run 4 goes, and with it the whole of chain A
  const q = await chainPrune(store, { keepRuns: 2 });
  assert.equal(q.runs, ["2026-11-30T040000Z"]);
  assert.is(q.files, 5);
  assert.ok(!existsSync(join(store, "files", A)), "a chain none of whose runs is kept is removed whole");
  for (const run of [B, "2026-11-30T060000Z"]) assert.equal(await reassembled(run), snapshots.get(run), `run ${run} byte for byte`);
});

test.run();
