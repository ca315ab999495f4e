// The HCoop drill on the lab's real OpenAFS cell (test/lab/afs.sh): volumes for two users are
// filled through the FUSE client, backed up over three simulated days (clock.today: a Sunday full,
// then two incrementals) with recipes/hcoop-backup.ts, one is destroyed and restored with
// recipes/hcoop-restore.ts as of day 2 (into NAME.restored) and as of day 3 (replacing the live
// volume), and compared with the volume's tree of that day (restorevol of a fresh dump on both
// sides: no client needed). Then the refusals: a wrong ccrypt key (exit 3, no volume created), a
// truncated .aescrypt file (sha256), a missing incremental's full (named); the excluded volume
// never dumped; a legacy `vos dump | gzip | ccrypt -e -k KEY` file restored through the same verb;
// the databases archive (two databases on the lab's pg source cluster, one with an awkward name)
// unpacked into restored/DATE-db with recipes/hcoop-restore-db.ts and one database loaded into
// the lab's target cluster, compared row for row; every day copied to a "remote repository" (a
// local folder) and the day-2 restore run against an empty backups.dir, fetching its chain there.
// Used by test/hcoop.test.ts and the drill:hcoop task (make drill-hcoop).
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, truncateSync, unlinkSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compareTrees, formatBytes } from "../../lib/mod.ts";
import { createOpenVolume, inCell, labCell, removeVolume, volumePath, volumeTree, writeFile } from "./afs-cell.ts";
import { runRecipe } from "./hoss.ts";
import { drillTask, labPsql, needLab } from "./lab.ts";

/** Options for {@link hcoopDrill}. */
export interface HcoopDrillOptions {
  log?: (line: string) => void;
  /** Keep the temp dir (day folders, logs). */
  keep?: boolean;
  echo?: boolean;
  signal?: AbortSignal;
}

/** What the drill found. */
export interface HcoopDrillResult {
  dir: string;
  days: string[];
  /** file → bytes, per day. */
  bytes: Record<string, Record<string, number>>;
  /** incremental bytes / full bytes per volume, day 2 and day 3. */
  ratios: Record<string, number[]>;
  diffsDay2: string[];
  diffsDay3: string[];
  excludedDumped: string[];
  refusals: { wrongKey: string; truncated: string; missingFull: string };
  legacyDiffs: string[];
  /** Files the day-2 restore fetched from the remote repository (offsite.to, a local folder here) into an empty backups.dir. */
  fetchedFromRemote: string[];
  /** The databases archive: names unpacked into restored/DATE-db, and the loaded database's rows on the target against the source. */
  db: { unpacked: string[]; source: string[]; loaded: string[]; archiveBytes: number };
  backupMs: number[];
  restoreMs: number[];
}

const VOLUMES = ["user.alice", "db.alice", "mail.alice", "user.bob", "db.bob"];
const EXCLUDED = "user.x.not-backed-up";
const DAYS = ["2026-11-22", "2026-11-23", "2026-11-24"]; // a Sunday (schedule.full-day sun), Monday, Tuesday
/** Databases seeded on the lab's source cluster (the second one has an awkward name). */
const DBS = ["hcoop_drill", `hcoop "odd" $(db)`];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs the drill; throws when a recipe fails where it should not.
 * @example const r = await hcoopDrill({ log: console.error }); r.diffsDay3 // []
 */
export async function hcoopDrill(opts: HcoopDrillOptions = {}): Promise<HcoopDrillResult> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const { cell, prefix } = labCell();
  const dir = mkdtempSync(join(tmpdir(), "lifeboat-hcoop-drill-"));
  const backups = `${dir}/hcoop-backups`;
  writeFileSync(`${dir}/key`, randomBytes(32).toString("hex"), { mode: 0o600 });
  writeFileSync(`${dir}/wrong-key`, "not the key", { mode: 0o600 });
  const site = `${dir}/site.yaml`;
  const pgLab = needLab("pg");
  const dropDbs = (port: string) => DBS.forEach((d) => labPsql(port, "postgres", `DROP DATABASE IF EXISTS "${d.replaceAll('"', '""')}"`));
  writeFileSync(`${dir}/pg.password`, execFileSync("head", ["-n1", pgLab.LAB_PG_PASSWORD_FILE]), { mode: 0o600 });
  writeFileSync(site, [
    `backups: { dir: ${JSON.stringify(backups)} }`,
    `afs: { server: ${cell.server}, partition: a, auth: noauth, prefix: ${JSON.stringify(prefix)} }`,
    `volumes: { prefixes: [user., db., mail.], exclude: not-backed-up }`,
    `schedule: { full-day: sun }`,
    `state-dir: ${JSON.stringify(`${dir}/state`)}`,
    `encryption: { kind: ccrypt, key-file: ${JSON.stringify(`${dir}/key`)} }`,
    `offsite: { to: [${JSON.stringify(`${dir}/remote repo`)}] }`,
    `postgres: { enabled: true, databases: ${JSON.stringify(DBS)}, host: ${pgLab.LAB_PG_HOST}, port: ${pgLab.LAB_PG_PORT}, user: ${pgLab.LAB_PG_USER}, password-file: ${JSON.stringify(`${dir}/pg.password`)}, bin-dir: ${JSON.stringify(pgLab.LAB_PG_BIN)} }`,
    "",
  ].join("\n"));
  const recipeRun = async (name: string, args: string[]) => {
    const r = await runRecipe(name, [...args, "--config", site], { echo: opts.echo, signal: opts.signal });
    log(`${name} ${args.join(" ")}: exit ${r.code} (${(r.ms / 1000).toFixed(1)} s)`);
    return r;
  };
  const must = async (name: string, args: string[]) => {
    const r = await recipeRun(name, args);
    if (r.code !== 0) throw new Error(`${name} ${args.join(" ")} exited ${r.code}:\n${r.output}`);
    return r;
  };
  const cleanVolumes = () => [...VOLUMES, EXCLUDED, "user.alice.restored", "db.alice.restored", "mail.alice.restored", "user.bob.legacy"].forEach(removeVolume);
  const result: HcoopDrillResult = {
    dir, days: DAYS.map((d) => d.replaceAll("-", ".")), bytes: {}, ratios: {}, diffsDay2: [], diffsDay3: [], excludedDumped: [],
    refusals: { wrongKey: "", truncated: "", missingFull: "" }, legacyDiffs: [], fetchedFromRemote: [], db: { unpacked: [], source: [], loaded: [], archiveBytes: 0 }, backupMs: [], restoreMs: [],
  };
  try {
    // 1-2. volumes, filled through FUSE
    cleanVolumes();
    for (const v of [...VOLUMES, EXCLUDED]) createOpenVolume(v);
    const alice = volumePath("user.alice");
    writeFile("user.alice", "notes.txt", "day one\n");
    writeFile("user.alice", "sp ace 'quote' $(x) ünï", "awkward\n");
    writeFile("user.alice", "-leading-dash", "dash\n");
    writeFile("user.alice", "random.bin", randomBytes(2 << 20));
    inCell(["mkdir", "-p", `${alice}/empty dir`, `${alice}/sub/deeper`]);
    writeFile("user.alice", "sub/deeper/f.txt", "deep\n");
    inCell(["ln", "-s", "notes.txt", `${alice}/link`]);
    for (const v of VOLUMES.slice(1)) writeFile(v, "data.txt", `${v} day one\n`);
    writeFile(EXCLUDED, "secret.txt", "never dumped\n");
    for (const port of [pgLab.LAB_PG_PORT, pgLab.LAB_PG_TARGET_PORT]) dropDbs(port);
    for (const d of DBS) {
      labPsql(pgLab.LAB_PG_PORT, "postgres", `CREATE DATABASE "${d.replaceAll('"', '""')}"`);
      labPsql(pgLab.LAB_PG_PORT, d, "CREATE TABLE members (id int PRIMARY KEY, name text, note text); INSERT INTO members SELECT i, 'member ' || i, md5(i::text) FROM generate_series(1, 500) i");
    }

    // 3. three simulated days
    const trees: string[] = [];
    const change = [
      () => {},
      () => {
        writeFile("user.alice", "notes.txt", "day two\n");
        inCell(["rm", `${alice}/-leading-dash`]);
        writeFile("user.alice", "added on day 2", "new\n");
        writeFile("db.alice", "data.txt", "db.alice day two\n");
      },
      () => {
        writeFile("user.alice", "notes.txt", "day three\n");
        inCell(["rm", "-r", `${alice}/sub`]);
        writeFile("user.alice", "empty dir/now not", "x\n");
        writeFile("mail.alice", "data.txt", "mail day three\n");
      },
    ];
    for (const [i, day] of DAYS.entries()) {
      change[i]();
      await sleep(1100); // AFS mtimes have 1 s resolution: keep changes and clones in different seconds
      const r = await must("hcoop-backup", [`--clock.today=${day}`]);
      result.backupMs.push(r.ms);
      trees.push(volumeTree("user.alice", mkdtempSync(join(dir, `tree${i + 1}-`))));
      await sleep(1100);
    }
    for (const d of result.days) {
      result.bytes[d] = Object.fromEntries(readdirSync(`${backups}/${d}`).filter((f) => f.endsWith(".dump.gz.aescrypt")).map((f) => [f, Number(execFileSync("stat", ["-c", "%s", `${backups}/${d}/${f}`]).toString())]));
    }
    for (const v of VOLUMES) {
      const full = result.bytes[result.days[0]][`${result.days[0]}-${v}.dump.gz.aescrypt`];
      result.ratios[v] = result.days.slice(1).map((d) => result.bytes[d][`${d}-${v}.dump.gz.aescrypt`] / full);
      log(`${v}: full ${formatBytes(full)}; incrementals ${result.ratios[v].map((x) => `${(x * 100).toFixed(1)} %`).join(", ")} of it`);
    }
    // 5. the excluded volume was never dumped
    result.excludedDumped = result.days.flatMap((d) => readdirSync(`${backups}/${d}`).filter((f) => f.includes("not-backed-up")));

    // 4. destroy, restore as of day 2 (into user.alice.restored), compare; as of day 3, replace
    removeVolume("user.alice");
    // day 2 from the remote repository alone: a fresh backups.dir (the file server lost its dumps)
    let r = await must("hcoop-restore", [result.days[1], "user.alice", "--yes", `--backups.dir=${dir}/fresh`]);
    result.restoreMs.push(r.ms);
    result.fetchedFromRemote = r.output.split("\n").filter((l) => /fetched and verified/.test(l)).map((l) => l.replace(/.*\//, "").trim());
    result.diffsDay2 = await compareTrees(trees[1], volumeTree("user.alice.restored", mkdtempSync(join(dir, "restored2-"))), { owners: false });
    r = await must("hcoop-restore", [result.days[2], "user.alice.dump.gz.aescrypt", "--restore.replace", "--yes"]);
    result.restoreMs.push(r.ms);
    result.diffsDay3 = await compareTrees(trees[2], volumeTree("user.alice", mkdtempSync(join(dir, "restored3-"))), { owners: false });

    // 6. refusals
    removeVolume("db.alice.restored");
    r = await recipeRun("hcoop-restore", [result.days[2], "db.alice", "--yes", `--encryption.key-file=${dir}/wrong-key`]);
    result.refusals.wrongKey = `exit ${r.code}: ${lastError(r.output)}`;
    if (existsSync(`${backups}`) && inCellExists("db.alice.restored")) result.refusals.wrongKey += " (BUT a volume was created)";
    const mailFile = `${backups}/${result.days[2]}/${result.days[2]}-mail.alice.dump.gz.aescrypt`;
    truncateSync(mailFile, Number(execFileSync("stat", ["-c", "%s", mailFile]).toString()) - 64);
    r = await recipeRun("hcoop-restore", [result.days[2], "mail.alice", "--yes"]);
    result.refusals.truncated = `exit ${r.code}: ${lastError(r.output)}`;
    unlinkSync(`${backups}/${result.days[0]}/${result.days[0]}-db.bob.dump.gz.aescrypt`);
    unlinkSync(`${dir}/remote repo/${result.days[0]}/${result.days[0]}-db.bob.dump.gz.aescrypt`); // gone at the remote too
    r = await recipeRun("hcoop-restore", [result.days[1], "db.bob", "--yes"]);
    result.refusals.missingFull = `exit ${r.code}: ${lastError(r.output)}`;

    // 7. the databases archive: unpack day 3's into restored/DATE-db, load one database into the lab's target cluster, compare rows
    labPsql(pgLab.LAB_PG_PORT, DBS[1], "UPDATE members SET note = 'after day 3'"); // the source moves on; the restore must bring day 3 back
    await must("hcoop-restore-db", [result.days[2], DBS[1], "--yes", `--postgres.port=${pgLab.LAB_PG_TARGET_PORT}`]);
    result.db.unpacked = readdirSync(`${backups}/restored/${result.days[2]}-db`).sort();
    result.db.archiveBytes = Number(execFileSync("stat", ["-c", "%s", `${backups}/${result.days[2]}/${result.days[2]}-databases.tar.gz.aescrypt`]).toString());
    labPsql(pgLab.LAB_PG_PORT, DBS[1], "UPDATE members SET note = md5(id::text)"); // back to the day-3 state, to compare with
    const rows = (port: string) => labPsql(port, DBS[1], "SELECT id, name, note FROM members ORDER BY id").trim().split("\n");
    result.db.source = rows(pgLab.LAB_PG_PORT);
    result.db.loaded = rows(pgLab.LAB_PG_TARGET_PORT);

    // legacy input: the runbook's own pipeline, restored through the same verb
    const legacy = `${dir}/2026.01.01-user.bob.dump.gz.aescrypt`;
    execFileSync("bash", ["-c", 'set -o pipefail; "$@" | gzip | ccrypt -e -k "$KEY" > "$OUT"', "legacy", ...prefix, "vos", "dump", "-id", "user.bob", "-time", "0", "-noauth"], { env: { ...process.env, KEY: `${dir}/key`, OUT: legacy }, stdio: ["ignore", "ignore", "ignore"] });
    await must("hcoop-restore", [legacy, "user.bob.legacy", "--yes"]);
    result.legacyDiffs = await compareTrees(volumeTree("user.bob", mkdtempSync(join(dir, "bob-"))), volumeTree("user.bob.legacy", mkdtempSync(join(dir, "bobl-"))), { owners: false });
    return result;
  } finally {
    cleanVolumes();
    for (const port of [pgLab.LAB_PG_PORT, pgLab.LAB_PG_TARGET_PORT]) {
      try {
        dropDbs(port);
      } catch { /* the cluster is gone: nothing to drop */ }
    }
    if (!opts.keep) rmSync(dir, { recursive: true, force: true });
  }
}

function inCellExists(volume: string): boolean {
  const { prefix } = labCell();
  try {
    execFileSync(prefix[0], [...prefix.slice(1), "vos", "examine", "-id", volume, "-noauth"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

function lastError(output: string): string {
  return output.split("\n").filter((l) => /error|refused|mismatch|missing|does not open|✖/i.test(l)).slice(-2).join(" | ").slice(0, 400);
}

/** The drill as a task: make drill-hcoop. */
export const hcoopDrillTask = drillTask({
  name: "drill:hcoop",
  needs: ["afs", "pg"],
  description: "HCoop: three simulated days of AFS volume dumps (full, incremental, incremental), destroy, restore as of day 2 and day 3, refusals",
  run: async (ctx) => {
    const r = await hcoopDrill({ log: (l) => ctx.log.info(l), signal: ctx.signal });
    ctx.log.info(`day 2 restore: ${r.diffsDay2.length} differences; day 3 restore (replacing the live volume): ${r.diffsDay3.length}; legacy: ${r.legacyDiffs.length}`);
    ctx.log.info(`refusals: wrong key ${r.refusals.wrongKey}; truncated ${r.refusals.truncated}; missing full ${r.refusals.missingFull}`);
    ctx.log.info(`databases: ${r.db.unpacked.join(", ")} unpacked (${formatBytes(r.db.archiveBytes)} sealed); ${r.db.loaded.length} rows loaded, ${r.db.loaded.join() === r.db.source.join() ? "equal to" : "DIFFERENT from"} the source`);
    if (r.db.loaded.join() !== r.db.source.join()) throw new Error("drill:hcoop: the loaded database differs from the source");
    if (r.diffsDay2.length || r.diffsDay3.length || r.legacyDiffs.length || r.excludedDumped.length) throw new Error(`drill:hcoop found differences: ${[...r.diffsDay2, ...r.diffsDay3, ...r.legacyDiffs, ...r.excludedDumped].slice(0, 10).join("; ")}`);
  },
});
