// Benchmark: packArchive against GNU tar + gzip and tar | pigz, on the same tree.
//
//   node --import=tsx bench/archive.ts [--size-mib 1024] [--runs 1]
//
// The tree (bench/data/tree, made once) is half text-like data (a dump-like mix of
// words and numbers, compresses about 3:1) and half incompressible bytes, in 4 MiB files
// plus 2000 small files. Each contender runs under /usr/bin/time -v for wall time and
// peak RSS; the page cache is warm for all (one untimed read first). Results go to
// stdout and bench/archive.md.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import minimist from "minimist";
import { seededBytes } from "../tasks/drills/fixtures.ts";

const args = minimist(process.argv.slice(2), { default: { "size-mib": 1024, runs: 1 } });
const sizeMiB = Number(args["size-mib"]);
const runs = Number(args.runs);
const here = new URL(".", import.meta.url).pathname;
const data = join(here, "data");
const tree = join(data, `tree-${sizeMiB}`);
const out = join(data, "out");

function ensureTools() {
  const need = [["pigz", "pigz"], ["/usr/bin/time", "time"]].filter(([bin]) => spawnSync("sh", ["-c", `command -v ${bin}`]).status !== 0);
  if (need.length) execFileSync("apt-get", ["install", "-y", "-qq", ...need.map(([, pkg]) => pkg)], { stdio: "inherit" });
}

function words(seed: string, n: number): Buffer {
  const vocab = "backup restore archive store gateway registry database wal segment checkpoint tuple index vacuum replica primary snapshot volume object bucket manifest".split(" ");
  const rnd = seededBytes(seed, n);
  const parts: string[] = [];
  let len = 0;
  for (let i = 0; len < n; i++) {
    const w = i % 7 === 0 ? String(rnd.readUInt32LE(i % (n - 4)) % 100000) : vocab[rnd[i % n] % vocab.length];
    parts.push(w, i % 11 === 10 ? "\n" : "\t");
    len += w.length + 1;
  }
  return Buffer.from(parts.join("")).subarray(0, n);
}

function makeTree() {
  if (existsSync(join(tree, ".complete"))) return;
  rmSync(tree, { recursive: true, force: true });
  const big = Math.floor((sizeMiB - 8) / 4);
  for (let i = 0; i < big; i++) {
    const dir = join(tree, `dir-${i % 16}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `part-${i}.${i % 2 ? "bin" : "txt"}`), i % 2 ? seededBytes(`bin${i}`, 4 << 20) : words(`txt${i}`, 4 << 20));
  }
  const small = join(tree, "small");
  mkdirSync(small, { recursive: true });
  for (let i = 0; i < 2000; i++) writeFileSync(join(small, `f${i}.txt`), words(`s${i}`, 4096));
  writeFileSync(join(tree, ".complete"), "");
}

interface Result { name: string; wall: number; rssMiB: number; bytes: number }

function timed(name: string, cmd: string[], output: string): Result {
  rmSync(output, { force: true });
  const r = spawnSync("/usr/bin/time", ["-v", ...cmd], { encoding: "utf8", maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${name} failed: ${r.stderr.slice(-2000)}`);
  const wallTxt = /Elapsed \(wall clock\) time.*: (.*)/.exec(r.stderr)![1].trim();
  const [m, s] = wallTxt.includes(":") ? wallTxt.split(":").slice(-2).map(Number) : [0, Number(wallTxt)];
  const rss = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr)![1]) / 1024;
  return { name, wall: m * 60 + s, rssMiB: rss, bytes: statSync(output).size };
}

ensureTools();
console.error(`making a ${sizeMiB} MiB tree in ${tree} (once)…`);
makeTree();
mkdirSync(out, { recursive: true });
execFileSync("tar", ["-cf", "/dev/null", "-C", tree, "."]); // warm the page cache
const load = execFileSync("cat", ["/proc/loadavg"], { encoding: "utf8" }).split(" ").slice(0, 3).join(" ");
const sh = (c: string) => ["sh", "-c", c];
const contenders: [string, string[], string][] = [
  ["GNU tar czf (gzip -6)", ["tar", "-C", tree, "-czf", join(out, "gnu.tar.gz"), "."], join(out, "gnu.tar.gz")],
  ["tar | pigz -6 (2 threads)", sh(`tar -C '${tree}' -cf - . | pigz -6 -p 2 > '${join(out, "pigz.tar.gz")}'`), join(out, "pigz.tar.gz")],
  ["packArchive, 1 worker", ["node", "--import=tsx", join(here, "pack-one.ts"), tree, join(out, "lb1.tar.gz"), "1"], join(out, "lb1.tar.gz")],
  ["packArchive (default: parallel)", ["node", "--import=tsx", join(here, "pack-one.ts"), tree, join(out, "lb.tar.gz")], join(out, "lb.tar.gz")],
];
const results: Result[] = [];
for (const [name, cmd, output] of contenders) {
  const all: Result[] = [];
  for (let i = 0; i < runs; i++) all.push(timed(name, cmd, output));
  all.sort((a, b) => a.wall - b.wall);
  results.push(all[Math.floor(all.length / 2)]);
  console.error(`  ${name}: ${all[Math.floor(all.length / 2)].wall.toFixed(1)} s`);
}
const base = results[0];
const rows = results.map((r) =>
  `| ${r.name} | ${r.wall.toFixed(1)} | ${(sizeMiB / r.wall).toFixed(0)} | ${(base.wall / r.wall).toFixed(2)}× | ${r.rssMiB.toFixed(0)} | ${(r.bytes / 2 ** 20).toFixed(0)} |`
);
const table = [
  `Pack ${sizeMiB} MiB (half text-like, half incompressible; 2000 small files), median of ${runs} run(s), load before: ${load}, ${new Date().toISOString().slice(0, 16)}Z, ${execFileSync("nproc", { encoding: "utf8" }).trim()} cores.`,
  "",
  "| contender | wall s | MiB/s | throughput vs GNU tar+gzip | peak RSS MiB | output MiB |",
  "| --- | ---: | ---: | ---: | ---: | ---: |",
  ...rows,
].join("\n");
console.log(table);
if (!args["no-write"]) writeFileSync(join(here, "archive.md"), `# packArchive vs GNU tar + gzip and pigz\n\nReproduce: \`node --import=tsx bench/archive.ts --size-mib ${sizeMiB} --runs ${runs}\`\n\n${table}\n\nPeak RSS of tar/pigz is the largest single process of the pipeline (/usr/bin/time -v reports the biggest child).\n`);
rmSync(out, { recursive: true, force: true });
