// hcoop-restore: backup-manager's `restore`: bring an AFS volume back as of a day, into
// NAME.restored, from hcoop-backup's day folders (or one legacy .aescrypt dump).
//
//   npx zx recipes/hcoop-restore.ts DATE VOLNAME [NEWNAME] --config hcoop.site.yaml [--replace] [--yes]
//   npx zx recipes/hcoop-restore.ts FILE.dump.gz.aescrypt NEWNAME --config …   (legacy, ccrypt)
//   make restore-hcoop ARGS="2026.11.24 user.alice --config hcoop.site.yaml"
//
// Runbook (HCoop wiki BackupInfo) → step:
//   "backup-manager restore YYYY.MM.DD $VOLNAME.dump.gz.aescrypt $VOLNAME.restored"
//                          → the arguments (VOLNAME may be given as its file name)
//   §3.2 "we only need to mount two dump files"
//                          → "resolve the chain": DATE's dump and, for an incremental, the full it
//                            was made against (named when missing)
//   (lifeboat)             → "verify FILE": sha256 against the manifest, then a full decrypt and
//                            gunzip, for every file BEFORE anything reaches vos restore
//   cat … | ccrypt -cdk /etc/backup-encryption-key | gunzip | vos restore deleuze /vicepa $VOLNAME.restored
//                          → "vos restore -overwrite full", then "-overwrite incremental" (age or ccrypt);
//                            a target busy with a leftover transaction is waited for up to afs.busy-wait
//   §1.4 fs mkm /afs/hcoop.net/.old/tmp-mount $VOLNAME.restored; vos release old
//                          → "mount the restored volume" [restore.mount-command, restore.release-command]:
//                            confirmed; off unless set (needs the kernel cache manager)
//   §1.5 examine the mount  → operator note: look at the files there, then choose 1.7 or 1.8
//   §1.6 fs rm …; vos release old → operator note: unmounting is the operator's (a command per site)
//   §1.7 vos remove $VOLNAME; vos rename $VOLNAME.restored $VOLNAME
//                          → "replace the live volume" [restore.replace / --restore.replace]: confirmed
//   §1.8 vos remove -id $VOLNAME.restored
//                          → "remove the restored copy" [restore.remove-restored]: confirmed
//   §1.2 backup-manager get → "fetch" [offsite.to]: DATE's dump and its full fetched from the remote
//                            repository when not here, each checked against its manifest's sha256
//                            (recipes/hcoop-get.ts fetches one file by hand)
//   §2 database backups     → recipes/hcoop-restore-db.ts DATE [DATABASE]
//
// Names: NAME + restore.suffix must fit in 22 characters (OpenAFS); when it does not, the run
// stops before anything and names a suffix that fits (or give NEWNAME).
import { offsiteOptions, afsExamine, afsRemove, afsRename, afsRestoreFile, exec, formatBytes, recipe, restoredName, checkVolumeName, step, UsageError, verifySealed, type Seal } from "../lib/mod.ts";
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { afsEndTransaction, afsListVldb, afsListVolumes, afsTransactions, afsVolumeIds, afsWaitWhileBusy, afsZap } from "../lib/mod.ts";
import * as hcoop from "./hcoop.ts";

await recipe({
  name: "hcoop-restore",
  description: "restore an AFS volume as of a day (its weekly full, then that day's incremental) into NAME.restored; optionally replace the live volume",
  usage: "npx zx recipes/hcoop-restore.ts DATE VOLNAME [NEWNAME] --config hcoop.site.yaml [--restore.replace] [--yes]",
  settings: hcoop.settings,
  target: (ctx) => `${ctx.settings["afs.server"]}:${ctx.args[1] ?? ctx.args[0] ?? ""}`,
  plan: (ctx) => {
    const s = ctx.settings;
    const cell = hcoop.cellOf(s);
    const [first, second, third] = ctx.args;
    if (!first || !second || ctx.args.length > 3) {
      throw new UsageError("give DATE VOLNAME [NEWNAME] (or a legacy FILE and NEWNAME)", "e.g. npx zx recipes/hcoop-restore.ts 2026.11.24 user.alice --config hcoop.site.yaml");
    }
    const legacy = existsSync(first) && /\.dump\.gz\.aescrypt$/.test(first);
    const volume = legacy ? "" : checkVolumeName(second.replace(/\.dump\.gz\.(aescrypt|age)$/, "").replace(/^\d{4}\.\d{2}\.\d{2}-/, ""));
    const target = legacy ? checkVolumeName(second, "NEWNAME") : third ? checkVolumeName(third, "NEWNAME") : restoredName(volume, s["restore.suffix"]);
    const date = legacy ? "legacy" : first.replaceAll("-", ".");
    const sealFor = (kind: "age" | "ccrypt"): Seal => hcoop.sealOf({ ...s, "encryption.kind": kind }, true);

    const fetch = step("fetch", `fetch the chain of ${volume} as of ${date} from ${s["offsite.to"][0] ?? "off-site"} where it is not here (sha256 checked)`, () =>
      hcoop.fetchChain(s["offsite.to"][0], s["backups.dir"], date, volume, offsiteOptions(s)), { when: !legacy && s["offsite.to"].length > 0 });

    const chain = step("chain", legacy ? `take the legacy dump ${first}` : `resolve the chain of ${volume} as of ${date}`, () => {
      if (legacy) return [{ date: "legacy", file: first.split("/").pop()!, path: first, encryption: "ccrypt" as const, entry: null }];
      const encryption = hcoop.readDay(s["backups.dir"], date).encryption;
      return hcoop.resolveChain(s["backups.dir"], date, volume).map((l) => ({ ...l, encryption }));
    });

    const verify = step("verify", "verify every file (sha256, decrypt, gunzip) before vos restore", async () => {
      for (const l of chain.output) {
        const r = await verifySealed(l.path, { seal: sealFor(l.encryption), sha256: l.entry?.sha256, bytes: l.entry?.bytes });
        ctx.log.info(`${l.file}: ok (${formatBytes(r.bytes)}, ${formatBytes(r.plainBytes)} of dump)${l.entry ? "" : "; a legacy file has no recorded sha256: ccrypt cannot tell a truncated one"}`);
      }
    });

    // An interrupted vos restore leaves a half-restored volume: on the server and in the VLDB
    // (over an existing target), or on the server only (a new one: vos restore makes the VLDB
    // entry last), where vos listvol still shows it. The step's cleanup, recorded before it
    // starts (a killed run owes it, the next run pays it first), removes it unless the restore
    // completed: vos remove when the VLDB knows the target, vos zap of every id vos restore
    // named for it (kept in STATE/hcoop-restore/) or listvol shows under its name otherwise.
    const marks = `${s["state-dir"]}/hcoop-restore/${cell.server}-${target}.ids`;
    let restored = false;
    const removeHalfRestored = async () => {
      if (restored) return void rmSync(marks, { force: true });
      const ids = new Set(existsSync(marks) ? readFileSync(marks, "utf8").split("\n").filter(Boolean).map(Number) : []);
      // transactions on ids our own vos restore named are ours: a killed vos restore's may linger
      for (const t of await afsTransactions(cell, { volumes: [...ids] })) {
        ctx.log.warn(`volume ${t.volume}: vos transaction ${t.id} (${t.procedure}) was left by the interrupted vos restore; ending it (vos endtrans)`);
        await afsEndTransaction(cell, t.id);
      }
      const entry = await afsExamine(cell, target);
      if (entry) {
        ctx.log.warn(`${target} (id ${entry.id}) was not restored completely: removing it (vos remove)`);
        await afsRemove(cell, target);
        ids.delete(entry.id);
      }
      const known = new Set((await afsListVldb(cell)).flatMap((e) => [e.rw, e.ro, e.bk]));
      for (const v of await afsListVolumes(cell)) if (v.name === target) ids.add(v.id);
      const here = new Set(await afsVolumeIds(cell)); // listvol -format names only attachable volumes
      for (const id of ids) {
        if (known.has(id) || !here.has(id)) continue; // the VLDB knows it (not an orphan of ours), or it is gone
        ctx.log.warn(`volume ${id} (${target}, half restored) is on ${cell.server} but not in the VLDB: removing it (vos zap)`);
        await afsZap(cell, id);
      }
      if (!ctx.dryRun) rmSync(marks, { force: true });
    };

    const mounted = `${s["state-dir"]}/hcoop-restore/${cell.server}-${target}.mounted`; // see the mount step
    const restore = step("restore", `vos restore ${target} (-overwrite full, then incremental)`, async () => {
      if (!ctx.dryRun) rmSync(mounted, { force: true }); // a new restore is mounted anew
      for (const [i, l] of chain.output.entries()) {
        // a target busy with a leftover transaction (an interrupted vos dump or restore) is waited for, up to afs.busy-wait
        const existing = await afsExamine(cell, target);
        await afsWaitWhileBusy(cell, () => afsRestoreFile(cell, target, l.path, {
          seal: sealFor(l.encryption), overwrite: i === 0 ? "full" : "incremental",
          onVolumeId: (id) => (mkdirSync(dirname(marks), { recursive: true }), appendFileSync(marks, `${id}\n`)),
        }), { volume: target, ids: existing ? [existing.id, existing.backupID].filter((id) => id > 0) : [], what: "vos restore", maxMs: s["afs.busy-wait"] * 1000 });
      }
      restored = true;
    }, {
      confirm: `restore ${chain.hasOutput ? chain.output.length : "the"} dump(s) into the volume ${target} on ${cell.server} (an existing ${target} is replaced)?`,
      cleanup: removeHalfRestored,
    });

    const fill = (argv: readonly string[]) => argv.map((a) => a.replaceAll("{name}", target));
    // A mount command is seldom idempotent (fs mkm fails with "File exists"): once it succeeded, a
    // marker says so, and a resumed run (killed before the step was recorded, or failing in the
    // release) runs only the release. The restore step removes the marker.
    const mount = step("mount", `mount the restored volume (${s["restore.mount-command"].join(" ")})`, async () => {
      if (existsSync(mounted)) ctx.log.info(`${target} was mounted by the interrupted run (${mounted}): not mounting it again`);
      else {
        await exec(fill(s["restore.mount-command"]), { stdout: "inherit" });
        if (!ctx.dryRun) (mkdirSync(dirname(mounted), { recursive: true }), writeFileSync(mounted, `${fill(s["restore.mount-command"]).join(" ")}\n`, { mode: 0o600 }));
      }
      if (s["restore.release-command"].length) await exec(fill(s["restore.release-command"]), { stdout: "inherit" });
    }, { when: s["restore.mount-command"].length > 0, confirm: `mount ${target} (${fill(s["restore.mount-command"]).join(" ")})?` });

    const replace = step("replace", `replace the live volume ${volume || target} (vos remove; vos rename)`, async () => {
      const live = await afsExamine(cell, volume);
      if (live && !ctx.dryRun && !(await afsExamine(cell, target))) {
        // only this step takes the restored copy away: a run killed after its rename left the volume replaced
        ctx.log.info(`${volume} is the restored copy already (an interrupted run renamed ${target}): nothing to replace`);
        return;
      }
      if (live) await afsRemove(cell, volume); // gone already when it was destroyed
      await afsRename(cell, target, volume);
    }, { when: s["restore.replace"] && !legacy, confirm: `DELETE the live volume ${volume} on ${cell.server} and put ${target} in its place?` });

    const remove = step("remove-restored", `remove the restored copy ${target} (vos remove -id)`, async () => {
      if (ctx.dryRun || (await afsExamine(cell, target))) await afsRemove(cell, target);
      else ctx.log.info(`${target} is gone already (an interrupted run removed it)`);
    }, {
      when: s["restore.remove-restored"] && !s["restore.replace"], confirm: `remove the volume ${target}?`,
    });

    return {
      steps: [fetch, chain, verify, restore, mount, replace, remove],
      report: () => [
        ...(fetch.hasOutput && fetch.output.length ? [`fetched    ${fetch.output.join(", ")} from ${s["offsite.to"][0]}`] : []),
        ...chain.output.map((l) => `${(l.entry?.kind ?? "legacy full").padEnd(11)} ${l.file} (${l.date})`),
        s["restore.replace"] && !legacy ? `volume     ${volume} replaced by the restored copy` : `volume     ${target} (restored${s["restore.remove-restored"] ? ", then removed" : ""})`,
      ],
    };
  },
});
