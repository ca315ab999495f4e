// The Hoss drill: a lab "Hoss" is backed up with recipes/hoss-backup.ts, wiped, restored with
// recipes/hoss-restore.ts onto the clean state, and compared with what it was. Used by
// test/hoss.test.ts and by the drill:hoss task at the end of this file (make drill-hoss, DRILL=hoss make demo).
//
// The lab Hoss (test/lab/hoss.sh plays `make up` / `make down` / `make reset` / `make restart`):
//   - its working dir, a temp ~/.hoss: .env (BACKUP_ROOT inside it, the default layout),
//     traefik.yaml, core/ auth/ sync/ opensearch/ config, nested certs with awkward names and
//     modes, a symlink; data/ with database and search files (not backed up) and data/nas, the
//     object store, which the runbook says to keep and the restore must leave alone;
//   - private keys outside it, as Hoss keeps them in the server_auth-secrets volume;
//   - a PostgreSQL container (lab image) with hoss_core and hoss_auth and rows in each table;
//   - the lab's real slapd (organisation, 20 people, 3 groups), slapcat/slapadd with -f CONF;
//   - the OpenSearch stand-in with documents in two indices, path.repo = BACKUP_ROOT/.opensearch;
//   - the server stand-in (test/standins/hoss-server.ts), which the restore's start command starts.
// The recipes run as an operator runs them: child processes with --config site.yaml --yes.
// The restore is first SIGKILLed once its LDAP data is loaded, before the journal records it (the
// fault point LIFEBOAT_FAULT_KILL_AT_RECORD), then --resume'd failing at "restart core" (a failing
// command), then --resume'd again.
//
// Compared after the restore: config files and keys byte for byte with modes (keys must be
// 0600), database rows of every table and the sequences, slapcat output (byte for byte: slapadd
// keeps entryUUID, entryCSN and the timestamps, so no operational attribute needs masking), and
// every document of every index.
import { execFileSync, spawn } from "node:child_process";
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import process from "node:process";
import { compareTrees, formatBytes, formatDuration, typeScriptFlags } from "../../lib/mod.ts";
import { collectLines, drillTask, needLab } from "./lab.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url)).replace(/\/$/, "");
const HOSS_SH = `${ROOT}/test/lab/hoss.sh`;
const SLAPD_SH = `${ROOT}/test/lab/slapd.sh`;

/** Options for {@link hossDrill}. */
export interface HossDrillOptions {
  /** Progress lines (default: stderr). */
  log?: (line: string) => void;
  /** Run the restore first with a failing "restart core" and then --resume it (default true). */
  resume?: boolean;
  /** Keep the temp dir (working dir, archive, logs) for a look afterwards (default false). */
  keep?: boolean;
  /** The recipes' output goes here too (default: only kept in the result). */
  echo?: boolean;
  /** Stops the running recipe when it fires (the task passes ctx.signal: SIGINT/SIGTERM). */
  signal?: AbortSignal;
}

/** What the drill did and found. */
export interface HossDrillResult {
  dir: string;
  archive: string;
  archiveBytes: number;
  archiveMode: number;
  configFiles: number;
  keyFiles: number;
  dbRows: Record<string, number>;
  ldapEntries: number;
  docs: Record<string, number>;
  backupMs: number;
  restoreMs: number;
  /** The first restore failed at "restart core" (exit 1) and --resume finished it. */
  resumed: boolean;
  restarts: string[];
  backupOutput: string;
  restoreOutput: string;
}

/** One run of a recipe. */
export interface RecipeRun {
  code: number;
  output: string;
  ms: number;
}

/**
 * Runs a recipe as an operator would: `node recipes/NAME.ts ARGS…` in the repository (with
 * `--import=tsx` on a Node that does not strip types itself).
 * @example const r = await runRecipe("hoss-backup", ["--config", "site.yaml", "--yes"]);
 */
export function runRecipe(name: string, args: string[], opts: { env?: Record<string, string>; echo?: boolean; runtime?: "node" | "deno"; signal?: AbortSignal } = {}): Promise<RecipeRun> {
  const t0 = Date.now();
  const argv = opts.runtime === "deno" ? ["npx", "deno", "run", "-A", `recipes/${name}.ts`, ...args] : [process.execPath, ...typeScriptFlags(process.execPath), `recipes/${name}.ts`, ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), {
      cwd: ROOT,
      env: { ...process.env, NO_COLOR: "1", FORCE_COLOR: "0", CI: "1", NODE_OPTIONS: "", ...opts.env },
      stdio: ["ignore", "pipe", "pipe"],
      signal: opts.signal,
    });
    const output = collectLines(child, opts.echo ? (l) => process.stderr.write(`${l}\n`) : undefined);
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? 1, output: output(), ms: Date.now() - t0 }));
  });
}

/** A TCP port nothing listens on now. */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

const sh = (argv: string[], input?: string) => execFileSync(argv[0], argv.slice(1), { encoding: "utf8", input, stdio: ["pipe", "pipe", "pipe"], maxBuffer: 64 << 20 });

/** Writes a file with a mode, making its directory. */
function put(path: string, text: string | Buffer, mode = 0o644): void {
  mkdirSync(join(path, ".."), { recursive: true });
  writeFileSync(path, text);
  chmodSync(path, mode);
}

/** The lab Hoss's working dir: config, nested files with awkward names, data/ (not backed up). */
export function seedConfig(hossDir: string, backupRoot: string): void {
  put(`${hossDir}/.env`, [
    "# Hoss server settings (make config)",
    "UID=1000", "GID=1000", `BACKUP_ROOT=${backupRoot}`, "DOMAIN=hoss.lab", "EXTERNAL_HOSTNAME=hoss.lab",
    "POSTGRES_USER=postgres", "POSTGRES_PASSWORD='s3cr3t with spaces'", "LDAP_DOMAIN=hoss.lab", "LDAP_ORGANISATION=\"Hoss Lab\"",
    "SERVICE_AUTH_SECRET=9f8e7d6c5b4a", "HEALTH_CHECK_HOST=hoss.lab", "",
  ].join("\n"), 0o600);
  put(`${hossDir}/traefik.yaml`, "entryPoints:\n  web: {address: ':80'}\n  websecure: {address: ':443'}\n");
  put(`${hossDir}/core/config.yaml`, "server:\n  elasticsearch_endpoint: http://opensearch:9200\n  object_stores: [default]\n");
  put(`${hossDir}/core/db-init-scripts/create-databases.sh`, "#!/bin/bash\nset -eu\npsql -c 'CREATE DATABASE hoss_core' -c 'CREATE DATABASE hoss_auth'\n", 0o755);
  put(`${hossDir}/auth/config.yaml`, "ldap:\n  host: ldap\n  base_dn: dc=hoss,dc=lab\n", 0o640);
  put(`${hossDir}/auth/openid-config.json`, JSON.stringify({ issuer: "https://hoss.lab/auth", client_id: "hoss" }, null, 2));
  put(`${hossDir}/auth/config-ldap.ldif`, "dn: ou=people,dc=hoss,dc=lab\nobjectClass: organizationalUnit\nou: people\n");
  put(`${hossDir}/sync/config.yaml`, "queues:\n  - name: hoss-sync\n    type: amqp\n");
  put(`${hossDir}/opensearch/opensearch.yml`, "path.repo: [/mnt/snapshots]\ndiscovery.type: single-node\n");
  put(`${hossDir}/certs/hoss lab (self-signed).crt`, "-----BEGIN CERTIFICATE-----\nMIIBlab\n-----END CERTIFICATE-----\n");
  put(`${hossDir}/certs/server.key`, "-----BEGIN PRIVATE KEY-----\nMIIEtls\n-----END PRIVATE KEY-----\n", 0o600);
  put(`${hossDir}/certs/notes-ünïcødé.txt`, "kept byte for byte: \u00e9\u00e8 \u65e5\u672c\n", 0o400);
  symlinkSync("core/config.yaml", `${hossDir}/current-config.yaml`);
  // data/: not backed up. The database and search files go in the wipe; data/nas (the object
  // store) is what an operator must keep, and the restore must leave alone.
  put(`${hossDir}/data/db/PG_VERSION`, "15\n", 0o600);
  put(`${hossDir}/data/opensearch/nodes/0/node.lock`, "");
  put(`${hossDir}/data/nas/hoss-bucket/datasets/raw/object-1.bin`, Buffer.from(Array.from({ length: 4096 }, (_, i) => i % 251)));
  for (const d of [".db", ".opensearch", "backups"]) mkdirSync(`${backupRoot}/${d}`, { recursive: true });
}

/** Private keys, as in the auth-secrets volume: one 0600, one left 0640 (the backup must make it 0600). */
export function seedKeys(keysDir: string): void {
  put(`${keysDir}/private.pem`, "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAhoss-lab-signing-key\n-----END RSA PRIVATE KEY-----\n", 0o600);
  put(`${keysDir}/service.key`, "hoss-service-key-0123456789abcdef\n", 0o640);
  chmodSync(keysDir, 0o700);
}

export const SEED_SQL: Record<string, string> = {
  hoss_core: `
INSERT INTO namespace (name, description, object_store, created_at) VALUES
  ('default', 'the default namespace', 'default', '2026-01-02T03:04:05Z'),
  ('research', 'Forschung & développement — 研究', 'minio', '2026-02-03T04:05:06Z'),
  ('archive', NULL, 's3-glacier', '2026-03-04T05:06:07Z');
INSERT INTO dataset (namespace_id, name, metadata, deleted, created_at) SELECT n.id, d.name, d.meta::jsonb, d.deleted, '2026-04-05T06:07:08Z'
  FROM (VALUES ('default', 'images', '{"owner": "alice", "tags": ["raw", "2026"]}', false),
               ('default', 'scans', '{"owner": "bob", "size": 12345678901}', false),
               ('research', 'mri-cohort-α', '{"owner": "zoe", "note": "line one\\nline two, with a comma"}', false),
               ('research', 'old', NULL, true),
               ('archive', 'logs-2025', '{"owner": "taro", "lang": "日本語"}', false)) AS d(ns, name, meta, deleted)
  JOIN namespace n ON n.name = d.ns;
INSERT INTO sync_policy (dataset_id, policy) SELECT id, '{"sync": true, "target": "s3://mirror"}' FROM dataset WHERE name IN ('images', 'mri-cohort-α');`,
  hoss_auth: `
INSERT INTO account (username, email, full_name, created_at) VALUES
  ('alice', 'alice@hoss.lab', 'Alice Anderson', '2026-01-01T00:00:00Z'),
  ('zoe', NULL, 'Zoë Ångström', '2026-01-02T00:00:00Z'),
  ('jdoe', 'jdoe@hoss.lab', 'Doe, Jane Q.', '2026-01-03T00:00:00Z'),
  ('erin', 'erin@hoss.lab', 'Erin O''Brien', '2026-01-04T00:00:00Z');
INSERT INTO api_key (account_id, key_hash, description, expires_at) SELECT id, decode(md5(username), 'hex'), 'key of ' || username, NULL FROM account;
DELETE FROM api_key WHERE description = 'key of erin';`,
};

/** Every table (and sequence) the drill compares, per database. */
const TABLES: Record<string, string[]> = {
  hoss_core: ["namespace", "dataset", "sync_policy"],
  hoss_auth: ["account", "api_key"],
};

export function psql(container: string, db: string, sql: string): string {
  return sh(["docker", "exec", "-i", "-u", "postgres", container, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--csv", "-d", db, "-f", "-"], sql);
}

/** Rows of every table and the state of its sequence, as CSV text keyed by db.table. */
export function dbState(container: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [db, tables] of Object.entries(TABLES)) {
    for (const t of tables) {
      out[`${db}.${t}`] = psql(container, db, `SELECT * FROM ${t} ORDER BY id`);
      out[`${db}.${t}_id_seq`] = psql(container, db, `SELECT last_value, is_called FROM ${t}_id_seq`);
    }
  }
  return out;
}

async function os(url: string, method: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: body === undefined ? {} : { "content-type": typeof body === "string" ? "application/x-ndjson" : "application/json" },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status}: ${text.slice(0, 300)}`);
  return text ? JSON.parse(text) : null;
}

const INDICES = { "metadata-index": 25, "hoss-audit": 12 } as const;

export async function seedSearch(url: string): Promise<void> {
  await os(url, "PUT", "/hoss-audit", { settings: { number_of_shards: 1, number_of_replicas: 0 } });
  const lines: string[] = [];
  for (let i = 1; i <= INDICES["metadata-index"]; i++) {
    lines.push(JSON.stringify({ index: { _index: "metadata-index", _id: `obj-${String(i).padStart(3, "0")}` } }));
    lines.push(JSON.stringify({ namespace: i % 2 ? "default" : "research", dataset: i % 3 ? "images" : "mri-cohort-α", key: `raw/file ${i}.tif`, size: i * 1024, metadata: { owner: ["alice", "zoë", "太郎"][i % 3], tags: ["x", `t${i}`] } }));
  }
  for (let i = 1; i <= INDICES["hoss-audit"]; i++) {
    lines.push(JSON.stringify({ index: { _index: "hoss-audit" } }));
    lines.push(JSON.stringify({ at: `2026-05-0${1 + (i % 9)}T10:00:00Z`, user: "alice", action: i % 2 ? "PUT" : "DELETE", seq: i }));
  }
  const r = await os(url, "POST", "/_bulk?refresh=true", lines.join("\n") + "\n");
  if (r.errors) throw new Error(`seeding the search index failed: ${JSON.stringify(r.items.find((x: any) => Object.values(x).some((v: any) => v.error)))}`);
}

/** Every document of every drill index: [_id, _source] sorted by _id. */
export async function searchState(url: string): Promise<Record<string, [string, unknown][]>> {
  const out: Record<string, [string, unknown][]> = {};
  await os(url, "POST", "/_refresh");
  for (const index of Object.keys(INDICES)) {
    const r = await os(url, "POST", `/${index}/_search`, { query: { match_all: {} }, size: 10000, sort: [{ _id: "asc" }] });
    out[index] = r.hits.hits.map((h: any) => [h._id, h._source]);
  }
  return out;
}

const slapcat = (conf: string) => sh(["slapcat", "-f", conf]);

/** Lists differences between two keyed states, or [] when equal. */
export function differ<T>(what: string, a: Record<string, T>, b: Record<string, T>): string[] {
  const out: string[] = [];
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    if (JSON.stringify(a[k]) !== JSON.stringify(b[k])) out.push(`${what} ${k}: before ${JSON.stringify(a[k])?.slice(0, 200)}, after ${JSON.stringify(b[k])?.slice(0, 200)}`);
  }
  return out;
}

/**
 * The whole drill: seed, back up, wipe, restore (failing once, then --resume), compare.
 * Throws with every difference listed when the restored state is not the original.
 * @example const r = await hossDrill(); console.log(r.archive, r.dbRows, r.docs);
 */
export async function hossDrill(opts: HossDrillOptions = {}): Promise<HossDrillResult> {
  const log = opts.log ?? ((l: string) => process.stderr.write(l + "\n"));
  const lab = needLab("docker", "slapd");
  const dir = mkdtempSync(join(tmpdir(), "lifeboat-hoss-drill-"));
  const hossDir = `${dir}/home/.hoss`;
  const backupRoot = `${hossDir}/backup`;
  const keysDir = `${dir}/volumes/server_auth-secrets/_data`;
  const container = `lifeboat-hoss-db-${process.pid}`;
  const [osPort, serverPort] = [await freePort(), await freePort()];
  const search = `http://127.0.0.1:${osPort}`;
  const envFile = `${dir}/hoss-lab.env`;
  const ldapBefore = slapcat(lab.LAB_SLAPD_CONF); // also the safety copy: the lab's slapd is shared
  let ldapTouched = false;
  try {
    // ---- the lab Hoss -------------------------------------------------------------------------
    writeFileSync(envFile, [
      `HOSS_RUN=${dir}/run`, `HOSS_PG_CONTAINER=${container}`, `HOSS_OS_PORT=${osPort}`, `HOSS_OS_DATA=${dir}/opensearch-data`,
      `HOSS_OS_REPO=${backupRoot}/.opensearch`, `HOSS_SERVER_PORT=${serverPort}`, "HOSS_SERVER_VERSION=2.1.3", "HOSS_READY_AFTER_MS=1500", "",
    ].join("\n"));
    writeFileSync(`${dir}/age.pw`, "correct horse battery staple\n", { mode: 0o600 });
    writeFileSync(`${dir}/site.yaml`, siteYaml({ dir, hossDir, keysDir, container, serverPort, search, backupRoot, envFile, lab }));
    seedConfig(hossDir, backupRoot);
    chmodSync(hossDir, 0o750); // a mode of its own, which the restore must give back
    seedKeys(keysDir);
    log(`lab Hoss in ${dir}: make up (database ${container}, search ${search}, server :${serverPort})`);
    sh(["bash", HOSS_SH, "up", envFile]);
    for (const [db, sql] of Object.entries(SEED_SQL)) psql(container, db, sql);
    await seedSearch(search);

    const before = { db: dbState(container), search: await searchState(search), configDir: `${dir}/before/hoss`, keysDir: `${dir}/before/keys` };
    cpSync(hossDir, before.configDir, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
    chmodSync(before.configDir, statSync(hossDir).mode & 0o7777);
    cpSync(keysDir, before.keysDir, { recursive: true, preserveTimestamps: true });
    const ldapEntries = (ldapBefore.match(/^dn::? /gm) ?? []).length;
    log(`seeded: ${Object.values(SEED_SQL).length} databases, ${ldapEntries} LDAP entries, ${Object.values(before.search).reduce((n, d) => n + d.length, 0)} documents`);

    // ---- back up, as an operator would --------------------------------------------------------
    const env = { LIFEBOAT_STATE_DIR: `${dir}/state` };
    const backup = await runRecipe("hoss-backup", ["--config", `${dir}/site.yaml`, "--yes"], { env, echo: opts.echo, signal: opts.signal });
    if (backup.code !== 0) throw new Error(`hoss-backup exited ${backup.code}:\n${backup.output}`);
    const archives = readdirSync(`${backupRoot}/backups`).filter((n) => /^hoss-backup-\d{4}-\d\d-\d\dT\d{6}Z\.tar\.gz\.age$/.test(n));
    if (archives.length !== 1) throw new Error(`expected one hoss-backup-<stamp>.tar.gz.age in backups/, found: ${readdirSync(`${backupRoot}/backups`).join(", ")}`);
    const archive = `${backupRoot}/backups/${archives[0]}`;
    if (existsSync(`${backupRoot}/.current`)) throw new Error(".current is still there after the backup");
    log(`backup: ${archives[0]} in ${(backup.ms / 1000).toFixed(1)} s`);

    // ---- wipe: make down + make reset, the working dir but backups/ and data/nas, keys, LDAP, index
    sh(["bash", HOSS_SH, "reset", envFile]);
    for (const name of readdirSync(hossDir)) if (name !== "backup" && name !== "data") rmSync(`${hossDir}/${name}`, { recursive: true, force: true });
    for (const name of readdirSync(`${hossDir}/data`)) if (name !== "nas") rmSync(`${hossDir}/data/${name}`, { recursive: true, force: true });
    for (const name of readdirSync(backupRoot)) if (name !== "backups") rmSync(`${backupRoot}/${name}`, { recursive: true, force: true });
    rmSync(`${dir}/volumes`, { recursive: true, force: true });
    ldapTouched = true;
    sh(["bash", SLAPD_SH, "wipe"]);
    if (slapcat(lab.LAB_SLAPD_CONF).trim() !== "") throw new Error("the LDAP wipe left entries");
    log("wiped: database container, search data, working dir (kept: backup/backups, data/nas), keys, LDAP");

    // ---- restore onto the clean state: killed once the LDAP data is loaded (before the journal
    // records it), then --resume failing at "restart core", then --resume -------------------------
    const restoreArgs = [archive, "--config", `${dir}/site.yaml`, "--yes"];
    let resumed = false;
    let restore: RecipeRun;
    if (opts.resume ?? true) {
      const killed = await runRecipe("hoss-restore", restoreArgs, { env: { ...env, LIFEBOAT_FAULT_KILL_AT_RECORD: "ldap-load" }, echo: opts.echo, signal: opts.signal });
      if (killed.code === 0 || !/load the LDAP data \(slapadd\)/.test(killed.output) || /✖ error/.test(killed.output)) throw new Error(`the restore should be killed once its LDAP load is done, got exit ${killed.code}:\n${killed.output}`);
      log(`restore killed (SIGKILL) after loading the LDAP data, before recording it, as arranged (${(killed.ms / 1000).toFixed(1)} s); resuming`);
      const failing = await runRecipe("hoss-restore", [...restoreArgs, "--server.restart-core=false", "--resume"], { env, echo: opts.echo, signal: opts.signal });
      if (failing.code !== 1 || !/step 'restart core[^']*' failed/.test(failing.output)) throw new Error(`the restore with a failing restart should stop at 'restart core' (exit 1), got exit ${failing.code}:\n${failing.output}`);
      log(`restore stopped at 'restart core' as arranged (exit 1, ${(failing.ms / 1000).toFixed(1)} s); resuming`);
      restore = await runRecipe("hoss-restore", [...restoreArgs, "--resume"], { env, echo: opts.echo, signal: opts.signal });
      if (restore.code !== 0) throw new Error(`hoss-restore --resume exited ${restore.code}:\n${restore.output}`);
      if (!/resuming hoss-restore: \d+ of \d+ steps already done, continuing at 'restart core/.test(restore.output)) throw new Error(`the resumed restore did not continue at 'restart core':\n${restore.output}`);
      resumed = true;
      restore.ms += killed.ms + failing.ms;
    } else {
      restore = await runRecipe("hoss-restore", restoreArgs, { env, echo: opts.echo, signal: opts.signal });
      if (restore.code !== 0) throw new Error(`hoss-restore exited ${restore.code}:\n${restore.output}`);
    }
    log(`restore: done in ${(restore.ms / 1000).toFixed(1)} s`);

    // ---- compare ------------------------------------------------------------------------------
    const diffs: string[] = [];
    diffs.push(...(await compareTrees(before.configDir, hossDir, { ignore: ["backup", "data/db", "data/opensearch"] })).map((d) => `config ${d}`));
    if (statSync(hossDir).mode !== statSync(before.configDir).mode) diffs.push(`config: ${hossDir} has mode ${(statSync(hossDir).mode & 0o7777).toString(8)}, was ${(statSync(before.configDir).mode & 0o7777).toString(8)}`);
    diffs.push(...(await compareTrees(before.keysDir, keysDir, { modes: false })).map((d) => `keys ${d}`));
    for (const name of readdirSync(keysDir)) {
      const mode = statSync(`${keysDir}/${name}`).mode & 0o777;
      if (mode !== 0o600) diffs.push(`keys ${name}: mode ${mode.toString(8)}, want 600`);
    }
    diffs.push(...differ("database", before.db, dbState(container)));
    const ldapAfter = slapcat(lab.LAB_SLAPD_CONF);
    if (ldapAfter !== ldapBefore) diffs.push(`ldap: slapcat differs (${(ldapAfter.match(/^dn::? /gm) ?? []).length} entries after, ${ldapEntries} before)`);
    else ldapTouched = false;
    diffs.push(...differ("search", before.search, await searchState(search)));
    const leftovers = [".restore", ".current"].filter((d) => existsSync(`${backupRoot}/${d}`)).concat(readdirSync(`${backupRoot}/.opensearch`).length ? [".opensearch (not emptied)"] : []);
    if (leftovers.length) diffs.push(`leftovers in BACKUP_ROOT: ${leftovers.join(", ")}`);
    const restarts = readFileSync(`${dir}/run/restarts.log`, "utf8").trim().split("\n").map((l) => l.split(" ")[1]);
    if (restarts.join(",") !== "sync,core") diffs.push(`restarts: ${restarts.join(",")}, want sync,core (once each)`);
    if (diffs.length) throw new Error(`the restored Hoss differs from the original in ${diffs.length} place(s):\n  ${diffs.join("\n  ")}`);

    const st = statSync(archive);
    const countFiles = (d: string): number => readdirSync(d, { withFileTypes: true }).reduce((n, e) => n + (e.isDirectory() ? countFiles(`${d}/${e.name}`) : 1), 0);
    return {
      dir,
      archive,
      archiveBytes: st.size,
      archiveMode: st.mode & 0o777,
      configFiles: countFiles(before.configDir) - countFiles(`${before.configDir}/data`) - countFiles(`${before.configDir}/backup`),
      keyFiles: countFiles(keysDir),
      dbRows: Object.fromEntries(Object.entries(before.db).filter(([k]) => !k.endsWith("_seq")).map(([k, v]) => [k, v.trim().split("\n").length - 1])),
      ldapEntries,
      docs: Object.fromEntries(Object.entries(before.search).map(([k, v]) => [k, v.length])),
      backupMs: backup.ms,
      restoreMs: restore.ms,
      resumed,
      restarts,
      backupOutput: backup.output,
      restoreOutput: restore.output,
    };
  } finally {
    try {
      sh(["bash", HOSS_SH, "reset", envFile]);
    } catch (e) {
      log(`cleanup: hoss.sh reset failed: ${(e as Error).message}`);
    }
    if (ldapTouched) restoreLdap(lab, ldapBefore, dir, log);
    if (!opts.keep) rmSync(dir, { recursive: true, force: true });
  }
}

/** Puts the shared lab slapd back as it was before the drill (only when the drill left it different). */
function restoreLdap(lab: Record<string, string>, ldif: string, dir: string, log: (l: string) => void): void {
  log("cleanup: putting the lab's LDAP data back as it was");
  const file = `${dir}/ldap-before.ldif`;
  writeFileSync(file, ldif);
  sh(["bash", SLAPD_SH, "stop-server"]);
  sh(["find", lab.LAB_SLAPD_DB, "-mindepth", "1", "-delete"]);
  sh(["slapadd", "-q", "-f", lab.LAB_SLAPD_CONF, "-l", file]);
  sh(["bash", SLAPD_SH, "start-server"]);
}

/** The drill's site file: the lab's commands in place of Hoss's docker/make ones. */
function siteYaml(p: { dir: string; hossDir: string; keysDir: string; container: string; serverPort: number; search: string; backupRoot: string; envFile: string; lab: Record<string, string> }): string {
  const list = (xs: string[]) => `[${xs.map((x) => JSON.stringify(x)).join(", ")}]`;
  return `# The Hoss drill's site file (tasks/drills/hoss.ts): recipes/hoss.site.example.yaml with the lab's commands.
config-dir: ${JSON.stringify(p.hossDir)}
endpoint: http://127.0.0.1:${p.serverPort}
config:
  exclude: [data]
  keep: [data/nas]
keys:
  paths: [${JSON.stringify(p.keysDir)}]
db:
  container: ${p.container}
  databases: [hoss_core, hoss_auth]
ldap:
  enabled: true
  slapcat: ${list(["slapcat", "-f", p.lab.LAB_SLAPD_CONF])}
  stop: ${list(["bash", SLAPD_SH, "stop-server"])}
  clear: ${list(["find", p.lab.LAB_SLAPD_DB, "-mindepth", "1", "-delete"])}
  slapadd: ${list(["slapadd", "-q", "-f", p.lab.LAB_SLAPD_CONF])}
  start: ${list(["bash", SLAPD_SH, "start-server"])}
search:
  url: ${p.search}
  location: ${JSON.stringify(`${p.backupRoot}/.opensearch`)}
server:
  dir: ${JSON.stringify(ROOT)}
  start: ${list(["bash", "test/lab/hoss.sh", "up", p.envFile])}
  timeout: 120
  restart-sync: ${list(["bash", "test/lab/hoss.sh", "restart", p.envFile, "sync"])}
  restart-core: ${list(["bash", "test/lab/hoss.sh", "restart", p.envFile, "core"])}
age:
  passphrase-file: ${JSON.stringify(`${p.dir}/age.pw`)}
`;
}

/** The drill as a task: `npx zx tasks/run.ts drill:hoss [--keep] [--no-resume] [--verbose]`, `make drill-hoss`. */
export const hossDrillTask = drillTask({
  name: "drill:hoss",
  needs: ["docker", "slapd"],
  description: "back up a lab Hoss with hoss-backup, wipe it, restore it with hoss-restore (failing once, then --resume) and compare",
  usage: "tasks/run.ts drill:hoss [--keep] [--no-resume] [--verbose]",
  settings: {
    keep: { type: "boolean", describe: "keep the drill's temp dir (working dir, archive, logs) afterwards" },
    resume: { type: "boolean", describe: "restore once with a failing 'restart core', then --resume (--no-resume: one plain restore)", default: true },
  },
  async run(ctx) {
    if (ctx.dryRun) {
      ctx.log.info("[dry-run] would seed a lab Hoss (database container, slapd, OpenSearch and server stand-ins), run hoss-backup, wipe it, run hoss-restore and compare");
      return;
    }
    const r = await hossDrill({ log: (l) => ctx.log.info(l), keep: ctx.settings.keep, resume: ctx.settings.resume, echo: ctx.settings.verbose, signal: ctx.signal });
    ctx.log.ok("the restored Hoss matches the original");
    ctx.log.info(`  archive   ${r.archive} (${formatBytes(r.archiveBytes)}, mode ${r.archiveMode.toString(8)})`);
    ctx.log.info(`  config    ${r.configFiles} files and links, byte for byte with modes; keys ${r.keyFiles} files, 0600`);
    ctx.log.info(`  database  ${Object.entries(r.dbRows).map(([t, n]) => `${t} ${n}`).join(", ")} rows, sequences equal`);
    ctx.log.info(`  ldap      ${r.ldapEntries} entries, slapcat identical`);
    ctx.log.info(`  search    ${Object.entries(r.docs).map(([i, n]) => `${i} ${n}`).join(", ")} documents`);
    ctx.log.info(`  timings   backup ${formatDuration(r.backupMs)}, restore ${formatDuration(r.restoreMs)}${r.resumed ? " (failed at 'restart core', then --resume)" : ""}`);
    if (ctx.settings.keep) ctx.log.info(`  kept      ${r.dir}`);
  },
});
