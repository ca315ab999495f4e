// deis-restore: restore a Deis v1 cluster's platform state from a deis-backup archive onto a
// NEW cluster, as the Deis runbook "Backing Up and Restoring Data" does by hand, as resumable steps.
//
//   npx zx recipes/deis-restore.ts ARCHIVE --config site.yaml [--dry-run] [--yes] [--resume]
//   npx zx recipes/deis-restore.ts s3://offsite/deis/deis-backup-….tar.gz --config site.yaml   (or ssh://…)
//   make restore-deis ARGS="/var/backups/lifeboat/deis-backup-….tar.gz --config site.yaml"
//
// Steps (runbook line → step):
//   (lifeboat)                                   → "fetch the archive" when ARCHIVE is an s3:// or ssh:// URL
//                                                   (offsite.* settings): into WORK-DIR-archive, checked against
//                                                   its .sha256; then everything goes on as with a local archive
//   (lifeboat)                                   → "verify the archive": every byte against its manifest,
//                                                   before anything else (a damaged archive exits 3, nothing touched)
//   (lifeboat)                                   → "unpack the archive into the staging dir"
//   deisctl install platform                     → "deisctl install platform"                 [platform.install]
//   deisctl start store-monitor … store-volume   → "deisctl start UNIT", one step per unit    [platform.store-units]
//   deisctl start router@1                       → "deisctl start router@1"                   [platform.router-units]
//   deisctl config router set bodySize=100m      → "deisctl config router set bodySize=100m"  [platform.router-config]
//   deisctl config store get gateway/accessKey|secretKey (the NEW keys)
//                                                → "read the new gateway keys"                [platform.read-keys]
//   s3cmd mb s3://db_wal ; s3cmd mb s3://registry → "create the buckets"
//   s3cmd sync basebackups_005 s3://db_wal ; s3cmd sync wal_005 s3://db_wal ; s3cmd sync registry s3://registry
//                                                → "upload the buckets": every bucket in the archive, whole,
//                                                   with the same keys, bytes and ETags
//   rsync store_file_backup.tar.gz core@HOST:~ ; ssh core@HOST 'cd /var/lib/deis/store && sudo tar -xzpf … --same-owner'
//                                                → "untar the store data": streamed over ssh into
//                                                   `tar -x -p --same-owner` (no copy left on the host)
//   deisctl start platform                       → "deisctl start platform"                   [platform.start]
//   (not in the runbook)                         → "load dump_all.sql into the database": OFF by default
//                                                   [restore.load-dump]; see below
//   nse deis-controller; cd /app; export ETCD=…; ./manage.py shell <<EOF … EOF
//                                                → "re-save the controller's models": the runbook's Python,
//                                                   sent to `docker exec -i -w /app [-e ETCD] deis-controller
//                                                   ./manage.py shell` [controller.*]
// Each deisctl step is `deisctl.command` + the runbook's arguments (the defaults); set a list
// setting empty, or platform.read-keys false, to skip that step (it shows "off" in the summary).
// Steps that overwrite data ask first (--yes answers for a script).
//
// Decisions:
//   - Database: Deis's database restores itself from the WAL-E backups in db_wal when the
//     platform starts, which is why the buckets go back before `deisctl start platform`. The
//     pg_dumpall text dump is the runbook's extra copy; restore.load-dump loads it with psql into
//     an EMPTY database container (after waiting for it), for when the WAL restore is not wanted
//     or not possible (the lab has no WAL-E: its drill turns it on). A load that was cut off (the
//     database restarted, the run was killed) leaves part of the dump, over which a cluster dump
//     does not load again ("role … already exists"): the step marks the staging dir when it starts
//     loading, and a retry (--resume) that finds the mark first drops what the cut-off load made:
//     every database but postgres and the templates, and every role but the connecting one.
//   - Controller: controller.resave "auto" (default) runs the runbook's snippet when the
//     container exists on its docker host and says it skipped otherwise; "on" requires it;
//     "off" skips it. The snippet re-writes keys, apps, domains, certificates and configs to etcd.
//   - Keys: with platform.read-keys (default) the new cluster's keys come from deisctl, as the
//     runbook says; otherwise gateway.access-key/secret-key from the site config are used.
//
// Left to the operator, and why:
//   - s3cmd install/configure and ~/.s3cfg: lifeboat speaks S3 itself (gateway.endpoint).
//   - `deisctl scale store-gateway=N` if the gateway is overwhelmed: lower gateway.concurrency first.
//   - which machine runs deis-controller / deis-database, and its host IP for ETCD: cluster
//     facts; set controller.docker-host, controller.etcd, database.docker-host.
//   - in-place upgrades: the runbook says a restore is only for a NEW cluster; this recipe
//     assumes one (the buckets are created, the store volume is written over).
//
// Settings: recipes/deis.ts holds the table both Deis recipes share (flags, env LIFEBOAT_*, or
// the --config site file; see --help and recipes/deis.site.example.yaml). This recipe reads
// the backup's gateway.*, deisctl.*, store.*, database.*, backups.dir, plus age.passphrase /
// age.identity-file, platform.*, restore.*, controller.*.
import { createHash } from "node:crypto";
import {
  ageOptions,
  clearStaging,
  containerState,
  dockerExec,
  exec,
  formatBytes,
  isOffsiteUrl,
  offsiteFetch,
  offsiteOptions,
  pgReady,
  probe,
  pgLoadDumpAll,
  recipe,
  s3Client,
  s3MakeBucket,
  s3Sync,
  sshUntar,
  step,
  unpackArchive,
  UsageError,
  verifyArchive,
  type S3Handle,
} from "../lib/mod.ts";
import * as deis from "./deis.ts";

/** The runbook's snippet for `./manage.py shell`: re-save every model so the controller writes it to etcd again. */
const RESAVE_MODELS = `from api.models import *
[k.save() for k in Key.objects.all()]
[a.save() for a in App.objects.all()]
[d.save() for d in Domain.objects.all()]
[c.save() for c in Certificate.objects.all()]
[c.save() for c in Config.objects.all()]
`;

await recipe({
  name: "deis-restore",
  description: "restore a Deis v1 cluster's store buckets, store volume and controller state from a deis-backup archive",
  usage: "npx zx recipes/deis-restore.ts ARCHIVE --config site.yaml [--dry-run] [--yes] [--resume]",
  settings: deis.settings,
  target: (ctx) => ctx.settings["gateway.endpoint"],
  plan: (ctx) => {
    const s = ctx.settings;
    const archive = ctx.args[0];
    if (!archive || ctx.args.length > 1) throw new UsageError("give exactly one ARCHIVE to restore", "e.g. npx zx recipes/deis-restore.ts /var/backups/lifeboat/deis-backup-2026-11-21T101500Z.tar.gz --config site.yaml");
    // one per cluster (the lock and the journal are per gateway): another cluster's restore must
    // not refill what a --resume of this one uploads
    const staging = s["restore.work-dir"] || `${s["backups.dir"]}/.deis-restore-staging-${createHash("sha256").update(s["gateway.endpoint"]).digest("hex").slice(0, 8)}`;
    const decrypt = ageOptions(s);
    const deisctlEnv = { DEISCTL_TUNNEL: s["deisctl.tunnel"] || undefined };
    const deisctl = (id: string, args: readonly string[], opts: { confirm?: string } = {}) =>
      step(`deisctl:${id}`, `deisctl ${args.join(" ") || id}`, () => exec([...s["deisctl.command"], ...args], { env: deisctlEnv, stdout: "inherit" }), { when: args.length > 0, ...opts });
    const store = { host: s["store.host"], port: s["store.port"], user: s["store.user"] || undefined, identityFile: s["store.identity-file"] || undefined, knownHostsFile: s["store.known-hosts"] || undefined };
    const database = { container: s["database.container"], osUser: s["database.exec-user"], dockerHost: s["database.docker-host"] || undefined };
    const controller = s["controller.container"];
    const controllerHost = { dockerHost: s["controller.docker-host"] || undefined };
    let s3: S3Handle | undefined;
    const gateway = () => (s3 ??= s3Client({ endpoint: s["gateway.endpoint"], region: s["gateway.region"], ...keys.output }));

    const fetched = step("fetch", `fetch the archive from ${archive}`, () => offsiteFetch(archive, `${staging}-archive`, offsiteOptions(s)), { when: isOffsiteUrl(archive) });
    const local = () => (fetched.hasOutput ? fetched.output : archive);

    // The quick verify reads the sidecars and the key; the unpack step checks every byte as it unpacks.
    const verified = step("verify", "verify the archive", async () => {
      const meta = (await verifyArchive<deis.ArchiveMeta>(local(), { decrypt, quick: true })).info?.meta.deis;
      if (!meta) throw new UsageError(`${archive} was not made by deis-backup (its manifest has no meta.deis)`, "give a deis-backup-….tar.gz archive");
      return meta;
    });

    const unpack = step("unpack", "unpack the archive into the staging dir", async () => {
      clearStaging(staging); // restore.work-dir may be a mount point: emptied, kept
      await unpackArchive(local(), staging, { decrypt });
    });

    const keys = step("keys", s["platform.read-keys"] ? "read the new gateway keys (deisctl config store get gateway/…)" : "take the gateway keys from the site config", async (api) => {
      const get = (key: string) => probe([...s["deisctl.command"], "config", "store", "get", key], { env: deisctlEnv });
      return {
        accessKey: api.secret(s["platform.read-keys"] ? await get("gateway/accessKey") : s["gateway.access-key"]),
        secretKey: api.secret(s["platform.read-keys"] ? await get("gateway/secretKey") : s["gateway.secret-key"]),
      };
    }, { secret: true });

    const steps = [
      fetched,
      verified,
      unpack,
      deisctl("install", s["platform.install"], { confirm: `install the Deis platform on the cluster behind ${s["deisctl.command"].join(" ")} and restore ${archive} into it?` }),
      ...s["platform.store-units"].map((unit) => deisctl(`start:${unit}`, ["start", unit])),
      ...s["platform.router-units"].map((unit) => deisctl(`start:${unit}`, ["start", unit])),
      deisctl("router-config", s["platform.router-config"].length ? ["config", "router", "set", ...s["platform.router-config"]] : []),
      keys,

      step("buckets", "create the buckets (s3cmd mb)", async () => {
        for (const b of Object.keys(verified.output.buckets)) await s3MakeBucket(gateway(), b);
      }),

      step("upload", "upload the buckets (s3cmd sync … s3://BUCKET)", async () => {
        for (const b of Object.keys(verified.output.buckets)) {
          await s3Sync(`${staging}/${deis.LAYOUT.buckets}/${b}`, `s3://${b}`, { client: gateway(), concurrency: s["gateway.concurrency"] });
        }
      }, { confirm: `overwrite the objects in the buckets at ${s["gateway.endpoint"]} with the archive's copies?` }),

      step("untar", `untar the store data on ${store.host}:${s["store.dir"]} (tar --same-owner)`, async () => {
        await sshUntar(store, `${staging}/${deis.LAYOUT.storeTar}`, s["store.dir"], { sudo: s["store.sudo"], sameOwner: true, mkdir: true, gzip: false });
      }, { confirm: `extract the store data over ${store.host}:${s["store.dir"]} (files of the same name are replaced)?` }),

      deisctl("start-platform", s["platform.start"]),

      step("load-dump", `load dump_all.sql into ${database.container} (psql)`, async () => {
        await pgReady(database, { timeoutMs: s["restore.wait-seconds"] * 1000 });
        await pgLoadDumpAll(database, `${staging}/${deis.LAYOUT.dump}`, { marker: `${staging}/.load-dump-started` }); // a cut-off load is undone first
      }, { when: s["restore.load-dump"], confirm: `load the archive's pg_dumpall into ${database.container} (it must be empty)?` }),

      step("resave", "re-save the controller's models (./manage.py shell)", async () => {
        if (s["controller.resave"] === "auto" && (await containerState(controller, controllerHost)) === "missing") {
          return ctx.log.warn(`no container ${controller}: models not re-saved; run the runbook's ./manage.py shell snippet by hand once the controller is up`);
        }
        const env = { ETCD: s["controller.etcd"] || undefined };
        await dockerExec(controller, s["controller.command"], { ...controllerHost, workdir: s["controller.workdir"], env, stdin: RESAVE_MODELS, stdout: "inherit" });
      }, { when: s["controller.resave"] !== "off" }),

      step("remove-staging", "remove the staging dir", () => {
        clearStaging(staging);
        clearStaging(`${staging}-archive`);
      }),
    ];

    return {
      steps,
      cleanup: () => s3?.destroy(),
      report: () => {
        const meta = verified.output;
        return [
          ...(ctx.dryRun ? ["dry run: nothing was restored; this is what the archive would restore"] : []),
          `archive   ${archive}`,
          ...Object.entries(meta.buckets).map(([b, x]) => `bucket    ${b}: ${x.objects} objects, ${formatBytes(x.bytes)} → ${s["gateway.endpoint"]}`),
          `store     ${formatBytes(meta.store.tarBytes)} tar → ${s["store.host"]}:${s["store.dir"]}`,
          `database  dump_all.sql ${formatBytes(meta.database.dumpBytes)}${s["restore.load-dump"] ? " loaded into " + s["database.container"] : " kept in the archive (restore.load-dump is off)"}`,
        ];
      },
    };
  },
});
