// The entry point of every recipe and task: parse settings, print help, take the lock,
// run the steps, print a coloured summary, and exit with a code that means something.
import { createHash } from "node:crypto";
import { join } from "node:path";
import process from "node:process";
import chalk from "chalk";
import { exitCodeOf, ExitCode, InterruptedError, LifeboatError } from "./errors.ts";
import { createContext, setDefaultContext, withContext, type Context } from "./context.ts";
import { killRunning } from "./exec.ts";
import { noteTarget, notifyFailure } from "./notify.ts";
import { acquireLock } from "./lock.ts";
import { withoutCredentials } from "./secrets.ts";
import { formatDuration, type LogSink } from "./log.ts";
import { GLOBAL_SETTINGS, helpText, type SettingSpecs, type SettingValues } from "./settings.ts";
import { printOutcomes, readJournal, runSteps, StepFailed, type Step, type StepOutcome } from "./steps.ts";

/** What every entry point declares. */
export interface MainDefinition<T extends SettingSpecs> {
  /** Recipe or task name ("deis-backup"). */
  name: string;
  /** One line: what it does. */
  description: string;
  /** Usage line for --help. */
  usage?: string;
  /** The settings it reads. */
  settings?: T;
  /** More settings tables a site file given to this entry point may hold (accepted, ignored). */
  siteKnown?: SettingSpecs[];
  /** For tests: argv, env and log sink instead of the process's; and whether to call process.exit (default true). */
  argv?: string[];
  env?: Record<string, string | undefined>;
  sink?: LogSink;
  exit?: boolean;
  interactive?: boolean;
}

/** What a recipe's plan returns: its steps, its cleanup and its report, sharing one closure. */
export interface Plan {
  /** The steps, in order (see step() and fanOut()). */
  // deno-lint-ignore no-explicit-any
  steps: Step<any>[];
  /** Always runs after the steps, failed or not (close clients, remove staging). */
  cleanup?: () => Promise<void> | void;
  /** Lines printed under the summary when the run succeeds (archive path, sizes …); steps' outputs are there. */
  report?: () => string[];
  /** false when a failed run cannot be continued with --resume (the failure's hint then says to run it again); default true. */
  resumable?: boolean;
}

/** A recipe: settings, a target for its lock and journal, and a plan. */
export interface RecipeDefinition<T extends SettingSpecs> extends MainDefinition<T> {
  /** What this run acts on; one lock and one journal per recipe and target. */
  target: (ctx: Context<T>) => string;
  /**
   * Builds the run's steps once, after settings are parsed; values shared by steps live in this
   * closure. `prior` holds what the run being resumed recorded (see {@link PriorRun}).
   */
  plan: (ctx: Context<T>, prior: PriorRun) => Plan;
}

/**
 * What the run being continued (--resume) recorded, for the values a plan must keep from it: a
 * name or date taken from the clock when that run started, which a resumed run (after midnight,
 * say) must not take anew. Empty for a new run.
 * @example const date = prior.output<{ date: string }>("backupsys")?.date ?? dayName(new Date());
 */
export interface PriorRun {
  /** The output of a step that run finished, if any (undefined for a new run). */
  output<O>(id: string): O | undefined;
}

/** The outcome of main() or recipe() when exit is false. */
export interface MainResult {
  code: number;
  outcomes?: StepOutcome[];
  error?: unknown;
}

/**
 * Runs an entry point: context, --help, signals, errors and exit codes.
 * @example await main({ name: "archive:verify", description: "…" }, async (ctx) => { … });
 */
export async function main<T extends SettingSpecs>(
  def: MainDefinition<T>,
  body: (ctx: Context<T>) => Promise<Partial<MainResult> | void>,
): Promise<MainResult> {
  const out = def.sink ?? process.stderr;
  let ctx: Context<T>;
  try {
    ctx = createContext({
      name: def.name,
      settings: def.settings,
      argv: def.argv,
      env: def.env,
      sink: def.sink,
      siteKnown: def.siteKnown,
      interactive: def.interactive,
    });
  } catch (e) {
    out.write(`${chalk.red("✖ error:")} ${(e as Error).message}\n`);
    if (e instanceof LifeboatError && e.hint) out.write(`  ${chalk.dim("→")} ${e.hint}\n`);
    return await finish(def, { code: exitCodeOf(e), error: e });
  }
  if (ctx.settings.help) {
    const usage = def.usage ?? `npx zx ${def.name}.ts [flags]`;
    process.stdout.write(helpText({ name: def.name, usage, description: def.description, settings: def.settings ?? {} }) + "\n");
    return await finish(def, { code: ExitCode.Ok });
  }
  setDefaultContext(ctx as Context);

  let interrupted: string | null = null;
  const onSignal = (sig: NodeJS.Signals) => {
    if (interrupted) process.exit(sig === "SIGTERM" ? 143 : 130);
    interrupted = sig;
    ctx.abort(new InterruptedError(sig));
    ctx.log.warn(`${sig}: stopping the running command and cleaning up (again to quit at once)`);
    killRunning("SIGTERM");
  };
  const bind = def.exit !== false;
  if (bind) {
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  }
  const t0 = Date.now();
  let result: MainResult;
  try {
    const r = (await withContext(ctx as Context, () => body(ctx))) ?? {};
    result = { code: ExitCode.Ok, ...r };
    if (interrupted) throw new InterruptedError(interrupted);
  } catch (e) {
    const err = interrupted && !(e instanceof InterruptedError) ? new InterruptedError(interrupted) : e;
    if (e instanceof StepFailed) printOutcomes(ctx, e.outcomes);
    ctx.log.error((e as Error)?.message ?? String(e));
    if (e instanceof LifeboatError && e.hint) ctx.log.info(`  ${chalk.dim("→")} ${e.hint}`);
    const verifyProblems = (e as { problems?: string[] }).problems ?? ((e as { cause?: { problems?: string[] } }).cause?.problems);
    if (verifyProblems?.length) for (const p of verifyProblems.slice(0, 20)) ctx.log.info(`    ${p}`);
    if (ctx.settings.verbose && (e as Error)?.stack) ctx.log.debug((e as Error).stack!);
    ctx.log.info(chalk.red(`${def.name} failed after ${formatDuration(Date.now() - t0)} (exit ${exitCodeOf(err)})`));
    result = { code: exitCodeOf(err), error: err, outcomes: e instanceof StepFailed ? e.outcomes : undefined };
  }
  // The failure hook (notify.command; lib/notify.ts): bounded, and never changes the exit code.
  if (result.code !== ExitCode.Ok) await notifyFailure(ctx as Context, result, new Date(t0));
  // The signal handlers (bound only when this process exits here) stay bound up to process.exit:
  // a signal in that window, with no handler, would kill the process by its default action and
  // hide the run's own exit code (the fault matrix caught a SIGINT that came as a finished run was
  // exiting: "exit SIGINT, want 130"). A first signal during the failure hook cuts the hook short.
  return await finish(def, result);
}

async function finish(def: MainDefinition<SettingSpecs>, r: MainResult): Promise<MainResult> {
  if (def.exit === false) return r;
  // What is still queued for stdout and stderr goes out first: process.exit drops it. A pipe's
  // writes are synchronous only while its file is blocking, and a child that shares our stderr
  // (ssh, docker) may set it non-blocking: a dry run's last 8 KiB, the summary among them, went
  // missing in about one run in five. Bounded, for a reader that has gone away.
  await Promise.race([Promise.all([drained(process.stdout), drained(process.stderr)]), new Promise((res) => setTimeout(res, 10_000).unref())]);
  process.exit(r.code);
}

/** Resolves once everything written to a stream before the call has been handed to the OS. */
function drained(s: NodeJS.WriteStream): Promise<void> {
  if (!s.writableLength || s.destroyed) return Promise.resolve();
  return new Promise((res) => s.write("", () => res()));
}

/** A file-name-safe key for a target: readable prefix plus a short hash. */
export function targetKey(name: string, target: string): string {
  const slug = target.replace(/[^A-Za-z0-9._-]+/g, "_").slice(-48);
  const hash = createHash("sha256").update(target).digest("hex").slice(0, 8);
  return `${name}--${slug}-${hash}`;
}

/**
 * Runs a recipe: settings, --help, lock, steps with journal and resume, cleanup, summary, exit code.
 * @example
 * await recipe({
 *   name: "demo-backup",
 *   description: "back up /srv/demo into one verified archive",
 *   settings: { "backups.dir": { describe: "folder for archives", default: "/var/backups/lifeboat" } },
 *   target: (ctx) => ctx.settings["backups.dir"],
 *   plan: (ctx) => {
 *     const pack = step("pack", "pack /srv/demo", () => backupArchive("/srv/demo", { folder: ctx.settings["backups.dir"], name: "demo", meta: { source: "/srv/demo" } }));
 *     return { steps: [pack], report: () => [`archive ${pack.output.path}`] };
 *   },
 * });
 */
export function recipe<T extends SettingSpecs>(def: RecipeDefinition<T>): Promise<MainResult> {
  return main(def, async (ctx) => {
    // A URL's credentials never reach the lock's and journal's names or the journal itself.
    const target = withoutCredentials(def.target(ctx));
    noteTarget(ctx as Context, target);
    const key = targetKey(def.name, target);
    const g = ctx.settings as unknown as SettingValues<typeof GLOBAL_SETTINGS>;
    const stateDir = g["state-dir"];
    const lock = ctx.dryRun ? null : acquireLock({ dir: join(stateDir, "locks"), name: key });
    const t0 = Date.now();
    try {
      if (ctx.dryRun) ctx.log.info(chalk.magenta(`${def.name}: dry run — commands that change state are printed, not run`));
      const journal = join(stateDir, "journal", `${key}.json`);
      const was = g.resume ? readJournal(journal) : null;
      const prior: PriorRun = { output: <O>(id: string) => (was?.done.includes(id) ? (was.outputs[id] as O) : undefined) };
      const plan = def.plan(ctx, prior);
      const { outcomes } = await runSteps(ctx as Context, plan.steps, {
        journal,
        target,
        resume: g.resume,
        finally: plan.cleanup,
        resumable: plan.resumable,
      });
      ctx.log.info("");
      ctx.log.info(chalk.bold(`${def.name} ${ctx.dryRun ? "dry run " : ""}summary`));
      printOutcomes(ctx as Context, outcomes);
      for (const line of plan.report?.() ?? []) ctx.log.info(`  ${line}`);
      ctx.log.info(chalk.green(`${def.name} ${ctx.dryRun ? "dry run finished" : "finished"} in ${formatDuration(Date.now() - t0)}`));
      return { outcomes };
    } finally {
      lock?.release();
    }
  });
}

/** A named task for tasks/run.ts: settings plus a body run under main(). */
export interface Task<T extends SettingSpecs = SettingSpecs> {
  /** "archive:verify" */
  name: string;
  /** One line for --list and --help. */
  description: string;
  usage?: string;
  settings?: T;
  /** More tables a site file given to this task may hold (ANY_SITE_KEYS: any key; the file is a recipe's). */
  siteKnown?: SettingSpecs[];
  run: (ctx: Context<T>) => Promise<Partial<MainResult> | void>;
}

/**
 * Declares a task (typed settings for its body).
 * @example export default task({ name: "archive:list", description: "…", settings: {…}, run: async (ctx) => {…} });
 */
export function task<T extends SettingSpecs>(def: Task<T>): Task<T> {
  return def;
}
