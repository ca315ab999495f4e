// postgresql: pg_dumpall on the primary, plus the configs (LambdaStack roles/{backup,recovery}/tasks/postgresql.yml).
//   backup    every postgresql host is asked `SELECT pg_is_in_recovery()`; the one answering f is
//             the primary (never assumed to be the first, Epiphany #2565): pg_dumpall into
//             data/database_dump.sql, and its config dir's *.conf into configs/ → postgresql_<ts>.
//             The free-space step asks first (locate), so the summary says postgresql@<primary>.
//   recovery  on the primary of the CURRENT inventory (asked again, once, before any host is
//             touched, and journaled so --resume after the stop goes on there; when no server
//             answers at all, the group's first host): stop; delete the data dir; initdb; start;
//             psql -f the dump.
//             The confirmation and the summary name that host. The backed-up configs go back only
//             with postgresql.restore-configs (upstream never restores them; users asked, Epiphany
//             #2565). Standbys: nothing runs on them; the operator re-clones them (upstream does
//             with repmgr; see docs/lambdastack.md). Drilled with a streaming standby listed first.
import { LifeboatError, pgDumpAll, psqlFile, psqlQuery, ssh, sshFetch, sshList, sshPush, type InventoryHost, type PgSsh } from "../../lib/mod.ts";
import type { BackupPart, Env, RecoveryPart } from "../lambdastack.ts";

function paths(env: Env) {
  const v = env.s["postgresql.version"];
  return {
    config: env.s["postgresql.config-dir"] || `/etc/postgresql/${v}/main`,
    data: env.s["postgresql.data-dir"] || `/var/lib/postgresql/${v}/main`,
    bin: `/usr/lib/postgresql/${v}/bin`,
  };
}

/** The server on a host, reached as the postgres OS user over ssh (peer auth on the local socket). */
function pgOn(env: Env, host: InventoryHost): PgSsh {
  return { ssh: { ...env.ssh(host), user: env.s["postgresql.os-user"] } };
}

/** What the postgresql hosts say: the primary (the one not in recovery), and how many answered as standbys. */
async function askPrimary(env: Env): Promise<{ host?: InventoryHost; standbys: number; answers: string[] }> {
  const answers: string[] = [];
  let standbys = 0;
  for (const host of env.hosts("postgresql")) {
    try {
      const [[inRecovery]] = await psqlQuery(pgOn(env, host), "SELECT pg_is_in_recovery()");
      if (inRecovery === "f") return { host, standbys, answers };
      standbys++;
      answers.push(`${host.name}: standby`);
    } catch (e) {
      answers.push(`${host.name}: ${(e as Error).message.split("\n")[0]}`);
    }
  }
  return { standbys, answers };
}

/** The primary: the host whose server says it is not in recovery. */
async function primary(env: Env): Promise<InventoryHost> {
  const a = await askPrimary(env);
  if (a.host) return a.host;
  throw new LifeboatError(`no PostgreSQL primary among the postgresql hosts (${a.answers.join("; ") || "the group is empty"})`, { hint: "start the primary, or fix the inventory's postgresql group" });
}

/**
 * Where the recovery puts the database: the primary; when no server answers at all (none
 * running yet, or stopped), the recovery's own target, the postgresql group's first host. A
 * standby answering without a primary is refused (which host to recover onto is not clear).
 */
async function recoveryHost(env: Env, target: InventoryHost): Promise<InventoryHost> {
  const a = await askPrimary(env);
  if (a.host) return a.host;
  if (a.standbys) throw new LifeboatError(`no PostgreSQL primary among the postgresql hosts (${a.answers.join("; ")})`, { hint: "promote or start the primary, or fix the inventory's postgresql group" });
  env.ctx.log.warn(`postgresql: no server answers (${a.answers.join("; ")}); recovering onto the group's first host, ${target.name}`);
  return target;
}

export function backupParts(env: Env): BackupPart[] {
  const hosts = env.hosts("postgresql");
  if (!hosts.length) return [];
  const p = paths(env);
  // the free-space step's estimate and locate ask once between them; collect asks again, when it runs
  let asked: Promise<InventoryHost> | undefined;
  const primaryOnce = () => (asked ??= primary(env));
  return [{
    component: "postgresql", prefix: "postgresql", host: hosts[0],
    locate: async () => (await primaryOnce()).name,
    estimate: async () => Number((await psqlQuery(pgOn(env, await primaryOnce()), "SELECT sum(pg_database_size(oid)) FROM pg_database"))[0][0]),
    collect: async (stage) => {
      const host = await primary(env);
      const dump = await pgDumpAll(pgOn(env, host), `${stage}/data/database_dump.sql`);
      const confs = (await sshList(env.ssh(host), p.config)).filter((n) => n.endsWith(".conf"));
      await sshFetch(env.ssh(host), p.config, `${stage}/configs`, { members: confs });
      return { host, facts: { primary: host.name, dumpBytes: dump.bytes, configs: confs } };
    },
  }];
}

export function recoveryParts(env: Env): RecoveryPart[] {
  const hosts = env.hosts("postgresql");
  if (!hosts.length) return [];
  const p = paths(env);
  return [{
    component: "postgresql", prefix: "postgresql", host: hosts[0],
    locate: async () => ({ primary: (await recoveryHost(env, hosts[0])).name }),
    restore: async (files, meta, located) => {
      // the host found before any was touched (journaled: a resumed run gets it even with the server stopped)
      const host = located?.primary ? hosts.find((h) => h.name === located.primary) : await recoveryHost(env, hosts[0]);
      if (!host) throw new LifeboatError(`postgresql: ${located?.primary}, found as the primary, is no longer in the inventory's postgresql group`, { hint: "run the recovery again without --resume" });
      const h = env.ssh(host);
      const asPostgres = (argv: string[]) => ["runuser", "-u", "postgres", "--", ...argv];
      await ssh(h, ["systemctl", "stop", "postgresql"]);
      await ssh(h, ["rm", "-rf", "--", p.data]);
      await ssh(h, asPostgres([`${p.bin}/initdb`, "-D", p.data, "--auth-local=peer", "--auth-host=scram-sha-256"]));
      if (env.s["postgresql.restore-configs"]) await sshPush(h, `${files}/configs`, p.config);
      await ssh(h, ["systemctl", "start", "postgresql"]);
      const load = await psqlFile(pgOn(env, host), `${files}/data/database_dump.sql`);
      return { primary: host.name, from: meta.facts.primary, loadedBytes: load.bytes, configsRestored: env.s["postgresql.restore-configs"] };
    },
  }];
}
