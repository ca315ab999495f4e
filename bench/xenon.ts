// Benchmark: the Xenon recipes' two numbers (results and how to read them: bench/xenon.md).
//
//   node --import=tsx bench/xenon.ts [--documents 2000] [--doc-kib 2] [--size-mib 1024] [--rounds 3] [--keep]
//
// 1. Incremental DIRECTORY: a stand-in host (test/standins/xenon.ts) with --documents documents of
//    about --doc-kib KiB each (random, so nothing compresses); xenon-backup ZIP (the archive's
//    bytes), xenon-backup DIRECTORY --directory.full (bytes shipped to the store), then 1 % of the
//    documents patched and xenon-backup DIRECTORY again (bytes shipped), twice. Each recipe runs
//    as a whole process, as an operator runs it.
// 2. The STREAM receiver: --size-mib of random bytes sent as Xenon's FileUtils.putFile sends them
//    (512 KiB PUTs with `Content-Range: bytes S-E/T`, E exclusive, 10 in flight, the 10th's end
//    starting the next batch) by a separate Node process into receiveRangedPuts (lib/ranged.ts),
//    against `curl -o FILE` fetching the same bytes from a Node server (serveRanged) into a plain
//    file. Both sides: one Node process sends, one receiver writes the file; the receiver also
//    fsyncs and renames (curl does neither). Rounds alternate the order; medians are reported.
import { spawn, spawnSync } from "node:child_process";
import { randomFillSync } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import process from "node:process";
import minimist from "minimist";
import { createContext, receiveRangedPuts, serveRanged, setDefaultContext } from "../lib/internal.ts";
import { exampleDocuments, hostFlags, seedExamples, startXenonHost, stopXenonHosts, xenonRequest, xenonSite, newestArchive } from "../tasks/drills/xenon.ts";
import { runRecipe } from "../tasks/drills/hoss.ts";

const args = minimist(process.argv.slice(2), { boolean: ["keep"], default: { documents: 2000, "doc-kib": 2, "size-mib": 1024, rounds: 3 } });
const ctx = createContext({ name: "bench-xenon", argv: [], env: {}, sink: { write: () => true } });
setDefaultContext(ctx);
const root = "/var/tmp/lifeboat-bench-xenon";
const loads: string[] = [];
const load = () => {
  const l = loadavg().map((x) => x.toFixed(2)).join(" ");
  loads.push(l);
  return l;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const mib = (b: number) => `${(b / 1048576).toFixed(2)} MiB`;
const kib = (b: number) => `${(b / 1024).toFixed(1)} KiB`;

async function incremental(): Promise<string[]> {
  const dir = join(root, "incremental");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const site = xenonSite(dir);
  const host = await startXenonHost("bench-a", { dir: join(dir, "host") });
  const n = Number(args.documents);
  const names = Array.from({ length: n }, (_, i) => `doc-${i}`);
  process.stderr.write(`seeding ${n} documents of ${args["doc-kib"]} KiB (load ${load()})\n`);
  await seedExamples(host.url, names, { blobBytes: Number(args["doc-kib"]) * 1024 });
  const must = async (extra: string[]) => {
    const r = await runRecipe("xenon-backup", [...hostFlags(host), "--config", site, ...extra]);
    if (r.code !== 0) throw new Error(`xenon-backup ${extra.join(" ")}: exit ${r.code}\n${r.output}`);
    return r.ms;
  };
  const runs = () => readdirSync(join(dir, "store", "runs")).sort().map((f) => JSON.parse(readFileSync(join(dir, "store", "runs", f), "utf8")) as { shippedBytes: number; files: { size: number }[]; added: string[] });
  const zipMs = await must([]);
  const zipBytes = statSync(newestArchive(dir)).size;
  const fullMs = await must(["--backup.type=DIRECTORY", "--directory.full"]);
  const rows: string[] = [];
  const full = runs()[0];
  rows.push(`| ZIP archive (xenon-backup, default) | ${mib(zipBytes)} | 1.000 | ${(zipMs / 1000).toFixed(1)} s |`);
  rows.push(`| DIRECTORY full run (shipped) | ${mib(full.shippedBytes)} | ${(full.shippedBytes / zipBytes).toFixed(3)} | ${(fullMs / 1000).toFixed(1)} s |`);
  const changed = Math.max(1, Math.round(n / 100));
  for (let round = 1; round <= 2; round++) {
    for (let i = 0; i < changed; i++) {
      const k = (round * 7919 + i * 97) % n; // spread over the index
      await xenonRequest(`${host.url}/core/examples/${names[k]}`, "PATCH", { name: `changed-${round}-${i}`, counter: round });
    }
    const ms = await must(["--backup.type=DIRECTORY"]);
    const r = runs().at(-1)!;
    const needs = r.files.reduce((a, f) => a + f.size, 0);
    rows.push(`| DIRECTORY incremental after ${changed} documents (1 %) changed, round ${round} (shipped; ${r.added.length} new files, the run needs ${mib(needs)}) | ${kib(r.shippedBytes)} | ${(r.shippedBytes / zipBytes).toFixed(4)} | ${(ms / 1000).toFixed(1)} s |`);
  }
  if (Object.keys(await exampleDocuments(host.url)).length !== n) throw new Error("document count changed");
  await stopXenonHosts();
  return rows;
}

/** A sender like Xenon's FileUtils.putFile, as its own process: 512 KiB PUTs, 10 in flight, batch by batch. */
const SENDER = `
const fs = require("node:fs");
const [file, url] = process.argv.slice(1);
const total = fs.statSync(file).size, CHUNK = 512 * 1024, fd = fs.openSync(file, "r");
(async () => {
  for (let at = 0; at < total;) {
    const batch = [];
    for (let k = 0; k < 10 && at < total; k++, at += CHUNK) {
      const end = Math.min(total, at + CHUNK), buf = Buffer.alloc(end - at);
      fs.readSync(fd, buf, 0, buf.length, at);
      batch.push(fetch(url, { method: "PUT", headers: { "content-range": \`bytes \${at}-\${end}/\${total}\`, "content-type": "application/octet-stream" }, body: buf }).then((r) => { if (r.status !== 200) throw new Error("HTTP " + r.status); }));
    }
    await Promise.all(batch);
  }
})().catch((e) => { console.error(e.message); process.exit(1); });
`;

function run(argv: string[]): Promise<number> {
  return new Promise((ok, no) => {
    const c = spawn(argv[0], argv.slice(1), { stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, NODE_OPTIONS: "" } });
    c.on("error", no);
    c.on("close", (code) => (code === 0 ? ok(0) : no(new Error(`${argv.join(" ")}: exit ${code}`))));
  });
}

async function receiver(): Promise<{ rows: string[]; ratio: number }> {
  const dir = join(root, "stream");
  mkdirSync(dir, { recursive: true });
  const src = join(dir, "source.bin");
  const size = Number(args["size-mib"]) << 20;
  if (!existsSync(src) || statSync(src).size !== size) {
    const fd = openSync(src, "w");
    const buf = Buffer.alloc(8 << 20);
    for (let left = size; left > 0; left -= buf.length) writeSync(fd, randomFillSync(buf).subarray(0, Math.min(left, buf.length)));
    closeSync(fd);
  }
  const times: Record<"lifeboat" | "curl", number[]> = { lifeboat: [], curl: [] };
  const once = {
    lifeboat: async () => {
      const out = join(dir, "received.zip");
      rmSync(out, { force: true });
      const t0 = performance.now();
      const got = await receiveRangedPuts(out, { idleTimeoutMs: 120_000 }, (url) => run([process.execPath, "-e", SENDER, src, url]));
      const ms = performance.now() - t0;
      if (got.bytes !== size) throw new Error(`received ${got.bytes}`);
      rmSync(out);
      return ms;
    },
    curl: async () => {
      const out = join(dir, "curl.bin");
      rmSync(out, { force: true });
      const t0 = performance.now();
      await serveRanged(src, {}, (url) => run(["curl", "-sSf", "-o", out, url]));
      const ms = performance.now() - t0;
      if (statSync(out).size !== size) throw new Error("curl got a short file");
      rmSync(out);
      return ms;
    },
  };
  for (let r = 0; r < Number(args.rounds); r++) {
    const order = r % 2 === 0 ? (["lifeboat", "curl"] as const) : (["curl", "lifeboat"] as const);
    for (const k of order) {
      spawnSync("sync");
      const l = load();
      const ms = await once[k]();
      times[k].push(ms);
      process.stderr.write(`round ${r + 1} ${k}: ${(ms / 1000).toFixed(2)} s (load ${l})\n`);
    }
  }
  const m = { lifeboat: median(times.lifeboat), curl: median(times.curl) };
  const rate = (ms: number) => `${(size / 1048576 / (ms / 1000)).toFixed(0)} MiB/s`;
  const rows = (["lifeboat", "curl"] as const).map((k) => `| ${k === "lifeboat" ? "receiveRangedPuts ← 512 KiB PUTs, 10 in flight (a Node sender process)" : "curl -o FILE ← one GET from serveRanged (a Node server)"} | ${times[k].map((x) => (x / 1000).toFixed(2)).join(", ")} | ${(m[k] / 1000).toFixed(2)} s | ${rate(m[k])} | ${(m[k] / m.curl).toFixed(2)}× |`);
  if (!args.keep) rmSync(src, { force: true });
  return { rows, ratio: m.lifeboat / m.curl };
}

const inc = await incremental();
const rec = await receiver();
const md = [
  "## Results",
  "",
  `Run ${new Date().toISOString()} on ${spawnSync("nproc").stdout.toString().trim()} cores; load averages seen (1, 5, 15 min): ${loads.join("; ")}.`,
  "",
  `### Incremental DIRECTORY against a full ZIP (${args.documents} documents of ${args["doc-kib"]} KiB; 1 % = ${Math.max(1, Math.round(Number(args.documents) / 100))} patched)`,
  "",
  "| backup | bytes | of the ZIP | recipe wall time |",
  "| --- | --- | --- | --- |",
  ...inc,
  "",
  `### STREAM receiver, ${args["size-mib"]} MiB, ${args.rounds} rounds alternated`,
  "",
  "| what | seconds per round | median | throughput | vs curl |",
  "| --- | --- | --- | --- | --- |",
  ...rec.rows,
  "",
].join("\n");
process.stdout.write(md + "\n");
writeFileSync(join(root, "results.md"), md + "\n");
