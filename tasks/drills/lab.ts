// The lab as drills and tests see it.
//
// - needLab("piece"…): the connection settings of running pieces, read from $LIFEBOAT_LAB/<piece>.env
//   (written by test/lab/<piece>.sh up).
// - withLab(pieces, body): brings up the pieces that are down (install + start with
//   test/lab/<piece>.sh up, which is idempotent), runs body, and stops again exactly the pieces it
//   started — when body returns, throws, or the run is interrupted. Pieces that were already up
//   are left running. Every drill task goes through it (drillTask), so `make drill-X`,
//   `make demo` and `npx zx tasks/run.ts drill:X` all work from a cold machine.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { task, type Context, type SettingSpecs, type Task } from "../../lib/mod.ts";

export const LAB_DIR = process.env.LIFEBOAT_LAB ?? "/var/tmp/lifeboat-lab";

/** The lab pieces in the order they start (test/lab/lab.sh's order); they stop in reverse. */
export const LAB_PIECES = ["docker", "sshd", "pg", "mariadb", "ceph", "slapd", "afs", "lshosts"];

/** Where test/lab/<piece>.sh live: the drills execute them (they import nothing from test/). */
export const LAB_SCRIPTS = fileURLToPath(new URL("../../test/lab/", import.meta.url));

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

/**
 * Collects a child's stdout and stderr as whole lines, calling onLine for each as it completes: a
 * line of one stream is never cut by a chunk of the other (a long dry run fills the pipes in
 * pieces), nor a character by a chunk boundary. Returns the output so far.
 * @example const output = collectLines(child, (l) => console.error(l)); child.on("close", () => output());
 */
export function collectLines(child: ChildProcess, onLine: (line: string) => void = () => {}): () => string {
  let output = "";
  const line = (l: string) => {
    output += `${l}\n`;
    onLine(l);
  };
  for (const stream of [child.stdout!, child.stderr!]) {
    let partial = "";
    stream.setEncoding("utf8");
    stream.on("data", (d: string) => {
      const lines = (partial + d).split("\n");
      partial = lines.pop()!;
      lines.forEach(line);
    });
    stream.on("end", () => partial && line(partial));
  }
  return () => output;
}

/**
 * psql against the lab's host PostgreSQL (test/lab/pg.sh) on one of its ports (LAB_PG_PORT, the
 * source, or LAB_PG_TARGET_PORT); its unaligned output, trimmed. Throws with psql's stderr.
 * @example labPsql(needLab("pg").LAB_PG_PORT, "shop", "SELECT count(*) FROM members")
 */
export function labPsql(port: string, db: string, sql: string): string {
  const pg = needLab("pg");
  const r = spawnSync(`${pg.LAB_PG_BIN}/psql`, ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", pg.LAB_PG_HOST, "-p", port, "-U", pg.LAB_PG_USER, "-d", db, "-c", sql], {
    encoding: "utf8",
    env: { ...process.env, PGOPTIONS: "-c client_min_messages=warning", PGPASSWORD: readFileSync(pg.LAB_PG_PASSWORD_FILE, "utf8").split("\n")[0].trim() },
  });
  if (r.status !== 0) throw new Error(`psql -p ${port} -d ${db}: ${(r.stderr ?? "").trim()}`);
  return r.stdout.trim();
}

/** Options for {@link withLab}. */
export interface WithLabOptions {
  /** Folder holding <piece>.sh with the verbs up, down and status (default test/lab/). */
  scripts?: string;
  /** The hold marker: while it exists nothing is stopped (default $LIFEBOAT_LAB/held, made by `lab.sh up`; with `scripts`, SCRIPTS/held). */
  held?: string;
  /** Where progress lines go (default: nowhere). */
  log?: (line: string) => void;
  /** Say which pieces would be started, start none. */
  dryRun?: boolean;
  /** Interrupts a piece's start-up; body is not run once it fires. */
  signal?: AbortSignal;
}

/** Runs `bash DIR/PIECE.sh VERB`, its output on our stderr; resolves with its exit code. */
function pieceScript(dir: string, piece: string, verb: "up" | "down", signal?: AbortSignal): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn("bash", [join(dir, `${piece}.sh`), verb], { stdio: ["ignore", 2, 2], signal });
    child.on("error", () => {}); // an abort kills it; "close" still follows
    child.on("close", (code) => resolve(code ?? 1));
  });
}

function pieceIsUp(dir: string, piece: string): boolean {
  return spawnSync("bash", [join(dir, `${piece}.sh`), "status"], { stdio: "ignore" }).status === 0;
}

/**
 * Runs body with the lab pieces up; stops again exactly the pieces this call started, also when
 * body throws or the run is interrupted. A piece whose start-up fails is stopped too (a half
 * start leaves processes behind).
 * @example await withLab(["docker", "slapd"], () => hossDrill(), { log: (l) => ctx.log.info(l) });
 */
export async function withLab<T>(pieces: string[], body: () => Promise<T>, opts: WithLabOptions = {}): Promise<T> {
  const dir = opts.scripts ?? LAB_SCRIPTS;
  const log = opts.log ?? (() => {});
  const unknown = pieces.filter((p) => !LAB_PIECES.includes(p));
  if (unknown.length) throw new Error(`no lab piece ${unknown.map((p) => `'${p}'`).join(", ")}; the pieces are ${LAB_PIECES.join(" ")}`);
  const ordered = LAB_PIECES.filter((p) => pieces.includes(p));
  const started: string[] = [];
  try {
    for (const p of ordered) {
      if (pieceIsUp(dir, p)) {
        log(`lab: ${p} is already up (left running)`);
        continue;
      }
      if (opts.dryRun) {
        log(`lab: ${p} is down; would start it (${join(dir, `${p}.sh`)} up) and stop it afterwards`);
        continue;
      }
      opts.signal?.throwIfAborted();
      log(`lab: starting ${p} (stopped again at the end)`);
      started.push(p);
      const code = await pieceScript(dir, p, "up", opts.signal);
      opts.signal?.throwIfAborted();
      if (code !== 0) throw new Error(`lab piece '${p}' did not start (${join(dir, `${p}.sh`)} up exited ${code}); its log lines are above`);
    }
    return await body();
  } finally {
    const held = opts.held ?? (opts.scripts ? join(opts.scripts, "held") : join(LAB_DIR, "held"));
    if (started.length && existsSync(held)) {
      log(`lab: held up by 'make lab-up' (${held}): leaving ${started.join(" ")} running`);
      started.length = 0;
    }
    if (started.length) log(`lab: stopping what this run started: ${started.join(" ")}`);
    const failed: string[] = [];
    for (const p of [...started].reverse()) if ((await pieceScript(dir, p, "down")) !== 0) failed.push(p);
    if (failed.length) log(`lab: could not stop ${failed.join(" ")}; stop by hand: bash test/lab/lab.sh down ${failed.join(" ")}`);
  }
}

/** A drill task: a task plus the lab pieces it needs, which it brings up and stops again itself. */
export interface DrillTaskDefinition<T extends SettingSpecs> extends Task<T> {
  /** The lab pieces the drill uses (none for a drill on local files). */
  needs: string[];
}

/**
 * Declares a drill task: its body runs inside {@link withLab} with the pieces it needs.
 * @example export const t = drillTask({ name: "drill:hoss", needs: ["docker", "slapd"], description: "…", run: async (ctx) => {…} });
 */
export function drillTask<T extends SettingSpecs>(def: DrillTaskDefinition<T>, lab: Pick<WithLabOptions, "scripts"> = {}): Task<T> & { needs: string[] } {
  const { needs, run } = def;
  const wrapped = task({
    ...def,
    description: `${def.description} (lab: ${needs.length ? needs.join(" ") : "none"})`,
    run: (ctx: Context<T>) => withLab(needs, () => run.call(def, ctx), { ...lab, log: (l) => ctx.log.info(l), dryRun: ctx.dryRun, signal: ctx.signal }),
  });
  return { ...wrapped, needs };
}
