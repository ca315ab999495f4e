// Benchmark: the LambdaStack backup's fan-out (recipes/lambdastack-backup.ts) on the lab's hosts
// (lab piece lshosts). The five components are spread over three hosts (inventory A of the drill)
// and seeded as the drill seeds them, plus a larger Grafana database and more PostgreSQL rows so
// each host has seconds of work. Three kinds of run, each a whole process as an operator runs it:
//   fan-out      every component, concurrency 5 (one item per component host, all at once)
//   sequential   every component, concurrency 1 (one after another, as LambdaStack's engine does)
//   single X     one component alone (-c X): the slowest of these is the floor for the fan-out
// Results: bench/lambdastack.md. Rounds alternate the order; medians are reported.
//
//   node --import=tsx bench/lambdastack.ts [--rounds 3] [--grafana-mib 64] [--rows 400000] [--messages]
// --messages: rabbitmq.messages on (the node is stopped and started for the mnesia copy: seconds of
// waiting on the host, not of work here).
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import minimist from "minimist";
import { LAYOUT_A, onHost, provision, rmHosts, seed, upHosts, writeInventory, writeSite } from "../tasks/drills/lambdastack.ts";
import { runRecipe } from "../tasks/drills/hoss.ts";

const args = minimist(process.argv.slice(2), { boolean: ["messages"], default: { rounds: 3, "grafana-mib": 64, rows: 400000 } });
const COMPONENTS = ["load_balancer", "logging", "monitoring", "postgresql", "rabbitmq"];
const dir = mkdtempSync(join(tmpdir(), "lifeboat-bench-lambdastack-"));
const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b), m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

try {
  rmHosts(Object.keys(LAYOUT_A));
  upHosts(Object.keys(LAYOUT_A));
  provision(LAYOUT_A);
  seed(LAYOUT_A);
  onHost("ls-1", `head -c ${Number(args["grafana-mib"]) << 20} /dev/urandom > /var/lib/grafana/grafana.db`);
  onHost("ls-2", `runuser -u postgres -- psql -q -d shop -c "INSERT INTO orders SELECT i, md5(i::text), i % 13, now() FROM generate_series(10000, ${9999 + Number(args.rows)}) i"`);
  const build = writeInventory(join(dir, "build"), LAYOUT_A);
  const site = writeSite(join(dir, "backup.yml"), dir, "backup", { rabbitmq: { messages: !!args.messages } });
  const times: Record<string, number[]> = {};
  const once = async (label: string, extra: string[]) => {
    onHost("ls-1", "rm -rf /lsbackup/mounted");
    const r = await runRecipe("lambdastack-backup", ["-b", build, "-f", site, ...extra], {});
    if (r.code !== 0) throw new Error(`${label}: exit ${r.code}\n${r.output.slice(-3000)}`);
    (times[label] ??= []).push(r.ms);
    process.stderr.write(`${label.padEnd(24)} ${(r.ms / 1000).toFixed(1)} s\n`);
  };
  for (let round = 0; round < Number(args.rounds); round++) {
    const runs: [string, string[]][] = [["fan-out (concurrency 5)", ["--concurrency=5"]], ["sequential (concurrency 1)", ["--concurrency=1"]], ...COMPONENTS.map((c): [string, string[]] => [`single ${c}`, ["-c", c]])];
    for (const [label, extra] of round % 2 ? runs.reverse() : runs) await once(label, extra);
  }
  const med = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)]));
  const singles = COMPONENTS.map((c) => med[`single ${c}`]);
  const slowest = Math.max(...singles);
  const fan = med["fan-out (concurrency 5)"], seq = med["sequential (concurrency 1)"];
  console.log(`| run | median s | runs |\n| --- | --- | --- |`);
  for (const [k, v] of Object.entries(times)) console.log(`| ${k} | ${(med[k] / 1000).toFixed(1)} | ${v.map((x) => (x / 1000).toFixed(1)).join(", ")} |`);
  console.log(`\nfan-out / slowest single: ${(fan / slowest).toFixed(2)}×; fan-out / sequential: ${(fan / seq).toFixed(2)}×; sum of singles ${(singles.reduce((a, b) => a + b, 0) / 1000).toFixed(1)} s`);
  console.log(`settings: --rounds ${args.rounds} --grafana-mib ${args["grafana-mib"]} --rows ${args.rows}${args.messages ? " --messages" : ""}`);
  console.log(`load average at the end: ${loadavg().map((x) => x.toFixed(2)).join(" ")}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
