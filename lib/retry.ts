// retry: run an async call again when it fails in a way that may pass, with exponential
// backoff and jitter, abortable. The one retry loop of lib/: S3 transfers, httpJson and
// waitForHealthy all go through it (restic keeps its retry as one decorator the same way).
import { useContext } from "./context.ts";

/** Options for {@link retry}. */
export interface RetryOptions {
  /** Attempts in all, the first included (default 3). `Infinity` with maxElapsedMs: until a deadline. */
  attempts?: number;
  /** Pause after the first failed attempt, in ms (default 250); it doubles after each one. */
  baseMs?: number;
  /** Longest pause, in ms (default 4000). */
  maxMs?: number;
  /** Draw each pause at random between half and all of its value, so that many callers do not retry in step (default true). */
  jitter?: boolean;
  /** Give up once this many ms have passed since the first attempt; the last pause is cut to end there (default: no limit). */
  maxElapsedMs?: number;
  /** Whether a failure may pass and is worth another attempt (default: every failure is). */
  retryable?: (err: unknown, attempt: number) => boolean;
  /** Called before each pause with the failure, the attempt that failed (1-based) and the pause in ms. */
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
  /** Stops the retries: a pause ends at once and `signal.reason` is thrown (default: the context's signal). */
  signal?: AbortSignal;
}

/** The pause in ms after failed attempt number `attempt` (1-based): baseMs·2^(attempt-1), at most maxMs, jittered. */
export function backoffDelay(attempt: number, opts: Pick<RetryOptions, "baseMs" | "maxMs" | "jitter"> = {}): number {
  const full = Math.min(opts.maxMs ?? 4000, (opts.baseMs ?? 250) * 2 ** Math.max(0, attempt - 1));
  return opts.jitter === false ? full : Math.round(full / 2 + (Math.random() * full) / 2);
}

/** Waits ms, or throws signal.reason as soon as the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const done = () => {
      signal?.removeEventListener("abort", stop);
      resolve();
    };
    const timer = setTimeout(done, ms);
    const stop = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", stop, { once: true });
  });
}

/**
 * Resolves when p settles (either way) or after ms, whichever comes first; the timer does not outlive it.
 * @example await settledWithin(sender, 5000); // give it up to 5 s to finish
 */
export function settledWithin(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([p.then(() => {}, () => {}), new Promise<void>((ok) => (timer = setTimeout(ok, ms)))]).finally(() => clearTimeout(timer));
}

/**
 * Calls fn (with the attempt number, from 1) until it resolves, the failure is not retryable,
 * the attempts or maxElapsedMs run out (the last failure is thrown), or the signal aborts
 * (its reason is thrown, also during a pause).
 * @example
 * const body = await retry(() => fetchPage(url), {
 *   attempts: 5,
 *   retryable: (e) => (e as HttpError).status !== 404,
 *   onRetry: (e, n, ms) => ctx.log.debug(`attempt ${n} failed (${e}); again in ${ms} ms`),
 * });
 */
export async function retry<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  const signal = opts.signal ?? useContext().signal;
  const attempts = Math.max(1, opts.attempts ?? 3);
  const started = Date.now();
  for (let attempt = 1; ; attempt++) {
    if (signal.aborted) throw signal.reason;
    try {
      return await fn(attempt);
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      if (attempt >= attempts || (opts.retryable && !opts.retryable(err, attempt))) throw err;
      let delay = backoffDelay(attempt, opts);
      if (opts.maxElapsedMs !== undefined) {
        const left = started + opts.maxElapsedMs - Date.now();
        if (left <= 0) throw err;
        delay = Math.min(delay, left);
      }
      opts.onRetry?.(err, attempt, delay);
      await sleep(delay, signal);
    }
  }
}
