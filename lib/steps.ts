// Steps: a recipe is an ordered list of named steps, like a Kanister blueprint's phases.
//
// `runSteps` runs them in order and writes a journal after each one. When a step fails,
// the journal keeps the finished steps and the run's state, so `--resume` continues at
// the failed step instead of starting over. Cleanup goes in `finally` and always runs.
import { existsSync, mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import process from "node:process";
import chalk from "chalk";
import { LifeboatError, UsageError } from "./errors.ts";
import { formatDuration } from "./log.ts";
import type { Context } from "./context.ts";
import { pidAlive } from "./lock.ts";

/** State that steps share and the journal keeps across a resume. JSON values only. */
export type RunState = Record<string, unknown>;

/** What a step's function receives. */
export interface StepApi {
  /** Shared state; values set here survive into a resumed run. */
  state: RunState;
  /** Stores a secret in the state (re-registered for masking on resume). */
  secret(key: string, value: string): void;
}

/** Options for {@link step}. */
export interface StepOptions {
  /** Run the step only when true (default true); a skipped step shows "off" in the summary. */
  when?: boolean;
  /** A question the operator must confirm before this step (destructive steps). */
  confirm?: string;
}

/** One named step. */
export interface Step {
  name: string;
  run: (api: StepApi) => Promise<unknown> | unknown;
  opts: StepOptions;
}

/**
 * Declares a step.
 * @example step("create buckets", () => s3MakeBucket(client, "db_wal"))
 */
export function step(name: string, run: Step["run"], opts: StepOptions = {}): Step {
  return { name, run, opts };
}

/** How one step ended. */
export interface StepOutcome {
  name: string;
  status: "done" | "resumed" | "off" | "failed" | "not run";
  ms?: number;
  error?: string;
}

interface Journal {
  recipe: string;
  target: string;
  pid: number;
  status: "running" | "failed" | "done";
  started: string;
  steps: string[];
  done: string[];
  failed?: string;
  error?: string;
  state: RunState;
  secretKeys: string[];
}

/** Options for {@link runSteps}. */
export interface RunStepsOptions {
  /** Journal file; none in dry-run. */
  journal?: string;
  /** What this run acts on (recorded in the journal). */
  target: string;
  /** Continue the journal's failed run. */
  resume?: boolean;
  /** Always runs after the steps, failed or not (receives the state). */
  finally?: (api: StepApi) => Promise<void> | void;
}

/** The result of runSteps: outcomes and final state; throws after cleanup when a step fails. */
export interface RunResult {
  outcomes: StepOutcome[];
  state: RunState;
}

/** Error thrown by runSteps: the failed step's error, with the outcomes attached. */
export class StepFailed extends LifeboatError {
  readonly outcomes: StepOutcome[];
  readonly step: string;
  constructor(stepName: string, cause: unknown, outcomes: StepOutcome[], resumable: boolean) {
    const inner = cause instanceof LifeboatError ? cause : null;
    super(`step '${stepName}' failed: ${(cause as Error)?.message ?? String(cause)}`, {
      exitCode: inner?.exitCode,
      hint: [inner?.hint, resumable ? "fix the cause, then re-run with --resume to continue at this step" : undefined].filter(Boolean).join("; ") || undefined,
      cause,
    });
    this.step = stepName;
    this.outcomes = outcomes;
  }
}

function writeJournal(path: string, j: Journal): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(j, null, 2), { mode: 0o600 });
  renameSync(tmp, path);
}

/** Reads a journal, if any. */
export function readJournal(path: string): Journal | null {
  if (!existsSync(path)) return null;
  try {
    return JSON.parse(readFileSync(path, "utf8")) as Journal;
  } catch {
    return null;
  }
}

/** Runs steps in order with a journal, resume and a finally block. */
export async function runSteps(ctx: Context, steps: Step[], opts: RunStepsOptions): Promise<RunResult> {
  const names = steps.map((s) => s.name);
  if (new Set(names).size !== names.length) throw new LifeboatError(`duplicate step names in ${ctx.name}`);
  const journalPath = ctx.dryRun ? undefined : opts.journal;
  let prior = opts.journal ? readJournal(opts.journal) : null;
  if (prior && prior.status === "running" && pidAlive(prior.pid) && prior.pid !== process.pid) prior = null; // the lock prevents this; be safe
  let skip = new Set<string>();
  const state: RunState = {};
  const secretKeys = new Set<string>();
  if (opts.resume) {
    if (!prior || prior.status === "done") {
      throw new UsageError(`nothing to resume for ${ctx.name} (${opts.target})`, "run without --resume to start a new run");
    }
    if (prior.steps.join("\n") !== names.join("\n")) {
      throw new UsageError(`the journal's steps differ from this recipe's steps; cannot resume`, "run without --resume to start over");
    }
    skip = new Set(prior.done);
    Object.assign(state, prior.state);
    for (const k of prior.secretKeys ?? []) {
      secretKeys.add(k);
      if (typeof state[k] === "string") ctx.secrets.add(state[k] as string);
    }
    ctx.log.info(`resuming ${ctx.name}: ${prior.done.length} of ${names.length} steps already done${prior.failed ? `, continuing at '${prior.failed}'` : ""}`);
  } else if (prior && prior.status !== "done") {
    ctx.log.warn(`a previous run of ${ctx.name} stopped at step '${prior.failed ?? "?"}'; starting over (use --resume to continue it)`);
  }

  const api: StepApi = {
    state,
    secret(key, value) {
      ctx.secrets.add(value);
      secretKeys.add(key);
      state[key] = value;
    },
  };
  const journal: Journal = {
    recipe: ctx.name,
    target: opts.target,
    pid: process.pid,
    status: "running",
    started: new Date().toISOString(),
    steps: names,
    done: [...skip],
    state,
    secretKeys: [...secretKeys],
  };
  const save = () => journalPath && writeJournal(journalPath, { ...journal, secretKeys: [...secretKeys] });
  save();

  const outcomes: StepOutcome[] = steps.map((s) => ({ name: s.name, status: "not run" }));
  let failure: StepFailed | null = null;
  try {
    for (let i = 0; i < steps.length; i++) {
      const s = steps[i];
      if (skip.has(s.name)) {
        outcomes[i].status = "resumed";
        ctx.log.info(`${chalk.dim("↷")} ${chalk.dim(`[${i + 1}/${steps.length}] ${s.name}: done in an earlier run`)}`);
        continue;
      }
      if (s.opts.when === false) {
        outcomes[i].status = "off";
        ctx.log.info(`${chalk.dim("-")} ${chalk.dim(`[${i + 1}/${steps.length}] ${s.name}: off`)}`);
        continue;
      }
      ctx.log.step(i + 1, steps.length, s.name);
      const t0 = Date.now();
      try {
        if (s.opts.confirm) await ctx.confirm(s.opts.confirm);
        await s.run(api);
      } catch (e) {
        outcomes[i] = { name: s.name, status: "failed", ms: Date.now() - t0, error: ctx.secrets.redact((e as Error)?.message ?? String(e)) };
        journal.status = "failed";
        journal.failed = s.name;
        journal.error = outcomes[i].error;
        save();
        failure = new StepFailed(s.name, e, outcomes, !!journalPath);
        break;
      }
      outcomes[i] = { name: s.name, status: "done", ms: Date.now() - t0 };
      journal.done.push(s.name);
      save();
    }
  } finally {
    if (opts.finally) {
      try {
        await opts.finally(api);
      } catch (e) {
        ctx.log.warn(`cleanup failed: ${(e as Error).message}`);
      }
    }
  }
  if (failure) throw failure;
  journal.status = "done";
  if (journalPath) {
    try {
      unlinkSync(journalPath);
    } catch { /* none */ }
  }
  return { outcomes, state };
}

/** Prints the coloured per-step summary. */
export function printOutcomes(ctx: Context, outcomes: StepOutcome[]): void {
  const width = Math.max(...outcomes.map((o) => o.name.length), 10);
  for (const o of outcomes) {
    const name = o.name.padEnd(width);
    const ms = o.ms !== undefined ? chalk.dim(formatDuration(o.ms)) : "";
    switch (o.status) {
      case "done":
        ctx.log.info(`  ${chalk.green("✔")} ${name}  ${ms}`);
        break;
      case "resumed":
        ctx.log.info(`  ${chalk.dim("↷")} ${chalk.dim(name)}  ${chalk.dim("done in an earlier run")}`);
        break;
      case "off":
        ctx.log.info(`  ${chalk.dim("-")} ${chalk.dim(name)}  ${chalk.dim("off")}`);
        break;
      case "failed":
        ctx.log.info(`  ${chalk.red("✖")} ${chalk.red(name)}  ${ms} ${chalk.red(o.error?.split("\n")[0] ?? "")}`);
        break;
      default:
        ctx.log.info(`  ${chalk.dim("·")} ${chalk.dim(name)}  ${chalk.dim("not run")}`);
    }
  }
}
