// The failure hook: when a run fails (exit ≠ 0, interrupted included) and `notify.command` is
// set, that command runs with the run's summary on stdin and in LIFEBOAT_* environment
// variables, so a night's failed backup reaches someone (`mail`, a webhook through `curl`).
//
// The hook cannot hide the run's own exit code: it runs for at most `notify.timeout` seconds
// (then its process group is killed), and its failure is only a warning. Secrets are redacted
// in the summary, and the recipe's secret env vars are not passed on to it. docs/monitoring.md
// has the examples.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { exitCodeOf, LifeboatError } from "./errors.ts";
import { shellJoin } from "./exec.ts";
import type { Context } from "./context.ts";
import type { StepOutcome } from "./steps.ts";

/** What a failed run tells the hook (JSON in LIFEBOAT_SUMMARY_FILE, and on stdin with notify.format json). */
export interface RunSummary {
  /** Recipe or task name ("deis-backup"). */
  recipe: string;
  /** What the run acted on (the recipe's target), "" for a task. */
  target: string;
  /** The run's exit code (README "Exit codes"). */
  exitCode: number;
  /** "failed", or "interrupted" (exit 130/143). */
  status: "failed" | "interrupted";
  /** The step that failed: its id and title, when a step failed. */
  failedStep?: { id: string; title: string };
  /** The error message, secrets redacted. */
  error: string;
  /** What the operator can do about it, when known. */
  hint?: string;
  /** ISO times. */
  startedAt: string;
  endedAt: string;
  durationSeconds: number;
  /** Where it ran. */
  host: string;
  pid: number;
  /** The site file, when one was given. */
  config?: string;
}

/** Options for {@link runFailureHook}. */
export interface FailureHookOptions {
  /** The command, as an argv (`["mail", "-s", "lifeboat failed", "ops@example.com"]`). */
  command: readonly string[];
  /** Kill the hook after this many seconds (default 60). */
  timeoutSeconds?: number;
  /** What goes on its stdin: a readable text (default) or the JSON summary. */
  format?: "text" | "json";
}

const targets = new WeakMap<object, string>();

/** Records the target of the run in ctx, for the summary (recipe() calls it). */
export function noteTarget(ctx: Context, target: string): void {
  targets.set(ctx, target);
}

/**
 * Builds the summary of a failed run, secrets redacted.
 * @example const s = runSummary(ctx, { error: e, startedAt: t0, outcomes });
 */
export function runSummary(ctx: Context, o: { error: unknown; startedAt: Date; endedAt?: Date; outcomes?: StepOutcome[]; exitCode?: number }): RunSummary {
  const r = (text: string) => ctx.secrets.redact(text);
  const endedAt = o.endedAt ?? new Date();
  const code = o.exitCode ?? exitCodeOf(o.error);
  const failed = o.outcomes?.find((x) => x.status === "failed");
  const err = o.error as Error | undefined;
  const config = (ctx.settings as { config?: string }).config;
  return {
    recipe: ctx.name,
    target: r(targets.get(ctx) ?? ""),
    exitCode: code,
    status: code === 130 || code === 143 ? "interrupted" : "failed",
    ...(failed ? { failedStep: { id: failed.id, title: r(failed.name) } } : {}),
    error: r(err?.message ?? String(o.error ?? "")),
    ...(o.error instanceof LifeboatError && o.error.hint ? { hint: r(o.error.hint) } : {}),
    startedAt: o.startedAt.toISOString(),
    endedAt: endedAt.toISOString(),
    durationSeconds: Math.round((endedAt.getTime() - o.startedAt.getTime()) / 1000),
    host: hostname(),
    pid: process.pid,
    ...(config ? { config: r(config) } : {}),
  };
}

/** The summary as a few lines an operator reads in a mail. */
export function summaryText(s: RunSummary): string {
  return [
    `lifeboat: ${s.recipe} ${s.status} on ${s.host} (exit ${s.exitCode})`,
    "",
    `recipe:   ${s.recipe}`,
    ...(s.target ? [`target:   ${s.target}`] : []),
    ...(s.config ? [`site:     ${s.config}`] : []),
    ...(s.failedStep ? [`step:     ${s.failedStep.title} (${s.failedStep.id})`] : []),
    `error:    ${s.error}`,
    ...(s.hint ? [`next:     ${s.hint}`] : []),
    `started:  ${s.startedAt}`,
    `ended:    ${s.endedAt} (${s.durationSeconds} s)`,
    `host:     ${s.host} (pid ${s.pid})`,
    "",
  ].join("\n");
}

/** The LIFEBOAT_* variables the hook gets. */
export function summaryEnv(s: RunSummary, summaryFile: string): Record<string, string> {
  return {
    LIFEBOAT_RECIPE: s.recipe,
    LIFEBOAT_TARGET: s.target,
    LIFEBOAT_EXIT_CODE: String(s.exitCode),
    LIFEBOAT_STATUS: s.status,
    LIFEBOAT_FAILED_STEP: s.failedStep?.id ?? "",
    LIFEBOAT_FAILED_STEP_TITLE: s.failedStep?.title ?? "",
    LIFEBOAT_ERROR: s.error.split("\n")[0],
    LIFEBOAT_STARTED_AT: s.startedAt,
    LIFEBOAT_ENDED_AT: s.endedAt,
    LIFEBOAT_HOST: s.host,
    LIFEBOAT_SUMMARY_FILE: summaryFile,
  };
}

/**
 * Runs the failure hook with the summary on stdin and in LIFEBOAT_* env vars (the JSON summary
 * in the file LIFEBOAT_SUMMARY_FILE names, removed afterwards). The environment is the run's,
 * without its LIFEBOAT_* settings and without any variable holding a secret. Never throws: a hook
 * that fails, cannot start or outlives its timeout (then its process group is killed) is a
 * warning. In dry-run it prints the command and runs nothing. Resolves to the hook's exit code
 * (null when it did not run or was killed).
 * @example await runFailureHook(ctx, summary, { command: ["mail", "-s", "lifeboat failed", "ops@example.com"] });
 */
export async function runFailureHook(ctx: Context, summary: RunSummary, o: FailureHookOptions): Promise<number | null> {
  const display = ctx.secrets.redact(shellJoin(o.command));
  if (!o.command.length) return null;
  if (ctx.dryRun) {
    ctx.log.info(`[dry-run] would run the failure hook: ${display} (summary on stdin)`);
    return null;
  }
  const timeoutMs = Math.max(1, o.timeoutSeconds ?? 60) * 1000;
  const dir = mkdtempSync(join(tmpdir(), "lifeboat-notify-"));
  const file = join(dir, "summary.json");
  writeFileSync(file, JSON.stringify(summary, null, 2) + "\n", { mode: 0o600 });
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined || k.startsWith("LIFEBOAT_") || ctx.secrets.redact(v) !== v) continue;
    env[k] = v;
  }
  Object.assign(env, summaryEnv(summary, file));
  const stdin = o.format === "json" ? JSON.stringify(summary, null, 2) + "\n" : summaryText(summary);
  ctx.log.info(`running the failure hook: ${display}`);
  try {
    const { code, signal, timedOut, output, startError } = await new Promise<{ code: number | null; signal: string | null; timedOut: boolean; output: string; startError?: string }>((resolve) => {
      let output = "";
      let timedOut = false;
      let child: ReturnType<typeof spawn>;
      try {
        child = spawn(o.command[0], o.command.slice(1), { env, stdio: ["pipe", "pipe", "pipe"], detached: true });
      } catch (e) {
        return resolve({ code: null, signal: null, timedOut, output, startError: (e as Error).message });
      }
      const kill = (sig: NodeJS.Signals) => {
        try {
          process.kill(-child.pid!, sig);
        } catch { /* gone */ }
      };
      const timer = setTimeout(() => {
        timedOut = true;
        kill("SIGTERM");
        setTimeout(() => kill("SIGKILL"), 2000).unref();
      }, timeoutMs);
      const keep = (d: Buffer) => (output = (output + d.toString("utf8")).slice(-4096));
      child.stdout!.on("data", keep);
      child.stderr!.on("data", keep);
      child.stdin!.on("error", () => {}); // a hook that does not read stdin
      child.stdin!.end(stdin);
      child.once("error", (e) => {
        clearTimeout(timer);
        resolve({ code: null, signal: null, timedOut, output, startError: e.message });
      });
      child.once("close", (c, s) => {
        clearTimeout(timer);
        kill("SIGKILL"); // nothing of the hook outlives it
        resolve({ code: c, signal: s, timedOut, output, startError: undefined });
      });
    });
    const tail = output.trim() ? `\n    ${ctx.secrets.redact(output.trim()).split("\n").slice(-8).join("\n    ")}` : "";
    if (startError) ctx.log.warn(`the failure hook could not start (${startError}): ${display}; check notify.command${tail}`);
    else if (timedOut) ctx.log.warn(`the failure hook did not finish within ${timeoutMs / 1000} s and was killed: ${display}${tail}`);
    else if (code !== 0) ctx.log.warn(`the failure hook failed (${signal ? `killed by ${signal}` : `exit ${code}`}): ${display}${tail}`);
    else ctx.log.info(`failure hook done: ${display}`);
    return timedOut || startError ? null : code;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The runner's side (main() calls it when a run ends with exit ≠ 0): runs the hook the
 * settings `notify.command`, `notify.timeout` and `notify.format` name, if any.
 * @example if (result.code !== 0) await notifyFailure(ctx, result, startedAt);
 */
export async function notifyFailure(ctx: Context, result: { code: number; error?: unknown; outcomes?: StepOutcome[] }, startedAt: Date): Promise<void> {
  const s = ctx.settings as { "notify.command"?: string[]; "notify.timeout"?: number; "notify.format"?: string };
  const command = s["notify.command"] ?? [];
  if (!command.length) return;
  try {
    const summary = runSummary(ctx, { error: result.error ?? `exit ${result.code}`, startedAt, outcomes: result.outcomes, exitCode: result.code });
    await runFailureHook(ctx, summary, { command, timeoutSeconds: s["notify.timeout"], format: s["notify.format"] === "json" ? "json" : "text" });
  } catch (e) {
    ctx.log.warn(`the failure hook could not run: ${ctx.secrets.redact((e as Error).message)}`);
  }
}
