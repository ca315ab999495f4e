// hcoop-backup: HCoop's nightly AFS volume dumps (cron.daily on a file server, as root, with
// -localauth), weekly full + daily incremental, gzipped and encrypted, one folder per day.
//
//   npx zx recipes/hcoop-backup.ts --config hcoop.site.yaml [--dry-run] [--resume]
//   make backup-hcoop ARGS="--config hcoop.site.yaml"
//
// Runbook (HCoop wiki BackupInfo §3.2, RsyncNet "VOLUMES") → step:
//   "First the entire system is backed up using vos backupsys"
//                                  → "vos backupsys -prefix user. db. mail." [volumes.prefixes]
//   (an interrupted vos dump's volume is "busy" for minutes)
//                                  → a busy volume is waited for, not failed: its vos backup / vos
//                                    dump retried with backoff up to afs.busy-wait (default 15 min),
//                                    logged once with vos status's transaction; abandoned Dump
//                                    transactions on its volumes are ended (vos endtrans)
//   "vos listvol deleuze, exclude .backup and .readonly, volumes containing not-backed-up"
//                                  → "list the volumes": RW volumes of the prefixes, minus
//                                    volumes.exclude; the excluded names go into the manifest
//   (the 2008 failures: the target was full for weeks)
//                                  → "check free space": vos listvol disk usage × the last run's
//                                    compression ratio, refused before any dump starts
//   "On the first day of each week, make a full volume dump, afterward recording the time …;
//    on the following days … an incremental dump from the weekly full dump"
//                                  → "dump VOLUME" (one per volume, 2 at a time): full on
//                                    schedule.full-day, when no full of the week exists or its
//                                    file is gone; else `vos dump -time CLONE` where CLONE is the
//                                    full's .backup clone time (vos examine). Restoring any day
//                                    needs two files, as the runbook wanted.
//   "piped through gzip and ccrypt … YYYY.MM.DD-$VOLNAME.dump.gz.aescrypt"
//                                  → each dump streams vos dump → gzip → age (default) or ccrypt
//                                    (encryption.kind ccrypt, .aescrypt as today) → a hidden
//                                    partial file renamed into place; its sha256 (ccrypt cannot
//                                    detect truncation) goes into the manifest
//   §2 "Database Backups" (restored from YYYY.MM.DD-databases.tar.gz.aescrypt); §3.3 "a proper
//    database dump for each database separately"
//                                  → "databases" [postgres.enabled]: pg_dumpall --globals-only, then
//                                    pg_dump -Fc of each database (postgres.databases, or all but
//                                    templates) into a hidden stage; "seal-databases": tar | gzip |
//                                    encrypt as DATE-databases.tar.gz.age|.aescrypt, sha256 in the manifest
//   "MySQL/MariaDB the same way"   → "mariadb" [mariadb.enabled]: mariadb-dump --system=users (users and
//                                    grants), then mariadb-dump --single-transaction --routines --events
//                                    --databases NAME of each database (mariadb.databases, or all but the
//                                    system ones), into the same stage and archive; credentials from
//                                    mariadb.defaults-file or a secret password in a private option file
//   §3.2 "the backup user … does an incremental backup to the remote repository at rsync.net"
//                                  → "offsite" [offsite.to]: the day folder copied file by file
//                                    (s3://, ssh:// or a path; lib/mirror.ts over lib/offsite.ts), each
//                                    checked there (ssh: sha256 on the remote; S3: ETag) before it takes
//                                    its name, NAME.sha256 beside it, the manifest last; files already
//                                    there are skipped; an ssh or local target without room for the day
//                                    is refused before the first byte (HCoop's 2008 failure)
//   (lifeboat)                     → "write the day's manifest" DATE/DATE-manifest.json: written
//                                    last, so a day without it is incomplete and never used
// Operator notes:
//   - obnam: not used. The dumps stay encrypted and an incremental copy of day folders to the
//     remote does what obnam was meant to do.
//   - retention by weekly chain: recipes/hcoop-prune.ts (a dry run unless --yes), run after this
//     one from cron (`hcoop-backup && hcoop-prune --yes`).
//   - keytab / k5start: the recipe runs as root on a file server with -localauth (afs.auth).
//
// Settings: recipes/hcoop.ts (flags, env LIFEBOAT_*, --config site file; hcoop.site.example.yaml).
import { LifeboatError, describeMariaDb, mariadbDatabases, mariadbDump, mariadbDumpUsers, mariadbQuery, mirrorPut, offsiteOptions, afsBackupSys, afsDumpToFile, afsExamine, afsListVolumes, checkFreeSpace, exec, failures, fanOut, formatBytes, mapLimit, pgDump, pgDumpAll, psqlQuery, recipe, sealSuffix, sealTreeToFile, step, writeJsonFile } from "../lib/mod.ts";
import { afsBackup, afsEndTransaction, afsListVldb, afsTransactions, afsWaitWhileBusy, describeTransaction, type AfsTransaction } from "../lib/mod.ts";
import * as hcoop from "./hcoop.ts";

/** How long a vos dump transaction without a call must have been idle before it counts as abandoned. */
const LEFTOVER_IDLE_S = 10;

await recipe({
  name: "hcoop-backup",
  description: "dump HCoop's AFS volumes: weekly full, daily incremental, gzipped and encrypted into one folder per day",
  usage: "npx zx recipes/hcoop-backup.ts --config hcoop.site.yaml [--dry-run] [--resume]",
  settings: hcoop.settings,
  target: (ctx) => ctx.settings["backups.dir"],
  plan: (ctx, prior) => {
    const s = ctx.settings;
    const cell = hcoop.cellOf(s);
    const seal = hcoop.sealOf(s);
    // The day is the one the run started on: a run resumed after midnight finishes that day's
    // folder (its dumps are there, named by it), rather than writing a manifest for a new day
    // that would list files it does not hold. The first step records it.
    const started = prior.output<{ day?: string }>("backupsys")?.day;
    const now = hcoop.today(started ?? s["clock.today"]);
    const date = hcoop.dayName(now);
    if (started && started !== hcoop.dayName(hcoop.today(s["clock.today"]))) ctx.log.info(`continuing the backup of ${started}, the day the interrupted run started`);
    const dir = hcoop.LAYOUT.dayDir(s["backups.dir"], date);
    const exclude = new RegExp(s["volumes.exclude"] || "$^");
    const startedAt = new Date().toISOString();
    const pg = hcoop.pgOf(s);
    const pgName = `${pg.host ?? "local socket"}:${pg.port}`;
    const stage = hcoop.LAYOUT.dbStage(s["backups.dir"], date);
    const dbFile = hcoop.LAYOUT.databasesName(date, sealSuffix(seal));
    const maria = hcoop.mariadbOf(s);
    const mariaName = describeMariaDb(maria);
    const anyDb = s["postgres.enabled"] || s["mariadb.enabled"];

    // An interrupted vos dump (signal, kill, a dead volserver) leaves its volserver transaction
    // open: the volume stays "busy" (vos backupsys and vos dump fail) until the volserver times it
    // out after 10 minutes. Before cloning and before dumping, the recipe ends such leftovers on
    // the volumes it is about to touch, and only abandoned ones: procedure Dump (what vos dump
    // opens), no RPC using it (vos status shows a running call's packet counters), and idle for
    // LEFTOVER_IDLE_S (a live vos dump's transaction is without a call only for the milliseconds
    // between its RPCs). Younger ones are waited for a few seconds.
    // One that a call still holds (the killed vos's call lingers on the volserver for minutes;
    // the lab: about 150 s) makes the volume "busy": its vos backup/dump is WAITED for, retried
    // with backoff up to afs.busy-wait, and each failed attempt ends it once the call let go.
    // (vos endtrans on a transaction a call holds only marks it for deletion: in the lab it was
    // freed no sooner, so the recipe never does that.)
    const endAbandoned = async (dumps: AfsTransaction[]) => {
      const now = Date.now() / 1000;
      for (const t of dumps.filter((t) => /^Dump/.test(t.procedure) && !t.inCall && now - t.lastActive >= LEFTOVER_IDLE_S)) {
        ctx.log.warn(`volume ${t.volume}: vos ${describeTransaction(t, now)} was left by an interrupted vos dump; ending it (vos endtrans)`);
        await afsEndTransaction(cell, t.id);
      }
    };
    const endLeftoverDumps = async (ids: number[]) => {
      for (const t0 = Date.now(); ;) {
        const now = Date.now() / 1000;
        const dumps = (await afsTransactions(cell, { volumes: ids.filter((id) => id > 0) })).filter((t) => /^Dump/.test(t.procedure));
        await endAbandoned(dumps);
        const young = dumps.filter((t) => !t.inCall && !(now - t.lastActive >= LEFTOVER_IDLE_S));
        if (!young.length || ctx.dryRun || Date.now() - t0 > (LEFTOVER_IDLE_S + 5) * 1000) break;
        await new Promise((r) => setTimeout(r, 1000));
      }
    };
    const whileBusy = <T>(volume: string, ids: number[], what: string, fn: () => Promise<T>) =>
      afsWaitWhileBusy(cell, fn, { volume, ids: ids.filter((id) => id > 0), what, maxMs: s["afs.busy-wait"] * 1000, onBusy: endAbandoned });

    const backupsys = step("backupsys", `vos backupsys -prefix ${s["volumes.prefixes"].join(" ")}`, async () => {
      const ours = (await afsListVldb(cell)).filter((e) => s["volumes.prefixes"].some((p) => e.name.startsWith(p)));
      await endLeftoverDumps(ours.flatMap((e) => [e.rw, e.bk]));
      const r = await afsBackupSys(cell, { prefixes: s["volumes.prefixes"], allowFailed: true });
      // a volume backupsys could not clone (busy: a leftover transaction) is cloned alone once free, the others meanwhile
      const again = await mapLimit(r.failedVolumes, 4, async (name) => {
        const e = ours.find((x) => x.name === name);
        await whileBusy(name, e ? [e.rw, e.bk] : [], "vos backup", () => afsBackup(cell, name));
      });
      const failed = failures(again);
      if (failed.length) throw failed[0];
      if (r.failed > r.failedVolumes.length) throw new LifeboatError(`vos backupsys: ${r.failed} volume(s) failed to back up, ${r.failedVolumes.length} named`);
      return { backedUp: r.backedUp + r.failedVolumes.length, failed: 0, day: date };
    });

    const volumes = step("volumes", `list the volumes on ${cell.server} (vos listvol -format)`, async () => {
      const listed = await afsListVolumes(cell, { prefixes: s["volumes.prefixes"], types: ["RW"] });
      // a volume on the partition that the VLDB does not know (what an interrupted vos restore
      // leaves) cannot be cloned or dumped by name: skipped, named, so one orphan does not fail the night
      const known = new Set((await afsListVldb(cell)).map((e) => e.name));
      for (const v of listed.filter((v) => !known.has(v.name))) {
        ctx.log.warn(`${v.name} (id ${v.id}) is on ${cell.server} but not in the VLDB (left by an interrupted vos restore?): not dumped; remove it with vos zap -server ${cell.server} -partition ${cell.partition ?? "a"} -id ${v.id}`);
      }
      const all = listed.filter((v) => known.has(v.name));
      return { dump: all.filter((v) => !exclude.test(v.name)), excluded: all.filter((v) => exclude.test(v.name)).map((v) => v.name) };
    });

    const space = step("space", `check free space in ${s["backups.dir"]}`, async () => {
      const last = hcoop.listDays(s["backups.dir"]).at(-1);
      const files = last ? Object.values(hcoop.readDay(s["backups.dir"], last).files) : [];
      const ratio = files.length ? files.reduce((a, e) => a + e.bytes, 0) / Math.max(1, files.reduce((a, e) => a + e.plainBytes, 0)) : 1;
      const kib = volumes.output.dump.reduce((a, v) => a + v.diskused, 0);
      const dbBytes = (s["postgres.enabled"] ? Number((await psqlQuery(pg, "SELECT sum(pg_database_size(oid)) FROM pg_database"))[0][0]) : 0)
        + (s["mariadb.enabled"] ? Number((await mariadbQuery(maria, "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables"))[0][0]) : 0);
      const raw = `${formatBytes(kib * 1024)} of volumes (vos listvol)${dbBytes ? ` + 2 × ${formatBytes(dbBytes)} of databases` : ""}`;
      ctx.log.info(`estimate: ${dbBytes ? `(${raw})` : raw} × compression ratio ${Math.min(1, ratio).toFixed(2)} (${last ? `the run of ${last}` : "no earlier run"})`);
      return { ratio, ...checkFreeSpace(s["backups.dir"], (kib * 1024 + 2 * dbBytes) * Math.min(1, ratio)) };
    });

    // One item per volume: --resume after a failure or an interrupt dumps only the volumes not done yet.
    const dumped = fanOut("dump", "dump each volume (vos dump | gzip | encrypt), 2 at a time", () => volumes.output.dump, { key: (v) => v.name, concurrency: 2 }, async (v) => {
      await endLeftoverDumps([v.backupID]); // --resume after an interrupted dump
      const plan = hcoop.planVolume(s["backups.dir"], now, s["schedule.full-day"], v.name);
      const file = hcoop.LAYOUT.dumpName(date, v.name, sealSuffix(seal));
      const since = plan.kind === "full" ? 0 : plan.since;
      const r = await whileBusy(`${v.name}.backup`, [v.backupID], "vos dump", () => afsDumpToFile(cell, `${v.name}.backup`, `${dir}/${file}`, { seal, since, stallMs: s["afs.stall-timeout"] * 1000 }));
      const clone = await afsExamine(cell, `${v.name}.backup`); // after the dump: vos examine of a busy volume fails
      const entry: hcoop.DumpEntry = {
        volume: v.name, kind: plan.kind, chain: plan.kind === "full" ? date : plan.chain, since, cloneTime: clone?.creationDate ?? 0,
        bytes: r.bytes, sha256: r.sha256, plainBytes: r.plainBytes, diskused: v.diskused,
      };
      ctx.log.info(`${v.name}: ${plan.kind} ${formatBytes(r.bytes)}`);
      return { file, entry };
    });

    const databases = step("databases", `dump PostgreSQL ${pgName}: globals (pg_dumpall --globals-only), then pg_dump -Fc of each database`, async () => {
      const names = s["postgres.databases"].length ? s["postgres.databases"] : (await psqlQuery(pg, "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1")).map((r) => String(r[0]));
      await exec(["rm", "-rf", "--", stage]); // what a failed run left
      await pgDumpAll(pg, `${stage}/${hcoop.LAYOUT.globalsFile}`, { extraArgs: ["--globals-only"] });
      const dumps: hcoop.DatabasesEntry["dumps"] = {};
      for (const db of names) dumps[db] = { file: hcoop.LAYOUT.dbFile(db), bytes: (await pgDump(pg, db, `${stage}/${hcoop.LAYOUT.dbFile(db)}`)).bytes };
      return dumps;
    }, { when: s["postgres.enabled"] });

    const mariadb = step("mariadb", `dump MariaDB ${mariaName}: users and grants (mariadb-dump --system=users), then mariadb-dump --single-transaction --routines --events of each database`, async () => {
      const names = s["mariadb.databases"].length ? s["mariadb.databases"] : await mariadbDatabases(maria);
      if (!s["postgres.enabled"]) await exec(["rm", "-rf", "--", stage]); // what a failed run left (else the PostgreSQL step did it)
      await mariadbDumpUsers(maria, `${stage}/${hcoop.LAYOUT.mariadbUsersFile}`);
      const dumps: hcoop.DatabasesEntry["dumps"] = {};
      for (const db of names) dumps[db] = { file: hcoop.LAYOUT.mariadbFile(db), bytes: (await mariadbDump(maria, db, `${stage}/${hcoop.LAYOUT.mariadbFile(db)}`)).bytes };
      return { server: mariaName, users: hcoop.LAYOUT.mariadbUsersFile, dumps };
    }, { when: s["mariadb.enabled"] });

    const sealDb = step("seal-databases", `seal the database dumps as ${dir}/${dbFile} (tar | gzip | encrypt)`, async () => {
      const r = await sealTreeToFile(stage, `${dir}/${dbFile}`, { seal }); // the stage goes with the manifest: a resumed run seals it again
      return { file: dbFile, bytes: r.bytes, sha256: r.sha256, plainBytes: r.plainBytes };
    }, { when: anyDb });

    const manifest = step("manifest", `write the day's manifest ${dir}/${hcoop.LAYOUT.manifestName(date)}`, async () => {
      const m: hcoop.DayManifest = {
        format: "lifeboat-hcoop/1", date, startedAt, finishedAt: new Date().toISOString(), encryption: seal.kind === "ccrypt" ? "ccrypt" : "age",
        files: Object.fromEntries(Object.values(dumped.output).map((d) => [d.file, d.entry])), excluded: volumes.output.excluded,
        databases: sealDb.hasOutput ? {
          ...sealDb.output,
          ...(databases.hasOutput ? { server: pgName, globals: hcoop.LAYOUT.globalsFile, dumps: databases.output } : { server: "", globals: "", dumps: {} }),
          ...(mariadb.hasOutput ? { mariadb: mariadb.output } : {}),
        } : undefined,
      };
      await writeJsonFile(`${dir}/${hcoop.LAYOUT.manifestName(date)}`, m);
      if (sealDb.hasOutput) await exec(["rm", "-rf", "--", stage]); // the dumps are in the sealed file
      return m;
    });

    const offsite = step("offsite", `copy ${date} to the remote repository (${s["offsite.to"].join(", ")}), file by file, each verified`, async () => {
      const m = manifest.output;
      const files = [
        ...Object.entries(m.files).map(([name, e]) => ({ name, sha256: e.sha256, bytes: e.bytes })),
        ...(m.databases ? [{ name: m.databases.file, sha256: m.databases.sha256, bytes: m.databases.bytes }] : []),
        await hcoop.manifestFile(s["backups.dir"], date), // last: a day without it there is incomplete
      ];
      const out = [];
      for (const to of s["offsite.to"]) out.push(await mirrorPut(dir, to, date, files, offsiteOptions(s)));
      return out;
    }, { when: s["offsite.to"].length > 0 });

    return {
      steps: [backupsys, volumes, space, dumped, databases, mariadb, sealDb, manifest, offsite],
      report: () => [
        `day       ${dir} (${Object.keys(manifest.output.files).length} dumps, ${manifest.output.encryption})`,
        ...Object.entries(manifest.output.files).map(([f, e]) => `${e.kind.padEnd(11)} ${f}  ${formatBytes(e.bytes)}${e.kind === "incremental" ? ` (since the full of ${e.chain})` : ""}`),
        `excluded  ${manifest.output.excluded.join(", ") || "none"}`,
        ...(manifest.output.databases ? [`databases ${manifest.output.databases.file}  ${formatBytes(manifest.output.databases.bytes)}${databases.hasOutput ? ` (PostgreSQL ${pgName}: ${Object.keys(databases.output).length} databases + globals)` : ""}${mariadb.hasOutput ? ` (MariaDB ${mariaName}: ${Object.keys(mariadb.output.dumps).length} databases + users and grants)` : ""}`] : []),
        ...(offsite.hasOutput ? offsite.output.map((o) => `remote    ${o.url}: ${o.sent.length} sent (${formatBytes(o.bytes)}), ${o.skipped.length} already there; each verified`) : []),
        `space     ${formatBytes(space.output.free)} free before, ratio ${space.output.ratio.toFixed(2)}; backupsys cloned ${backupsys.output.backedUp}`,
      ],
    };
  },
});
