// rabbitmq: definitions, config and (optionally) messages, on rabbitmq[0]
// (LambdaStack roles/{backup,recovery}/tasks/rabbitmq_*.yml; messages from the runbook's §4.2).
//   rabbitmq_etc          /etc/rabbitmq. Recovery: stop, clear, extract, start.
//   rabbitmq_mnesia       only with rabbitmq.messages: a marker is left on the host
//                         (/run/lifeboat-rabbitmq-stopped-for-backup), the node is stopped,
//                         RABBITMQ_MNESIA_BASE is copied, and the node is started again at once
//                         even when the copy fails; and in the backup step's cleanup, which also
//                         runs after an interrupt and is owed by a killed run (whatever -c and
//                         rabbitmq.messages the next run has), when the marker is still there. The
//                         marker keeps the cleanup from starting a node an operator stopped.
//                         Recovery: after etc, with the node still stopped: clear, extract, start
//                         (also when the copy fails), then the definitions.
//   rabbitmq_definitions  GET /api/definitions through the management API (ssh tunnel: it listens
//                         on the host only) → definitions.json. Recovery: POST it back.
import { httpJson, readJsonFile, ssh, sshClear, sshFetch, sshPush, sshUsage, writeJsonFile, type InventoryHost, type SshTarget } from "../../lib/mod.ts";
import { viaTunnel, type BackupPart, type Env, type RecoveryPart } from "../lambdastack.ts";

/** Left on the host while the backup has the node stopped for the mnesia copy. */
const STOPPED = "/run/lifeboat-rabbitmq-stopped-for-backup";

/** Starts the node when a backup stopped it (the marker is there), then removes the marker. */
const startIfStoppedByBackup = (h: SshTarget) =>
  ssh(h, ["sh", "-c", '[ ! -e "$1" ] || { systemctl start rabbitmq-server && rm -f -- "$1"; }', "sh", STOPPED]);

export function backupParts(env: Env): BackupPart[] {
  const auth = { username: env.s["rabbitmq.user"], password: env.s["rabbitmq.password"] };
  const mnesia = env.s["rabbitmq.mnesia-dir"];
  return env.hosts("rabbitmq").slice(0, 1).flatMap((host: InventoryHost): BackupPart[] => {
    const h = env.ssh(host);
    const parts: BackupPart[] = [
      {
        component: "rabbitmq", prefix: "rabbitmq_etc", host, estimate: () => sshUsage(h, ["/etc/rabbitmq"]), collect: async (stage) => (await sshFetch(h, "/etc/rabbitmq", stage), {}),
        // a node an earlier, killed run stopped for its mnesia copy is started, also by a run without rabbitmq.messages
        cleanup: async () => void (await startIfStoppedByBackup(h)),
      },
      {
        component: "rabbitmq", prefix: "rabbitmq_definitions", host,
        estimate: async () => 1 << 20,
        collect: async (stage) => {
          const defs = await viaTunnel(h, env.s["rabbitmq.port"], (url) => httpJson<Record<string, unknown[]>>(`${url}/api/definitions`, { auth, dryRunResult: {} }));
          await writeJsonFile(`${stage}/definitions.json`, defs); // a dry run prints it, writes nothing
          return { facts: { vhosts: defs?.vhosts?.length ?? 0, queues: defs?.queues?.length ?? 0, users: defs?.users?.length ?? 0 } };
        },
      },
    ];
    if (env.s["rabbitmq.messages"]) {
      parts.push({
        component: "rabbitmq", prefix: "rabbitmq_mnesia", host,
        estimate: () => sshUsage(h, [mnesia]),
        collect: async (stage) => {
          await ssh(h, ["touch", STOPPED]);
          try {
            await ssh(h, ["systemctl", "stop", "rabbitmq-server"]);
            await sshFetch(h, mnesia, stage);
          } finally {
            await startIfStoppedByBackup(h); // at once, not only when the whole step ends
          }
          return {};
        },
        // and in the backup step's cleanup (rabbitmq_etc's): also after an interrupt, or owed by a killed run
      });
    }
    return parts;
  });
}

export function recoveryParts(env: Env): RecoveryPart[] {
  const auth = { username: env.s["rabbitmq.user"], password: env.s["rabbitmq.password"] };
  const mnesia = env.s["rabbitmq.mnesia-dir"];
  return env.hosts("rabbitmq").slice(0, 1).flatMap((host): RecoveryPart[] => {
    const h = env.ssh(host);
    // stop; clear; extract; start (in finally: also when the copy fails). With messages, the node
    // stays stopped between the etc and the mnesia part (one restart, not two); the mnesia part
    // starts it, also when its own copy fails.
    const replace = async (dir: string, files: string, keepStopped: boolean) => {
      let ok = false;
      await ssh(h, ["systemctl", "stop", "rabbitmq-server"]);
      try {
        await sshClear(h, [dir]);
        await sshPush(h, files, dir);
        ok = true;
      } finally {
        if (!(ok && keepStopped)) await ssh(h, ["systemctl", "start", "rabbitmq-server"]);
      }
      return {};
    };
    const messages = env.s["rabbitmq.messages"];
    const parts: RecoveryPart[] = [{ component: "rabbitmq", prefix: "rabbitmq_etc", host, restore: (files) => replace("/etc/rabbitmq", files, messages) }];
    if (messages) parts.push({ component: "rabbitmq", prefix: "rabbitmq_mnesia", host, restore: (files) => replace(mnesia, files, false) });
    parts.push({
      component: "rabbitmq", prefix: "rabbitmq_definitions", host,
      restore: async (files) => {
        const defs = readJsonFile<{ vhosts?: unknown[] }>(`${files}/definitions.json`, { dryRunResult: {} });
        await viaTunnel(h, env.s["rabbitmq.port"], (url) => httpJson(`${url}/api/definitions`, { method: "POST", auth, body: defs, retries: 0 }));
        return { vhosts: defs.vhosts?.length ?? 0 };
      },
    });
    return parts;
  });
}
