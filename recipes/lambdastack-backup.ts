// lambdastack-backup: back up a LambdaStack cluster's components across the hosts of its Ansible
// inventory, as `lambdastack backup -b BUILD_DIR -t TARGET_PATH` (LambdaStack backup design,
// operational view; the Ansible `backup` role, upstream.md §2).
//
//   npx zx recipes/lambdastack-backup.ts -b BUILD_DIR [-t /lsbackup/mounted] [-c monitoring,postgresql] [-f backup.yml]
//
// Steps (runbook line → step):
//   lambdastack backup -b build_dir        → "read the inventory" (plan time: INI, YAML, or
//                                            ansible-inventory JSON) and the parts of each component
//   "consider a disclaimer … enough space" → "check free space on the target": du/pg sizes of every
//                                            part against df of TARGET_PATH; refused up front, with
//                                            the estimate (upstream never built it); a size that
//                                            cannot be read is counted 0 with a warning; the
//                                            PostgreSQL primary is asked here (read-only), so the
//                                            summary names postgresql@<primary>
//   backup role tasks, one file per        → "back up": ONE fan-out over every component × host (its
//   component (1. Elasticsearch & Kibana,    parts in order), `concurrency` at once; each part is collected over
//   2. Monitoring, 3. PostgreSQL,            ssh into a staging dir, packed as
//   4. RabbitMQ, 5. HAProxy)                 <prefix>_<YYYYMMDD-HHMMSS>.tar.gz with lifeboat's manifest
//                                            (meta.lambdastack) and a .sha1 in sha1sum format, and
//                                            copied to TARGET_PATH on the repository host. One
//                                            host's failure does not stop the others; the summary
//                                            names component@host; --resume redoes only the failed
//                                            ones (same snapshot name).
//                                            The component steps: recipes/lambdastack/<component>.ts
//   rsync to the repository host           → sshPut (atomic: partial name, then rename), no
//                                            throw-away key pair: the operator's ssh key reaches both;
//                                            a local target (repository.host=local): copied under
//                                            partial names and renamed when whole, .sha1 first
//
// Left to the operator, and why:
//   - mounting S3/Azure/NFS on TARGET_PATH (the runbook's Storage section): a site decision.
//     Or offsite.to (s3://…, ssh://…, a path): each archive is ALSO copied there by lib/offsite.ts
//     (with .sha256 and .info.json, verified at the destination; no .sha1 there); the
//     destination's retention is its own (the archive names are LambdaStack's, not lifeboat's).
//   - kubernetes: LambdaStack itself recovers it by hand; not offered.
//   - enabling Prometheus' admin API (--web.enable-admin-api): LambdaStack's defaults have it on.
//
// Settings: recipes/lambdastack.ts (one table for both recipes; the site file may be LambdaStack's
// configuration/backup document). Exit codes: 1 a part failed (the summary names host and
// component), 2 usage, 3 verification.
import { existsSync, readdirSync, rmSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import process from "node:process";
import { ageOptions, captureToFile, diskSpace, exec, fanOut, formatBytes, isOffsiteUrl, LifeboatError, mapLimit, offsiteCopy, offsiteOptions, packArchive, recipe, sshFreeSpace, sshPut, step, UsageError, verifyArchive, writeSha1File } from "../lib/mod.ts";
import * as ls from "./lambdastack.ts";
import * as load_balancer from "./lambdastack/load_balancer.ts";
import * as logging from "./lambdastack/logging.ts";
import * as monitoring from "./lambdastack/monitoring.ts";
import * as postgresql from "./lambdastack/postgresql.ts";
import * as rabbitmq from "./lambdastack/rabbitmq.ts";

const FILES = { load_balancer, logging, monitoring, postgresql, rabbitmq };

await recipe({
  name: "lambdastack-backup",
  description: "back up a LambdaStack cluster's components across its Ansible inventory's hosts, one archive per component part",
  usage: "npx zx recipes/lambdastack-backup.ts -b BUILD_DIR [-t TARGET_PATH] [-c COMPONENTS] [-f backup.yml] [--dry-run] [--resume]",
  settings: ls.settings,
  argv: ls.argvWithShortFlags(process.argv.slice(2)),
  target: (ctx) => `${ctx.settings["build-dir"]} → ${ctx.settings["target-path"]}`,
  plan: (ctx) => {
    const s = ctx.settings;
    const env = ls.environment(ctx, s);
    const components = ls.chosenComponents(ctx);
    const parts = components.flatMap((c) => FILES[c].backupParts(env));
    const repo = ls.repositoryHost(env);
    const staging = `${s["staging-dir"]}/backup`;
    if (isOffsiteUrl(s["target-path"])) throw new UsageError(`-t ${s["target-path"]}: target-path is a directory on the repository host (or here)`, `to copy the archives off-site too, give --offsite.to ${s["target-path"]}`);

    const space = step("space", `check free space on ${repo ? `${repo.name}:` : ""}${s["target-path"]}`, async () => {
      const sizes = await mapLimit(parts, s.concurrency, (p) => p.estimate());
      const needed = sizes.reduce((n, r) => n + (r.ok ? r.value : 0), 0);
      // a part whose size cannot be read (its host is down …) is counted as 0, and said so: its own step fails later
      sizes.forEach((r, i) => r.ok || ctx.log.warn(`estimate: ${parts[i].prefix} on ${parts[i].host.name}: ${((r as { error: unknown }).error as Error)?.message?.split("\n")[0]}; counted as 0 bytes`));
      const free = repo ? await sshFreeSpace(env.ssh(repo), s["target-path"]) : diskSpace(s["target-path"]).free;
      const want = Math.ceil(needed * 1.1);
      ctx.log.info(`estimate: ${formatBytes(needed)} of data in ${parts.length} parts (+10%)${sizes.some((r) => !r.ok) ? `, ${sizes.filter((r) => !r.ok).length} of them unknown` : ""}; free: ${formatBytes(free)}`);
      if (free < want) throw new LifeboatError(`not enough space on ${repo?.name ?? "this machine"}:${s["target-path"]}: ${formatBytes(free)} free, the backup needs about ${formatBytes(want)} (estimated from the sources, before compression)`, { hint: "free space or mount a bigger volume on the target path; nothing was copied" });
      if (diskSpace(s["staging-dir"]).free < want) throw new LifeboatError(`not enough space in the staging dir ${s["staging-dir"]}: ${formatBytes(diskSpace(s["staging-dir"]).free)} free, about ${formatBytes(want)} needed`);
      // where the parts that ask (the PostgreSQL primary) will be taken from, for the summary's keys
      const located: Record<string, string> = {};
      for (const p of parts) {
        if (p.locate) located[p.prefix] = await p.locate().catch((e) => (ctx.log.warn(`${p.prefix}: ${(e as Error).message.split("\n")[0]}`), p.host.name));
      }
      return { snapshot: ls.snapshotStamp(new Date()), needed, free, located };
    });

    // one fan-out item per component and host: its parts run in order (rabbitmq's definitions are
    // read before its node is stopped for the mnesia copy); independent items run in parallel
    // (keyed by the host found by asking, e.g. postgresql@<the primary>, once the space step has asked)
    const hostOf = (p: ls.BackupPart) => (space.hasOutput && space.output.located?.[p.prefix]) || p.host.name;
    const groups = () => ls.componentHosts(parts, hostOf);
    const backup = fanOut("backup", `back up ${components.join(", ")} (${parts.length} parts on ${groups().length} component hosts, ${s.concurrency} at once)`, groups, {
      key: (g) => g.key,
      concurrency: s.concurrency,
      // e.g. rabbitmq: a node stopped for the mnesia copy is started again, whatever happened; every
      // component's cleanups, not only this run's -c: a killed run's cleanup is owed to the next run
      cleanup: async () => {
        for (const p of ls.COMPONENTS.flatMap((c) => (components.includes(c) ? parts.filter((x) => x.component === c) : FILES[c].backupParts(env)))) await p.cleanup?.();
      },
    }, async (g) => {
      const done: { prefix: string; archive: string; host: string; offsite: string[] }[] = [];
      for (const p of g.parts) done.push({ prefix: p.prefix, ...(await backupPart(p)) });
      return done;
    });

    async function backupPart(p: ls.BackupPart): Promise<{ archive: string; host: string; offsite: string[] }> {
      const snapshot = space.output.snapshot;
      const name = ls.archiveName(p.prefix, snapshot, !!(ageOptions(s).passphrase || ageOptions(s).recipients?.length));
      const stage = `${staging}/${snapshot}/${p.prefix}`;
      const archive = `${staging}/${snapshot}/out/${p.prefix}/${name}`; // one folder each: packArchive tidies its folder
      await exec(["rm", "-rf", "--", stage]);
      try {
        const got = await p.collect(stage, snapshot);
        const host = got.host ?? p.host;
        const meta: ls.Meta = { component: p.component, prefix: p.prefix, snapshot, host: host.name, address: `${host.ssh.host}:${host.ssh.port ?? 22}`, facts: got.facts ?? {} };
        await packArchive<ls.ArchiveMeta>(stage, archive, { meta: { lambdastack: meta }, encrypt: ageOptions(s), progress: false });
        await verifyArchive(archive, { decrypt: ageOptions(s), progress: false, record: true });
        await writeSha1File(archive);
        if (repo) {
          await sshPut(env.ssh(repo), archive, `${s["target-path"]}/${name}`);
          await sshPut(env.ssh(repo), `${archive}.sha1`, `${s["target-path"]}/${name}.sha1`);
        } else {
          await installLocal(archive, `${s["target-path"]}/${name}`);
        }
        // off-site too (offsite.to): the archive with its .sha256 and .info.json, each copy verified there
        const offsite: string[] = [];
        for (const dest of s["offsite.to"]) offsite.push((await offsiteCopy(archive, dest, { ...offsiteOptions(s), progress: false })).url);
        return { archive: name, host: host.name, offsite };
      } finally {
        await exec(["rm", "-rf", "--", stage, dirname(archive)]);
      }
    }

    /**
     * A local target path: the archive and its .sha1 are copied under hidden partial names in the
     * target folder (captureToFile) and renamed into place only when whole, the .sha1 first, so an
     * archive under its final name is complete and has its .sha1; a failure removes the partials
     * (a full disk says "no space left on FOLDER"), and a killed run's partials of this archive go
     * when it is done again.
     */
    async function installLocal(archive: string, dest: string): Promise<void> {
      if (ctx.dryRun) {
        await exec(["install", "-D", "-m", "600", "--", archive, dest]); // printed, not run
        return;
      }
      const dir = dirname(dest);
      if (existsSync(dir)) {
        for (const n of readdirSync(dir)) if (n.startsWith(`.partial-${basename(dest)}.`)) rmSync(join(dir, n), { force: true });
      }
      await captureToFile(dest, async (tmp) => {
        await exec(["cp", "--", archive, tmp]);
        await captureToFile(`${dest}.sha1`, (tmpSha1) => exec(["cp", "--", `${archive}.sha1`, tmpSha1]), { label: `copy ${basename(dest)}.sha1 to ${dir}` });
      }, { label: `copy ${basename(dest)} to ${dir}` });
    }

    return {
      steps: [space, backup],
      cleanup: async () => {
        if (backup.hasOutput) await exec(["rm", "-rf", "--", `${staging}`]);
      },
      report: () => [
        `snapshot  ${space.output.snapshot} → ${repo ? `${repo.name}:` : ""}${s["target-path"]}`,
        ...Object.values(backup.output).flat().map((v) => `${v.host.padEnd(10)} ${v.prefix.padEnd(24)} ${v.archive} (+ .sha1)${v.offsite.length ? `; off-site ${v.offsite.join(", ")}` : ""}`),
      ],
    };
  },
});
