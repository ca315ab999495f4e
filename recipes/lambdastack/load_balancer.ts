// load_balancer: HAProxy's config and certificates, on haproxy[0]
// (LambdaStack roles/{backup,recovery}/tasks/load_balancer_haproxy_etc.yml).
//   backup    /etc/haproxy and /etc/ssl/haproxy, relative to /etc  → haproxy_etc_<ts>.tar.gz
//   recovery  stop haproxy; clear both dirs; extract into /etc; `haproxy -c` on the restored
//             config (new: upstream starts whatever it extracted); start
import { ssh, sshClear, sshFetch, sshPush, sshUsage } from "../../lib/mod.ts";
import type { BackupPart, Env, RecoveryPart } from "../lambdastack.ts";

const DIRS = ["haproxy", "ssl/haproxy"]; // under /etc

export function backupParts(env: Env): BackupPart[] {
  return env.hosts("haproxy").slice(0, 1).map((host) => {
    const h = env.ssh(host);
    return {
      component: "load_balancer", prefix: "haproxy_etc", host,
      estimate: () => sshUsage(h, DIRS.map((d) => `/etc/${d}`)),
      collect: async (stage) => ({ facts: await sshFetch(h, "/etc", stage, { members: DIRS, optional: true }) }),
    };
  });
}

export function recoveryParts(env: Env): RecoveryPart[] {
  return env.hosts("haproxy").slice(0, 1).map((host) => {
    const h = env.ssh(host);
    return {
      component: "load_balancer", prefix: "haproxy_etc", host,
      restore: async (files) => {
        await ssh(h, ["systemctl", "stop", "haproxy"]);
        await sshClear(h, DIRS.map((d) => `/etc/${d}`));
        await sshPush(h, files, "/etc");
        await ssh(h, ["haproxy", "-c", "-q", "-f", "/etc/haproxy/haproxy.cfg"]); // a bad config stops here, haproxy still down
        await ssh(h, ["systemctl", "start", "haproxy"]);
        return { validated: true };
      },
    };
  });
}
