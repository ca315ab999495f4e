// xenon-restore: restore a VMware Xenon host's document index from a xenon-backup archive
// (ZIP or STREAM) or from any run of a DIRECTORY chain, as the Xenon wiki "Backup Restore"
// describes it, then restart the host and compare document counts.
//
//   npx zx recipes/xenon-restore.ts ARCHIVE|RUN --config site.yaml [--deliver file|http] [--at "2026-11-21 10:00:00Z"] [--yes]
//   npx zx recipes/xenon-restore.ts s3://offsite/xenon/xenon-backup-….tar.gz --config site.yaml   (or ssh://…)
//   make restore-xenon ARGS="--config site.yaml /var/backups/xenon/xenon-backup-….tar.gz"
//
// RUN is a run id of directory.store (see its runs/ folder), or "latest"; with directory.from, of
// that off-site copy of the store (s3://…, ssh://…, or a path).
//
// Steps (runbook line → step):
//   (lifeboat)                                     → "prepare the staging folder": STAGING/restore-HOST, one per
//                                                     host URL (a failed run's, not resumed, is cleared)
//   (lifeboat)                                     → "fetch run RUN from the off-site store" [directory.from]:
//                                                     the run archives of its chain up to it, each checked
//   (lifeboat)                                     → "fetch the archive" when ARCHIVE is an s3:// or ssh:// URL
//                                                     (offsite.* settings): into the staging folder, checked
//                                                     against its .sha256
//   (lifeboat)                                     → "read the backup": an archive is verified byte for byte
//                                                     against its manifest; a run's manifest is read
//   "Restore and HostID: … they still keep old hostId as their documentOwnerId … we recommend
//    setting same hostId on the new node (--id=<old node id>)"
//                                                   → "compare host ids": prints --id=OLD, warns when they differ
//   (lifeboat)                                     → "check the host holds no documents": a restored zip is
//                                                     extracted into the index without clearing it, so a host
//                                                     with documents is refused (exit 5) [allow-existing]
//   (lifeboat)                                     → "stage the backup": the archive's zip (checked again:
//                                                     central directory and CRCs, before the PATCH), or the run
//                                                     reassembled from its file list, each file's sha256 checked
//   (lifeboat, a remote host)                      → "copy the staged backup to HOST" [ssh.host]: the zip
//                                                     (sshPut, atomic) or the run's folder (tar over ssh) into
//                                                     host-staging there; the PATCH names that path
//   "Send a PATCH RestoreRequest … destination file:/var/backup/xenon-backup.zip" ; "When http/https
//    is specified, it is expected to accept GET requests … with range header"
//                                                   → "restore (PATCH RestoreRequest)": file: the staged zip or
//                                                     directory; http: lifeboat serves the zip with Range support
//                                                     while the PATCH runs                      [deliver]
//   "When timeSnapshotBoundaryMicros parameter is specified in restore request, recovered data will
//    not have documents updated after the specified time"
//                                                   → --at "2026-11-21 10:00:00Z" becomes timeSnapshotBoundaryMicros
//   "NOTE: you MUST restart the service host that processed the restore request" ; "When it is
//    restoring to the in-memory index service, host restart is not required. If you restart the host,
//    in-memory data will be cleared."
//                                                   → "restart the host" [restart], skipped for the in-memory index
//   (lifeboat)                                     → "wait for the host" (GET /core/management), restart-timeout
//                                                   → "compare document counts with the backup" (exit 3 if they
//                                                     differ; with --at only reported, the counts were of later)
//   (always)                                       → finally: remove the staging folder (and its folder in
//                                                     host-staging on ssh.host); a run that failed after fetching
//                                                     or staging keeps the local one for --resume
// The PATCH asks first; without a terminal it needs --yes (or it refuses, exit 5).
// --resume (same arguments) continues at the failed step with the earlier steps' outputs from the
// journal: after a failed restart, wait or count check it goes on WITHOUT a second PATCH (those
// steps read the journal only); after a failed copy it copies the kept staged backup. A run that
// failed at the PATCH itself is not resumed (".patch-sent" in staging): the index may hold part of
// the backup and a second PATCH would add to it; start a fresh host and run it again. One killed
// after the PATCH completed (the mark then says "done") goes on without sending it again.
//
// Left to the operator, and why:
//   - starting the new node with --id=OLD: a host argument lifeboat cannot set; the recipe prints it.
//
// Settings: recipes/xenon.ts holds the table both recipes share (flags, env LIFEBOAT_*, the site
// file; see --help and recipes/xenon.site.example.yaml).
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import {
  ageOptions,
  chainAssemble,
  chainFetch,
  chainRuns,
  exec,
  formatBytes,
  isOffsiteUrl,
  offsiteFetch,
  offsiteOptions,
  recipe,
  RefusedError,
  serveRanged,
  shellJoin,
  ssh,
  sshPush,
  sshPut,
  step,
  toMicros,
  unpackArchive,
  UsageError,
  verifyArchive,
  VerifyError,
  verifyZip,
  waitForHealthy,
  xenonCounts,
  xenonHostInfo,
  xenonRestore,
} from "../lib/mod.ts";
import * as xenon from "./xenon.ts";

await recipe({
  name: "xenon-restore",
  description: "restore a Xenon host's document index from a xenon-backup archive or a DIRECTORY run, restart it and compare counts",
  usage: "npx zx recipes/xenon-restore.ts ARCHIVE|RUN --config site.yaml [--deliver file|http] [--at INSTANT] [--yes] [--resume]",
  settings: xenon.settings,
  target: (ctx) => ctx.settings.url,
  plan: (ctx) => {
    const s = ctx.settings;
    if (ctx.args.length !== 1) throw new UsageError("say what to restore: xenon-restore ARCHIVE (a .tar.gz or .tar.zst, [.age]) or RUN (a run id of directory.store, or latest)");
    const what = ctx.args[0];
    const isArchive = /\.tar\.(gz|zst)(\.age)?$/.test(what);
    const url = s.url.replace(/\/+$/, "");
    const api = { token: s["auth.token"] || undefined, user: s["auth.user"] || undefined, password: s["auth.password"] || undefined, indexServiceLink: s["index-link"] };
    const inMemory = s["index-link"] === xenon.IN_MEMORY_INDEX;
    if (!["file", "http"].includes(s.deliver)) throw new UsageError(`deliver ${s.deliver} is not file or http`);
    if (s.deliver === "http" && !isArchive) throw new UsageError("a DIRECTORY run cannot be restored over http: Xenon treats an http backup as a zip", "use --deliver file");
    const at = s.at ? toMicros(s.at) : undefined;
    // one staging folder per host (the recipe's lock is per host too): a resumed run finds the failed run's
    xenon.requireAbsolute(s, ["staging", "host-staging"]);
    const staging = `${s.staging}/${xenon.restoreStagingName(url)}`;
    const remote = xenon.sshTarget(s);
    const hostDir = remote ? `${s["host-staging"]}/${xenon.restoreStagingName(url)}` : staging;
    const patchSent = `${staging}/.patch-sent`; // written before the PATCH: a resumed run never sends a second one over a half-restored index
    /** Where a staged path is on the Xenon host. */
    const onHost = (path: string) => hostDir + path.slice(staging.length);
    const from = s["directory.from"];
    const decrypt = ageOptions(s);

    const prepare = step("prepare", `prepare the staging folder ${staging}`, async () => {
      await exec(["rm", "-rf", "--", staging]); // a failed run's, not resumed
      await exec(["mkdir", "-p", "-m", "700", "--", staging]);
      if (remote) await ssh(remote, ["rm", "-rf", "--", hostDir]);
    });

    const fetched = step("fetch", `fetch run ${what} from the off-site store ${from}`, async () => {
      await exec(["rm", "-rf", "--", `${staging}/store`]); // a resumed run's partial fetch
      return chainFetch(from, what, `${staging}/store`, { ...offsiteOptions(s), label: xenon.STORE_LABEL, age: decrypt });
    }, { when: !isArchive && !!from });

    const fetchedArchive = step("fetch-archive", `fetch the archive from ${what}`, () =>
      offsiteFetch(what, `${staging}/archive`, offsiteOptions(s)), { when: isArchive && isOffsiteUrl(what) });
    /** The archive here: as given, or fetched from off-site. */
    const archive = () => (fetchedArchive.hasOutput ? fetchedArchive.output : what);

    const backup = step("read", `read the backup ${what}`, async () => {
      if (isArchive) {
        // sidecars and key only: the stage step's unpack checks every byte as it unpacks
        const report = await verifyArchive<xenon.ArchiveMeta>(archive(), { decrypt, quick: true });
        if (report.info?.recipe !== "xenon-backup") throw new UsageError(`${what} was not made by xenon-backup (manifest recipe: ${report.info?.recipe ?? "none"})`);
        return { run: null as string | null, store: "", meta: report.info.meta.xenon };
      }
      const store = from ? fetched.output.store : s["directory.store"];
      const runs = chainRuns<xenon.Meta>(store);
      const r = from ? runs.find((x) => x.run === fetched.output.run) : what === "latest" ? runs.at(-1) : runs.find((x) => x.run === what);
      if (!r) throw new UsageError(`no run ${what} in ${store}`, runs.length ? `runs there: ${runs.slice(-8).map((x) => x.run).join(", ")}` : "the store holds no runs");
      return { run: r.run, store, meta: { ...r.meta!, files: r.files.map((f): xenon.Meta["files"][number] => ({ name: f.name, size: f.size })) } };
    });

    const ids = step("host-id", "compare host ids (wiki: Restore and HostID)", async () => {
      const info = await xenonHostInfo(url, { ...api });
      const old = backup.output.meta.hostId;
      if (info && info.id !== old) {
        ctx.log.warn(`this host's id is ${info.id}, the backup's documents are owned by ${old}: start the new node with --id=${old} to keep documentOwner (the wiki's advice for migration)`);
      } else ctx.log.ok(`host id ${old} (start a new node with --id=${old})`);
      return { id: info?.id ?? old };
    });

    const empty = step("empty", `check the host holds no documents (${s.factories.join(", ")})`, async () => {
      const now = await xenonCounts(url, s.factories, api);
      const held = Object.entries(now).filter(([, n]) => n > 0).map(([f, n]) => `${f} ${n}`);
      if (held.length && !s["allow-existing"]) {
        throw new RefusedError(`the Xenon host at ${url} already holds documents (${held.join(", ")}): a restored zip is added to its index, not put in its place, so old documents would stay`, "restore onto a fresh host (the wiki's way), or pass --allow-existing to restore into this one anyway");
      }
      if (held.length) ctx.log.warn(`restoring into a host that holds documents (${held.join(", ")}): --allow-existing`);
      return now;
    });

    const staged = step("stage", `stage the backup in ${staging}`, async () => {
      await exec(["rm", "-rf", "--", `${staging}/unpacked`, `${staging}/run`]); // a resumed run's partial staging
      if (isArchive) {
        await unpackArchive(archive(), `${staging}/unpacked`, { decrypt });
        const zip = `${staging}/unpacked/${xenon.LAYOUT.zip}`;
        await verifyZip(zip, { expect: backup.output.meta.files }); // the files the backup recorded, nothing else
        return { path: zip, kind: "zip" as const };
      }
      await chainAssemble(backup.output.store, backup.output.run!, `${staging}/run`);
      return { path: `${staging}/run`, kind: "dir" as const };
    });

    const copied = step("copy", `copy the staged backup to ${s["ssh.host"]}:${hostDir}`, () =>
      staged.output.kind === "zip" ? sshPut(remote!, staged.output.path, onHost(staged.output.path)) : sshPush(remote!, staged.output.path, onHost(staged.output.path)),
    { when: !!remote && s.deliver === "file" });

    const restored = step("restore", `restore (PATCH RestoreRequest, ${s.deliver}${at !== undefined ? `, timeSnapshotBoundaryMicros ${at}` : ""})`, async () => {
      if (existsSync(patchSent)) {
        // "done": the PATCH completed and the run was killed before it could record so
        if (readFileSync(patchSent, "utf8").trim() === "done") return void ctx.log.info(`the interrupted run's PATCH to ${url} completed (${patchSent} says done): not sent again`);
        throw new UsageError(`the failed run sent its PATCH to ${url} and it did not complete: the index may hold part of the backup, and a second PATCH would add to it`, "start a fresh host and run the restore again without --resume");
      }
      await exec(["touch", "--", patchSent]);
      const req = (destination: string) => xenonRestore(url, { destination, timeSnapshotBoundaryMicros: at }, api).then(() => ctx.log.ok(`Xenon restored its index from ${destination}`));
      if (s.deliver === "http") {
        const served = await serveRanged(staged.output.path, { listen: s["http.listen"], port: s["http.port"], publicUrl: s["http.url"] || undefined }, req);
        ctx.log.ok(`served ${formatBytes(served.bytes)} in ${served.requests} requests`);
      } else {
        await req(pathToFileURL(`${onHost(staged.output.path)}${staged.output.kind === "dir" ? "/" : ""}`).href); // a space, # or % escaped
      }
      if (!ctx.dryRun) writeFileSync(patchSent, "done\n");
    }, { confirm: `replace the document index of the Xenon host at ${url} with the backup's?` });

    const restart = step("restart", `restart the host (${shellJoin(s.restart)})`, () => exec(s.restart), {
      when: !inMemory && s.restart.length > 0,
    });

    const healthy = step("wait", `wait for the host (GET ${url}/core/management answers; 403 counts: it wants a login)`, () =>
      waitForHealthy({ http: `${url}/core/management`, status: [200, 401, 403] }, {
        timeoutMs: s["restart-timeout"] * 1000,
        label: `the Xenon host at ${url}`,
        hint: `it did not answer after the restart (${shellJoin(s.restart)}): check its log; the index was restored, so once it is up, check the counts`,
      }));

    const compared = step("compare", "compare document counts with the backup", async () => {
      const want = backup.output.meta.counts;
      const got = await xenonCounts(url, Object.keys(want), { ...api, dryRunResult: want });
      const diff = Object.keys(want).filter((f) => got[f] !== want[f]).map((f) => `${f}: ${got[f]} now, ${want[f]} in the backup`);
      if (diff.length && at === undefined) throw new VerifyError(`the restored host's document counts differ from the backup's: ${diff.join("; ")}`, diff);
      if (diff.length) ctx.log.warn(`counts at --at ${s.at} differ from the backup's (expected: they were counted at backup time): ${diff.join("; ")}`);
      else ctx.log.ok(Object.entries(got).map(([f, n]) => `${f} ${n}`).join(", "));
      return got;
    });

    return {
      steps: [prepare, fetched, fetchedArchive, backup, ids, empty, staged, copied, restored, restart, healthy, compared],
      cleanup: async () => {
        // a run that failed after fetching or staging keeps them for --resume (the steps after the
        // PATCH read only the journal; the copy and the PATCH read the staged backup)
        // and the copy on the host, once copied: a resumed run does not copy it again (the step is
        // journaled) and its PATCH names it
        const keep = !ctx.dryRun && (fetched.hasOutput || fetchedArchive.hasOutput || staged.hasOutput) && !compared.hasOutput;
        const keepOnHost = keep && !!remote && copied.hasOutput;
        if (keep) ctx.log.warn(`kept ${staging}${keepOnHost ? ` and ${s["ssh.host"]}:${hostDir}` : ""} for --resume; remove ${keepOnHost ? "them" : "it"} if you will not resume`);
        else await exec(["rm", "-rf", "--", staging]);
        if (remote && !keepOnHost) await ssh(remote, ["rm", "-rf", "--", hostDir]);
      },
      report: () => [
        `restored     ${isArchive ? what : `run ${backup.output.run} of ${from || s["directory.store"]}`} into ${url}${at !== undefined ? ` as of ${s.at}` : ""}`,
        `documents    ${Object.entries(compared.output).map(([f, n]) => `${f} ${n}`).join(", ")}`,
        `host id      backup ${backup.output.meta.hostId}, host ${ids.output.id}${ids.output.id !== backup.output.meta.hostId ? `  (start the node with --id=${backup.output.meta.hostId})` : ""}`,
        `restart      ${inMemory ? "skipped: in-memory index" : s.restart.length ? shellJoin(s.restart) : "none configured"}`,
      ],
    };
  },
});

