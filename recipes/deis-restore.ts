// deis-restore: restore a Deis v1 cluster's platform state from a deis-backup archive onto a
// NEW cluster, as the Deis runbook "Backing Up and Restoring Data" does by hand, as resumable steps.
//
//   npx zx recipes/deis-restore.ts ARCHIVE --config site.yaml [--dry-run] [--yes] [--resume]
//   make restore-deis ARGS="/var/backups/lifeboat/deis-backup-….tar.gz --config site.yaml"
//
// Steps (runbook line → step):
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
//     or not possible (the lab has no WAL-E: its drill turns it on).
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
// Settings (flags, env LIFEBOAT_*, or the --config site file; see --help and
// recipes/deis.site.example.yaml): the backup's gateway.*, deisctl.*, store.*, database.*,
// backups.dir, plus age.passphrase / age.identity-file, platform.*, restore.*, controller.*.
import {
  containerState,
  dockerExec,
  exec,
  formatBytes,
  probe,
  psqlFile,
  recipe,
  s3Client,
  s3MakeBucket,
  s3Sync,
  sshUntar,
  step,
  unpackArchive,
  UsageError,
  verifyArchive,
  waitForHealthy,
  readAgeIdentities,
  type S3Handle,
  type SettingSpecs,
  type StepApi,
} from "../lib/mod.ts";

/** The runbook's snippet for `./manage.py shell`: re-save every model so the controller writes it to etcd again. */
const RESAVE_MODELS = `from api.models import *
[k.save() for k in Key.objects.all()]
[a.save() for a in App.objects.all()]
[d.save() for d in Domain.objects.all()]
[c.save() for c in Certificate.objects.all()]
[c.save() for c in Config.objects.all()]
`;

const DEIS_SETTINGS = {
  "backups.dir": { describe: "folder for archives; the restore's staging dir goes there unless restore.work-dir says otherwise", default: "/var/backups/lifeboat" },
  "gateway.endpoint": { describe: "S3 URL of the NEW cluster's deis-store-gateway (the runbook's host_base)", required: true },
  "gateway.access-key": { describe: "gateway access key, used when platform.read-keys is off", secret: true },
  "gateway.secret-key": { describe: "gateway secret key, used when platform.read-keys is off", secret: true },
  "gateway.region": { describe: "signing region for the gateway", default: "us-east-1" },
  "gateway.buckets": { type: "list", describe: "(backup) buckets to back up; a restore uploads every bucket in the archive", default: ["db_wal", "registry"] },
  "gateway.concurrency": { type: "number", describe: "S3 transfers in flight (lower it if the gateway is overwhelmed)", default: 8 },
  "deisctl.command": { type: "list", describe: "how to run deisctl, as argv (e.g. /opt/bin/deisctl)", default: ["deisctl"] },
  "deisctl.tunnel": { describe: "DEISCTL_TUNNEL for deisctl on a remote machine (host[:port])" },
  "store.host": { describe: "a CoreOS machine of the new cluster with the store volume (ssh)", required: true },
  "store.port": { type: "number", describe: "its ssh port", default: 22 },
  "store.user": { describe: "ssh login user", default: "core" },
  "store.identity-file": { describe: "ssh private key file (default: ssh's own)" },
  "store.known-hosts": { describe: "known_hosts file; with it, host keys are checked strictly" },
  "store.sudo": { type: "boolean", describe: "run tar under sudo -n on the host (the runbook's sudo tar)", default: true },
  "store.dir": { describe: "the store volume's directory on the host (created when missing)", default: "/var/lib/deis/store" },
  "database.container": { describe: "the database container", default: "deis-database" },
  "database.exec-user": { describe: "user psql runs as inside it (the runbook's sudo -u postgres)", default: "postgres" },
  "database.docker-host": { describe: "docker daemon running the container (e.g. ssh://core@deis-1); empty: the local docker" },
  "age.passphrase": { describe: "age passphrase of an encrypted archive", secret: true },
  "age.identity-file": { describe: "age identity file (AGE-SECRET-KEY-…) of an encrypted archive" },
  "platform.install": { type: "list", describe: "deisctl arguments that install the platform; empty: skip", default: ["install", "platform"] },
  "platform.store-units": { type: "list", describe: "store units started one by one with `deisctl start UNIT`; empty: skip", default: ["store-monitor", "store-daemon", "store-metadata", "store-gateway@1", "store-volume"] },
  "platform.router-units": { type: "list", describe: "router units started with `deisctl start UNIT`; empty: skip", default: ["router@1"] },
  "platform.router-config": { type: "list", describe: "KEY=VALUE for `deisctl config router set`; empty: skip", default: ["bodySize=100m"] },
  "platform.read-keys": { type: "boolean", describe: "read the new gateway keys with `deisctl config store get gateway/…`", default: true },
  "platform.start": { type: "list", describe: "deisctl arguments that start the whole platform; empty: skip", default: ["start", "platform"] },
  "restore.work-dir": { describe: "where the archive is unpacked (default: backups.dir/.deis-restore-staging)" },
  "restore.load-dump": { type: "boolean", describe: "load dump_all.sql into an empty database container after the platform starts", default: false },
  "restore.wait-seconds": { type: "number", describe: "how long to wait for the database container to accept connections", default: 600 },
  "controller.resave": { describe: "re-save the controller's models (auto: when the container exists)", choices: ["auto", "on", "off"], default: "auto" },
  "controller.container": { describe: "the controller container", default: "deis-controller" },
  "controller.command": { type: "list", describe: "the shell the snippet is fed to, run in controller.workdir", default: ["./manage.py", "shell"] },
  "controller.workdir": { describe: "working directory inside the container (the runbook's cd /app)", default: "/app" },
  "controller.etcd": { describe: "ETCD=HOST:PORT for manage.py (the runbook's export ETCD=172.17.8.100:4001); empty: the container's own" },
  "controller.docker-host": { describe: "docker daemon running the controller (e.g. ssh://core@deis-2); empty: the local docker" },
} satisfies SettingSpecs;

let s3: S3Handle | undefined;

await recipe({
  name: "deis-restore",
  description: "restore a Deis v1 cluster's store buckets, store volume and controller state from a deis-backup archive",
  usage: "npx zx recipes/deis-restore.ts ARCHIVE --config site.yaml [--dry-run] [--yes] [--resume]",
  settings: DEIS_SETTINGS,
  ignoreSections: ["age.recipients"],
  target: (ctx) => ctx.settings["gateway.endpoint"],
  steps: (ctx) => {
    const s = ctx.settings;
    const archive = ctx.args[0];
    if (!archive || ctx.args.length > 1) throw new UsageError("give exactly one ARCHIVE to restore", "e.g. npx zx recipes/deis-restore.ts /var/backups/lifeboat/deis-backup-2026-11-21T101500Z.tar.gz --config site.yaml");
    const staging = s["restore.work-dir"] || `${s["backups.dir"]}/.deis-restore-staging`;
    const decrypt = { passphrase: s["age.passphrase"] || undefined, identities: s["age.identity-file"] ? readAgeIdentities(s["age.identity-file"]) : undefined };
    const deisctlEnv = { DEISCTL_TUNNEL: s["deisctl.tunnel"] || undefined };
    const deisctl = (name: string, args: readonly string[], opts: { confirm?: string } = {}) =>
      step(`deisctl ${args.join(" ") || name}`, () => exec([...s["deisctl.command"], ...args], { env: deisctlEnv, stdout: "inherit" }), { when: args.length > 0, ...opts });
    const store = { host: s["store.host"], port: s["store.port"], user: s["store.user"] || undefined, identityFile: s["store.identity-file"] || undefined, knownHostsFile: s["store.known-hosts"] || undefined };
    const database = { container: s["database.container"], osUser: s["database.exec-user"], dockerHost: s["database.docker-host"] || undefined };
    const controller = s["controller.container"];
    const controllerHost = { dockerHost: s["controller.docker-host"] || undefined };
    const gateway = (api: StepApi) => (s3 ??= s3Client({ endpoint: s["gateway.endpoint"], region: s["gateway.region"], accessKey: api.state.accessKey as string, secretKey: api.state.secretKey as string }));
    const buckets = (api: StepApi) => (api.state.meta as DeisMeta).buckets;

    return [
      step("verify the archive", async (api) => {
        const report = await verifyArchive(archive, { decrypt });
        api.state.meta = report.manifest?.meta.deis;
        if (!api.state.meta) throw new UsageError(`${archive} was not made by deis-backup (its manifest has no meta.deis)`, "give a deis-backup-….tar.gz archive");
      }),

      step("unpack the archive into the staging dir", async () => {
        await exec(["rm", "-rf", "--", staging]);
        await unpackArchive(archive, staging, { decrypt });
      }),

      deisctl("install platform", s["platform.install"], { confirm: `install the Deis platform on the cluster behind ${s["deisctl.command"].join(" ")} and restore ${archive} into it?` }),
      ...s["platform.store-units"].map((unit) => deisctl(`start ${unit}`, ["start", unit])),
      ...s["platform.router-units"].map((unit) => deisctl(`start ${unit}`, ["start", unit])),
      deisctl("config router set", s["platform.router-config"].length ? ["config", "router", "set", ...s["platform.router-config"]] : []),

      step(s["platform.read-keys"] ? "read the new gateway keys (deisctl config store get gateway/…)" : "take the gateway keys from the site config", async (api) => {
        const get = (key: string) => probe([...s["deisctl.command"], "config", "store", "get", key], { env: deisctlEnv });
        api.secret("accessKey", s["platform.read-keys"] ? await get("gateway/accessKey") : s["gateway.access-key"]);
        api.secret("secretKey", s["platform.read-keys"] ? await get("gateway/secretKey") : s["gateway.secret-key"]);
      }),

      step("create the buckets (s3cmd mb)", async (api) => {
        for (const b of Object.keys(buckets(api))) await s3MakeBucket(gateway(api), b);
      }),

      step("upload the buckets (s3cmd sync … s3://BUCKET)", async (api) => {
        for (const [b, was] of Object.entries(buckets(api))) {
          if (ctx.dryRun) ctx.log.command(`s3 sync ${staging}/buckets/${b} s3://${b}  (${was.objects} objects, ${formatBytes(was.bytes)} from the archive)`, "dry-run");
          else await s3Sync(`${staging}/buckets/${b}`, `s3://${b}`, { client: gateway(api), concurrency: s["gateway.concurrency"] });
        }
      }, { confirm: `overwrite the objects in the buckets at ${s["gateway.endpoint"]} with the archive's copies?` }),

      step(`untar the store data on ${store.host}:${s["store.dir"]} (tar --same-owner)`, async () => {
        await sshUntar(store, `${staging}/store/store_file_backup.tar`, s["store.dir"], { sudo: s["store.sudo"], sameOwner: true, mkdir: true, gzip: false });
      }, { confirm: `extract the store data over ${store.host}:${s["store.dir"]} (files of the same name are replaced)?` }),

      deisctl("start platform", s["platform.start"]),

      step(`load dump_all.sql into ${database.container} (psql)`, async () => {
        await waitForHealthy({ command: ["docker", ...dockerHostArgs(database.dockerHost), "exec", database.container, "pg_isready", "-q"] }, { timeoutMs: s["restore.wait-seconds"] * 1000, label: `${database.container} accepts connections` });
        await psqlFile(database, `${staging}/database/dump_all.sql`);
      }, { when: s["restore.load-dump"], confirm: `load the archive's pg_dumpall into ${database.container} (it must be empty)?` }),

      step("re-save the controller's models (./manage.py shell)", async () => {
        if (s["controller.resave"] === "auto" && (await containerState(controller, controllerHost)) === "missing") {
          return ctx.log.warn(`no container ${controller}: models not re-saved; run the runbook's ./manage.py shell snippet by hand once the controller is up`);
        }
        const env = { ETCD: s["controller.etcd"] || undefined };
        await dockerExec(controller, s["controller.command"], { ...controllerHost, workdir: s["controller.workdir"], env, stdin: RESAVE_MODELS, stdout: "inherit" });
      }, { when: s["controller.resave"] !== "off" }),

      step("remove the staging dir", () => exec(["rm", "-rf", "--", staging])),
    ];
  },

  finally: () => s3?.destroy(),

  report: (ctx, state) => {
    const meta = state.meta as DeisMeta | undefined;
    if (!meta) return [];
    return [
      ...(ctx.dryRun ? ["dry run: nothing was restored; this is what the archive would restore"] : []),
      `archive   ${ctx.args[0]}`,
      ...Object.entries(meta.buckets).map(([b, x]) => `bucket    ${b}: ${x.objects} objects, ${formatBytes(x.bytes)} → ${ctx.settings["gateway.endpoint"]}`),
      `store     ${formatBytes(meta.store.tarBytes)} tar → ${ctx.settings["store.host"]}:${ctx.settings["store.dir"]}`,
      `database  dump_all.sql ${formatBytes(meta.database.dumpBytes)}${ctx.settings["restore.load-dump"] ? " loaded into " + ctx.settings["database.container"] : " kept in the archive (restore.load-dump is off)"}`,
    ];
  },
});

/** What deis-backup recorded in manifest.meta.deis. */
interface DeisMeta {
  buckets: Record<string, { objects: number; bytes: number }>;
  store: { tarBytes: number; changedWhileRead: string[] };
  database: { dumpBytes: number };
}

function dockerHostArgs(host: string | undefined): string[] {
  return host ? [`--host=${host}`] : [];
}
