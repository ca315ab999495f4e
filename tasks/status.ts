// The backup check: did last night's backup happen? Exits 6 when a recipe's newest verified
// backup is missing or older than --max-age, so cron, a monitoring agent or the failure hook
// can act on it; --textfile writes the same facts for Prometheus' node_exporter.
//
//   npx zx tasks/run.ts status /var/backups/lifeboat --max-age 26h [--recipe deis-backup] [--json] [--textfile F.prom]
//   npx zx tasks/run.ts status s3://backups/deis ssh://backup@vault/srv/lifeboat --config site.yaml   (off-site copies)
//
// docs/monitoring.md is the guide; lib/monitor.ts holds the logic.
import process from "node:process";
import chalk from "chalk";
import {
  backupStatus,
  ExitCode,
  folderRecords,
  isOffsiteUrl,
  LifeboatError,
  OFFSITE_SETTINGS,
  offsiteList,
  offsiteOptions,
  recordOf,
  metricsText,
  parseAge,
  task,
  UsageError,
  writeTextfile,
  type RecipeStatus,
} from "../lib/internal.ts";

// The off-site connection settings (endpoint, keys, ssh identity): the site file's offsite: block serves here too.
const { "offsite.to": _to, "offsite.keep-local": _kl, "offsite.keep-last": _a, "offsite.keep-daily": _b, "offsite.keep-weekly": _c, "offsite.keep-monthly": _d, ...CONNECT } = OFFSITE_SETTINGS;

export const status = task({
  name: "status",
  description: "check that each recipe's newest verified backup in a folder is recent (exit 6 when not); --textfile for Prometheus",
  usage: "tasks/run.ts status DIR|s3://…|ssh://…... [--max-age 26h] [--recipe NAME] [--json] [--textfile PATH.prom]",
  settings: {
    ...CONNECT,
    "max-age": { describe: "the newest verified backup of each recipe may be at most this old (26h, 1d 2h, 90min)", default: "26h" },
    recipe: { describe: "check only this recipe (it fails when the folder has no backup of it)" },
    textfile: { describe: "also write node_exporter textfile-collector metrics to this file (atomically)" },
  },
  async run(ctx) {
    if (!ctx.args.length) throw new UsageError("name at least one backups folder or off-site destination", `usage: ${this.usage}`);
    const maxAgeSeconds = parseAge(ctx.settings["max-age"]);
    const now = new Date();
    const records = async (where: string) => (isOffsiteUrl(where) ? (await offsiteList(where, offsiteOptions(ctx.settings))).map(recordOf) : folderRecords(where));
    const statuses: RecipeStatus[] = [];
    for (const where of ctx.args) {
      statuses.push(...backupStatus(await records(where), { location: where, maxAgeSeconds, recipe: ctx.settings.recipe || undefined, now }));
    }
    if (ctx.settings.textfile) writeTextfile(ctx.settings.textfile, metricsText(statuses, now));
    if (ctx.settings.json) {
      const out = statuses.map(({ newest, lastVerified, ...s }) => ({
        ...s,
        newest: newest && { ...newest, time: newest.time.toISOString() },
        lastVerified: lastVerified && { ...lastVerified, time: lastVerified.time.toISOString() },
      }));
      process.stdout.write(JSON.stringify(out, null, 2) + "\n");
    } else {
      for (const s of statuses) process.stdout.write(`${s.ok ? chalk.green("✔") : chalk.red("✖")} ${s.message}\n`);
    }
    const bad = statuses.filter((s) => !s.ok);
    if (bad.length) {
      throw new LifeboatError(`${bad.length} of ${statuses.length} backup check(s) failed: ${bad.map((s) => s.recipe || s.location).join(", ")}`, {
        exitCode: ExitCode.Stale,
        hint: "look at the last runs (journalctl -u 'lifeboat-*', schedule:list), free space where backups go, then run the recipe",
      });
    }
  },
});

export default [status];
