// Settings: flags, then env, then a YAML site file, then defaults.
//
// A recipe declares its settings once; this module turns that declaration into the
// parser, the type checks and the --help text. Keys are dotted kebab-case
// (`gateway.endpoint`); the flag is `--gateway.endpoint`, the env var
// `LIFEBOAT_GATEWAY_ENDPOINT`, and the site file nests them (`gateway: {endpoint: …}`).
//
// A secret is never taken from argv, where `ps` would show it: it comes from the env,
// the site file, `--KEY-file PATH` or `--KEY-command CMD`.
import { readFileSync, statSync } from "node:fs";
import { execFileSync } from "node:child_process";
import process from "node:process";
import minimist from "minimist";
import { UsageError } from "./errors.ts";
import type { Secrets } from "./secrets.ts";
import { lazyRequire } from "./lazy.ts";

// yaml loads when a site file is read (a --help or a run without --config never needs it).
const YAML = lazyRequire<typeof import("yaml")>("yaml");

/** One setting a recipe reads. */
export interface SettingSpec {
  /** What it means, one line for --help. */
  describe: string;
  /** Value type (default "string"). A "list" takes a YAML list or comma-separated text. */
  type?: "string" | "number" | "boolean" | "list";
  /** Value when nothing sets it. */
  default?: string | number | boolean | readonly string[];
  /** More env var names to read, after LIFEBOAT_<KEY>. */
  env?: string[];
  /** Never printed, masked in all output, never accepted on argv. */
  secret?: boolean;
  /** Fails with a usage error when nothing sets it (unless --help). */
  required?: boolean;
  /** The allowed values. */
  choices?: readonly string[];
  /**
   * The recipes of a system that read this setting (default: all of them). A system's
   * recipes share one table; a recipe shows only its own settings in --help, requires only
   * its own, and refuses a flag for another recipe's setting, while the site file may hold them all.
   */
  usedBy?: readonly string[];
}

export type SettingSpecs = Record<string, SettingSpec>;

type ValueOf<S extends SettingSpec> = S["type"] extends "number"
  ? number
  : S["type"] extends "boolean"
    ? boolean
    : S["type"] extends "list"
      ? string[]
      : string;

/** The typed values of a set of settings. Unset optional strings are "". */
export type SettingValues<T extends SettingSpecs> = { -readonly [K in keyof T]: ValueOf<T[K]> };

/** Where a value came from, for messages: "--x", "env LIFEBOAT_X", "site.yaml", "default". */
export type SettingSources = Record<string, string>;

/** A siteKnown table that accepts every key: the site file given is another program's (a recipe that schedule:install runs later). */
export const ANY_SITE_KEYS: SettingSpecs = Object.freeze({});

/** The settings every recipe and task has. */
export const GLOBAL_SETTINGS = {
  config: { describe: "YAML site file with settings (flags and env win over it)", env: ["LIFEBOAT_CONFIG"] },
  "dry-run": { type: "boolean", describe: "print every command that would change state, run none of them" },
  yes: { type: "boolean", describe: "confirm destructive steps (required when there is no terminal)" },
  verbose: { type: "boolean", describe: "print each command as it runs, and debug lines" },
  json: { type: "boolean", describe: "machine-readable output for listings (on stdout)" },
  resume: { type: "boolean", describe: "continue the last failed run of this recipe and target at its failed step" },
  "state-dir": { describe: "where journals and locks live", default: defaultStateDir() },
  "notify.command": { type: "list", describe: "command (argv; a YAML list) run when the run fails, the summary on its stdin and in LIFEBOAT_* env vars (docs/monitoring.md)" },
  "notify.timeout": { type: "number", default: 60, describe: "seconds the notify command may run before it is killed" },
  "notify.format": { choices: ["text", "json"], default: "text", describe: "what the notify command reads on stdin" },
  help: { type: "boolean", describe: "show this help" },
} as const satisfies SettingSpecs;

function defaultStateDir(): string {
  const home = process.env.HOME ?? "/root";
  return process.env.XDG_STATE_HOME ? `${process.env.XDG_STATE_HOME}/lifeboat` : `${home}/.local/state/lifeboat`;
}

/** "~/x" → "$HOME/x", and trailing slashes dropped, so paths compare as `find` prints them. */
export function expandHome(p: string): string {
  return p.replace(/^~(?=\/|$)/, process.env.HOME ?? "~").replace(/(.)\/+$/, "$1");
}

/** The env var name for a key: gateway.endpoint → LIFEBOAT_GATEWAY_ENDPOINT. */
export function envName(key: string): string {
  return "LIFEBOAT_" + key.replace(/[.-]/g, "_").toUpperCase();
}

/** Options for {@link parseSettings}. */
export interface ParseOptions {
  /** argv without node and script (process.argv.slice(2)). */
  argv: string[];
  /** Environment (default process.env). */
  env?: Record<string, string | undefined>;
  /** Secrets registry; secret values are added to it. */
  secrets: Secrets;
  /** Which recipe reads the settings (filters specs with `usedBy`). */
  reader?: string;
  /** More tables whose keys a site file may hold (tasks that read a recipe's site file): accepted and ignored. */
  siteKnown?: SettingSpecs[];
}

/** The result of parsing: values, their sources and the positional arguments. */
export interface ParsedSettings<T extends SettingSpecs> {
  values: SettingValues<T & typeof GLOBAL_SETTINGS>;
  sources: SettingSources;
  positional: string[];
}

/** Parses argv, env and the site file against the specs. Throws UsageError naming key and source. */
export function parseSettings<T extends SettingSpecs>(specs: T, opts: ParseOptions): ParsedSettings<T> {
  const all: SettingSpecs = { ...GLOBAL_SETTINGS, ...specs };
  const reads = (key: string) => !opts.reader || !all[key]?.usedBy || all[key].usedBy!.includes(opts.reader);
  const env = opts.env ?? process.env;
  const booleans = Object.keys(all).filter((k) => all[k].type === "boolean");
  const parsed = minimist(opts.argv, {
    boolean: booleans,
    string: ["_", ...Object.keys(all).filter((k) => all[k].type !== "boolean")],
    "--": true,
    unknown: (arg) => {
      if (!arg.startsWith("-")) return true;
      const key = arg.replace(/^--?(no-)?/, "").split("=")[0];
      if (key in all || isSecretSourceKey(all, key)) return true;
      throw new UsageError(`unknown flag '${arg.split("=")[0]}'`, `see --help for the settings this recipe reads`);
    },
  });
  const flags = flatten(parsed);
  const positional = [...(parsed._ as string[]).map(String), ...((parsed["--"] as string[] | undefined) ?? [])];

  // minimist sets every declared boolean to false; only count the ones actually given.
  const given = new Set(opts.argv.filter((a) => a.startsWith("-")).map((a) => a.replace(/^--?(no-)?/, "").split("=")[0]));
  for (const key of given) {
    const base = key in all ? key : key.replace(/-(file|command)$/, "");
    if (all[base] && !reads(base)) {
      throw new UsageError(`'--${key}' is a setting of ${all[base].usedBy!.join(", ")}, not of ${opts.reader}`, "see --help for the settings this recipe reads");
    }
  }

  const configPath = pick(flags, "config", given) ?? env.LIFEBOAT_CONFIG;
  const site = configPath ? readSite(String(configPath)) : {};
  const siteFlat = flatten(site);
  const known = (opts.siteKnown ?? []).map((t) => ({ ...GLOBAL_SETTINGS, ...t }) as SettingSpecs);
  for (const key of Object.keys(siteFlat)) {
    if (key in all || isSecretSourceKey(all, key)) continue;
    if (known.some((t) => key in t || isSecretSourceKey(t, key))) continue;
    if (opts.siteKnown?.includes(ANY_SITE_KEYS)) continue; // the site file is another program's (schedule:install checks it with that recipe)
    throw new UsageError(`unknown setting '${key}' in site file ${configPath}`, `known settings: ${Object.keys(specs).join(", ")}`);
  }

  const values: Record<string, unknown> = {};
  const sources: SettingSources = {};
  for (const [key, spec] of Object.entries(all)) {
    let raw: unknown;
    let source = "";
    if (given.has(key) && flags[key] !== undefined) {
      if (spec.secret) {
        throw new UsageError(
          `secret '${key}' cannot be given on the command line (ps would show it)`,
          `use --${key}-file PATH, --${key}-command CMD, env ${envName(key)}, or the site file`,
        );
      }
      raw = flags[key];
      source = `--${key}`;
    } else if (spec.secret && (given.has(`${key}-file`) || given.has(`${key}-command`))) {
      const file = flags[`${key}-file`];
      const cmd = flags[`${key}-command`];
      raw = file !== undefined ? readSecretFile(key, String(file)) : runSecretCommand(key, String(cmd));
      source = file !== undefined ? `--${key}-file` : `--${key}-command`;
    } else {
      const envKey = [envName(key), ...(spec.env ?? [])].find((n) => env[n] !== undefined && env[n] !== "");
      if (envKey) {
        raw = env[envKey];
        source = `env ${envKey}`;
      } else if (siteFlat[key] !== undefined) {
        raw = siteFlat[key];
        source = `site file ${configPath}`;
      } else if (spec.secret && (siteFlat[`${key}-file`] !== undefined || siteFlat[`${key}-command`] !== undefined)) {
        raw = siteFlat[`${key}-file`] !== undefined
          ? readSecretFile(key, String(siteFlat[`${key}-file`]))
          : runSecretCommand(key, String(siteFlat[`${key}-command`]));
        source = `site file ${configPath}`;
      } else if (spec.default !== undefined) {
        raw = spec.default;
        source = "default";
      }
    }
    values[key] = coerce(key, spec, raw, source);
    sources[key] = source || "unset";
    if (spec.secret && typeof values[key] === "string") opts.secrets.add(values[key] as string);
  }
  if (!values.help) {
    for (const [key, spec] of Object.entries(all)) {
      if (spec.required && reads(key) && (values[key] === "" || values[key] === undefined)) {
        throw new UsageError(
          `setting '${key}' is required`,
          spec.secret
            ? `set env ${envName(key)}, --${key}-file PATH, --${key}-command CMD or '${key}' in the site file`
            : `pass --${key}=VALUE, set env ${envName(key)}, or put it in the site file`,
        );
      }
    }
  }
  return { values: values as ParsedSettings<T>["values"], sources, positional };
}

function isSecretSourceKey(all: SettingSpecs, key: string): boolean {
  const m = /^(.*)-(file|command)$/.exec(key);
  return !!m && !!all[m[1]]?.secret;
}

function pick(flags: Record<string, unknown>, key: string, given: Set<string>): unknown {
  return given.has(key) ? flags[key] : undefined;
}

/** Nested objects to dotted keys: {a: {b: 1}} → {"a.b": 1}. Arrays stay values. */
function flatten(obj: Record<string, unknown>, prefix = "", out: Record<string, unknown> = {}): Record<string, unknown> {
  for (const [k, v] of Object.entries(obj ?? {})) {
    if (k === "_" || k === "--") continue;
    const key = prefix ? `${prefix}.${k}` : k;
    if (v !== null && typeof v === "object" && !Array.isArray(v)) flatten(v as Record<string, unknown>, key, out);
    else out[key] = v;
  }
  return out;
}

function readSite(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new UsageError(`cannot read site file ${path}: ${(e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = YAML().parse(text) ?? {};
  } catch (e) {
    throw new UsageError(`site file ${path} is not valid YAML: ${yamlProblem(e, text)}`);
  }
  if (typeof doc !== "object" || Array.isArray(doc)) throw new UsageError(`site file ${path}: the top level must be a mapping`);
  return doc as Record<string, unknown>;
}

/**
 * What is wrong with a YAML document, without its text: the yaml package's message quotes the
 * offending line (and an alias's name), which in a site file or an inventory may be a secret's
 * value. Gives the error's code, its line and column, and the key on that line.
 * @example yamlProblem(e, text) // "BAD_SCALAR_START at line 3, column 17 (key secret-key)"
 */
export function yamlProblem(e: unknown, text: string): string {
  const pe = e as { code?: string; linePos?: { line: number; col: number }[] };
  const at = pe.linePos?.[0];
  const key = at ? /^\s*(?:-\s+)?([\w.-]+)\s*:/.exec(text.split("\n")[at.line - 1] ?? "")?.[1] : undefined;
  return `${pe.code ?? (e instanceof ReferenceError ? "UNRESOLVED_ALIAS" : "PARSE_ERROR")}${at ? ` at line ${at.line}, column ${at.col}` : ""}${key ? ` (key ${key})` : ""}; the line is not shown, as it may hold a secret`;
}

function readSecretFile(key: string, path: string): string {
  try {
    const st = statSync(path);
    if (st.mode & 0o077) process.stderr.write(`⚠ warning: secret file for '${key}' (${path}) is readable by others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it\n`);
    return readFileSync(path, "utf8").replace(/\r?\n$/, "");
  } catch (e) {
    throw new UsageError(`cannot read the file for secret '${key}' (${path}): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

function runSecretCommand(key: string, cmd: string): string {
  try {
    return execFileSync("/bin/sh", ["-c", cmd], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).replace(/\r?\n$/, "");
  } catch (e) {
    throw new UsageError(`the command for secret '${key}' failed (exit ${(e as { status?: number }).status ?? "?"})`);
  }
}

function coerce(key: string, spec: SettingSpec, raw: unknown, source: string): unknown {
  const type = spec.type ?? "string";
  const bad = (what: string) =>
    new UsageError(`setting '${key}' from ${source}: expected ${what}, got ${JSON.stringify(spec.secret ? "***" : raw)}`);
  if (raw === undefined || raw === null) return type === "boolean" ? false : type === "list" ? [] : type === "number" ? undefined : "";
  switch (type) {
    case "number": {
      const n = typeof raw === "number" ? raw : Number(String(raw).trim());
      if (String(raw).trim() === "" || !Number.isFinite(n)) throw bad("a number");
      return n;
    }
    case "boolean": {
      if (typeof raw === "boolean") return raw;
      const s = String(raw).trim().toLowerCase();
      if (["1", "true", "yes", "on"].includes(s)) return true;
      if (["0", "false", "no", "off", ""].includes(s)) return false;
      throw bad("true or false");
    }
    case "list": {
      const list = Array.isArray(raw) ? raw.map(String) : String(raw).split(",").map((s) => s.trim()).filter(Boolean);
      if (spec.choices) for (const v of list) if (!spec.choices.includes(v)) throw bad(`each of ${spec.choices.join("|")}`);
      return list;
    }
    default: {
      if (typeof raw === "object") throw bad("text");
      const s = String(raw);
      if (spec.choices && !spec.choices.includes(s)) throw bad(`one of ${spec.choices.join("|")}`);
      return s;
    }
  }
}

/** The --help text: usage, description and a table of settings with defaults and env names. */
export function helpText(opts: { name: string; usage: string; description: string; settings: SettingSpecs }): string {
  const rows = (specs: SettingSpecs) =>
    Object.entries(specs).filter(([, spec]) => !spec.usedBy || spec.usedBy.includes(opts.name)).map(([key, spec]) => {
      const flag = spec.secret
        ? `--${key}-file PATH | --${key}-command CMD`
        : spec.type === "boolean"
          ? `--${key}`
          : `--${key}=${(spec.type ?? "string").toUpperCase()}`;
      const d = spec.default;
      const def = d === undefined || d === "" ? "" : `  [default: ${typeof d === "object" ? d.join(",") : d}]`;
      const req = spec.required ? "  (required)" : "";
      const choices = spec.choices ? `  (${spec.choices.join("|")})` : "";
      return `  ${flag}\n      ${spec.describe}${choices}${def}${req}\n      env ${[envName(key), ...(spec.env ?? [])].join(", ")}`;
    });
  return [
    `${opts.name} — ${opts.description}`,
    "",
    `Usage: ${opts.usage}`,
    "",
    "Settings (flags win over env, env over the --config site file, that over defaults):",
    ...rows(opts.settings),
    "",
    "Common flags:",
    ...rows(GLOBAL_SETTINGS),
    "",
    "Exit codes: 0 ok, 1 a step failed, 2 usage or config error, 3 verification failed,",
    "            4 locked by another run, 5 refused (not confirmed / target not clean), 130 interrupted.",
  ].join("\n");
}
