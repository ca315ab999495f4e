// The task runner: named tasks with --help, --dry-run and --list.
//
//   npx zx tasks/run.ts --list
//   npx zx tasks/run.ts archive:verify /var/backups/deis-2026-11-21T101500Z.tar.gz
//   make verify ARCHIVE=…   (the Makefile calls these)
import { readdirSync } from "node:fs";
import process from "node:process";
import chalk from "chalk";
import { main, scriptArgs, type SettingSpecs, type Task } from "../lib/internal.ts";
import archive from "./archive.ts";
import lab from "./lab.ts";
import offsite from "./offsite.ts";
import drills from "./drills/mod.ts";
import schedule from "./schedule.ts";
import status from "./status.ts";

export const tasks: Task[] = [...archive, ...offsite, ...lab, ...drills, ...schedule, ...status] as Task[];

const [name, ...rest] = scriptArgs();
if (!name || name === "--list" || name === "--help" || name === "-h") {
  process.stdout.write(`${chalk.bold("lifeboat tasks")}  (npx zx tasks/run.ts NAME [flags]; NAME --help for its settings)\n\n`);
  const w = Math.max(...tasks.map((t) => t.name.length));
  for (const t of tasks) process.stdout.write(`  ${chalk.cyan(t.name.padEnd(w))}  ${t.description}\n`);
  process.exit(name ? 0 : 2);
}
const t = tasks.find((x) => x.name === name);
if (!t) {
  process.stderr.write(`${chalk.red("✖ error:")} no task '${name}'; npx zx tasks/run.ts --list shows them\n`);
  process.exit(2);
}

// A task may be given a recipe's site file (`archive:verify --config deis.site.yaml` reads its
// age: block): the keys of every system's settings table are known there, and ignored.
const recipesDir = new URL("../recipes/", import.meta.url);
const systems = readdirSync(recipesDir).filter((f) => f.endsWith(".site.example.yaml")).map((f) => f.replace(".site.example.yaml", ".ts"));
const siteKnown = await Promise.all(systems.map(async (f) => ((await import(new URL(f, recipesDir).href)) as { settings: SettingSpecs }).settings));

await main({ name: t.name, description: t.description, usage: `npx zx ${t.usage ?? `tasks/run.ts ${t.name}`}`, settings: t.settings, siteKnown: [...siteKnown, ...(t.siteKnown ?? [])], argv: rest }, (ctx) => t.run.call(t, ctx));
