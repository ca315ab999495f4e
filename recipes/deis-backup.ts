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
// Settings (flags, env LIFEBOAT_*, or the --config site file; see --help and
// recipes/deis.site.example.yaml): backups.dir, gateway.endpoint, gateway.access-key,
// gateway.secret-key, gateway.region, gateway.buckets, gateway.concurrency, deisctl.command,
// deisctl.tunnel, store.host, store.port, store.user, store.identity-file, store.known-hosts,
// store.sudo, store.dir, database.container, database.exec-user, database.docker-host,
// age.passphrase, age.recipients.
//
// A failed run keeps its staging dir (backups.dir/.deis-backup-staging) so --resume can continue
// at the failed step; a successful run removes it in `finally`, and a fresh run starts clean.
import {
  checkFreeSpace,
  exec,
  formatBytes,
  listBackups,
  packArchive,
  pgDumpAll,
  probe,
  psqlQuery,
  recipe,
  s3Client,
  s3List,
  s3Sync,
  sshDiskUsage,
  sshTar,
  stamp,
  step,
  UsageError,
  verifyBackup,
  which,
  type S3Handle,
  type SettingSpecs,
  type StepApi,
} from "../lib/mod.ts";

const DEIS_SETTINGS = {
  "backups.dir": { describe: "folder for archives (and the staging dir while a backup runs)", default: "/var/backups/lifeboat" },
  "gateway.endpoint": { describe: "S3 URL of deis-store-gateway (the runbook's host_base), e.g. http://deis-store.example.com", required: true },
  "gateway.access-key": { describe: "gateway access key; empty: `deisctl config store get gateway/accessKey`", secret: true },
  "gateway.secret-key": { describe: "gateway secret key; empty: `deisctl config store get gateway/secretKey`", secret: true },
  "gateway.region": { describe: "signing region for the gateway", default: "us-east-1" },
  "gateway.buckets": { type: "list", describe: "buckets to back up", default: ["db_wal", "registry"] },
  "gateway.concurrency": { type: "number", describe: "S3 transfers in flight (lower it if the gateway is overwhelmed)", default: 8 },
  "deisctl.command": { type: "list", describe: "how to run deisctl, as argv (e.g. /opt/bin/deisctl)", default: ["deisctl"] },
  "deisctl.tunnel": { describe: "DEISCTL_TUNNEL for deisctl on a remote machine (host[:port])" },
  "store.host": { describe: "a CoreOS machine holding the store volume (ssh)", required: true },
  "store.port": { type: "number", describe: "its ssh port", default: 22 },
  "store.user": { describe: "ssh login user", default: "core" },
  "store.identity-file": { describe: "ssh private key file (default: ssh's own)" },
  "store.known-hosts": { describe: "known_hosts file; with it, host keys are checked strictly" },
  "store.sudo": { type: "boolean", describe: "run tar under sudo -n on the host (the runbook's sudo tar)", default: true },
  "store.dir": { describe: "the store volume's directory on the host", default: "/var/lib/deis/store" },
  "database.container": { describe: "the database container", default: "deis-database" },
  "database.exec-user": { describe: "user pg_dumpall runs as inside it (the runbook's sudo -u postgres)", default: "postgres" },
  "database.docker-host": { describe: "docker daemon running the container (e.g. ssh://core@deis-1); empty: the local docker" },
  "age.passphrase": { describe: "encrypt the archive with age using this passphrase", secret: true },
  "age.recipients": { type: "list", describe: "encrypt the archive with age for these recipients (age1…)" },
} satisfies SettingSpecs;

let s3: S3Handle | undefined;

await recipe({
  name: "deis-backup",
  description: "back up a Deis v1 cluster: store-gateway buckets, the store volume and a pg_dumpall, into one verified archive",
  usage: "npx zx recipes/deis-backup.ts --config site.yaml [--dry-run] [--yes] [--resume]",
  settings: DEIS_SETTINGS,
  ignoreSections: ["platform", "controller", "restore", "age.identity-file"],
  target: (ctx) => ctx.settings["backups.dir"],
  steps: (ctx) => {
    const s = ctx.settings;
    const staging = `${s["backups.dir"]}/.deis-backup-staging`;
    const deisctl = (args: string[]) => probe([...s["deisctl.command"], ...args], { env: { DEISCTL_TUNNEL: s["deisctl.tunnel"] || undefined } });
    const store = { host: s["store.host"], port: s["store.port"], user: s["store.user"] || undefined, identityFile: s["store.identity-file"] || undefined, knownHostsFile: s["store.known-hosts"] || undefined };
    const database = { container: s["database.container"], osUser: s["database.exec-user"], dockerHost: s["database.docker-host"] || undefined };
    const gateway = (api: StepApi) => (s3 ??= s3Client({ endpoint: s["gateway.endpoint"], region: s["gateway.region"], accessKey: api.state.accessKey as string, secretKey: api.state.secretKey as string }));

    return [
      step(s["gateway.access-key"] && s["gateway.secret-key"] ? "take the gateway keys from the site config" : "read the gateway keys (deisctl config store get gateway/…)", async (api) => {
        if (!(s["gateway.access-key"] && s["gateway.secret-key"]) && !which(s["deisctl.command"][0])) {
          throw new UsageError(`no gateway keys: ${s["deisctl.command"][0]} is not there to ask`, "set gateway.access-key and gateway.secret-key, or deisctl.command");
        }
        api.secret("accessKey", s["gateway.access-key"] || (await deisctl(["config", "store", "get", "gateway/accessKey"])));
        api.secret("secretKey", s["gateway.secret-key"] || (await deisctl(["config", "store", "get", "gateway/secretKey"])));
      }),

      step("check free space", async (api) => {
        let bytes = 0;
        for (const b of s["gateway.buckets"]) for await (const o of s3List(gateway(api), b)) bytes += o.size;
        bytes += await sshDiskUsage(store, s["store.dir"], { sudo: s["store.sudo"] });
        bytes += Number((await psqlQuery(database, "SELECT sum(pg_database_size(oid)) FROM pg_database"))[0][0]);
        checkFreeSpace(s["backups.dir"], 2 * bytes); // the staging copy, then the archive
        await exec(["rm", "-rf", "--", staging]); // what an earlier failed run left
        api.state.startedAt = new Date().toISOString();
      }),

      ...s["gateway.buckets"].map((bucket) =>
        step(`download s3://${bucket} (s3cmd sync s3://${bucket} .)`, async (api) => {
          const r = await s3Sync(`s3://${bucket}`, `${staging}/buckets/${bucket}`, { client: gateway(api), delete: true, concurrency: s["gateway.concurrency"] });
          api.state[`bucket:${bucket}`] = { objects: r.objects, bytes: r.bytes };
        })),

      step(`tar the store volume ${store.host}:${s["store.dir"]}`, async (api) => {
        const r = await sshTar(store, s["store.dir"], `${staging}/store/store_file_backup.tar`, { sudo: s["store.sudo"] });
        api.state.store = { tarBytes: r.bytes, changedWhileRead: r.changed };
      }),

      step(`dump the database (docker exec -u ${database.osUser} ${database.container} pg_dumpall)`, async (api) => {
        const r = await pgDumpAll(database, `${staging}/database/dump_all.sql`);
        api.state.dumpBytes = r.bytes;
      }),

      step("pack and verify the archive", async (api) => {
        const encrypt = { passphrase: s["age.passphrase"] || undefined, recipients: s["age.recipients"] };
        const encrypted = !!(encrypt.passphrase || encrypt.recipients.length);
        const archive = `${s["backups.dir"]}/deis-backup-${stamp(new Date(api.state.startedAt as string))}.tar.gz${encrypted ? ".age" : ""}`;
        const m = await packArchive(staging, archive, { meta: { deis: deisMeta(api) }, encrypt, startedAt: new Date(api.state.startedAt as string) });
        if (!encrypted || encrypt.passphrase) await verifyBackup(archive, { decrypt: encrypt });
        else ctx.log.warn("encrypted for recipients only: verified while packing; verify it again with archive:verify and the identity");
        api.state.archive = archive;
        api.state.totals = m.totals;
      }),
    ];

    /** What the manifest records: where the data came from and how much there was (no credentials). */
    function deisMeta(api: StepApi) {
      return {
        gateway: { endpoint: s["gateway.endpoint"], region: s["gateway.region"] },
        buckets: Object.fromEntries(s["gateway.buckets"].map((b) => [b, api.state[`bucket:${b}`]])),
        store: { host: store.host, port: store.port, user: store.user, dir: s["store.dir"], file: "store/store_file_backup.tar", ...(api.state.store as object) },
        database: { container: database.container, dockerHost: database.dockerHost ?? "local", file: "database/dump_all.sql", dumpBytes: api.state.dumpBytes },
      };
    }
  },

  finally: async (ctx, api) => {
    s3?.destroy();
    const staging = `${ctx.settings["backups.dir"]}/.deis-backup-staging`;
    if (ctx.dryRun) return;
    if (api.state.archive) await exec(["rm", "-rf", "--", staging]);
    else ctx.log.info(`staging kept for --resume: ${staging} (a fresh run clears it)`);
  },

  report: (ctx, state) => {
    if (ctx.dryRun) return [];
    const archive = state.archive as string;
    const size = listBackups(ctx.settings["backups.dir"]).find((b) => b.path === archive)?.size ?? 0;
    const store = state.store as { tarBytes: number; changedWhileRead: string[] };
    return [
      `archive   ${archive} (${formatBytes(size)})`,
      ...ctx.settings["gateway.buckets"].map((b) => {
        const x = state[`bucket:${b}`] as { objects: number; bytes: number };
        return `bucket    ${b}: ${x.objects} objects, ${formatBytes(x.bytes)}`;
      }),
      `store     ${formatBytes(store.tarBytes)} tar${store.changedWhileRead.length ? `, ${store.changedWhileRead.length} file(s) changed while read (kept as read)` : ""}`,
      `database  dump_all.sql ${formatBytes(state.dumpBytes as number)}`,
    ];
  },
});
