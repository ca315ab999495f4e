// Benchmark: s3Sync against s3cmd sync, aws s3 sync (Debian's v2), rclone sync, rclone copy
// --transfers 16 and rclone sync --checksum --fast-list, on the lab's Ceph RADOS Gateway.
//
//   node --import=tsx bench/s3.ts [--runs 3] [--tools lifeboat,s3cmd,aws,rclone,rclone16,rclonefast] [--no-write]
//   node --import=tsx bench/s3.ts sync SRC DST [--concurrency N] [--index FILE] [--rehash]   (lifeboat, as its own process)
//
// The data (bench/data/s3-data, made once) is 2000 × 4 KiB files in 20 dirs plus 20 × 5 MiB
// files, incompressible. For each run and each tool, on a fresh bucket: upload, a no-op re-sync
// (the same command again), then a download into an empty dir. Every command runs under
// /usr/bin/time -v (wall time, peak RSS), as its own process, startup included; its keys come
// from env or a config file, never argv. The table (medians) goes to stdout and bench/s3.md.
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { s3Client, s3MakeBucket, s3RemoveBucket, s3Sync } from "../lib/s3.ts";
import { needLab } from "../tasks/drills/lab.ts";

const argv = process.argv.slice(2);
const flag = (name: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const lab = needLab("ceph");
const creds = { endpoint: lab.LAB_S3_ENDPOINT, accessKey: lab.LAB_S3_ACCESS_KEY, secretKey: lab.LAB_S3_SECRET_KEY, region: lab.LAB_S3_REGION };

if (argv[0] === "noop") process.exit(0); // the cost of starting: node, tsx and the imports above
if (argv[0] === "sync") {
  // The lifeboat contender: one s3Sync, as a process of its own.
  const client = s3Client(creds);
  const index = flag("index");
  const r = await s3Sync(argv[1], argv[2], {
    client,
    concurrency: flag("concurrency") ? Number(flag("concurrency")) : undefined,
    index: index === "none" ? false : index,
    rehash: argv.includes("--rehash"),
    progress: false,
  });
  client.destroy();
  console.log(JSON.stringify(r));
  process.exit(0);
}

const here = new URL(".", import.meta.url).pathname;
const work = join(here, "data");
const data = join(work, "s3-data");
const logs = join(work, "s3-logs");
const runs = Number(flag("runs") ?? 3);
const tools = (flag("tools") ?? "lifeboat,s3cmd,aws,rclone,rclone16,rclonefast").split(",");
const SMALL = 2000;
const BIG = 20;

function ensureTools() {
  const need = [["/usr/bin/time", "time"], ["s3cmd", "s3cmd"], ["/usr/bin/aws", "awscli"], ["rclone", "rclone"]]
    .filter(([bin]) => spawnSync("sh", ["-c", `command -v ${bin}`]).status !== 0);
  if (need.length) execFileSync("apt-get", ["install", "-y", "-qq", ...need.map(([, pkg]) => pkg)], { stdio: "inherit" });
}

function makeData() {
  const done = join(work, "s3-data.complete"); // outside the data, so that no tool uploads it
  if (existsSync(done)) return;
  rmSync(data, { recursive: true, force: true });
  for (let i = 0; i < SMALL; i++) {
    const d = join(data, "small", `d${String(i % 20).padStart(2, "0")}`);
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, `f${String(i).padStart(4, "0")}`), randomBytes(4096));
  }
  mkdirSync(join(data, "big"), { recursive: true });
  for (let i = 0; i < BIG; i++) writeFileSync(join(data, "big", `b${String(i).padStart(2, "0")}`), randomBytes(5 << 20));
  writeFileSync(done, "");
}

/** Files and bytes under a dir, skipping lifeboat's reserved names at its top. */
function census(dir: string): { files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  const walk = (d: string, top: boolean) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (top && e.name.startsWith(".lifeboat-s3-")) continue;
      if (e.isDirectory()) walk(join(d, e.name), false);
      else {
        files++;
        bytes += statSync(join(d, e.name)).size;
      }
    }
  };
  walk(dir, true);
  return { files, bytes };
}

const url = new URL(creds.endpoint);
const cfg = join(work, "s3-tools");
function writeConfigs() {
  mkdirSync(cfg, { recursive: true });
  writeFileSync(join(cfg, "s3cfg"), [
    "[default]", `access_key = ${creds.accessKey}`, `secret_key = ${creds.secretKey}`,
    `host_base = ${url.host}`, `host_bucket = ${url.host}`, "use_https = False", "signature_v2 = False",
    "bucket_location = us-east-1", "progress_meter = False", "",
  ].join("\n"), { mode: 0o600 });
  writeFileSync(join(cfg, "aws-config"), "[default]\nregion = us-east-1\ns3 =\n  addressing_style = path\n");
  writeFileSync(join(cfg, "rclone.conf"), "");
}

/** Env for the peers: keys by env, AWS_CA_BUNDLE unset (rclone 1.60 fails on plain http with it). */
function toolEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith("AWS_")) delete env[k];
  return {
    ...env,
    AWS_ACCESS_KEY_ID: creds.accessKey,
    AWS_SECRET_ACCESS_KEY: creds.secretKey,
    AWS_CONFIG_FILE: join(cfg, "aws-config"),
    AWS_SHARED_CREDENTIALS_FILE: "/dev/null",
    AWS_EC2_METADATA_DISABLED: "true",
    RCLONE_CONFIG_LAB_TYPE: "s3",
    RCLONE_CONFIG_LAB_PROVIDER: "Ceph",
    RCLONE_CONFIG_LAB_ENDPOINT: creds.endpoint,
    RCLONE_CONFIG_LAB_ACCESS_KEY_ID: creds.accessKey,
    RCLONE_CONFIG_LAB_SECRET_ACCESS_KEY: creds.secretKey,
  };
}

/** The command each tool runs to sync src to dst (dst or src is s3://BUCKET). */
function command(tool: string, src: string, dst: string, index?: string): string[] {
  const rc = (u: string) => u.replace(/^s3:\/\//, "lab:");
  const slash = (p: string) => (p.endsWith("/") ? p : `${p}/`);
  switch (tool) {
    case "lifeboat": return ["node", "--import=tsx", join(here, "s3.ts"), "sync", src, dst, ...(index ? ["--index", index] : [])];
    case "s3cmd": return ["s3cmd", "--config", join(cfg, "s3cfg"), "--no-progress", "sync", slash(src), slash(dst)];
    case "aws": return ["/usr/bin/aws", "--endpoint-url", creds.endpoint, "--only-show-errors", "s3", "sync", src, dst];
    case "rclone": return ["rclone", "--config", join(cfg, "rclone.conf"), "sync", rc(src), rc(dst)];
    case "rclone16": return ["rclone", "--config", join(cfg, "rclone.conf"), "copy", "--transfers", "16", rc(src), rc(dst)];
    case "rclonefast": return ["rclone", "--config", join(cfg, "rclone.conf"), "sync", "--checksum", "--fast-list", rc(src), rc(dst)];
  }
  throw new Error(`unknown tool ${tool}`);
}
const LABEL: Record<string, string> = {
  lifeboat: "lifeboat `s3Sync` (24 in flight)",
  s3cmd: "`s3cmd sync`",
  aws: "`aws s3 sync` (/usr/bin/aws v2)",
  rclone: "`rclone sync`",
  rclone16: "`rclone copy --transfers 16`",
  rclonefast: "`rclone sync --checksum --fast-list`",
};

interface Sample { wall: number; rssMiB: number; cpu: number }
function timed(name: string, cmd: string[]): Sample {
  const r = spawnSync("/usr/bin/time", ["-v", ...cmd], { encoding: "utf8", env: toolEnv(), maxBuffer: 1 << 26 });
  writeFileSync(join(logs, `${name}.log`), `$ ${cmd.join(" ")}\n${r.stdout}\n${r.stderr}`);
  if (r.status !== 0) throw new Error(`${name} failed (exit ${r.status}): ${r.stderr.slice(-1500)}`);
  const wallTxt = /Elapsed \(wall clock\) time.*: (.*)/.exec(r.stderr)![1].trim();
  const [m, s] = wallTxt.split(":").slice(-2).map(Number);
  const cpu = Number(/User time \(seconds\): ([\d.]+)/.exec(r.stderr)![1]) + Number(/System time \(seconds\): ([\d.]+)/.exec(r.stderr)![1]);
  return { wall: m * 60 + s, rssMiB: Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr)![1]) / 1024, cpu };
}

const loadavg = () => execFileSync("cat", ["/proc/loadavg"], { encoding: "utf8" }).split(" ").slice(0, 3).join(" ");

ensureTools();
console.error(`making the data in ${data} (once)…`);
makeData();
writeConfigs();
mkdirSync(logs, { recursive: true });
const want = census(data);
const client = s3Client(creds);
const results: Record<string, Sample[][]> = Object.fromEntries(tools.map((t) => [t, [[], [], []]]));
const rehash: Sample[] = []; // lifeboat's re-sync reading every file again (no index cache)
const startup: Sample[] = []; // node + tsx + imports, doing nothing
const loads: string[] = [loadavg()];
for (let run = 1; run <= runs; run++) {
  for (const tool of tools) {
    const bucket = `lbt-bench-${tool}-${run}-${process.pid}`;
    const dl = join(work, `s3-dl-${tool}`);
    const index = join(work, `s3-index-${tool}.jsonl`);
    rmSync(dl, { recursive: true, force: true });
    rmSync(index, { force: true });
    await s3MakeBucket(client, bucket);
    try {
      const up = timed(`${tool}-${run}-upload`, command(tool, data, `s3://${bucket}`, index));
      const again = timed(`${tool}-${run}-resync`, command(tool, data, `s3://${bucket}`, index));
      if (tool === "lifeboat") {
        rehash.push(timed(`${tool}-${run}-resync-rehash`, [...command(tool, data, `s3://${bucket}`, index), "--rehash"]));
        startup.push(timed(`${tool}-${run}-startup`, ["node", "--import=tsx", join(here, "s3.ts"), "noop"]));
      }
      mkdirSync(dl, { recursive: true });
      const down = timed(`${tool}-${run}-download`, command(tool, `s3://${bucket}`, dl));
      const got = census(dl);
      if (got.files !== want.files || got.bytes !== want.bytes) {
        throw new Error(`${tool}: downloaded ${got.files} files, ${got.bytes} bytes; expected ${want.files}, ${want.bytes}`);
      }
      [up, again, down].forEach((smp, i) => results[tool][i].push(smp));
      const f = (x: Sample) => `${x.wall.toFixed(2)} s (cpu ${x.cpu.toFixed(2)})`;
      console.error(`  run ${run} ${tool}: upload ${f(up)}, re-sync ${f(again)}, download ${f(down)} (load ${loadavg()})`);
    } finally {
      await s3RemoveBucket(client, bucket, { purge: true });
      rmSync(dl, { recursive: true, force: true });
      rmSync(index, { force: true });
      // The gateway frees deleted objects' tails only when its garbage collection runs (by
      // default two hours later): each round deletes 600 MiB, and a full OSD leaves writes unanswered.
      if (lab.LAB_CEPH_CONF) spawnSync("timeout", ["300", "radosgw-admin", "-c", lab.LAB_CEPH_CONF, "gc", "process", "--include-all"], { stdio: "ignore" });
    }
  }
  loads.push(loadavg());
}
client.destroy();

const median = (xs: Sample[], k: keyof Sample) => [...xs].map((x) => x[k]).sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const base = results.lifeboat;
const cell = (tool: string, i: number) => {
  const w = median(results[tool][i], "wall");
  const ratio = base && tool !== "lifeboat" ? ` (${(w / median(base[i], "wall")).toFixed(1)}×)` : "";
  return `${w.toFixed(2)}${ratio}`;
};
const rows = tools.map((t) =>
  `| ${LABEL[t]} | ${cell(t, 0)} | ${cell(t, 1)} | ${cell(t, 2)} | ${median(results[t][0], "rssMiB").toFixed(0)} / ${median(results[t][1], "rssMiB").toFixed(0)} / ${median(results[t][2], "rssMiB").toFixed(0)} |`
);
const table = [
  `${want.files} files (${SMALL} × 4 KiB + ${BIG} × 5 MiB, ${(want.bytes / 2 ** 20).toFixed(0)} MiB), median of ${runs} run(s), ` +
    `${new Date().toISOString().slice(0, 16)}Z, ${execFileSync("nproc", { encoding: "utf8" }).trim()} cores shared with the gateway; ` +
    `load average (1/5/15 min) before each round: ${loads.join(" → ")}.`,
  "",
  "| tool | upload s | no-op re-sync s | download s | peak RSS MiB (up / re-sync / down) |",
  "| --- | ---: | ---: | ---: | ---: |",
  ...rows,
  "",
  "Wall seconds per process, startup included; (n×) is the tool's time over lifeboat's: above 1 means lifeboat is faster.",
  ...(rehash.length
    ? [
      "",
      `lifeboat's re-sync trusts the index's ETag for files whose size and mtime are unchanged; reading every file again ` +
      `(\`--rehash\`) it took ${median(rehash, "wall").toFixed(2)} s. Its process start alone (node, tsx, imports; no work) took ` +
      `${median(startup, "wall").toFixed(2)} s (peak RSS ${median(startup, "rssMiB").toFixed(0)} MiB).`,
    ]
    : []),
].join("\n");
console.log(table);
if (!argv.includes("--no-write")) {
  const md = join(here, "s3.md");
  const prev = existsSync(md) ? readFileSync(md, "utf8") : "";
  const head = prev.includes("<!-- results -->") ? prev.slice(0, prev.indexOf("<!-- results -->")) : "# s3Sync vs s3cmd, aws s3 sync and rclone\n\n";
  const tail = prev.includes("<!-- /results -->") ? prev.slice(prev.indexOf("<!-- /results -->") + "<!-- /results -->".length) : "\n";
  writeFileSync(md, `${head}<!-- results -->\nReproduce: \`bash test/lab/ceph.sh up && node --import=tsx bench/s3.ts --runs ${runs}\`\n\n${table}\n<!-- /results -->${tail}`);
}
