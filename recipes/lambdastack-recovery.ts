// lambdastack-recovery: recover a LambdaStack cluster's components from the archives
// lambdastack-backup left on the repository host (or copied off-site), as `lambdastack recovery
// -b BUILD_DIR` (the Ansible `recovery` role, upstream.md §2), onto the hosts of the inventory AS
// IT IS NOW: the same hosts, or new ones (Epiphany #2431).
//
//   npx zx recipes/lambdastack-recovery.ts -b BUILD_DIR [-t /lsbackup/mounted] [-c …] [-f recovery.yml] [--snapshot latest|YYYYMMDD-HHMMSS] [--yes]
//   npx zx recipes/lambdastack-recovery.ts -b BUILD_DIR --from s3://offsite/lambdastack …   (or ssh://…, or a path)
//
// Steps (upstream task → step):
//   find_snapshot_archive.yml              → "find the archives": per part, <prefix>_<snapshot_name>
//                                            or, for latest, the newest <prefix>_*-*.tar.gz on the
//                                            repository host, or with --from (the backup's
//                                            offsite.to) at that destination (lib/offsite.ts)
//   upload_via_rsync + verify_snapshot_    → "fetch and verify": every archive is copied here and
//   checksum.yml                             checked against its .sha1 (off-site: the copy's .sha256,
//                                            which offsiteCopy sent; there is no .sha1 there) AND its
//                                            manifest, and unpacked, BEFORE anything on any host is
//                                            cleared (upstream checks each just before clearing its
//                                            own dirs)
//   "Do you really want to perform         → one confirmation step per component ("confirm: recover
//   recovery?"                               monitoring on ls-1", naming the snapshot; postgresql: the
//                                            primary the "locate" step found, and the standbys left
//                                            alone), all before any host is touched (--yes without a
//                                            terminal)
//   per-component tasks                    → "recover": ONE fan-out, an item per component and host,
//                                            `concurrency` at once across components; each item stops,
//                                            clears, extracts, starts, as its component file says
//                                            (recipes/lambdastack/<component>.ts), its parts in order.
//                                            One item's failure does not stop the others; the summary
//                                            names component@host (postgresql@<the primary>); --resume
//                                            redoes only the failed ones from the kept, verified archives
//   recovery.yml, --snapshot                 → snapshot per component: --snapshot (flag or env) wins,
//                                            then snapshot_name, then latest; a document enabling no
//                                            component is refused (exit 2)
//
// Left to the operator, and why:
//   - PostgreSQL standbys (upstream: repmgr standby clone): re-clone them after the primary is back.
//   - kubernetes: LambdaStack recovers it by hand.
//
// Settings: recipes/lambdastack.ts (from, and offsite.s3.* / offsite.ssh.* to reach it). Exit codes: 3 an archive or checksum is damaged (nothing was
// cleared), 5 a component was not confirmed (nothing recovered), 1 a component failed (the summary
// names component@host).
import { existsSync, readdirSync } from "node:fs";
import { dirname } from "node:path";
import process from "node:process";
import { ageOptions, checkSha1File, exec, fanOut, isOffsiteUrl, LifeboatError, offsiteFetch, offsiteList, offsiteOptions, parseOffsite, recipe, sshGet, sshList, step, unpackArchive, UsageError, VerifyError, type Manifest } from "../lib/mod.ts";
import * as ls from "./lambdastack.ts";
import * as load_balancer from "./lambdastack/load_balancer.ts";
import * as logging from "./lambdastack/logging.ts";
import * as monitoring from "./lambdastack/monitoring.ts";
import * as postgresql from "./lambdastack/postgresql.ts";
import * as rabbitmq from "./lambdastack/rabbitmq.ts";

const FILES = { load_balancer, logging, monitoring, postgresql, rabbitmq };

await recipe({
  name: "lambdastack-recovery",
  description: "recover a LambdaStack cluster's components onto the inventory's hosts (the same or new ones), each archive verified first",
  usage: "npx zx recipes/lambdastack-recovery.ts -b BUILD_DIR [-t TARGET_PATH] [-c COMPONENTS] [-f recovery.yml] [--from s3://…|ssh://…|DIR] [--snapshot latest|YYYYMMDD-HHMMSS] [--yes]",
  settings: ls.settings,
  argv: ls.argvWithShortFlags(process.argv.slice(2)),
  target: (ctx) => `${ctx.settings["build-dir"]} ← ${ctx.settings.from || ctx.settings["target-path"]}`,
  plan: (ctx) => {
    const s = ctx.settings;
    const env = ls.environment(ctx, s);
    const components = ls.chosenComponents(ctx);
    const parts = components.flatMap((c) => FILES[c].recoveryParts(env));
    const repo = ls.repositoryHost(env);
    const staging = `${s["staging-dir"]}/recovery`;
    const run = ls.snapshotStamp(new Date()); // each run unpacks into its own dir (a dry run leaves an earlier run's alone)
    const from = s.from;
    if (isOffsiteUrl(s["target-path"])) throw new UsageError(`-t ${s["target-path"]}: target-path is a directory on the repository host`, `to recover from an off-site copy, give --from ${s["target-path"]}`);
    const where = from ? parseOffsite(from).url : `${repo ? `${repo.name}:` : ""}${s["target-path"]}`;
    const offsite = { ...offsiteOptions(s), progress: false };

    const find = step("find", `find the archives in ${where}`, async () => {
      // off-site (--from): the listing's path is the copy's URL; on the repository host: target-path/NAME
      const listed = from
        ? (await offsiteList(from, offsite)).map((e) => ({ name: e.name, source: e.path }))
        : (repo ? await sshList(env.ssh(repo), s["target-path"]) : localNames(s["target-path"])).map((name) => ({ name, source: `${s["target-path"]}/${name}` }));
      const names = listed.map((e) => e.name);
      const picked: Record<string, { name: string; source: string }> = {};
      const missing: string[] = [];
      for (const p of parts) {
        const snap = ls.snapshotName(ctx, p.component);
        const name = ls.pickArchive(names, p.prefix, snap);
        if (name) picked[p.prefix] = listed.find((e) => e.name === name)!;
        else missing.push(`${p.prefix}_${snap === "latest" ? "*" : snap}`);
      }
      if (missing.length) throw new LifeboatError(`no archive for ${missing.join(", ")} in ${where}`, { hint: `check ${from ? "--from" : "-t"}, --snapshot / snapshot_name, or leave the component out with -c` });
      return picked;
    });

    let verifiedHere = 0; // items this process verified into staging/run (a failed fan-out keeps them for --resume)
    const verify = fanOut("verify", `fetch and verify every archive (${from ? "off-site .sha256" : ".sha1"} and manifest) before touching any host`, parts, { key: (p) => p.prefix, concurrency: s.concurrency }, async (p) => {
      const { name, source } = find.output[p.prefix];
      let local = `${staging}/${run}/${name}`;
      // fetched to be verified: a local copy changes nothing on any host, so a dry run verifies too
      if (from) {
        local = await offsiteFetch(source, `${staging}/${run}`, offsite); // checked against the copy's .sha256 (off-site copies carry no .sha1)
      } else {
        if (repo) {
          await sshGet(env.ssh(repo), source, local, { readOnly: true });
          await sshGet(env.ssh(repo), `${source}.sha1`, `${local}.sha1`, { readOnly: true });
        } else {
          await exec(["install", "-D", "-m", "600", "--", source, local], { readOnly: true });
          await exec(["install", "-D", "-m", "600", "--", `${source}.sha1`, `${local}.sha1`], { readOnly: true });
        }
        await checkSha1File(local);
      }
      const dir = `${staging}/${run}/${p.prefix}`;
      const report = await unpackArchive<ls.ArchiveMeta>(local, dir, { decrypt: ageOptions(s), sameOwner: true, progress: false });
      const meta = metaOf(report.manifest, name);
      await exec(["rm", "-f", "--", `${dir}/manifest.json`]);
      if (meta.host !== p.host.name && p.component !== "postgresql") ctx.log.info(`${p.prefix}: backed up on ${meta.host}, recovering onto ${p.host.name}`);
      verifiedHere++;
      return { dir, meta };
    });

    // where a part goes (the PostgreSQL primary) is asked once, before any host is touched, and
    // journaled: a run stopped after `systemctl stop postgresql` resumes onto the same host
    const locate = step("locate", "find where each component goes (the PostgreSQL primary)", async () => {
      const out: Record<string, Record<string, string>> = {};
      for (const p of parts) if (p.locate) out[p.prefix] = await p.locate();
      return out;
    }, { when: parts.some((p) => p.locate) });

    // every component is confirmed first, naming its hosts (for postgresql the primary the locate
    // step found, not the group's first host) and the snapshot it gets (a "no" stops the run
    // before any host is touched); then ONE fan-out recovers them all: an item per component and
    // host (its parts in order), `concurrency` at once, across components
    const hostOf = (p: ls.RecoveryPart) => (locate.hasOutput && locate.output[p.prefix]?.primary) || p.host.name;
    const groupsNow = () => ls.componentHosts(parts, hostOf);
    const confirm = components.filter((c) => parts.some((p) => p.component === c)).map((c) => {
      const mine = parts.filter((p) => p.component === c);
      const planned = [...new Set(mine.map((p) => p.locate ? `the primary of ${env.hosts(p.component).map((h) => h.name).join(", ")}` : p.host.name))].join(", ");
      return step(`confirm:${c}`, `confirm: recover ${c} on ${planned}`, () => {
        const hosts = [...new Set(mine.map(hostOf))].join(", ");
        const snapshot = [...new Set(mine.map((p) => verify.output[p.prefix].meta.snapshot))].join(", ");
        if (c !== "postgresql") return ctx.confirm(`recover ${c} on ${hosts}: its data and config there are REPLACED by snapshot ${snapshot}`);
        const others = env.hosts("postgresql").map((h) => h.name).filter((n) => !mine.some((p) => hostOf(p) === n));
        const standbys = others.length ? ` (the other postgresql hosts, ${others.join(", ")}, are left as they are: re-clone the standbys from it afterwards)` : "";
        // the offer upstream never makes (Epiphany #2565): the configs go back only when asked
        const configs = s["postgresql.restore-configs"] ? "and its *.conf are REPLACED by the backed-up ones" : "(its *.conf stay as they are now; --postgresql.restore-configs puts the backed-up ones back too)";
        return ctx.confirm(`recover ${c} on ${hosts}${standbys}: its databases are REPLACED by snapshot ${snapshot} ${configs}`);
      });
    });
    const recover = fanOut("recover", `recover ${components.join(", ")} (${groupsNow().length} component hosts, ${s.concurrency} at once)`, groupsNow, { key: (g) => g.key, concurrency: s.concurrency }, async (g) => {
      // the verified copies are read before the host is touched: a restore clears its target first
      const gone = ctx.dryRun ? [] : g.parts.map((p) => verify.output[p.prefix].dir).filter((d) => !existsSync(d));
      if (gone.length) throw new LifeboatError(`the verified archive contents ${gone.join(", ")} are gone from staging; nothing on ${g.key} was touched`, { hint: "run the recovery again without --resume: it fetches and verifies the archives anew" });
      const done: Record<string, unknown> = {};
      for (const p of g.parts) {
        const v = verify.output[p.prefix];
        done[p.prefix] = await p.restore(v.dir, v.meta, locate.hasOutput ? locate.output[p.prefix] : undefined);
      }
      return done;
    });

    return {
      steps: [find, verify, locate, ...confirm, recover],
      cleanup: async () => {
        // a run that failed after verifying any archive keeps its unpacked archives: the journal
        // has those items as done, and --resume recovers from them (it verifies only the others)
        if (recover.hasOutput || ctx.dryRun || (!verify.hasOutput && verifiedHere === 0)) await exec(["rm", "-rf", "--", `${staging}/${run}`], { readOnly: true }); // this run's own copies (a dry run's too)
        else ctx.log.warn(`kept the verified archives in ${staging}/${run} for --resume`);
        // and, on --resume, the earlier runs' folders its verified items came from (only this
        // target's: staging-dir is shared, another target's kept archives stay)
        if (recover.hasOutput) for (const d of new Set(Object.values(verify.output).map((v) => dirname(v.dir)))) if (d !== `${staging}/${run}`) await exec(["rm", "-rf", "--", d]);
      },
      report: () => [
        ...Object.entries(find.output).map(([prefix, a]) => `${prefix.padEnd(24)} ${from ? a.source : a.name}`),
        ...Object.entries(recover.output).map(([key, v]) => `${key.padEnd(24)} ${Object.keys(v).join(", ")}`),
      ],
    };
  },
});

function metaOf(m: Manifest<ls.ArchiveMeta> | null, name: string): ls.Meta {
  const meta = m?.meta?.lambdastack;
  if (!meta?.prefix || !meta.snapshot) throw new VerifyError(`${name}: its manifest has no lambdastack record`, [], "not an archive lambdastack-backup made; restore refused before touching anything");
  if (!name.startsWith(`${meta.prefix}_${meta.snapshot}.`)) throw new VerifyError(`${name}: its manifest says ${meta.prefix}_${meta.snapshot}`, [], "the archive was renamed or swapped; restore refused before touching anything");
  return meta;
}

/** The names in a local folder, read as they are (`ls -1` split on newlines: a name holding one made two). */
function localNames(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch (e) {
    throw new LifeboatError(`cannot list ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { hint: "check -t (target-path)" });
  }
}
