// Benchmark: an off-site copy of a 1 GiB archive with `offsite:copy` (lib/offsite.ts), against
// `rsync` over the same ssh (lab sshd, 127.0.0.1:2222) and `rclone copy` to the same gateway (the
// lab's Ceph RGW). Results and how to read them: bench/offsite.md.
//
//   node bench/offsite.ts [--size-mib 1024] [--rounds 3] [--keep]      (Node >= 22.18; older: node --import=tsx)
//
// Every run is a whole process, as an operator runs it (lifeboat: node start-up included, with
// native type stripping as under npx zx, or tsx where this Node lacks it),
// into an empty destination, so every byte moves. lifeboat's copy includes its verify there
// (sha256sum on the ssh host; the ETag check on S3) and the sidecars; rsync checks its own
// whole-file checksum, rclone the parts' MD5s. Rounds alternate the order; medians are reported.
// The archive (random bytes: a gzip or age file does not compress further) is made under
// /var/tmp/lifeboat-bench-offsite with its .sha256 and a fresh .verified, as a recipe's pack
// step leaves it; it is deleted at the end unless --keep. rsync is installed when missing.
import { spawnSync } from "node:child_process";
import { createHash, randomFillSync } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, rmSync, statSync, writeFileSync, writeSync } from "node:fs";
import { loadavg } from "node:os";
import { basename, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import minimist from "minimist";
import { createContext, s3Client, s3MakeBucket, s3RemoveBucket, setDefaultContext, typeScriptFlags } from "../lib/internal.ts";
import { needLab } from "../tasks/drills/lab.ts";

const args = minimist(process.argv.slice(2), { boolean: ["keep"], default: { "size-mib": 1024, rounds: 3 } });
const ctx = createContext({ name: "bench-offsite", argv: [], env: {}, sink: { write: () => true } });
setDefaultContext(ctx);
const lab = needLab("ceph", "sshd");
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const root = "/var/tmp/lifeboat-bench-offsite";
const remote = join(root, "remote"); // the ssh host is this machine
const mib = Number(args["size-mib"]);
const archive = join(root, "local", `deis-backup-2026-11-21T101500Z.tar.gz`);
const creds = { endpoint: lab.LAB_S3_ENDPOINT, region: lab.LAB_S3_REGION || "us-east-1", accessKey: lab.LAB_S3_ACCESS_KEY, secretKey: lab.LAB_S3_SECRET_KEY };
const bucket = `lbbench-offsite-${process.pid}`;
const sshOpts = ["-o", "BatchMode=yes", "-p", lab.LAB_SSH_PORT, "-i", lab.LAB_SSH_KEY, "-o", "IdentitiesOnly=yes", "-o", `UserKnownHostsFile=${lab.LAB_SSH_KNOWN_HOSTS}`, "-o", "StrictHostKeyChecking=yes"];

function makeArchive(): void {
  if (existsSync(`${archive}.verified`) && statSync(archive).size === mib << 20) return;
  mkdirSync(join(root, "local"), { recursive: true, mode: 0o700 });
  const fd = openSync(archive, "w", 0o600);
  const hash = createHash("sha256");
  const buf = Buffer.alloc(8 << 20);
  for (let left = mib << 20; left > 0; left -= buf.length) {
    randomFillSync(buf);
    const c = buf.subarray(0, Math.min(left, buf.length));
    hash.update(c);
    writeSync(fd, c);
  }
  closeSync(fd);
  writeFileSync(`${archive}.sha256`, `${hash.digest("hex")}  ${basename(archive)}\n`);
  writeFileSync(`${archive}.info.json`, JSON.stringify({ recipe: "deis-backup", startedAt: "2026-11-21T10:15:00.000Z" }) + "\n");
  const st = statSync(archive);
  writeFileSync(`${archive}.verified`, JSON.stringify({ ok: true, at: new Date().toISOString(), size: st.size, mtimeMs: st.mtimeMs }) + "\n");
}

function env(): NodeJS.ProcessEnv {
  const e = { ...process.env };
  for (const k of Object.keys(e)) if (k.startsWith("AWS_")) delete e[k];
  return {
    ...e,
    NO_COLOR: "1",
    LIFEBOAT_OFFSITE_S3_ENDPOINT: creds.endpoint,
    LIFEBOAT_OFFSITE_S3_REGION: creds.region,
    LIFEBOAT_OFFSITE_S3_ACCESS_KEY: creds.accessKey,
    LIFEBOAT_OFFSITE_S3_SECRET_KEY: creds.secretKey,
    LIFEBOAT_OFFSITE_SSH_IDENTITY_FILE: lab.LAB_SSH_KEY,
    LIFEBOAT_OFFSITE_SSH_KNOWN_HOSTS: lab.LAB_SSH_KNOWN_HOSTS,
    LIFEBOAT_STATE_DIR: join(root, "state"),
    RCLONE_CONFIG_LAB_TYPE: "s3",
    RCLONE_CONFIG_LAB_PROVIDER: "Ceph",
    RCLONE_CONFIG_LAB_ENDPOINT: creds.endpoint,
    RCLONE_CONFIG_LAB_ACCESS_KEY_ID: creds.accessKey,
    RCLONE_CONFIG_LAB_SECRET_ACCESS_KEY: creds.secretKey,
  };
}

const TOOLS: Record<string, { label: string; argv: () => string[]; reset: () => Promise<void> | void }> = {
  "lifeboat-ssh": {
    label: "`offsite:copy` → ssh://",
    argv: () => [process.execPath, ...typeScriptFlags(process.execPath), join(ROOT, "tasks/run.ts"), "offsite:copy", archive, `ssh://root@${lab.LAB_SSH_HOST}:${lab.LAB_SSH_PORT}${remote}/lifeboat`],
    reset: () => rmSync(join(remote, "lifeboat"), { recursive: true, force: true }),
  },
  rsync: {
    label: "`rsync -e ssh` (same ssh)",
    argv: () => ["rsync", "-e", ["ssh", ...sshOpts].join(" "), archive, `${archive}.sha256`, `${archive}.info.json`, `root@${lab.LAB_SSH_HOST}:${remote}/rsync/`],
    reset: () => {
      rmSync(join(remote, "rsync"), { recursive: true, force: true });
      mkdirSync(join(remote, "rsync"), { recursive: true });
    },
  },
  "lifeboat-s3": {
    label: "`offsite:copy` → s3://",
    argv: () => [process.execPath, ...typeScriptFlags(process.execPath), join(ROOT, "tasks/run.ts"), "offsite:copy", archive, `s3://${bucket}/lifeboat`],
    reset: () => emptyBucket(),
  },
  rclone: {
    label: "`rclone copy` (same gateway)",
    argv: () => ["rclone", "--config", "/dev/null", "copy", "--include", `${basename(archive)}*`, "--exclude", "*.verified", join(root, "local"), `lab:${bucket}/rclone`],
    reset: () => emptyBucket(),
  },
};

async function emptyBucket(): Promise<void> {
  const s3 = s3Client(creds);
  await s3RemoveBucket(s3, bucket, { purge: true }).catch(() => {});
  await s3MakeBucket(s3, bucket);
  s3.destroy();
}

function run(tool: string): number {
  const t = TOOLS[tool];
  const t0 = performance.now();
  const r = spawnSync(t.argv()[0], t.argv().slice(1), { env: env(), cwd: ROOT, stdio: ["ignore", "ignore", "pipe"] });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${tool} exited ${r.status}: ${r.stderr.toString().slice(-2000)}`);
  return ms;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

if (spawnSync("which", ["rsync"]).status !== 0) spawnSync("apt-get", ["install", "-y", "-q", "rsync"], { stdio: "inherit" });
makeArchive();
mkdirSync(remote, { recursive: true });
const times: Record<string, number[]> = Object.fromEntries(Object.keys(TOOLS).map((k) => [k, []]));
const pairs = [["lifeboat-ssh", "rsync"], ["lifeboat-s3", "rclone"]];
for (let round = 0; round < Number(args.rounds); round++) {
  for (const pair of pairs) {
    for (const tool of round % 2 ? [...pair].reverse() : pair) {
      await TOOLS[tool].reset();
      const ms = run(tool);
      times[tool].push(ms);
      process.stderr.write(`round ${round + 1} ${tool}: ${(ms / 1000).toFixed(2)} s\n`);
    }
  }
}
const s3 = s3Client(creds);
await s3RemoveBucket(s3, bucket, { purge: true }).catch(() => {});
s3.destroy();
rmSync(remote, { recursive: true, force: true });
if (!args.keep) rmSync(root, { recursive: true, force: true });

const rows = pairs.map(([ours, theirs]) => {
  const a = median(times[ours]);
  const b = median(times[theirs]);
  return `| ${TOOLS[ours].label} | ${(a / 1000).toFixed(2)} s | ${TOOLS[theirs].label} | ${(b / 1000).toFixed(2)} s | **${(a / b).toFixed(2)}×** | ${(mib / (a / 1000)).toFixed(0)} MiB/s |`;
});
process.stdout.write([
  `${mib} MiB archive, median of ${args.rounds} whole-process runs each, alternated; load ${loadavg().map((x) => x.toFixed(2)).join(" ")}`,
  "",
  "| lifeboat | median | peer | median | lifeboat ÷ peer | lifeboat throughput |",
  "| --- | --- | --- | --- | --- | --- |",
  ...rows,
  "",
  "raw (s): " + Object.entries(times).map(([k, v]) => `${k} ${v.map((x) => (x / 1000).toFixed(2)).join(", ")}`).join("; "),
  "",
].join("\n"));
