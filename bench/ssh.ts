// Benchmark: sshTar against the raw `ssh host 'tar -C dir -cpf - .' > file`, on the same
// tree over the lab sshd (127.0.0.1:2222). Results and how to read them: bench/ssh.md.
//
//   node --import=tsx bench/ssh.ts [--size-gib 2] [--rounds 5] [--keep]
//   node --import=tsx bench/ssh.ts once DIR OUT [--stream]    (one sshTar, timed by the run above)
//
// The tree (random bytes, so nothing compresses: 4 MiB files plus 64 KiB files) is made
// under /var/tmp/lifeboat-bench-ssh and deleted at the end unless --keep. Every contender
// runs under /usr/bin/time -v (peak RSS of the biggest process in its tree) and is timed
// here by the wall clock; rounds alternate the order, and the medians are reported.
import { randomFillSync } from "node:crypto";
import { createWriteStream, existsSync, mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import process from "node:process";
import minimist from "minimist";
import { createContext, exec, displayCommand, setDefaultContext, sshCommand, sshTar, type SshTarget } from "../lib/mod.ts";
import { needLab } from "../test/lab/lab.ts";

const args = minimist(process.argv.slice(2), { boolean: ["keep", "stream"], default: { "size-gib": 2, rounds: 5 } });
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
const tree = join(root, "tree");
const outFile = join(root, "out.tar");
const gib = Number(args["size-gib"]);

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

interface Sample { wall: number; rssMiB: number; bytes: number; callMs?: number; selfRssMiB?: number }

/** Runs argv under /usr/bin/time -v with stdout to outFile (or captured), and measures it. */
async function timed(argv: string[], toFile: boolean): Promise<Sample> {
  rmSync(outFile, { force: true });
  const t0 = performance.now();
  const r = await exec(["/usr/bin/time", "-v", ...argv], { stdout: toFile ? { file: outFile } : "capture", ctx });
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

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const rawArgv = sshCommand(target, ["tar", "-C", tree, "-cpf", "-", "."]);
const oursArgv = [process.execPath, "--import=tsx", new URL(import.meta.url).pathname, "once", tree, outFile];
const contenders: Record<string, () => Promise<Sample>> = {
  "raw ssh … > file": () => timed(rawArgv, true),
  "raw ssh … > file; sync file": async () => {
    const s = await timed(rawArgv, true);
    const t0 = performance.now();
    await exec(["sync", outFile], { ctx });
    return { ...s, wall: s.wall + (performance.now() - t0) / 1000 };
  },
  "sshTar → file": () => timed(oursArgv, false),
  "sshTar → Writable": () => timed([...oursArgv, "--stream"], false),
};

try {
  makeTree();
  // A warm page cache for everyone: one untimed read of the tree.
  await exec(["tar", "-C", tree, "-cf", "/dev/null", "."], { ctx });
  const samples: Record<string, Sample[]> = Object.fromEntries(Object.keys(contenders).map((k) => [k, []]));
  const load0 = loadavg();
  const names = Object.keys(contenders);
  for (let round = 0; round < Number(args.rounds); round++) {
    for (const name of round % 2 ? [...names].reverse() : names) {
      const s = await contenders[name]();
      samples[name].push(s);
      process.stderr.write(`round ${round + 1} ${name}: ${s.wall.toFixed(2)} s, ${s.rssMiB.toFixed(0)} MiB\n`);
    }
  }
  const load1 = loadavg();
  const rawWall = median(samples["raw ssh … > file"].map((s) => s.wall));
  const lines = [
    `tree: ${gib} GiB, ${args.rounds} rounds, ${cpus().length} CPUs, load average ${load0.map((l) => l.toFixed(2)).join(" ")} before, ${load1.map((l) => l.toFixed(2)).join(" ")} after`,
    "",
    "| contender | median wall (s) | vs raw | median peak RSS (MiB) | sshTar call (s) | node's own peak RSS (MiB) |",
    "| --- | --- | --- | --- | --- | --- |",
  ];
  for (const [name, ss] of Object.entries(samples)) {
    const wall = median(ss.map((s) => s.wall));
    const call = ss[0].callMs !== undefined ? (median(ss.map((s) => s.callMs!)) / 1000).toFixed(2) : "";
    const self = ss[0].selfRssMiB !== undefined ? median(ss.map((s) => s.selfRssMiB!)).toFixed(0) : "";
    const vs = `${wall >= rawWall ? "+" : ""}${((wall / rawWall - 1) * 100).toFixed(1)} %`;
    lines.push(`| ${name} | ${wall.toFixed(2)} | ${vs} | ${median(ss.map((s) => s.rssMiB)).toFixed(0)} | ${call} | ${self} |`);
  }
  const sizes = new Set(Object.values(samples).flat().map((s) => s.bytes));
  lines.push("", `archive bytes: ${[...sizes].join(", ")} (one value: every contender wrote the same size)`);
  lines.push("", "commands:", `  raw:    /usr/bin/time -v ${displayCommand(rawArgv, { stdout: { file: outFile } })}`, `  sshTar: /usr/bin/time -v ${displayCommand(oursArgv)}`);
  process.stdout.write(lines.join("\n") + "\n");
} finally {
  rmSync(outFile, { force: true });
  if (!args.keep) rmSync(root, { recursive: true, force: true });
}
