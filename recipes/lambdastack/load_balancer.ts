// load_balancer: HAProxy's config and certificates, on haproxy[0]
// (LambdaStack roles/{backup,recovery}/tasks/load_balancer_haproxy_etc.yml).
//   backup    /etc/haproxy and /etc/ssl/haproxy, relative to /etc  → haproxy_etc_<ts>.tar.gz
//   recovery  the archive's config is checked with `haproxy -c` BEFORE haproxy is stopped (new:
//             upstream stops, clears, extracts and starts whatever it extracted): both dirs are
//             set aside (<dir>.lifeboat-before-recovery), the archive is extracted into /etc, and
//             `haproxy -c` runs on it while haproxy runs on with the config it read at start.
//             Refused: the archive's files are removed, the set-aside dirs put back, haproxy is
//             neither stopped nor restarted, and the step fails naming haproxy's complaint.
//             Accepted: the set-aside dirs are removed and haproxy restarted (started when it
//             was not running, e.g. on a new host).
//             A run killed in between leaves the set-aside dirs; the next run keeps them (they
//             hold the host's own config) and removes them only when it succeeds.
import { LifeboatError, ssh, sshClear, sshFetch, sshPush, sshUsage, type SshTarget } from "../../lib/mod.ts";
import type { BackupPart, Env, RecoveryPart } from "../lambdastack.ts";

const DIRS = ["haproxy", "ssl/haproxy"]; // under /etc
const ASIDE = ".lifeboat-before-recovery";
const CONFIG = "/etc/haproxy/haproxy.cfg";

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

/** Moves each dir to dir + ASIDE (kept when a killed run already set one aside; then the dir goes). */
const setAside = (h: SshTarget, dirs: string[]) =>
  ssh(h, ["sh", "-c", `for d in "$@"; do if [ -e "$d${ASIDE}" ]; then rm -rf -- "$d"; elif [ -e "$d" ]; then mv -- "$d" "$d${ASIDE}"; fi || exit 1; done`, "sh", ...dirs]);
/** Puts the set-aside dirs back in place of what is there now. */
const putBack = (h: SshTarget, dirs: string[]) =>
  ssh(h, ["sh", "-c", `for d in "$@"; do rm -rf -- "$d" && if [ -e "$d${ASIDE}" ]; then mv -- "$d${ASIDE}" "$d"; fi || exit 1; done`, "sh", ...dirs]);
/** Removes the set-aside dirs. */
const dropAside = (h: SshTarget, dirs: string[]) => ssh(h, ["rm", "-rf", "--", ...dirs.map((d) => `${d}${ASIDE}`)]);

export function recoveryParts(env: Env): RecoveryPart[] {
  return env.hosts("haproxy").slice(0, 1).map((host) => {
    const h = env.ssh(host);
    const dirs = DIRS.map((d) => `/etc/${d}`);
    return {
      component: "load_balancer", prefix: "haproxy_etc", host,
      restore: async (files) => {
        await setAside(h, dirs);
        await sshClear(h, dirs); // both dirs exist, empty, as upstream's clear leaves them
        await sshPush(h, files, "/etc");
        const check = await ssh(h, ["haproxy", "-c", "-f", CONFIG], { okCodes: [0, 1, 2] }); // 1: refused
        if (check.code !== 0) {
          await putBack(h, dirs);
          const why = `${check.stderr}\n${check.stdout}`.split("\n").filter((l) => /ALERT|error|fatal/i.test(l)).slice(0, 2).join("; ") || `exit ${check.code}`;
          throw new LifeboatError(`haproxy -c on ${host.name} refuses the archive's ${CONFIG} (${why.trim()}); the host's own /etc/haproxy and /etc/ssl/haproxy were put back and haproxy was neither stopped nor restarted`, { hint: "recover an earlier snapshot (--snapshot YYYYMMDD-HHMMSS), or fix the config by hand" });
        }
        await dropAside(h, dirs);
        await ssh(h, ["systemctl", "restart", "haproxy"]);
        return { validated: true };
      },
    };
  });
}
