// Tasks that run a recipe on a schedule: install, list and remove systemd timers or cron lines.
//
//   npx zx tasks/run.ts schedule:install deis-backup --config /etc/lifeboat/deis.yaml [--on-calendar daily] [--cron]
//   npx zx tasks/run.ts schedule:list [--json]
//   npx zx tasks/run.ts schedule:remove deis-backup [--yes]
//
// docs/schedule.md is the guide; lib/schedule.ts writes the files.
import { existsSync, readdirSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import process from "node:process";
import {
  ANY_SITE_KEYS,
  CRON_DIR,
  installSchedule,
  lifeboatRepo,
  nodeBinary,
  typeScriptFlags,
  listSchedules,
  probe,
  removeSchedule,
  systemdRunning,
  task,
  UNIT_DIR,
  UsageError,
  type Context,
} from "../lib/internal.ts";

const DIRS = {
  "unit-dir": { describe: "folder for the systemd units", default: UNIT_DIR },
  "cron-dir": { describe: "folder for cron files (with --cron)", default: CRON_DIR },
} as const;

/** RECIPE as given (deis-backup, recipes/deis-backup.ts, /path/x.ts) → the script's absolute path. */
function recipePath(arg: string): string {
  const recipes = join(lifeboatRepo(), "recipes");
  const p = arg.includes("/") || arg.endsWith(".ts") ? resolve(arg) : join(recipes, `${arg}.ts`);
  if (existsSync(p)) return p;
  const known = readdirSync(recipes).filter((f) => /^[a-z0-9]+-[a-z0-9-]+\.ts$/.test(f)).map((f) => f.replace(/\.ts$/, ""));
  throw new UsageError(`no recipe ${p}`, `recipes here: ${known.join(", ")}`);
}

function oneArg(ctx: Context, what: string, usage: string): string {
  if (ctx.args.length !== 1) throw new UsageError(`expected ${what}, got ${ctx.args.length} argument(s)`, `usage: ${usage}`);
  return ctx.args[0];
}

export const install = task({
  name: "schedule:install",
  description: "run a recipe on a schedule: a systemd service + timer (or a cron line with --cron)",
  usage: "tasks/run.ts schedule:install RECIPE --config SITE [--on-calendar daily] [--randomized-delay 30min] [--name NAME] [--user U] [--cron [--cron-schedule 'M H * * *'] [--log-file F]]",
  settings: {
    ...DIRS,
    "on-calendar": { describe: "when to run: a systemd calendar expression (daily, '*-*-* 02:30', 'Mon..Fri 03:00')", default: "daily" },
    "randomized-delay": { describe: "random delay before each run (a systemd time span; 0 for none)", default: "30min" },
    name: { describe: "schedule name: units lifeboat-NAME.service/.timer, cron file lifeboat-NAME (default: the recipe's name)" },
    user: { describe: "run the recipe as this user (default root)" },
    cron: { type: "boolean", describe: "write a cron file instead of systemd units (where systemd does not run)" },
    "cron-schedule": { describe: "the cron time fields, 'M H DOM MON DOW' (default: made from --on-calendar and --randomized-delay)" },
    "log-file": { describe: "with --cron: append the run's output to this file instead of syslog (logger -t lifeboat-NAME)" },
    node: { describe: "the node binary the schedule runs (default: this one)" },
  },
  // --config names the recipe's site file, not this task's: any key is accepted here, and the recipe itself checks it below.
  siteKnown: [ANY_SITE_KEYS],
  async run(ctx) {
    const s = ctx.settings;
    const recipe = recipePath(oneArg(ctx, "the recipe to schedule", this.usage!));
    if (!s.config) throw new UsageError("name the recipe's site file with --config SITE", "the scheduled run reads its settings, secrets and notify.command from it");
    const config = resolve(s.config);
    if (!s.cron && (s["cron-schedule"] || s["log-file"])) throw new UsageError("--cron-schedule and --log-file are for --cron", "systemd runs log to the journal: journalctl -u lifeboat-NAME");
    // The scheduled run must read this site file: the recipe parses it (and refuses unknown keys) with --help.
    const argsOut: string[] = [];
    const stateSource = ctx.sources["state-dir"] ?? "";
    if (stateSource.startsWith("--") || stateSource.startsWith("env")) argsOut.push("--state-dir", resolve(s["state-dir"]));
    const node = s.node || undefined;
    await probe([node ?? nodeBinary(), ...typeScriptFlags(node ?? nodeBinary()), recipe, "--config", config, "--help"], { cwd: lifeboatRepo() }).catch((e) => {
      throw new UsageError(`${basename(recipe)} does not accept the site file ${config}: ${(e as Error).message.split("\n").slice(-3).join(" ").trim()}`, "fix the site file, then install again");
    });
    const name = s.name || basename(recipe, ".ts");
    const r = await installSchedule(
      { name, recipe, config, onCalendar: s["on-calendar"], randomizedDelay: s["randomized-delay"], user: s.user || undefined, node, args: argsOut },
      { cron: s.cron, unitDir: s["unit-dir"], cronDir: s["cron-dir"], cronSchedule: s["cron-schedule"] || undefined, logFile: s["log-file"] || undefined },
    );
    if (ctx.dryRun) return;
    ctx.log.ok(`schedule '${name}' installed (${r.kind}${r.enabled ? ", timer enabled and started" : ""})`);
    ctx.log.info(r.kind === "systemd"
      ? `  logs: journalctl -u lifeboat-${name}.service; next run: systemctl list-timers lifeboat-${name}.timer; run now: systemctl start lifeboat-${name}.service`
      : `  logs: ${s["log-file"] || `journalctl -t lifeboat-${name} (or grep lifeboat-${name} /var/log/syslog)`}`);
  },
});

export const list = task({
  name: "schedule:list",
  description: "list the schedules lifeboat installed (systemd timers and cron files)",
  usage: "tasks/run.ts schedule:list [--json] [--unit-dir D] [--cron-dir D]",
  settings: DIRS,
  async run(ctx) {
    const all = listSchedules({ unitDir: ctx.settings["unit-dir"], cronDir: ctx.settings["cron-dir"] });
    if (ctx.settings.json) {
      process.stdout.write(JSON.stringify(all, null, 2) + "\n");
      return;
    }
    if (!all.length) return void ctx.log.info(`no lifeboat schedules in ${ctx.settings["unit-dir"]} or ${ctx.settings["cron-dir"]}`);
    const w = Math.max(...all.map((e) => e.name.length));
    for (const e of all) {
      const when = e.kind === "cron" ? `cron '${e.cronSchedule}'` : `${e.onCalendar} (+ up to ${e.randomizedDelay})`;
      process.stdout.write(`${e.name.padEnd(w)}  ${e.kind.padEnd(7)}  ${when}  ${basename(e.recipe)} --config ${e.config}${e.user !== "root" ? `  as ${e.user}` : ""}\n`);
    }
    if (systemdRunning() && all.some((e) => e.kind === "systemd")) ctx.log.info("next and last runs: systemctl list-timers 'lifeboat-*'");
  },
});

export const remove = task({
  name: "schedule:remove",
  description: "remove a schedule: stop and disable its timer, delete its units or cron file (asks first)",
  usage: "tasks/run.ts schedule:remove NAME [--yes] [--unit-dir D] [--cron-dir D]",
  settings: DIRS,
  async run(ctx) {
    const name = oneArg(ctx, "the schedule's name", this.usage!);
    await removeSchedule(name, { unitDir: ctx.settings["unit-dir"], cronDir: ctx.settings["cron-dir"] });
  },
});

export default [install, list, remove];
