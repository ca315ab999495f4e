// HCoop's MariaDB databases on the lab's mariadbd (test/lab/mariadb.sh): hcoop-backup dumps each
// database (mariadb-dump --single-transaction --routines --events) and the users and grants into
// the day's databases archive beside the volumes; hcoop-restore-db unpacks it and loads one
// database back, row for row, with awkward names (spaces, quotes, a leading dash, utf8mb4).
// Credentials travel in an option file, never on argv or in the output.
// Run: bash test/run.sh test/hcoop-mariadb.test.ts
// needs: afs mariadb
import { test } from "uvu";
import * as assert from "uvu/assert";
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { labCell } from "../tasks/drills/afs-cell.ts";
import { runRecipe } from "../tasks/drills/hoss.ts";
import { needLab } from "../tasks/drills/lab.ts";
import { cleanupTmp, tmp } from "./helpers.ts";

const lab = needLab("mariadb");
const password = readFileSync(lab.LAB_MARIADB_PASSWORD_FILE, "utf8").trim();
const DB = `hcoop "maria" $(x) 'q'`;
const OTHER = "hcoop_plain";
const q = (n: string) => "`" + n.replaceAll("`", "``") + "`";
/** SQL on stdin, as the lab's admin (its option file). */
const sql = (text: string, db?: string) => execFileSync("mariadb", [`--defaults-file=${lab.LAB_MARIADB_DEFAULTS_FILE}`, "--default-character-set=utf8mb4", "--batch", "--skip-column-names", ...(db ? [`--database=${db}`] : [])], { input: text }).toString();
const rows = () => sql(`SELECT id, name, HEX(blobby), note FROM ${q("-dash table")} ORDER BY id; SELECT * FROM ${q("view of it")} ORDER BY id; SHOW CREATE PROCEDURE ${q("count it")}; SELECT COUNT(*) FROM ${q("plain")};`, DB);
const dir = tmp();
const site = join(dir, "site.yaml");
const { cell, prefix } = labCell();
writeFileSync(site, [
  `backups: { dir: ${JSON.stringify(join(dir, "b"))} }`,
  `afs: { server: ${cell.server}, auth: noauth, prefix: ${JSON.stringify(prefix)} }`,
  "volumes: { prefixes: [user.nomdb.] }", // no such volumes: this test is about the databases
  "age: { passphrase: lab-passphrase-long-enough }",
  `state-dir: ${JSON.stringify(join(dir, "state"))}`,
  // the backup logs in with a password (a secret, from a file); the restore below with an option file
  `mariadb: { enabled: true, host: 127.0.0.1, port: ${lab.LAB_MARIADB_PORT}, user: ${lab.LAB_MARIADB_USER}, password-file: ${JSON.stringify(lab.LAB_MARIADB_PASSWORD_FILE)} }`,
  "",
].join("\n"));
let before = "";
test.after(() => {
  try {
    sql(`DROP DATABASE IF EXISTS ${q(DB)}; DROP DATABASE IF EXISTS ${q(OTHER)}; DROP USER IF EXISTS 'hcoop app'@'%';`);
  } catch { /* the server is gone */ }
  cleanupTmp();
});

test("hcoop-backup dumps every MariaDB database and the users and grants into the databases archive; no password on argv or in the output", async () => {
  sql(`DROP DATABASE IF EXISTS ${q(DB)}; DROP DATABASE IF EXISTS ${q(OTHER)}; DROP USER IF EXISTS 'hcoop app'@'%';
CREATE DATABASE ${q(DB)} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci; CREATE DATABASE ${q(OTHER)};
CREATE USER 'hcoop app'@'%' IDENTIFIED BY 'app-pw'; GRANT SELECT, INSERT ON ${q(DB)}.* TO 'hcoop app'@'%';`);
  sql(`CREATE TABLE ${q("-dash table")} (id INT PRIMARY KEY, name VARCHAR(100), blobby VARBINARY(64), note TEXT) CHARACTER SET utf8mb4;
INSERT INTO ${q("-dash table")} VALUES (1, 'Zoë Ångström 🚀', X'00FF0A0D5C27', 'tab\\there, newline\\nthere'), (2, 'O''Brien "quoted" \`back\`', NULL, NULL), (3, '山田 太郎', X'', '');
INSERT INTO ${q("-dash table")} SELECT seq + 10, CONCAT('row ', seq), UNHEX(MD5(seq)), REPEAT('x', seq % 50) FROM seq_1_to_300;
CREATE TABLE ${q("plain")} (id INT); INSERT INTO ${q("plain")} SELECT seq FROM seq_1_to_1000;
CREATE VIEW ${q("view of it")} AS SELECT id, CHAR_LENGTH(name) AS n FROM ${q("-dash table")} WHERE id < 5;
CREATE PROCEDURE ${q("count it")}() SELECT COUNT(*) FROM ${q("-dash table")};`, DB);
  before = rows();
  const r = await runRecipe("hcoop-backup", ["--clock.today=2026-11-24", "--config", site]);
  assert.is(r.code, 0, r.output);
  assert.not.ok(r.output.includes(password), "the password appears in the output");
  assert.match(r.output, /MariaDB 127\.0\.0\.1:\d+: \d+ databases \+ users and grants/);
  const m = JSON.parse(readFileSync(join(dir, "b", "2026.11.24", "2026.11.24-manifest.json"), "utf8"));
  assert.ok(m.databases.mariadb.dumps[DB] && m.databases.mariadb.dumps[OTHER], JSON.stringify(m.databases));
  assert.equal(m.databases.dumps, {}, "no PostgreSQL dumps: postgres.enabled is off");
  assert.not.ok(Object.keys(m.databases.mariadb.dumps).some((n: string) => ["mysql", "sys", "information_schema", "performance_schema"].includes(n)));
});

test("hcoop-backup killed once the databases were sealed but before that was recorded: --resume seals them again and completes the day; the stage goes with the manifest", async () => {
  const day = join(dir, "b", "2026.11.26");
  const stage = join(dir, "b", ".databases-2026.11.26");
  const args = ["--clock.today=2026-11-26", "--config", site];
  const killed = await runRecipe("hcoop-backup", args, { env: { LIFEBOAT_FAULT_KILL_AT_RECORD: "seal-databases" } });
  assert.is.not(killed.code, 0, killed.output);
  assert.ok(readdirSync(day).some((n) => n.startsWith("2026.11.26-databases")), `no sealed databases file in ${day}`);
  assert.ok(existsSync(stage), "the dumps stay staged until the manifest is written");
  const r = await runRecipe("hcoop-backup", [...args, "--resume"]);
  assert.is(r.code, 0, r.output.slice(-3000));
  const m = JSON.parse(readFileSync(join(day, "2026.11.26-manifest.json"), "utf8"));
  assert.ok(m.databases.mariadb.dumps[DB], JSON.stringify(m.databases));
  assert.not.ok(existsSync(stage), `${stage} left after the manifest`);
});

test("--dry-run prints each mariadb-dump with --defaults-file, never the password", async () => {
  const r = await runRecipe("hcoop-backup", ["--dry-run", "--clock.today=2026-11-25", "--config", site]);
  assert.is(r.code, 0, r.output);
  assert.match(r.output, /mariadb-dump --defaults-file=\S+ --host=127\.0\.0\.1 .*--system=users/);
  assert.match(r.output, /mariadb-dump .*--single-transaction --routines --events .*--databases .*hcoop "maria"/);
  assert.not.ok(r.output.includes(password));
});

test("hcoop-restore-db unpacks the MariaDB dumps and loads one database back row for row (spaces, quotes, leading dash, utf8mb4, binary, view, procedure)", async () => {
  sql(`DELETE FROM ${q("-dash table")} WHERE id > 2; UPDATE ${q("-dash table")} SET name = 'changed'; DROP VIEW ${q("view of it")}; DROP TABLE ${q("plain")};`, DB);
  assert.is(sql(`SELECT COUNT(*) FROM ${q("-dash table")}`, DB).trim(), "2");
  // this time the credentials come from an option file (the lab's [client] section)
  const site2 = join(dir, "site-restore.yaml");
  writeFileSync(site2, readFileSync(site, "utf8").replace(/^mariadb: .*$/m, `mariadb: { defaults-file: ${JSON.stringify(lab.LAB_MARIADB_DEFAULTS_FILE)} }`));
  const r = await runRecipe("hcoop-restore-db", ["2026.11.24", DB, "--yes", "--config", site2]);
  assert.is(r.code, 0, r.output);
  assert.match(r.output, /loaded\s+hcoop "maria".* into MariaDB/);
  const unpacked = join(dir, "b", "restored", "2026.11.24-db");
  const files = readdirSync(unpacked);
  for (const f of [`mariadb-${encodeURIComponent(DB)}.sql`, `mariadb-${OTHER}.sql`, "mariadb-users+grants.sql"]) assert.ok(files.includes(f), `${f} not in ${files.join(", ")}`);
  assert.not.ok(files.some((f) => /^mariadb-(mysql|sys|information_schema|performance_schema)\.sql$/.test(f)), files.join(", "));
  const users = readFileSync(join(unpacked, "mariadb-users+grants.sql"), "utf8");
  assert.match(users, /CREATE USER .*`hcoop app`@`%`/);
  assert.match(users, /GRANT SELECT, INSERT ON `hcoop "maria" \$\(x\) 'q'`\.\* TO `hcoop app`@`%`/);
  assert.equal(rows(), before);
  assert.ok(existsSync(join(dir, "b", "2026.11.24", "2026.11.24-databases.tar.gz.age")));
});

test.run();
