// hcoop-list: backup-manager's `list`: the days there are, or one day's dumps with full or
// incremental, sizes and the chain (the full's day) each belongs to; locally, or at the remote
// repository with --remote. --json prints the same on stdout.
//
//   npx zx recipes/hcoop-list.ts [DATE] --config hcoop.site.yaml [--remote] [--json]
//
// Runbook (HCoop wiki BackupInfo §1) → here:
//   backup-manager list              → the days: date, dumps (full/incremental), bytes, databases
//   backup-manager list YYYY.MM.DD   → that day's files: kind, bytes, chain, since (clone time)
// Read-only: no steps, no lock.
//
// Settings: recipes/hcoop.ts (flags, env LIFEBOAT_*, --config site file; hcoop.site.example.yaml).
import process from "node:process";
import { formatBytes, main, offsiteOptions, UsageError } from "../lib/mod.ts";
import * as hcoop from "./hcoop.ts";

const settings = {
  ...hcoop.settings,
  remote: { type: "boolean", describe: "list the remote repository (the first offsite.to) instead of backups.dir", default: false },
} as const;

await main({ name: "hcoop-list", description: "list the backup days, or one day's dumps (kind, size, chain), locally or at the remote repository", usage: "npx zx recipes/hcoop-list.ts [DATE] --config hcoop.site.yaml [--remote] [--json]", settings }, async (ctx) => {
  const s = ctx.settings;
  const [date] = ctx.args;
  if (s.remote && !s["offsite.to"].length) throw new UsageError("--remote needs offsite.to (the remote repository)");
  const where = s.remote ? s["offsite.to"][0] : s["backups.dir"];
  const days = s.remote ? await hcoop.remoteDays(where, offsiteOptions(s)) : hcoop.readDays(where);
  const rows = (m: hcoop.DayManifest) => [
    ...Object.entries(m.files).map(([file, e]) => ({ file, volume: e.volume, kind: e.kind, bytes: e.bytes, chain: e.chain, since: e.since, sha256: e.sha256 })),
    ...(m.databases ? [{ file: m.databases.file, volume: "", kind: "databases", bytes: m.databases.bytes, chain: "", since: 0, sha256: m.databases.sha256, databases: [...Object.keys(m.databases.dumps), ...Object.keys(m.databases.mariadb?.dumps ?? {}).map((n) => `mariadb:${n}`)] }] : []),
  ];
  if (date) {
    const m = days.find((d) => d.date === date.replaceAll("-", "."));
    if (!m) throw new UsageError(`no backup of ${date} at ${where}`, `the days there: ${days.map((d) => d.date).join(", ") || "none"}`);
    if (s.json) return void process.stdout.write(JSON.stringify({ where, date: m.date, encryption: m.encryption, files: rows(m), excluded: m.excluded }, null, 2) + "\n");
    for (const r of rows(m)) process.stdout.write(`${r.kind.padEnd(11)} ${formatBytes(r.bytes).padStart(10)}  ${r.file}${r.kind === "incremental" ? `  (chain ${r.chain})` : ""}\n`);
    return;
  }
  const summary = days.map((m) => {
    const files = Object.values(m.files);
    return { date: m.date, full: files.filter((e) => e.kind === "full").length, incremental: files.filter((e) => e.kind === "incremental").length, bytes: files.reduce((a, e) => a + e.bytes, 0) + (m.databases?.bytes ?? 0), databases: !!m.databases, chains: [...new Set(files.map((e) => e.chain))].sort(), encryption: m.encryption };
  });
  if (s.json) return void process.stdout.write(JSON.stringify({ where, days: summary }, null, 2) + "\n");
  if (!summary.length) ctx.log.info(`no backups at ${where}`);
  for (const d of summary) process.stdout.write(`${d.date}  ${String(d.full).padStart(3)} full  ${String(d.incremental).padStart(3)} incremental  ${formatBytes(d.bytes).padStart(10)}  chain ${d.chains.join(",")}${d.databases ? "  + databases" : ""}\n`);
});
