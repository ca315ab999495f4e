// Benchmark: start-up time and resting memory. How long until a recipe answers `--help`, and
// how long importing the library takes, against bare `node` and a bare zx script, on each
// runtime an operator may use. Results: bench/startup.md.
//
//   node bench/startup.ts [--rounds 7] [--recipe deis-backup] [--old-node /usr/bin/node] [--no-write]
//
// Every case runs as its own process under /usr/bin/time (wall, user + sys CPU, peak RSS of the
// biggest process in its tree: for `npx …` that is the larger of npm and the script's node);
// rounds go through all cases in turn, so a burst of load from elsewhere hits every case alike;
// medians are reported, with the load average before and after. "node" is this process's
// node (process.execPath: node_modules/.bin/node under bench/run.sh); the old path is the
// machine's node with tsx (--old-node). No test in test/ depends on these figures.
import { spawnSync, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import process from "node:process";
import minimist from "minimist";

const args = minimist(process.argv.slice(2), {
  boolean: ["write"],
  string: ["recipe", "old-node"],
  default: { rounds: 7, recipe: "deis-backup", "old-node": "/usr/bin/node", write: true },
});
const root = dirname(dirname(new URL(import.meta.url).pathname));
const node = process.execPath;
const oldNode: string = args["old-node"];
const rounds = Number(args.rounds);
const recipe = `recipes/${args.recipe}.ts`;

if (!existsSync("/usr/bin/time")) execFileSync("apt-get", ["install", "-y", "-qq", "time"], { stdio: "inherit" });

const tmp = mkdtempSync(join(tmpdir(), "lifeboat-bench-startup-"));
const hello = join(tmp, "hello.mjs");
writeFileSync(hello, 'echo("hello")\n');
const timeOut = join(tmp, "time.txt");
const load = loadavg().map((x) => x.toFixed(2)).join(" ");
const imp = (file: string) => `await import(${JSON.stringify(join(root, file))})`;
// node_modules/.bin first on PATH, as the Makefile and bench/run.sh set it (npx does the same itself).
// The compile cache as bench/run.sh, test/run.sh and the Makefile set it (npx: .npmrc turns it on).
const env: Record<string, string | undefined> = {
  ...process.env,
  PATH: `${join(root, "node_modules/.bin")}:${process.env.PATH}`,
  NODE_OPTIONS: "",
  NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE ?? join(tmpdir(), "node-compile-cache"),
  FORCE_COLOR: "0",
  NO_COLOR: "1",
};

interface Case {
  key: string;
  name: string;
  argv: string[];
  /** Extra environment for this case. */
  env?: Record<string, string>;
  /** Runs only when this exists. */
  needs?: string;
}
const oldVersion = existsSync(oldNode) ? execFileSync(oldNode, ["--version"], { encoding: "utf8" }).trim() : "";
const cases: Case[] = [
  { key: "node", name: "bare `node -e 0`", argv: [node, "-e", "0"] },
  { key: "zx", name: "`node`: import zx", argv: [node, "--input-type=module", "-e", 'await import("zx")'] },
  { key: "mod", name: "`node`: import lib/mod.ts", argv: [node, "--input-type=module", "-e", imp("lib/mod.ts")] },
  { key: "internal", name: "`node`: import lib/internal.ts", argv: [node, "--input-type=module", "-e", imp("lib/internal.ts")] },
  { key: "hello", name: "`npx zx hello.mjs` (bare zx script, prints a line)", argv: ["npx", "zx", hello] },
  { key: "npx", name: `\`npx zx ${recipe} --help\``, argv: ["npx", "zx", recipe, "--help"] },
  { key: "binzx", name: `\`node_modules/.bin/zx ${recipe} --help\``, argv: [join(root, "node_modules/.bin/zx"), recipe, "--help"] },
  { key: "direct", name: `\`node ${recipe} --help\``, argv: [node, recipe, "--help"] },
  { key: "cold", name: `\`node ${recipe} --help\`, no compile cache (every file stripped again, as on a first run)`, argv: [node, recipe, "--help"], env: { NODE_DISABLE_COMPILE_CACHE: "1" } },
  { key: "deno", name: `\`deno run -A ${recipe} --help\` (node_modules/.bin/deno ${denoVersion()})`, argv: [join(root, "node_modules/.bin/deno"), "run", "-A", recipe, "--help"] },
  { key: "oldhelp", name: `old path: \`node --import=tsx ${recipe} --help\` (${oldVersion})`, argv: [oldNode, "--import=tsx", recipe, "--help"], needs: oldNode },
  { key: "oldmod", name: `old path: \`node --import=tsx\`: import lib/mod.ts (${oldVersion})`, argv: [oldNode, "--import=tsx", "--input-type=module", "-e", imp("lib/mod.ts")], needs: oldNode },
].filter((c) => !c.needs || existsSync(c.needs));

function denoVersion(): string {
  return execFileSync(join(root, "node_modules/.bin/deno"), ["--version"], { encoding: "utf8" }).split("\n")[0].replace(/ \(.*/, "");
}

interface Sample { wall: number; cpu: number; rssMiB: number }
const samples = new Map<string, Sample[]>(cases.map((c) => [c.key, []]));

function run(c: Case): Sample {
  const r = spawnSync("/usr/bin/time", ["-o", timeOut, "-f", "%e %U %S %M", ...c.argv], { cwd: root, env: { ...env, ...c.env }, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${c.name}: exit ${r.status}\n${r.stderr}`);
  const [wall, user, sys, kib] = readFileSync(timeOut, "utf8").trim().split("\n").pop()!.split(" ").map(Number);
  return { wall, cpu: user + sys, rssMiB: kib / 1024 };
}

for (const c of cases) run(c); // warm the page cache, npx's cache and the compile cache once
for (let i = 0; i < rounds; i++) {
  const order = i % 2 ? [...cases].reverse() : cases;
  for (const c of order) samples.get(c.key)!.push(run(c));
  process.stderr.write(`round ${i + 1}/${rounds}\n`);
}
rmSync(tmp, { recursive: true, force: true });
const loadAfter = loadavg().map((x) => x.toFixed(2)).join(" ");

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const has = (key: string) => samples.has(key);
const med = (key: string, k: keyof Sample) => median(samples.get(key)!.map((s) => s[k]));

const rows = cases.map((c) => {
  const range = samples.get(c.key)!.map((s) => s.wall);
  return `| ${c.name} | ${med(c.key, "wall").toFixed(2)} s (${Math.min(...range).toFixed(2)}–${Math.max(...range).toFixed(2)}) | ${med(c.key, "cpu").toFixed(2)} s | ${(med(c.key, "wall") / med("hello", "wall")).toFixed(2)}× | ${med(c.key, "rssMiB").toFixed(0)} MiB |`;
});
const over = (key: string, base: string, k: keyof Sample) => (med(key, k) - med(base, k)).toFixed(2);
const table = [
  `| case | wall, median (min–max) | CPU (user + sys), median | wall ÷ bare zx script | peak RSS, median |`,
  `| --- | --- | --- | --- | --- |`,
  ...rows,
].join("\n");
const summary = [
  `- importing lib/mod.ts costs **${over("mod", "zx", "cpu")} s CPU** (${over("mod", "zx", "wall")} s wall) over \`node\` + zx, ${over("mod", "node", "cpu")} s CPU (${over("mod", "node", "wall")} s wall) over bare \`node\`; lib/internal.ts ${over("internal", "zx", "cpu")} s CPU (${over("internal", "zx", "wall")} s wall) over \`node\` + zx (goal ≤ 0.10 s)`,
  `- a recipe's \`--help\` through \`npx zx\` takes **${(med("npx", "cpu") / med("hello", "cpu")).toFixed(2)}×** the bare zx script's CPU time (${(med("npx", "wall") / med("hello", "wall")).toFixed(2)}× its wall time) (goal ≤ 1.15×)`,
  `- a recipe process at rest (\`--help\`, peak RSS): ${med("direct", "rssMiB").toFixed(0)} MiB through node, ${med("npx", "rssMiB").toFixed(0)} MiB through npx zx` +
    (has("oldhelp") ? `; the old path (tsx on ${oldVersion}): ${med("oldhelp", "rssMiB").toFixed(0)} MiB and ${(med("oldhelp", "cpu") / med("direct", "cpu")).toFixed(1)}× the CPU time of \`node ${recipe} --help\`` : ""),
  `- with more runnable processes than cores (load above 2) wall times mostly measure waiting for a core; CPU time (user + sys) is the steadier figure`,
].join("\n");

const md = `# Start-up: a recipe's \`--help\` and importing the library

Reproduce: \`bash bench/run.sh startup\` (or \`node_modules/.bin/node bench/startup.ts --rounds ${rounds}\`). Measured ${new Date().toISOString().slice(0, 10)} with node ${process.version} (node_modules/.bin/node, which runs the TypeScript itself by type stripping), ${rounds} rounds alternating the order, load average ${load} before and ${loadAfter} after (2 cores shared with whatever else runs).

${summary}

${table}

- Wall and CPU come from \`/usr/bin/time\`; peak RSS is the biggest process of the tree (for \`npx …\` that can be npm itself). The ratio column divides by the bare zx script's median wall time.
- Node's compile cache holds each file's stripped and compiled code: \`.npmrc\` turns it on for everything npx starts (\`node-options=--import=data:…enableCompileCache()\`), the Makefile, test/run.sh and bench/run.sh set \`NODE_COMPILE_CACHE\`. The "no compile cache" row is a first run: every file is stripped again (the stripper itself, a WebAssembly module, is loaded and compiled too).
- The library loads no dependency it does not need to start: ora (first animated spinner), yaml (first site file or YAML inventory), yauzl (verifyZip) and zx (dotenv; \`npx zx\` has loaded it anyway) load when first used — and, in their own files, tar and age-encryption (archives) and the AWS SDK (S3).
- The old path is the one used until 2026-11-30: the machine's node with tsx as a loader (\`NODE_OPTIONS=--import=tsx\`).
`;
process.stdout.write(md);
if (args.write) writeFileSync(join(root, "bench/startup.md"), md);
