// rabbitmq: definitions, config and (optionally) messages, on rabbitmq[0]
// (LambdaStack roles/{backup,recovery}/tasks/rabbitmq_*.yml; messages from the runbook's §4.2).
//   rabbitmq_etc          /etc/rabbitmq. Recovery: stop, clear, extract, start.
//   rabbitmq_mnesia       only with rabbitmq.messages: the node is stopped, RABBITMQ_MNESIA_BASE is
//                         copied, and the node is started again in the step's cleanup even when the
//                         copy fails. Recovery: stop, clear, extract, start (before the definitions).
//   rabbitmq_definitions  GET /api/definitions through the management API (ssh tunnel: it listens
//                         on the host only) → definitions.json. Recovery: POST it back.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { httpJson, ssh, sshClear, sshFetch, sshPush, sshUsage, type InventoryHost } from "../../lib/mod.ts";
import { viaTunnel, type BackupPart, type Env, type RecoveryPart } from "../lambdastack.ts";

export function backupParts(env: Env): BackupPart[] {
  const auth = { username: env.s["rabbitmq.user"], password: env.s["rabbitmq.password"] };
  const mnesia = env.s["rabbitmq.mnesia-dir"];
  return env.hosts("rabbitmq").slice(0, 1).flatMap((host: InventoryHost): BackupPart[] => {
    const h = env.ssh(host);
    const parts: BackupPart[] = [
      { component: "rabbitmq", prefix: "rabbitmq_etc", host, estimate: () => sshUsage(h, ["/etc/rabbitmq"]), collect: async (stage) => (await sshFetch(h, "/etc/rabbitmq", stage), {}) },
      {
        component: "rabbitmq", prefix: "rabbitmq_definitions", host,
        estimate: async () => 1 << 20,
        collect: async (stage) => {
          const defs = await viaTunnel(h, env.s["rabbitmq.port"], (url) => httpJson<Record<string, unknown[]>>(`${url}/api/definitions`, { auth, dryRunResult: {} }));
          mkdirSync(stage, { recursive: true, mode: 0o700 });
          writeFileSync(`${stage}/definitions.json`, JSON.stringify(defs), { mode: 0o600 });
          return { facts: { vhosts: defs?.vhosts?.length ?? 0, queues: defs?.queues?.length ?? 0, users: defs?.users?.length ?? 0 } };
        },
      },
    ];
    if (env.s["rabbitmq.messages"]) {
      parts.push({
        component: "rabbitmq", prefix: "rabbitmq_mnesia", host,
        estimate: () => sshUsage(h, [mnesia]),
        collect: async (stage) => {
          await ssh(h, ["systemctl", "stop", "rabbitmq-server"]);
          try {
            await sshFetch(h, mnesia, stage);
          } finally {
            await ssh(h, ["systemctl", "start", "rabbitmq-server"]);
          }
          return {};
        },
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
    const replace = async (dir: string, files: string) => {
      await ssh(h, ["systemctl", "stop", "rabbitmq-server"]);
      try {
        await sshClear(h, [dir]);
        await sshPush(h, files, dir);
      } finally {
        await ssh(h, ["systemctl", "start", "rabbitmq-server"]);
      }
      return {};
    };
    const parts: RecoveryPart[] = [{ component: "rabbitmq", prefix: "rabbitmq_etc", host, restore: (files) => replace("/etc/rabbitmq", files) }];
    if (env.s["rabbitmq.messages"]) parts.push({ component: "rabbitmq", prefix: "rabbitmq_mnesia", host, restore: (files) => replace(mnesia, files) });
    parts.push({
      component: "rabbitmq", prefix: "rabbitmq_definitions", host,
      restore: async (files) => {
        const defs = JSON.parse(readFileSync(`${files}/definitions.json`, "utf8"));
        await viaTunnel(h, env.s["rabbitmq.port"], (url) => httpJson(`${url}/api/definitions`, { method: "POST", auth, body: defs, retries: 0 }));
        return { vhosts: defs.vhosts?.length ?? 0 };
      },
    });
    return parts;
  });
}
