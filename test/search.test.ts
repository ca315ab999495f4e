// lib/search.ts against the OpenSearch stand-in (in-process on 127.0.0.1): register, snapshot,
// list, latest, retention, restore (delete or close what is in the way), PARTIAL/FAILED errors,
// auth, and dry runs that change nothing.
// Run: bash test/run.sh test/search.test.ts
// deno: yes
import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import {
  createContext,
  httpJson,
  LifeboatError,
  searchCheckSnapshot,
  searchDeleteSnapshots,
  searchHealth,
  searchHealthProbe,
  searchLatestSnapshot,
  searchListSnapshots,
  searchRegisterRepository,
  searchRestore,
  searchSnapshot,
  waitForHealthy,
  type Context,
} from "../lib/internal.ts";
import { startOpenSearch, type RunningOpenSearch } from "./standins/opensearch.ts";
import { cleanupTmp, freePort, testContext, tmp } from "./helpers.ts";

testContext();
const root = tmp("lifeboat-search-");
const pathRepo = join(root, "snapshots");
const running: RunningOpenSearch[] = [];
let n = 0;

async function server(opts: { user?: string; password?: string } = {}): Promise<{ url: string; repo: string; location: string }> {
  const s = await startOpenSearch({ port: await freePort(), dataDir: join(root, `node-${++n}`), pathRepo, ...opts });
  running.push(s);
  return { url: s.url, repo: `repo-${n}`, location: join(pathRepo, `r${n}`) };
}

/** An index with count documents, replicas 0 unless asked (a one-node cluster is then green). */
async function seed(url: string, index: string, count: number, settings: Record<string, unknown> = { number_of_replicas: 0 }) {
  await httpJson(`${url}/${index}`, { method: "PUT", body: { settings } });
  const nd = Array.from({ length: count }, (_, i) => `{"index":{"_id":"d${i}"}}\n${JSON.stringify({ n: i, name: `doc ${i}` })}\n`).join("");
  await httpJson(`${url}/${index}/_bulk?refresh=true`, { method: "POST", body: nd, headers: { "content-type": "application/x-ndjson" } });
}

const count = (url: string, index: string) => httpJson<{ count: number }>(`${url}/${index}/_count`).then((r) => r.count);
const state = (url: string, index: string) =>
  httpJson<{ index: string; status: string }[]>(`${url}/_cat/indices/${index}?format=json&h=index,status`).then((r) => r[0]?.status);

/** Runs fn and returns the LifeboatError it throws (fails the test when it does not throw one). */
async function failure(fn: () => Promise<unknown>): Promise<LifeboatError> {
  let thrown: unknown = "nothing was thrown";
  try {
    await fn();
  } catch (e) {
    thrown = e;
  }
  assert.instance(thrown, LifeboatError, `expected a LifeboatError: ${String(thrown)}`);
  return thrown as LifeboatError;
}

/** A dry-run context whose log is captured (the default context stays the real one). */
function dryRun(): { dry: Context; logs: () => string } {
  let text = "";
  const dry = createContext({ name: "dry", argv: ["--dry-run"], env: {}, sink: { write: (s: string) => (text += s), isTTY: false }, interactive: false });
  return { dry, logs: () => text };
}

test("register, snapshot and list: the snapshot ends SUCCESS with the chosen indices, files on disk", async () => {
  const { url, repo, location } = await server();
  await seed(url, "logs-a", 5);
  await seed(url, "logs-b", 3);
  await searchRegisterRepository(url, repo, { location });
  const snap = await searchSnapshot(url, repo, "s1", { indices: ["logs-a"], includeGlobalState: false, pollIntervalMs: 50 });
  assert.is(snap.state, "SUCCESS");
  assert.equal(snap.indices, ["logs-a"]);
  assert.is(snap.shards.failed, 0);
  assert.ok(readdirSync(location).some((f) => /^snap-.+\.dat$/.test(f)), "snapshot files in the repository location");
  // held-open request mode gives the same answer
  const all = await searchSnapshot(url, repo, "s2", { includeGlobalState: true, pollIntervalMs: 0 });
  assert.equal(all.indices, ["logs-a", "logs-b"]);
  const list = await searchListSnapshots(url, repo);
  assert.equal(list.map((s) => s.name), ["s1", "s2"]);
  assert.ok(list[0].start.getTime() <= list[1].start.getTime());
});

test("a snapshot or repository named '.', '..', '' or '_…' is refused before any request: a snapshot '..' would have been a PUT on the repository itself", async () => {
  const { url, repo, location } = await server();
  await searchRegisterRepository(url, repo, { location });
  for (const name of ["..", ".", "", "_all"]) {
    const e = await failure(() => searchSnapshot(url, repo, name, { indices: ["x"], includeGlobalState: false }));
    assert.match(e.message, /is not a valid repository, snapshot or index name/);
  }
  const e = await failure(() => searchListSnapshots(url, ".."));
  assert.match(e.message, /is not a valid repository, snapshot or index name/);
  assert.equal((await httpJson<Record<string, unknown>>(`${url}/_snapshot/${repo}`))[repo] !== undefined, true, "the repository is still registered");
});

test("latest is the newest SUCCESS snapshot; an empty repository says there is none", async () => {
  const { url, repo, location } = await server();
  await seed(url, "ix", 2);
  await searchRegisterRepository(url, repo, { location });
  const e = await failure(() => searchLatestSnapshot(url, repo));
  assert.match(e.message, "holds no SUCCESS snapshot");
  for (const name of ["20240101-000000", "20240102-000000", "20240103-000000"]) {
    await searchSnapshot(url, repo, name, { includeGlobalState: false, pollIntervalMs: 20 });
    await new Promise((r) => setTimeout(r, 5)); // distinct start times
  }
  assert.is((await searchLatestSnapshot(url, repo)).name, "20240103-000000");
});

test("delete with keepLast keeps the newest N and removes the rest from the repository", async () => {
  const { url, repo, location } = await server();
  await seed(url, "ix", 2);
  await searchRegisterRepository(url, repo, { location });
  for (const name of ["a1", "a2", "a3", "a4"]) {
    await searchSnapshot(url, repo, name, { includeGlobalState: false, pollIntervalMs: 20 });
    await new Promise((r) => setTimeout(r, 5));
  }
  const r = await searchDeleteSnapshots(url, repo, { keepLast: 2 });
  assert.equal(r.deleted, ["a1", "a2"]);
  assert.equal(r.kept, ["a3", "a4"]);
  assert.equal((await searchListSnapshots(url, repo)).map((s) => s.name), ["a3", "a4"]);
  // LambdaStack's retention: only the newest stays; olderThan never takes the newest SUCCESS one
  assert.equal((await searchDeleteSnapshots(url, repo, { olderThan: 0 })).deleted, ["a3"]);
  assert.equal((await searchListSnapshots(url, repo)).map((s) => s.name), ["a4"]);
  assert.match((await failure(() => searchDeleteSnapshots(url, repo, { names: ["nope"] }))).message, "has no snapshot nope");
  assert.match((await failure(() => searchDeleteSnapshots(url, repo, { keepLast: 0 }))).message, "keepLast must be");
});

test("restore after deleting an index brings its documents back", async () => {
  const { url, repo, location } = await server();
  await seed(url, "events", 40);
  await searchRegisterRepository(url, repo, { location });
  const snap = await searchSnapshot(url, repo, "before", { includeGlobalState: true, pollIntervalMs: 20 });
  await httpJson(`${url}/events`, { method: "DELETE" });
  assert.is(await state(url, "*"), undefined);
  const r = await searchRestore(url, repo, snap.name, { existing: "delete", includeGlobalState: true, timeoutMs: 10_000 });
  assert.equal(r.indices, ["events"]);
  assert.equal(r.deleted, []);
  await httpJson(`${url}/events/_refresh`, { method: "POST" });
  assert.is(await count(url, "events"), 40);
});

test("restore with existing open indices closes them first, then replaces them; only the chosen ones", async () => {
  const { url, repo, location } = await server();
  await seed(url, "keep-me", 4);
  await seed(url, "replace-me", 10);
  await searchRegisterRepository(url, repo, { location });
  await searchSnapshot(url, repo, "s", { includeGlobalState: false, pollIntervalMs: 20 });
  await httpJson(`${url}/replace-me/_doc/late?refresh=true`, { method: "PUT", body: { late: true } });
  await httpJson(`${url}/keep-me/_doc/late?refresh=true`, { method: "PUT", body: { late: true } });
  assert.is(await count(url, "replace-me"), 11);
  const r = await searchRestore(url, repo, "s", { existing: "close", includeGlobalState: false, indices: ["*", "-keep-*"], timeoutMs: 10_000 });
  assert.equal(r.closed, ["replace-me"]);
  assert.equal(r.indices, ["replace-me"]);
  await httpJson(`${url}/replace-me/_refresh`, { method: "POST" });
  assert.is(await count(url, "replace-me"), 10, "the late document is gone: the index came from the snapshot");
  assert.is(await state(url, "replace-me"), "open");
  assert.is(await count(url, "keep-me"), 5, "an index left out was not touched");
});

test("restore waits for yellow: a restored index with replicas on one node is yellow, and that is enough", async () => {
  const { url, repo, location } = await server();
  await seed(url, "with-replicas", 3, { number_of_replicas: 1 });
  await searchRegisterRepository(url, repo, { location });
  await searchSnapshot(url, repo, "s", { includeGlobalState: false, pollIntervalMs: 20 });
  await searchRestore(url, repo, "s", { existing: "close", includeGlobalState: false, timeoutMs: 10_000 });
  assert.is((await searchHealth(url)).status, "yellow");
  const green = await failure(() =>
    waitForHealthy(searchHealthProbe(url, { atLeast: "green" }), { timeoutMs: 300, intervalMs: 100, maxIntervalMs: 100 })
  );
  assert.match(green.message, "gave up waiting");
});

test("a snapshot of a red index is refused with a clear error; with partial it ends PARTIAL and that throws too", async () => {
  const { url, repo, location } = await server();
  await seed(url, "fine", 2);
  await httpJson(`${url}/stuck`, { method: "PUT", body: { settings: { number_of_replicas: 0, "index.routing.allocation.require._name": "another-node" } } });
  assert.is((await searchHealth(url)).status, "red");
  await searchRegisterRepository(url, repo, { location });
  const refused = await failure(() => searchSnapshot(url, repo, "whole", { includeGlobalState: false, pollIntervalMs: 20 }));
  assert.match(refused.message, "snapshot whole in repository");
  assert.match(refused.message, "Indices don't have primary shards [stuck]");
  assert.match(refused.hint ?? "", "red");
  const partial = await failure(() => searchSnapshot(url, repo, "some", { includeGlobalState: false, partial: true, pollIntervalMs: 20 }));
  assert.match(partial.message, "ended PARTIAL, not SUCCESS");
  assert.match(partial.message, "stuck[0]: primary shard is not allocated");
  assert.match(partial.message, "1 of 2 shards failed");
  // the PARTIAL snapshot is listed, is not "latest", and its missing index is not restored
  assert.equal((await searchListSnapshots(url, repo)).map((s) => `${s.name} ${s.state}`), ["some PARTIAL"]);
  await failure(() => searchLatestSnapshot(url, repo));
  assert.is((await searchLatestSnapshot(url, repo, { includePartial: true })).name, "some");
  const restore = await failure(() => searchRestore(url, repo, "some", { existing: "delete", includeGlobalState: false }));
  assert.match(restore.message, "did not store stuck");
});

test("a snapshot name already taken is refused by default; existing 'use' takes a SUCCESS one as it is, and deletes and retakes a PARTIAL one (a resumed run's own name)", async () => {
  const { url, repo, location } = await server();
  await seed(url, "fine", 2);
  await searchRegisterRepository(url, repo, { location });
  const first = await searchSnapshot(url, repo, "run-1", { includeGlobalState: false, pollIntervalMs: 20 });
  const refused = await failure(() => searchSnapshot(url, repo, "run-1", { includeGlobalState: false, pollIntervalMs: 20 }));
  assert.match(refused.message, "same name already exists");
  for (const pollIntervalMs of [20, 0]) {
    const again = await searchSnapshot(url, repo, "run-1", { includeGlobalState: false, pollIntervalMs, existing: "use" });
    assert.is(again.state, "SUCCESS");
    assert.is(again.uuid, first.uuid, "the snapshot already there, not a new one");
  }
  assert.equal((await searchListSnapshots(url, repo)).map((s) => s.name), ["run-1"]);

  await httpJson(`${url}/stuck`, { method: "PUT", body: { settings: { number_of_replicas: 0, "index.routing.allocation.require._name": "another-node" } } });
  const partial = await failure(() => searchSnapshot(url, repo, "run-2", { includeGlobalState: false, partial: true, pollIntervalMs: 20 }));
  assert.match(partial.message, "ended PARTIAL");
  const partialUuid = (await searchListSnapshots(url, repo)).find((s) => s.name === "run-2")!.uuid;
  await httpJson(`${url}/stuck`, { method: "DELETE" }); // the cause is fixed; the run is resumed
  const retaken = await searchSnapshot(url, repo, "run-2", { includeGlobalState: false, partial: true, pollIntervalMs: 20, existing: "use" });
  assert.is(retaken.state, "SUCCESS");
  assert.is.not(retaken.uuid, partialUuid, "the PARTIAL one was deleted and the snapshot taken again");
  assert.equal((await searchListSnapshots(url, repo)).map((s) => `${s.name} ${s.state}`), ["run-1 SUCCESS", "run-2 SUCCESS"]);
});

test("a FAILED snapshot (as Elasticsearch before 7.6 records a refused one) names its reason", () => {
  let thrown: unknown;
  try {
    searchCheckSnapshot({
      name: "20200331-000218", uuid: "P9oZ", state: "FAILED", indices: ["logs"], includeGlobalState: true, start: new Date(0),
      shards: { total: 2, successful: 0, failed: 2 }, reason: "Indices don't have primary shards [logs]",
      failures: [{ index: "logs", shard: 0, reason: "primary shard is not allocated" }, { index: "logs", shard: 1, reason: "primary shard is not allocated" }],
    }, "lambdastack");
  } catch (e) {
    thrown = e;
  }
  assert.instance(thrown, LifeboatError);
  const e = thrown as LifeboatError;
  assert.match(e.message, "snapshot 20200331-000218 in repository lambdastack ended FAILED, not SUCCESS");
  assert.match(e.message, "reason: Indices don't have primary shards [logs]");
  assert.match(e.message, "logs[1]: primary shard is not allocated");
  assert.match(e.hint ?? "", "writable");
});

test("a repository name that differs in case (LambdaStack vs lambdastack) is named in the error", async () => {
  const { url, location } = await server();
  await searchRegisterRepository(url, "LambdaStack", { location });
  const e = await failure(() => searchListSnapshots(url, "lambdastack"));
  assert.match(e.message, "snapshot repository lambdastack is not registered");
  assert.match(e.message, "registered: LambdaStack");
  assert.match(e.hint ?? "", "did you mean LambdaStack");
});

test("a location outside path.repo says to add it to path.repo", async () => {
  const { url, repo } = await server();
  const e = await failure(() => searchRegisterRepository(url, repo, { location: join(root, "elsewhere"), retries: 0 }));
  assert.match(e.message, `registering snapshot repository ${repo}`);
  assert.match(e.hint ?? "", "path.repo");
});

test("basic auth reaches a secured node; without it the error says 401", async () => {
  const { url, repo, location } = await server({ user: "admin", password: "s3cret-pw" });
  const auth = { username: "admin", password: "s3cret-pw" };
  await searchRegisterRepository(url, repo, { location, auth });
  await searchSnapshot(url, repo, "s", { includeGlobalState: false, pollIntervalMs: 20, auth });
  assert.equal((await searchListSnapshots(url, repo, { auth })).map((s) => s.name), ["s"]);
  await waitForHealthy(searchHealthProbe(url, { auth }), { timeoutMs: 2000 });
  const e = await failure(() => searchListSnapshots(url, repo, { retries: 0 }));
  assert.match(e.message, "401");
});

test("dry-run: register, snapshot, delete and restore print their calls and change nothing", async () => {
  const { url, repo, location } = await server();
  await seed(url, "events", 6);
  await searchRegisterRepository(url, repo, { location });
  await searchSnapshot(url, repo, "real", { includeGlobalState: false, pollIntervalMs: 20 });
  await new Promise((r) => setTimeout(r, 5));
  await searchSnapshot(url, repo, "real2", { includeGlobalState: false, pollIntervalMs: 20 });
  await httpJson(`${url}/events/_doc/late?refresh=true`, { method: "PUT", body: { late: true } });

  const { dry, logs } = dryRun();
  const otherLocation = join(pathRepo, "dry");
  await searchRegisterRepository(url, "dry-repo", { location: otherLocation, ctx: dry });
  const snap = await searchSnapshot(url, repo, "would-be", { includeGlobalState: false, ctx: dry });
  assert.is(snap.dryRun, true);
  assert.is(snap.state, "SUCCESS");
  const del = await searchDeleteSnapshots(url, repo, { keepLast: 1, ctx: dry });
  assert.equal(del.deleted, ["real"]);
  const r = await searchRestore(url, repo, "real", { existing: "close", includeGlobalState: false, ctx: dry });
  assert.equal(r.closed, ["events"]);
  assert.is(r.dryRun, true);

  assert.equal((await searchListSnapshots(url, repo)).map((s) => s.name), ["real", "real2"], "no snapshot taken or deleted");
  assert.is(existsSync(otherLocation), false, "no repository location made");
  await httpJson(`${url}/_snapshot/dry-repo`, { expect: [404] }); // throws when it was registered
  assert.is(await state(url, "events"), "open", "the index was not closed");
  assert.is(await count(url, "events"), 7, "the late document is still there: nothing was restored");
  const out = logs();
  for (const call of [`PUT ${url}/_snapshot/dry-repo`, `PUT ${url}/_snapshot/${repo}/would-be`, `DELETE ${url}/_snapshot/${repo}/real`, `POST ${url}/events/_close`, `POST ${url}/_snapshot/${repo}/real/_restore`]) {
    assert.ok(out.includes(call), `dry-run printed ${call}:\n${out}`);
  }
  assert.match(out, "dry-run");
});

test.after(async () => {
  for (const s of running) await s.close();
  cleanupTmp();
});

test.run();
