// jsonfile: reading a JSON file that an earlier step writes (a dry run wrote none).
import { existsSync, readFileSync } from "node:fs";
import { useContext, type Context } from "./context.ts";
import { LifeboatError } from "./errors.ts";

/** Options for {@link readJsonFile}. */
export interface ReadJsonFileOptions<T> {
  /** What a dry run gets when the file is not there because the steps before only printed. */
  dryRunResult: T;
  ctx?: Context;
}

/**
 * Reads and parses a JSON file. In a dry run, a file that the steps before would have written
 * (an unpacked archive's member) is missing: it says so and returns `dryRunResult`.
 * @example const defs = readJsonFile<Definitions>(`${files}/definitions.json`, { dryRunResult: {} });
 */
export function readJsonFile<T>(path: string, opts: ReadJsonFileOptions<T>): T {
  const ctx = opts.ctx ?? useContext();
  if (ctx.dryRun && !existsSync(path)) {
    ctx.log.command(`read ${path} (as the steps before would write it)`, "dry-run");
    return opts.dryRunResult;
  }
  try {
    return JSON.parse(readFileSync(path, "utf8")) as T;
  } catch (e) {
    throw new LifeboatError(`cannot read ${path}: ${(e as Error).message}`, { hint: "the archive's member is missing or not JSON" });
  }
}
