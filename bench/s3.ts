// Benchmark: s3Sync against s3cmd sync, aws s3 sync (Debian's v2), rclone sync, rclone copy
// --transfers 16 and rclone sync --checksum --fast-list, on the lab's Ceph RADOS Gateway.
//
//   node --import=tsx bench/s3.ts [--runs 3] [--shapes small,big] [--tools lifeboat,rclone16,…] [--memory] [--download-fs ext4] [--no-write]
//   node --import=tsx bench/s3.ts sync SRC DST [--concurrency N] [--index FILE] [--rehash]   (lifeboat, as its own process)
//
// Shapes (made once under bench/data/, incompressible):
//   small  2000 × 4 KiB files in 20 dirs + 20 × 5 MiB (108 MiB): the issue's shape, every tool
//   big    4 × 210 MiB, uploaded in parts by every tool (rclone's cutoff is 200 MiB): the
//          held-out shape, lifeboat and the three rclone settings
//   2g     10 000 × 4 KiB + 200 × 5 MiB + 5 × 210 MiB (2.04 GiB): --memory runs lifeboat's
//          upload and download of it, for peak RSS against the small shape's (flat as data grows)
// For each round and each tool (the tools' order rotates every round), on a fresh bucket: the
// upload, a no-op re-sync (the same command again), then a download into an empty dir. After
// the upload the bucket's keys and sizes must equal the files'; after the download every file
// must equal its source byte for byte. Every command runs after a `sync`, under /usr/bin/time -v (wall time, CPU,
// peak RSS) as its own process, startup included, with this process's runtime (its execArgv
// and NODE_OPTIONS); keys come from env or a config file, never argv. The tables (medians) go
// to stdout and bench/s3.md.
import { Buffer } from "node:buffer";
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";

const argv = process.argv.slice(2);
const flag = (name: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
// The contender's settings come from env (set by the parent below), so that the lifeboat
// process loads only lib/s3.ts: what an S3 sync costs, not the lab helpers'.
const childCreds = () => ({
  endpoint: process.env.LIFEBOAT_BENCH_S3_ENDPOINT!,
  accessKey: process.env.AWS_ACCESS_KEY_ID!,
  secretKey: process.env.AWS_SECRET_ACCESS_KEY!,
  region: process.env.LIFEBOAT_BENCH_S3_REGION,
});

if (argv[0] === "noop") {
  await import("../lib/s3.ts"); // the cost of starting: the runtime and lib/s3.ts
  process.exit(0);
}
if (argv[0] === "sync") {
  // The lifeboat contender: one s3Sync, as a process of its own.
  const { s3Client, s3Sync } = await import("../lib/s3.ts");
  const client = s3Client(childCreds());
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

const { s3Client, s3List, s3MakeBucket, s3RemoveBucket } = await import("../lib/s3.ts");
const { needLab } = await import("../tasks/drills/lab.ts");
const lab = needLab("ceph");
const creds = { endpoint: lab.LAB_S3_ENDPOINT, accessKey: lab.LAB_S3_ACCESS_KEY, secretKey: lab.LAB_S3_SECRET_KEY, region: lab.LAB_S3_REGION };

const here = new URL(".", import.meta.url).pathname;
const work = join(here, "data");
const logs = join(work, "s3-logs");
const runs = Number(flag("runs") ?? 3);
const RCLONES = ["rclone", "rclone16", "rclonefast"];
const shapes = (flag("shapes") ?? "small,big").split(",").filter(Boolean);
const memory = argv.includes("--memory");
// --download-fs ext4: downloads land on a fresh ext4 made with mkfs's defaults (a journal, as on
// an operator's disk) on a loop device, instead of bench/data's filesystem. This machine's root
// ext4 has no journal: there, creating files soon after others were deleted costs system time
// (ext4's recently_deleted scan) that swings 0.5-2.5 s between runs of the same tool.
const downloadFs = flag("download-fs");
let dlRoot = work;
if (downloadFs) {
  if (downloadFs !== "ext4") throw new Error("--download-fs takes ext4");
  const img = join(work, "s3-dlfs.img");
  dlRoot = join(work, "s3-dlfs");
  spawnSync("umount", [dlRoot], { stdio: "ignore" });
  mkdirSync(dlRoot, { recursive: true });
  rmSync(img, { force: true });
  execFileSync("truncate", ["-s", "16G", img]);
  execFileSync("mkfs.ext4", ["-q", "-F", img]);
  execFileSync("mount", ["-o", "loop", img, dlRoot]);
  process.on("exit", () => {
    spawnSync("umount", [dlRoot], { stdio: "ignore" });
    rmSync(img, { force: true });
  });
  for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => process.exit(130));
}

interface Shape { name: string; dir: string; tools: string[]; what: string; make: () => void }
const MiB = 1 << 20;
/** Writes n random files of size bytes as DIR/sub/pattern(i), unless the shape is complete. */
function files(dir: string, n: number, size: number, path: (i: number) => string) {
  for (let i = 0; i < n; i++) {
    const p = join(dir, path(i));
    mkdirSync(join(p, ".."), { recursive: true });
    writeFileSync(p, randomBytes(size));
  }
}
const pad = (i: number, n: number) => String(i).padStart(n, "0");
const SHAPES: Record<string, Shape> = {
  small: {
    name: "small", dir: join(work, "s3-data"), tools: ["lifeboat", "s3cmd", "aws", ...RCLONES],
    what: "2000 × 4 KiB + 20 × 5 MiB",
    make() {
      files(this.dir, 2000, 4096, (i) => `small/d${pad(i % 20, 2)}/f${pad(i, 4)}`);
      files(this.dir, 20, 5 * MiB, (i) => `big/b${pad(i, 2)}`);
    },
  },
  big: {
    name: "big", dir: join(work, "s3-data-big"), tools: ["lifeboat", ...RCLONES],
    what: "4 × 210 MiB, multipart",
    make() {
      files(this.dir, 4, 210 * MiB, (i) => `big/b${i}`);
    },
  },
  "2g": {
    name: "2g", dir: join(work, "s3-data-2g"), tools: ["lifeboat"],
    what: "10 000 × 4 KiB + 200 × 5 MiB + 5 × 210 MiB",
    make() {
      files(this.dir, 10000, 4096, (i) => `small/d${pad(i % 50, 2)}/f${pad(i, 5)}`);
      files(this.dir, 200, 5 * MiB, (i) => `mid/m${pad(i, 3)}`);
      files(this.dir, 5, 210 * MiB, (i) => `big/b${i}`);
    },
  },
};

function ensureTools() {
  const need = [["/usr/bin/time", "time"], ["s3cmd", "s3cmd"], ["/usr/bin/aws", "awscli"], ["rclone", "rclone"]]
    .filter(([bin]) => spawnSync("sh", ["-c", `command -v ${bin}`]).status !== 0);
  if (need.length) execFileSync("apt-get", ["install", "-y", "-qq", ...need.map(([, pkg]) => pkg)], { stdio: "inherit" });
}

function makeData(shape: Shape) {
  const done = `${shape.dir}.complete`; // outside the data, so that no tool uploads it
  if (existsSync(done)) return;
  console.error(`making the data in ${shape.dir} (once)…`);
  rmSync(shape.dir, { recursive: true, force: true });
  shape.make();
  writeFileSync(done, "");
}

/** Relative path → size of every file under a dir, skipping lifeboat's reserved names at its top. */
function census(dir: string): Map<string, number> {
  const out = new Map<string, number>();
  const walk = (d: string, rel: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (!rel && e.name.startsWith(".lifeboat-s3-")) continue;
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(join(d, e.name), r);
      else out.set(r, statSync(join(d, e.name)).size);
    }
  };
  walk(dir, "");
  return out;
}

function sameSet(a: Map<string, number>, b: Map<string, number>): string | null {
  if (a.size !== b.size) return `${b.size} entries, expected ${a.size}`;
  for (const [k, v] of a) if (b.get(k) !== v) return `${k}: ${b.get(k) ?? "missing"}, expected ${v} bytes`;
  return null;
}

/** True when the two files hold the same bytes. */
function sameBytes(x: string, y: string): boolean {
  const [a, b] = [openSync(x, "r"), openSync(y, "r")];
  const [ba, bb] = [Buffer.allocUnsafe(1 << 20), Buffer.allocUnsafe(1 << 20)];
  try {
    for (let pos = 0; ; pos += 1 << 20) {
      const na = readSync(a, ba, 0, ba.length, pos);
      const nb = readSync(b, bb, 0, bb.length, pos);
      if (na !== nb || ba.compare(bb, 0, nb, 0, na) !== 0) return false;
      if (na === 0) return true;
    }
  } finally {
    closeSync(a);
    closeSync(b);
  }
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

/** Env for every tool: keys by env, AWS_CA_BUNDLE unset (rclone 1.60 fails on plain http with it). */
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
    LIFEBOAT_BENCH_S3_ENDPOINT: creds.endpoint,
    LIFEBOAT_BENCH_S3_REGION: creds.region,
    RCLONE_CONFIG_LAB_TYPE: "s3",
    RCLONE_CONFIG_LAB_PROVIDER: "Ceph",
    RCLONE_CONFIG_LAB_ENDPOINT: creds.endpoint,
    RCLONE_CONFIG_LAB_ACCESS_KEY_ID: creds.accessKey,
    RCLONE_CONFIG_LAB_SECRET_ACCESS_KEY: creds.secretKey,
  };
}

/** This process's runtime: node and its flags (e.g. --import=tsx; NODE_OPTIONS passes through env). */
const self = [process.execPath, ...process.execArgv, join(here, "s3.ts")];

/** The command each tool runs to sync src to dst (dst or src is s3://BUCKET). */
function command(tool: string, src: string, dst: string, index?: string): string[] {
  const rc = (u: string) => u.replace(/^s3:\/\//, "lab:");
  const slash = (p: string) => (p.endsWith("/") ? p : `${p}/`);
  switch (tool) {
    case "lifeboat": return [...self, "sync", src, dst, ...(index ? ["--index", index] : [])];
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
  // Every contender starts with nothing dirty: the previous one's writes (and the gateway's) are
  // flushed first, not during its run (file creation waited on ext4's journal: a download's
  // system time went from 0.5 to 1.9 s depending on what ran before it).
  spawnSync("sync");
  const r = spawnSync("/usr/bin/time", ["-v", ...cmd], { encoding: "utf8", env: toolEnv(), maxBuffer: 1 << 26 });
  writeFileSync(join(logs, `${name}.log`), `$ ${cmd.join(" ")}\n${r.stdout}\n${r.stderr}`);
  if (r.status !== 0) throw new Error(`${name} failed (exit ${r.status}): ${r.stderr.slice(-1500)}`);
  const wallTxt = /Elapsed \(wall clock\) time.*: (.*)/.exec(r.stderr)![1].trim();
  const [m, s] = wallTxt.split(":").slice(-2).map(Number);
  const cpu = Number(/User time \(seconds\): ([\d.]+)/.exec(r.stderr)![1]) + Number(/System time \(seconds\): ([\d.]+)/.exec(r.stderr)![1]);
  return { wall: m * 60 + s, rssMiB: Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr)![1]) / 1024, cpu };
}

const loadavg = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const client = s3Client(creds);

/** After an upload: the bucket holds exactly the shape's keys, with their sizes. */
async function checkKeys(tool: string, bucket: string, want: Map<string, number>) {
  const got = new Map<string, number>();
  for await (const o of s3List(client, bucket)) got.set(o.key, o.size);
  const bad = sameSet(want, got);
  if (bad) throw new Error(`${tool}: s3://${bucket} after the upload: ${bad}`);
}

/** After a download: the dir holds exactly the shape's files, each equal to its source. */
function checkFiles(tool: string, shape: Shape, dl: string, want: Map<string, number>) {
  const bad = sameSet(want, census(dl));
  if (bad) throw new Error(`${tool}: ${dl} after the download: ${bad}`);
  for (const rel of want.keys()) {
    if (!sameBytes(join(shape.dir, rel), join(dl, rel))) throw new Error(`${tool}: ${rel} downloaded differs from its source`);
  }
}

interface Round { tool: string; up: Sample; again: Sample; down: Sample; rehash?: Sample; load: string }

/** One shape: rounds of every tool (order rotating), each on a fresh bucket. */
async function benchShape(shape: Shape, tools: string[], rounds: number, phases = { again: true }): Promise<{ rows: Round[]; loads: string[]; startup: Sample[] }> {
  makeData(shape);
  // An index left inside the data (a sync run without --index) would be uploaded by the peers.
  rmSync(join(shape.dir, ".lifeboat-s3-index.jsonl"), { force: true });
  const want = census(shape.dir);
  const rows: Round[] = [];
  const startup: Sample[] = [];
  const loads = [loadavg()];
  for (let run = 1; run <= rounds; run++) {
    const order = tools.map((_, i) => tools[(i + run - 1) % tools.length]);
    for (const tool of order) {
      const bucket = `lbt-bench-${shape.name}-${tool}-${run}-${process.pid}`;
      const dl = join(dlRoot, `s3-dl-${tool}`);
      const index = join(work, `s3-index-${tool}.jsonl`);
      const tag = `${shape.name}-${tool}-${run}`;
      rmSync(dl, { recursive: true, force: true });
      rmSync(index, { force: true });
      await s3MakeBucket(client, bucket);
      try {
        const load = loadavg();
        const up = timed(`${tag}-upload`, command(tool, shape.dir, `s3://${bucket}`, index));
        await checkKeys(tool, bucket, want);
        const again = phases.again ? timed(`${tag}-resync`, command(tool, shape.dir, `s3://${bucket}`, index)) : up;
        let rehash: Sample | undefined;
        if (tool === "lifeboat" && phases.again) {
          rehash = timed(`${tag}-resync-rehash`, [...command(tool, shape.dir, `s3://${bucket}`, index), "--rehash"]);
          startup.push(timed(`${tag}-startup`, [...self, "noop"]));
        }
        mkdirSync(dl, { recursive: true });
        const down = timed(`${tag}-download`, command(tool, `s3://${bucket}`, dl));
        checkFiles(tool, shape, dl, want);
        rows.push({ tool, up, again, down, rehash, load });
        const f = (x: Sample) => `${x.wall.toFixed(2)} s (cpu ${x.cpu.toFixed(2)}, ${x.rssMiB.toFixed(0)} MiB)`;
        console.error(`  ${shape.name} run ${run} ${tool}: upload ${f(up)}, re-sync ${f(again)}, download ${f(down)} (load ${load})`);
      } finally {
        await s3RemoveBucket(client, bucket, { purge: true });
        rmSync(dl, { recursive: true, force: true });
        rmSync(index, { force: true });
        // The gateway frees deleted objects' tails only when its garbage collection runs (by
        // default two hours later): each round deletes up to 1 GiB, and a full OSD leaves writes unanswered.
        if (lab.LAB_CEPH_CONF) spawnSync("timeout", ["300", "radosgw-admin", "-c", lab.LAB_CEPH_CONF, "gc", "process", "--include-all"], { stdio: "ignore" });
      }
    }
    loads.push(loadavg());
  }
  return { rows, loads, startup };
}

function shapeTable(shape: Shape, r: { rows: Round[]; loads: string[]; startup: Sample[] }, tools: string[]): string {
  const of = (t: string) => r.rows.filter((x) => x.tool === t);
  const med = (t: string, k: "up" | "again" | "down", f: keyof Sample = "wall") => median(of(t).map((x) => x[k][f]));
  const bytes = [...census(shape.dir).values()].reduce((a, b) => a + b, 0);
  const rc = tools.filter((t) => RCLONES.includes(t));
  const cell = (t: string, k: "up" | "again" | "down") => {
    const w = med(t, k);
    return `${w.toFixed(2)}${t !== "lifeboat" && tools.includes("lifeboat") ? ` (${(med("lifeboat", k) / w).toFixed(2)})` : ""}`;
  };
  const rows = tools.map((t) =>
    `| ${LABEL[t]} | ${cell(t, "up")} | ${cell(t, "again")} | ${cell(t, "down")} | ` +
    `${med(t, "up", "cpu").toFixed(2)} / ${med(t, "again", "cpu").toFixed(2)} / ${med(t, "down", "cpu").toFixed(2)} | ` +
    `${med(t, "up", "rssMiB").toFixed(0)} / ${med(t, "again", "rssMiB").toFixed(0)} / ${med(t, "down", "rssMiB").toFixed(0)} |`);
  const lines = [
    `### ${shape.name}: ${shape.what} (${census(shape.dir).size} files, ${(bytes / MiB).toFixed(0)} MiB)`,
    "",
    `Median of ${r.rows.length / tools.length} round(s), ${new Date().toISOString().slice(0, 16)}Z, ${execFileSync("nproc", { encoding: "utf8" }).trim()} cores shared with the gateway; ` +
      `load average (1/5/15 min) before each round: ${r.loads.join(" → ")}.` +
      (downloadFs ? " Downloads land on a fresh, journaled ext4 on a loop device (`--download-fs ext4`)." : " Downloads land on bench/data's filesystem."),
    "",
    "| tool | upload s | no-op re-sync s | download s | CPU s (up / re-sync / down) | peak RSS MiB (up / re-sync / down) |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
    ...rows,
  ];
  if (tools.includes("lifeboat") && rc.length) {
    const best = (k: "up" | "again" | "down") => Math.min(...rc.map((t) => med(t, k)));
    const ratio = (k: "up" | "again" | "down") => (med("lifeboat", k) / best(k)).toFixed(2);
    lines.push("", `lifeboat over the best rclone setting (below 1: lifeboat faster): upload ${ratio("up")}, no-op re-sync ${ratio("again")}, download ${ratio("down")}.`);
  }
  const lb = of("lifeboat");
  if (lb.length && lb[0].rehash) {
    lines.push("", `lifeboat's re-sync trusts the index's ETag for files whose size and mtime are unchanged; reading every file again ` +
      `(\`--rehash\`) it took ${median(lb.map((x) => x.rehash!.wall)).toFixed(2)} s. Its process start alone (the runtime and lib/s3.ts; no work) took ` +
      `${median(r.startup.map((x) => x.wall)).toFixed(2)} s (CPU ${median(r.startup.map((x) => x.cpu)).toFixed(2)} s, peak RSS ${median(r.startup.map((x) => x.rssMiB)).toFixed(0)} MiB).`);
  }
  return lines.join("\n");
}

ensureTools();
writeConfigs();
mkdirSync(logs, { recursive: true });
const parts: string[] = [];
const toolsFlag = flag("tools")?.split(",");
for (const name of shapes) {
  const shape = SHAPES[name];
  if (!shape) throw new Error(`unknown shape ${name}: small, big or 2g`);
  const tools = toolsFlag ? toolsFlag.filter((t) => shape.tools.includes(t) || name === "2g") : shape.tools;
  parts.push(shapeTable(shape, await benchShape(shape, tools, runs), tools));
  console.log(parts[parts.length - 1] + "\n");
}
if (memory) {
  // Peak RSS of lifeboat's upload and download as the data grows: the small shape against 2 GiB.
  const small = await benchShape(SHAPES.small, ["lifeboat"], 1, { again: false });
  const big = await benchShape(SHAPES["2g"], ["lifeboat"], 1, { again: false });
  const start = timed("memory-startup", [...self, "noop"]);
  const bytes = (s: Shape) => ([...census(s.dir).values()].reduce((a, b) => a + b, 0) / MiB).toFixed(0);
  const rss = (x: Round) => `${x.up.rssMiB.toFixed(0)} / ${x.down.rssMiB.toFixed(0)}`;
  const secs = (x: Round) => `${x.up.wall.toFixed(1)} / ${x.down.wall.toFixed(1)}`;
  parts.push([
    "### memory: lifeboat's peak RSS as the data grows",
    "",
    `One round each, ${new Date().toISOString().slice(0, 16)}Z, load ${small.loads[0]} → ${big.loads[1]}; \`/usr/bin/time -v\`, whole process.`,
    "",
    "| data | upload / download s | peak RSS MiB (upload / download) |",
    "| --- | ---: | ---: |",
    `| nothing: the runtime and lib/s3.ts, no work | | ${start.rssMiB.toFixed(0)} |`,
    `| small (${bytes(SHAPES.small)} MiB) | ${secs(small.rows[0])} | ${rss(small.rows[0])} |`,
    `| 2g: ${SHAPES["2g"].what} (${bytes(SHAPES["2g"])} MiB) | ${secs(big.rows[0])} | ${rss(big.rows[0])} |`,
  ].join("\n"));
  console.log(parts[parts.length - 1] + "\n");
}
client.destroy();

if (!argv.includes("--no-write")) {
  const md = join(here, "s3.md");
  const prev = existsSync(md) ? readFileSync(md, "utf8") : "";
  const head = prev.includes("<!-- results -->") ? prev.slice(0, prev.indexOf("<!-- results -->")) : "# s3Sync vs s3cmd, aws s3 sync and rclone\n\n";
  const tail = prev.includes("<!-- /results -->") ? prev.slice(prev.indexOf("<!-- /results -->") + "<!-- /results -->".length) : "\n";
  const runtime = [...process.execArgv, ...(process.env.NODE_OPTIONS ? [`NODE_OPTIONS=${process.env.NODE_OPTIONS}`] : [])].join(" ");
  const repro = `bash test/lab/ceph.sh up && node ${process.execArgv.join(" ")} bench/s3.ts --runs ${runs} --shapes ${shapes.join(",")}` +
    `${toolsFlag ? ` --tools ${toolsFlag.join(",")}` : ""}${memory ? " --memory" : ""}${downloadFs ? ` --download-fs ${downloadFs}` : ""}`;
  writeFileSync(md, `${head}<!-- results -->\nReproduce: \`${repro.replace(/ +/g, " ")}\` (Node ${process.version}${runtime ? `, ${runtime}` : ""})\n\n` +
    `Wall seconds per process, startup included; (n) after a peer's time is lifeboat's time over it: below 1, lifeboat is faster.\n\n` +
    `${parts.join("\n\n")}\n<!-- /results -->${tail}`);
}
