// Tasks on off-site copies: list, prune, copy, verify (lib/offsite.ts; docs/offsite.md).
//
// The destination's connection comes from the recipes' offsite.* settings, so a site file's
// `offsite:` block (s3 endpoint and keys, ssh key and known_hosts) serves these tasks too.
import chalk from "chalk";
import process from "node:process";
import {
  formatBytes,
  formatDuration,
  isOffsiteUrl,
  listBackups,
  OFFSITE_SETTINGS,
  offsiteCopy,
  offsiteList,
  offsiteOptions,
  offsitePrune,
  offsiteVerify,
  task,
  UsageError,
  type BackupEntry,
  type Context,
} from "../lib/mod.ts";

const { "offsite.to": _to, "offsite.keep-local": _kl, "offsite.keep-last": _a, "offsite.keep-daily": _b, "offsite.keep-weekly": _c, "offsite.keep-monthly": _d, ...CONNECT } = OFFSITE_SETTINGS;

function needArgs(ctx: Context, n: number, usage: string): string[] {
  if (ctx.args.length !== n) throw new UsageError(`expected ${n} argument(s), got ${ctx.args.length}`, `usage: ${usage}`);
  return ctx.args;
}

function show(e: BackupEntry): string {
  const v = e.verified === "passed" ? chalk.green("verified") : e.verified === "failed" ? chalk.red("FAILED") : chalk.yellow("unverified");
  return `${e.path}  ${formatBytes(e.size).padStart(10)}  ${formatDuration(Date.now() - e.createdAt.getTime()).padStart(7)} ago  ${v}${e.encrypted ? "  age" : ""}`;
}

export const list = task({
  name: "offsite:list",
  description: "list the copies at an off-site destination (and, with --local DIR, which local archives have a verified copy there)",
  usage: "tasks/run.ts offsite:list DEST [--local DIR] [--json]",
  settings: { ...CONNECT, local: { describe: "a local backups folder to compare with the destination" } },
  async run(ctx) {
    const [dest] = needArgs(ctx, 1, this.usage!);
    const remote = await offsiteList(dest, offsiteOptions(ctx.settings));
    const local = ctx.settings.local ? listBackups(ctx.settings.local) : [];
    const there = new Map(remote.map((r) => [r.name, r.verified]));
    if (ctx.settings.json) {
      const row = ({ info: _i, ...e }: BackupEntry) => ({ ...e, ageSeconds: Math.round((Date.now() - e.createdAt.getTime()) / 1000) });
      const out = { destination: dest, copies: remote.map(row), ...(ctx.settings.local ? { local: local.map((e) => ({ ...row(e), offsite: there.get(e.name) ?? "missing" })) } : {}) };
      process.stdout.write(JSON.stringify(out, null, 2) + "\n");
      return;
    }
    if (!remote.length) ctx.log.info(`no copies at ${dest}`);
    for (const e of remote) process.stdout.write(show(e) + "\n");
    if (ctx.settings.local) {
      process.stdout.write(`\nlocal ${ctx.settings.local}:\n`);
      for (const e of local) {
        const o = there.get(e.name);
        process.stdout.write(`${show(e)}  off-site: ${o === "passed" ? chalk.green("verified copy") : o ? chalk.yellow(`copy ${o === "failed" ? "FAILED" : "unverified"}`) : chalk.red("no copy")}\n`);
      }
    }
  },
});

export const prune = task({
  name: "offsite:prune",
  description: "delete old off-site copies by a keep-last/daily/weekly/monthly policy (a dry run unless --yes); never the newest verified",
  usage: "tasks/run.ts offsite:prune DEST --keep-last N [--keep-daily N] [--keep-weekly N] [--keep-monthly N] [--yes]",
  settings: {
    ...CONNECT,
    "keep-last": { type: "number", describe: "keep the newest N", default: 0 },
    "keep-daily": { type: "number", describe: "keep one per day for N days", default: 0 },
    "keep-weekly": { type: "number", describe: "keep one per week for N weeks", default: 0 },
    "keep-monthly": { type: "number", describe: "keep one per month for N months", default: 0 },
  },
  async run(ctx) {
    const [dest] = needArgs(ctx, 1, this.usage!);
    const s = ctx.settings;
    const plan = await offsitePrune(dest, { keepLast: s["keep-last"], keepDaily: s["keep-daily"], keepWeekly: s["keep-weekly"], keepMonthly: s["keep-monthly"] }, { ...offsiteOptions(s), yes: ctx.yes });
    if (!ctx.yes && plan.remove.length) ctx.log.info(chalk.yellow(`dry run: ${plan.remove.length} cop${plan.remove.length === 1 ? "y" : "ies"} would be removed; pass --yes to remove them`));
  },
});

export const copy = task({
  name: "offsite:copy",
  description: "copy an archive and its sidecars to an off-site destination and verify the copy there",
  usage: "tasks/run.ts offsite:copy ARCHIVE DEST",
  settings: { ...CONNECT },
  async run(ctx) {
    const [archive, dest] = needArgs(ctx, 2, this.usage!);
    if (isOffsiteUrl(archive)) throw new UsageError(`${archive} is off-site already`, "give a local archive; offsite:fetch is the other direction");
    await offsiteCopy(archive, dest, offsiteOptions(ctx.settings));
  },
});

export const verify = task({
  name: "offsite:verify",
  description: "read an off-site copy back, compare it with its .sha256, and record the result there",
  usage: "tasks/run.ts offsite:verify URL...",
  settings: { ...CONNECT },
  async run(ctx) {
    if (!ctx.args.length) throw new UsageError("name at least one off-site copy", `usage: ${this.usage}`);
    for (const url of ctx.args) await offsiteVerify(url, offsiteOptions(ctx.settings));
  },
});

export default [list, prune, copy, verify];
