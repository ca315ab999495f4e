// Benchmark: sshTar against the raw `ssh host 'tar -C dir -cpf - .' > file`, on the same
// tree over the lab sshd (127.0.0.1:2222). Results and how to read them: bench/ssh.md.
//
//   node --import=tsx bench/ssh.ts [--size-gib 2] [--rounds 7] [--keep]
//   node --import=tsx bench/ssh.ts once DIR OUT [--stream]    (one sshTar, timed by the run above)
//
// The tree (random bytes, so nothing compresses: 4 MiB files plus 64 KiB files) is made
// under /var/tmp/lifeboat-bench-ssh and deleted at the end unless --keep.
//   A. In this process: raw `ssh … > file` (with and without an fsync of the file) against
//      sshTar into a file and into a Writable: the helper's own cost, no start-up.
//   B. Whole processes under /usr/bin/time -v: raw against `bench/ssh.ts once` (node, tsx and
//      lib/mod.ts start-up included), and peak RSS.
// Rounds alternate the order; medians and minimums are reported (the machine is shared:
// the minimum is the run least disturbed by others).
import { randomFillSync } from "node:crypto";
import { closeSync, createWriteStream, existsSync, fsyncSync, mkdirSync, openSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import process from "node:process";
import minimist from "minimist";
import { createContext, exec, displayCommand, setDefaultContext, sshCommand, sshTar, type SshTarget } from "../lib/internal.ts";
import { needLab } from "../tasks/drills/lab.ts";

const args = minimist(process.argv.slice(2), { boolean: ["keep", "stream"], default: { "size-gib": 2, rounds: 7 } });
const ctx = createContext({ name: "bench-ssh", argv: [], env: {}, sink: { write: () => true } });
setDefaultContext(ctx);
const lab = needLab("sshd");
const target: SshTarget = {
  host: lab.LAB_SSH_HOST,
  port: Number(lab.LAB_SSH_PORT),
  user: "root",
  identityFile: lab.LAB_SSH_KEY,
  knownHostsFile: lab.LAB_SSH_KNOWN_HOSTS,
};

if (args._[0] === "once") {
  // One sshTar, as a recipe would run it; prints its own timing and peak RSS as JSON.
  const [, dir, out] = args._ as string[];
  const t0 = performance.now();
  const r = await sshTar(target, dir, args.stream ? createWriteStream(out, { mode: 0o600 }) : out);
  const ms = performance.now() - t0;
  process.stdout.write(JSON.stringify({ ms, bytes: r.bytes, maxRssKiB: process.resourceUsage().maxRSS }) + "\n");
  process.exit(0);
}

const root = "/var/tmp/lifeboat-bench-ssh";
const outFile = join(root, "out.tar");
const gib = Number(args["size-gib"]);
const tree = join(root, `tree-${gib}GiB`);

function makeTree(): void {
  if (existsSync(join(tree, ".complete"))) return;
  rmSync(tree, { recursive: true, force: true });
  const total = gib * 1024 ** 3;
  const smallBytes = Math.floor(total / 8);
  const buf = Buffer.alloc(4 << 20);
  let n = 0;
  for (let done = 0; done < total - smallBytes; done += buf.length, n++) {
    const dir = join(tree, `dir-${n % 16}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `part-${n}.bin`), randomFillSync(buf));
  }
  const small = join(tree, "small");
  mkdirSync(small, { recursive: true });
  for (let i = 0; i < smallBytes / 65536; i++) writeFileSync(join(small, `f${i}.dat`), randomFillSync(Buffer.alloc(65536)));
  writeFileSync(join(tree, ".complete"), "");
}

interface Sample { wall: number; rssMiB?: number; bytes: number; selfRssMiB?: number }

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const pct = (x: number, base: number) => `${x >= base ? "+" : ""}${((x / base - 1) * 100).toFixed(1)} %`;

/** Times one contender: a fresh output file, no dirty pages left by the run before. */
async function timed(run: () => Promise<Partial<Sample> | void>): Promise<Sample> {
  rmSync(outFile, { force: true });
  await exec(["sync"], { ctx });
  const t0 = performance.now();
  const extra = (await run()) ?? {};
  return { wall: (performance.now() - t0) / 1000, bytes: statSync(outFile).size, ...extra };
}

/** Runs argv under /usr/bin/time -v; stdout to outFile, or captured (the `once` JSON). */
async function underTime(argv: string[], toFile: boolean): Promise<Partial<Sample>> {
  const r = await exec(["/usr/bin/time", "-v", ...argv], { stdout: toFile ? { file: outFile } : "capture", ctx });
  const rssMiB = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr)?.[1] ?? NaN) / 1024;
  return toFile ? { rssMiB } : { rssMiB, selfRssMiB: JSON.parse(r.stdout.trim().split("\n").pop()!).maxRssKiB / 1024 };
}

function fsyncFile(path: string): void {
  const fd = openSync(path, "r");
  fsyncSync(fd);
  closeSync(fd);
}

/** Rounds in alternating order; returns samples per contender. */
async function rounds(title: string, n: number, contenders: Record<string, () => Promise<Sample>>): Promise<Record<string, Sample[]>> {
  const out: Record<string, Sample[]> = Object.fromEntries(Object.keys(contenders).map((k) => [k, []]));
  const names = Object.keys(contenders);
  for (let round = 0; round < n; round++) {
    for (const name of round % 2 ? [...names].reverse() : names) {
      const sample = await contenders[name]();
      out[name].push(sample);
      process.stderr.write(`${title} round ${round + 1} ${name}: ${sample.wall.toFixed(2)} s${sample.rssMiB ? `, ${sample.rssMiB.toFixed(0)} MiB` : ""}\n`);
    }
  }
  return out;
}

function table(samples: Record<string, Sample[]>, base: string, withRss: boolean): string[] {
  const rawMed = median(samples[base].map((x) => x.wall));
  const rawMin = Math.min(...samples[base].map((x) => x.wall));
  const lines = [
    `| contender | median wall (s) | vs ${base} | min wall (s) | vs ${base} |${withRss ? " peak RSS, process tree (MiB) | node's own peak RSS (MiB) |" : ""}`,
    `| --- | --- | --- | --- | --- |${withRss ? " --- | --- |" : ""}`,
  ];
  for (const [name, ss] of Object.entries(samples)) {
    const med = median(ss.map((x) => x.wall));
    const min = Math.min(...ss.map((x) => x.wall));
    const rss = withRss ? ` ${median(ss.map((x) => x.rssMiB ?? NaN)).toFixed(0)} | ${ss[0].selfRssMiB ? median(ss.map((x) => x.selfRssMiB!)).toFixed(0) : ""} |` : "";
    lines.push(`| ${name} | ${med.toFixed(2)} | ${pct(med, rawMed)} | ${min.toFixed(2)} | ${pct(min, rawMin)} |${rss}`);
  }
  return lines;
}

const rawArgv = sshCommand(target, ["tar", "-C", tree, "-cpf", "-", "."]);
const oursArgv = [process.execPath, "--import=tsx", new URL(import.meta.url).pathname, "once", tree, outFile];
const n = Number(args.rounds);

try {
  makeTree();
  // A warm page cache for everyone: one untimed read of the tree.
  await exec(["tar", "-C", tree, "-cf", "/dev/null", "."], { ctx });
  const load0 = loadavg();
  // A: inside this process, no start-up cost: what the helper itself adds.
  const inProcess = await rounds("A", n, {
    "raw": () => timed(() => exec(rawArgv, { stdout: { file: outFile }, ctx }).then(() => {})),
    "raw + fsync": () => timed(async () => {
      await exec(rawArgv, { stdout: { file: outFile }, ctx });
      fsyncFile(outFile);
    }),
    "sshTar → file": () => timed(() => sshTar(target, tree, outFile, { ctx }).then(() => {})),
    "sshTar → Writable": () => timed(() => sshTar(target, tree, createWriteStream(outFile, { mode: 0o600 }), { ctx }).then(() => {})),
  });
  // B: whole processes under /usr/bin/time -v: start-up included, and peak RSS.
  const whole = await rounds("B", Math.min(n, 3), {
    "raw": () => timed(() => underTime(rawArgv, true)),
    "sshTar → file": () => timed(() => underTime(oursArgv, false)),
    "sshTar → Writable": () => timed(() => underTime([...oursArgv, "--stream"], false)),
  });
  const load1 = loadavg();
  const sizes = new Set([...Object.values(inProcess), ...Object.values(whole)].flat().map((x) => x.bytes));
  const lines = [
    `tree: ${gib} GiB; ${cpus().length} CPUs; load average ${load0.map((l) => l.toFixed(2)).join(" ")} before, ${load1.map((l) => l.toFixed(2)).join(" ")} after`,
    "",
    `A. in one process, ${n} rounds (the helper's own cost):`,
    "",
    ...table(inProcess, "raw", false),
    "",
    `B. whole processes under /usr/bin/time -v, ${Math.min(n, 3)} rounds (node + tsx start-up, peak RSS):`,
    "",
    ...table(whole, "raw", true),
    "",
    `archive bytes: ${[...sizes].join(", ")} (one value: every contender wrote the same size)`,
    "",
    "commands:",
    `  raw:    ${displayCommand(rawArgv, { stdout: { file: outFile } })}`,
    `  sshTar: ${displayCommand(oursArgv)}`,
  ];
  process.stdout.write(lines.join("\n") + "\n");
} finally {
  rmSync(outFile, { force: true });
  if (!args.keep) rmSync(root, { recursive: true, force: true });
}
