// The Deis drill: a lab "Deis" is backed up with recipes/deis-backup.ts, destroyed, restored with
// recipes/deis-restore.ts, and compared with what it was. Used by test/deis.test.ts and by the
// drill:deis task at the end of this file (make drill-deis, make demo).
//
// The lab "Deis" (lab pieces docker, sshd and ceph must be up):
//   - store-gateway: the lab's Ceph RADOS Gateway, buckets db_wal and registry with a few hundred
//     objects of mixed sizes (empty to 20 MiB, the big one multipart with 5 MiB parts) and keys
//     with spaces, quotes, unicode, `$()` and a leading dash;
//   - the store volume: $LAB/deis/store on the lab sshd (root login), with files of root, of
//     lifeboat and of a uid that has no user, several modes, symlinks, an empty dir, and
//     logs/deis-registry.log that a writer keeps appending to while the backup runs;
//   - deis-database: a container of the lab's PostgreSQL image with databases "deis" and
//     "registry meta", roles with passwords, and rows;
//   - deis-controller: a stand-in container whose /app/manage.py records what it is fed;
//   - deisctl: test/standins/deisctl, which records its calls and answers the gateway keys.
// The recipes run as child processes, as an operator runs them, with a generated site file.
import { spawn } from "node:child_process";
import { appendFileSync, chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import process from "node:process";
import chalk from "chalk";
import YAML from "yaml";
import {
  compareTrees,
  dockerCp,
  dockerExec,
  dockerRm,
  exec,
  formatBytes,
  formatDuration,
  listBackups,
  pgDumpAll,
  printOutcomes,
  psqlQuery,
  runSteps,
  s3Client,
  s3List,
  s3MakeBucket,
  s3RemoveBucket,
  typeScriptFlags,
  s3Sync,
  step,
  unpackArchive,
  useContext,
  VerifyError,
  type Context,
  type S3Handle,
  type StepOutcome,
} from "../../lib/internal.ts";
import { collectLines, drillTask, LAB_DIR, needLab } from "./lab.ts";
import { seededBytes } from "./fixtures.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const DEISCTL_STANDIN = join(ROOT, "test/standins/deisctl");
const MANAGE_STANDIN = join(ROOT, "test/standins/deis-manage.py");
const PG_CONTAINER_SH = join(ROOT, "test/lab/pg-container.sh");
const MiB = 1024 * 1024;

/** The container names and paths the lab "Deis" uses. */
export const DEIS_LAB = {
  buckets: ["db_wal", "registry"],
  database: "deis-database",
  controller: "deis-controller",
  storeDir: join(LAB_DIR, "deis", "store"),
  liveLog: "logs/deis-registry.log",
  /** A uid (and gid) with no user or group on the host. */
  orphanId: 4242,
};

/** The deisctl calls the runbook makes, in its order. */
export const RUNBOOK_CALLS = {
  backup: ["config store get gateway/accessKey", "config store get gateway/secretKey"],
  restore: [
    "install platform",
    "start store-monitor",
    "start store-daemon",
    "start store-metadata",
    "start store-gateway@1",
    "start store-volume",
    "start router@1",
    "config router set bodySize=100m",
    "config store get gateway/accessKey",
    "config store get gateway/secretKey",
    "start platform",
  ],
};

/** The runbook's re-save snippet, as the controller stand-in must receive it. */
export const RESAVE_SNIPPET = [
  "from api.models import *",
  "[k.save() for k in Key.objects.all()]",
  "[a.save() for a in App.objects.all()]",
  "[d.save() for d in Domain.objects.all()]",
  "[c.save() for c in Certificate.objects.all()]",
  "[c.save() for c in Config.objects.all()]",
].join("\n");

// ---------------------------------------------------------------------------------
// the workdir: site file, deisctl stand-in state, backups

/** A drill's working folder and what the recipes read from it. */
export interface DeisWork {
  dir: string;
  site: string;
  backups: string;
  standin: string;
  passphrase?: string;
  /** The env the recipes run with. */
  env: Record<string, string>;
}

/** Makes the working folder: the site file the recipes read, the deisctl stand-in's keys. */
export function prepareWork(dir: string, opts: { passphrase?: string; offsite?: string } = {}): DeisWork {
  const lab = needLab("docker", "sshd", "ceph");
  mkdirSync(dir, { recursive: true });
  const standin = join(dir, "deisctl");
  mkdirSync(standin, { recursive: true });
  writeFileSync(join(standin, "access-key"), lab.LAB_S3_ACCESS_KEY + "\n", { mode: 0o600 });
  writeFileSync(join(standin, "secret-key"), lab.LAB_S3_SECRET_KEY + "\n", { mode: 0o600 });
  const backups = join(dir, "backups");
  const site: Record<string, unknown> = {
    "state-dir": join(dir, "state"),
    backups: { dir: backups },
    // no keys here: both recipes read them with deisctl, as the runbook does
    gateway: { endpoint: lab.LAB_S3_ENDPOINT, region: lab.LAB_S3_REGION || "us-east-1", buckets: DEIS_LAB.buckets, concurrency: 8 },
    deisctl: { command: [DEISCTL_STANDIN] },
    store: {
      host: lab.LAB_SSH_HOST,
      port: Number(lab.LAB_SSH_PORT),
      user: "root",
      "identity-file": lab.LAB_SSH_KEY,
      "known-hosts": lab.LAB_SSH_KNOWN_HOSTS,
      sudo: false,
      dir: DEIS_LAB.storeDir,
    },
    database: { container: DEIS_LAB.database, "exec-user": "postgres" },
    restore: { "load-dump": true, "wait-seconds": 60 },
    controller: { resave: "on", container: DEIS_LAB.controller, etcd: "127.0.0.1:4001" },
  };
  if (opts.passphrase) {
    writeFileSync(join(dir, "passphrase"), opts.passphrase + "\n", { mode: 0o600 });
    site.age = { "passphrase-file": join(dir, "passphrase") };
  }
  if (opts.offsite) {
    // an off-site copy on the lab gateway itself, with the same keys (read from the stand-in's files)
    site.offsite = { to: [opts.offsite], s3: { endpoint: lab.LAB_S3_ENDPOINT, region: lab.LAB_S3_REGION || "us-east-1", "access-key-file": join(standin, "access-key"), "secret-key-file": join(standin, "secret-key") } };
  }
  const sitePath = join(dir, "site.yaml");
  writeFileSync(sitePath, "# generated by tasks/drills/deis.ts for the lab \"Deis\"\n" + YAML.stringify(site), { mode: 0o600 });
  return { dir, site: sitePath, backups, standin, passphrase: opts.passphrase, env: { DEISCTL_STANDIN_DIR: standin } };
}

/** The deisctl stand-in's recorded calls (and clears the record). */
export function takeDeisctlCalls(work: DeisWork): string[] {
  const f = join(work.standin, "calls.log");
  if (!existsSync(f)) return [];
  const calls = readFileSync(f, "utf8").split("\n").filter(Boolean);
  rmSync(f);
  return calls;
}

/** What a recipe run left: its exit code and its whole output. */
export interface RecipeRun {
  code: number;
  output: string;
  ms: number;
}

/**
 * Runs a recipe as an operator does: `node recipes/NAME.ts ARGS…` from the repo root (with
 * `--import=tsx` on a Node that does not strip types itself),
 * with the drill's env; each output line goes to `echo` as it comes.
 */
export function runRecipe(name: string, args: string[], work: DeisWork, echo: (line: string) => void = () => {}, signal: AbortSignal = useContext().signal): Promise<RecipeRun> {
  const t0 = Date.now();
  const env: Record<string, string> = { ...(process.env as Record<string, string>), ...work.env, NO_COLOR: "1", FORCE_COLOR: "0" };
  for (const k of Object.keys(env)) if (k.startsWith("LIFEBOAT_")) delete env[k];
  const child = spawn(process.execPath, [...typeScriptFlags(process.execPath), join(ROOT, "recipes", `${name}.ts`), ...args], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"], signal });
  const output = collectLines(child, echo);
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? 1, output: output(), ms: Date.now() - t0 }));
  });
}

// ---------------------------------------------------------------------------------
// seeding the lab "Deis"

/** The gateway, with the lab's keys. */
export function labGateway(): S3Handle {
  const lab = needLab("ceph");
  return s3Client({ endpoint: lab.LAB_S3_ENDPOINT, region: lab.LAB_S3_REGION || "us-east-1", accessKey: lab.LAB_S3_ACCESS_KEY, secretKey: lab.LAB_S3_SECRET_KEY });
}

/** The objects of the two buckets, as Deis's database and registry leave them. */
export function bucketFiles(): Record<string, Record<string, Buffer>> {
  const db: Record<string, Buffer> = {};
  const base = "basebackups_005/base_000000010000000000000004_00000032";
  db[`${base}/extended_version.txt`] = Buffer.from("PostgreSQL 9.4.1 on x86_64-unknown-linux-gnu\n");
  db[`${base}/tar_partitions/part_00000000.tar.lzo`] = seededBytes("part0", 1 * MiB + 123);
  db[`${base}/tar_partitions/part_00000001.tar.lzo`] = seededBytes("part1", 300 * 1024);
  db[`basebackups_005/base_000000010000000000000004_00000032_backup_stop_sentinel.json`] = Buffer.from('{"wal_segment_backup_stop": "000000010000000000000004"}\n');
  for (let i = 1; i <= 200; i++) {
    const seg = `00000001000000000000${i.toString(16).toUpperCase().padStart(4, "0")}`;
    db[`wal_005/${seg}.lzo`] = seededBytes(`wal${i}`, 512 + ((i * 7919) % (16 * 1024)));
  }
  db["wal_005/with space.lzo"] = seededBytes("sp", 1000);
  db[`wal_005/it's "quoted".lzo`] = seededBytes("q", 1001);
  db["wal_005/ünïcødé ✓ 日本.lzo"] = seededBytes("u", 1002);
  db["wal_005/$(touch pwned).lzo"] = seededBytes("d", 1003);
  db["-leading-dash.lzo"] = seededBytes("ld", 1004);
  db["wal_005/empty.lzo"] = Buffer.alloc(0);

  const reg: Record<string, Buffer> = {};
  for (let i = 0; i < 30; i++) {
    const id = createHash("sha256").update(`image${i}`).digest("hex");
    const dir = `registry/images/${id}`;
    reg[`${dir}/json`] = Buffer.from(JSON.stringify({ id, created: "2015-06-01T00:00:00Z", container_config: { Cmd: ["/bin/sh"] } }) + "\n");
    reg[`${dir}/ancestry`] = Buffer.from(JSON.stringify([id]) + "\n");
    reg[`${dir}/_checksum`] = Buffer.from(`sha256:${id}\n`);
    // the one multipart-sized layer: 20 MiB, uploaded in 5 MiB parts
    reg[`${dir}/layer`] = seededBytes(`layer${i}`, i === 0 ? 20 * MiB : 1024 * (1 + ((i * 37) % 512)));
  }
  for (const app of ["web", "worker", "api", "ünïcødé", "with space"]) {
    const repo = `registry/repositories/library/${app}`;
    reg[`${repo}/_index_images`] = Buffer.from(`[{"id": "${app}"}]\n`);
    reg[`${repo}/tag_latest`] = Buffer.from(createHash("sha256").update(app).digest("hex"));
    reg[`${repo}/tag_v1.0`] = Buffer.from(createHash("sha256").update(app + "1").digest("hex"));
    reg[`${repo}/json`] = Buffer.from("{}\n");
  }
  reg[`registry/repositories/library/it's "quoted"/tag_✓`] = Buffer.from("quoted\n");
  reg["registry/$(rm -rf ~)/json"] = Buffer.from("{}\n");
  reg["-leading-dash"] = Buffer.from("dash\n");
  return { db_wal: db, registry: reg };
}

/** Empties and removes the buckets, then creates and fills them afresh. */
async function seedBuckets(s3: S3Handle, scratch: string): Promise<void> {
  const files = bucketFiles();
  for (const bucket of DEIS_LAB.buckets) {
    await s3RemoveBucket(s3, bucket, { purge: true });
    await s3MakeBucket(s3, bucket);
    const dir = join(scratch, bucket);
    for (const [key, data] of Object.entries(files[bucket])) {
      mkdirSync(join(dir, key, ".."), { recursive: true });
      writeFileSync(join(dir, key), data);
    }
    await s3Sync(dir, `s3://${bucket}`, { client: s3, index: false, multipartThreshold: 16 * MiB, partSize: 5 * MiB, progress: false });
  }
}

/** Every object's size and ETag, by bucket and key. */
export async function bucketSnapshot(s3: S3Handle): Promise<Record<string, Record<string, string>>> {
  const out: Record<string, Record<string, string>> = {};
  for (const b of DEIS_LAB.buckets) {
    out[b] = {};
    try {
      for await (const o of s3List(s3, b)) out[b][o.key] = `${o.size} ${o.etag}`;
    } catch (e) {
      if (!/no such bucket/i.test((e as Error).message)) throw e;
    }
  }
  return out;
}

/** The store volume: several owners and modes, symlinks, an empty dir, awkward names, logs. */
export function seedStore(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  const lifeboat = Number(readFileSync("/etc/passwd", "utf8").split("\n").find((l) => l.startsWith("lifeboat:"))?.split(":")[2] ?? 1001);
  const orphan = DEIS_LAB.orphanId;
  const put = (rel: string, data: string | Buffer, mode: number, uid = 0, gid = uid) => {
    mkdirSync(join(dir, rel, ".."), { recursive: true });
    writeFileSync(join(dir, rel), data);
    chmodSync(join(dir, rel), mode);
    chownSync(join(dir, rel), uid, gid);
  };
  const mkdir = (rel: string, mode: number, uid = 0, gid = uid) => {
    mkdirSync(join(dir, rel), { recursive: true });
    chmodSync(join(dir, rel), mode);
    chownSync(join(dir, rel), uid, gid);
  };
  mkdir("", 0o755);
  mkdir("logs", 0o755);
  put(DEIS_LAB.liveLog, Buffer.concat([Buffer.from("registry log start\n"), seededBytes("log", 8 * MiB)]), 0o644);
  put("logs/deis-controller.log", "controller: started\n".repeat(500), 0o640, lifeboat);
  put("logs/deis-router.log", "router: GET / 200\n".repeat(300), 0o644);
  mkdir("controller", 0o750, lifeboat);
  mkdir("controller/keys", 0o700, lifeboat);
  put("controller/keys/id_rsa", seededBytes("key", 1675), 0o600, lifeboat);
  put("controller/keys/id_rsa.pub", "ssh-rsa AAAA lab\n", 0o644, lifeboat);
  mkdir("builder", 0o2775, orphan);
  mkdir("builder/cache", 0o775, orphan);
  put("builder/cache/slug.tgz", seededBytes("slug", 700 * 1024), 0o644, orphan);
  put("builder/cache/run.sh", "#!/bin/sh\necho built\n", 0o755, orphan, 0);
  mkdir("registry-tmp", 0o700);
  mkdir("shared/empty dir", 0o1777);
  put("shared/with space.txt", "space\n", 0o664, lifeboat, 0);
  put("shared/it's \"quoted\".txt", "quotes\n", 0o400);
  put("shared/ünïcødé ✓.txt", "unicode\n", 0o644);
  put("shared/$(touch pwned)", "dollar\n", 0o644);
  put("shared/-leading-dash", "dash\n", 0o644);
  symlinkSync("controller/keys", join(dir, "current-keys"));
  symlinkSync("../does-not-exist", join(dir, "shared/dangling"));
}

/** A writer that appends a line to the live log every 2 ms, like deis-logger does. */
function startLogWriter(path: string): { stop(): number } {
  let n = 0;
  const timer = setInterval(() => appendFileSync(path, `${new Date().toISOString()} registry: GET /v1/_ping 200 (${++n})\n`), 2);
  return {
    stop() {
      clearInterval(timer);
      return n;
    },
  };
}

export const SEED_SQL = `
CREATE ROLE deis LOGIN PASSWORD 'deis-lab-password';
CREATE ROLE "registry reader" LOGIN PASSWORD 'it''s a $ecret';
CREATE DATABASE deis OWNER deis;
CREATE DATABASE "registry meta" OWNER "registry reader";
\\connect deis
SET ROLE deis;
CREATE TABLE api_app (id text PRIMARY KEY, owner text NOT NULL, structure jsonb NOT NULL, created timestamptz NOT NULL);
INSERT INTO api_app SELECT format('app-%s', g), CASE WHEN g % 3 = 0 THEN 'ünïcødé' ELSE 'admin' END,
  jsonb_build_object('web', g % 4, 'worker', g % 2), timestamptz '2015-06-01 00:00:00+00' + g * interval '1 hour'
  FROM generate_series(1, 250) g;
CREATE TABLE api_key (id serial PRIMARY KEY, owner text NOT NULL, public text NOT NULL);
INSERT INTO api_key (owner, public) SELECT 'admin', format('ssh-rsa AAAA%s it''s key %s', md5(g::text), g) FROM generate_series(1, 40) g;
CREATE TABLE api_domain (id serial PRIMARY KEY, app_id text REFERENCES api_app, domain text NOT NULL);
INSERT INTO api_domain (app_id, domain) SELECT format('app-%s', g), format('app-%s.example.com', g) FROM generate_series(1, 250, 5) g;
CREATE TABLE api_config (app_id text REFERENCES api_app, values jsonb NOT NULL);
INSERT INTO api_config SELECT id, jsonb_build_object('DATABASE_URL', 'postgres://' || id, 'QUOTE', 'it''s "fine"') FROM api_app;
\\connect "registry meta"
SET ROLE "registry reader";
CREATE TABLE images (id text PRIMARY KEY, size bigint NOT NULL, note text);
INSERT INTO images SELECT md5(g::text), g * 1024, CASE WHEN g % 10 = 0 THEN NULL ELSE format('layer %s — “%s”', g, repeat('x', g % 7)) END
  FROM generate_series(1, 500) g;
GRANT SELECT ON images TO deis;
`;

/** The tables the drill compares row for row, by database. */
const TABLES: Record<string, string[]> = { deis: ["api_app", "api_key", "api_domain", "api_config"], "registry meta": ["images"] };

/** (Re)creates deis-database, empty, from the lab image. */
async function freshDatabase(): Promise<void> {
  await exec(["bash", PG_CONTAINER_SH, "run", DEIS_LAB.database], { stdout: "ignore" });
}

async function seedDatabase(): Promise<void> {
  await freshDatabase();
  await dockerExec(DEIS_LAB.database, ["psql", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"], { user: "postgres", stdin: SEED_SQL, stdout: "ignore" });
}

/** (Re)creates the stand-in deis-controller with /app/manage.py. */
async function freshController(): Promise<void> {
  const needs = needLab("docker");
  await dockerRm(DEIS_LAB.controller, { force: true, missingOk: true });
  await exec(["docker", "run", "-d", "--name", DEIS_LAB.controller, "--label", "lifeboat-lab=1", "--stop-signal", "SIGKILL", needs.LAB_PG_IMAGE, "sleep", "1000000"], { stdout: "ignore" });
  await dockerExec(DEIS_LAB.controller, ["mkdir", "-p", "/app"]);
  await dockerCp(MANAGE_STANDIN, `${DEIS_LAB.controller}:/app/manage.py`);
}

/** Rows per table and the roles with their password hashes. */
export async function databaseCounts(): Promise<{ rows: Record<string, number>; roles: string[] }> {
  const where = { container: DEIS_LAB.database, osUser: "postgres" };
  const rows: Record<string, number> = {};
  for (const [db, tables] of Object.entries(TABLES)) {
    const r = await psqlQuery(where, `SELECT ${tables.map((t) => `(SELECT count(*) FROM ${t})`).join(", ")}`, { database: db });
    tables.forEach((t, i) => (rows[`${db}.${t}`] = Number(r[0][i])));
  }
  const roles = (await psqlQuery(where, "SELECT rolname || ' ' || coalesce(rolpassword, '') FROM pg_authid WHERE rolname !~ '^pg_' ORDER BY 1")).map((r) => String(r[0]));
  return { rows, roles };
}

/** pg_dumpall with a fixed \restrict key: two dumps of the same data are the same bytes. */
async function fixedDump(path: string): Promise<string> {
  await pgDumpAll({ container: DEIS_LAB.database, osUser: "postgres" }, path, { restrictKey: "LIFEBOATDRILL", progress: false });
  return readFileSync(path, "utf8");
}

// ---------------------------------------------------------------------------------
// the drill

/** Options for {@link deisDrill}. */
export interface DeisDrillOptions {
  /** Working folder (site file, backups, state); default: a new temp dir, removed afterwards unless keep. */
  workdir?: string;
  /** Keep the working folder (and the archive in it). */
  keep?: boolean;
  /** Encrypt the archive with this age passphrase. */
  passphrase?: string;
  /** Also copy the archive to this s3://BUCKET/PREFIX on the lab gateway (offsite.to; the bucket is made) and restore from that copy. */
  offsite?: string;
  /** Show the recipes' own output lines (default true). */
  echo?: boolean;
  ctx?: Context;
}

/** What the drill did and found. */
export interface DeisDrillReport {
  work: DeisWork;
  archive: string;
  /** What deis-restore was given: the archive, or its off-site copy's URL. */
  restoredFrom: string;
  archiveBytes: number;
  objects: Record<string, { objects: number; bytes: number }>;
  multipart: number;
  storeEntries: number;
  liveLog: { archivedBytes: number; linesAppended: number; changedWhileRead: boolean };
  rows: Record<string, number>;
  roles: number;
  calls: { backup: string[]; restore: string[] };
  ms: { seed: number; backup: number; destroy: number; restore: number; compare: number };
  /** Every difference found; empty when the restore is faithful. */
  problems: string[];
  outcomes: StepOutcome[];
}

/**
 * Seeds the lab "Deis", backs it up with deis-backup, destroys it, restores it with deis-restore
 * and compares buckets, store volume, databases, deisctl calls and the controller's input.
 * @example const r = await deisDrill({ keep: true }); if (r.problems.length) throw …
 */
export async function deisDrill(opts: DeisDrillOptions = {}): Promise<DeisDrillReport> {
  const ctx = opts.ctx ?? useContext();
  const own = !opts.workdir;
  const dir = opts.workdir ?? mkdtempSync(join(tmpdir(), "lifeboat-deis-drill-"));
  const work = prepareWork(dir, { passphrase: opts.passphrase, offsite: opts.offsite });
  const echo = opts.echo === false ? () => {} : (l: string) => ctx.log.info(chalk.dim(`    │ ${l}`));
  const before = join(dir, "before");
  const s3 = labGateway();
  const r: DeisDrillReport = {
    work, archive: "", restoredFrom: "", archiveBytes: 0, objects: {}, multipart: 0, storeEntries: 0,
    liveLog: { archivedBytes: 0, linesAppended: 0, changedWhileRead: false }, rows: {}, roles: 0,
    calls: { backup: [], restore: [] }, ms: { seed: 0, backup: 0, destroy: 0, restore: 0, compare: 0 }, problems: [], outcomes: [],
  };
  const problem = (p: string) => {
    r.problems.push(p);
    ctx.log.error(p);
  };
  let snap: Record<string, Record<string, string>> = {};
  let dumpBefore = "";
  let countsBefore: Awaited<ReturnType<typeof databaseCounts>> = { rows: {}, roles: [] };
  let writer: { stop(): number } | null = null;
  const timed = (k: keyof DeisDrillReport["ms"], fn: () => Promise<void> | void) => async () => {
    const t0 = Date.now();
    await fn();
    r.ms[k] += Date.now() - t0;
  };

  const { outcomes } = await runSteps(ctx, [
    step("seed", "seed the lab Deis: buckets, store volume, deis-database, deis-controller", timed("seed", async () => {
      rmSync(before, { recursive: true, force: true });
      mkdirSync(before, { recursive: true });
      await seedBuckets(s3, join(dir, "seed"));
      rmSync(join(dir, "seed"), { recursive: true, force: true });
      seedStore(DEIS_LAB.storeDir);
      await seedDatabase();
      await freshController();
      snap = await bucketSnapshot(s3);
      for (const b of DEIS_LAB.buckets) {
        const sizes = Object.values(snap[b]).map((v) => Number(v.split(" ")[0]));
        r.objects[b] = { objects: sizes.length, bytes: sizes.reduce((a, n) => a + n, 0) };
        ctx.log.info(`  s3://${b}: ${sizes.length} objects, ${formatBytes(r.objects[b].bytes)}`);
      }
      r.multipart = Object.values(snap).flatMap((o) => Object.values(o)).filter((v) => /-\d+$/.test(v)).length;
      await exec(["cp", "-a", "--", DEIS_LAB.storeDir, join(before, "store")]);
      dumpBefore = await fixedDump(join(before, "dump.sql"));
      countsBefore = await databaseCounts();
      ctx.log.info(`  store volume ${DEIS_LAB.storeDir}; deis-database: ${Object.entries(countsBefore.rows).map(([t, n]) => `${t} ${n}`).join(", ")}; ${countsBefore.roles.length} roles`);
      takeDeisctlCalls(work);
    })),

    step("backup", "back up with recipes/deis-backup.ts (while the registry log is being written)", timed("backup", async () => {
      if (opts.offsite) await s3MakeBucket(s3, /^s3:\/\/([^/]+)/.exec(opts.offsite)![1]);
      writer = startLogWriter(join(DEIS_LAB.storeDir, DEIS_LAB.liveLog));
      const run = await runRecipe("deis-backup", ["--config", work.site, "--yes"], work, echo);
      r.liveLog.linesAppended = writer.stop();
      writer = null;
      r.calls.backup = takeDeisctlCalls(work);
      if (run.code !== 0) throw new Error(`deis-backup exited ${run.code}`);
      r.liveLog.changedWhileRead = /changed while tar read/.test(run.output);
      const found = listBackups(work.backups)[0];
      r.archive = found.path;
      r.restoredFrom = opts.offsite ? `${opts.offsite.replace(/\/+$/, "")}/${found.name}` : found.path;
      r.archiveBytes = found.size;
      ctx.log.info(`  ${found.name}: ${formatBytes(found.size)}; the live log ${r.liveLog.changedWhileRead ? "changed while tar read it (warning, as in the runbook)" : "did not change while tar read it this time"}`);
    })),

    step("destroy", "destroy: remove the buckets, wipe the store volume, recreate deis-database empty", timed("destroy", async () => {
      for (const b of DEIS_LAB.buckets) await s3RemoveBucket(s3, b, { purge: true });
      rmSync(DEIS_LAB.storeDir, { recursive: true, force: true });
      await freshDatabase();
      await freshController();
      const left = await bucketSnapshot(s3);
      ctx.log.info(`  buckets: ${DEIS_LAB.buckets.map((b) => `${b} ${Object.keys(left[b]).length} objects`).join(", ")}; store volume ${existsSync(DEIS_LAB.storeDir) ? "still there" : "gone"}; databases: ${(await psqlQuery({ container: DEIS_LAB.database, osUser: "postgres" }, "SELECT count(*) FROM pg_database WHERE NOT datistemplate"))[0][0]} (postgres only)`);
    })),

    step("restore", `restore with recipes/deis-restore.ts${opts.offsite ? " from the off-site copy" : ""}`, timed("restore", async () => {
      const run = await runRecipe("deis-restore", [r.restoredFrom, "--config", work.site, "--yes"], work, echo);
      r.calls.restore = takeDeisctlCalls(work);
      if (run.code !== 0) throw new Error(`deis-restore exited ${run.code}`);
    })),

    step("compare-buckets", "compare buckets: keys, bytes and ETags", timed("compare", async () => {
      const after = await bucketSnapshot(s3);
      for (const b of DEIS_LAB.buckets) {
        for (const [k, v] of Object.entries(snap[b])) {
          if (after[b][k] === undefined) problem(`s3://${b}/${k}: missing after the restore`);
          else if (after[b][k] !== v) problem(`s3://${b}/${k}: was "${v}" (size ETag), is "${after[b][k]}"`);
        }
        for (const k of Object.keys(after[b])) if (snap[b][k] === undefined) problem(`s3://${b}/${k}: not there before`);
      }
      ctx.log.ok(`${Object.values(snap).reduce((n, o) => n + Object.keys(o).length, 0)} objects compared (${r.multipart} multipart)`);
    })),

    step("compare-store", "compare the store volume: contents, owners, modes, links (the live log: as archived)", timed("compare", async () => {
      const diffs = await compareTrees(join(before, "store"), DEIS_LAB.storeDir, { ignore: [DEIS_LAB.liveLog] });
      for (const d of diffs) problem(`store: ${d}`);
      // The live log kept growing after tar read it: compare it with the archive's copy.
      const x = join(dir, "extracted");
      rmSync(x, { recursive: true, force: true });
      await unpackArchive(r.archive, x, { decrypt: { passphrase: work.passphrase }, progress: false });
      const captured = join(dir, "captured.log");
      await exec(["tar", "-xOf", join(x, "store/store_file_backup.tar"), `./${DEIS_LAB.liveLog}`], { stdout: { file: captured } });
      const archived = readFileSync(captured);
      const restored = readFileSync(join(DEIS_LAB.storeDir, DEIS_LAB.liveLog));
      const original = readFileSync(join(before, "store", DEIS_LAB.liveLog));
      r.liveLog.archivedBytes = archived.length;
      if (!archived.equals(restored)) problem(`store: ${DEIS_LAB.liveLog}: restored (${restored.length} bytes) differs from the archive's copy (${archived.length} bytes)`);
      if (!archived.subarray(0, original.length).equals(original)) problem(`store: ${DEIS_LAB.liveLog}: the archive's copy does not start with the log as seeded`);
      r.storeEntries = Number((await exec(["find", DEIS_LAB.storeDir, "-mindepth", "1"], { readOnly: true })).stdout.split("\n").filter(Boolean).length);
      rmSync(x, { recursive: true, force: true });
      ctx.log.ok(`${r.storeEntries} entries compared; ${DEIS_LAB.liveLog}: ${formatBytes(archived.length)} as archived (seeded ${formatBytes(original.length)}, +${r.liveLog.linesAppended} lines appended during the backup)`);
    })),

    step("compare-databases", "compare databases row for row and roles (pg_dumpall --restrict-key)", timed("compare", async () => {
      const after = await fixedDump(join(dir, "dump-after.sql"));
      if (after !== dumpBefore) {
        const a = dumpBefore.split("\n");
        const b = after.split("\n");
        const i = a.findIndex((l, n) => l !== b[n]);
        problem(`databases: pg_dumpall differs from before, first at line ${i + 1}: ${JSON.stringify(a[i])} vs ${JSON.stringify(b[i])}`);
      }
      const counts = await databaseCounts();
      for (const [t, n] of Object.entries(countsBefore.rows)) if (counts.rows[t] !== n) problem(`databases: ${t}: ${n} rows before, ${counts.rows[t]} after`);
      if (counts.roles.join("\n") !== countsBefore.roles.join("\n")) problem(`databases: roles differ: ${countsBefore.roles.map((x) => x.split(" ")[0]).join(",")} vs ${counts.roles.map((x) => x.split(" ")[0]).join(",")}`);
      r.rows = counts.rows;
      r.roles = counts.roles.length;
      ctx.log.ok(`pg_dumpall identical; ${Object.values(counts.rows).reduce((a, n) => a + n, 0)} rows in ${Object.keys(counts.rows).length} tables; ${counts.roles.length} roles with their passwords`);
    })),

    step("compare-platform", "compare the platform steps with the runbook (deisctl calls, controller input)", timed("compare", async () => {
      if (r.calls.backup.join("\n") !== RUNBOOK_CALLS.backup.join("\n")) problem(`deisctl calls of the backup: ${JSON.stringify(r.calls.backup)}, the runbook's: ${JSON.stringify(RUNBOOK_CALLS.backup)}`);
      if (r.calls.restore.join("\n") !== RUNBOOK_CALLS.restore.join("\n")) problem(`deisctl calls of the restore: ${JSON.stringify(r.calls.restore)}, the runbook's: ${JSON.stringify(RUNBOOK_CALLS.restore)}`);
      const fed = (await dockerExec(DEIS_LAB.controller, ["cat", "/app/manage.py.calls"], { readOnly: true })).stdout;
      const want = `argv: shell\ncwd: /app\nETCD: 127.0.0.1:4001\nstdin:\n${RESAVE_SNIPPET}\nend\n`;
      if (fed !== want) problem(`controller: ./manage.py got ${JSON.stringify(fed)}, expected ${JSON.stringify(want)}`);
      ctx.log.ok(`deisctl: ${r.calls.backup.length} calls in the backup, ${r.calls.restore.length} in the restore, in the runbook's order; manage.py shell got the re-save snippet`);
    })),
  ], {
    target: dir,
    finally: () => {
      (writer as { stop(): number } | null)?.stop();
      s3.destroy();
      if (own && !opts.keep) rmSync(dir, { recursive: true, force: true });
    },
  }).catch((e) => {
    if (e?.outcomes) r.outcomes = e.outcomes;
    throw e;
  });
  r.outcomes = outcomes;
  return r;
}

/** The drill's figures, a few lines for the summary. */
export function drillSummary(r: DeisDrillReport): string[] {
  const objects = Object.values(r.objects).reduce((n, o) => n + o.objects, 0);
  const bytes = Object.values(r.objects).reduce((n, o) => n + o.bytes, 0);
  const rows = Object.values(r.rows).reduce((a, n) => a + n, 0);
  return [
    `buckets   ${objects} objects, ${formatBytes(bytes)} (${Object.entries(r.objects).map(([b, o]) => `${b} ${o.objects}`).join(", ")}; ${r.multipart} multipart)`,
    `store     ${r.storeEntries} entries; live log ${formatBytes(r.liveLog.archivedBytes)} as archived${r.liveLog.changedWhileRead ? " (changed while read: warned)" : ""}`,
    `database  ${rows} rows in ${Object.keys(r.rows).length} tables, ${r.roles} roles`,
    `archive   ${r.archive} (${formatBytes(r.archiveBytes)})${r.restoredFrom !== r.archive ? `; restored from ${r.restoredFrom}` : ""}`,
    `time      seed ${formatDuration(r.ms.seed)}, backup ${formatDuration(r.ms.backup)}, destroy ${formatDuration(r.ms.destroy)}, restore ${formatDuration(r.ms.restore)}, compare ${formatDuration(r.ms.compare)}`,
  ];
}

/** The drill as a task: `npx zx tasks/run.ts drill:deis [--workdir DIR] [--keep] [--passphrase-file F]`, `make drill-deis ARGS="--keep"`. */
export const deisDrillTask = drillTask({
  name: "drill:deis",
  needs: ["docker", "sshd", "ceph"],
  description: "Deis v1 on the lab: back up (buckets, store volume, database), destroy, restore with the recipes, compare",
  settings: {
    workdir: { describe: "where the site file, state and backups go (default: a new temp dir, removed after unless --keep)" },
    keep: { type: "boolean", describe: "keep the working folder and the archive" },
    passphrase: { describe: "encrypt the archive with this age passphrase", secret: true },
    offsite: { describe: "also copy the archive to this s3://BUCKET/PREFIX on the lab gateway, and restore from that copy" },
  },
  async run(ctx) {
    if (ctx.dryRun) {
      ctx.log.info("[dry-run] would seed a lab Deis (buckets db_wal and registry, the store volume over ssh, deis-database), run deis-backup, destroy it, run deis-restore and compare");
      return;
    }
    const t0 = Date.now();
    const r = await deisDrill({ workdir: ctx.settings.workdir || undefined, keep: ctx.settings.keep, passphrase: ctx.settings.passphrase || undefined, offsite: ctx.settings.offsite || undefined, ctx });
    ctx.log.info("");
    ctx.log.info(chalk.bold("drill:deis summary"));
    printOutcomes(ctx, r.outcomes);
    for (const line of drillSummary(r)) ctx.log.info(`  ${line}`);
    if (ctx.settings.keep || ctx.settings.workdir) ctx.log.info(`  workdir   ${r.work.dir} (site file ${r.work.site})`);
    if (r.problems.length) throw new VerifyError(`drill:deis: the restore differs from the backup in ${r.problems.length} place(s)`, r.problems);
    ctx.log.ok(chalk.green(`drill:deis: restored Deis matches what was backed up (${((Date.now() - t0) / 1000).toFixed(1)}s)`));
  },
});
