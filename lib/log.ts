// Logging: coloured lines on stderr, ora spinners on a terminal, secrets masked.
//
// stdout is left for data (`--json` listings); everything a human reads goes to stderr.
// Spinners and byte progress animate only on a terminal outside CI; elsewhere a long
// step prints one line when it starts and one when it ends.
import process from "node:process";
import chalk from "chalk";
import type { Ora } from "ora";
import type { Secrets } from "./secrets.ts";
import { lazyRequire } from "./lazy.ts";

// ora (and its ten dependencies) loads when the first spinner animates: never on a pipe or in CI.
const ora = lazyRequire<typeof import("ora")>("ora");

/** Where log text goes; tests pass their own to capture it. */
export interface LogSink {
  write(text: string): unknown;
  /** True when the sink is a terminal (spinners animate). */
  isTTY?: boolean;
}

/** Options for {@link Logger}. */
export interface LoggerOptions {
  /** Secrets to mask in every line. */
  secrets: Secrets;
  /** Print debug lines. */
  verbose?: boolean;
  /** Where lines go (default: process.stderr). */
  sink?: LogSink;
  /** Animate spinners (default: sink is a TTY and CI is not set). */
  animate?: boolean;
}

/** A running spinner or progress line. */
export interface Spinner {
  /** Replaces the text after the spinner. */
  update(text: string): void;
  /** Ends with a green tick and the text. */
  succeed(text?: string): void;
  /** Ends with a red cross and the text. */
  fail(text?: string): void;
}

/** Byte progress for a transfer. */
export interface Progress {
  /** Counts n more bytes (or items) done. */
  add(n: number): void;
  /** Sets a new total when it becomes known. */
  total(n: number): void;
  /** Ends the progress line with a summary. */
  done(text?: string): void;
  /** Ends the progress line as failed. */
  fail(text?: string): void;
}

/** Formats a byte count: 1.5 MiB. */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

/** Formats a duration in ms: 1.2s, 3m04s. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  return `${m}m${String(Math.round(s % 60)).padStart(2, "0")}s`;
}

/** The logger every helper uses through the run context. */
export class Logger {
  readonly secrets: Secrets;
  verbose: boolean;
  readonly sink: LogSink;
  readonly animate: boolean;
  #active: Ora | null = null;

  constructor(opts: LoggerOptions) {
    this.secrets = opts.secrets;
    this.verbose = opts.verbose ?? false;
    this.sink = opts.sink ?? process.stderr;
    this.animate = opts.animate ?? (!!this.sink.isTTY && !process.env.CI);
  }

  /** Writes one line, masked. Every other method ends here. */
  line(text: string): void {
    const masked = this.secrets.redact(text);
    if (this.#active) {
      this.#active.clear();
      this.sink.write(masked + "\n");
      this.#active.render();
    } else {
      this.sink.write(masked + "\n");
    }
  }

  info(msg: string): void {
    this.line(msg);
  }
  ok(msg: string): void {
    this.line(`${chalk.green("✔")} ${msg}`);
  }
  warn(msg: string): void {
    this.line(`${chalk.yellow("⚠ warning:")} ${msg}`);
  }
  error(msg: string): void {
    this.line(`${chalk.red("✖ error:")} ${msg}`);
  }
  debug(msg: string): void {
    if (this.verbose) this.line(chalk.gray(msg));
  }
  /** A warning in a box nobody scrolls past: the first line is also logged as a warning. */
  box(lines: string[]): void {
    const width = Math.max(...lines.map((l) => l.length));
    this.warn(lines[0]);
    this.line(chalk.yellow(`  ┏${"━".repeat(width + 4)}┓`));
    for (const l of lines) this.line(chalk.yellow(`  ┃  ${l.padEnd(width)}  ┃`));
    this.line(chalk.yellow(`  ┗${"━".repeat(width + 4)}┛`));
  }
  /** A step heading: "▶ [2/5] sync buckets". */
  step(index: number, count: number, name: string): void {
    this.line(`${chalk.cyan("▶")} ${chalk.dim(`[${index}/${count}]`)} ${chalk.bold(name)}`);
  }
  /** A command as it runs (verbose) or would run (dry-run). */
  command(display: string, mode: "run" | "dry-run" | "probe"): void {
    if (mode === "dry-run") this.line(`${chalk.magenta("[dry-run]")} ${display}`);
    else if (mode === "probe") this.line(`${chalk.gray("[probe]")} ${chalk.gray(display)}`);
    else this.debug(`$ ${display}`);
  }

  /** Starts a spinner; on a non-terminal it prints the text once. */
  spinner(text: string): Spinner {
    const started = Date.now();
    if (!this.animate) {
      this.line(`… ${text}`);
      return {
        update: () => {},
        succeed: (t) => this.ok(`${t ?? text} ${chalk.dim(`(${formatDuration(Date.now() - started)})`)}`),
        fail: (t) => this.error(t ?? text),
      };
    }
    const sp = ora().default({ text: this.secrets.redact(text), stream: this.sink as NodeJS.WritableStream }).start();
    this.#active = sp;
    const end = () => {
      if (this.#active === sp) this.#active = null;
    };
    return {
      update: (t) => {
        sp.text = this.secrets.redact(t);
      },
      succeed: (t) => {
        end();
        sp.succeed(this.secrets.redact(`${t ?? text} ${chalk.dim(`(${formatDuration(Date.now() - started)})`)}`));
      },
      fail: (t) => {
        end();
        sp.fail(this.secrets.redact(t ?? text));
      },
    };
  }

  /** Byte progress with rate: "upload registry 45.1 MiB / 120 MiB (12.0 MiB/s)". */
  progress(label: string, opts: { total?: number; unit?: "bytes" | "items" } = {}): Progress {
    let done = 0;
    let total = opts.total ?? 0;
    const started = Date.now();
    const fmt = (n: number) => (opts.unit === "items" ? String(n) : formatBytes(n));
    const text = () => {
      const secs = (Date.now() - started) / 1000;
      const rate = secs > 0.5 && opts.unit !== "items" ? ` (${formatBytes(done / secs)}/s)` : "";
      return `${label} ${fmt(done)}${total ? ` / ${fmt(total)}` : ""}${rate}`;
    };
    const sp = this.spinner(label);
    let last = 0;
    return {
      add: (n) => {
        done += n;
        const now = Date.now();
        if (now - last > 100) {
          last = now;
          sp.update(text());
        }
      },
      total: (n) => {
        total = n;
      },
      done: (t) => sp.succeed(t ?? text()),
      fail: (t) => sp.fail(t ?? `${label} failed`),
    };
  }
}
