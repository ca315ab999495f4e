// deis-backup: back up a Deis v1 cluster's platform state, as the Deis runbook
// "Backing Up and Restoring Data" does by hand, into ONE verified archive.
//
//   npx zx recipes/deis-backup.ts --config site.yaml [--dry-run] [--yes] [--resume]
//   make backup-deis ARGS="--config site.yaml"
//
// Steps (runbook line → step):
//   deisctl config store get gateway/accessKey|secretKey  → "read the gateway keys" (only when
//                                                            the site config has no keys)
//   (before anything is written)                          → "check free space"
//   s3cmd sync s3://db_wal . ; s3cmd sync s3://registry . → "download s3://BUCKET", one per bucket
//   ssh core@HOST 'cd /var/lib/deis/store && sudo tar cpzf …' ; rsync …
//                                                         → "tar the store volume": tar streams over
//                                                            ssh straight into the staging dir (no
//                                                            copy on the host, no rsync); owners and
//                                                            modes kept; "file changed as we read it"
//                                                            on live logs is a warning, as the runbook says
//   docker exec deis-database sudo -u postgres pg_dumpall > dump_all.sql ; docker cp …
//                                                         → "dump the database": `docker exec -u postgres
//                                                            deis-database pg_dumpall`, streamed out (the
//                                                            image needs no sudo; the user is a setting)
//   (lifeboat)                                            → "pack and verify the archive":
//                                                            backups.dir/deis-backup-<UTC stamp>.tar.gz
//                                                            (.age when encrypted) with a manifest
//   (keep backups away from the cluster)                  → "copy the archive off-site" [offsite.to]: to each
//                                                            s3:// / ssh:// / mounted destination, verified there,
//                                                            then offsite.keep-local and the off-site keep-* retention
// Archive layout, which deis-restore.ts takes in:
//   buckets/<bucket>/…              the objects, plus .lifeboat-s3-index.jsonl (ETags, part sizes)
//   store/store_file_backup.tar     the store volume, owners and modes as on the host
//   database/dump_all.sql           pg_dumpall of deis-database
//   manifest.json  meta.deis        object counts and bytes per bucket, tar and dump sizes, the
//                                   source endpoints (never credentials)
//
// Where things run: S3 from here to the gateway; tar over ssh on the store host; docker on THIS
// host ("local docker", as in the lab) unless database.docker-host names another docker daemon
// (e.g. ssh://core@deis-1: the docker CLI's own ssh transport; `deisctl list` shows the machine).
//
// Left to the operator, and why:
//   - installing s3cmd and `s3cmd --configure` / editing ~/.s3cfg: lifeboat speaks S3 itself;
//     the runbook's host_base is gateway.endpoint, the keys are gateway.* or come from deisctl.
//   - `deisctl list` to find the database machine: a fact about the cluster; set database.docker-host.
//   - `deisctl scale store-gateway=N` when the gateway is overwhelmed: it changes the cluster;
//     lower gateway.concurrency first, scale by hand if that is not enough.
//
// Settings: recipes/deis.ts holds the table both Deis recipes share (flags, env LIFEBOAT_*, or
// the --config site file; see --help and recipes/deis.site.example.yaml). This recipe reads
// backups.dir, gateway.*, deisctl.*, store.*, database.*, age.passphrase / age.recipients and
// offsite.* (docs/offsite.md).
//
// A failed run keeps its staging dir (backups.dir/.deis-backup-staging) so --resume can continue
// at the failed step; a successful run removes it in `finally`, and a fresh run starts clean.
import {
  ageOptions,
  compressionOptions,
  backupArchive,
  checkFreeSpace,
  ensureBackupFolder,
  exec,
  formatBytes,
  offsiteBackup,
  offsiteOptions,
  pgDumpAll,
  probe,
  psqlQuery,
  recipe,
  s3Client,
  s3List,
  s3Sync,
  sshDiskUsage,
  sshTar,
  step,
  UsageError,
  which,
  type S3Handle,
  withoutCredentials,
} from "../lib/mod.ts";
import * as deis from "./deis.ts";

await recipe({
  name: "deis-backup",
  description: "back up a Deis v1 cluster: store-gateway buckets, the store volume and a pg_dumpall, into one verified archive",
  usage: "npx zx recipes/deis-backup.ts --config site.yaml [--dry-run] [--yes] [--resume]",
  settings: deis.settings,
  target: (ctx) => ctx.settings["backups.dir"],
  plan: (ctx) => {
    const s = ctx.settings;
    const staging = `${s["backups.dir"]}/.deis-backup-staging`;
    const deisctl = (args: string[]) => probe([...s["deisctl.command"], ...args], { env: { DEISCTL_TUNNEL: s["deisctl.tunnel"] || undefined } });
    const store = { host: s["store.host"], port: s["store.port"], user: s["store.user"] || undefined, identityFile: s["store.identity-file"] || undefined, knownHostsFile: s["store.known-hosts"] || undefined };
    const database = { container: s["database.container"], osUser: s["database.exec-user"], dockerHost: s["database.docker-host"] || undefined };
    let s3: S3Handle | undefined;
    const gateway = () => (s3 ??= s3Client({ endpoint: s["gateway.endpoint"], region: s["gateway.region"], ...keys.output }));

    const keys = step("keys", s["gateway.access-key"] && s["gateway.secret-key"] ? "take the gateway keys from the site config" : "read the gateway keys (deisctl config store get gateway/…)", async (api) => {
      if (!(s["gateway.access-key"] && s["gateway.secret-key"]) && !which(s["deisctl.command"][0])) {
        throw new UsageError(`no gateway keys: ${s["deisctl.command"][0]} is not there to ask`, "set gateway.access-key and gateway.secret-key, or deisctl.command");
      }
      return {
        accessKey: api.secret(s["gateway.access-key"] || (await deisctl(["config", "store", "get", "gateway/accessKey"]))),
        secretKey: api.secret(s["gateway.secret-key"] || (await deisctl(["config", "store", "get", "gateway/secretKey"]))),
      };
    }, { secret: true });

    const space = step("space", "check free space", async () => {
      let bytes = 0;
      for (const b of s["gateway.buckets"]) for await (const o of s3List(gateway(), b)) bytes += o.size;
      bytes += await sshDiskUsage(store, s["store.dir"], { sudo: s["store.sudo"] });
      bytes += Number((await psqlQuery(database, "SELECT sum(pg_database_size(oid)) FROM pg_database"))[0][0]);
      checkFreeSpace(s["backups.dir"], 2 * bytes); // the staging copy, then the archive
      await exec(["rm", "-rf", "--", staging]); // what an earlier failed run left
      // The staged copies (the database's WAL objects among them) are as private as the archive:
      // the backups folder 0700 when it is made here, the staging folder 0700 in any case.
      ensureBackupFolder(s["backups.dir"]);
      await exec(["mkdir", "-p", "-m", "700", "--", staging]);
      return { startedAt: new Date().toISOString() };
    });

    const buckets = s["gateway.buckets"].map((bucket) =>
      step(`download:${bucket}`, `download s3://${bucket} (s3cmd sync s3://${bucket} .)`, async () => {
        const r = await s3Sync(`s3://${bucket}`, `${staging}/${deis.LAYOUT.buckets}/${bucket}`, { client: gateway(), delete: true, concurrency: s["gateway.concurrency"] });
        return { objects: r.objects, bytes: r.bytes };
      }));

    const storeTar = step("store", `tar the store volume ${store.host}:${s["store.dir"]}`, async () => {
      const r = await sshTar(store, s["store.dir"], `${staging}/${deis.LAYOUT.storeTar}`, { sudo: s["store.sudo"] });
      return { tarBytes: r.bytes, changedWhileRead: r.changed };
    });

    const dump = step("dump", `dump the database (docker exec -u ${database.osUser} ${database.container} pg_dumpall)`, () =>
      pgDumpAll(database, `${staging}/${deis.LAYOUT.dump}`));

    const pack = step("pack", "pack and verify the archive", () =>
      backupArchive<deis.ArchiveMeta>(staging, {
        resumed: s.resume, // the archive a killed run packed and verified is used, not packed again
        folder: s["backups.dir"],
        name: "deis-backup",
        startedAt: new Date(space.output.startedAt),
        meta: { deis: meta() },
        age: ageOptions(s),
        ...compressionOptions(s),
      }));

    const offsite = step("offsite", `copy the archive off-site (${s["offsite.to"].join(", ") || "offsite.to is empty"})`, () =>
      offsiteBackup(pack.output.path, offsiteOptions(s)), { when: s["offsite.to"].length > 0 });

    /** What the manifest records: where the data came from and how much there was (no credentials). */
    const meta = (): deis.Meta => ({
      gateway: { endpoint: withoutCredentials(s["gateway.endpoint"]), region: s["gateway.region"] },
      buckets: Object.fromEntries(s["gateway.buckets"].map((b, i) => [b, buckets[i].output])),
      store: { host: store.host, port: store.port, user: store.user, dir: s["store.dir"], file: deis.LAYOUT.storeTar, ...storeTar.output },
      database: { container: database.container, dockerHost: database.dockerHost ?? "local", file: deis.LAYOUT.dump, dumpBytes: dump.output.bytes },
    });

    return {
      steps: [keys, space, ...buckets, storeTar, dump, pack, offsite],
      cleanup: async () => {
        s3?.destroy();
        if (pack.hasOutput) await exec(["rm", "-rf", "--", staging]);
        else ctx.log.info(`staging kept for --resume: ${staging} (a fresh run clears it)`);
      },
      report: () => [
        `archive   ${pack.output.path} (${formatBytes(pack.output.bytes)})`,
        ...s["gateway.buckets"].map((b, i) => `bucket    ${b}: ${buckets[i].output.objects} objects, ${formatBytes(buckets[i].output.bytes)}`),
        `store     ${formatBytes(storeTar.output.tarBytes)} tar${storeTar.output.changedWhileRead.length ? `, ${storeTar.output.changedWhileRead.length} file(s) changed while read (kept as read)` : ""}`,
        `database  dump_all.sql ${formatBytes(dump.output.bytes)}`,
        ...(offsite.hasOutput ? offsite.output.copies.map((c) => `off-site  ${c.url} (${c.skipped ? "already there, " : ""}verified: ${c.method})`) : []),
      ],
    };
  },
});
