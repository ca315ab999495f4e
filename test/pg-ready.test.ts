// pgReady: a restore into a database that is still starting waits until it accepts
// connections, and gives up with a clear message when it never does.
// needs: docker
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { dockerRm, exec, pgLoadDumpAll, pgReady, psqlFile, psqlQuery } from "../lib/mod.ts";
import { cleanupTmp, tmp } from "./helpers.ts";
import { needLab } from "../tasks/drills/lab.ts";

const lab = needLab("docker");
const name = `lifeboat-pgready-${process.pid}`;

test.after(async () => {
  await dockerRm(name, { force: true, volumes: true, missingOk: true });
});

test("pgReady waits for a container whose PostgreSQL is still starting", async () => {
  // started without waiting: initdb and startup take a second or more
  await exec(["docker", "run", "-d", "--name", name, "--label", "lifeboat-lab=1", "--stop-signal", "SIGINT", "-e", "POSTGRES_PASSWORD", lab.LAB_PG_IMAGE], { env: { POSTGRES_PASSWORD: "pgready-test" }, stdout: "ignore" });
  const first = await exec(["docker", "exec", "-u", "postgres", name, "pg_isready", "-q"], { readOnly: true, okCodes: [0, 1, 2] });
  assert.is.not(first.code, 0, "the server is still starting when pgReady begins");
  const r = await pgReady({ container: name }, { timeoutMs: 60_000, intervalMs: 200, maxIntervalMs: 500 });
  assert.ok(r.attempts >= 1);
  const probe = await exec(["docker", "exec", "-u", "postgres", name, "pg_isready", "-q"], { readOnly: true });
  assert.is(probe.code, 0);
});

test("pgReady gives up after its timeout, naming the server", async () => {
  try {
    await pgReady({ container: name, port: 1 }, { timeoutMs: 1500, intervalMs: 200, maxIntervalMs: 200 });
    assert.unreachable("a server on port 1 is never ready");
  } catch (e) {
    assert.match((e as Error).message, /gave up waiting for PostgreSQL \(container lifeboat-pgready-\d+ → localhost:1\)/);
  }
});

test("pgLoadDumpAll with a marker loads again over a load that was cut off, and not again over one that finished; without one the retry fails", async () => {
  const dir = tmp();
  const dump = join(dir, "dump_all.sql");
  writeFileSync(dump, "CREATE ROLE app;\nCREATE DATABASE shop OWNER app;\n\\connect shop\nCREATE TABLE t (x int);\nINSERT INTO t VALUES (1);\n");
  const where = { container: name };
  await psqlFile(where, dump); // the first load, as if it had been cut off after it made things
  try {
    await pgLoadDumpAll(where, dump);
    assert.unreachable("a plain retry onto the half-loaded server fails");
  } catch (e) {
    assert.match((e as Error).message, /already exists/);
  }
  const marker = join(dir, ".load-started");
  writeFileSync(marker, ""); // an empty marker (as an older lifeboat touched it): started
  await pgLoadDumpAll(where, dump, { marker });
  assert.is(readFileSync(marker, "utf8"), "done\n", "the marker says done after a whole load");
  assert.equal(await psqlQuery(where, "SELECT count(*) FROM t", { database: "shop" }), [["1"]], "loaded once, not twice");
  // killed after the load, before the restore recorded it: the retry loads nothing (no "already exists")
  const again = await pgLoadDumpAll(where, dump, { marker });
  assert.is(again.ms, 0);
  assert.equal(await psqlQuery(where, "SELECT count(*) FROM t", { database: "shop" }), [["1"]], "still loaded once");
  cleanupTmp();
});

test.run();
