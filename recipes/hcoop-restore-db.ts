// hcoop-restore-db: the runbook's "Database Backups": unpack a day's databases archive into
// restored/YYYY.MM.DD-db, and load one database from it on request.
//
//   npx zx recipes/hcoop-restore-db.ts DATE [DATABASE] --config hcoop.site.yaml [--yes]
//   make restore-hcoop-db ARGS="2026.11.24 shop --config hcoop.site.yaml"
//
// Runbook (HCoop wiki BackupInfo §2) → step:
//   cd /vicepa/hcoop-backups/restored; mkdir YYYY.MM.DD-db; cd YYYY.MM.DD-db
//                          → "find": the day's DATE-databases.tar.gz.ENC and its sha256 (manifest)
//   cat ../YYYY.MM.DD-databases.tar.gz.aescrypt | ccrypt -cdk /etc/backup-encryption-key | gunzip | tar -xvzf -
//                          → "unpack" into backups.dir/restored/DATE-db (refused when not empty, unless
//                            it holds exactly the archive's files: a run killed after its move),
//                            verified as it is read (lifeboat: sha256 and size against the manifest,
//                            a whole decrypt and gunzip) into a hidden folder that becomes DATE-db
//                            only when all of it held, so a damaged file or a killed run leaves nothing there:
//                            globals.sql (roles, tablespaces) and one NAME.dump (pg_dump -Fc) each;
//                            mariadb-users+grants.sql and one mariadb-NAME.sql (mariadb-dump) each
//   (loading a database: the runbook leaves it to the admin)
//                          → "load DATABASE" [postgres.*], confirmed: pg_restore --create --clean
//                            (the database is dropped and created again from the dump on that
//                            server). Without DATABASE the dumps stay in the folder for the admin
//                            (pg_restore -l NAME.dump; psql -f globals.sql for the roles).
//                          → "load-mariadb DATABASE" [mariadb.*], confirmed, for a MariaDB dump:
//                            DROP DATABASE IF EXISTS, then mariadb-NAME.sql streamed into `mariadb`
//                            (the dump creates the database with its charset); --restore.engine
//                            says which when PostgreSQL and MariaDB both have that name
// Operator notes:
//   - the roles (globals.sql) and MariaDB's users (mariadb-users+grants.sql) are not loaded: on the site's server they exist already; on a new
//     server load them first (psql -f globals.sql), then the database.
//   - a day kept only on the remote repository: fetch it first (hcoop-get DATE).
//
// Settings: recipes/hcoop.ts (flags, env LIFEBOAT_*, --config site file; hcoop.site.example.yaml).
import { describeMariaDb, formatBytes, mariadbLoad, pgRestore, recipe, step, unsealTreeTo, UsageError, LifeboatError } from "../lib/mod.ts";
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
    const maria = hcoop.mariadbOf(s);
    // Which server gets DATABASE: the one whose dump has that name (checked again, with the message, in "find").
    const engine = (() => {
      try {
        const db = hcoop.readDay(s["backups.dir"], date).databases;
        return s["restore.engine"] || (database && db?.mariadb?.dumps[database] && !db.dumps[database] ? "mariadb" : "postgres");
      } catch {
        return s["restore.engine"] || "postgres";
      }
    })();

    const find = step("find", `find the databases archive of ${date}`, () => {
      const day = hcoop.readDay(s["backups.dir"], date);
      if (!day.databases) throw new LifeboatError(`${date} has no databases archive (postgres.enabled and mariadb.enabled were off that day)`, { hint: "see hcoop-list for the days" });
      const pgHas = !!database && !!day.databases.dumps[database];
      const mariaHas = !!database && !!day.databases.mariadb?.dumps[database];
      const all = [...Object.keys(day.databases.dumps).map((n) => `${n} (PostgreSQL)`), ...Object.keys(day.databases.mariadb?.dumps ?? {}).map((n) => `${n} (MariaDB)`)];
      const want = s["restore.engine"];
      if (database && !(want === "postgres" ? pgHas : want === "mariadb" ? mariaHas : pgHas || mariaHas)) throw new UsageError(`${date}'s databases archive has no ${want === "mariadb" ? "MariaDB " : want === "postgres" ? "PostgreSQL " : ""}database ${JSON.stringify(database)}`, `it has: ${all.join(", ") || "none"}`);
      if (database && !want && pgHas && mariaHas) throw new UsageError(`${date}'s databases archive has ${JSON.stringify(database)} from PostgreSQL and from MariaDB`, "say which: --restore.engine=postgres or --restore.engine=mariadb");
      const engine: "postgres" | "mariadb" = want === "mariadb" || (!want && mariaHas && !pgHas) ? "mariadb" : "postgres";
      return { ...day.databases, engine, all, path: `${hcoop.LAYOUT.dayDir(s["backups.dir"], date)}/${day.databases.file}`, encryption: day.encryption };
    });
    const seal = () => hcoop.sealOf({ ...s, "encryption.kind": find.output.encryption }, true);

    const unpack = step("unpack", `verify it (sha256, decrypt, gunzip) as it is unpacked into ${into}`, async () => {
      const names = await unsealTreeTo(find.output.path, into, { seal: seal(), sha256: find.output.sha256, bytes: find.output.bytes });
      ctx.log.info(`${find.output.file}: ok (${formatBytes(find.output.bytes)}), ${names.length} file(s) in ${into}`);
      return names;
    });

    const load = step("load", `load ${database} into PostgreSQL ${pg.host ?? "local socket"}:${pg.port} (pg_restore --create --clean)`, () =>
      pgRestore(pg, `${into}/${hcoop.LAYOUT.dbFile(database!)}`, { create: true, clean: true }), {
      when: !!database && engine === "postgres",
      confirm: `DROP the database ${database} on ${pg.host ?? "the local server"}:${pg.port} if it exists and create it again from ${date}'s dump?`,
    });

    const loadMaria = step("load-mariadb", `load ${database} into MariaDB ${describeMariaDb(maria)} (DROP DATABASE IF EXISTS, then the dump through mariadb)`, () =>
      mariadbLoad(maria, `${into}/${hcoop.LAYOUT.mariadbFile(database!)}`, { drop: database }), {
      when: !!database && engine === "mariadb",
      confirm: `DROP the MariaDB database ${database} on ${describeMariaDb(maria)} if it exists and create it again from ${date}'s dump?`,
    });

    return {
      steps: [find, unpack, load, loadMaria],
      report: () => [
        `unpacked  ${into}: ${find.output.all.length} dump(s): ${find.output.all.join(", ") || "none"}${find.output.globals ? ` + ${hcoop.LAYOUT.globalsFile}` : ""}${find.output.mariadb ? ` + ${hcoop.LAYOUT.mariadbUsersFile}` : ""}`,
        ...(loadMaria.hasOutput ? [`loaded    ${database} into MariaDB ${describeMariaDb(maria)} (${formatBytes(loadMaria.output.bytes)} of SQL)`] : []),
        ...(load.hasOutput ? [`loaded    ${database} (${formatBytes(load.output.bytes)} of dump)`] : []),
      ],
    };
  },
});
