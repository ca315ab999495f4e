// The lab as the tests see it: connection settings read from $LIFEBOAT_LAB/<piece>.env,
// written by test/lab/<piece>.sh up. A test that needs a piece calls needLab("piece").
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

export const LAB_DIR = process.env.LIFEBOAT_LAB ?? "/var/tmp/lifeboat-lab";

/** Parses one env file written by write_env (values are bash %q-quoted). */
function parseEnv(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!m) continue;
    out[m[1]] = unquote(m[2]);
  }
  return out;
}

/** Undoes bash printf %q for the values the lab writes (paths, ports, keys). */
function unquote(v: string): string {
  if (v.startsWith("$'")) {
    return v.slice(2, -1).replace(/\\(n|t|'|\\)/g, (_, c) => ({ n: "\n", t: "\t", "'": "'", "\\": "\\" })[c as "n"]);
  }
  if (v === "''") return "";
  return v.replace(/\\(.)/g, "$1");
}

/** Settings of the named lab pieces; throws a clear error when one is not up. */
export function needLab(...pieces: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of pieces) {
    const f = join(LAB_DIR, `${p}.env`);
    if (!existsSync(f)) throw new Error(`lab piece '${p}' is not up (no ${f}): run 'test/lab/lab.sh up ${p}'`);
    Object.assign(out, parseEnv(readFileSync(f, "utf8")));
  }
  return out;
}
