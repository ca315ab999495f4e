// The run context: settings, logger, secrets and the dry-run switch every helper obeys.
//
// A recipe makes one with `createContext` (through `recipe()`); helpers find it with
// `useContext()`, as zx's `$` finds its options through `within`. A helper never reads
// process.argv or process.env for settings: everything arrives here first.
import { AsyncLocalStorage } from "node:async_hooks";
import { createInterface } from "node:readline/promises";
import process from "node:process";
import { RefusedError } from "./errors.ts";
import { Logger, type LogSink } from "./log.ts";
import { Secrets } from "./secrets.ts";
import { GLOBAL_SETTINGS, parseSettings, type SettingSources, type SettingSpecs, type SettingValues } from "./settings.ts";

/** Options for {@link createContext}. */
export interface ContextOptions<T extends SettingSpecs> {
  /** Recipe or task name, used in logs, locks and journals. */
  name: string;
  /** The settings this recipe reads. */
  settings?: T;
  /** argv without node and the script (default: scriptArgs()). */
  argv?: string[];
  /** Environment (default process.env). */
  env?: Record<string, string | undefined>;
  /** Where log lines go (default process.stderr); tests capture with their own. */
  sink?: LogSink;
  /** More tables whose keys a site file may hold (see ParseOptions.siteKnown). */
  siteKnown?: SettingSpecs[];
  /** Whether a human can answer questions (default: stdin and stderr are TTYs and CI is unset). */
  interactive?: boolean;
}

/** Everything a run knows about itself. */
export interface Context<T extends SettingSpecs = SettingSpecs> {
  /** Recipe or task name. */
  readonly name: string;
  /** Typed settings, resolved from flags, env, site file and defaults. */
  readonly settings: SettingValues<T & typeof GLOBAL_SETTINGS>;
  /** Where each setting came from ("--x", "env LIFEBOAT_X", "site file f", "default"). */
  readonly sources: SettingSources;
  /** Positional arguments. */
  readonly args: string[];
  /** Print commands that change state instead of running them. */
  readonly dryRun: boolean;
  /** Destructive steps are confirmed. */
  readonly yes: boolean;
  /** A human can answer questions. */
  readonly interactive: boolean;
  readonly log: Logger;
  readonly secrets: Secrets;
  /** Asks before a destructive action; refuses (exit 5) without --yes when nobody can answer. */
  confirm(question: string): Promise<void>;
  /**
   * Aborted when the run is interrupted (SIGINT/SIGTERM). Every helper that works in this
   * process (S3 transfers, packing, HTTP) stops when it fires; child processes are killed.
   * `signal.reason` is the InterruptedError. Helpers call {@link throwIfAborted} between units of work.
   */
  readonly signal: AbortSignal;
  /** Fires {@link signal} with this reason (the recipe runner calls it on SIGINT/SIGTERM). */
  abort(reason: Error): void;
}

/**
 * The script's own arguments, whoever started it: `node --import=tsx x.ts a`, `tsx x.ts a`,
 * `deno run -A x.ts a` and `npx zx x.ts a` all give ["a"] (zx puts its own CLI before the script).
 */
export function scriptArgs(argv: string[] = process.argv): string[] {
  const launcher = argv[1] ?? "";
  return /(^|\/)zx(\.m?js)?$|\/zx\/build\/cli\.js$/.test(launcher) ? argv.slice(3) : argv.slice(2);
}

const storage = new AsyncLocalStorage<Context>();
let fallback: Context | null = null;

/** Parses settings and builds a context. Throws UsageError for bad settings. */
export function createContext<T extends SettingSpecs>(opts: ContextOptions<T>): Context<T> {
  const secrets = new Secrets();
  const env = opts.env ?? process.env;
  const parsed = parseSettings(opts.settings ?? ({} as T), {
    argv: opts.argv ?? scriptArgs(),
    env,
    secrets,
    reader: opts.name,
    siteKnown: opts.siteKnown,
  });
  const s = parsed.values as SettingValues<typeof GLOBAL_SETTINGS>;
  const log = new Logger({ secrets, verbose: s.verbose, sink: opts.sink });
  const interactive = opts.interactive ?? (!!process.stdin.isTTY && !!process.stderr.isTTY && !env.CI);
  const controller = new AbortController();
  const ctx: Context<T> = {
    signal: controller.signal,
    abort: (reason) => controller.abort(reason),
    name: opts.name,
    settings: parsed.values,
    sources: parsed.sources,
    args: parsed.positional,
    dryRun: s["dry-run"],
    yes: s.yes,
    interactive,
    log,
    secrets,
    async confirm(question: string) {
      if (ctx.yes) return;
      if (ctx.dryRun) {
        log.info(`[dry-run] would ask: ${question}`);
        return;
      }
      if (!ctx.interactive) {
        throw new RefusedError(`refused: ${question}`, "nobody can answer here (no terminal); pass --yes to confirm");
      }
      const rl = createInterface({ input: process.stdin, output: process.stderr });
      try {
        const answer = await rl.question(`${secrets.redact(question)} [y/N] `);
        if (!/^y(es)?$/i.test(answer.trim())) throw new RefusedError(`refused: ${question}`, "answered no");
      } finally {
        rl.close();
      }
    },
  };
  if (!fallback) fallback = ctx as Context;
  return ctx;
}

/** Throws the interrupt (an InterruptedError) when the current run has been interrupted. */
export function throwIfAborted(ctx: Context = useContext()): void {
  if (ctx.signal.aborted) throw ctx.signal.reason;
}

/** Runs fn with ctx as the current context (like zx's `within`). */
export function withContext<R>(ctx: Context, fn: () => R): R {
  return storage.run(ctx, fn);
}

/** Makes ctx the context helpers see outside any withContext. */
export function setDefaultContext(ctx: Context): void {
  fallback = ctx;
}

/** The current context; a quiet default one when none was created (library use). */
export function useContext(): Context {
  const ctx = storage.getStore() ?? fallback;
  if (ctx) return ctx;
  fallback = createContext({ name: "lifeboat", argv: [], env: {} }) as Context;
  return fallback;
}
