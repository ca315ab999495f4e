// hcoop-restore-db: the runbook's "Database Backups": unpack a day's databases archive into
// restored/YYYY.MM.DD-db, and load one database from it on request.
//
//   npx zx recipes/hcoop-restore-db.ts DATE [DATABASE] --config hcoop.site.yaml [--yes]
//   make restore-hcoop-db ARGS="2026.11.24 shop --config hcoop.site.yaml"
//
// Runbook (HCoop wiki BackupInfo §2) → step:
//   cd /vicepa/hcoop-backups/restored; mkdir YYYY.MM.DD-db; cd YYYY.MM.DD-db
//                          → "find": the day's DATE-databases.tar.gz.ENC and its sha256 (manifest)
//   (lifeboat)             → "verify": sha256, then a full decrypt and gunzip, before unpacking
//   cat ../YYYY.MM.DD-databases.tar.gz.aescrypt | ccrypt -cdk /etc/backup-encryption-key | gunzip | tar -xvzf -
//                          → "unpack" into backups.dir/restored/DATE-db (refused when not empty):
//                            globals.sql (roles, tablespaces) and one NAME.dump (pg_dump -Fc) each
//   (loading a database: the runbook leaves it to the admin)
//                          → "load DATABASE" [postgres.*], confirmed: pg_restore --create --clean
//                            (the database is dropped and created again from the dump on that
//                            server). Without DATABASE the dumps stay in the folder for the admin
//                            (pg_restore -l NAME.dump; psql -f globals.sql for the roles).
// Operator notes:
//   - the roles (globals.sql) are not loaded: on the site's server they exist already; on a new
//     server load them first (psql -f globals.sql), then the database.
//   - a day kept only on the remote repository: fetch it first (hcoop-get DATE).
//
// Settings: recipes/hcoop.ts (flags, env LIFEBOAT_*, --config site file; hcoop.site.example.yaml).
import { formatBytes, pgRestore, recipe, step, unsealTreeTo, UsageError, verifySealed, LifeboatError } from "../lib/mod.ts";
import * as hcoop from "./hcoop.ts";

await recipe({
  name: "hcoop-restore-db",
  description: "unpack a day's databases archive into restored/DATE-db and, on request, load one database from it (pg_restore --create --clean)",
  usage: "npx zx recipes/hcoop-restore-db.ts DATE [DATABASE] --config hcoop.site.yaml [--yes]",
  settings: hcoop.settings,
  target: (ctx) => `${ctx.settings["backups.dir"]}:${ctx.args[0] ?? ""}`,
  plan: (ctx) => {
    const s = ctx.settings;
    const [first, database] = ctx.args;
    if (!first || ctx.args.length > 2) throw new UsageError("give DATE [DATABASE]", "e.g. npx zx recipes/hcoop-restore-db.ts 2026.11.24 shop --config hcoop.site.yaml");
    const date = first.replaceAll("-", ".");
    const into = hcoop.LAYOUT.restoredDb(s["backups.dir"], date);
    const pg = hcoop.pgOf(s);

    const find = step("find", `find the databases archive of ${date}`, () => {
      const day = hcoop.readDay(s["backups.dir"], date);
      if (!day.databases) throw new LifeboatError(`${date} has no databases archive (postgres.enabled was off that day)`, { hint: "see hcoop-list for the days" });
      if (database && !day.databases.dumps[database]) throw new UsageError(`${date}'s databases archive has no database ${JSON.stringify(database)}`, `it has: ${Object.keys(day.databases.dumps).join(", ")}`);
      return { ...day.databases, path: `${hcoop.LAYOUT.dayDir(s["backups.dir"], date)}/${day.databases.file}`, encryption: day.encryption };
    });
    const seal = () => hcoop.sealOf({ ...s, "encryption.kind": find.output.encryption }, true);

    const verify = step("verify", "verify the archive (sha256, decrypt, gunzip) before unpacking", async () => {
      const r = await verifySealed(find.output.path, { seal: seal(), sha256: find.output.sha256, bytes: find.output.bytes });
      ctx.log.info(`${find.output.file}: ok (${formatBytes(r.bytes)}, ${formatBytes(r.plainBytes)} of tar)`);
    });

    const unpack = step("unpack", `unpack it into ${into}`, () => unsealTreeTo(find.output.path, into, { seal: seal() }));

    const load = step("load", `load ${database} into PostgreSQL ${pg.host ?? "local socket"}:${pg.port} (pg_restore --create --clean)`, () =>
      pgRestore(pg, `${into}/${hcoop.LAYOUT.dbFile(database!)}`, { create: true, clean: true }), {
      when: !!database,
      confirm: `DROP the database ${database} on ${pg.host ?? "the local server"}:${pg.port} if it exists and create it again from ${date}'s dump?`,
    });

    return {
      steps: [find, verify, unpack, load],
      report: () => [
        `unpacked  ${into}: ${hcoop.LAYOUT.globalsFile} + ${Object.keys(find.output.dumps).length} dump(s) (${Object.keys(find.output.dumps).join(", ")})`,
        ...(load.hasOutput ? [`loaded    ${database} (${formatBytes(load.output.bytes)} of dump)`] : []),
      ],
    };
  },
});
