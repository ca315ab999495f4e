// lib/postgres.ts against the lab: dumps from a container, the host clusters and over ssh,
// loaded into fresh servers and compared row for row; hostile names; failures; dry-run.
// Run: node --import=tsx test/postgres.test.ts
// needs: docker pg sshd
import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { Readable } from "node:stream";
import { gunzipSync } from "node:zlib";
import { exec, LifeboatError } from "../lib/mod.ts";
import { pgDump, pgDumpAll, pgRestore, psqlFile, psqlQuery, type PgWhere } from "../lib/postgres.ts";
import { containerExists, dockerExec, dockerRm } from "../lib/docker.ts";
import { cleanupTmp, testContext, tmp, freePort } from "./helpers.ts";
import { needLab } from "../tasks/drills/lab.ts";

const lab = needLab("docker", "pg", "sshd");
process.env.DOCKER_HOST = lab.LAB_DOCKER_HOST;
const { logs } = testContext();

const source: PgWhere = { host: "127.0.0.1", port: Number(lab.LAB_PG_PORT), user: "postgres", passwordFile: lab.LAB_PG_PASSWORD_FILE, binDir: lab.LAB_PG_BIN };
const target: PgWhere = { ...source, port: Number(lab.LAB_PG_TARGET_PORT) };
const ssh = { host: lab.LAB_SSH_HOST, port: Number(lab.LAB_SSH_PORT), user: lab.LAB_SSH_USER, identityFile: lab.LAB_SSH_KEY, knownHostsFile: lab.LAB_SSH_KNOWN_HOSTS };
const labContainer: PgWhere = { container: lab.LAB_PG_CONTAINER };
const KEY = "lifeboatTestKey";

// ---- fixtures -----------------------------------------------------------------------------

const made: string[] = [];


/** A fresh PostgreSQL container from the lab image, published on 127.0.0.1 (removed after the tests). */
async function freshContainer(tag: string): Promise<{ inside: PgWhere; tcp: { host: string; port: number; user: string; passwordFile: string } }> {
  const name = `lifeboat-test-pg-${tag}-${process.pid}`;
  const port = await freePort();
  made.push(name);
  await exec(["bash", "test/lab/pg-container.sh", "run", name, String(port)], { stdout: "ignore" });
  return { inside: { container: name }, tcp: { host: "127.0.0.1", port, user: "postgres", passwordFile: lab.LAB_PG_CONTAINER_PASSWORD_FILE } };
}

/** Runs SQL that changes things (psqlQuery is read-only), through psqlFile. */
async function sql(where: PgWhere, text: string, database = "postgres"): Promise<void> {
  await psqlFile(where, Readable.from([text]), { database, progress: false });
}

const ident = (s: string) => `"${s.replace(/"/g, '""')}"`;
const literal = (s: string) => `'${s.replace(/'/g, "''")}'`;

/** Everything that must survive a round trip: roles, databases, and every table's rows (count + md5 over the sorted
 *  per-row md5s, which stays far below PostgreSQL's 1 GB value limit on big tables). */
async function snapshot(where: PgWhere, only?: string[]): Promise<Record<string, unknown>> {
  const snap: Record<string, unknown> = {};
  snap.roles = await psqlQuery(where, `SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls,
    rolconnlimit, rolpassword, rolvaliduntil FROM pg_authid WHERE rolname !~ '^pg_' ORDER BY 1`);
  const dbs = await psqlQuery(where, `SELECT datname, pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype
    FROM pg_database WHERE datname <> 'template0' ORDER BY 1`);
  snap.databases = only ? dbs.filter(([d]) => only.includes(d!)) : dbs;
  for (const [db] of snap.databases as string[][]) {
    const tables = await psqlQuery(where, `SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
      WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`, { database: db });
    for (const [t] of tables) {
      snap[`${db} / ${t}`] = (await psqlQuery(where, `SELECT count(*), md5(coalesce(string_agg(md5(x::text), '' ORDER BY md5(x::text)), '')) FROM ${t} x`, { database: db }))[0];
    }
  }
  return snap;
}

/** A dump's text without the random `\restrict KEY` / `\unrestrict KEY` lines of pg_dump 15.14+. */
function withoutRestrict(text: string): string {
  return text.replace(/^\\(un)?restrict \S+$/gm, "");
}

const leftovers = (dir: string) => readdirSync(dir).filter((n) => n.startsWith(".partial-"));

let usedTarget = false;

test.after(async () => {
  // leave the lab as documented: the target cluster empty
  if (usedTarget) await exec(["bash", "test/lab/pg.sh", "reset-target"], { stdout: "ignore" }).catch(() => {});
  for (const name of made) {
    await exec(["bash", "test/lab/pg-container.sh", "rm", name], { stdout: "ignore" }).catch(() => {});
    // pg-container.sh rm swallows docker's errors: make sure
    if (await containerExists(name)) await dockerRm(name, { force: true, volumes: true, missingOk: true });
  }
  cleanupTmp();
});

// ---- round trips --------------------------------------------------------------------------

test("pgDumpAll from a container loads into a fresh container: databases row for row and roles equal", async () => {
  const dir = tmp();
  const dump = join(dir, "dump_all.sql");
  const r = await pgDumpAll(labContainer, dump, { restrictKey: KEY });
  assert.ok(r.bytes > 1000 && r.bytes === statSync(dump).size);
  assert.is(statSync(dump).mode & 0o777, 0o600);
  assert.equal(leftovers(dir), []);
  const fresh = await freshContainer("copy");
  await psqlFile(fresh.inside, dump);
  const want = await snapshot(labContainer);
  assert.ok(Object.keys(want).some((k) => k.startsWith(`${lab.LAB_PG_CONTAINER_DB} / `)), "the lab container has tables to compare");
  assert.equal(await snapshot(fresh.inside), want);
  // and the cluster dumps the same again
  const again = join(dir, "again.sql");
  await pgDumpAll(fresh.inside, again, { restrictKey: KEY });
  assert.fixture(readFileSync(again, "utf8"), readFileSync(dump, "utf8"));
});

test("pgDumpAll of the local cluster, gzipped, loads into the empty target cluster: equal", async () => {
  await exec(["bash", "test/lab/pg.sh", "reset-target"], { stdout: "ignore" });
  usedTarget = true;
  const dir = tmp();
  const dump = join(dir, "all.sql.gz");
  const r = await pgDumpAll(source, dump, { gzip: true });
  assert.ok(r.written === statSync(dump).size && r.written < r.bytes, "gzip made it smaller");
  assert.is(gunzipSync(readFileSync(dump)).length, r.bytes);
  const loaded = await psqlFile(target, dump);
  assert.is(loaded.bytes, r.written);
  assert.equal(await snapshot(target), await snapshot(source));
});

test("pgDumpAll over ssh (ssh to the host, then pg_dumpall -h 127.0.0.1) equals the local dump", async () => {
  const dir = tmp();
  const viaSsh = await pgDumpAll({ ...source, ssh }, join(dir, "ssh.sql"), { restrictKey: KEY });
  const local = await pgDumpAll(source, join(dir, "local.sql"), { restrictKey: KEY });
  assert.ok(viaSsh.bytes > 100_000);
  assert.ok(readFileSync(join(dir, "ssh.sql")).equals(readFileSync(join(dir, "local.sql"))), "same bytes");
  assert.is(local.bytes, viaSsh.bytes);
  assert.not.ok(logs().includes(readFileSync(lab.LAB_PG_PASSWORD_FILE, "utf8").trim()), "the password reached the log");
});

test("restrictKey makes two dumps identical; without it they differ only in the \\restrict lines", async () => {
  const dir = tmp();
  const one = join(dir, "1.sql");
  const two = join(dir, "2.sql");
  await pgDumpAll(labContainer, one);
  await pgDumpAll(labContainer, two);
  const [a, b] = [readFileSync(one, "utf8"), readFileSync(two, "utf8")];
  assert.is.not(a, b);
  assert.match(a, /^\\restrict \S+$/m);
  assert.is(withoutRestrict(a), withoutRestrict(b));
  await pgDumpAll(labContainer, one, { restrictKey: KEY });
  await pgDumpAll(labContainer, two, { restrictKey: KEY });
  assert.is(readFileSync(one, "utf8"), readFileSync(two, "utf8"));
  assert.match(readFileSync(one, "utf8"), new RegExp(`^\\\\restrict ${KEY}$`, "m"));
});

test("database, table and role names with spaces, quotes, $() and unicode round-trip (container, ssh, custom format)", async () => {
  // (names stay under PostgreSQL's 63-byte limit, or they would be cut)
  const pwned = `/tmp/lbpw${process.pid}`;
  const db = `s "e" 'o''n' $(touch ${pwned}) ü🚀 -x =y`;
  const role = `r "q" 'o' $(touch ${pwned}) ñ`;
  const table = `t "1" 'x' $(touch ${pwned}) ö`;
  for (const name of [db, role, table]) assert.ok(Buffer.byteLength(name) <= 63, name);
  const a = await freshContainer("odd-a");
  const b = await freshContainer("odd-b");
  await sql(a.inside, `CREATE ROLE ${ident(role)} LOGIN PASSWORD 'pw';\nCREATE DATABASE ${ident(db)} OWNER ${ident(role)};\n`);
  await sql(a.inside, `SET ROLE ${ident(role)};
    CREATE TABLE ${ident(table)} (id int PRIMARY KEY, ${ident(`col 'c' "d"`)} text);
    INSERT INTO ${ident(table)} VALUES (1, ${literal(`value 'v' "w" $(touch ${pwned}) \\ ü`)}), (2, NULL), (3, '');\n`, db);

  // cluster dump from the container, loaded into another container over ssh + TCP (password on stdin)
  const dir = tmp();
  await pgDumpAll(a.inside, join(dir, "odd.sql"));
  await psqlFile({ ...b.tcp, binDir: lab.LAB_PG_BIN, ssh }, join(dir, "odd.sql"));
  const want = await snapshot(a.inside);
  assert.ok(`${db} / public.${ident(table)}` in want, Object.keys(want).join("\n"));
  assert.equal(await snapshot(b.inside), want);

  // one database, custom format, dumped over ssh from a's port, restored into b under its own name
  await sql(b.inside, `DROP DATABASE ${ident(db)};\n`);
  const custom = join(dir, "odd.dump");
  await pgDump({ ...a.tcp, binDir: lab.LAB_PG_BIN, ssh }, db, custom);
  assert.is(readFileSync(custom).subarray(0, 5).toString(), "PGDMP");
  await pgRestore(b.inside, custom, { create: true });
  assert.equal(await snapshot(b.inside, [db]), await snapshot(a.inside, [db]));

  assert.not.ok(existsSync(pwned), "a name was run by a shell on the host");
  for (const c of [a, b]) {
    const r = await dockerExec((c.inside as { container: string }).container, ["test", "-e", pwned], { okCodes: [0, 1] });
    assert.is(r.code, 1, "a name was run by a shell in a container");
  }
});

test("pgDump plain → psqlFile and custom → pgRestore round-trip one database", async () => {
  const dir = tmp();
  const fresh = await freshContainer("one");
  await pgDump(source, "shop", join(dir, "shop.sql.gz"), { format: "plain", gzip: 9, restrictKey: KEY });
  assert.match(gunzipSync(readFileSync(join(dir, "shop.sql.gz"))).toString("utf8"), /CREATE TABLE public\.customers/);
  await sql(fresh.inside, "CREATE ROLE app; CREATE DATABASE shop OWNER app;\n");
  await psqlFile(fresh.inside, join(dir, "shop.sql.gz"), { database: "shop" });
  const want = await snapshot(source, ["shop"]);
  delete want.roles;
  const got1 = await snapshot(fresh.inside, ["shop"]);
  delete got1.roles;
  assert.equal(got1, want);

  await sql(fresh.inside, "DROP DATABASE shop;\n");
  await pgDump(source, "shop", join(dir, "shop.dump"));
  await pgRestore(fresh.inside, join(dir, "shop.dump"), { create: true });
  const got2 = await snapshot(fresh.inside, ["shop"]);
  delete got2.roles;
  assert.equal(got2, want);
});

// ---- failures -----------------------------------------------------------------------------

test("a wrong password fails clearly (password authentication failed, host:port, exit code), masked, and leaves no dump file", async () => {
  const dir = tmp();
  const secret = "Wr0ng-'pass' $(word)";
  const out = join(dir, "dump.sql");
  for (const where of [{ ...source, passwordFile: undefined, password: secret }, { ...source, passwordFile: undefined, password: secret, ssh }] as PgWhere[]) {
    const e = await pgDumpAll(where, out).catch((x) => x);
    assert.instance(e, LifeboatError);
    assert.match(e.message, /password authentication failed for user "postgres"/);
    assert.match(e.message, /127\.0\.0\.1:55432/);
    assert.match(e.message, /exit 1\b/);
    assert.not.ok(String(e.stack).includes(secret) || String(e.cause?.message).includes(secret), "the password is in the error");
    assert.not.ok(existsSync(out));
    assert.equal(leftovers(dir), []);
  }
  assert.not.ok(logs().includes(secret) || logs().includes("Wr0ng"), "the password reached the log");
});

test("a container that does not exist fails clearly and leaves no dump file", async () => {
  const dir = tmp();
  const e = await pgDumpAll({ container: "lifeboat-test-no-such" }, join(dir, "x.sql")).catch((x) => x);
  assert.instance(e, LifeboatError);
  assert.match(e.message, /container lifeboat-test-no-such does not exist/);
  assert.equal(readdirSync(dir), []);
});

test("loading a cluster dump into a non-fresh cluster stops at the first error and says which", async () => {
  const dir = tmp();
  const fresh = await freshContainer("twice");
  await pgDumpAll(labContainer, join(dir, "all.sql"));
  await psqlFile(fresh.inside, join(dir, "all.sql"));
  const e = await psqlFile(fresh.inside, join(dir, "all.sql")).catch((x) => x);
  assert.instance(e, LifeboatError);
  assert.match(e.message, /stopped at the first error \(exit 3\)/);
  assert.match(e.message, /ERROR: +role "\w+" already exists|ERROR: +database "\w+" already exists/);
  assert.match(e.message, new RegExp(`container ${fresh.inside.container}`));
});

test("a truncated gzip dump fails the load instead of passing as complete", async () => {
  const dir = tmp();
  const fresh = await freshContainer("trunc");
  await pgDumpAll(labContainer, join(dir, "all.sql.gz"), { gzip: true });
  const whole = readFileSync(join(dir, "all.sql.gz"));
  writeFileSync(join(dir, "cut.sql.gz"), whole.subarray(0, Math.floor(whole.length * 0.6)));
  const e = await psqlFile(fresh.inside, join(dir, "cut.sql.gz")).catch((x) => x);
  assert.instance(e, LifeboatError);
  assert.match(e.message, /reading the dump failed|unexpected end of file/);
});

test("psqlQuery refuses to write", async () => {
  const e = await psqlQuery(target, "CREATE TABLE lifeboat_should_not_exist (x int)").catch((x) => x);
  assert.instance(e, LifeboatError);
  assert.match(e.message, /read-only transaction/);
});

test("dry-run prints the dump and load commands and runs nothing", async () => {
  const dry = testContext({ argv: ["--dry-run"] });
  try {
    const dir = tmp();
    const out = join(dir, "dump all's.sql");
    const r = await pgDumpAll(source, out, { ctx: dry.ctx });
    assert.is(r.dryRun, true);
    await pgDumpAll(labContainer, join(dir, "c.sql.gz"), { gzip: true, ctx: dry.ctx });
    // a load that would fail if it ran
    writeFileSync(join(dir, "junk.sql"), "THIS IS NOT SQL;\n");
    await psqlFile(target, join(dir, "junk.sql"), { ctx: dry.ctx });
    assert.equal(readdirSync(dir), ["junk.sql"]);
    const printed = dry.logs().replace(/\x1b\[[0-9;]*m/g, "");
    const pw = readFileSync(lab.LAB_PG_PASSWORD_FILE, "utf8").trim();
    assert.not.ok(printed.includes(pw));
    assert.ok(printed.includes(`[dry-run] PGPASSWORD=*** ${lab.LAB_PG_BIN}/pg_dumpall --host=127.0.0.1 --port=55432 --username=postgres --no-password > '${dir}/dump all'\\''s.sql'`), printed);
    assert.ok(printed.includes(`[dry-run] docker exec -u postgres ${lab.LAB_PG_CONTAINER} pg_dumpall --no-password | gzip -6 > ${dir}/c.sql.gz`), printed);
    assert.ok(printed.includes(`psql --host=127.0.0.1 --port=55433 --username=postgres --no-password --no-psqlrc --quiet --set=ON_ERROR_STOP=1 '--dbname=dbname='\\''postgres'\\''' --file=- < ${dir}/junk.sql`), printed);
  } finally {
    testContext();
  }
});

test.run();
