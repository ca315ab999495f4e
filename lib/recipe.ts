// The entry point of every recipe and task: parse settings, print help, take the lock,
// run the steps, print a coloured summary, and exit with a code that means something.
import { createHash } from "node:crypto";
import { join } from "node:path";
import process from "node:process";
import chalk from "chalk";
import { exitCodeOf, ExitCode, InterruptedError, LifeboatError } from "./errors.ts";
import { createContext, setDefaultContext, withContext, type Context } from "./context.ts";
import { killRunning } from "./exec.ts";
import { acquireLock } from "./lock.ts";
import { formatDuration, type LogSink } from "./log.ts";
import { GLOBAL_SETTINGS, helpText, type SettingSpecs, type SettingValues } from "./settings.ts";
import { printOutcomes, runSteps, StepFailed, type RunState, type Step, type StepApi, type StepOutcome } from "./steps.ts";

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
  /** Site-file sections of sibling recipes to ignore. */
  ignoreSections?: string[];
  /** For tests: argv, env and log sink instead of the process's; and whether to call process.exit (default true). */
  argv?: string[];
  env?: Record<string, string | undefined>;
  sink?: LogSink;
  exit?: boolean;
  interactive?: boolean;
}

/** A recipe: settings, a target for its lock and journal, and its steps. */
export interface RecipeDefinition<T extends SettingSpecs> extends MainDefinition<T> {
  /** What this run acts on; one lock and one journal per recipe and target. */
  target: (ctx: Context<T>) => string;
  /** The steps, in order. Built once per run; share data through `state`. */
  steps: (ctx: Context<T>) => Step[];
  /** Always runs after the steps (cleanup). */
  finally?: (ctx: Context<T>, api: StepApi) => Promise<void> | void;
  /** Lines printed under the summary when the run succeeds (archive path, sizes …). */
  report?: (ctx: Context<T>, state: RunState) => string[];
}

/** The outcome of main() or recipe() when exit is false. */
export interface MainResult {
  code: number;
  state?: RunState;
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
      ignoreSections: def.ignoreSections,
      interactive: def.interactive,
    });
  } catch (e) {
    out.write(`${chalk.red("✖ error:")} ${(e as Error).message}\n`);
    if (e instanceof LifeboatError && e.hint) out.write(`  ${chalk.dim("→")} ${e.hint}\n`);
    return finish(def, { code: exitCodeOf(e), error: e });
  }
  if (ctx.settings.help) {
    const usage = def.usage ?? `npx zx ${def.name}.ts [flags]`;
    process.stdout.write(helpText({ name: def.name, usage, description: def.description, settings: def.settings ?? {} }) + "\n");
    return finish(def, { code: ExitCode.Ok });
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
  } finally {
    if (bind) {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    }
  }
  return finish(def, result);
}

function finish(def: MainDefinition<SettingSpecs>, r: MainResult): MainResult {
  if (def.exit !== false) process.exit(r.code);
  return r;
}

/** A file-name-safe key for a target: readable prefix plus a short hash. */
export function targetKey(name: string, target: string): string {
  const slug = target.replace(/[^A-Za-z0-9._-]+/g, "_").slice(-48);
  const hash = createHash("sha256").update(target).digest("hex").slice(0, 8);
  return `${name}--${slug}-${hash}`;
}

/**
 * Runs a recipe: lock, steps with journal and resume, cleanup, summary.
 * @example
 * await recipe({ name: "demo-backup", description: "…", settings: {…},
 *   target: (ctx) => ctx.settings.dir, steps: (ctx) => [step("pack", () => packArchive(…))] });
 */
export function recipe<T extends SettingSpecs>(def: RecipeDefinition<T>): Promise<MainResult> {
  return main(def, async (ctx) => {
    const target = def.target(ctx);
    const key = targetKey(def.name, target);
    const g = ctx.settings as unknown as SettingValues<typeof GLOBAL_SETTINGS>;
    const stateDir = g["state-dir"];
    const lock = ctx.dryRun ? null : acquireLock({ dir: join(stateDir, "locks"), name: key });
    const t0 = Date.now();
    try {
      if (ctx.dryRun) ctx.log.info(chalk.magenta(`${def.name}: dry run — commands that change state are printed, not run`));
      const steps = def.steps(ctx);
      const { outcomes, state } = await runSteps(ctx as Context, steps, {
        journal: join(stateDir, "journal", `${key}.json`),
        target,
        resume: g.resume,
        finally: def.finally ? (api) => def.finally!(ctx, api) : undefined,
      });
      ctx.log.info("");
      ctx.log.info(chalk.bold(`${def.name} ${ctx.dryRun ? "dry run " : ""}summary`));
      printOutcomes(ctx as Context, outcomes);
      for (const line of def.report?.(ctx, state) ?? []) ctx.log.info(`  ${line}`);
      ctx.log.info(chalk.green(`${def.name} ${ctx.dryRun ? "dry run finished" : "finished"} in ${formatDuration(Date.now() - t0)}`));
      return { state, outcomes };
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
  run: (ctx: Context<T>) => Promise<Partial<MainResult> | void>;
}

/**
 * Declares a task (typed settings for its body).
 * @example export default task({ name: "archive:list", description: "…", settings: {…}, run: async (ctx) => {…} });
 */
export function task<T extends SettingSpecs>(def: Task<T>): Task<T> {
  return def;
}
