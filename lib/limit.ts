// limit: run async work with at most n tasks in flight. The one concurrency limiter of lib/:
// S3 requests across files and parts, and any fan-out over a list (mapLimit).
import { useContext } from "./context.ts";

/** Runs a task when fewer than n are running, else queues it (first come, first served). */
export type Limit = <T>(task: () => Promise<T>) => Promise<T>;

/** One item's outcome in {@link mapLimit}: its value, or what it threw. */
export type Settled<R> = { ok: true; value: R } | { ok: false; error: unknown };

/** Options for {@link mapLimit}. */
export interface MapLimitOptions {
  /** When it aborts, items not yet started are not started; each is settled with `signal.reason` (default: the context's signal). */
  signal?: AbortSignal;
}

/**
 * A counting semaphore: the function it returns runs each task once fewer than n are running.
 * Share one between several loops to cap them together (files and their parts, for instance).
 * @example
 * const run = limit(8);
 * await Promise.all(parts.map((p) => run(() => uploadPart(p))));
 */
export function limit(n: number): Limit {
  const max = Math.max(1, n);
  let active = 0;
  const waiting: (() => void)[] = [];
  return async <T>(task: () => Promise<T>): Promise<T> => {
    if (active < max) active++;
    else await new Promise<void>((wake) => waiting.push(wake));
    try {
      return await task();
    } finally {
      const wake = waiting.shift();
      if (wake) wake(); // the slot passes straight to the next task
      else active--;
    }
  };
}

/**
 * Runs fn over every item, at most n at once, and waits for all of them: a failure does not
 * stop the others. Resolves (never rejects) to one {@link Settled} per item, in input order.
 * Once the signal aborts no new item starts; those left are settled with the signal's reason.
 * @example
 * const results = await mapLimit(hosts, 4, (host) => sshTar(host, "/var/lib/store", `${dir}/${host}.tar`));
 * const failed = results.flatMap((r, i) => (r.ok ? [] : [`${hosts[i]}: ${(r.error as Error).message}`]));
 */
export async function mapLimit<T, R>(
  items: Iterable<T>, n: number, fn: (item: T, index: number) => Promise<R>, opts: MapLimitOptions = {},
): Promise<Settled<R>[]> {
  const list = Array.isArray(items) ? (items as readonly T[]) : [...items];
  const signal = opts.signal ?? useContext().signal;
  const out: Settled<R>[] = new Array(list.length);
  let next = 0;
  const worker = async () => {
    while (next < list.length) {
      const i = next++;
      if (signal.aborted) {
        out[i] = { ok: false, error: signal.reason };
        continue;
      }
      try {
        out[i] = { ok: true, value: await fn(list[i], i) };
      } catch (error) {
        out[i] = { ok: false, error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, n), list.length) }, worker));
  return out;
}

/** The errors of settled results, in input order. */
export function failures(results: readonly Settled<unknown>[]): unknown[] {
  return results.flatMap((r) => (r.ok ? [] : [r.error]));
}
