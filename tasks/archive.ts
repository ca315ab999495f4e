// Tasks on archives and backup folders: pack, verify, unpack, list, prune.
import chalk from "chalk";
import process from "node:process";
import {
  formatBytes,
  formatDuration,
  listBackups,
  packArchive,
  prune,
  readAgeIdentities,
  task,
  UsageError,
  unpackArchive,
  verifyBackup,
  type AgeOptions,
  type Context,
} from "../lib/mod.ts";

const keySettings = {
  passphrase: { describe: "age passphrase of an encrypted archive", secret: true },
  identity: { describe: "age identity file (AGE-SECRET-KEY-…) of an encrypted archive" },
} as const;

function keysOf(ctx: Context<typeof keySettings>): AgeOptions {
  const s = ctx.settings;
  return { passphrase: s.passphrase || undefined, identities: s.identity ? readAgeIdentities(s.identity) : undefined };
}

function needArgs(ctx: Context, n: number, usage: string): string[] {
  if (ctx.args.length !== n) throw new UsageError(`expected ${n} argument(s), got ${ctx.args.length}`, `usage: ${usage}`);
  return ctx.args;
}

export const pack = task({
  name: "archive:pack",
  description: "pack a directory into a verified archive (tar.gz + manifest, optionally age-encrypted)",
  usage: "tasks/run.ts archive:pack SOURCE_DIR ARCHIVE [--passphrase-file F | --recipient age1…]",
  settings: {
    ...keySettings,
    recipient: { type: "list", describe: "age recipients to encrypt for" },
    level: { type: "number", describe: "gzip level 1-9", default: 6 },
  },
  async run(ctx) {
    const [src, dst] = needArgs(ctx, 2, this.usage!);
    const s = ctx.settings;
    await packArchive(src, dst, { level: s.level, encrypt: { passphrase: s.passphrase || undefined, recipients: s.recipient } });
  },
});

export const verify = task({
  name: "archive:verify",
  description: "check every file of an archive against its manifest; records the result beside it",
  usage: "tasks/run.ts archive:verify ARCHIVE... [--passphrase-file F | --identity FILE] [--foreign]",
  settings: { ...keySettings, foreign: { type: "boolean", describe: "accept a plain tarball without a manifest (path checks only)" } },
  async run(ctx) {
    if (ctx.args.length === 0) throw new UsageError("name at least one archive", `usage: ${this.usage}`);
    for (const a of ctx.args) {
      const r = await verifyBackup(a, { decrypt: keysOf(ctx), requireManifest: !ctx.settings.foreign });
      ctx.log.ok(`${a}: ${r.entries} entries, ${formatBytes(r.bytes)}, sha256 ${r.sha256.slice(0, 16)}…${r.manifest ? `, made by ${r.manifest.recipe} on ${r.manifest.host}` : ""}`);
    }
  },
});

export const unpack = task({
  name: "archive:unpack",
  description: "verify an archive, then extract it into an empty directory",
  usage: "tasks/run.ts archive:unpack ARCHIVE TARGET_DIR [--force] [--same-owner] [--foreign]",
  settings: {
    ...keySettings,
    force: { type: "boolean", describe: "extract into a non-empty target, replacing what is there" },
    "same-owner": { type: "boolean", describe: "restore owners (as root)" },
    foreign: { type: "boolean", describe: "accept a plain tarball without a manifest (path checks only)" },
  },
  async run(ctx) {
    const [a, target] = needArgs(ctx, 2, this.usage!);
    const s = ctx.settings;
    if (s.force) await ctx.confirm(`replace what is in ${target} with the contents of ${a}?`);
    await unpackArchive(a, target, { decrypt: keysOf(ctx), force: s.force, sameOwner: s["same-owner"], requireManifest: !s.foreign });
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
