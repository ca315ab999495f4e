// Tasks on archives and backup folders: pack, verify, unpack, list, prune.
//
// The age keys are the recipes' own settings (AGE_SETTINGS), so a site file's `age:` block
// serves archive:verify and archive:unpack as it serves the recipes.
import chalk from "chalk";
import process from "node:process";
import {
  AGE_SETTINGS,
  ageOptions,
  formatBytes,
  formatDuration,
  listBackups,
  packArchive,
  prune,
  task,
  UsageError,
  unpackArchive,
  verifyArchive,
  type Context,
} from "../lib/mod.ts";

function needArgs(ctx: Context, n: number, usage: string): string[] {
  if (ctx.args.length !== n) throw new UsageError(`expected ${n} argument(s), got ${ctx.args.length}`, `usage: ${usage}`);
  return ctx.args;
}

export const pack = task({
  name: "archive:pack",
  description: "pack a directory into a verified archive (tar.gz + manifest, optionally age-encrypted)",
  usage: "tasks/run.ts archive:pack SOURCE_DIR ARCHIVE [--age.passphrase-file F | --age.recipients age1…]",
  settings: {
    ...AGE_SETTINGS,
    level: { type: "number", describe: "gzip level 1-9", default: 6 },
  },
  async run(ctx) {
    const [src, dst] = needArgs(ctx, 2, this.usage!);
    const { passphrase, recipients } = ageOptions(ctx.settings);
    await packArchive(src, dst, { level: ctx.settings.level, encrypt: { passphrase, recipients } });
  },
});

export const verify = task({
  name: "archive:verify",
  description: "check every file of an archive against its manifest; records the result beside it",
  usage: "tasks/run.ts archive:verify ARCHIVE... [--age.passphrase-file F | --age.identity-file FILE] [--foreign]",
  settings: { ...AGE_SETTINGS, foreign: { type: "boolean", describe: "accept a plain tarball without a manifest (path checks only)" } },
  async run(ctx) {
    if (ctx.args.length === 0) throw new UsageError("name at least one archive", `usage: ${this.usage}`);
    const decrypt = ageOptions(ctx.settings);
    for (const a of ctx.args) {
      const r = await verifyArchive(a, { decrypt, record: true, requireManifest: !ctx.settings.foreign });
      ctx.log.ok(`${a}: ${r.entries} entries, ${formatBytes(r.bytes)}, sha256 ${r.sha256.slice(0, 16)}…${r.manifest ? `, made by ${r.manifest.recipe} on ${r.manifest.host}` : ""}`);
    }
  },
});

export const unpack = task({
  name: "archive:unpack",
  description: "verify an archive, then extract it into an empty directory",
  usage: "tasks/run.ts archive:unpack ARCHIVE TARGET_DIR [--age.passphrase-file F | --age.identity-file FILE] [--force] [--same-owner] [--foreign]",
  settings: {
    ...AGE_SETTINGS,
    force: { type: "boolean", describe: "extract into a non-empty target, replacing what is there" },
    "same-owner": { type: "boolean", describe: "restore owners (as root)" },
    foreign: { type: "boolean", describe: "accept a plain tarball without a manifest (path checks only)" },
  },
  async run(ctx) {
    const [a, target] = needArgs(ctx, 2, this.usage!);
    const s = ctx.settings;
    if (s.force) await ctx.confirm(`replace what is in ${target} with the contents of ${a}?`);
    await unpackArchive(a, target, { decrypt: ageOptions(ctx.settings), force: s.force, sameOwner: s["same-owner"], requireManifest: !s.foreign });
  },
});

export const list = task({
  name: "archive:list",
  description: "list the backups in a folder, newest first, with size, age and verified state",
  usage: "tasks/run.ts archive:list DIR [--json]",
  async run(ctx) {
    const [dir] = needArgs(ctx, 1, this.usage!);
    const entries = listBackups(dir);
    if (ctx.settings.json) {
      process.stdout.write(JSON.stringify(entries.map(({ info: _i, ...e }) => ({ ...e, ageSeconds: Math.round((Date.now() - e.createdAt.getTime()) / 1000) })), null, 2) + "\n");
      return;
    }
    if (!entries.length) return void ctx.log.info(`no backups in ${dir}`);
    for (const e of entries) {
      const v = e.verified === "passed" ? chalk.green("verified") : e.verified === "failed" ? chalk.red("FAILED") : chalk.yellow("unverified");
      process.stdout.write(`${e.name}  ${formatBytes(e.size).padStart(10)}  ${formatDuration(Date.now() - e.createdAt.getTime()).padStart(7)} ago  ${v}${e.encrypted ? "  age" : ""}\n`);
    }
  },
});

export const pruneTask = task({
  name: "archive:prune",
  description: "delete old backups by a keep-last/daily/weekly/monthly policy (a dry run unless --yes)",
  usage: "tasks/run.ts archive:prune DIR --keep-last N [--keep-daily N] [--keep-weekly N] [--keep-monthly N] [--yes]",
  settings: {
    "keep-last": { type: "number", describe: "keep the newest N", default: 0 },
    "keep-daily": { type: "number", describe: "keep one per day for N days", default: 0 },
    "keep-weekly": { type: "number", describe: "keep one per week for N weeks", default: 0 },
    "keep-monthly": { type: "number", describe: "keep one per month for N months", default: 0 },
  },
  async run(ctx) {
    const [dir] = needArgs(ctx, 1, this.usage!);
    const s = ctx.settings;
    const plan = prune(dir, {
      keepLast: s["keep-last"],
      keepDaily: s["keep-daily"],
      keepWeekly: s["keep-weekly"],
      keepMonthly: s["keep-monthly"],
      confirmed: ctx.yes,
    });
    if (!ctx.yes && plan.remove.length) ctx.log.info(chalk.yellow(`dry run: ${plan.remove.length} backup(s) would be removed; pass --yes to remove them`));
  },
});

export default [pack, verify, unpack, list, pruneTask];
