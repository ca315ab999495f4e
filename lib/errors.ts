// Errors that carry an exit code and a hint for the operator.
//
// Exit codes are part of lifeboat's interface (README "Exit codes"): scripts around
// a recipe may branch on them, so they never change meaning.

/** The documented exit codes. */
export const ExitCode = {
  /** Everything asked for was done. */
  Ok: 0,
  /** A step failed; the journal says which, and `--resume` continues there. */
  Failed: 1,
  /** Bad flags, env or site file: nothing was done. */
  Usage: 2,
  /** An archive or a comparison did not verify: nothing was written. */
  Verify: 3,
  /** Another run holds the lock for this recipe and target. */
  Locked: 4,
  /** Refused: a destructive step was not confirmed, or the target is not clean. */
  Refused: 5,
  /** A backup check (status) found no verified backup of a recipe, or only one older than allowed. */
  Stale: 6,
  /** Interrupted by SIGINT (SIGTERM gives 143). */
  Interrupted: 130,
} as const;

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/** An error an operator can act on: what failed, and what to do next. */
export class LifeboatError extends Error {
  /** Process exit code this error maps to. */
  readonly exitCode: number;
  /** What the operator can do about it, printed under the message. */
  readonly hint?: string;
  constructor(message: string, opts: { exitCode?: number; hint?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.exitCode = opts.exitCode ?? ExitCode.Failed;
    this.hint = opts.hint;
  }
}

/** Bad flags, env or site file (exit 2). */
export class UsageError extends LifeboatError {
  constructor(message: string, hint?: string) {
    super(message, { exitCode: ExitCode.Usage, hint });
  }
}

/** An archive or comparison failed verification (exit 3). */
export class VerifyError extends LifeboatError {
  /** Every problem found, one line each. */
  readonly problems: string[];
  constructor(message: string, problems: string[] = [], hint?: string) {
    super(message, { exitCode: ExitCode.Verify, hint });
    this.problems = problems;
  }
}

/** Another run holds the lock (exit 4). */
export class LockedError extends LifeboatError {
  constructor(message: string, hint?: string) {
    super(message, { exitCode: ExitCode.Locked, hint });
  }
}

/** A destructive step was not confirmed, or a target is not clean (exit 5). */
export class RefusedError extends LifeboatError {
  constructor(message: string, hint?: string) {
    super(message, { exitCode: ExitCode.Refused, hint });
  }
}

/** The run was interrupted by a signal (exit 130 or 143). */
export class InterruptedError extends LifeboatError {
  constructor(signal: string) {
    super(`interrupted by ${signal}`, { exitCode: signal === "SIGTERM" ? 143 : ExitCode.Interrupted });
  }
}

/** The exit code for any thrown value. */
export function exitCodeOf(err: unknown): number {
  return err instanceof LifeboatError ? err.exitCode : ExitCode.Failed;
}
