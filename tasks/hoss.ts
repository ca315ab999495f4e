// Hoss tasks: the Hoss drill (test/drills/hoss.ts) as `drill:hoss`, for `make drill-hoss`.
//
//   npx zx tasks/run.ts drill:hoss [--keep] [--verbose]      (needs the lab: lab:up docker slapd)
import { formatBytes, formatDuration, task } from "../lib/mod.ts";
import { hossDrill } from "./drills/hoss.ts";

export const hossDrillTask = task({
  name: "drill:hoss",
  description: "back up a lab Hoss with hoss-backup, wipe it, restore it with hoss-restore (failing once, then --resume) and compare",
  usage: "tasks/run.ts drill:hoss [--keep] [--no-resume] [--verbose]",
  settings: {
    keep: { type: "boolean", describe: "keep the drill's temp dir (working dir, archive, logs) afterwards" },
    resume: { type: "boolean", describe: "restore once with a failing 'restart core', then --resume (--no-resume: one plain restore)", default: true },
  },
  async run(ctx) {
    if (ctx.dryRun) {
      ctx.log.info("[dry-run] would seed a lab Hoss (database container, slapd, OpenSearch and server stand-ins), run hoss-backup, wipe it, run hoss-restore and compare");
      return;
    }
    const r = await hossDrill({ log: (l) => ctx.log.info(l), keep: ctx.settings.keep, resume: ctx.settings.resume, echo: ctx.settings.verbose });
    ctx.log.ok("the restored Hoss matches the original");
    ctx.log.info(`  archive   ${r.archive} (${formatBytes(r.archiveBytes)}, mode ${r.archiveMode.toString(8)})`);
    ctx.log.info(`  config    ${r.configFiles} files and links, byte for byte with modes; keys ${r.keyFiles} files, 0600`);
    ctx.log.info(`  database  ${Object.entries(r.dbRows).map(([t, n]) => `${t} ${n}`).join(", ")} rows, sequences equal`);
    ctx.log.info(`  ldap      ${r.ldapEntries} entries, slapcat identical`);
    ctx.log.info(`  search    ${Object.entries(r.docs).map(([i, n]) => `${i} ${n}`).join(", ")} documents`);
    ctx.log.info(`  timings   backup ${formatDuration(r.backupMs)}, restore ${formatDuration(r.restoreMs)}${r.resumed ? " (failed at 'restart core', then --resume)" : ""}`);
    if (ctx.settings.keep) ctx.log.info(`  kept      ${r.dir}`);
  },
});

export default [hossDrillTask];
