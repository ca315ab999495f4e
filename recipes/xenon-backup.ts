// xenon-backup: back up a VMware Xenon host's document index through its management API, as
// the Xenon wiki "Backup Restore" describes it: a ZIP into ONE verified lifeboat archive, an
// incremental DIRECTORY run shipped to a backup store, or a STREAM received by lifeboat.
//
//   npx zx recipes/xenon-backup.ts --config site.yaml [--backup.type ZIP|DIRECTORY|STREAM] [--directory.full] [--dry-run]
//   make backup-xenon ARGS="--config site.yaml"
//
// Run it on the Xenon host (file: destinations are paths on that host), or elsewhere with ssh.host
// for ZIP (the zip is fetched over ssh), DIRECTORY (the workspace stays on the host; its new files
// are fetched over ssh) and STREAM (stream.url must reach this machine).
//
// Steps (runbook line → step):
//   (lifeboat; "Restore and HostID")              → "record the host id and document counts": GET /core/management,
//                                                    GET FACTORY for each of `factories`
//   ZIP: "Send a PATCH BackupRequest … destination file:/var/backup/xenon-backup.zip, backupType ZIP"
//                                                  → "back up (PATCH BackupRequest, ZIP)" into staging (with
//                                                    ssh.host: into host-staging there, then "fetch the zip")
//                                                  → "check the zip is complete": central directory, sizes, CRC-32
//                                                  → "pack the archive": backups.dir/xenon-backup-<stamp>.tar.gz, 0600
//   STREAM: "STREAM is for http/https destination … PUT requests" ; "expected to accept PUT request with range header"
//                                                  → "back up (STREAM into lifeboat's receiver)": ranged PUTs in any
//                                                    order, every byte once, refused overlaps, idle timeout
//                                                  → "check the zip is complete", "pack the archive"
//   ZIP, STREAM: (the wiki: "upload to your backup store location (e.g. upload to S3)")
//                                                  → "copy the archive off-site" [offsite.to]: to each s3:// /
//                                                    ssh:// / path, verified there; then offsite.keep-local and
//                                                    the off-site keep-* retention
//   DIRECTORY, the wiki's "Example Scenario":
//     "Clear /backup if it is a daily full backup" → "clear the workspace (daily full)"       [directory.full]
//     "List existing files from last backup, and keep the list"
//                                                  → "list the workspace before the backup"
//     "Perform incremental backup specifying /backup as destination"
//                                                  → "back up (PATCH BackupRequest, DIRECTORY)"
//     (lifeboat, ssh.host)                         → "fetch the new files": the host's workspace listed with
//                                                    sizes over ssh; only the names the store's chain does not
//                                                    hold with that size are fetched (tar over ssh), their
//                                                    sizes checked by the ship step
//     "Compare file names … checking only file names is sufficient" ; "Take newly created files to
//      your backup store location"                 → "ship the new files to the store": name diff, copy of only
//                                                    the new names, a run manifest listing EVERY file that
//                                                    snapshot needs (any run can be reassembled)
//     (lifeboat; the issue's "backup store … ssh or S3")
//                                                  → "copy the run off-site" [offsite.to]: the files this run
//                                                    shipped plus its manifest as ONE lifeboat archive
//                                                    xenon-store-CHAIN-RUN.tar.gz per destination, verified there
//     (lifeboat)                                   → "prune the store": keep the newest directory.keep-runs runs,
//                                                    never a file a kept run needs; off-site, whole chains only
//   (always)                                       → finally: remove the staging folder of this run (and its
//                                                    folder in host-staging on ssh.host)
// --resume: a DIRECTORY run continues at its failed step (the workspace, the listing taken before
// the PATCH, and the store stay; files already shipped are not shipped again). A ZIP or STREAM
// run is refused: its staging folder is removed after every run, also a failed one. Run it again.
//
// Left to the operator, and why:
//   - auto-backup (isAutoBackupEnabled): a host setting; this recipe takes explicit backups.
//
// Settings: recipes/xenon.ts holds the table both recipes share (flags, env LIFEBOAT_*, the site
// file; see --help and recipes/xenon.site.example.yaml).
import { pathToFileURL } from "node:url";
import {
  ageOptions,
  compressionOptions,
  backupArchive,
  chainPrune,
  chainPruneOffsite,
  chainPush,
  chainRunName,
  chainShip,
  chainWanted,
  exec,
  fanOut,
  formatBytes,
  listNames,
  offsiteBackup,
  offsiteOptions,
  receiveRangedPuts,
  recipe,
  ssh,
  sshFetch,
  sshGet,
  sshListFiles,
  stamp,
  step,
  UsageError,
  verifyZip,
  withoutCredentials,
  xenonBackup,
  xenonCounts,
  xenonHostInfo,
} from "../lib/mod.ts";
import * as xenon from "./xenon.ts";

await recipe({
  name: "xenon-backup",
  description: "back up a Xenon host's document index (ZIP or STREAM into one verified archive, or an incremental DIRECTORY run into a store)",
  usage: "npx zx recipes/xenon-backup.ts --config site.yaml [--backup.type ZIP|DIRECTORY|STREAM] [--directory.full] [--dry-run]",
  settings: xenon.settings,
  target: (ctx) => ctx.settings.url,
  plan: (ctx) => {
    const s = ctx.settings;
    const type = s["backup.type"].toUpperCase() as xenon.Meta["type"];
    if (!["ZIP", "DIRECTORY", "STREAM"].includes(type)) throw new UsageError(`backup.type ${s["backup.type"]} is not ZIP, DIRECTORY or STREAM`);
    if (s.resume && type !== "DIRECTORY") throw new UsageError(`xenon-backup cannot --resume a ${type} backup: its staging folder is removed after every run, so the zip is gone`, "run the backup again without --resume");
    const url = s.url.replace(/\/+$/, "");
    const api = { token: s["auth.token"] || undefined, user: s["auth.user"] || undefined, password: s["auth.password"] || undefined, indexServiceLink: s["index-link"] };
    const isDir = type === "DIRECTORY";
    const run = isDir ? chainRunName(s["directory.store"]) : stamp(); // never the name of a run already in the store (two runs in one second)
    xenon.requireAbsolute(s, ["staging", "host-staging", "directory.workspace"]);
    const staging = `${s.staging}/backup-${run}`;
    const zip = `${staging}/${xenon.LAYOUT.zip}`;
    const remote = xenon.sshTarget(s);
    const hostDir = remote ? `${s["host-staging"]}/backup-${run}` : staging;
    const hostZip = `${hostDir}/${xenon.LAYOUT.zip}`;
    const workspace = s["directory.workspace"];
    const store = s["directory.store"];
    const isZip = type === "ZIP";
    const isStream = type === "STREAM";
    // ssh.host: the new files of the host's workspace, until they are shipped; one per host (the
    // lock and the journal are per host: another host's run must not refill what a --resume ships)
    const fetchDir = `${s.staging}/directory-fetch-${xenon.restoreStagingName(url).slice("restore-".length)}`;
    /** A command on the Xenon host: over ssh with ssh.host, else here. */
    const onHost = (argv: string[]) => (remote ? ssh(remote, argv) : exec(argv));
    const where = remote ? `${s["ssh.host"]}:${workspace}` : workspace;

    const host = step("host", `record the host id and document counts (${url})`, async () => {
      const info = await xenonHostInfo(url, api);
      const counts = await xenonCounts(url, s.factories, api);
      ctx.log.ok(`host ${info?.id}: ${Object.entries(counts).map(([f, n]) => `${f} ${n}`).join(", ")}`);
      // a DIRECTORY run's name is journalled here: a resumed run ships and pushes under the same one
      return { id: info?.id ?? "DRY-RUN", counts, takenAt: new Date().toISOString(), ...(isDir ? { run: chainRunName(store) } : {}) };
    });

    const prepare = step("prepare", "prepare the staging folder", () => exec(["mkdir", "-p", "-m", "700", "--", staging]), { when: !isDir });

    const prepareHost = step("prepare-host", `prepare ${hostDir} on ${s["ssh.host"]}`, () => ssh(remote!, ["mkdir", "-p", "-m", "700", "--", hostDir]), { when: isZip && !!remote });

    // file: URIs built from the path (a space, # or % in it is escaped: Xenon parses the URI)
    const zipUri = pathToFileURL(hostZip).href;
    const zipBackup = step("backup-zip", `back up (PATCH BackupRequest, ZIP to ${zipUri})`, () =>
      xenonBackup(url, { destination: zipUri, type: "ZIP" }, api), { when: isZip });

    const fetchZip = step("fetch-zip", `fetch the zip from ${s["ssh.host"]}:${hostZip}`, () => sshGet(remote!, hostZip, zip), { when: isZip && !!remote });

    const streamBackup = step("backup-stream", "back up (STREAM into lifeboat's receiver)", async () => {
      const got = await receiveRangedPuts(zip, {
        listen: s["stream.listen"],
        port: s["stream.port"],
        publicUrl: s["stream.url"] || undefined,
        idleTimeoutMs: s["stream.idle-timeout"] * 1000,
      }, (dest) => xenonBackup(url, { destination: dest, type: "STREAM" }, api));
      ctx.log.ok(`received ${formatBytes(got.bytes)} in ${got.chunks} chunks`);
      return { bytes: got.bytes, chunks: got.chunks };
    }, { when: isStream });

    const checked = step("check-zip", "check the zip is complete (central directory, sizes, CRC-32)", async () => {
      const z = await verifyZip(zip);
      ctx.log.ok(`${z.entries.length} index files, ${formatBytes(z.bytes)}`);
      return z.entries.map((e) => ({ name: e.name, size: e.size, crc32: e.crc32 }));
    }, { when: !isDir });

    const pack = step("pack", `pack the archive into ${s["backups.dir"]} (0600, manifest inside)`, () =>
      backupArchive<xenon.ArchiveMeta>(staging, {
        folder: s["backups.dir"],
        name: "xenon-backup",
        meta: { xenon: meta(checked.output) },
        age: ageOptions(s),
        ...compressionOptions(s),
      }), { when: !isDir });

    const offsiteArchive = step("offsite-archive", `copy the archive off-site (${s["offsite.to"].join(", ")})`, () =>
      offsiteBackup(pack.output.path, offsiteOptions(s)), { when: !isDir && s["offsite.to"].length > 0 });

    const clear = step("clear", `clear the workspace ${where} (daily full)`, async () => {
      await onHost(["mkdir", "-p", "-m", "700", "--", workspace]);
      await onHost(["find", workspace, "-mindepth", "1", "-maxdepth", "1", "-delete"]); // absolute (requireAbsolute): find takes no "--"
    }, { when: isDir && s["directory.full"] });

    const before = step("list", `list the workspace ${where} before the backup`, async () => {
      await onHost(["mkdir", "-p", "-m", "700", "--", workspace]);
      return remote ? (await sshListFiles(remote, workspace)).map((f) => f.name) : listNames(workspace);
    }, { when: isDir });

    const dirUri = pathToFileURL(`${workspace}/`).href;
    const dirBackup = step("backup-directory", `back up (PATCH BackupRequest, DIRECTORY to ${dirUri})`, () =>
      xenonBackup(url, { destination: dirUri, type: "DIRECTORY" }, api), { when: isDir });

    // ssh.host: the host's workspace listed with sizes; only the files the store's chain does not
    // hold yet (new names) are fetched (tar over ssh), and their sizes checked when shipped
    const fetched = step("fetch-directory", `fetch the new files from ${where}`, async () => {
      const listing = await sshListFiles(remote!, workspace);
      const wanted = chainWanted(store, listing, { full: s["directory.full"], before: before.output });
      await exec(["rm", "-rf", "--", fetchDir]);
      await sshFetch(remote!, workspace, fetchDir, { members: wanted });
      const bytes = listing.filter((f) => wanted.includes(f.name)).reduce((n, f) => n + f.size, 0);
      ctx.log.ok(`${listing.length} files on the host, ${wanted.length} new: ${formatBytes(bytes)} fetched`);
      return { listing, fetched: wanted.length, bytes };
    }, { when: isDir && !!remote });

    const shipped = step("ship", `ship the new files to the store ${store}`, async () => {
      const r = await chainShip(remote ? fetchDir : workspace, store, { run: host.output.run ?? run, full: s["directory.full"], before: before.output, listing: remote ? fetched.output.listing : undefined, meta: meta([]), resumed: s.resume });
      ctx.log.ok(`run ${r.run} (chain ${r.chain}): ${r.added.length} new, ${r.removed.length} dropped, ${formatBytes(r.shippedBytes)} shipped; it needs ${r.files.length} files`);
      return { run: r.run, chain: r.chain, added: r.added.length, removed: r.removed.length, files: r.files.length, shippedBytes: r.shippedBytes };
    }, { when: isDir });

    const offsite = fanOut("offsite", `copy the run off-site to ${s["offsite.to"].join(", ")} (one verified archive each)`, s["offsite.to"], { key: (d) => d, concurrency: 2, when: isDir && s["offsite.to"].length > 0 }, async (dest) => {
      const r = await chainPush(store, shipped.output.run, dest, { ...offsiteOptions(s), label: xenon.STORE_LABEL, age: ageOptions(s) });
      return { url: r.url, bytes: r.bytes };
    });

    const pruned = step("prune", `prune the store (keep the newest ${s["directory.keep-runs"]} runs)`, () =>
      chainPrune(store, { keepRuns: s["directory.keep-runs"] }), { when: isDir && s["directory.keep-runs"] > 0 });

    const prunedOffsite = fanOut("prune-offsite", `prune the off-site copies (whole chains no kept run needs)`, s["offsite.to"], { key: (d) => d, concurrency: 2, when: isDir && s["directory.keep-runs"] > 0 && s["offsite.to"].length > 0 }, (dest) =>
      chainPruneOffsite(dest, { ...offsiteOptions(s), label: xenon.STORE_LABEL, keepRuns: s["directory.keep-runs"] }));

    /** What the manifest records for the restore. */
    const meta = (files: xenon.Meta["files"]): xenon.Meta => ({
      url: withoutCredentials(url),
      hostId: host.output.id,
      type,
      indexLink: s["index-link"],
      counts: host.output.counts,
      files,
      takenAt: host.output.takenAt,
    });

    return {
      steps: [host, prepare, prepareHost, zipBackup, fetchZip, streamBackup, checked, pack, offsiteArchive, clear, before, dirBackup, fetched, shipped, offsite, pruned, prunedOffsite],
      resumable: isDir, // a ZIP or STREAM run's staging is removed after every run
      cleanup: async () => {
        await exec(["rm", "-rf", "--", staging]);
        if (shipped.hasOutput && remote) await exec(["rm", "-rf", "--", fetchDir]); // kept for --resume until shipped
        if (remote && isZip) await ssh(remote, ["rm", "-rf", "--", hostDir]);
      },
      report: () => [
        `host         ${host.output.id} at ${url}`,
        `documents    ${Object.entries(host.output.counts).map(([f, n]) => `${f} ${n}`).join(", ")}`,
        ...(isDir
          ? [`run          ${shipped.output.run} in ${store} (chain ${shipped.output.chain}): ${shipped.output.added} new files, ${formatBytes(shipped.output.shippedBytes)} shipped`,
            ...(offsite.hasOutput ? Object.values(offsite.output).map((o) => `off-site     ${o.url} (${formatBytes(o.bytes)})`) : []),
            ...(pruned.hasOutput ? [`pruned       ${pruned.output.runs.length} runs, ${pruned.output.files} files`] : []),
            ...(prunedOffsite.hasOutput ? [`pruned       off-site: ${Object.values(prunedOffsite.output).flat().length} run archives of dropped chains`] : [])]
          : [`archive      ${pack.output.path} (${formatBytes(pack.output.bytes)})`, ...(isStream ? [`stream       ${streamBackup.output.chunks} chunks`] : []),
            ...(offsiteArchive.hasOutput ? offsiteArchive.output.copies.map((c) => `off-site     ${c.url} (${c.skipped ? "already there, " : ""}verified: ${c.method})`) : [])]),
        `restore with --id=${host.output.id} on a new node to keep documentOwner (wiki: "Restore and HostID")`,
      ],
    };
  },
});
