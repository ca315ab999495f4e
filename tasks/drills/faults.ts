// The fault matrix: every recipe, run as an operator runs it, interrupted and broken on purpose,
// then continued; the result must verify. Used by test/faults.test.ts (a reduced size, in
// `make test`) and by the drill:faults task at the end of this file (`make fault-matrix`, full size).
//
// Cases, per recipe (each placed from the recipe's own output, so the matrix follows its steps):
//   baseline  a normal run; it measures the duration (for SIGKILL delays) and lists the steps
//   signal    SIGINT or SIGTERM at a step boundary (when `▶ [i/n] TITLE` appears) or in the middle
//             of a step (MID_MS later): exit 130/143 within BOUND_MS, every child process of the
//             run gone, the lock released, no new archive under a final name unless it verifies
//             (restores: no torn object), then --resume (a fresh run for recipes without it)
//             completes and the result verifies
//   kill      SIGKILL after a seeded pseudo-random delay within a normal run's duration: no new
//             archive that does not verify (only `.partial-…` leftovers, which the next run
//             removes), the stale lock taken over, and the next run completes and verifies
//   remote    a remote dies during a named step (the sshd child serving the run, radosgw, the
//             database container, the PostgreSQL backends, the HTTP stand-ins): a non-zero exit
//             naming it within BOUND_MS (or a run that rides it out and verifies); once it is
//             back, --resume (or a fresh run) completes and verifies
//   enospc    a small tmpfs as a folder the recipe writes, filled when a named step starts: the
//             error says "no space left" or names the folder, nothing new under a final name;
//             after freeing the space, --resume (or a fresh run) completes and verifies
// Every run's output is also searched for the fixture's secrets (none may appear).
//
// A new system's recipes join by one table entry: a System (its lab pieces, a setup that seeds a
// source and makes the archive its restore takes in) with one Entry per recipe (how to reset
// the target, its arguments, how to verify, which remotes it has and which folders can fill).
// The Deis and Hoss entries are at the end, above the task.
import { spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import process from "node:process";
import chalk from "chalk";
import YAML from "yaml";
import {
  compareTrees,
  exec,
  formatDuration,
  listBackups,
  offsiteList,
  pgDumpAll,
  s3List,
  s3MakeBucket,
  s3RemoveBucket,
  s3Sync,
  verifyArchive,
  verifySealed,
  typeScriptFlags,
  UsageError,
  type Context,
  type S3Handle,
} from "../../lib/mod.ts";
import { collectLines, drillTask, LAB_DIR, labPsql, needLab } from "./lab.ts";
import { bucketFiles, DEISCTL_STANDIN, labGateway, SEED_SQL as DEIS_SQL, seedStore } from "./deis.ts";
import { dbState, differ, freePort, psql, searchState, SEED_SQL as HOSS_SQL, seedConfig, seedKeys, seedSearch } from "./hoss.ts";
import { createOpenVolume, inCell, labCell, removeVolume, volumePath, volumeTree, writeFile } from "./afs-cell.ts";
import { diffDocuments, exampleDocuments, hostFlags, seedExamples, startXenonHost, xenonRequest, xenonSite, type XenonHost } from "./xenon.ts";
import { capture as lsCapture, destroy as lsDestroy, differences as lsDifferences, listTarget as lsListTarget, onHost, provision, rmHosts, seed as lsSeed, seedWindow as lsSeedWindow, TARGET as LS_TARGET, upHosts, writeInventory, writeSite, type Layout as LsLayout, type Snapshot as LsSnapshot } from "./lambdastack.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url)).replace(/\/$/, "");
const PG_CONTAINER_SH = `${ROOT}/test/lab/pg-container.sh`;
const HOSS_SH = `${ROOT}/test/lab/hoss.sh`;
const MiB = 1024 * 1024;
/** How long a run may take to stop after a signal or a remote's death. */
export const BOUND_MS = 30_000;
/** "In the middle of a step": this long after its heading. */
const MID_MS = 300;
/** A bulk table that makes dumps and loads last long enough to be hit mid-way (~7 MB full size, a quarter of it reduced). */
const bulkSql = (size: "full" | "reduced") =>
  `CREATE TABLE bulk AS SELECT g AS id, md5(g::text) AS a, repeat(md5((g * 7)::text), 4) AS b FROM generate_series(1, ${size === "full" ? 40000 : 10000}) g;`;

// ---------------------------------------------------------------------------------
// the table's types

/** A remote that dies during a step. */
export interface Remote<F> {
  name: string;
  /** The heading of the step during which it dies (or, for one-request steps, the step before). */
  step: RegExp;
  /** Waits until the step is visibly working (default MID_MS), then kills the remote; false when it could not. */
  kill: (fx: F) => Promise<boolean>;
  /** Brings it back (idempotent). */
  revive: (fx: F) => Promise<void>;
  /** Brought back this long after it died, while the run goes on (default: only after the run ended). */
  downMs?: number;
  /** What the error must say (the remote's name, address or the cause). */
  says: RegExp;
}

/** A folder the recipe writes, put on a small tmpfs and filled when a step starts. */
export interface Folder<F> {
  name: string;
  /** The heading of the step at which the disk fills; null: it is full when the run starts (the write comes too soon after any heading to race a filler). */
  step: RegExp | null;
  /** Where the tmpfs goes (after reset), and the extra arguments pointing the recipe at it. */
  mount: (fx: F) => { path: string; mib: number; args: string[]; fill?: string; undo?: () => void };
}

/** One recipe in the matrix. */
export interface Entry<F> {
  recipe: string;
  kind: "backup" | "restore";
  /** How a broken run is continued: --resume, or a fresh run (hoss-backup refuses --resume). */
  resume: boolean;
  /** Puts the target in the state a run starts from (restores: destroyed). */
  reset: (fx: F) => Promise<void>;
  args: (fx: F) => string[];
  /** After a completed run: [] when the result verifies, else what differs. */
  verify: (fx: F, ctx: Context) => Promise<string[]>;
  /** After a broken run: what must not be there (a torn object, an archive that does not verify). */
  leftovers: (fx: F, before: Set<string>, ctx: Context) => Promise<string[]>;
  remotes: Remote<F>[];
  folders: Folder<F>[];
  /** Cases that once found a defect: they run in the reduced size too (make test), after the seeded ones. */
  regressions?: FaultCase[];
  /**
   * Before the run that continues a broken one: what an operator does first (start a host the
   * fault left down, as the recipe's hint says); returns extra arguments for that run, and may add notes.
   */
  beforeRetry?: (fx: F, notes: string[]) => Promise<string[]>;
  /**
   * Defects found and reported but not fixed yet: a faulted run that exits with `exit`, or whose
   * output or its retry's matches `output`, records its problems as this known defect, not as a failure.
   */
  known?: { exit?: number; output?: RegExp; defect: string }[];
}

/** A system: its lab pieces, its fixture, its recipes. */
export interface System<F> {
  name: string;
  needs: string[];
  /** Seeds the source and makes the archive; "reduced" fixtures are smaller (make test). */
  setup: (work: string, ctx: Context, size: "full" | "reduced") => Promise<F>;
  teardown: (fx: F) => Promise<void>;
  env: (fx: F) => Record<string, string>;
  stateDir: (fx: F) => string;
  /** Strings no run may print. */
  secrets: (fx: F) => string[];
  /** Names under a backups folder (archives) before a run, for the final-name check. */
  finals: (fx: F) => Set<string>;
  entries: Entry<F>[];
}

export type Kind = "baseline" | "signal" | "kill" | "remote" | "enospc" | "record";

/** One case of the matrix. */
export interface FaultCase {
  kind: Kind;
  label: string;
  signal?: "SIGINT" | "SIGTERM" | "SIGKILL";
  /** 1-based step index (signals). */
  step?: number;
  where?: "boundary" | "mid";
  delayMs?: number;
  remote?: string;
  folder?: string;
}

export interface CaseResult {
  recipe: string;
  c: FaultCase;
  held: boolean;
  problems: string[];
  /** Problems of a known defect (Entry.known): reported, not counted as failures. */
  known?: string[];
  notes: string[];
  ms: number;
}

// ---------------------------------------------------------------------------------
// running a recipe with a fault

export interface Run {
  code: number | null;
  signal: string | null;
  output: string;
  ms: number;
  /** Headings seen: [index, count, title]. */
  steps: [number, number, string][];
  /** When each heading of `steps` appeared (ms after start). */
  stepAt: number[];
  /** When the fault was injected (ms after start), and during which step. */
  firedAt?: number;
  firedIn?: string;
  /** The run's processes alive when the fault was injected. */
  children: number[];
  hung: boolean;
}

/** The fault, as the runner injects it. */
export interface Trigger {
  /** A step heading index or title that arms it; none: armed at start. */
  step?: number | RegExp;
  delayMs?: number;
  /** What to do; returns whether it landed. */
  fire: (pid: number) => Promise<boolean> | boolean;
}

function procTable(): Map<number, { ppid: number; cmd: string }> {
  const out = new Map<number, { ppid: number; cmd: string }>();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const cmd = readFileSync(`/proc/${d}/cmdline`, "utf8").replace(/\0/g, " ").trim();
      out.set(Number(d), { ppid, cmd });
    } catch { /* gone */ }
  }
  return out;
}

/** Pids under pid (not pid itself). */
function descendants(pid: number): number[] {
  const t = procTable();
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [c, v] of t) if (v.ppid === p && !out.includes(c)) (out.push(c), walk(c));
  };
  walk(pid);
  return out;
}

const alive = (pid: number) => {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !/\) Z /.test(s);
  } catch {
    return false;
  }
};
const cmdOf = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ").trim();
  } catch {
    return "";
  }
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs a recipe as an operator does and injects the trigger's fault; kills it when it does not stop within bound. */
export function runRecipe(recipe: string, args: string[], env: Record<string, string>, trigger?: Trigger, boundMs = BOUND_MS, maxMs = 15 * 60_000): Promise<Run> {
  const t0 = Date.now();
  const e: Record<string, string> = { ...(process.env as Record<string, string>), NO_COLOR: "1", FORCE_COLOR: "0", CI: "1", NODE_OPTIONS: "" };
  for (const k of Object.keys(e)) if (k.startsWith("LIFEBOAT_")) delete e[k];
  Object.assign(e, env);
  const child = spawn(process.execPath, [...typeScriptFlags(process.execPath), `recipes/${recipe}.ts`, ...args], { cwd: ROOT, env: e, stdio: ["ignore", "pipe", "pipe"] });
  const run: Run = { code: null, signal: null, output: "", ms: 0, steps: [], stepAt: [], children: [], hung: false };
  let armed = trigger && trigger.step === undefined;
  let fired = false;
  let exited = false;
  let guard: NodeJS.Timeout | undefined;
  let firing: Promise<void> = Promise.resolve();
  const fire = async () => {
    if (fired || exited) return;
    fired = true;
    if (trigger!.delayMs) await sleep(trigger!.delayMs);
    if (exited) return;
    run.children = descendants(child.pid!);
    run.firedIn = run.steps.at(-1)?.[2] ?? "(before the first step)";
    let landed = false;
    try {
      landed = await trigger!.fire(child.pid!);
    } catch (e) {
      run.output += `\n[faults] the fault could not be injected: ${(e as Error).message}\n`;
    }
    if (landed) run.firedAt = Date.now() - t0;
    else fired = false; // did not land (e.g. the work was not there yet): a later heading may arm it again
    if (landed) guard = setTimeout(() => {
      run.hung = true;
      for (const p of descendants(child.pid!)) try { process.kill(p, "SIGKILL"); } catch { /* gone */ }
      child.kill("SIGKILL");
    }, boundMs);
  };
  collectLines(child, (l) => {
    run.output += `${l}\n`;
    const m = /^▶ \[(\d+)\/(\d+)\] (.*)$/.exec(l);
    if (!m) return;
    run.steps.push([Number(m[1]), Number(m[2]), m[3]]);
    run.stepAt.push(Date.now() - t0);
    if (trigger && !fired && trigger.step !== undefined) {
      const hit = typeof trigger.step === "number" ? Number(m[1]) === trigger.step : trigger.step.test(m[3]);
      if (hit) armed = true;
    }
    if (armed && !fired) firing = fire();
  });
  if (armed) firing = fire();
  const limit = setTimeout(() => {
    run.hung = true;
    child.kill("SIGKILL");
  }, maxMs);
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => {
      exited = true;
      clearTimeout(guard);
      clearTimeout(limit);
      run.code = code;
      run.signal = signal;
      run.ms = Date.now() - t0;
      // an injection still trying (a remote's kill polling for its work) must not reach the next run
      void firing.then(() => resolve(run), () => resolve(run));
    });
  });
}

// ---------------------------------------------------------------------------------
// small lab actions

const sh = (argv: string[], input?: string) => {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: "utf8", input, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${argv.join(" ")} exited ${r.status}: ${(r.stderr || r.stdout || "").slice(-500)}`);
  return r.stdout;
};
const trySh = (argv: string[]) => spawnSync(argv[0], argv.slice(1), { encoding: "utf8" });

/** Mounts a tmpfs of mib MiB at path (made when missing). */
function mountTmpfs(path: string, mib: number): void {
  mkdirSync(path, { recursive: true });
  sh(["mount", "-t", "tmpfs", "-o", `size=${mib}m,mode=700`, "tmpfs", path]);
}
function unmount(path: string): void {
  trySh(["umount", "-l", path]);
}
/** Fills the filesystem of dir (zeros until ENOSPC; the recipe may be writing there at the same time). */
function fillDisk(dir: string): string {
  const f = join(dir, ".faults-filler");
  trySh(["dd", "if=/dev/zero", `of=${f}`, "bs=1M", "status=none"]);
  return f;
}

/** Stops radosgw (SIGTERM by its pid file); revive with gatewayStart. */
function gatewayStop(): boolean {
  const pidFile = join(LAB_DIR, "ceph/run/client.rgw.a.pid");
  const pid = Number(readFileSync(pidFile, "utf8"));
  try {
    process.kill(pid, "SIGKILL");
    return true;
  } catch {
    return false;
  }
}
/** Starts radosgw again as test/lab/ceph.sh does, and waits until it answers (60 s). */
async function gatewayStart(): Promise<void> {
  const lab = needLab("ceph");
  const answers = async () => {
    try {
      return (await fetch(lab.LAB_S3_ENDPOINT, { signal: AbortSignal.timeout(2000) })).status === 200;
    } catch {
      return false;
    }
  };
  if (await answers()) return;
  const D = join(LAB_DIR, "ceph");
  const pid = Number(readFileSync(join(D, "run/client.rgw.a.pid"), "utf8"));
  if (!alive(pid)) {
    sh(["bash", "-c", `setsid radosgw -c "$1" -n client.rgw.a -f </dev/null >"$2" 2>&1 & echo $! > "$3"`, "_", lab.LAB_CEPH_CONF, join(D, "log/client.rgw.a.out"), join(D, "run/client.rgw.a.pid")]);
  }
  for (let i = 0; i < 300; i++) {
    if (await answers()) return;
    await sleep(200);
  }
  throw new Error("radosgw did not answer within 60 s after a restart (test/lab/ceph.sh up brings it back)");
}

/** Kills (SIGKILL) the sshd session process serving a command whose argv mentions `mark`; polls up to 10 s. */
async function killSshdServing(mark: string): Promise<boolean> {
  for (let i = 0; i < 500; i++) {
    const t = procTable();
    for (const [pid, v] of t) {
      if (!v.cmd.includes(mark) || !/^(bash -c |sh -c )?.*\btar\b/.test(v.cmd) || v.cmd.startsWith("ssh ")) continue;
      // walk up to the session's sshd
      let p = v.ppid;
      while (p > 1 && t.has(p) && !/^sshd: /.test(t.get(p)!.cmd)) p = t.get(p)!.ppid;
      if (p > 1 && t.has(p)) {
        try {
          process.kill(p, "SIGKILL");
          return true;
        } catch { /* gone */ }
      }
    }
    await sleep(20);
  }
  return false;
}

/** Ends every client backend but the caller's own (what pg_terminate_backend does for an admin). */
const TERMINATE_SQL = "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND datname IS NOT NULL) t";

/** Runs TERMINATE_SQL through `run` (which returns how many it ended) until it ends one; polls `tries` × 50 ms. */
async function terminateBackends(run: (sql: string) => number, tries = 200): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    if (run(TERMINATE_SQL) > 0) return true;
    await sleep(50);
  }
  return false;
}
/** TERMINATE_SQL in a container's PostgreSQL (0 when psql fails). */
const inContainer = (container: string) => (sql: string) => {
  const r = trySh(["docker", "exec", "-u", "postgres", container, "psql", "-X", "-At", "-c", sql]);
  return r.status === 0 ? Number(r.stdout.trim()) : 0;
};

function killPidFile(file: string): boolean {
  try {
    process.kill(Number(readFileSync(file, "utf8")), "SIGKILL");
    return true;
  } catch {
    return false;
  }
}

/** Mulberry32: a small seeded generator, so a failing case can be replayed from its seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------------------------
// cases

/** Options for {@link casesFor}. */
export interface MatrixSize {
  /**
   * "full": every step boundary and middle, `kills` SIGKILLs, every remote and folder.
   * "reduced" (make test): per recipe one SIGINT or SIGTERM in the middle of a step or `kills`
   * SIGKILLs; per system one remote death and one full folder, on recipes the seed picks.
   */
  size: "full" | "reduced";
  kills: number;
  seed: number;
  /** Only cases of these kinds (the baseline always runs); empty or missing: every kind. */
  kinds?: Kind[];
}

/** What the baseline run told: its headings (index, count, title) and when each appeared (ms). */
export interface Baseline {
  steps: [number, number, string][];
  stepAt: number[];
  ms: number;
}

/**
 * Reduced size, per system (seeded): each recipe gets one interrupt, a SIGINT/SIGTERM in the middle
 * of a step or a SIGKILL, alternating so that a system with two or more recipes has both; and one
 * recipe gets a remote death, one (another, when there is one) a full folder.
 */
export function reducedExtras<F>(entries: Entry<F>[], seed: number): Map<string, Kind[]> {
  const r = rng(seed ^ 0x5eed);
  const first = r() < 0.5 ? 0 : 1;
  const out = new Map<string, Kind[]>(entries.map((e, i) => [e.recipe, [(i + first) % 2 ? "kill" : "signal"]]));
  const withRemote = entries.filter((e) => e.remotes.length);
  const remote = withRemote.length ? withRemote[Math.floor(r() * withRemote.length)] : undefined;
  if (remote) out.get(remote.recipe)!.push("remote");
  const withFolder = entries.filter((e) => e.folders.length);
  const others = withFolder.filter((e) => e !== remote);
  const pool = others.length ? others : withFolder;
  if (pool.length) out.get(pool[Math.floor(r() * pool.length)].recipe)!.push("enospc");
  return out;
}

/** The cases of one recipe, once its baseline run told its steps and duration; `extras`: the reduced size's remote/enospc share. */
export function casesFor<F>(e: Entry<F>, base: Baseline, m: MatrixSize, extras: Kind[] = []): FaultCase[] {
  const r = rng(m.seed ^ hash(e.recipe));
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];
  const out: FaultCase[] = [];
  const steps = base.steps.at(-1)?.[1] ?? 0;
  const baselineMs = base.ms;
  const sig = (signal: "SIGINT" | "SIGTERM", step: number, where: "boundary" | "mid") =>
    out.push({ kind: "signal", signal, step, where, label: `${signal} ${where === "boundary" ? "at the start of" : "in the middle of"} step ${step}/${steps}` });
  if (m.size === "full") {
    for (let i = 1; i <= steps; i++) sig(i % 2 ? "SIGINT" : "SIGTERM", i, "boundary");
    for (let i = 1; i <= steps; i++) sig(i % 2 ? "SIGTERM" : "SIGINT", i, "mid");
  } else if (extras.includes("signal")) {
    // the middle of a step that ran in the baseline and lasted long enough to be hit there
    const ran = base.steps.map(([i], k) => ({ i, ms: (base.stepAt[k + 1] ?? baselineMs) - base.stepAt[k] }));
    const long = ran.filter((x) => x.ms >= 2 * MID_MS);
    const at = pick(long.length ? long : ran);
    if (at) sig(pick(["SIGINT", "SIGTERM"] as const), at.i, "mid");
  }
  // Startup (node + tsx) is part of the measured duration: kills spread over all of it.
  for (let k = 0; k < (m.size === "full" || extras.includes("kill") ? m.kills : 0); k++) {
    const delayMs = Math.round(baselineMs * (0.05 + 0.95 * r()));
    out.push({ kind: "kill", signal: "SIGKILL", delayMs, label: `SIGKILL after ${(delayMs / 1000).toFixed(2)}s (seed ${m.seed}, #${k + 1})` });
  }
  // Killed once a step's work is done, before the journal records it (the fault point
  // LIFEBOAT_FAULT_KILL_AT_RECORD): the resumed run meets the step's own finished work. Full size:
  // every step that ran, when asked for (--kinds record); reduced: one seeded step per recipe.
  const record = (i: number, title: string) => out.push({ kind: "record", step: i, label: `killed at the record of step ${i}/${steps} (${title.length > 50 ? `${title.slice(0, 49)}…` : title})` });
  if (m.size === "full" && m.kinds?.includes("record")) for (const [i, , title] of base.steps) record(i, title);
  else if (m.size !== "full" && base.steps.length) {
    const [i, , title] = pick(base.steps);
    record(i, title);
  }
  const some = <T>(xs: T[], kind: Kind) => (m.size === "full" ? xs : extras.includes(kind) && xs.length ? [pick(xs)] : []);
  for (const x of some(e.remotes, "remote")) out.push({ kind: "remote", remote: x.name, label: `${x.name} dies` });
  for (const x of some(e.folders, "enospc")) out.push({ kind: "enospc", folder: x.name, label: `no space left in ${x.name}` });
  return m.kinds?.length ? out.filter((c) => m.kinds!.includes(c.kind)) : out;
}

function hash(s: string): number {
  let h = 2166136261;
  for (const ch of s) h = Math.imul(h ^ ch.charCodeAt(0), 16777619);
  return h >>> 0;
}

const EXIT = { SIGINT: 130, SIGTERM: 143 } as const;

/** Runs one case end to end: reset, the faulted run, its checks, the recovery, the verification. */
export async function runCase<F>(sys: System<F>, e: Entry<F>, fx: F, c: FaultCase, ctx: Context, log: (l: string) => void = () => {}): Promise<CaseResult & { run?: Run }> {
  const t0 = Date.now();
  const problems: string[] = [];
  const notes: string[] = [];
  const env = sys.env(fx);
  await e.reset(fx);
  let args = e.args(fx);
  let mounted: string | null = null;
  let filler: string | null = null;
  let undo: (() => void) | null = null;
  let reviving: Promise<void> | null = null;
  try {
    let trigger: Trigger | undefined;
    const remote = c.remote ? e.remotes.find((x) => x.name === c.remote)! : undefined;
    if (c.kind === "signal") {
      trigger = { step: c.step, delayMs: c.where === "mid" ? MID_MS : 0, fire: (pid) => (process.kill(pid, c.signal!), true) };
    } else if (c.kind === "kill") {
      trigger = { delayMs: c.delayMs, fire: (pid) => (process.kill(pid, "SIGKILL"), true) };
    } else if (c.kind === "remote") {
      trigger = {
        step: remote!.step,
        fire: async () => {
          const landed = await remote!.kill(fx);
          if (landed && remote!.downMs) reviving = sleep(remote!.downMs).then(() => remote!.revive(fx));
          return landed;
        },
      };
    } else if (c.kind === "enospc") {
      const folder = e.folders.find((x) => x.name === c.folder)!;
      const m = folder.mount(fx);
      mountTmpfs(m.path, m.mib);
      mounted = m.path;
      undo = m.undo ?? null;
      args = [...args, ...m.args];
      trigger = { step: folder.step ?? undefined, fire: () => ((filler = fillDisk(m.fill ?? m.path)), true) }; // no step: fired as the run starts
    }
    const before = sys.finals(fx);
    const runEnv = c.kind === "record" ? { ...env, LIFEBOAT_FAULT_KILL_AT_RECORD: `#${c.step}` } : env;
    const run = await runRecipe(e.recipe, args, runEnv, trigger, c.kind === "remote" ? 120_000 : BOUND_MS);
    const where = run.firedIn ? ` (landed in '${run.firedIn}' at ${(run.firedAt! / 1000).toFixed(2)}s)` : "";
    log(`    ${c.label}: exit ${run.code ?? run.signal}${where} after ${formatDuration(run.ms)}`);
    const tail = () => run.output.split("\n").filter(Boolean).slice(-12).map((l) => `      │ ${l}`).join("\n");
    for (const s of sys.secrets(fx)) if (s && run.output.includes(s)) problems.push(`the output shows a secret (${s.slice(0, 3)}…)`);
    if (run.hung) problems.push(`hang: the run did not stop within ${(c.kind === "remote" ? 120 : BOUND_MS / 1000)} s of the fault; killed\n${tail()}`);

    const locks = join(sys.stateDir(fx), "locks");
    const lockLeft = existsSync(locks) && readdirSync(locks).some((n) => n.startsWith(`${e.recipe}--`));
    let broken = run.code !== 0;
    if (c.kind === "baseline") {
      if (run.code !== 0) problems.push(`a normal run exited ${run.code}\n${tail()}`);
    } else if (c.kind === "record") {
      if (run.signal !== "SIGKILL") notes.push(`the step's record was not reached (exit ${run.code}): the fault did not land`);
      if (run.signal !== "SIGKILL" && run.code !== 0) problems.push(`exit ${run.code} before the step's record\n${tail()}`);
    } else if (run.firedAt === undefined) {
      notes.push("the fault did not land (the run finished first)");
      if (run.code !== 0) problems.push(`exit ${run.code ?? run.signal} with no fault injected\n${tail()}`);
    } else if (c.kind === "signal" && run.code === 0) {
      // the signal came after the run had finished (its last step was tiny): it did not land
      notes.push(`the ${c.signal} came after the run had finished (exit 0): it did not land`);
    } else if (c.kind === "signal") {
      const want = EXIT[c.signal as "SIGINT"];
      if (run.code !== want) problems.push(`exit ${run.code ?? run.signal}, want ${want} (${c.signal})\n${tail()}`);
      else if (!run.hung && run.ms - run.firedAt > BOUND_MS) problems.push(`stopped ${formatDuration(run.ms - run.firedAt)} after ${c.signal}`);
      await sleep(500);
      const left = run.children.filter(alive).map((p) => `${p} ${cmdOf(p)}`).filter((l) => !/standins\/|\bradosgw\b/.test(l));
      if (left.length) problems.push(`still running after the exit: ${left.join("; ")}`);
      if (lockLeft) problems.push("the lock was not released");
    } else if (c.kind === "kill") {
      if (run.signal !== "SIGKILL") notes.push(`the run ended (exit ${run.code}) before the kill`);
      // the orphans of a killed run (its children are in process groups of their own) end on a broken pipe
      for (let i = 0; i < 100 && run.children.some(alive); i++) await sleep(100);
      const left = run.children.filter(alive).map((p) => `${p} ${cmdOf(p)}`).filter((l) => !/standins\/|\bradosgw\b/.test(l));
      if (left.length) notes.push(`orphans still running 10 s after the kill: ${left.join("; ")}`);
    } else if (c.kind === "remote") {
      if (run.code === 0) notes.push("the run rode the outage out");
      else if (!remote!.says.test(run.output)) problems.push(`the error does not name ${remote!.name} or the cause (${remote!.says})\n${tail()}`);
      if (run.code !== 0 && lockLeft && !run.hung) problems.push("the lock was not released");
    } else if (c.kind === "enospc") {
      if (run.code === 0) problems.push("the run succeeded on a full disk");
      else if (!/no space left|ENOSPC|not enough space/i.test(run.output) && !(mounted && run.output.includes(mounted))) problems.push(`the error neither says 'no space left' nor names ${mounted}\n${tail()}`);
    }
    if (c.kind !== "baseline") problems.push(...(await e.leftovers(fx, before, ctx)));

    // bring back what the fault took away, then continue
    if (reviving) await reviving;
    if (remote) await remote.revive(fx);
    if (filler) rmSync(filler, { force: true });
    let retryOutput = "";
    if (broken) {
      args = [...args, ...((await e.beforeRetry?.(fx, notes)) ?? [])];
      let rec = await runRecipe(e.recipe, [...args, ...(e.resume ? ["--resume"] : [])], env, undefined, BOUND_MS);
      const firstRetry = rec.output; // the run that found the stale lock, when a fresh run follows it
      if (e.resume && rec.code === 2 && /nothing to resume/.test(rec.output)) {
        notes.push("nothing to resume (killed before its first step): a fresh run");
        rec = await runRecipe(e.recipe, args, env);
      } else if (e.resume && rec.code === 2 && /without --resume/.test(rec.output)) {
        // the recipe refused to resume (xenon-restore: a PATCH sent, maybe half done): as its hint says, a fresh target and run
        notes.push("--resume refused as unsafe: reset the target and a fresh run, as the recipe's hint says");
        await e.reset(fx);
        rec = await runRecipe(e.recipe, args, env);
      }
      for (const s of sys.secrets(fx)) if (s && rec.output.includes(s)) problems.push(`the recovery's output shows a secret (${s.slice(0, 3)}…)`);
      if (rec.code === 4) problems.push("the next run found the lock held (exit 4)");
      if (rec.code !== 0) problems.push(`the ${e.resume ? "resumed" : "next"} run exited ${rec.code}\n${rec.output.split("\n").filter(Boolean).slice(-12).map((l) => `      │ ${l}`).join("\n")}`);
      if (c.kind === "kill" && lockLeft && !/taking over stale lock/.test(firstRetry + rec.output)) problems.push("the stale lock was not taken over with a warning");
      log(`      then ${e.resume ? "--resume" : "a fresh run"}: exit ${rec.code} after ${formatDuration(rec.ms)}`);
      retryOutput = rec.output;
      broken = rec.code !== 0;
    }
    if (!broken) problems.push(...(await e.verify(fx, ctx)));
    const defect = c.kind === "baseline" || !problems.length ? undefined : e.known?.find((k) => (k.exit !== undefined && k.exit === run.code) || k.output?.test(run.output + retryOutput));
    if (defect) {
      // the run hit a known, reported defect: recorded, not counted as a failure
      const known = [`known defect: ${defect.defect}`, ...problems.map((p) => p.split("\n")[0])];
      return { recipe: e.recipe, c, held: true, problems: [], known, notes, ms: Date.now() - t0, run };
    }
    return { recipe: e.recipe, c, held: problems.length === 0, problems, notes, ms: Date.now() - t0, run };
  } catch (err) {
    problems.push(`the case itself failed: ${(err as Error).stack ?? err}`);
    return { recipe: e.recipe, c, held: false, problems, notes, ms: Date.now() - t0 };
  } finally {
    if (mounted) unmount(mounted);
    undo?.();
  }
}

/** Options for {@link runMatrix}. */
export interface MatrixOptions extends MatrixSize {
  /** Only these recipes (default: every recipe of every system). */
  recipes?: string[];
  work: string;
  ctx: Context;
  log: (l: string) => void;
}

/** Runs the matrix: per system, setup, then per recipe a baseline and its cases. */
export async function runMatrix(systems: System<any>[], o: MatrixOptions): Promise<{ results: CaseResult[]; ms: number }> {
  const t0 = Date.now();
  const results: CaseResult[] = [];
  o.log(`fault matrix: ${o.size} size, seed ${o.seed} (replay with --seed ${o.seed})`);
  const chosen = (sys: System<any>) => sys.entries.filter((e) => !o.recipes?.length || o.recipes.includes(e.recipe));
  const extras = new Map(systems.flatMap((sys) => [...reducedExtras(chosen(sys), o.seed ^ hash(sys.name))]));
  if (o.size === "reduced") {
    const who = (k: Kind) => [...extras].filter(([, ks]) => ks.includes(k)).map(([r]) => r).join(", ") || "none";
    o.log(`reduced: SIGINT/SIGTERM in ${who("signal")}; SIGKILL in ${who("kill")}; a remote dies in ${who("remote")}; a folder fills in ${who("enospc")} (seed ${o.seed})`);
  }
  for (const sys of systems) {
    const entries = chosen(sys);
    if (!entries.length) continue;
    o.log(chalk.bold(`${sys.name}: setting up the source and its archive`));
    const fx = await sys.setup(join(o.work, sys.name), o.ctx, o.size);
    try {
      for (const e of entries) {
        o.log(chalk.bold(`${e.recipe}`));
        const base = await runCase(sys, e, fx, { kind: "baseline", label: "a normal run" }, o.ctx, o.log);
        results.push(base);
        report(base, o.log);
        if (!base.held || !base.run?.steps.length) continue;
        const cases = casesFor(e, base.run, o, extras.get(e.recipe));
        if (o.size === "reduced") cases.push(...(e.regressions ?? []).filter((x) => !cases.some((c) => c.label === x.label)));
        for (const c of cases) {
          if (o.ctx.signal.aborted) throw o.ctx.signal.reason; // interrupted: stop between cases, tear down
          const r = await runCase(sys, e, fx, c, o.ctx, o.log);
          results.push(r);
          report(r, o.log);
        }
      }
    } finally {
      await sys.teardown(fx);
    }
  }
  return { results, ms: Date.now() - t0 };
}

function report(r: CaseResult, log: (l: string) => void): void {
  const mark = r.held ? chalk.green("✔") : chalk.red("✖");
  log(`  ${mark} ${r.recipe}: ${r.c.label} ${chalk.dim(formatDuration(r.ms))}${r.notes.length ? chalk.dim(` (${r.notes.join("; ")})`) : ""}`);
  for (const p of r.problems) log(chalk.red(`      ${p}`));
  for (const p of r.known ?? []) log(chalk.yellow(`      ${p}`));
}

/** The summary table: per recipe and kind, cases run and held. */
export function summaryTable(results: CaseResult[], ms: number): string[] {
  const kinds: Kind[] = ["baseline", "signal", "kill", "remote", "enospc", ...(results.some((r) => r.c.kind === "record") ? ["record" as const] : [])];
  const recipes = [...new Set(results.map((r) => r.recipe))];
  const w = Math.max(8, ...recipes.map((r) => r.length));
  const cell = (rs: CaseResult[]) => {
    if (!rs.length) return chalk.dim("-".padStart(9));
    const held = rs.filter((r) => r.held).length;
    const s = `${held}/${rs.length}`.padStart(9);
    return held === rs.length ? chalk.green(s) : chalk.red(s);
  };
  const lines = [chalk.bold(`${"recipe".padEnd(w)} ${kinds.map((k) => k.padStart(9)).join("")}${"total".padStart(9)}${"time".padStart(9)}`)];
  for (const rec of recipes) {
    const rs = results.filter((r) => r.recipe === rec);
    lines.push(`${rec.padEnd(w)} ${kinds.map((k) => cell(rs.filter((r) => r.c.kind === k))).join("")}${cell(rs)}${formatDuration(rs.reduce((a, r) => a + r.ms, 0)).padStart(9)}`);
  }
  lines.push(`${"all".padEnd(w)} ${kinds.map((k) => cell(results.filter((r) => r.c.kind === k))).join("")}${cell(results)}${formatDuration(ms).padStart(9)}`);
  lines.push(chalk.dim("cells: cases held / cases run"));
  return lines;
}

// ---------------------------------------------------------------------------------
// shared checks

/** Backups: every archive under a final name that was not there before must verify. */
async function newArchivesVerify(folder: string, before: Set<string>, passphrase: string): Promise<string[]> {
  const out: string[] = [];
  for (const b of listBackups(folder)) {
    if (before.has(b.name)) continue;
    try {
      await verifyArchive(b.path, { decrypt: { passphrase } });
    } catch (e) {
      out.push(`${b.name} looks like a complete backup but does not verify: ${(e as Error).message.split("\n")[0]}`);
    }
  }
  return out;
}

/** The newest archive verifies; no `.partial-…` is left; returns its manifest's meta. */
async function newestVerifies<M>(folder: string, passphrase: string, problems: string[]): Promise<M | null> {
  const newest = listBackups(folder)[0];
  const partial = readdirSync(folder).filter((n) => n.startsWith(".partial-"));
  if (partial.length) problems.push(`left in ${folder} after a complete run: ${partial.join(", ")}`);
  if (!newest) {
    problems.push(`no archive in ${folder}`);
    return null;
  }
  try {
    const r = await verifyArchive<M>(newest.path, { decrypt: { passphrase } });
    return r.manifest?.meta ?? null;
  } catch (e) {
    problems.push(`${newest.name} does not verify: ${(e as Error).message.split("\n")[0]}`);
    return null;
  }
}

/** Sizes of the regular files under root (relative paths), or of the one file `only`. */
function fileSizes(root: string, only?: string): Map<string, number> {
  const out = new Map<string, number>();
  const visit = (rel: string) => {
    let st;
    try {
      st = lstatSync(join(root, rel));
    } catch {
      return;
    }
    if (st.isFile()) out.set(rel, st.size);
    else if (st.isDirectory() && only === undefined) for (const n of readdirSync(join(root, rel))) visit(rel ? `${rel}/${n}` : n);
  };
  visit(only ?? "");
  return out;
}

function clearArchives(folder: string): void {
  if (!existsSync(folder)) return;
  for (const n of readdirSync(folder)) rmSync(join(folder, n), { recursive: true, force: true });
}

// ---------------------------------------------------------------------------------
// Deis: its own buckets, store volume and database container, so other drills on the lab are untouched

interface DeisFx {
  work: string;
  site: string;
  backups: string;
  state: string;
  standin: string;
  storeDir: string;
  restoreStaging: string;
  buckets: [string, string];
  container: string;
  passphrase: string;
  s3: S3Handle;
  objects: Record<string, Record<string, string>>;
  before: { store: string; dump: string };
  archive: string;
  secrets: string[];
}

async function deisObjects(fx: DeisFx): Promise<Record<string, Record<string, string>>> {
  const out: Record<string, Record<string, string>> = {};
  for (const b of fx.buckets) {
    out[b] = {};
    try {
      for await (const o of s3List(fx.s3, b)) out[b][o.key] = `${o.size} ${o.etag}`;
    } catch (e) {
      if (!/no such bucket/i.test((e as Error).message)) throw e;
    }
  }
  return out;
}

async function deisDump(fx: DeisFx, file: string): Promise<string> {
  await pgDumpAll({ container: fx.container, osUser: "postgres" }, file, { restrictKey: "LIFEBOATFAULTS", progress: false });
  return readFileSync(file, "utf8");
}

const deisSystem: System<DeisFx> = {
  name: "deis",
  needs: ["docker", "sshd", "ceph"],
  async setup(work, ctx, size) {
    const lab = needLab("docker", "sshd", "ceph");
    rmSync(work, { recursive: true, force: true });
    mkdirSync(work, { recursive: true });
    const tag = `lbf${process.pid}`;
    const fx: DeisFx = {
      work, site: join(work, "site.yaml"), backups: join(work, "backups"), state: join(work, "state"), standin: join(work, "deisctl"),
      storeDir: join(work, "store"), restoreStaging: join(work, "restore-staging"), buckets: [`${tag}-db_wal`, `${tag}-registry`],
      container: `lifeboat-faults-deis-db-${process.pid}`, passphrase: "faults: correct horse battery staple", s3: labGateway(),
      objects: {}, before: { store: join(work, "before/store"), dump: "" }, archive: join(work, "golden/deis-backup.tar.gz.age"),
      secrets: [lab.LAB_S3_SECRET_KEY, "faults: correct horse battery staple", "deis-lab-password", "it's a $ecret"],
    };
    mkdirSync(fx.standin, { recursive: true });
    writeFileSync(join(fx.standin, "access-key"), lab.LAB_S3_ACCESS_KEY + "\n", { mode: 0o600 });
    writeFileSync(join(fx.standin, "secret-key"), lab.LAB_S3_SECRET_KEY + "\n", { mode: 0o600 });
    writeFileSync(join(work, "passphrase"), fx.passphrase + "\n", { mode: 0o600 });
    const site = {
      "state-dir": fx.state,
      backups: { dir: fx.backups },
      gateway: { endpoint: lab.LAB_S3_ENDPOINT, region: lab.LAB_S3_REGION || "us-east-1", buckets: fx.buckets, concurrency: 8 },
      deisctl: { command: [DEISCTL_STANDIN] },
      store: { host: lab.LAB_SSH_HOST, port: Number(lab.LAB_SSH_PORT), user: "root", "identity-file": lab.LAB_SSH_KEY, "known-hosts": lab.LAB_SSH_KNOWN_HOSTS, sudo: false, dir: fx.storeDir },
      database: { container: fx.container, "exec-user": "postgres" },
      restore: { "load-dump": true, "wait-seconds": 60, "work-dir": fx.restoreStaging },
      controller: { resave: "off" },
      age: { "passphrase-file": join(work, "passphrase") },
    };
    writeFileSync(fx.site, "# generated by tasks/drills/faults.ts\n" + YAML.stringify(site), { mode: 0o600 });
    // the source: buckets, store volume, database (with a bulk table, so dumps take a moment)
    const files = bucketFiles();
    for (const [i, src] of ["db_wal", "registry"].entries()) {
      const b = fx.buckets[i];
      await s3RemoveBucket(fx.s3, b, { purge: true });
      await s3MakeBucket(fx.s3, b);
      const dir = join(work, "seed", b);
      for (const [key, data] of Object.entries(files[src])) {
        mkdirSync(join(dir, key, ".."), { recursive: true });
        writeFileSync(join(dir, key), data.subarray(0, 6 * MiB)); // smaller than the drill's: many runs; the big layer stays multipart
      }
      await s3Sync(dir, `s3://${b}`, { client: fx.s3, index: false, multipartThreshold: 5 * MiB, partSize: 5 * MiB, progress: false });
    }
    rmSync(join(work, "seed"), { recursive: true, force: true });
    fx.objects = await deisObjects(fx);
    seedStore(fx.storeDir);
    sh(["truncate", "-s", size === "full" ? "2M" : "512K", join(fx.storeDir, "logs/deis-registry.log")]);
    mkdirSync(join(work, "before"), { recursive: true });
    await exec(["cp", "-a", "--", fx.storeDir, fx.before.store]);
    sh(["bash", PG_CONTAINER_SH, "run", fx.container]);
    sh(["docker", "exec", "-i", "-u", "postgres", fx.container, "psql", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"], `${DEIS_SQL}\n\\connect deis\nSET ROLE deis;\n${bulkSql(size)}\n`);
    fx.before.dump = await deisDump(fx, join(work, "before/dump.sql"));
    // the archive the restores take in
    const r = await runRecipe("deis-backup", ["--config", fx.site, "--yes"], { DEISCTL_STANDIN_DIR: fx.standin });
    if (r.code !== 0) throw new Error(`deis-backup (setup) exited ${r.code}:\n${r.output.slice(-3000)}`);
    mkdirSync(join(work, "golden"), { recursive: true });
    copyFileSync(listBackups(fx.backups)[0].path, fx.archive);
    clearArchives(fx.backups);
    ctx.log.info(`  deis source: ${Object.values(fx.objects).reduce((n, o) => n + Object.keys(o).length, 0)} objects, store ${fx.storeDir}, container ${fx.container}; archive made in ${formatDuration(r.ms)}`);
    return fx;
  },
  async teardown(fx) {
    for (const b of fx.buckets) await s3RemoveBucket(fx.s3, b, { purge: true }).catch(() => {});
    fx.s3.destroy();
    trySh(["bash", PG_CONTAINER_SH, "rm", fx.container]);
    rmSync(fx.work, { recursive: true, force: true });
  },
  env: (fx) => ({ DEISCTL_STANDIN_DIR: fx.standin }),
  stateDir: (fx) => fx.state,
  secrets: (fx) => fx.secrets,
  finals: (fx) => new Set(listBackups(fx.backups).map((b) => b.name)),
  entries: [],
};

/** backups.dir on a tmpfs for one case (staging lives inside it). */
function fullBackups(fx: DeisFx) {
  const path = join(fx.work, "full-backups");
  const old = fx.backups;
  fx.backups = path;
  return { path, mib: 200, args: [`--backups.dir=${path}`], undo: () => void (fx.backups = old) };
}

const deisRemotes = {
  ssh: (step: RegExp): Remote<DeisFx> => ({
    name: "ssh connection", step, says: /ssh|127\.0\.0\.1|connection|closed|store/i,
    kill: (fx) => killSshdServing(fx.storeDir), revive: async () => {},
  }),
  gateway: (step: RegExp): Remote<DeisFx> => ({
    name: "S3 gateway (radosgw)", step, says: /gateway|s3|7480|unreachable|ECONNREFUSED/i,
    kill: async () => (await sleep(MID_MS), gatewayStop()), revive: () => gatewayStart(), downMs: 15_000,
  }),
  container: (step: RegExp): Remote<DeisFx> => ({
    name: "database container (docker kill)", step, says: /container|docker|not running|lifeboat-faults-deis-db/i,
    kill: async (fx) => (await sleep(MID_MS), trySh(["docker", "kill", fx.container]).status === 0),
    revive: async (fx) => void (trySh(["docker", "start", fx.container]), sh(["bash", PG_CONTAINER_SH, "wait", fx.container])),
  }),
  postgres: (step: RegExp): Remote<DeisFx> => ({
    name: "PostgreSQL server (backends terminated)", step, says: /terminat|server closed|connection|postgres|psql|pg_dump/i,
    kill: (fx) => terminateBackends(inContainer(fx.container)), revive: async () => {},
  }),
};

deisSystem.entries.push(
  {
    recipe: "deis-backup",
    kind: "backup",
    resume: true,
    reset: async (fx) => clearArchives(fx.backups),
    args: (fx) => ["--config", fx.site, "--yes"],
    async verify(fx) {
      const problems: string[] = [];
      const meta = await newestVerifies<{ deis: { buckets: Record<string, { objects: number }> } }>(fx.backups, fx.passphrase, problems);
      for (const b of fx.buckets) {
        const want = Object.keys(fx.objects[b]).length;
        if (meta && meta.deis.buckets[b]?.objects !== want) problems.push(`the archive holds ${meta.deis.buckets[b]?.objects} objects of s3://${b}, the source ${want}`);
      }
      return problems;
    },
    leftovers: (fx, before) => newArchivesVerify(fx.backups, before, fx.passphrase),
    remotes: [
      deisRemotes.gateway(/^download s3:\/\/.*registry/),
      deisRemotes.ssh(/^tar the store volume/),
      deisRemotes.container(/^dump the database/),
      deisRemotes.postgres(/^dump the database/),
    ],
    folders: [
      { name: "staging (backups.dir/.deis-backup-staging)", step: /^download s3:\/\/.*registry/, mount: (fx) => fullBackups(fx) },
      { name: "backups folder (backups.dir)", step: /^pack and verify/, mount: (fx) => fullBackups(fx) },
    ],
  },
  {
    recipe: "deis-restore",
    kind: "restore",
    resume: true,
    async reset(fx) {
      for (const b of fx.buckets) await s3RemoveBucket(fx.s3, b, { purge: true });
      rmSync(fx.storeDir, { recursive: true, force: true });
      rmSync(fx.restoreStaging, { recursive: true, force: true });
      sh(["bash", PG_CONTAINER_SH, "run", fx.container]);
    },
    args: (fx) => [fx.archive, "--config", fx.site, "--yes"],
    async verify(fx) {
      const problems: string[] = [];
      const now = await deisObjects(fx);
      for (const b of fx.buckets) {
        for (const [k, v] of Object.entries(fx.objects[b])) if (now[b][k] !== v) problems.push(`s3://${b}/${k}: was "${v}", is "${now[b][k] ?? "missing"}"`);
        for (const k of Object.keys(now[b])) if (!(k in fx.objects[b])) problems.push(`s3://${b}/${k}: not there before`);
      }
      for (const d of await compareTrees(fx.before.store, fx.storeDir)) problems.push(`store: ${d}`);
      const dump = await deisDump(fx, join(fx.work, "dump-after.sql"));
      if (dump !== fx.before.dump) problems.push("databases: pg_dumpall differs from before");
      // a staging folder that is a mount point (the ENOSPC case) is kept, empty (clearStaging)
      if (existsSync(fx.restoreStaging) && readdirSync(fx.restoreStaging).length) problems.push(`staging left: ${fx.restoreStaging} holds ${readdirSync(fx.restoreStaging).join(", ")}`);
      return problems.slice(0, 20);
    },
    async leftovers(fx) {
      // every object the broken run put back is whole (same size and ETag as the source)
      const now = await deisObjects(fx);
      const out: string[] = [];
      for (const b of fx.buckets) for (const [k, v] of Object.entries(now[b])) if (fx.objects[b][k] !== v) out.push(`s3://${b}/${k}: torn: "${v}", the source's "${fx.objects[b][k]}"`);
      // and every store file under its final name is whole (tar -x writes in place: a cut-off one is short)
      for (const [rel, size] of fileSizes(fx.before.store)) {
        const now = fileSizes(fx.storeDir, rel);
        if (now.has(rel) && now.get(rel) !== size) out.push(`store ${rel}: torn: ${now.get(rel)} of ${size} bytes under its final name`);
      }
      return out.slice(0, 10);
    },
    regressions: [
      // a cut-off load left roles and databases over which --resume's reload failed ("role … already exists")
      { kind: "remote", remote: "PostgreSQL server (backends terminated)", label: "PostgreSQL server (backends terminated) dies (regression: a cut-off load of dump_all.sql)" },
    ],
    remotes: [
      deisRemotes.gateway(/^upload the buckets/),
      deisRemotes.ssh(/^untar the store data/),
      deisRemotes.container(/^load dump_all\.sql/),
      deisRemotes.postgres(/^load dump_all\.sql/),
    ],
    folders: [
      { name: "staging (restore.work-dir)", step: /^unpack the archive/, mount: (fx) => ({ path: fx.restoreStaging, mib: 400, args: [], fill: fx.restoreStaging }) },
      { name: "store volume (store.dir, over ssh)", step: /^untar the store data/, mount: (fx) => ({ path: fx.storeDir, mib: 64, args: [] }) },
    ],
  },
);

// ---------------------------------------------------------------------------------
// Hoss: the lab Hoss of tasks/drills/hoss.ts, with an LDAP database of its own (slapcat and
// slapadd on a private copy of the lab's slapd.conf), so the shared slapd is never touched

interface HossFx {
  dir: string;
  hossDir: string;
  backupRoot: string;
  keysDir: string;
  container: string;
  envFile: string;
  site: string;
  state: string;
  search: string;
  ldapConf: string;
  ldapDb: string;
  archive: string;
  before: { db: Record<string, string>; search: unknown; configDir: string; keysDir: string; ldif: string };
  secrets: string[];
}

const hossSystem: System<HossFx> = {
  name: "hoss",
  needs: ["docker", "slapd"],
  async setup(dir, ctx, size) {
    const lab = needLab("docker", "slapd");
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const hossDir = `${dir}/home/.hoss`;
    const [osPort, serverPort] = [await freePort(), await freePort()];
    const fx: HossFx = {
      dir, hossDir, backupRoot: `${hossDir}/backup`, keysDir: `${dir}/volumes/server_auth-secrets/_data`, container: `lifeboat-faults-hoss-db-${process.pid}`,
      envFile: `${dir}/hoss-lab.env`, site: `${dir}/site.yaml`, state: `${dir}/state`, search: `http://127.0.0.1:${osPort}`,
      ldapConf: `${dir}/ldap/slapd.conf`, ldapDb: `${dir}/ldap/db`, archive: `${dir}/golden/hoss-backup.tar.gz.age`,
      before: { db: {}, search: null, configDir: `${dir}/before/hoss`, keysDir: `${dir}/before/keys`, ldif: "" },
      secrets: ["faults: hoss age passphrase", "s3cr3t with spaces", "9f8e7d6c5b4a"],
    };
    writeFileSync(fx.envFile, [
      `HOSS_RUN=${dir}/run`, `HOSS_PG_CONTAINER=${fx.container}`, `HOSS_OS_PORT=${osPort}`, `HOSS_OS_DATA=${dir}/opensearch-data`,
      `HOSS_OS_REPO=${fx.backupRoot}/.opensearch`, `HOSS_SERVER_PORT=${serverPort}`, "HOSS_SERVER_VERSION=2.1.3", "HOSS_READY_AFTER_MS=300", "",
    ].join("\n"));
    writeFileSync(`${dir}/age.pw`, "faults: hoss age passphrase\n", { mode: 0o600 });
    // a private LDAP database: the lab's schema and entries, our own directory
    mkdirSync(fx.ldapDb, { recursive: true, mode: 0o700 });
    const conf = readFileSync(lab.LAB_SLAPD_CONF, "utf8").replace(/^directory\s+.*$/m, `directory       ${fx.ldapDb}`).replace(/^(pidfile|argsfile)\s+.*$/gm, "");
    writeFileSync(fx.ldapConf, conf, { mode: 0o600 });
    writeFileSync(`${dir}/ldap/seed.ldif`, sh(["slapcat", "-f", lab.LAB_SLAPD_CONF]));
    sh(["slapadd", "-q", "-f", fx.ldapConf, "-l", `${dir}/ldap/seed.ldif`]);
    const list = (xs: string[]) => JSON.stringify(xs);
    writeFileSync(fx.site, [
      "# generated by tasks/drills/faults.ts: the Hoss drill's site file with a private LDAP database",
      `config-dir: ${JSON.stringify(hossDir)}`,
      `endpoint: http://127.0.0.1:${serverPort}`,
      "config: {exclude: [data], keep: [data/nas]}",
      `keys: {paths: [${JSON.stringify(fx.keysDir)}]}`,
      `db: {container: ${fx.container}, databases: [hoss_core, hoss_auth]}`,
      "ldap:",
      "  enabled: true",
      `  slapcat: ${list(["slapcat", "-f", fx.ldapConf])}`,
      `  stop: ${list(["true"])}`,
      `  clear: ${list(["find", fx.ldapDb, "-mindepth", "1", "-delete"])}`,
      `  slapadd: ${list(["slapadd", "-q", "-f", fx.ldapConf])}`,
      `  start: ${list(["true"])}`,
      `search: {url: ${JSON.stringify(fx.search)}, location: ${JSON.stringify(`${fx.backupRoot}/.opensearch`)}}`,
      "server:",
      `  dir: ${JSON.stringify(ROOT)}`,
      `  start: ${list(["bash", "test/lab/hoss.sh", "up", fx.envFile])}`,
      "  timeout: 30",
      `  restart-sync: ${list(["bash", "test/lab/hoss.sh", "restart", fx.envFile, "sync"])}`,
      `  restart-core: ${list(["bash", "test/lab/hoss.sh", "restart", fx.envFile, "core"])}`,
      `age: {passphrase-file: ${JSON.stringify(`${dir}/age.pw`)}}`,
      "",
    ].join("\n"));
    seedConfig(hossDir, fx.backupRoot);
    sh(["chmod", "750", hossDir]);
    seedKeys(fx.keysDir);
    sh(["bash", HOSS_SH, "up", fx.envFile]);
    for (const [db, sql] of Object.entries(HOSS_SQL)) psql(fx.container, db, sql);
    psql(fx.container, "hoss_core", bulkSql(size));
    await seedSearch(fx.search);
    fx.before.db = dbState(fx.container);
    fx.before.search = await searchState(fx.search);
    mkdirSync(`${dir}/before`, { recursive: true });
    sh(["cp", "-a", "--", hossDir, fx.before.configDir]);
    rmSync(`${fx.before.configDir}/backup`, { recursive: true, force: true });
    sh(["cp", "-a", "--", fx.keysDir, fx.before.keysDir]);
    fx.before.ldif = sh(["slapcat", "-f", fx.ldapConf]);
    const r = await runRecipe("hoss-backup", ["--config", fx.site, "--yes"], { LIFEBOAT_STATE_DIR: fx.state });
    if (r.code !== 0) throw new Error(`hoss-backup (setup) exited ${r.code}:\n${r.output.slice(-3000)}`);
    mkdirSync(`${dir}/golden`, { recursive: true });
    copyFileSync(listBackups(`${fx.backupRoot}/backups`)[0].path, fx.archive);
    clearArchives(`${fx.backupRoot}/backups`);
    ctx.log.info(`  hoss source: ${hossDir}, container ${fx.container}, search ${fx.search}; archive made in ${formatDuration(r.ms)}`);
    return fx;
  },
  async teardown(fx) {
    trySh(["bash", HOSS_SH, "reset", fx.envFile]);
    unmount(fx.backupRoot);
    rmSync(fx.dir, { recursive: true, force: true });
  },
  env: (fx) => ({ LIFEBOAT_STATE_DIR: fx.state }),
  stateDir: (fx) => fx.state,
  secrets: (fx) => fx.secrets,
  finals: (fx) => new Set(listBackups(`${fx.backupRoot}/backups`).map((b) => b.name)),
  entries: [],
};

/** The Hoss source as the backup found it, running (the restore's cases leave it restored). */
async function hossUp(fx: HossFx): Promise<void> {
  sh(["bash", HOSS_SH, "up", fx.envFile]);
}

const hossRemotes = {
  container: (step: RegExp): Remote<HossFx> => ({
    name: "database container (docker kill)", step, says: /container|docker|not running|lifeboat-faults-hoss-db/i,
    kill: async (fx) => (await sleep(MID_MS), trySh(["docker", "kill", fx.container]).status === 0), revive: hossUp,
  }),
  postgres: (step: RegExp): Remote<HossFx> => ({
    name: "PostgreSQL server (backends terminated)", step, says: /terminat|server closed|connection|postgres|pg_dump|pg_restore/i,
    kill: (fx) => terminateBackends(inContainer(fx.container)), revive: async () => {},
  }),
  server: (step: RegExp): Remote<HossFx> => ({
    name: "Hoss server (HTTP stand-in killed)", step, says: /server|127\.0\.0\.1|ECONNREFUSED|refused|did not tell/i,
    kill: async (fx) => killPidFile(`${fx.dir}/run/server.pid`), revive: hossUp,
  }),
  search: (step: RegExp): Remote<HossFx> => ({
    name: "OpenSearch (HTTP stand-in killed)", step, says: /opensearch|search|127\.0\.0\.1|ECONNREFUSED|refused/i,
    kill: async (fx) => killPidFile(`${fx.dir}/run/opensearch.pid`), revive: hossUp,
  }),
};

/** Wipes the lab Hoss as `make down` + `make reset` and the drill do: what a restore starts from. */
function hossWipe(fx: HossFx): void {
  sh(["bash", HOSS_SH, "reset", fx.envFile]);
  unmount(fx.backupRoot);
  for (const name of readdirSync(fx.hossDir)) if (name !== "backup" && name !== "data") rmSync(`${fx.hossDir}/${name}`, { recursive: true, force: true });
  for (const name of readdirSync(`${fx.hossDir}/data`)) if (name !== "nas") rmSync(`${fx.hossDir}/data/${name}`, { recursive: true, force: true });
  for (const name of readdirSync(fx.backupRoot)) if (name !== "backups") rmSync(`${fx.backupRoot}/${name}`, { recursive: true, force: true });
  rmSync(`${fx.dir}/volumes`, { recursive: true, force: true });
  sh(["find", fx.ldapDb, "-mindepth", "1", "-delete"]);
}

hossSystem.entries.push(
  {
    recipe: "hoss-backup",
    kind: "backup",
    resume: false,
    async reset(fx) {
      unmount(fx.backupRoot);
      if (!existsSync(`${fx.hossDir}/core`)) throw new Error("the Hoss source is gone (a restore case did not finish)");
      await hossUp(fx);
      clearArchives(`${fx.backupRoot}/backups`);
    },
    args: (fx) => ["--config", fx.site, "--yes"],
    async verify(fx) {
      const problems: string[] = [];
      const meta = await newestVerifies<{ hoss: { captured: string[]; ldap: { entries: number } | null } }>(`${fx.backupRoot}/backups`, "faults: hoss age passphrase", problems);
      if (meta && meta.hoss.captured.length !== 5) problems.push(`the archive captured ${meta.hoss.captured.join(", ")}`);
      const entries = (fx.before.ldif.match(/^dn::? /gm) ?? []).length;
      if (meta && meta.hoss.ldap?.entries !== entries) problems.push(`the archive holds ${meta.hoss.ldap?.entries} LDAP entries, the source ${entries}`);
      if (existsSync(`${fx.backupRoot}/.current`)) problems.push(".current left after a complete run");
      return problems;
    },
    leftovers: (fx, before) => newArchivesVerify(`${fx.backupRoot}/backups`, before, "faults: hoss age passphrase"),
    remotes: [
      hossRemotes.container(/^dump database hoss_core/),
      hossRemotes.postgres(/^dump database hoss_core/),
      hossRemotes.server(/^prepare BACKUP_ROOT/), // one request in "record the server version": it dies just before
      hossRemotes.search(/^export the LDAP data/), // the snapshot steps follow
    ],
    folders: [
      { name: "staging (BACKUP_ROOT/.current, .db)", step: /^dump database hoss_core/, mount: (fx) => ({ path: fx.backupRoot, mib: 256, args: [] }) },
      { name: "backups folder (BACKUP_ROOT/backups)", step: /^pack/, mount: (fx) => ({ path: fx.backupRoot, mib: 256, args: [] }) },
    ],
  },
  {
    recipe: "hoss-restore",
    kind: "restore",
    resume: true,
    reset: async (fx) => hossWipe(fx),
    args: (fx) => [fx.archive, "--config", fx.site, "--yes"],
    async verify(fx) {
      const diffs: string[] = [];
      diffs.push(...(await compareTrees(fx.before.configDir, fx.hossDir, { ignore: ["backup", "data/db", "data/opensearch"] })).map((d) => `config ${d}`));
      diffs.push(...(await compareTrees(fx.before.keysDir, fx.keysDir, { modes: false })).map((d) => `keys ${d}`));
      diffs.push(...differ("database", fx.before.db, dbState(fx.container)));
      if (sh(["slapcat", "-f", fx.ldapConf]) !== fx.before.ldif) diffs.push("ldap: slapcat differs");
      diffs.push(...differ("search", fx.before.search as Record<string, unknown>, await searchState(fx.search)));
      for (const d of [".restore", ".current"]) if (existsSync(`${fx.backupRoot}/${d}`)) diffs.push(`left in BACKUP_ROOT: ${d}`);
      return diffs.slice(0, 20);
    },
    leftovers: async () => [],
    remotes: [
      hossRemotes.container(/^restore database hoss_core/),
      hossRemotes.postgres(/^restore database hoss_core/),
      hossRemotes.server(/^wait for OpenSearch/), // "check the server runs the backup's version" follows
      hossRemotes.search(/^start the LDAP server|^load the LDAP data/), // the search steps follow
    ],
    folders: [
      { name: "staging (BACKUP_ROOT/.restore)", step: /^unpack the archive/, mount: (fx) => ({ path: fx.backupRoot, mib: 256, args: [] }) },
      // filled a few steps ahead: the snapshot copy takes milliseconds, and a filler started at its own heading could lose the race
      { name: "search snapshots (BACKUP_ROOT/.opensearch)", step: /^check the server runs the backup's version/, mount: (fx) => ({ path: fx.backupRoot, mib: 256, args: [] }) },
    ],
  },
);

// ---------------------------------------------------------------------------------
// Xenon: two stand-in hosts of tasks/drills/xenon.ts (its own processes, so a restart or a kill
// is real), with an auth token and an age passphrase the output must never show

interface XenonFx {
  dir: string;
  site: string;
  backups: string;
  staging: string;
  state: string;
  token: string;
  passphrase: string;
  /** The host backed up (its documents stay), and the host restored into (emptied by each reset). */
  src: XenonHost;
  dst: XenonHost;
  want: Record<string, string>;
  counts: number;
  archive: string;
}

const xenonHeaders = (fx: XenonFx) => ({ "x-xenon-auth-token": fx.token });

/** Whether a stand-in answers (a 403 without the token counts). */
async function xenonAnswers(h: XenonHost): Promise<boolean> {
  try {
    return (await fetch(`${h.url}/core/management`, { signal: AbortSignal.timeout(2000) })).status < 500;
  } catch {
    return false;
  }
}

/** Starts a stand-in again on its port and sandbox when it is down (`fresh`: stopped and emptied first); waits until it answers (30 s). */
async function xenonUp(h: XenonHost, fresh = false): Promise<void> {
  if (fresh) {
    spawnSync("bash", [join(h.dir, "stop.sh")], { stdio: "ignore" });
    rmSync(join(h.dir, "sandbox"), { recursive: true, force: true });
  }
  if (!fresh && await xenonAnswers(h)) return;
  spawnSync("bash", [join(h.dir, "restart.sh")], { stdio: "ignore" });
  for (let i = 0; i < 300; i++) {
    if (await xenonAnswers(h)) return;
    await sleep(100);
  }
  throw new Error(`the Xenon stand-in ${h.url} did not answer within 30 s (log ${h.dir}/host.log)`);
}

const xenonSystem: System<XenonFx> = {
  name: "xenon",
  needs: [],
  async setup(dir, ctx, size) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const token = "faults-xenon-token-7b1e";
    const passphrase = "faults: xenon age passphrase";
    const site = xenonSite(dir, [`auth: { token: ${JSON.stringify(token)} }`, `age: { passphrase: ${JSON.stringify(passphrase)} }`]);
    const src = await startXenonHost("node-a", { dir: join(dir, "host-src"), authToken: token });
    const dst = await startXenonHost("node-a", { dir: join(dir, "host-dst"), authToken: token });
    const fx: XenonFx = {
      dir, site, backups: join(dir, "backups"), staging: join(dir, "staging"), state: join(dir, "state"), token, passphrase,
      src, dst, want: {}, counts: 0, archive: join(dir, "golden/xenon-backup.tar.gz.age"),
    };
    // documents with hostile names and incompressible blobs, so a backup and a restore take a moment
    const n = size === "full" ? 400 : 120;
    const names = [...Array.from({ length: n - 3 }, (_, i) => `doc-${i}`), "name with spaces", "quote ' and \" $(x)", "-leading-dash"];
    await seedExamples(src.url, names, { blobBytes: 16384, headers: xenonHeaders(fx) });
    for (let i = 0; i < 5; i++) await xenonRequest(`${src.url}/core/examples/doc-${i}`, "PATCH", { name: `patched-${i}`, counter: 1000 + i }, xenonHeaders(fx));
    fx.want = await exampleDocuments(src.url, { headers: xenonHeaders(fx) });
    fx.counts = Object.keys(fx.want).length;
    const r = await runRecipe("xenon-backup", ["--config", site, "--yes", ...hostFlags(src)], {});
    if (r.code !== 0) throw new Error(`xenon-backup (setup) exited ${r.code}:\n${r.output.slice(-3000)}`);
    mkdirSync(join(dir, "golden"), { recursive: true });
    copyFileSync(listBackups(fx.backups)[0].path, fx.archive);
    clearArchives(fx.backups);
    ctx.log.info(`  xenon source: ${fx.counts} documents on ${src.url}; restores into ${dst.url}; archive made in ${formatDuration(r.ms)}`);
    return fx;
  },
  async teardown(fx) {
    await fx.src.stop();
    await fx.dst.stop();
    rmSync(fx.dir, { recursive: true, force: true });
  },
  env: () => ({}),
  stateDir: (fx) => fx.state,
  secrets: (fx) => [fx.token, fx.passphrase],
  finals: (fx) => new Set(listBackups(fx.backups).map((b) => b.name)),
  entries: [],
};

/** xenon-backup's off-site destination in the matrix: a path, as a mount would be. */
const xenonOffsite = (fx: XenonFx) => join(fx.dir, "offsite");

const xenonRemote = (which: "src" | "dst", step: RegExp): Remote<XenonFx> => ({
  name: `Xenon host (HTTP stand-in killed)`, step, says: /Xenon|127\.0\.0\.1|ECONNREFUSED|refused|fetch failed/i,
  kill: async (fx) => killPidFile(join(fx[which].dir, "pid")), revive: (fx) => xenonUp(fx[which]),
});

xenonSystem.entries.push(
  {
    recipe: "xenon-backup",
    kind: "backup",
    resume: false, // a ZIP backup refuses --resume (its staging is removed after every run)
    async reset(fx) {
      await xenonUp(fx.src);
      clearArchives(fx.backups);
      const off = xenonOffsite(fx); // its contents: it may be a case's tmpfs
      for (const f of existsSync(off) ? readdirSync(off) : []) rmSync(join(off, f), { recursive: true, force: true });
    },
    // and off-site to a path (a mount): kills, signals and a full disk land in the copy too
    args: (fx) => ["--config", fx.site, "--yes", ...hostFlags(fx.src), `--offsite.to=${xenonOffsite(fx)}`],
    async verify(fx) {
      const problems: string[] = [];
      const meta = await newestVerifies<{ xenon: { counts: Record<string, number>; files: unknown[] } }>(fx.backups, fx.passphrase, problems);
      if (meta && meta.xenon.counts["/core/examples"] !== fx.counts) problems.push(`the archive counted ${meta.xenon.counts["/core/examples"]} documents, the source holds ${fx.counts}`);
      if (meta && !meta.xenon.files.length) problems.push("the archive records no index files");
      const newest = listBackups(fx.backups)[0]?.name;
      const copy = (await offsiteList(xenonOffsite(fx))).find((c) => c.name === newest);
      if (newest && copy?.verified !== "passed") problems.push(`the off-site folder holds no verified copy of ${newest} (${copy ? `verified: ${copy.verified}` : "none"})`);
      await newestVerifies(xenonOffsite(fx), fx.passphrase, problems);
      return problems;
    },
    // nothing that looks complete, here or off-site, fails to verify (the off-site folder is emptied by reset)
    leftovers: async (fx, before) => [...await newArchivesVerify(fx.backups, before, fx.passphrase), ...await newArchivesVerify(xenonOffsite(fx), new Set(), fx.passphrase)],
    remotes: [xenonRemote("src", /^prepare the staging folder/)], // one request in "back up (PATCH …)": it dies just before
    folders: [
      // full from the start (Xenon writes the zip a few ms after the step heading: a filler started
      // there could lose the race), and roomy once the filler is gone, so the next run has space for
      // the zip (about 2 MiB reduced, 7 MiB full), as after an operator frees the disk
      { name: "staging (the zip Xenon writes)", step: null, mount: (fx) => ({ path: fx.staging, mib: 32, args: [] }) },
      { name: "backups folder (backups.dir)", step: /^pack the archive/, mount: (fx) => ({ path: fx.backups, mib: 64, args: [] }) },
      // full from the start too: a filler started at the step heading loses the race with a 2 MiB copy
      { name: "off-site folder (offsite.to, a mount)", step: null, mount: (fx) => ({ path: xenonOffsite(fx), mib: 64, args: [] }) },
    ],
    // issue 14: the staging tmpfs was smaller than the zip, so the next run failed on it too
    regressions: [{ kind: "enospc", folder: "staging (the zip Xenon writes)", label: "no space left in staging (the zip Xenon writes)" }],
  },
  {
    recipe: "xenon-restore",
    kind: "restore",
    resume: true, // since 83cfa4c; a run that failed AT the PATCH is refused on --resume: a fresh host and run (runCase)
    reset: (fx) => xenonUp(fx.dst, true),
    args: (fx) => [fx.archive, "--config", fx.site, "--yes", ...hostFlags(fx.dst, true)],
    async verify(fx) {
      return diffDocuments(fx.want, await exampleDocuments(fx.dst.url, { headers: xenonHeaders(fx) })).slice(0, 20);
    },
    async leftovers(fx) {
      // the index holds nothing, or every document whole (a host the fault left down is not read)
      if (!(await xenonAnswers(fx.dst))) return [];
      const now = await exampleDocuments(fx.dst.url, { headers: xenonHeaders(fx) });
      if (!Object.keys(now).length) return [];
      return diffDocuments(fx.want, now).slice(0, 10).map((d) => `torn index: ${d}`);
    },
    async beforeRetry(fx) {
      // the operator starts the host a fault left down; --resume goes on after a sent PATCH without
      // a second one (no --allow-existing: the emptiness check is in the journal)
      await xenonUp(fx.dst);
      return [];
    },
    remotes: [xenonRemote("dst", /^stage the backup/)], // one request in "restore (PATCH …)": it dies just before
    folders: [{ name: "staging (the unpacked zip)", step: /^stage the backup/, mount: (fx) => ({ path: fx.staging, mib: 64, args: [] }) }],
  },
);

// ---------------------------------------------------------------------------------
// HCoop: volumes of their own (lbf.*) on the lab's OpenAFS cell, dumped with ccrypt; the restore
// fetches the day from a "remote repository" (a local folder) into an empty backups.dir, so its
// backups folder can fill too. The remotes are the cell's servers: bosserver starts a killed one again.

interface HcoopFx {
  dir: string;
  site: string;
  backups: string;
  /** The restore's backups.dir (emptied by each reset) and the remote repository it fetches from. */
  fetched: string;
  remote: string;
  state: string;
  key: string;
  date: string;
  volumes: string[];
  /** The restored volume, and the tree of the volume it restores (restorevol of a fresh dump). */
  restored: string;
  tree: string;
  /** hcoop-restore-db: a backups.dir holding the day with its databases archive, the lab's PostgreSQL, the source's digest. */
  dbDays: string;
  pg: Record<string, string>;
  dbDigest: string;
}

const HCOOP_PREFIX = "lbf.";
/** The database hcoop-restore-db loads: on the lab's source PostgreSQL, dumped by the setup; loaded into the target one. */
const HCOOP_DB = "lbf shop";

const quoteIdent = (n: string) => `"${n.replaceAll('"', '""')}"`;
/** What the loaded database must equal: the rows of both tables, as one digest. */
const dbDigestSql = "SELECT md5((SELECT string_agg(m::text, ',' ORDER BY id) FROM members m) || (SELECT string_agg(md5(data), ',' ORDER BY id) FROM blobs))";

const HCOOP_DATE = "2026-11-22"; // a Sunday: every run makes full dumps (schedule.full-day sun)

/** Kills (SIGKILL) a server process of the cell by its command line; bosserver starts it again. */
function killAfsServer(cmd: string): boolean {
  for (const [pid, v] of procTable()) {
    if (v.cmd !== cmd) continue;
    try {
      process.kill(pid, "SIGKILL");
      return true;
    } catch { /* gone */ }
  }
  return false;
}
/** Waits until the cell answers `vos examine VOLUME` and its VLDB takes writes again (bosserver restarts a killed server within a second or two); 60 s. */
async function afsAnswers(volume: string): Promise<void> {
  const { cell, prefix } = labCell();
  for (let i = 0; i < 300; i++) {
    // and the VLDB takes writes again (vos restore creates an entry): the vlserver is its sync site once more
    const ubik = trySh([...prefix, "udebug", cell.server, "7003"]).stdout ?? "";
    if (/I am sync site/.test(ubik) && /Recovery state 1f/.test(ubik) && trySh([...prefix, "vos", "examine", "-id", volume, "-noauth"]).status === 0) return;
    await sleep(200);
  }
  throw new Error(`the AFS cell did not answer vos examine ${volume} within 60 s after a server was killed (test/lab/afs.sh up brings it back)`);
}

const hcoopSystem: System<HcoopFx> = {
  name: "hcoop",
  needs: ["afs", "pg"],
  async setup(dir, ctx, size) {
    const { cell, prefix } = labCell();
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const fx: HcoopFx = {
      dir, site: join(dir, "site.yaml"), backups: join(dir, "backups"), fetched: join(dir, "fetched"), remote: join(dir, "remote repo"), state: join(dir, "state"),
      key: randomBytes(32).toString("hex"), date: HCOOP_DATE.replaceAll("-", "."), volumes: [`${HCOOP_PREFIX}alice`, `${HCOOP_PREFIX}bob`],
      restored: "lbr.alice", tree: "", // outside volumes.prefixes: the backup never sees it
      dbDays: join(dir, "db days"), pg: needLab("pg"), dbDigest: "",
    };
    writeFileSync(join(dir, "key"), fx.key, { mode: 0o600 });
    writeFileSync(fx.site, [
      "# generated by tasks/drills/faults.ts",
      `backups: { dir: ${JSON.stringify(fx.backups)} }`,
      // a dump of these small volumes is never quiet for 20 s: a longer silence is the killed volserver
      `afs: { server: ${cell.server}, partition: a, auth: noauth, prefix: ${JSON.stringify(prefix)}, stall-timeout: 20 }`,
      `volumes: { prefixes: [${HCOOP_PREFIX}] }`,
      "schedule: { full-day: sun }",
      `clock: { today: ${HCOOP_DATE} }`,
      `state-dir: ${JSON.stringify(fx.state)}`,
      `encryption: { kind: ccrypt, key-file: ${JSON.stringify(join(dir, "key"))} }`,
      // off here (hcoop-backup's cases dump the volumes only); the setup's databases day turns it on
      `postgres: { enabled: false, databases: [${JSON.stringify(HCOOP_DB)}], host: ${fx.pg.LAB_PG_HOST}, port: ${fx.pg.LAB_PG_PORT}, user: ${fx.pg.LAB_PG_USER}, password-file: ${JSON.stringify(fx.pg.LAB_PG_PASSWORD_FILE)}, bin-dir: ${JSON.stringify(fx.pg.LAB_PG_BIN)} }`,
      "",
    ].join("\n"), { mode: 0o600 });
    for (const v of [...fx.volumes, fx.restored]) removeVolume(v);
    for (const v of fx.volumes) createOpenVolume(v);
    // big enough that a dump and a restore are hit in the middle
    const a = fx.volumes[0];
    writeFile(a, "random.bin", randomBytes((size === "full" ? 12 : 4) << 20));
    writeFile(a, "sp ace 'quote' $(x) ünï", "awkward\n");
    writeFile(a, "-leading-dash", "dash\n");
    inCell(["mkdir", "-p", `${volumePath(a)}/sub/deeper`]);
    writeFile(a, "sub/deeper/f.txt", "deep\n");
    writeFile(fx.volumes[1], "random.bin", randomBytes((size === "full" ? 4 : 1) << 20));
    await sleep(1100); // AFS mtimes have 1 s resolution
    fx.tree = volumeTree(a, mkdtempSync(join(dir, "tree-")));
    // the day the restore takes in, in the remote repository
    const r = await runRecipe("hcoop-backup", ["--config", fx.site, "--yes"], {});
    if (r.code !== 0) throw new Error(`hcoop-backup (setup) exited ${r.code}:\n${r.output.slice(-3000)}`);
    mkdirSync(fx.remote, { recursive: true });
    sh(["cp", "-a", "--", join(fx.backups, fx.date), join(fx.remote, fx.date)]);
    clearArchives(fx.backups);
    // hcoop-restore-db's day: the same volumes plus the databases archive of HCOOP_DB (200,000 rows
    // and an index, 4 MiB of random bytea reduced; three times that full): the unpack and the load
    // last long enough to be hit in the middle
    for (const port of [fx.pg.LAB_PG_PORT, fx.pg.LAB_PG_TARGET_PORT]) labPsql(port, "postgres", `DROP DATABASE IF EXISTS ${quoteIdent(HCOOP_DB)}`);
    labPsql(fx.pg.LAB_PG_PORT, "postgres", `CREATE DATABASE ${quoteIdent(HCOOP_DB)}`);
    labPsql(fx.pg.LAB_PG_PORT, HCOOP_DB, [
      "CREATE TABLE members (id int PRIMARY KEY, name text, note text)",
      `INSERT INTO members SELECT i, 'member ' || i || ' ''q'' $(x)', md5(i::text) FROM generate_series(1, ${size === "full" ? 600000 : 200000}) i`,
      "CREATE INDEX members_name ON members (name, note)", // pg_restore builds it again: the load lasts
      "CREATE TABLE blobs (id int PRIMARY KEY, data bytea)",
      `INSERT INTO blobs SELECT b, (SELECT decode(string_agg(md5(random()::text || b || g), ''), 'hex') FROM generate_series(1, 16384) g) FROM generate_series(1, ${size === "full" ? 48 : 16}) b`,
    ].join("; "));
    fx.dbDigest = labPsql(fx.pg.LAB_PG_PORT, HCOOP_DB, dbDigestSql);
    const d = await runRecipe("hcoop-backup", ["--config", fx.site, "--yes", `--backups.dir=${fx.dbDays}`, `--state-dir=${join(dir, "db state")}`, "--postgres.enabled"], {});
    if (d.code !== 0) throw new Error(`hcoop-backup (setup, with the databases) exited ${d.code}:\n${d.output.slice(-3000)}`);
    ctx.log.info(`  hcoop source: ${fx.volumes.join(", ")} on ${cell.server}; day ${fx.date} made in ${formatDuration(r.ms)}`);
    return fx;
  },
  async teardown(fx) {
    for (const v of [...fx.volumes, fx.restored]) removeVolume(v);
    zapOrphans(fx.restored);
    for (const port of [fx.pg.LAB_PG_PORT, fx.pg.LAB_PG_TARGET_PORT]) labPsql(port, "postgres", `DROP DATABASE IF EXISTS ${quoteIdent(HCOOP_DB)}`);
    rmSync(fx.dir, { recursive: true, force: true });
  },
  env: () => ({}),
  stateDir: (fx) => fx.state,
  secrets: (fx) => [fx.key],
  finals: (fx) => new Set(dumpFiles(fx.backups)),
  entries: [],
};

/** Dump files under final names in a backups.dir (DATE/DATE-NAME.dump.gz.aescrypt; partials are hidden). */
function dumpFiles(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root).filter((d) => /^\d{4}\.\d{2}\.\d{2}$/.test(d)).flatMap((d) => readdirSync(join(root, d)).filter((f) => !f.startsWith(".")).map((f) => `${d}/${f}`));
}

/** Every dump file under a final name is a whole sealed stream, and matches its day's manifest when there is one. */
async function hcoopFilesVerify(fx: HcoopFx, root: string, before: Set<string>): Promise<string[]> {
  const out: string[] = [];
  const seal = { kind: "ccrypt" as const, keyFile: join(fx.dir, "key") };
  for (const rel of dumpFiles(root)) {
    if (before.has(rel) || !/\.aescrypt$/.test(rel)) continue;
    const [day, file] = rel.split("/");
    const manifest = join(root, day, `${day}-manifest.json`);
    const entry = existsSync(manifest) ? (JSON.parse(readFileSync(manifest, "utf8")) as { files: Record<string, { sha256: string; bytes: number }> }).files[file] : undefined;
    try {
      await verifySealed(join(root, rel), { seal, sha256: entry?.sha256, bytes: entry?.bytes });
    } catch (e) {
      out.push(`${rel} is under its final name but does not verify: ${(e as Error).message.split("\n")[0]}`);
    }
  }
  return out;
}

/**
 * Removes (vos zap) volumes named `name` on the partition that the VLDB does not know: what an
 * interrupted vos restore leaves (the volume is made on the server before its VLDB entry).
 */
function zapOrphans(name: string): number {
  const { cell, prefix } = labCell();
  const list = trySh([...prefix, "vos", "listvol", "-server", cell.server, "-partition", "a", "-noauth"]).stdout ?? "";
  const ids = list.split("\n").map((l) => l.trim().split(/\s+/)).filter((w) => w[0] === name).map((w) => w[1]);
  for (const id of ids) trySh([...prefix, "vos", "zap", "-server", cell.server, "-partition", "a", "-id", id, "-noauth"]);
  return ids.length;
}

const hcoopRemotes = {
  volserver: (step: RegExp): Remote<HcoopFx> => ({
    name: "AFS volserver (killed)", step, says: /VOLSER|volserver|vos (dump|restore)|AFS|198\.18\.|rx|connection|aborted/i,
    kill: async () => (await sleep(MID_MS), killAfsServer("/usr/lib/openafs/davolserver")),
    revive: (fx) => afsAnswers(fx.volumes[0]),
  }),
  vlserver: (step: RegExp): Remote<HcoopFx> => ({
    name: "AFS vlserver (killed)", step, says: /VLDB|vlserver|vos |AFS|198\.18\.|rx|connection|no quorum|aborted/i,
    kill: async () => killAfsServer("/usr/lib/openafs/vlserver"),
    revive: (fx) => afsAnswers(fx.volumes[0]),
  }),
};

hcoopSystem.entries.push(
  {
    recipe: "hcoop-backup",
    kind: "backup",
    resume: true,
    reset: async (fx) => clearArchives(fx.backups),
    args: (fx) => ["--config", fx.site, "--yes"],
    async verify(fx) {
      const problems = await hcoopFilesVerify(fx, fx.backups, new Set());
      const manifest = join(fx.backups, fx.date, `${fx.date}-manifest.json`);
      if (!existsSync(manifest)) return [...problems, `no manifest ${manifest}`];
      const m = JSON.parse(readFileSync(manifest, "utf8")) as { files: Record<string, { volume: string }> };
      const got = Object.values(m.files).map((e) => e.volume).sort();
      if (got.join() !== fx.volumes.join()) problems.push(`the day holds dumps of ${got.join(", ")}, want ${fx.volumes.join(", ")}`);
      const hidden = readdirSync(join(fx.backups, fx.date)).filter((f) => f.startsWith("."));
      if (hidden.length) problems.push(`partial files left after a complete run: ${hidden.join(", ")}`);
      return problems;
    },
    leftovers: (fx, before) => hcoopFilesVerify(fx, fx.backups, before),
    remotes: [hcoopRemotes.volserver(/^dump each volume/), hcoopRemotes.vlserver(/^vos backupsys/)],
    folders: [{ name: "backups folder (backups.dir)", step: /^dump each volume/, mount: (fx) => ({ path: fx.backups, mib: 64, args: [] }) }],
  },
  {
    recipe: "hcoop-restore",
    kind: "restore",
    resume: true,
    async reset(fx) {
      removeVolume(fx.restored);
      zapOrphans(fx.restored);
      clearArchives(fx.fetched);
      rmSync(join(fx.dir, `mnt-${fx.restored}`), { recursive: true, force: true });
    },
    // mkdir stands in for the site's `fs mkm` (both fail on a mount point that is there), so a
    // resumed run that mounts again fails
    args: (fx) => [fx.date, fx.volumes[0], fx.restored, "--config", fx.site, "--yes", `--backups.dir=${fx.fetched}`, `--offsite.to=${fx.remote}`, `--restore.mount-command=mkdir,${fx.dir}/mnt-{name}`],
    async verify(fx) {
      const diffs = await compareTrees(fx.tree, volumeTree(fx.restored, mkdtempSync(join(fx.dir, "restored-"))), { owners: false });
      return diffs.slice(0, 20).map((d) => `${fx.restored}: ${d}`);
    },
    async leftovers(fx, before) {
      // fetched files under final names are whole; a restored volume, when there, is the whole one
      const out = await hcoopFilesVerify(fx, fx.fetched, before);
      const { prefix } = labCell();
      if (trySh([...prefix, "vos", "examine", "-id", fx.restored, "-noauth"]).status !== 0) return out;
      let diffs: string[];
      try {
        diffs = await compareTrees(fx.tree, volumeTree(fx.restored, mkdtempSync(join(fx.dir, "torn-"))), { owners: false });
      } catch (e) {
        diffs = [`unreadable: ${(e as Error).message.split("\n")[0]}`];
      }
      if (diffs.length) out.push(`torn: the volume ${fx.restored} exists but differs from the source (${diffs.slice(0, 3).join("; ")})`);
      return out;
    },
    remotes: [hcoopRemotes.volserver(/^vos restore/), hcoopRemotes.vlserver(/^verify every file/)],
    // full from the start (the fetch is the first step: a filler started at its heading could lose
    // the race), and roomy (64 MiB, the dumps 4-12 MiB) once the filler is gone, for the retry
    folders: [{ name: "backups folder (the day fetched into backups.dir)", step: null, mount: (fx) => ({ path: fx.fetched, mib: 64, args: [] }) }],
  },
  {
    recipe: "hcoop-restore-db",
    kind: "restore",
    resume: true,
    async reset(fx) {
      rmSync(join(fx.dbDays, "restored"), { recursive: true, force: true });
      labPsql(fx.pg.LAB_PG_TARGET_PORT, "postgres", `DROP DATABASE IF EXISTS ${quoteIdent(HCOOP_DB)}`);
    },
    args: (fx) => [fx.date, HCOOP_DB, "--config", fx.site, "--yes", `--backups.dir=${fx.dbDays}`, `--postgres.port=${fx.pg.LAB_PG_TARGET_PORT}`],
    async verify(fx) {
      const got = labPsql(fx.pg.LAB_PG_TARGET_PORT, HCOOP_DB, dbDigestSql);
      const out = got === fx.dbDigest ? [] : [`${HCOOP_DB} on the target: rows digest ${got}, the source's ${fx.dbDigest}`];
      return [...out, ...hcoopDbFolderProblems(fx, true)];
    },
    // The unpacked folder appears whole or not at all. (A load cut short leaves a part-loaded
    // database: pg_restore --create cannot run in one transaction; the retry drops and loads it again.)
    leftovers: async (fx) => hcoopDbFolderProblems(fx, false),
    remotes: [{
      name: "PostgreSQL (the target's backends terminated)", step: /^load /, says: /PostgreSQL|pg_restore|terminat|connection|server closed/i,
      kill: async (fx) => (await sleep(MID_MS), terminateBackends((sql) => Number(labPsql(fx.pg.LAB_PG_TARGET_PORT, "postgres", sql)), 60)),
      revive: async () => {}, // the server stays up: only its sessions died
    }],
    // full from the start (the unpack writes a few ms after its heading: a filler started there could
    // lose the race), and roomy once the filler is gone
    folders: [{ name: "restored folder (backups.dir/restored)", step: null, mount: (fx) => ({ path: join(fx.dbDays, "restored"), mib: 64, args: [] }) }],
  },
);

/** The day's restored/DATE-db folder: absent (mustExist false), or holding every file of the databases archive, each whole. */
function hcoopDbFolderProblems(fx: HcoopFx, mustExist: boolean): string[] {
  const parent = join(fx.dbDays, "restored");
  const folder = join(parent, `${fx.date}-db`);
  const out: string[] = [];
  if (mustExist) {
    const hidden = existsSync(parent) ? readdirSync(parent).filter((n) => n.startsWith(".partial-")) : [];
    if (hidden.length) out.push(`hidden folders left beside ${folder} after a complete run: ${hidden.join(", ")}`);
  }
  if (!existsSync(folder)) return mustExist ? [...out, `no ${folder}`] : out;
  const m = JSON.parse(readFileSync(join(fx.dbDays, fx.date, `${fx.date}-manifest.json`), "utf8")) as { databases?: { globals: string; dumps: Record<string, { file: string }> } };
  const want = [m.databases?.globals, ...Object.values(m.databases?.dumps ?? {}).map((d) => d.file)].filter((x): x is string => !!x).sort();
  const got = readdirSync(folder).sort();
  if (got.join("\n") !== want.join("\n")) return [...out, `${folder} holds ${got.join(", ") || "nothing"}, want ${want.join(", ")} (torn)`];
  for (const f of want.filter((n) => n.endsWith(".dump"))) {
    if (spawnSync(`${fx.pg.LAB_PG_BIN}/pg_restore`, ["-l", join(folder, f)]).status !== 0) out.push(`${folder}/${f} is not a whole dump (pg_restore -l fails): torn`);
  }
  return out;
}

// ---------------------------------------------------------------------------------
// LambdaStack: private lshosts hosts ls-41 (repository + haproxy) and ls-42 (postgresql), removed
// and made again at setup, so test/lambdastack*.test.ts (ls-1..ls-6) never collide with the matrix.
// Two components (load_balancer, postgresql: the fastest to seed) with an age passphrase. The
// backup writes into its own dir on ls-41; the recovery takes in the setup's snapshot in TARGET.

interface LsFx {
  dir: string;
  build: string;
  siteB: string;
  siteR: string;
  state: string;
  passphrase: string;
  /** Where the backup writes: a dir on ls-41, or (the ENOSPC case) a local dir with repository.host=local. */
  target: string;
  local: boolean;
  /** The snapshot the recovery takes in, and the names in TARGET on ls-41 (which no run may change). */
  golden: string;
  goldenFiles: string[];
  w: { start: number; end: number };
  before: LsSnapshot;
}

const LS_LAYOUT: LsLayout = { "ls-41": ["repository", "haproxy"], "ls-42": ["postgresql"] };
const LS_HOSTS = Object.keys(LS_LAYOUT);
const LS_COMPONENTS = ["load_balancer", "postgresql"];
const LS_BACKUP_DIR = "/lsbackup/faults";

/** Host pids of a container's processes whose command line matches. */
function containerPids(container: string, match: RegExp): number[] {
  const id = trySh(["docker", "inspect", "-f", "{{.Id}}", container]).stdout?.trim();
  if (!id) return [];
  const out: number[] = [];
  for (const [pid, v] of procTable()) {
    if (!match.test(v.cmd)) continue;
    try {
      if (readFileSync(`/proc/${pid}/cgroup`, "utf8").includes(id)) out.push(pid);
    } catch { /* gone */ }
  }
  return out;
}

/** Kills (SIGKILL, by pid) the first processes matching on a host; polls up to 10 s. */
async function killOnHost(container: string, match: RegExp): Promise<boolean> {
  for (let i = 0; i < 200; i++) {
    const pids = containerPids(container, match);
    for (const p of pids) try { process.kill(p, "SIGKILL"); } catch { /* gone */ }
    if (pids.length) return true;
    await sleep(50);
  }
  return false;
}

/** The hosts running, PostgreSQL answering on ls-42 (what a fault took away, back). */
async function lsUp(): Promise<void> {
  for (const h of LS_HOSTS) if (trySh(["docker", "container", "inspect", "-f", "{{.State.Running}}", h]).stdout?.trim() !== "true") trySh(["docker", "start", h]);
  for (let i = 0; i < 150; i++) {
    trySh(["docker", "exec", "ls-42", "systemctl", "start", "postgresql"]);
    if (trySh(["docker", "exec", "ls-42", "runuser", "-u", "postgres", "--", "psql", "-XAtc", "SELECT 1"]).status === 0) return;
    await sleep(200);
  }
  throw new Error("ls-42: PostgreSQL did not answer within 30 s");
}

/** The backup's archives (final names) in fx.target; an archive is read through docker exec when on ls-41. */
function lsNames(fx: LsFx): string[] {
  if (fx.local) return existsSync(fx.target) ? readdirSync(fx.target).sort() : [];
  return lsListTarget("ls-41", fx.target);
}

/** Verifies one archive of the backup (its manifest, decrypted; with `sha1`, its .sha1 too); [] when it does. */
async function lsArchiveVerifies(fx: LsFx, name: string, sha1: boolean): Promise<string[]> {
  const read = (n: string) => fx.local ? readFileSync(join(fx.target, n)) : spawnSync("docker", ["exec", "ls-41", "cat", `${fx.target}/${n}`], { maxBuffer: 256 << 20 }).stdout;
  const local = join(mkdtempSync(join(fx.dir, "check-")), name);
  try {
    writeFileSync(local, read(name));
    if (sha1) {
      const want = read(`${name}.sha1`).toString().split(/\s/)[0];
      const got = createHash("sha1").update(readFileSync(local)).digest("hex");
      if (want !== got) return [`${name}: its .sha1 says ${want || "nothing"}, the archive is ${got}`];
    }
    await verifyArchive(local, { decrypt: { passphrase: fx.passphrase }, progress: false });
    return [];
  } catch (e) {
    return [`${name} is under its final name but does not verify: ${(e as Error).message.split("\n")[0]}`];
  } finally {
    rmSync(join(local, ".."), { recursive: true, force: true });
  }
}

const lsSystem: System<LsFx> = {
  name: "lambdastack",
  needs: ["docker", "lshosts"],
  async setup(dir, ctx, size) {
    needLab("docker", "lshosts");
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const t0 = Date.now();
    const passphrase = "faults: lambdastack age passphrase";
    const fx: LsFx = {
      dir, build: "", siteB: join(dir, "backup.yml"), siteR: join(dir, "recovery.yml"), state: join(dir, "state"), passphrase,
      target: LS_BACKUP_DIR, local: false, golden: "", goldenFiles: [], w: lsSeedWindow(), before: {},
    };
    rmHosts(LS_HOSTS); // fresh hosts: a matrix run never builds on an earlier one
    upHosts(LS_HOSTS);
    provision(LS_LAYOUT);
    lsSeed(LS_LAYOUT, fx.w, LS_COMPONENTS);
    onHost("ls-42", "runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -d shop", bulkSql(size)); // a dump and a load that last a moment
    fx.before = lsCapture(LS_LAYOUT, fx.w, { only: LS_COMPONENTS });
    fx.build = writeInventory(join(dir, "build"), LS_LAYOUT);
    writeSite(fx.siteB, dir, "backup", { "target-path": LS_BACKUP_DIR, age: { passphrase } });
    writeSite(fx.siteR, dir, "recovery", { "target-path": LS_TARGET, age: { passphrase } });
    // the snapshot the recovery takes in
    const r = await runRecipe("lambdastack-backup", ["-b", fx.build, "-t", LS_TARGET, "-f", fx.siteB, "-c", LS_COMPONENTS.join(",")], {});
    if (r.code !== 0) throw new Error(`lambdastack-backup (setup) exited ${r.code}:\n${r.output.slice(-3000)}`);
    fx.goldenFiles = lsListTarget("ls-41", LS_TARGET);
    fx.golden = /_(\d{8}-\d{6})\.tar\.gz/.exec(fx.goldenFiles[0] ?? "")?.[1] ?? "";
    ctx.log.info(`  lambdastack source: ${LS_COMPONENTS.join(", ")} on ${LS_HOSTS.join(", ")}; snapshot ${fx.golden} (${fx.goldenFiles.length} files) made in ${formatDuration(r.ms)}; set up in ${formatDuration(Date.now() - t0)}`);
    return fx;
  },
  async teardown(fx) {
    rmHosts(LS_HOSTS);
    rmSync(fx.dir, { recursive: true, force: true });
  },
  env: () => ({}),
  stateDir: (fx) => fx.state,
  secrets: (fx) => [fx.passphrase, "app-secret", "r3port"],
  finals: (fx) => new Set(lsNames(fx).filter((n) => !n.startsWith("."))),
  entries: [],
};

const lsRemotes = {
  ssh: (step: RegExp): Remote<LsFx> => ({
    name: "ssh connection to ls-42 (its sshd session killed)", step, says: /ssh|connection|closed|ls-42|127\.0\.0\.1|exit 255|primary/i,
    kill: () => killOnHost("ls-42", /^sshd: \S+@notty/), revive: () => lsUp(),
  }),
  postgres: (step: RegExp): Remote<LsFx> => ({
    name: "PostgreSQL on ls-42 (postmaster killed)", step, says: /postgres|psql|pg_dump|server closed|connection|terminat|primary|ls-42/i,
    kill: async () => (await sleep(MID_MS), killOnHost("ls-42", /^\/usr\/lib\/postgresql\/\d+\/bin\/postgres /)), revive: () => lsUp(),
  }),
};

lsSystem.entries.push(
  {
    recipe: "lambdastack-backup",
    kind: "backup",
    resume: true,
    async reset(fx) {
      await lsUp();
      if (fx.local) clearArchives(fx.target);
      else onHost("ls-41", `rm -rf '${fx.target}' && mkdir -p '${fx.target}'`);
    },
    args: (fx) => ["-b", fx.build, "-f", fx.siteB, "-c", LS_COMPONENTS.join(",")],
    async verify(fx) {
      // the newest snapshot of each part is there with its .sha1, and verifies; no hidden partial is left
      const names = lsNames(fx);
      const problems: string[] = [];
      const hidden = names.filter((n) => n.startsWith("."));
      if (hidden.length) problems.push(`left in ${fx.target} after a complete run: ${hidden.join(", ")}`);
      for (const prefix of ["haproxy_etc", "postgresql"]) {
        const newest = names.filter((n) => n.startsWith(`${prefix}_`) && n.endsWith(".tar.gz.age")).sort().at(-1);
        if (!newest) problems.push(`no ${prefix} archive in ${fx.target}`);
        else problems.push(...(await lsArchiveVerifies(fx, newest, true)));
      }
      return problems;
    },
    async leftovers(fx, before) {
      const out: string[] = [];
      for (const n of lsNames(fx)) if (!before.has(n) && !n.startsWith(".") && n.endsWith(".tar.gz.age")) out.push(...(await lsArchiveVerifies(fx, n, false)));
      return out;
    },
    remotes: [lsRemotes.ssh(/^back up/), lsRemotes.postgres(/^back up/)],
    folders: [{
      name: "target path (local, repository.host=local)", step: /^back up/,
      // 64 MiB: the up-front check (the databases' size, ~40 MiB) passes; the filler takes the rest
      mount: (fx) => {
        const path = join(fx.dir, "target-full");
        const old = { target: fx.target, local: fx.local };
        Object.assign(fx, { target: path, local: true });
        return { path, mib: 64, args: ["-t", path, "--repository.host=local"], undo: () => void Object.assign(fx, old) };
      },
    }],
  },
  {
    recipe: "lambdastack-recovery",
    kind: "restore",
    resume: true,
    async reset(fx) {
      await lsUp();
      onHost("ls-41", "mkdir -p /etc/haproxy /etc/ssl/haproxy");
      lsDestroy(LS_LAYOUT, LS_COMPONENTS);
      rmSync(join(fx.dir, "staging", "recovery"), { recursive: true, force: true });
    },
    args: (fx) => ["-b", fx.build, "-f", fx.siteR, "-c", LS_COMPONENTS.join(","), "--snapshot", fx.golden, "--yes"],
    async verify(fx) {
      return lsDifferences(fx.before, lsCapture(LS_LAYOUT, fx.w, { only: LS_COMPONENTS })).slice(0, 20);
    },
    async leftovers(fx) {
      // a recovery only reads the repository: its archives are as the backup left them
      const now = lsListTarget("ls-41", LS_TARGET);
      return now.join() === fx.goldenFiles.join() ? [] : [`the archives in ls-41:${LS_TARGET} changed: ${now.join(", ")}`];
    },
    remotes: [lsRemotes.ssh(/^recover /), lsRemotes.postgres(/^recover /)],
    folders: [{
      name: "staging dir (the fetched archives)", step: /^fetch and verify/,
      mount: (fx) => {
        const path = join(fx.dir, "staging-full");
        return { path, mib: 32, args: [`--staging-dir=${path}`] };
      },
    }],
  },
);

/** Every system in the matrix. A new system adds its System here. */
export const SYSTEMS: System<any>[] = [deisSystem, hossSystem, xenonSystem, hcoopSystem, lsSystem];

/** The lab pieces the whole matrix needs. */
export const FAULT_NEEDS = [...new Set(SYSTEMS.flatMap((s) => s.needs))];

/** The matrix as a task: `npx zx tasks/run.ts drill:faults [--size reduced] [--seed N] [--recipes a,b]`, `make fault-matrix`. */
export const faultsDrillTask = drillTask({
  name: "drill:faults",
  needs: FAULT_NEEDS,
  description: "the fault matrix: every recipe interrupted (SIGINT, SIGTERM, SIGKILL), its remotes killed and its folders filled, then continued and verified",
  usage: "tasks/run.ts drill:faults [--size full|reduced] [--kills N] [--seed N] [--recipes deis-backup,…] [--kinds signal,kill,remote,enospc] [--workdir DIR]",
  settings: {
    size: { describe: "full: every step boundary and middle, every remote and folder; reduced: a sample (as make test)", choices: ["full", "reduced"], default: "full" },
    kills: { type: "number", describe: "SIGKILLs per recipe (default: 20 full, 1 reduced)", default: 0 },
    seed: { type: "number", describe: "seed of the SIGKILL delays and the reduced sample (printed; give it again to replay)", default: 0 },
    recipes: { type: "list", describe: "only these recipes", default: [] },
    kinds: { type: "list", describe: "only these kinds of case: signal, kill, remote, enospc, record (killed after a step's work, before its journal record: only when named) (the baseline always runs)", default: [] },
    workdir: { describe: "where the fixtures go (default: a new temp dir, removed afterwards)" },
  },
  async run(ctx) {
    const s = ctx.settings;
    if (ctx.dryRun) {
      ctx.log.info(`[dry-run] would run the ${s.size} fault matrix on ${SYSTEMS.flatMap((x) => x.entries.map((e) => e.recipe)).join(", ")}`);
      return;
    }
    const bad = (s.kinds as string[]).filter((k) => !["signal", "kill", "remote", "enospc", "record"].includes(k));
    if (bad.length) throw new UsageError(`--kinds: ${bad.join(", ")} is not a kind of case`, "signal, kill, remote, enospc or record");
    const seed = s.seed || Math.floor(Math.random() * 1e9);
    const work = s.workdir || mkdtempSync(join(tmpdir(), "lifeboat-faults-"));
    try {
      const { results, ms } = await runMatrix(SYSTEMS, {
        size: s.size as "full" | "reduced", kills: s.kills || (s.size === "full" ? 20 : 1), seed, recipes: s.recipes, kinds: s.kinds as Kind[], work, ctx, log: (l) => ctx.log.info(l),
      });
      ctx.log.info("");
      ctx.log.info(chalk.bold(`drill:faults summary (${s.size}, seed ${seed})`));
      for (const l of summaryTable(results, ms)) ctx.log.info(`  ${l}`);
      for (const r of results.filter((x) => x.known?.length)) ctx.log.warn(`${r.recipe}: ${r.c.label}: ${r.known![0]}`);
      const failed = results.filter((r) => !r.held);
      for (const r of failed) ctx.log.error(`${r.recipe}: ${r.c.label}: ${r.problems[0]?.split("\n")[0]}`);
      if (failed.length) throw new Error(`drill:faults: ${failed.length} of ${results.length} cases did not hold (replay with --seed ${seed})`);
      ctx.log.ok(chalk.green(`drill:faults: all ${results.length} cases held`));
    } finally {
      if (!s.workdir) rmSync(work, { recursive: true, force: true });
    }
  },
});

