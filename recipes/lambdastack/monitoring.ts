// monitoring: Prometheus, Alertmanager and Grafana
// (LambdaStack roles/{backup,recovery}/tasks/monitoring_*.yml; Alertmanager is new).
//   prometheus_snapshot   prometheus[0]: POST /api/v1/admin/tsdb/snapshot (admin API, reached by an
//                         ssh tunnel: it listens on the host only); the snapshot dir is archived and
//                         then removed from the host, also when archiving fails (upstream's always:).
//                         Recovery: stop prometheus, clear the data dir, extract the snapshot into
//                         it, start.
//   prometheus_etc        prometheus[0]: /etc/prometheus (alertmanager.yml included). Recovery: stop
//                         prometheus (and alertmanager), clear, extract, start.
//   alertmanager_silences alertmanager[0] (else prometheus[0]): GET /api/v2/silences, the active and
//                         pending ones. Recovery: POST each again (Alertmanager gives new ids);
//                         silences already there with the same matchers and end are not doubled.
//   grafana_data          grafana[0]: the data dir (grafana.db, dashboards, plugins). Recovery: stop
//                         grafana-server, clear, extract, start.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { httpJson, LifeboatError, readJsonFile, ssh, sshClear, sshFetch, sshPush, sshUsage, writeJsonFile, type InventoryHost } from "../../lib/mod.ts";
import { viaTunnel, type BackupPart, type Env, type RecoveryPart } from "../lambdastack.ts";

interface Silence { id?: string; matchers: unknown[]; startsAt: string; endsAt: string; createdBy: string; comment: string; status?: { state: string } }

function hostsOf(env: Env) {
  const prom = env.hosts("prometheus").slice(0, 1);
  const am = (env.hosts("alertmanager").length ? env.hosts("alertmanager") : prom).slice(0, 1);
  const grafana = env.hosts("grafana").slice(0, 1);
  return { prom, am, grafana };
}

export function backupParts(env: Env): BackupPart[] {
  const { prom, am, grafana } = hostsOf(env);
  const data = env.s["monitoring.data-directory"];
  const part = (prefix: string, host: InventoryHost) => ({ component: "monitoring" as const, prefix, host });
  return [
    ...prom.map((host): BackupPart => {
      const h = env.ssh(host);
      return {
        ...part("prometheus_snapshot", host),
        estimate: () => sshUsage(h, [data]),
        collect: async (stage) => {
          // The snapshot's name is noted in the state dir until it is removed from the host: a
          // backup killed while fetching one leaves it there (hard links that keep old blocks on
          // the disk), and the next backup removes it first.
          const noted = join(env.ctx.settings["state-dir"] as string, "lambdastack-backup", `prometheus-snapshots-${host.name.replace(/[^A-Za-z0-9._-]/g, "_")}`);
          const note = (dir: string | null) => {
            if (env.ctx.dryRun) return;
            if (!dir) return rmSync(noted, { force: true });
            mkdirSync(dirname(noted), { recursive: true, mode: 0o700 });
            writeFileSync(noted, `${dir}\n`, { mode: 0o600 });
          };
          const left = existsSync(noted) ? readFileSync(noted, "utf8").split("\n").filter((d) => d.startsWith(`${data}/snapshots/`) && !d.includes("/..")) : [];
          for (const d of left) {
            env.ctx.log.warn(`${host.name}: removing the Prometheus snapshot ${d}, left by a backup that was interrupted`);
            await ssh(h, ["rm", "-rf", "--", d]);
          }
          note(null);
          const snap = await viaTunnel(h, env.s["monitoring.prometheus-port"], (url) =>
            httpJson<{ data: { name: string } }>(`${url}/api/v1/admin/tsdb/snapshot`, { method: "POST", retries: 0, dryRunResult: { data: { name: "SNAPSHOT" } } }));
          // The name comes from an HTTP answer and goes into a remote rm -rf: Prometheus names
          // snapshots 20060102T150405Z-<hex>; anything else (a "../" above all) is refused.
          if (!/^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(snap.data?.name ?? "")) {
            throw new LifeboatError(`${host.name}: Prometheus answered the snapshot request with the name ${JSON.stringify(snap.data?.name)}, which is not a snapshot's name`, { hint: "is it Prometheus that listens on monitoring.prometheus-port?" });
          }
          const dir = `${data}/snapshots/${snap.data.name}`;
          note(dir);
          try {
            await sshFetch(h, dir, stage);
          } finally {
            await ssh(h, ["rm", "-rf", "--", dir]);
            note(null);
          }
          return { facts: { snapshot: snap.data.name } };
        },
      };
    }),
    ...prom.map((host): BackupPart => {
      const h = env.ssh(host);
      return { ...part("prometheus_etc", host), estimate: () => sshUsage(h, ["/etc/prometheus"]), collect: async (stage) => (await sshFetch(h, "/etc/prometheus", stage), {}) };
    }),
    ...am.map((host): BackupPart => {
      const h = env.ssh(host);
      return {
        ...part("alertmanager_silences", host),
        estimate: async () => 1 << 20,
        collect: async (stage) => {
          const all = await viaTunnel(h, env.s["monitoring.alertmanager-port"], (url) => httpJson<Silence[]>(`${url}/api/v2/silences`, { dryRunResult: [] }));
          const live = (all ?? []).filter((x) => x.status?.state !== "expired");
          await writeJsonFile(`${stage}/silences.json`, live); // a dry run prints it, writes nothing
          return { facts: { silences: live.length } };
        },
      };
    }),
    ...grafana.map((host): BackupPart => {
      const h = env.ssh(host);
      const dir = env.s["monitoring.grafana-data-dir"];
      return { ...part("grafana_data", host), estimate: () => sshUsage(h, [dir]), collect: async (stage) => (await sshFetch(h, dir, stage), {}) };
    }),
  ];
}

export function recoveryParts(env: Env): RecoveryPart[] {
  const { prom, am, grafana } = hostsOf(env);
  const data = env.s["monitoring.data-directory"];
  const amOnProm = am.length && prom.length && am[0].name === prom[0].name;
  const restart = async (h: ReturnType<Env["ssh"]>, units: string[], dirs: string[], files: string) => {
    await ssh(h, ["systemctl", "stop", ...units]);
    await sshClear(h, dirs);
    await sshPush(h, files, dirs[0]);
    await ssh(h, ["systemctl", "start", ...units]);
  };
  return [
    // etc first, as upstream: the snapshot is then served by the restored config
    ...prom.map((host): RecoveryPart => ({
      component: "monitoring", prefix: "prometheus_etc", host,
      restore: async (files) => (await restart(env.ssh(host), amOnProm ? ["prometheus", "prometheus-alertmanager"] : ["prometheus"], ["/etc/prometheus"], files), {}),
    })),
    ...prom.map((host): RecoveryPart => ({
      component: "monitoring", prefix: "prometheus_snapshot", host,
      restore: async (files) => (await restart(env.ssh(host), ["prometheus"], [data], files), {}),
    })),
    ...am.map((host): RecoveryPart => ({
      component: "monitoring", prefix: "alertmanager_silences", host,
      restore: async (files) => {
        const wanted = readJsonFile<Silence[]>(`${files}/silences.json`, { dryRunResult: [] });
        return viaTunnel(env.ssh(host), env.s["monitoring.alertmanager-port"], async (url) => {
          const have = (await httpJson<Silence[]>(`${url}/api/v2/silences`, { dryRunResult: [] })) ?? [];
          const same = (a: Silence, b: Silence) => JSON.stringify(a.matchers) === JSON.stringify(b.matchers) && a.endsAt === b.endsAt && b.status?.state !== "expired";
          let posted = 0;
          for (const x of wanted.filter((w) => new Date(w.endsAt) > new Date() && !have.some((h) => same(w, h)))) {
            await httpJson(`${url}/api/v2/silences`, { method: "POST", retries: 0, body: { matchers: x.matchers, startsAt: x.startsAt, endsAt: x.endsAt, createdBy: x.createdBy, comment: x.comment } });
            posted++;
          }
          return { posted };
        });
      },
    })),
    ...grafana.map((host): RecoveryPart => ({
      component: "monitoring", prefix: "grafana_data", host,
      restore: async (files) => (await restart(env.ssh(host), ["grafana-server"], [env.s["monitoring.grafana-data-dir"]], files), {}),
    })),
  ];
}

