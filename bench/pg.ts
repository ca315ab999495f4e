// Benchmark: pgDumpAll against the raw `pg_dumpall > file`, on the same cluster (the lab's source
// cluster on 127.0.0.1:55432, grown with a separate pgbench database). Results: bench/pg.md.
//
//   node --import=tsx bench/pg.ts [--scale 220] [--rounds 5] [--gzip] [--keep] [--no-write]
//   node --import=tsx bench/pg.ts once OUT [--no-fsync] [--gzip] [--lean]   (one pgDumpAll, timed by the run above)
//
// Setup: database lifeboat_bench is made with `pgbench -i -s SCALE` (scale 220 ≈ 2.0 GiB of dump;
// scale 150 gave 1.39 GiB here, for a 2.2 GB database)
// and dropped at the end unless --keep (an existing one is reused). Every contender runs under
// /usr/bin/time -v (peak RSS of the biggest process in its tree) and is timed here by the wall
// clock; rounds alternate the order; medians are reported. The password travels in PGPASSWORD
// (never argv) for the raw contenders too.
import { readFileSync, mkdirSync, rmSync, statSync, writeFileSync, existsSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { dirname, join } from "node:path";
import process from "node:process";
import minimist from "minimist";
import { needLab } from "../tasks/drills/lab.ts";

const args = minimist(process.argv.slice(2), { boolean: ["keep", "gzip", "write", "fsync", "lean"], default: { scale: 220, rounds: 5, fsync: true, write: true } });
const lab = needLab("pg");
const source = { host: "127.0.0.1", port: Number(lab.LAB_PG_PORT), user: "postgres", passwordFile: lab.LAB_PG_PASSWORD_FILE, binDir: lab.LAB_PG_BIN };

if (args._[0] === "once") {
  // One pgDumpAll, as a recipe runs it (through lib/mod.ts), or --lean through lib/postgres.ts
  // alone; prints its own timing and peak RSS as JSON.
  const lib = args.lean ? await import("../lib/postgres.ts") : await import("../lib/mod.ts");
  const { createContext, setDefaultContext } = await import("../lib/context.ts");
  setDefaultContext(createContext({ name: "bench-pg", argv: [], env: {}, sink: { write: () => true } }));
  const t0 = performance.now();
  const r = await lib.pgDumpAll(source, String(args._[1]), { fsync: args.fsync, gzip: args.gzip ? 6 : undefined });
  const ms = performance.now() - t0;
  process.stdout.write(JSON.stringify({ ms, bytes: r.bytes, written: r.written, maxRssKiB: process.resourceUsage().maxRSS }) + "\n");
  process.exit(0);
}

const { createContext, displayCommand, exec, formatBytes, psqlQuery, setDefaultContext } = await import("../lib/internal.ts");
const ctx = createContext({ name: "bench-pg", argv: [], env: {}, sink: { write: () => true } });
setDefaultContext(ctx);
const here = dirname(new URL(import.meta.url).pathname);
const root = "/var/tmp/lifeboat-bench-pg";
const outFile = join(root, args.gzip ? "dump.sql.gz" : "dump.sql");
const DB = "lifeboat_bench";
const scale = Number(args.scale);
const pgEnv = { PGPASSWORD: readFileSync(source.passwordFile, "utf8").split("\n")[0] };
ctx.secrets.add(pgEnv.PGPASSWORD);
const conn = [`--host=${source.host}`, `--port=${source.port}`, `--username=${source.user}`];
const bin = (tool: string) => `${source.binDir}/${tool}`;

async function grow(): Promise<boolean> {
  const have = await psqlQuery(source, `SELECT 1 FROM pg_database WHERE datname = '${DB}'`);
  if (have.length) {
    const rows = Number((await psqlQuery(source, "SELECT count(*) FROM pgbench_accounts", { database: DB }))[0][0]);
    if (rows === scale * 100_000) return false;
    await exec([bin("dropdb"), ...conn, "--no-password", DB], { env: pgEnv });
  }
  process.stderr.write(`growing ${DB} with pgbench -i -s ${scale} …\n`);
  await exec([bin("createdb"), ...conn, "--no-password", DB], { env: pgEnv });
  await exec([bin("pgbench"), ...conn, "-i", "-q", "-s", String(scale), DB], { env: pgEnv, stdout: "ignore" });
  return true;
}

interface Sample { wall: number; rssMiB: number; bytes: number; callMs?: number; selfRssMiB?: number }

/** Runs argv under /usr/bin/time -v with stdout to outFile (or captured), and measures it. */
async function timed(argv: string[], toFile: boolean): Promise<Sample> {
  rmSync(outFile, { force: true });
  const t0 = performance.now();
  const r = await exec(["/usr/bin/time", "-v", ...argv], { stdout: toFile ? { file: outFile } : "capture", env: toFile ? pgEnv : undefined });
  const wall = (performance.now() - t0) / 1000;
  const rss = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr)?.[1] ?? NaN) / 1024;
  const sample: Sample = { wall, rssMiB: rss, bytes: statSync(outFile).size };
  if (!toFile) {
    const j = JSON.parse(r.stdout.trim().split("\n").pop()!);
    sample.callMs = j.ms;
    sample.selfRssMiB = j.maxRssKiB / 1024;
  }
  return sample;
}

async function synced(s: Promise<Sample>): Promise<Sample> {
  const x = await s;
  const t0 = performance.now();
  await exec(["sync", outFile]);
  return { ...x, wall: x.wall + (performance.now() - t0) / 1000 };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const rawArgv = args.gzip
  ? ["sh", "-c", `"$0" "$@" | gzip -6`, bin("pg_dumpall"), ...conn, "--no-password"]
  : [bin("pg_dumpall"), ...conn, "--no-password"];
const once = [process.execPath, "--import=tsx", new URL(import.meta.url).pathname, "once", outFile, ...(args.gzip ? ["--gzip"] : [])];
const RAW = args.gzip ? "raw pg_dumpall | gzip -6 > file" : "raw pg_dumpall > file";
const contenders: Record<string, () => Promise<Sample>> = {
  [RAW]: () => timed(rawArgv, true),
  [`${RAW}; sync file`]: () => synced(timed(rawArgv, true)),
  "pgDumpAll → file, fsync: false": () => timed([...once, "--no-fsync"], false),
  "pgDumpAll → file (default: fsync, rename)": () => timed(once, false),
  "pgDumpAll → file, lib/postgres.ts only": () => timed([...once, "--lean"], false),
};

let grown = false;
try {
  mkdirSync(root, { recursive: true, mode: 0o700 });
  grown = await grow();
  await exec(["sync"]);
  // A warm cache for everyone: one untimed dump.
  await timed(rawArgv, true);
  const samples: Record<string, Sample[]> = Object.fromEntries(Object.keys(contenders).map((k) => [k, []]));
  const load0 = loadavg();
  const names = Object.keys(contenders);
  for (let round = 0; round < Number(args.rounds); round++) {
    for (const name of round % 2 ? [...names].reverse() : names) {
      const s = await contenders[name]();
      samples[name].push(s);
      process.stderr.write(`round ${round + 1} ${name}: ${s.wall.toFixed(2)} s, ${s.rssMiB.toFixed(0)} MiB${s.selfRssMiB ? ` (node ${s.selfRssMiB.toFixed(0)} MiB)` : ""}, load ${loadavg()[0].toFixed(2)}\n`);
    }
  }
  const load1 = loadavg();
  const rawWall = median(samples[RAW].map((s) => s.wall));
  const rawSync = median(samples[`${RAW}; sync file`].map((s) => s.wall));
  const sizes = new Set(Object.values(samples).flat().map((s) => s.bytes));
  const lines = [
    `Dump of the whole source cluster (${DB} at pgbench scale ${scale}, plus shop and bench): ${[...sizes].map((b) => formatBytes(b)).join(", ")}${args.gzip ? " gzipped" : ""}; ` +
      `${args.rounds} rounds, medians; ${cpus().length} CPUs; load average ${load0.map((l) => l.toFixed(2)).join(" ")} before, ${load1.map((l) => l.toFixed(2)).join(" ")} after; ${new Date().toISOString().slice(0, 16)}Z.`,
    "",
    "| contender | median wall (s) | vs raw | vs raw + sync | median peak RSS (MiB) | pgDumpAll call (s) | node's own peak RSS (MiB) |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  const pct = (a: number, b: number) => `${a >= b ? "+" : ""}${((a / b - 1) * 100).toFixed(1)} %`;
  for (const [name, ss] of Object.entries(samples)) {
    const wall = median(ss.map((s) => s.wall));
    const call = ss[0].callMs !== undefined ? (median(ss.map((s) => s.callMs!)) / 1000).toFixed(2) : "";
    const self = ss[0].selfRssMiB !== undefined ? median(ss.map((s) => s.selfRssMiB!)).toFixed(0) : "";
    lines.push(`| ${name.replace(/\|/g, "\\|")} | ${wall.toFixed(2)} | ${pct(wall, rawWall)} | ${pct(wall, rawSync)} | ${median(ss.map((s) => s.rssMiB)).toFixed(0)} | ${call} | ${self} |`);
  }
  lines.push(
    "",
    "Commands (PGPASSWORD in the environment):",
    "",
    `    raw:       /usr/bin/time -v ${displayCommand(rawArgv, { stdout: { file: outFile } })}`,
    `    pgDumpAll: /usr/bin/time -v ${displayCommand(once)}`,
    `    bench:     node --import=tsx bench/pg.ts --scale ${scale} --rounds ${args.rounds}${args.gzip ? " --gzip" : ""}`,
  );
  const table = lines.join("\n");
  process.stdout.write(table + "\n");
  if (args.write) {
    const md = join(here, "pg.md");
    const tag = args.gzip ? "gzip" : "plain";
    const begin = `<!-- results:${tag} -->`;
    const end = `<!-- /results:${tag} -->`;
    const text = existsSync(md) ? readFileSync(md, "utf8") : "";
    const i = text.indexOf(begin);
    const j = text.indexOf(end);
    if (i >= 0 && j > i) writeFileSync(md, `${text.slice(0, i + begin.length)}\n${table}\n${text.slice(j)}`);
    else writeFileSync(md, `${text}\n${begin}\n${table}\n${end}\n`);
  }
} finally {
  rmSync(root, { recursive: true, force: true });
  if (!args.keep) {
    await exec([bin("dropdb"), ...conn, "--no-password", "--if-exists", DB], { env: pgEnv }).catch((e) => process.stderr.write(`dropping ${DB} failed: ${e}\n`));
  }
}
