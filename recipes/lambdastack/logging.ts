// logging: the Elasticsearch/OpenSearch snapshot and configs, on logging[0]
// (LambdaStack roles/{backup,recovery}/tasks/logging_elasticsearch_*.yml, Epiphany's opensearch ones).
// The search API listens on the host only: every call goes through an ssh tunnel. One repository
// name (logging.repository) for backup and recovery, fixing upstream's LambdaStack/lambdastack.
//   elasticsearch_snapshot  wait for health; register the fs repository at logging.location;
//                           snapshot <ts> and wait for SUCCESS; delete the older snapshots (upstream
//                           keeps only the newest); archive the repository dir.
//                           Recovery: clear and extract the repository dir; register it again (upstream
//                           relied on the old registration); stop kibana and filebeat; close and
//                           delete the indices the snapshot holds, then _restore; start them again.
//   elasticsearch_etc       /etc/elasticsearch. Recovery: first of all: stop, clear, extract, start.
//   kibana_etc              kibana[0] (when the group exists): /etc/kibana. Recovery: stop, clear, extract, start.
import { searchDeleteSnapshots, searchHealthProbe, searchRegisterRepository, searchRestore, searchSnapshot, ssh, sshClear, sshFetch, sshPush, sshUsage, waitForHealthy, type InventoryHost, type SshTarget } from "../../lib/mod.ts";
import { viaTunnel, type BackupPart, type Env, type RecoveryPart } from "../lambdastack.ts";

function auth(env: Env) {
  return env.s["logging.user"] ? { username: env.s["logging.user"], password: env.s["logging.password"] ?? "" } : undefined;
}

export function backupParts(env: Env): BackupPart[] {
  const loc = env.s["logging.location"], repo = env.s["logging.repository"];
  const etc = (prefix: string, host: InventoryHost, dir: string): BackupPart => {
    const h = env.ssh(host);
    return { component: "logging", prefix, host, estimate: () => sshUsage(h, [dir]), collect: async (stage) => (await sshFetch(h, dir, stage), {}) };
  };
  return [
    ...env.hosts("logging").slice(0, 1).flatMap((host): BackupPart[] => {
      const h = env.ssh(host);
      return [{
        component: "logging", prefix: "elasticsearch_snapshot", host,
        estimate: () => sshUsage(h, ["/var/lib/elasticsearch", loc]),
        collect: async (stage, snapshot) => {
          const snap = await viaTunnel(h, env.s["logging.port"], async (url) => {
            const o = { auth: auth(env) };
            await waitForHealthy(searchHealthProbe(url, o), { timeoutMs: 60_000 });
            await searchRegisterRepository(url, repo, { ...o, location: loc });
            // the name is this run's (its snapshot stamp): a resumed run uses what the killed one took
            const info = await searchSnapshot(url, repo, snapshot, { ...o, includeGlobalState: true, pollIntervalMs: 500, existing: "use" });
            const pruned = await searchDeleteSnapshots(url, repo, { ...o, keepLast: 1 });
            return { name: info.name, indices: info.indices, deleted: pruned.deleted };
          });
          await sshFetch(h, loc, stage);
          return { facts: snap };
        },
      }, etc("elasticsearch_etc", host, "/etc/elasticsearch")];
    }),
    ...env.hosts("kibana").slice(0, 1).map((host) => etc("kibana_etc", host, "/etc/kibana")),
  ];
}

export function recoveryParts(env: Env): RecoveryPart[] {
  const loc = env.s["logging.location"], repo = env.s["logging.repository"];
  const replace = async (h: SshTarget, unit: string, dir: string, files: string) => {
    await ssh(h, ["systemctl", "stop", unit]);
    await sshClear(h, [dir]);
    await sshPush(h, files, dir);
    await ssh(h, ["systemctl", "start", unit]);
    return {};
  };
  const side = [...env.hosts("kibana").map((h) => [h, "kibana"] as const), ...env.hosts("filebeat").map((h) => [h, "filebeat"] as const)];
  return [
    ...env.hosts("logging").slice(0, 1).flatMap((host): RecoveryPart[] => {
      const h = env.ssh(host);
      return [
        { component: "logging", prefix: "elasticsearch_etc", host, restore: (files) => replace(h, "elasticsearch", "/etc/elasticsearch", files) },
        {
          component: "logging", prefix: "elasticsearch_snapshot", host,
          restore: async (files, meta) => {
            await sshClear(h, [loc]);
            await sshPush(h, files, loc);
            for (const [x, unit] of side) await ssh(env.ssh(x), ["systemctl", "stop", unit]);
            try {
              return await viaTunnel(h, env.s["logging.port"], async (url) => {
                const o = { auth: auth(env) };
                await waitForHealthy(searchHealthProbe(url, o), { timeoutMs: 60_000 });
                await searchRegisterRepository(url, repo, { ...o, location: loc });
                const r = await searchRestore(url, repo, String(meta.facts.name), { ...o, existing: "delete", includeGlobalState: true });
                return { snapshot: r.snapshot, indices: r.indices, deleted: r.deleted };
              });
            } finally {
              for (const [x, unit] of side) await ssh(env.ssh(x), ["systemctl", "start", unit]);
            }
          },
        },
      ];
    }),
    ...env.hosts("kibana").slice(0, 1).map((host): RecoveryPart => ({ component: "logging", prefix: "kibana_etc", host, restore: (files) => replace(env.ssh(host), "kibana", "/etc/kibana", files) })),
  ];
}
