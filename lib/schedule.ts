// Schedules: a recipe run every night by a systemd timer, or by a cron line where there is no systemd.
//
// One schedule is a name and a recipe run:
//
//   NODE REPO/recipes/RECIPE.ts --config SITE --yes
//
// with REPO as the working directory. NODE is the node running the install (the project's,
// node_modules/.bin/node, which strips the types itself); a node that cannot (Node 20, or one
// named with --node) gets `--import=tsx`, found in REPO's node_modules. systemd gets two units in the unit
// folder, `lifeboat-NAME.service` (Type=oneshot, output to the journal) and `lifeboat-NAME.timer`
// (OnCalendar, Persistent, RandomizedDelaySec); cron gets `/etc/cron.d/lifeboat-NAME`, one line whose
// output goes to syslog through `logger -t lifeboat-NAME` or to a log file. Neither needs flock:
// the recipe's own lock refuses an overlapping run (exit 4). Each file starts with a
// `# lifeboat-schedule {json}` comment that listSchedules reads back. docs/schedule.md is the guide.
import { chmodSync, existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, isAbsolute, join, resolve } from "node:path";
import process from "node:process";
import { createHash } from "node:crypto";
import { LifeboatError, UsageError } from "./errors.ts";
import { useContext, type Context } from "./context.ts";
import { exec, probe, shellQuote, which } from "./exec.ts";
import { partialFile } from "./files.ts";

/** Where systemd units go by default. */
export const UNIT_DIR = "/etc/systemd/system";
/** Where cron files go by default. */
export const CRON_DIR = "/etc/cron.d";
/** A schedule name: the units are lifeboat-NAME.*, the cron file lifeboat-NAME (cron skips names with dots). */
export const SCHEDULE_NAME = /^[A-Za-z0-9_-]{1,64}$/;
const META = "# lifeboat-schedule ";

/** What to run, and when. */
export interface ScheduleSpec {
  /** Schedule name (letters, digits, `_`, `-`): units `lifeboat-NAME.service`/`.timer`, cron file `lifeboat-NAME`. */
  name: string;
  /** The recipe script, an absolute path (`/srv/lifeboat/recipes/deis-backup.ts`). */
  recipe: string;
  /** The site file the recipe reads, an absolute path. */
  config: string;
  /** systemd calendar expression (`daily`, `*-*-* 02:30`, `Mon..Fri 03:00`); default "daily". */
  onCalendar?: string;
  /** Random delay before each run, a systemd time span (`30min`, `0` for none); default "30min". */
  randomizedDelay?: string;
  /** Run as this user (default: root). */
  user?: string;
  /** The lifeboat checkout: working directory, where node finds tsx if it needs it (default: the one this file is in). */
  repo?: string;
  /** The node binary, an absolute path (default: the node running this, else /usr/bin/node). */
  node?: string;
  /** More arguments after `--config SITE --yes` (e.g. `["--state-dir", "/var/lib/lifeboat"]`). */
  args?: string[];
}

/** A schedule found on disk by {@link listSchedules}. */
export interface ScheduleEntry {
  name: string;
  kind: "systemd" | "cron";
  recipe: string;
  config: string;
  /** OnCalendar (systemd), or what the cron line was made from. */
  onCalendar: string;
  randomizedDelay: string;
  /** The cron time fields (cron only). */
  cronSchedule?: string;
  user: string;
  /** The argv each run executes. */
  command: string[];
  /** The files that make up the schedule. */
  files: string[];
}

/** The repository this file belongs to. */
export function lifeboatRepo(): string {
  return resolve(new URL("..", import.meta.url).pathname);
}

/** The node binary a schedule runs by default: this process's, unless that is not node (Deno), then /usr/bin/node. */
export function nodeBinary(): string {
  const p = process.execPath;
  return basename(p) === "node" ? p : "/usr/bin/node";
}

const CONTROL = /[\x00-\x1f\x7f]/;

/** Refuses a schedule name that would not make a unit or cron file name. */
export function checkScheduleName(name: string): string {
  if (!SCHEDULE_NAME.test(name)) {
    throw new UsageError(
      `schedule name ${JSON.stringify(name)} is not usable: it names units and a cron file`,
      "use letters, digits, '_' and '-' only (cron ignores files with dots), at most 64 characters",
    );
  }
  return name;
}

function checkText(what: string, value: string): string {
  if (CONTROL.test(value)) throw new UsageError(`${what} ${JSON.stringify(value)} contains a newline or control character, which would break the unit or cron file`, "rename it, or give another path");
  return value;
}

function checkPath(what: string, p: string): string {
  checkText(what, p);
  if (!isAbsolute(p)) throw new UsageError(`${what} '${p}' must be an absolute path (a schedule runs from another directory)`);
  return p;
}

/** The spec with defaults filled in and every field checked. Throws UsageError. */
export function resolveSpec(spec: ScheduleSpec): Required<ScheduleSpec> {
  const s: Required<ScheduleSpec> = {
    name: checkScheduleName(spec.name),
    recipe: checkPath("recipe", spec.recipe),
    config: checkPath("site file", spec.config),
    onCalendar: checkText("OnCalendar", spec.onCalendar || "daily").trim(),
    randomizedDelay: checkText("randomized delay", spec.randomizedDelay || "30min").trim(),
    user: spec.user ?? "",
    repo: checkPath("repository", spec.repo ?? lifeboatRepo()),
    node: checkPath("node", spec.node ?? nodeBinary()),
    args: (spec.args ?? []).map((a) => checkText("argument", a)),
  };
  if (s.user && !/^[A-Za-z_][A-Za-z0-9_.-]*\$?$/.test(s.user)) throw new UsageError(`user ${JSON.stringify(s.user)} is not a valid user name`);
  if (!s.onCalendar) throw new UsageError("the OnCalendar expression is empty", "e.g. --on-calendar daily or '*-*-* 02:30'");
  return s;
}

/**
 * The flags `node` needs to run a recipe's TypeScript: none when it is this process's node and
 * that strips types itself (Node 22.18+), else `--import=tsx` (tsx from the checkout's node_modules).
 *
 * ```ts
 * spawn(nodeBinary(), [...typeScriptFlags(nodeBinary()), "recipes/deis-backup.ts", "--help"]);
 * ```
 */
export function typeScriptFlags(node: string): string[] {
  const native = node === process.execPath && !!(process.features as { typescript?: string | false }).typescript;
  return native ? [] : ["--import=tsx"];
}

/** The argv a scheduled run executes. */
export function scheduleCommand(spec: ScheduleSpec): string[] {
  const s = resolveSpec(spec);
  return [s.node, ...typeScriptFlags(s.node), s.recipe, "--config", s.config, "--yes", ...s.args];
}

/**
 * Quotes one word for a systemd ExecStart= line: double quotes with C escapes where needed,
 * `%` as `%%` (specifiers) and `$` as `$$` (variable expansion), a lone `;` as `\;`.
 * @example systemdQuote("/srv/my site.yaml") // "\"/srv/my site.yaml\""
 */
export function systemdQuote(word: string): string {
  checkText("argument", word);
  if (word === ";") return "\\;";
  const escaped = word.replace(/%/g, "%%").replace(/\$/g, "$$$$");
  if (/^[A-Za-z0-9_@+=:,./-]+$/.test(word)) return escaped;
  return `"${escaped.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/** `%` → `%%`, for unit settings that expand specifiers (Description=, WorkingDirectory=). */
function specifierSafe(text: string): string {
  return text.replace(/%/g, "%%");
}

/** The unit names of a schedule. */
export function unitNames(name: string): { service: string; timer: string } {
  return { service: `lifeboat-${name}.service`, timer: `lifeboat-${name}.timer` };
}

/**
 * The two systemd unit files of a schedule, as text.
 * @example
 * const { service, timer } = systemdUnits({ name: "deis", recipe: "/srv/lifeboat/recipes/deis-backup.ts", config: "/etc/lifeboat/deis.yaml" });
 */
export function systemdUnits(spec: ScheduleSpec): { service: string; timer: string } {
  const s = resolveSpec(spec);
  const units = unitNames(s.name);
  const argv = scheduleCommand(s);
  const meta = META + JSON.stringify({ name: s.name, kind: "systemd", recipe: s.recipe, config: s.config, onCalendar: s.onCalendar, randomizedDelay: s.randomizedDelay, user: s.user, command: argv });
  const what = `lifeboat ${s.name}: ${basename(s.recipe)} --config ${s.config}`;
  const service = [
    meta,
    "# Written by lifeboat schedule:install; remove with schedule:remove. The recipe's own lock refuses overlapping runs (exit 4).",
    "[Unit]",
    `Description=${specifierSafe(what)}`,
    "Wants=network-online.target",
    "After=network-online.target",
    "",
    "[Service]",
    "Type=oneshot",
    `WorkingDirectory=${specifierSafe(s.repo)}`,
    `ExecStart=${argv.map(systemdQuote).join(" ")}`,
    ...(s.user ? [`User=${s.user}`] : []),
    "StandardOutput=journal",
    "StandardError=journal",
    `SyslogIdentifier=lifeboat-${s.name}`,
    "",
  ].join("\n");
  const timer = [
    meta,
    "# Written by lifeboat schedule:install; remove with schedule:remove.",
    "[Unit]",
    `Description=${specifierSafe(`${what} (schedule)`)}`,
    "",
    "[Timer]",
    `OnCalendar=${s.onCalendar}`,
    "Persistent=true",
    `RandomizedDelaySec=${s.randomizedDelay}`,
    `Unit=${units.service}`,
    "",
    "[Install]",
    "WantedBy=timers.target",
    "",
  ].join("\n");
  return { service, timer };
}

/** Seconds in a systemd time span ("30min", "1h 30min", "90", "2h30m"). Throws UsageError. */
export function parseTimespan(span: string): number {
  const units: Record<string, number> = {
    "": 1, s: 1, sec: 1, second: 1, seconds: 1, m: 60, min: 60, minute: 60, minutes: 60,
    h: 3600, hr: 3600, hour: 3600, hours: 3600, d: 86400, day: 86400, days: 86400, w: 604800, week: 604800, weeks: 604800,
  };
  const text = span.trim();
  let total = 0;
  const re = /(\d+(?:\.\d+)?)\s*([a-z]*)\s*/gy;
  let m: RegExpExecArray | null;
  let at = 0;
  while ((m = re.exec(text))) {
    if (!(m[2] in units)) break;
    total += Number(m[1]) * units[m[2]];
    at = re.lastIndex;
  }
  if (!text || at !== text.length) throw new UsageError(`'${span}' is not a time span`, "e.g. 30min, 1h, 90s, 1h 30min, 0");
  return total;
}

/**
 * The cron time fields for an OnCalendar expression cron can express (hourly, daily, weekly,
 * monthly, `HH:MM`, `*-*-* HH:MM[:SS]`). The randomized delay becomes a fixed offset derived
 * from the name, so schedules spread out as systemd's RandomizedDelaySec spreads them.
 * @example cronSchedule("daily", "30min", "deis") // "17 0 * * *"
 */
export function cronSchedule(onCalendar: string, randomizedDelay: string, name: string): string {
  const windowMin = Math.floor(parseTimespan(randomizedDelay) / 60);
  const offset = windowMin > 0 ? parseInt(createHash("sha256").update(name).digest("hex").slice(0, 8), 16) % windowMin : 0;
  const at = (h: number, m: number, rest: string) => {
    const t = (h * 60 + m + offset) % 1440;
    return `${t % 60} ${Math.floor(t / 60)} ${rest}`;
  };
  const cal = onCalendar.trim().toLowerCase();
  if (cal === "hourly") return `${offset % 60} * * * *`;
  if (cal === "daily" || cal === "midnight") return at(0, 0, "* * *");
  if (cal === "weekly") return at(0, 0, "* * 1");
  if (cal === "monthly") return at(0, 0, "1 * *");
  const hm = /^(?:\*-\*-\*\s+)?(\d{1,2}):(\d{2})(?::00)?$/.exec(cal);
  if (hm && Number(hm[1]) < 24 && Number(hm[2]) < 60) return at(Number(hm[1]), Number(hm[2]), "* * *");
  throw new UsageError(
    `cron cannot express OnCalendar '${onCalendar}' here`,
    "use hourly, daily, weekly, monthly or HH:MM, or give the cron fields with --cron-schedule 'M H DOM MON DOW'",
  );
}

function checkCronSchedule(fields: string): string {
  const f = fields.trim();
  if (/^@(hourly|daily|midnight|weekly|monthly|yearly|annually)$/.test(f)) return f;
  const parts = f.split(/\s+/);
  if (parts.length !== 5 || !parts.every((p) => /^[A-Za-z0-9*,/-]+$/.test(p))) {
    throw new UsageError(`'${fields}' is not a cron schedule`, "give five fields, minute hour day-of-month month day-of-week, e.g. '17 3 * * *'");
  }
  return parts.join(" ");
}

/** Options for {@link cronFile}. */
export interface CronOptions {
  /** The cron time fields (default: made from onCalendar and randomizedDelay, see {@link cronSchedule}). */
  cronSchedule?: string;
  /** Append the run's output to this file instead of sending it to syslog with `logger -t lifeboat-NAME`. */
  logFile?: string;
}

/**
 * The /etc/cron.d file of a schedule, as text: environment lines and one line that runs the
 * recipe from the repository, its output to syslog (`logger -t lifeboat-NAME`) or a log file.
 * @example const text = cronFile({ name: "deis", recipe, config }, { cronSchedule: "17 3 * * *" });
 */
export function cronFile(spec: ScheduleSpec, opts: CronOptions = {}): string {
  const s = resolveSpec(spec);
  const when = opts.cronSchedule ? checkCronSchedule(opts.cronSchedule) : cronSchedule(s.onCalendar, s.randomizedDelay, s.name);
  const argv = scheduleCommand(s);
  const logFile = opts.logFile ? checkPath("log file", opts.logFile) : "";
  const sink = logFile ? `>> ${shellQuote(logFile)} 2>&1` : `2>&1 | logger -t ${shellQuote(`lifeboat-${s.name}`)}`;
  // cron turns an unescaped % into a newline: every % of the command is written \%.
  const command = `cd ${shellQuote(s.repo)} && ${argv.map(shellQuote).join(" ")} ${sink}`.replace(/%/g, "\\%");
  const meta = META + JSON.stringify({ name: s.name, kind: "cron", recipe: s.recipe, config: s.config, onCalendar: s.onCalendar, randomizedDelay: s.randomizedDelay, cronSchedule: when, user: s.user || "root", command: argv, logFile });
  return [
    meta,
    "# Written by lifeboat schedule:install; remove with schedule:remove. The recipe's own lock refuses overlapping runs (exit 4).",
    "SHELL=/bin/sh",
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    `${when} ${s.user || "root"} ${command}`,
    "",
  ].join("\n");
}

/** True when systemd is the running init (it creates /run/systemd/system at boot). */
export function systemdRunning(): boolean {
  return existsSync("/run/systemd/system");
}

const SYSTEMD_DIRS = ["/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system"];

/** Options for {@link installSchedule} and {@link removeSchedule}. */
export interface InstallScheduleOptions extends CronOptions {
  /** Folder for the units (default /etc/systemd/system). */
  unitDir?: string;
  /** Folder for cron files (default /etc/cron.d). */
  cronDir?: string;
  /** Write a cron file instead of systemd units. */
  cron?: boolean;
  /** Run systemctl (daemon-reload, enable --now / disable --now). Default: when systemd is running and unitDir is one of its unit folders. */
  systemctl?: boolean;
  ctx?: Context;
}

/** What {@link installSchedule} wrote. */
export interface InstalledSchedule {
  kind: "systemd" | "cron";
  /** The files written (or that would be, in dry-run). */
  files: string[];
  /** Whether systemctl enabled the timer. */
  enabled: boolean;
}

function writeFileAtomic(path: string, text: string, mode: number): void {
  const f = partialFile(path);
  try {
    writeFileSync(f.tmp, text, { mode });
    chmodSync(f.tmp, mode);
    f.commit();
  } catch (e) {
    f.discard();
    throw new LifeboatError(`cannot write ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, {
      hint: "schedules are written as root into /etc; or point --unit-dir / --cron-dir elsewhere",
      cause: e,
    });
  }
}

function useSystemctl(o: InstallScheduleOptions, unitDir: string): boolean {
  return o.systemctl ?? (systemdRunning() && SYSTEMD_DIRS.includes(resolve(unitDir)));
}

function noSystemctlNote(ctx: Context, unitDir: string, commands: string[]): void {
  const why = systemdRunning() ? `${unitDir} is not one of systemd's unit folders` : "systemd is not running here (no /run/systemd/system)";
  ctx.log.info(`${why}: systemctl skipped; where the units are used, run: ${commands.join(" && ")}`);
}

/**
 * Installs a schedule: systemd units (then `systemctl daemon-reload` and `enable --now` the
 * timer, where systemd runs), or with `cron` a file in /etc/cron.d. Refuses a name already used
 * by the other kind. The recipe and the site file must exist. In dry-run it prints each file
 * and command and changes nothing.
 * @example
 * await installSchedule({ name: "deis", recipe: "/srv/lifeboat/recipes/deis-backup.ts", config: "/etc/lifeboat/deis.yaml" });
 * await installSchedule({ name: "hoss", recipe, config, onCalendar: "02:30" }, { cron: true, logFile: "/var/log/lifeboat-hoss.log" });
 */
export async function installSchedule(spec: ScheduleSpec, o: InstallScheduleOptions = {}): Promise<InstalledSchedule> {
  const ctx = o.ctx ?? useContext();
  const s = resolveSpec(spec);
  for (const [what, p] of [["recipe", s.recipe], ["site file", s.config], ["node", s.node]] as const) {
    if (!existsSync(p)) throw new UsageError(`${what} ${p} does not exist`, what === "node" ? "give --node /path/to/node (Node 20 or newer)" : undefined);
  }
  const unitDir = o.unitDir ?? UNIT_DIR;
  const cronDir = o.cronDir ?? CRON_DIR;
  const units = unitNames(s.name);
  const other = o.cron ? [join(unitDir, units.timer), join(unitDir, units.service)] : [join(cronDir, `lifeboat-${s.name}`)];
  const clash = other.find((p) => existsSync(p));
  if (clash) throw new UsageError(`a ${o.cron ? "systemd" : "cron"} schedule named '${s.name}' exists already (${clash})`, `remove it first (schedule:remove ${s.name}) or choose another --name`);

  const dir = o.cron ? cronDir : unitDir;
  if (!existsSync(dir)) {
    throw new UsageError(`${dir} does not exist`, o.cron ? "is cron installed (apt-get install cron)? or give --cron-dir" : "is systemd installed here? or give --unit-dir, or use --cron");
  }
  const files: [string, string][] = [];
  if (o.cron) {
    files.push([join(cronDir, `lifeboat-${s.name}`), cronFile(s, o)]);
  } else {
    if (which("systemd-analyze")) {
      for (const [argv, hint] of [
        [["systemd-analyze", "calendar", s.onCalendar], "e.g. daily, '*-*-* 02:30', 'Mon..Fri 03:00' (man systemd.time)"],
        [["systemd-analyze", "timespan", s.randomizedDelay], "e.g. 30min, 1h, 0"],
      ] as const) {
        await probe(argv, { ctx }).catch((e) => {
          throw new UsageError(`systemd does not accept '${argv[2]}' (${argv.slice(0, 2).join(" ")}): ${(e as Error).message.split("\n").pop()?.trim()}`, hint);
        });
      }
    } else parseTimespan(s.randomizedDelay);
    const u = systemdUnits(s);
    files.push([join(unitDir, units.service), u.service], [join(unitDir, units.timer), u.timer]);
  }
  for (const [path, text] of files) {
    const verb = existsSync(path) ? "replace" : "write";
    if (ctx.dryRun) {
      ctx.log.info(`[dry-run] would ${verb} ${path} (mode 0644):`);
      for (const line of text.trimEnd().split("\n")) ctx.log.info(`    ${line}`);
    } else {
      writeFileAtomic(path, text, 0o644);
      ctx.log.ok(`${verb === "write" ? "wrote" : "replaced"} ${path}`);
    }
  }
  let enabled = false;
  if (!o.cron) {
    const commands = [["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", units.timer]];
    if (useSystemctl(o, unitDir)) {
      for (const c of commands) await exec(c, { ctx });
      enabled = !ctx.dryRun;
    } else noSystemctlNote(ctx, unitDir, commands.map((c) => c.join(" ")));
  }
  return { kind: o.cron ? "cron" : "systemd", files: files.map(([p]) => p), enabled };
}

function readMeta(path: string): Record<string, unknown> | null {
  try {
    const first = readFileSync(path, "utf8").split("\n", 1)[0];
    if (!first.startsWith(META)) return null;
    return JSON.parse(first.slice(META.length)) as Record<string, unknown>;
  } catch {
    return null;
  }
}

function names(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw e;
  }
}

/**
 * The schedules lifeboat installed in the unit and cron folders (files it did not write are ignored).
 * @example for (const s of listSchedules()) console.log(s.name, s.kind, s.onCalendar);
 */
export function listSchedules(o: Pick<InstallScheduleOptions, "unitDir" | "cronDir"> = {}): ScheduleEntry[] {
  const unitDir = o.unitDir ?? UNIT_DIR;
  const cronDir = o.cronDir ?? CRON_DIR;
  const out: ScheduleEntry[] = [];
  const entry = (m: Record<string, unknown>, kind: "systemd" | "cron", files: string[]): ScheduleEntry => ({
    name: String(m.name),
    kind,
    recipe: String(m.recipe ?? ""),
    config: String(m.config ?? ""),
    onCalendar: String(m.onCalendar ?? ""),
    randomizedDelay: String(m.randomizedDelay ?? ""),
    ...(kind === "cron" ? { cronSchedule: String(m.cronSchedule ?? "") } : {}),
    user: String(m.user || "root"),
    command: Array.isArray(m.command) ? m.command.map(String) : [],
    files,
  });
  for (const f of names(unitDir)) {
    const m = /^lifeboat-([A-Za-z0-9_-]+)\.timer$/.exec(f);
    if (!m) continue;
    const meta = readMeta(join(unitDir, f));
    if (!meta) continue;
    const service = join(unitDir, unitNames(m[1]).service);
    out.push(entry(meta, "systemd", [join(unitDir, f), ...(existsSync(service) ? [service] : [])]));
  }
  for (const f of names(cronDir)) {
    if (!/^lifeboat-[A-Za-z0-9_-]+$/.test(f)) continue;
    const meta = readMeta(join(cronDir, f));
    if (meta && statSync(join(cronDir, f)).isFile()) out.push(entry(meta, "cron", [join(cronDir, f)]));
  }
  return out;
}

/**
 * Removes a schedule: disables and stops its timer (where systemd runs), deletes its files,
 * reloads systemd. Asks first (refused without --yes when nobody can answer); in dry-run it
 * prints what it would do. Throws UsageError when there is no such schedule.
 * @example await removeSchedule("deis");
 */
export async function removeSchedule(name: string, o: Pick<InstallScheduleOptions, "unitDir" | "cronDir" | "systemctl" | "ctx"> = {}): Promise<string[]> {
  const ctx = o.ctx ?? useContext();
  checkScheduleName(name);
  const unitDir = o.unitDir ?? UNIT_DIR;
  const found = listSchedules(o).filter((s) => s.name === name);
  if (!found.length) {
    throw new UsageError(`no schedule named '${name}' in ${unitDir} or ${o.cronDir ?? CRON_DIR}`, "schedule:list shows the installed ones");
  }
  const files = found.flatMap((s) => s.files);
  await ctx.confirm(`remove schedule '${name}' (${files.join(", ")})?`);
  const systemd = found.some((s) => s.kind === "systemd");
  const units = unitNames(name);
  const run = systemd && useSystemctl(o, unitDir);
  if (run) await exec(["systemctl", "disable", "--now", units.timer], { ctx });
  for (const f of files) {
    if (ctx.dryRun) ctx.log.info(`[dry-run] would remove ${f}`);
    else {
      rmSync(f, { force: true });
      ctx.log.ok(`removed ${f}`);
    }
  }
  if (run) await exec(["systemctl", "daemon-reload"], { ctx });
  else if (systemd) noSystemctlNote(ctx, unitDir, [`systemctl disable --now ${units.timer}`, "systemctl daemon-reload"]);
  return files;
}
