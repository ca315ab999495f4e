// Steps: a recipe is an ordered list of named steps, like a Kanister blueprint's phases.
//
// Each step has a stable `id` (what the journal and `--resume` know it by) and a `title`
// (what the operator reads; it may name hosts and buckets, and may change between runs).
// A step returns its typed output; later steps read it as `someStep.output`, so data flows
// through the recipe's closure, not through an untyped bag.
//
// `runSteps` runs the steps in order and writes a journal after each one: the ids done,
// their outputs (JSON), fan-out items done or failed, and the step cleanups still owed.
// When a step fails or the run is interrupted, `--resume` continues at the failed step with
// the earlier outputs restored. Outputs marked `secret` are never written: a resumed run
// runs that (read-only) step again. A step's `cleanup` always runs after it, like Kanister's
// deferPhase or Ansible's `always:`; a run killed before the cleanup ran owes it, and the
// next run of the same recipe and target pays it first.
import { existsSync, mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import process from "node:process";
import chalk from "chalk";
import { LifeboatError, UsageError } from "./errors.ts";
import { formatDuration } from "./log.ts";
import { withContext, type Context } from "./context.ts";
import { pidAlive } from "./lock.ts";
import { mapLimit } from "./limit.ts";

/** What a step's function receives. */
export interface StepApi {
  /** Registers a value as a secret: masked in every log line from now on. Returns it. */
  secret(value: string): string;
}

/** Options for {@link step}. */
export interface StepOptions {
  /** Run the step only when true (default true); a skipped step shows "off" in the summary. */
  when?: boolean;
  /** A question the operator must confirm before this step (destructive steps). */
  confirm?: string;
  /**
   * Always runs after the step, whether it succeeded or failed (restart what the step stopped).
   * Recorded in the journal before the step starts: a run killed in between owes it, and the
   * next run of this recipe and target runs it before anything else.
   */
  cleanup?: () => Promise<void> | void;
  /**
   * The output holds secrets (keys read from a cluster): it is never written to the journal,
   * and `--resume` runs this step again instead of restoring it, so it must be read-only.
   */
  secret?: boolean;
}

/** One step. Its output is there once it ran, or was restored from the journal. */
export interface Step<T = unknown> {
  /** Stable id: the journal and `--resume` match steps by it. Letters, digits, `.:_-`. */
  readonly id: string;
  /** What the operator reads in progress lines and the summary. */
  readonly title: string;
  readonly opts: StepOptions;
  /** The step's result. Reading it before the step ran throws (a recipe ordering bug). */
  readonly output: T;
  /** True once output is set. */
  readonly hasOutput: boolean;
  /** @internal the runner's hooks */
  readonly kind: "single" | "fanout";
  /** @internal */
  run(api: StepApi, ctx: Context, journal: FanOutJournal): Promise<T>;
  /** @internal */
  setOutput(value: T): void;
}

const ID = /^[A-Za-z0-9][A-Za-z0-9._:@-]*$/;

class StepImpl<T> implements Step<T> {
  readonly kind: "single" | "fanout" = "single";
  #output: { value: T } | null = null;
  readonly id: string;
  readonly title: string;
  private readonly fn: (api: StepApi) => Promise<T> | T;
  readonly opts: StepOptions;
  constructor(id: string, title: string, fn: (api: StepApi) => Promise<T> | T, opts: StepOptions) {
    this.id = id;
    this.title = title;
    this.fn = fn;
    this.opts = opts;
    if (!ID.test(id)) throw new LifeboatError(`step id '${id}' must be letters, digits and . : _ @ - (it names the step in the journal)`);
  }
  get output(): T {
    if (!this.#output) throw new LifeboatError(`step '${this.id}' has no output yet: a step reads it before '${this.id}' ran`);
    return this.#output.value;
  }
  get hasOutput(): boolean {
    return this.#output !== null;
  }
  setOutput(value: T): void {
    this.#output = { value };
  }
  async run(api: StepApi, _ctx: Context, _journal: FanOutJournal): Promise<T> {
    const value = await this.fn(api);
    this.setOutput(value);
    return value;
  }
}

/**
 * Declares a step: a stable id, the title the operator reads, and what it does. What the
 * function returns (JSON values) is the step's `output`, which later steps read.
 * @example
 * const dump = step("dump", "dump the database (pg_dumpall)", () => pgDumpAll(db, `${staging}/dump.sql`));
 * const pack = step("pack", "pack the archive", () =>
 *   backupArchive(staging, { folder: "/var/backups/lifeboat", name: "demo-backup", meta: { dumpBytes: dump.output.bytes } }));
 */
export function step<T>(id: string, title: string, run: (api: StepApi) => Promise<T> | T, opts?: StepOptions): Step<Awaited<T>> {
  return new StepImpl(id, title, run as (api: StepApi) => Promise<Awaited<T>>, opts ?? {});
}

/** Options for {@link fanOut}. */
export interface FanOutOptions<I> extends StepOptions {
  /** The item's key: unique, stable across runs (a host name, "host/component"). */
  key: (item: I) => string;
  /** How many items run at once (default 4). */
  concurrency?: number;
}

/** How one fan-out item ended, as the journal keeps it. */
export interface FanOutItem {
  status: "done" | "failed";
  output?: unknown;
  error?: string;
}

/** @internal per-item results of a fan-out step, journaled after each item. */
export interface FanOutJournal {
  items: Record<string, FanOutItem>;
  save(): void;
  /** The step's number (1-based), for the fault point. */
  index?: number;
}

class FanOutImpl<I, T> extends StepImpl<Record<string, T>> {
  override readonly kind = "fanout" as const;
  private readonly items: readonly I[] | (() => readonly I[]);
  private readonly each: (item: I, api: StepApi) => Promise<T> | T;
  private readonly fopts: FanOutOptions<I>;
  constructor(
    id: string,
    title: string,
    items: readonly I[] | (() => readonly I[]),
    each: (item: I, api: StepApi) => Promise<T> | T,
    fopts: FanOutOptions<I>,
  ) {
    super(id, title, () => ({}), fopts);
    this.items = items;
    this.each = each;
    this.fopts = fopts;
    if (typeof items !== "function") this.checkKeys(items);
  }
  /** Throws when two items share a key; returns the items. */
  private checkKeys(items: readonly I[]): readonly I[] {
    const keys = items.map(this.fopts.key);
    const dup = keys.find((k, i) => keys.indexOf(k) !== i);
    if (dup !== undefined) throw new LifeboatError(`fan-out step '${this.id}': two items have the key '${dup}'`);
    return items;
  }
  override async run(api: StepApi, ctx: Context, journal: FanOutJournal): Promise<Record<string, T>> {
    const items = typeof this.items === "function" ? this.checkKeys(this.items()) : this.items;
    const out: Record<string, T> = {};
    const todo: I[] = [];
    for (const item of items) {
      const k = this.fopts.key(item);
      const prior = journal.items[k];
      if (prior?.status === "done" && !this.fopts.secret) {
        out[k] = prior.output as T;
        ctx.log.info(`  ${chalk.dim("↷")} ${chalk.dim(`${k}: done in an earlier run`)}`);
      } else todo.push(item);
    }
    const results = await mapLimit(todo, this.fopts.concurrency ?? 4, async (item: I) => {
      const k = this.fopts.key(item);
      const t0 = Date.now();
      try {
        const value = await this.each(item, api);
        killAtRecord(`${this.id}@${k}`, `${this.id}@*`, `#${journal.index}@*`);
        out[k] = value;
        journal.items[k] = { status: "done", output: this.fopts.secret ? undefined : value };
        ctx.log.ok(`${k}: done ${chalk.dim(formatDuration(Date.now() - t0))}`);
      } catch (e) {
        const error = ctx.secrets.redact((e as Error)?.message ?? String(e));
        journal.items[k] = { status: "failed", error };
        ctx.log.error(`${k}: ${error.split("\n")[0]}`);
        throw e;
      } finally {
        journal.save();
      }
    }, { signal: ctx.signal });
    const failed = results.map((r, i) => ({ r, k: this.fopts.key(todo[i]) })).filter((x) => !x.r.ok);
    if (ctx.signal.aborted) throw ctx.signal.reason;
    if (failed.length) {
      throw new FanOutFailed(this.id, failed.map((f) => ({ key: f.k, error: (f.r as { error: unknown }).error })), items.length);
    }
    this.setOutput(out);
    return out;
  }
}

/** A fan-out step whose items did not all succeed: the others finished, and --resume retries only these. */
export class FanOutFailed extends LifeboatError {
  readonly stepId: string;
  readonly failures: { key: string; error: unknown }[];
  constructor(stepId: string, failures: { key: string; error: unknown }[], total: number) {
    const inner = failures.map((f) => f.error).find((e) => e instanceof LifeboatError) as LifeboatError | undefined;
    super(`${failures.length} of ${total} failed: ${failures.map((f) => `${f.key} (${((f.error as Error)?.message ?? String(f.error)).split("\n")[0]})`).join("; ")}`, {
      exitCode: inner?.exitCode,
      hint: inner?.hint,
    });
    this.stepId = stepId;
    this.failures = failures;
  }
}

/**
 * Declares a fan-out step: the same work over a list of items (hosts, components), at most
 * `concurrency` at once. One item's failure does not stop the others; the journal records
 * each item, and `--resume` runs only the items that failed or never ran. The output maps
 * each item's key to its result. `items` may be a function, called when the step runs: for
 * items an earlier step finds (the volumes a listing step returned).
 * @example
 * const tars = fanOut("configs", "tar /etc/haproxy on each load balancer", hosts,
 *   { key: (h) => h.name, concurrency: 4 },
 *   (h) => sshTar(h, "/etc/haproxy", `${staging}/${h.name}.tar`));
 */
export function fanOut<I, T>(id: string, title: string, items: readonly I[] | (() => readonly I[]), opts: FanOutOptions<I>, each: (item: I, api: StepApi) => Promise<T> | T): Step<Record<string, Awaited<T>>> {
  return new FanOutImpl(id, title, items, each as (item: I, api: StepApi) => Promise<Awaited<T>>, opts);
}

/** How one step ended. */
export interface StepOutcome {
  id: string;
  /** The title as this run showed it. */
  name: string;
  status: "done" | "resumed" | "off" | "failed" | "not run";
  ms?: number;
  error?: string;
  /** Fan-out steps: items done and failed (keys). */
  items?: { done: string[]; failed: string[] };
}

interface Journal {
  version: 2;
  recipe: string;
  target: string;
  pid: number;
  status: "running" | "failed" | "done";
  started: string;
  /** The steps as this run had them (id and title), for people reading the file. */
  steps: { id: string; title: string }[];
  /** Ids of steps done. */
  done: string[];
  /** Outputs of done steps, by id (secret steps are never here). */
  outputs: Record<string, unknown>;
  /** Fan-out items, by step id and item key. */
  items: Record<string, Record<string, FanOutItem>>;
  /** Steps whose cleanup has not run yet (the run died between the step's start and its cleanup). */
  owedCleanup: string[];
  failed?: string;
  error?: string;
}

/** Options for {@link runSteps}. */
export interface RunStepsOptions {
  /** Journal file; none in dry-run. */
  journal?: string;
  /** What this run acts on (recorded in the journal). */
  target: string;
  /** Continue the journal's failed run. */
  resume?: boolean;
  /** Always runs after the steps, failed or not. */
  finally?: () => Promise<void> | void;
  /** false: a failed run cannot be continued with --resume (its hint says to run it again); default true. */
  resumable?: boolean;
}

/** The result of runSteps; it throws StepFailed (after cleanup) when a step fails. */
export interface RunResult {
  outcomes: StepOutcome[];
}

/** Error thrown by runSteps: the failed step's error, with the outcomes attached. */
export class StepFailed extends LifeboatError {
  readonly outcomes: StepOutcome[];
  readonly step: string;
  constructor(title: string, cause: unknown, outcomes: StepOutcome[], journaled: boolean, resumable = true) {
    const inner = cause instanceof LifeboatError ? cause : null;
    super(`step '${title}' failed: ${(cause as Error)?.message ?? String(cause)}`, {
      exitCode: inner?.exitCode,
      hint: [inner?.hint, journaled ? (resumable ? "fix the cause, then re-run with --resume to continue at this step" : "fix the cause, then run it again (this run cannot be resumed)") : undefined].filter(Boolean).join("; ") || undefined,
      cause,
    });
    this.step = title;
    this.outcomes = outcomes;
  }
}

function writeJournal(path: string, j: Journal): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(j, null, 2), { mode: 0o600 });
  renameSync(tmp, path);
}

/**
 * A fault point for the drills and tests (docs/faults.md): with LIFEBOAT_FAULT_KILL_AT_RECORD set
 * to a step id or its number (`#3`), or for a fan-out item to STEP@ITEM or STEP@* (`#3@*`: the
 * first item to finish), the process SIGKILLs itself once that step's
 * work is done and before the journal records it. That is the moment a resumed run meets its own
 * finished work, which every step must take as done (a kill lands there only by chance otherwise).
 */
function killAtRecord(...names: string[]): void {
  const at = process.env.LIFEBOAT_FAULT_KILL_AT_RECORD;
  if (at && names.includes(at)) process.kill(process.pid, "SIGKILL");
}

/** Reads a journal, if any (journals of an older format read as none). */
export function readJournal(path: string): Journal | null {
  if (!existsSync(path)) return null;
  try {
    const j = JSON.parse(readFileSync(path, "utf8")) as Journal;
    return j.version === 2 ? j : null;
  } catch {
    return null;
  }
}

/** Runs steps in order with a journal, resume, owed cleanups and a finally block. */
export async function runSteps(ctx: Context, steps: Step[], opts: RunStepsOptions): Promise<RunResult> {
  const ids = steps.map((s) => s.id);
  const dup = ids.find((id, i) => ids.indexOf(id) !== i);
  if (dup !== undefined) throw new LifeboatError(`two steps of ${ctx.name} have the id '${dup}'`);
  const journalPath = ctx.dryRun ? undefined : opts.journal;
  let prior = opts.journal ? readJournal(opts.journal) : null;
  if (prior && prior.status === "running" && pidAlive(prior.pid) && prior.pid !== process.pid) prior = null; // the lock prevents this; be safe
  const byId = new Map(steps.map((s) => [s.id, s]));
  const skip = new Set<string>();
  const journal: Journal = {
    version: 2,
    recipe: ctx.name,
    target: opts.target,
    pid: process.pid,
    status: "running",
    started: new Date().toISOString(),
    steps: steps.map((s) => ({ id: s.id, title: ctx.secrets.redact(s.title) })), // titles may quote a URL with its password
    done: [],
    outputs: {},
    items: {},
    owedCleanup: [...(prior?.owedCleanup ?? [])],
  };
  const save = () => journalPath && writeJournal(journalPath, journal);

  if (opts.resume) {
    if (!prior || prior.status === "done") {
      throw new UsageError(`nothing to resume for ${ctx.name} (${opts.target})`, "run without --resume to start a new run");
    }
    for (const id of prior.done) {
      const s = byId.get(id);
      if (!s) {
        ctx.log.warn(`the journal's step '${id}' is not in this recipe any more; ignored`);
        continue;
      }
      if (s.opts.secret) continue; // its output was never written: run it again
      skip.add(id);
      journal.done.push(id);
      if (id in prior.outputs) {
        journal.outputs[id] = prior.outputs[id];
        s.setOutput(prior.outputs[id]);
      }
    }
    for (const [id, items] of Object.entries(prior.items ?? {})) if (byId.has(id)) journal.items[id] = items;
    const at = prior.failed ? byId.get(prior.failed)?.title ?? prior.failed : undefined;
    ctx.log.info(`resuming ${ctx.name}: ${skip.size} of ${steps.length} steps already done${at ? `, continuing at '${at}'` : ""}`);
  } else if (prior && prior.status !== "done") {
    ctx.log.warn(`a previous run of ${ctx.name} stopped at step '${prior.failed ?? "?"}'; starting over (use --resume to continue it)`);
  }

  const api: StepApi = { secret: (value) => (ctx.secrets.add(value), value) };
  // Cleanups run after an interrupt too (restart the service a step stopped, remove staging):
  // they see a context whose signal has not fired, so their commands start. A second
  // SIGINT/SIGTERM still ends the process at once (lib/recipe.ts).
  const cleanupCtx: Context = Object.create(ctx, { signal: { value: new AbortController().signal } });
  const cleanly = <R>(fn: () => R) => withContext(cleanupCtx, fn);
  const runCleanup = async (s: Step, why: string) => {
    if (!s.opts.cleanup) return;
    try {
      if (why) ctx.log.info(`${chalk.dim("↺")} cleanup of '${s.title}' ${why}`);
      await cleanly(() => s.opts.cleanup!());
      journal.owedCleanup = journal.owedCleanup.filter((id) => id !== s.id);
      save();
    } catch (e) {
      ctx.log.warn(`cleanup of '${s.title}' failed: ${(e as Error).message}; it runs again with the next run`);
    }
  };

  save();
  // Cleanups a killed run owed (a service it stopped, for example) come first.
  for (const id of [...journal.owedCleanup]) {
    const s = byId.get(id);
    if (s) await runCleanup(s, "(owed by a run that was killed)");
    else journal.owedCleanup = journal.owedCleanup.filter((x) => x !== id);
  }

  const outcomes: StepOutcome[] = steps.map((s) => ({ id: s.id, name: s.title, status: "not run" }));
  let failure: StepFailed | null = null;
  try {
    for (let i = 0; i < steps.length; i++) {
      const s = steps[i];
      if (ctx.signal.aborted) {
        failure = fail(i, ctx.signal.reason, 0);
        break;
      }
      if (skip.has(s.id)) {
        outcomes[i].status = "resumed";
        ctx.log.info(`${chalk.dim("↷")} ${chalk.dim(`[${i + 1}/${steps.length}] ${s.title}: done in an earlier run`)}`);
        continue;
      }
      if (s.opts.when === false) {
        outcomes[i].status = "off";
        ctx.log.info(`${chalk.dim("-")} ${chalk.dim(`[${i + 1}/${steps.length}] ${s.title}: off`)}`);
        continue;
      }
      ctx.log.step(i + 1, steps.length, s.title);
      const t0 = Date.now();
      const items: FanOutJournal = {
        items: (journal.items[s.id] ??= {}),
        save,
        index: i + 1,
      };
      try {
        if (s.opts.confirm) await ctx.confirm(s.opts.confirm);
        if (s.opts.cleanup && !journal.owedCleanup.includes(s.id)) {
          journal.owedCleanup.push(s.id);
          save();
        }
        try {
          await s.run(api, ctx, items);
        } finally {
          await runCleanup(s, "");
        }
        if (ctx.signal.aborted) throw ctx.signal.reason;
      } catch (e) {
        failure = fail(i, ctx.signal.aborted ? ctx.signal.reason : e, Date.now() - t0);
        break;
      }
      killAtRecord(s.id, `#${i + 1}`);
      outcomes[i] = { id: s.id, name: s.title, status: "done", ms: Date.now() - t0, items: itemsOf(s) };
      journal.done.push(s.id);
      if (!s.opts.secret && s.hasOutput && s.output !== undefined) journal.outputs[s.id] = s.output;
      save();
    }
  } finally {
    if (opts.finally) {
      try {
        await cleanly(() => opts.finally!());
      } catch (e) {
        ctx.log.warn(`cleanup failed: ${(e as Error).message}`);
      }
    }
  }
  if (failure) throw failure;
  journal.status = "done";
  if (journalPath) {
    if (journal.owedCleanup.length) save();
    else {
      try {
        unlinkSync(journalPath);
      } catch { /* none */ }
    }
  }
  return { outcomes };

  function itemsOf(s: Step): StepOutcome["items"] {
    if (s.kind !== "fanout") return undefined;
    const all = Object.entries(journal.items[s.id] ?? {});
    return { done: all.filter(([, v]) => v.status === "done").map(([k]) => k), failed: all.filter(([, v]) => v.status === "failed").map(([k]) => k) };
  }

  function fail(i: number, e: unknown, ms: number): StepFailed {
    const s = steps[i];
    outcomes[i] = { id: s.id, name: s.title, status: "failed", ms, error: ctx.secrets.redact((e as Error)?.message ?? String(e)), items: itemsOf(s) };
    journal.status = "failed";
    journal.failed = s.id;
    journal.error = outcomes[i].error;
    save();
    return new StepFailed(s.title, e, outcomes, !!journalPath, opts.resumable !== false);
  }
}

/** Prints the coloured per-step summary (fan-out steps get a line per failed item). */
export function printOutcomes(ctx: Context, outcomes: StepOutcome[]): void {
  const width = Math.max(...outcomes.map((o) => o.name.length), 10);
  for (const o of outcomes) {
    const name = o.name.padEnd(width);
    const ms = o.ms !== undefined ? chalk.dim(formatDuration(o.ms)) : "";
    const count = o.items ? chalk.dim(` ${o.items.done.length}/${o.items.done.length + o.items.failed.length} done`) : "";
    switch (o.status) {
      case "done":
        ctx.log.info(`  ${chalk.green("✔")} ${name}  ${ms}${count}`);
        break;
      case "resumed":
        ctx.log.info(`  ${chalk.dim("↷")} ${chalk.dim(name)}  ${chalk.dim("done in an earlier run")}`);
        break;
      case "off":
        ctx.log.info(`  ${chalk.dim("-")} ${chalk.dim(name)}  ${chalk.dim("off")}`);
        break;
      case "failed":
        ctx.log.info(`  ${chalk.red("✖")} ${chalk.red(name)}  ${ms}${count} ${chalk.red(o.error?.split("\n")[0] ?? "")}`);
        break;
      default:
        ctx.log.info(`  ${chalk.dim("·")} ${chalk.dim(name)}  ${chalk.dim("not run")}`);
    }
  }
}
