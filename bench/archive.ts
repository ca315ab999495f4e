// Benchmark: packArchive, unpackArchive and verifyArchive against GNU tar, pigz and zstd, on the same tree.
//
//   node bench/archive.ts [--size-mib 1024] [--runs 3] [--no-write]
//
// The tree (bench/data/tree-SIZE, made once) is half text-like data (a dump-like mix of words
// and numbers, compresses about 3:1) and half incompressible bytes, in 4 MiB files plus 2000
// small files. Each contender runs under /usr/bin/time -v for wall time and peak RSS; the page
// cache is warm for all (one untimed read first). Runs alternate: round r runs every contender
// once, in order, so a change of load hits them all alike; the table shows each one's median
// and the load average before every round. Then the outputs are checked: GNU tar reads
// packArchive's .tar.gz and .tar.zst back to the same bytes as the tree, the manifest lists
// exactly the archive's entries, and unpackArchive restores the same bytes.
// Results go to stdout and bench/archive.md.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import minimist from "minimist";
import { seededBytes } from "../tasks/drills/fixtures.ts";

const args = minimist(process.argv.slice(2), { default: { "size-mib": 1024, runs: 3 } });
const sizeMiB = Number(args["size-mib"]);
const runs = Number(args.runs);
const here = new URL(".", import.meta.url).pathname;
const data = join(here, "data");
const tree = join(data, `tree-${sizeMiB}`);
const out = join(data, "out");
// Node as this bench runs (its loader flags, and NODE_OPTIONS through the environment).
const node = [process.execPath, ...process.execArgv];
const one = (...a: string[]) => [...node, join(here, "pack-one.ts"), ...a];

function ensureTools() {
  const need = [["pigz", "pigz"], ["zstd", "zstd"], ["/usr/bin/time", "time"]].filter(([bin]) => spawnSync("sh", ["-c", `command -v ${bin}`]).status !== 0);
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
  if (existsSync(`${tree}.complete`)) return;
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
  writeFileSync(`${tree}.complete`, "");
}

interface Contender {
  group: "pack" | "restore";
  name: string;
  cmd: string[];
  /** The file whose size is the output (pack), or "" */
  output: string;
  /** Run before each timing, untimed (e.g. empty the target). */
  before?: () => void;
  env?: Record<string, string>;
}
interface Sample { wall: number; rssMiB: number; bytes: number }

function timed(c: Contender): Sample {
  c.before?.();
  if (c.output) rmSync(c.output, { force: true });
  const r = spawnSync("/usr/bin/time", ["-v", ...c.cmd], { encoding: "utf8", maxBuffer: 1 << 26, env: { ...process.env, ...c.env } });
  if (r.status !== 0) throw new Error(`${c.name} failed: ${r.stderr.slice(-2000)}`);
  const wallTxt = /Elapsed \(wall clock\) time.*: (.*)/.exec(r.stderr)![1].trim();
  const parts = wallTxt.split(":").map(Number);
  const wall = parts.reduce((acc, p) => acc * 60 + p, 0);
  const rss = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr)![1]) / 1024;
  return { wall, rssMiB: rss, bytes: c.output ? statSync(c.output).size : 0 };
}

const sh = (c: string) => ["sh", "-c", c];
const loadavg = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

ensureTools();
console.error(`making a ${sizeMiB} MiB tree in ${tree} (once)…`);
makeTree();
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const src = tree;
execFileSync("tar", ["-cf", "/dev/null", "-C", src, "."]); // warm the page cache
const o = (n: string) => join(out, n);
const target = o("target");
const fresh = () => rmSync(target, { recursive: true, force: true });
const freshDir = () => (fresh(), mkdirSync(target));
const noPigz = o("path-without-pigz");
mkdirSync(noPigz);
const level = "-6";

const contenders: Contender[] = [
  { group: "pack", name: "GNU tar czf (gzip -6)", cmd: ["tar", "-C", src, "-czf", o("gnu.tar.gz"), "."], output: o("gnu.tar.gz") },
  { group: "pack", name: "tar | pigz -6 -p 2", cmd: sh(`tar -C '${src}' -cf - . | pigz ${level} -p 2 > '${o("pigz.tar.gz")}'`), output: o("pigz.tar.gz") },
  { group: "pack", name: "packArchive gzip (pigz -p 2)", cmd: one("pack", src, o("lb.tar.gz"), "gzip", "2"), output: o("lb.tar.gz") },
  { group: "pack", name: "packArchive gzip, no pigz (in-process)", cmd: one("pack", src, o("lb-nopigz.tar.gz"), "gzip", "2"), output: o("lb-nopigz.tar.gz"), env: { PATH: noPigz } },
  { group: "pack", name: "tar -I 'zstd -T2' (zstd -3)", cmd: ["tar", "-C", src, "-I", "zstd -T2", "-cf", o("gnu.tar.zst"), "."], output: o("gnu.tar.zst") },
  { group: "pack", name: "packArchive zstd (-3 -T2)", cmd: one("pack", src, o("lb.tar.zst"), "zstd", "2"), output: o("lb.tar.zst") },
  { group: "restore", name: "tar xzf", cmd: ["tar", "-C", target, "-xzf", o("lb.tar.gz")], output: "", before: freshDir },
  { group: "restore", name: "pigz -d | tar x", cmd: sh(`pigz -d < '${o("lb.tar.gz")}' | tar -C '${target}' -xf -`), output: "", before: freshDir },
  { group: "restore", name: "unpackArchive .tar.gz", cmd: one("unpack", o("lb.tar.gz"), target), output: "", before: fresh },
  { group: "restore", name: "verifyArchive .tar.gz (full)", cmd: one("verify", o("lb.tar.gz")), output: "" },
  { group: "restore", name: "tar --zstd -xf", cmd: ["tar", "-C", target, "--zstd", "-xf", o("lb.tar.zst")], output: "", before: freshDir },
  { group: "restore", name: "unpackArchive .tar.zst", cmd: one("unpack", o("lb.tar.zst"), target), output: "", before: fresh },
  { group: "restore", name: "verifyArchive .tar.zst (full)", cmd: one("verify", o("lb.tar.zst")), output: "" },
];

const samples = new Map<string, Sample[]>(contenders.map((c) => [c.name, []]));
const loads: string[] = [];
for (let r = 0; r < runs; r++) {
  loads.push(loadavg());
  for (const c of contenders) {
    const s = timed(c);
    samples.get(c.name)!.push(s);
    console.error(`  round ${r + 1}: ${c.name}: ${s.wall.toFixed(1)} s, ${s.rssMiB.toFixed(0)} MiB`);
  }
}
loads.push(loadavg());

// Correctness: the bytes come back, and the manifest names exactly what the archive holds.
const checks: string[] = [];
const diff = (dir: string, what: string) => {
  const r = spawnSync("diff", ["-r", "--no-dereference", src, dir], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${what}: differs from the tree:\n${r.stdout.slice(0, 2000)}`);
  checks.push(`${what}: same bytes as the tree (diff -r)`);
};
for (const [file, flag] of [["lb.tar.gz", "-z"], ["lb.tar.zst", "--zstd"], ["lb-nopigz.tar.gz", "-z"]] as const) {
  freshDir();
  execFileSync("tar", ["-C", target, flag, "-xf", o(file)]);
  const manifest = JSON.parse(readFileSync(join(target, "manifest.json"), "utf8")) as { entries: { path: string }[] };
  rmSync(join(target, "manifest.json"));
  diff(target, `GNU tar ${flag} -xf ${file}`);
  const listed = execFileSync("tar", [flag, "-tf", o(file)], { encoding: "utf8", maxBuffer: 1 << 28 }).split("\n").map((l) => l.replace(/\/$/, "").replace(/^\.\//, "")).filter((l) => l && l !== "." && l !== "manifest.json").sort();
  const keys = manifest.entries.map((e) => e.path).sort();
  if (JSON.stringify(listed) !== JSON.stringify(keys)) throw new Error(`${file}: the manifest's ${keys.length} paths are not the archive's ${listed.length} entries`);
  checks.push(`${file}: the manifest lists exactly the archive's ${keys.length} entries (tar -t)`);
}
for (const file of ["lb.tar.gz", "lb.tar.zst"]) {
  fresh();
  execFileSync(one("unpack", o(file), target)[0], one("unpack", o(file), target).slice(1));
  diff(target, `unpackArchive ${file}`);
}

const med = (name: string) => {
  const s = samples.get(name)!;
  return { wall: median(s.map((x) => x.wall)), rss: Math.max(...s.map((x) => x.rssMiB)), bytes: median(s.map((x) => x.bytes)) };
};
const gnuGz = med("GNU tar czf (gzip -6)").wall;
const pigzGz = med("tar | pigz -6 -p 2").wall;
const gnuZst = med("tar -I 'zstd -T2' (zstd -3)").wall;
const packRows = contenders.filter((c) => c.group === "pack").map((c) => {
  const m = med(c.name);
  return `| ${c.name.replaceAll("|", "\\|")} | ${m.wall.toFixed(1)} | ${(sizeMiB / m.wall).toFixed(0)} | ${(gnuGz / m.wall).toFixed(2)}× | ${(pigzGz / m.wall).toFixed(2)}× | ${(gnuZst / m.wall).toFixed(2)}× | ${m.rss.toFixed(0)} | ${(m.bytes / 2 ** 20).toFixed(0)} |`;
});
const xzf = med("tar xzf").wall;
const pigzd = med("pigz -d | tar x").wall;
const zstx = med("tar --zstd -xf").wall;
const restoreRows = contenders.filter((c) => c.group === "restore").map((c) => {
  const m = med(c.name);
  const zst = c.name.includes("zst");
  return `| ${c.name.replaceAll("|", "\\|")} | ${m.wall.toFixed(1)} | ${zst ? "" : `${(m.wall / xzf).toFixed(2)}×`} | ${zst ? "" : `${(m.wall / pigzd).toFixed(2)}×`} | ${zst ? `${(m.wall / zstx).toFixed(2)}×` : ""} | ${m.rss.toFixed(0)} |`;
});
const cores = execFileSync("nproc", { encoding: "utf8" }).trim();
const table = [
  `${sizeMiB} MiB tree (half text-like, half incompressible; 2000 small files), median of ${runs} alternating round(s), ${new Date().toISOString().slice(0, 16)}Z, ${cores} cores.`,
  `Load average (1, 5, 15 min) before each round and after the last: ${loads.join(" → ")}.`,
  "",
  "**Pack** (throughput ratios: higher is faster)",
  "",
  "| contender | wall s | MiB/s | vs GNU tar czf | vs tar \\| pigz -p 2 | vs tar -I 'zstd -T2' | peak RSS MiB | output MiB |",
  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ...packRows,
  "",
  "**Restore** (time ratios: lower is faster; the .tar.gz is packArchive's)",
  "",
  "| contender | wall s | vs tar xzf | vs pigz -d \\| tar x | vs tar --zstd -xf | peak RSS MiB |",
  "| --- | ---: | ---: | ---: | ---: | ---: |",
  ...restoreRows,
  "",
  "Checked after the runs: " + checks.join("; ") + ".",
].join("\n");
console.log(table);
const reproduce = `node bench/archive.ts --size-mib ${sizeMiB} --runs ${runs}`;
if (args.write !== false) {
  const notes = existsSync(join(here, "archive.notes.md")) ? "\n" + readFileSync(join(here, "archive.notes.md"), "utf8") : "";
  writeFileSync(join(here, "archive.md"), `# packArchive, unpackArchive, verifyArchive vs GNU tar, pigz and zstd\n\nReproduce: \`${reproduce}\` (\`bash bench/run.sh archive\` puts the project's node first on PATH)\n\n${table}\n\nPeak RSS of a shell pipeline is its largest single process (/usr/bin/time -v reports the biggest child). packArchive and unpackArchive include node (the project's Node 26, stripping the types itself).\n${notes}`);
}
rmSync(out, { recursive: true, force: true });
