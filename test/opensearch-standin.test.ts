// Behaviour of the OpenSearch stand-in (test/standins/opensearch.ts) that lifeboat's Hoss recipe
// relies on: fs snapshots as real files, restore onto a new server, and the real node's refusals.
// Run: node --import=tsx test/opensearch-standin.test.ts
import { test } from "uvu";
import * as assert from "uvu/assert";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startOpenSearch, type RunningOpenSearch } from "./standins/opensearch.ts";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "lifeboat-os-standin-"));
const repoRoot = path.join(tmp, "backup"); // plays path.repo (Hoss: $BACKUP_ROOT/.opensearch)
const running: RunningOpenSearch[] = [];

async function server(name: string, opts: { pathRepo?: string | string[]; user?: string; password?: string } = { pathRepo: repoRoot }) {
  // port 0: the kernel picks a free port on 127.0.0.1
  const s = await startOpenSearch({ port: 0, dataDir: path.join(tmp, name), ...opts });
  running.push(s);
  return s;
}

async function call(s: RunningOpenSearch, method: string, p: string, body?: unknown, headers: Record<string, string> = {}) {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    (init.headers as Record<string, string>)["content-type"] ??= "application/json";
  }
  const r = await fetch(s.url + p, init);
  const text = await r.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: r.status, body: json };
}

const people = Array.from({ length: 25 }, (_, i) => ({
  id: `p${String(i).padStart(3, "0")}`,
  doc: { name: i % 3 ? `Person ${i}` : `Zoë Ångström ${i}`, tags: ["hoss", `t${i % 4}`], n: i, nested: { ok: i % 2 === 0 } },
}));

async function seed(s: RunningOpenSearch, index: string) {
  assert.is((await call(s, "PUT", `/${index}`, { settings: { number_of_replicas: 0 } })).status, 200);
  const nd = people.flatMap((p) => [JSON.stringify({ index: { _index: index, _id: p.id } }), JSON.stringify(p.doc)]).join("\n") + "\n";
  const r = await call(s, "POST", "/_bulk?refresh=true", nd, { "content-type": "application/x-ndjson" });
  assert.is(r.status, 200);
  assert.is(r.body.errors, false);
}

async function allDocs(s: RunningOpenSearch, index: string) {
  const r = await call(s, "POST", `/${index}/_search`, { query: { match_all: {} }, size: 1000, sort: [{ _id: "asc" }] });
  assert.is(r.status, 200, JSON.stringify(r.body));
  return r.body.hits.hits.map((h: any) => ({ id: h._id, doc: h._source }));
}

async function registerRepo(s: RunningOpenSearch, name: string, location: string) {
  return call(s, "PUT", `/_snapshot/${name}`, { type: "fs", settings: { location } });
}

test("seeded documents come back identical after snapshot, index deletion and restore", async () => {
  const s = await server("a");
  await seed(s, "hoss-search");
  const before = await allDocs(s, "hoss-search");
  assert.equal(before, people);

  assert.equal((await registerRepo(s, "hoss", path.join(repoRoot, "a"))).body, { acknowledged: true });
  const snap = await call(s, "PUT", "/_snapshot/hoss/snap-1?wait_for_completion=true", { indices: "hoss-search", include_global_state: false });
  assert.is(snap.status, 200);
  assert.is(snap.body.snapshot.state, "SUCCESS");
  assert.equal(snap.body.snapshot.indices, ["hoss-search"]);
  assert.equal(snap.body.snapshot.shards, { total: 1, failed: 0, successful: 1 });
  // real bytes on disk: repository data, snapshot info, per-index data
  const files = fs.readdirSync(path.join(repoRoot, "a"));
  assert.ok(files.includes("index.latest") && files.some((f) => /^index-\d+$/.test(f)) && files.some((f) => /^snap-.+\.dat$/.test(f)), files.join(" "));
  assert.ok(fs.existsSync(path.join(repoRoot, "a", "indices")));

  assert.equal((await call(s, "DELETE", "/hoss-search")).body, { acknowledged: true });
  assert.is((await call(s, "GET", "/hoss-search/_count")).status, 404);

  const rest = await call(s, "POST", "/_snapshot/hoss/snap-1/_restore?wait_for_completion=true", {});
  assert.is(rest.status, 200, JSON.stringify(rest.body));
  assert.equal(rest.body.snapshot.indices, ["hoss-search"]);
  assert.equal(await allDocs(s, "hoss-search"), before);
  assert.is((await call(s, "GET", "/hoss-search/_count")).body.count, people.length);
  assert.is((await call(s, "GET", "/_cluster/health?wait_for_status=green&timeout=2s")).body.status, "green");
});

test("a snapshot is visible from a fresh server registered over the same location, and restores there", async () => {
  const a = await server("b-old");
  await seed(a, "hoss-search");
  await registerRepo(a, "hoss", path.join(repoRoot, "b"));
  const s1 = await call(a, "PUT", "/_snapshot/hoss/nightly?wait_for_completion=true");
  await a.close();

  const b = await server("b-new"); // a new machine: empty data dir, same backup location
  assert.equal((await call(b, "GET", "/_cat/indices?format=json")).body, []);
  assert.is((await registerRepo(b, "restored-from", path.join(repoRoot, "b"))).status, 200);
  const all = await call(b, "GET", "/_snapshot/restored-from/_all");
  assert.is(all.body.snapshots.length, 1);
  assert.is(all.body.snapshots[0].snapshot, "nightly");
  assert.is(all.body.snapshots[0].uuid, s1.body.snapshot.uuid);
  assert.is(all.body.snapshots[0].state, "SUCCESS");
  assert.equal((await call(b, "GET", "/_snapshot/restored-from/nightly")).body.snapshots[0].indices, ["hoss-search"]);

  const r = await call(b, "POST", "/_snapshot/restored-from/nightly/_restore?wait_for_completion=true");
  assert.is(r.status, 200, JSON.stringify(r.body));
  assert.equal(await allDocs(b, "hoss-search"), people);
});

test("restoring onto an open index with the same name is refused", async () => {
  const s = await server("c");
  await seed(s, "hoss-search");
  await registerRepo(s, "hoss", path.join(repoRoot, "c"));
  await call(s, "PUT", "/_snapshot/hoss/s?wait_for_completion=true");
  const r = await call(s, "POST", "/_snapshot/hoss/s/_restore?wait_for_completion=true");
  assert.is(r.status, 500);
  assert.is(r.body.status, 500);
  assert.is(r.body.error.type, "snapshot_restore_exception");
  assert.is(r.body.error.root_cause[0].type, "snapshot_restore_exception");
  assert.match(r.body.error.reason, "cannot restore index [hoss-search] because an open index with same name already exists");

  // the documented ways out: rename, or close the index first
  const renamed = await call(s, "POST", "/_snapshot/hoss/s/_restore?wait_for_completion=true", { rename_pattern: "(.+)", rename_replacement: "restored-$1" });
  assert.equal(renamed.body.snapshot.indices, ["restored-hoss-search"]);
  assert.equal(await allDocs(s, "restored-hoss-search"), people);
  await call(s, "PUT", "/hoss-search/_doc/extra?refresh=true", { late: true });
  await call(s, "POST", "/hoss-search/_close");
  assert.is((await call(s, "POST", "/_snapshot/hoss/s/_restore?wait_for_completion=true")).status, 200);
  assert.equal(await allDocs(s, "hoss-search"), people);
});

test("a repository location outside path.repo is refused", async () => {
  const s = await server("d");
  const r = await registerRepo(s, "stray", path.join(tmp, "not-under-path-repo"));
  assert.is(r.status, 500);
  assert.is(r.body.error.type, "repository_exception");
  assert.is(r.body.error.reason, "[stray] failed to create repository");
  assert.match(r.body.error.root_cause[0].reason, "doesn't match any of the locations specified by path.repo");
  assert.is((await registerRepo(s, "sneaky", path.join(repoRoot, "..", "escape"))).status, 500);
  assert.is((await call(s, "GET", "/_snapshot/stray")).status, 404);

  const none = await server("d2", {}); // no path.repo at all: every fs location is refused
  const r2 = await registerRepo(none, "any", path.join(repoRoot, "d2"));
  assert.is(r2.status, 500);
  assert.match(r2.body.error.root_cause[0].reason, "because this setting is empty");
});

test("documents and repositories survive a restart of the server", async () => {
  const a = await server("e");
  await seed(a, "hoss-search");
  await call(a, "PUT", "/hoss-search/_doc/late", { after: "seed" }); // in the translog only
  await registerRepo(a, "hoss", path.join(repoRoot, "e"));
  await a.close();
  const b = await startOpenSearch({ port: 0, dataDir: path.join(tmp, "e"), pathRepo: repoRoot });
  running.push(b);
  assert.is((await call(b, "GET", "/hoss-search/_count")).body.count, people.length + 1);
  assert.is((await call(b, "GET", "/_snapshot/hoss")).status, 200);
});

test("search sees new documents only after a refresh; get by id is realtime", async () => {
  const s = await server("f");
  await call(s, "PUT", "/nrt", { settings: { number_of_replicas: 0 } });
  assert.is((await call(s, "PUT", "/nrt/_doc/1", { a: 1 })).status, 201);
  assert.is((await call(s, "GET", "/nrt/_count")).body.count, 0);
  assert.is((await call(s, "GET", "/nrt/_doc/1")).body.found, true);
  await call(s, "POST", "/nrt/_refresh");
  assert.is((await call(s, "GET", "/nrt/_count")).body.count, 1);
});

test("a corrupted snapshot blob makes the restore fail instead of restoring bad data", async () => {
  const s = await server("g");
  await seed(s, "hoss-search");
  await registerRepo(s, "hoss", path.join(repoRoot, "g"));
  await call(s, "PUT", "/_snapshot/hoss/s?wait_for_completion=true");
  const shardDir = fs.readdirSync(path.join(repoRoot, "g", "indices")).map((d) => path.join(repoRoot, "g", "indices", d, "0"))[0];
  const blob = fs.readdirSync(shardDir).find((f) => f.startsWith("__"))!;
  const bytes = fs.readFileSync(path.join(shardDir, blob));
  bytes[bytes.length - 5] ^= 0xff;
  fs.writeFileSync(path.join(shardDir, blob), bytes);
  await call(s, "DELETE", "/hoss-search");
  const r = await call(s, "POST", "/_snapshot/hoss/s/_restore?wait_for_completion=true");
  assert.is(r.status, 500);
  assert.match(r.body.error.reason, "checksum failed");
  assert.is((await call(s, "GET", "/hoss-search")).status, 404);
});

test("with --user/--password-file, requests without the right basic auth get 401", async () => {
  const s = await server("h", { pathRepo: repoRoot, user: "admin", password: "s3cret" });
  const no = await call(s, "GET", "/");
  assert.is(no.status, 401);
  assert.is((await call(s, "GET", "/", undefined, { authorization: "Basic " + Buffer.from("admin:wrong").toString("base64") })).status, 401);
  const yes = await call(s, "GET", "/", undefined, { authorization: "Basic " + Buffer.from("admin:s3cret").toString("base64") });
  assert.is(yes.status, 200);
  assert.is(yes.body.version.number, "2.11.0");
});

test.after(async () => {
  for (const s of running) await s.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

test.run();
