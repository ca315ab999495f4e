// The Deis drill as a task: seed the lab "Deis", back it up with recipes/deis-backup.ts, destroy
// it, restore it with recipes/deis-restore.ts, compare. Needs lab pieces docker, sshd and ceph.
//
//   npx zx tasks/run.ts drill:deis [--workdir DIR] [--keep] [--passphrase-file F]
//   make drill-deis ARGS="--keep"
import chalk from "chalk";
import { printOutcomes, task, VerifyError } from "../lib/mod.ts";
import { deisDrill, drillSummary } from "./drills/deis.ts";

export const deisDrillTask = task({
  name: "drill:deis",
  description: "Deis v1 on the lab: back up (buckets, store volume, database), destroy, restore with the recipes, compare",
  settings: {
    workdir: { describe: "where the site file, state and backups go (default: a new temp dir, removed after unless --keep)" },
    keep: { type: "boolean", describe: "keep the working folder and the archive" },
    passphrase: { describe: "encrypt the archive with this age passphrase", secret: true },
  },
  async run(ctx) {
    const t0 = Date.now();
    const r = await deisDrill({ workdir: ctx.settings.workdir || undefined, keep: ctx.settings.keep, passphrase: ctx.settings.passphrase || undefined, ctx });
    ctx.log.info("");
    ctx.log.info(chalk.bold("drill:deis summary"));
    printOutcomes(ctx, r.outcomes);
    for (const line of drillSummary(r)) ctx.log.info(`  ${line}`);
    if (ctx.settings.keep || ctx.settings.workdir) ctx.log.info(`  workdir   ${r.work.dir} (site file ${r.work.site})`);
    if (r.problems.length) throw new VerifyError(`drill:deis: the restore differs from the backup in ${r.problems.length} place(s)`, r.problems);
    ctx.log.ok(chalk.green(`drill:deis: restored Deis matches what was backed up (${((Date.now() - t0) / 1000).toFixed(1)}s)`));
  },
});

export default [deisDrillTask];
