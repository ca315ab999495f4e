// Schedules: systemd units that systemd itself accepts (systemd-analyze verify, no running
// systemd needed), cron lines of the right shape, refusal of names and paths that would break
// either, and the install → list → remove round trip in temp folders, by the library and the task.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import {
  cronFile,
  cronSchedule,
  installSchedule,
  listSchedules,
  removeSchedule,
  systemdUnits,
  typeScriptFlags,
  UsageError,
  type ScheduleSpec,
} from "../lib/internal.ts";
import { cleanupTmp, testContext, tmp } from "./helpers.ts";

const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const MINI = join(REPO, "test/fixtures/mini-recipe.ts");
const RUN = join(REPO, "tasks/run.ts");

test.after.each(() => cleanupTmp());

/** Resolves with the error p rejects with, after checking it; fails when p resolves. */
async function rejects(p: Promise<unknown>, check: RegExp | ((e: Error & { exitCode?: number }) => boolean)): Promise<void> {
  try {
    await p;
  } catch (e) {
    const err = e as Error & { exitCode?: number };
    assert.ok(check instanceof RegExp ? check.test(err.message) : check(err), err.message);
    return;
  }
  assert.unreachable("expected a rejection");
}

function dirs() {
  const root = tmp();
  const d = { root, units: join(root, "units"), cron: join(root, "cron"), site: join(root, "site.yaml") };
  mkdirSync(d.units);
  mkdirSync(d.cron);
  writeFileSync(d.site, `dir: ${join(root, "work")}\n`);
  return d;
}

/** systemd-analyze verify on unit files; returns its exit code and output. */
function verify(dir: string, files: string[], debug = false) {
  const r = spawnSync("systemd-analyze", ["verify", ...files], { cwd: dir, encoding: "utf8", env: { ...process.env, SYSTEMD_LOG_LEVEL: debug ? "debug" : "info" } });
  return { code: r.status, out: r.stdout + r.stderr };
}

/** Splits systemd's display of a command line ("Command Line: /bin/x \"a b\" c") back into words. */
function splitSystemd(line: string): string[] {
  const words: string[] = [];
  let i = 0;
  while (i < line.length) {
    while (line[i] === " ") i++;
    if (i >= line.length) break;
    let w = "";
    if (line[i] === '"') {
      i++;
      while (i < line.length && line[i] !== '"') {
        if (line[i] === "\\") i++;
        w += line[i++];
      }
      i++;
    } else while (i < line.length && line[i] !== " ") w += line[i++];
    words.push(w);
  }
  return words;
}

test("generated units pass systemd-analyze verify, and ExecStart keeps awkward arguments whole", () => {
  const d = dirs();
  const awkward = ["--state-dir", `/srv/state dir/100%/$HOME/"q"/back\\slash`, ";"];
  const spec: ScheduleSpec = { name: "deis-nightly", recipe: MINI, config: join(d.root, "my site.yaml"), onCalendar: "*-*-* 02:30", args: awkward };
  const { service, timer } = systemdUnits(spec);
  writeFileSync(join(d.units, "lifeboat-deis-nightly.service"), service);
  writeFileSync(join(d.units, "lifeboat-deis-nightly.timer"), timer);
  const r = verify(d.units, [join(d.units, "lifeboat-deis-nightly.service"), join(d.units, "lifeboat-deis-nightly.timer")]);
  assert.is(r.code, 0, r.out);
  // only warnings about OUR units count (systemd also lints the installed units it loads, e.g. openafs-client.service)
  const ours = r.out.split("\n").filter((l) => l.trim() && (l.includes(d.units) || l.includes("lifeboat-deis-nightly")));
  assert.equal(ours, [], "no warnings about the generated units");
  const shown = /Command Line: (.*)/.exec(verify(d.units, [join(d.units, "lifeboat-deis-nightly.service")], true).out);
  assert.ok(shown, "systemd printed the parsed command line");
  // systemd turns $$ into $ when it runs the command; the rest is as parsed.
  const argv = splitSystemd(shown![1]).map((w) => w.replace(/\$\$/g, "$"));
  assert.equal(argv, [process.execPath, ...typeScriptFlags(process.execPath), MINI, "--config", join(d.root, "my site.yaml"), "--yes", ...awkward]);
  for (const line of ["Type=oneshot", `WorkingDirectory=${REPO}`, "StandardOutput=journal", "StandardError=journal"]) assert.ok(service.includes(`\n${line}\n`), line);
  for (const line of ["OnCalendar=*-*-* 02:30", "Persistent=true", "RandomizedDelaySec=30min", "Unit=lifeboat-deis-nightly.service", "WantedBy=timers.target"]) {
    assert.ok(timer.includes(`\n${line}\n`), line);
  }
});

test("systemd-analyze verify fails on a unit whose ExecStart binary is missing (the check above can fail)", () => {
  const d = dirs();
  const { service } = systemdUnits({ name: "x", recipe: MINI, config: d.site, node: "/nonexistent/node" });
  writeFileSync(join(d.units, "lifeboat-x.service"), service);
  assert.is.not(verify(d.units, [join(d.units, "lifeboat-x.service")]).code, 0);
});

test("names and paths that would break a unit or cron file are refused", () => {
  for (const name of ["a\nb", "a.b", "a b", "../x", "", "x".repeat(65)]) {
    assert.throws(() => systemdUnits({ name, recipe: MINI, config: "/etc/site.yaml" }), (e: Error) => e instanceof UsageError && /schedule name/.test(e.message), name);
  }
  assert.throws(() => systemdUnits({ name: "ok", recipe: MINI, config: "/etc/si\nte.yaml" }), /newline or control character/);
  assert.throws(() => cronFile({ name: "ok", recipe: MINI, config: "/etc/site.yaml", args: ["a\rb"] }), /newline or control character/);
  assert.throws(() => systemdUnits({ name: "ok", recipe: MINI, config: "site.yaml" }), /must be an absolute path/);
  assert.throws(() => systemdUnits({ name: "ok", recipe: MINI, config: "/etc/site.yaml", user: "root\nExecStartPre=/bin/sh" }), /not a valid user name/);
  assert.throws(() => cronFile({ name: "ok", recipe: MINI, config: "/etc/site.yaml" }, { cronSchedule: "* * * *" }), /not a cron schedule/);
  assert.throws(() => cronFile({ name: "ok", recipe: MINI, config: "/etc/site.yaml", onCalendar: "Mon..Fri 03:00" }), /cron cannot express/);
});

test("cron lines have the shape cron.d wants: five fields, a user, the command from the repo, output to syslog or a file", () => {
  const spec: ScheduleSpec = { name: "hoss", recipe: MINI, config: "/etc/lifeboat/100% hoss.yaml", onCalendar: "02:30", randomizedDelay: "0" };
  const text = cronFile(spec);
  const lines = text.trimEnd().split("\n").filter((l) => !l.startsWith("#"));
  assert.equal(lines.slice(0, 2), ["SHELL=/bin/sh", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]);
  assert.is(lines.length, 3);
  assert.is(
    lines[2],
    `30 2 * * * root cd ${REPO} && ${[process.execPath, ...typeScriptFlags(process.execPath)].join(" ")} ${MINI} --config '/etc/lifeboat/100\\% hoss.yaml' --yes 2>&1 | logger -t lifeboat-hoss`,
  );
  const toFile = cronFile({ ...spec, user: "backup" }, { cronSchedule: "17 3 * * 1-5", logFile: "/var/log/lifeboat-hoss.log" }).trimEnd().split("\n").pop()!;
  assert.match(toFile, /^17 3 \* \* 1-5 backup cd .* --yes >> \/var\/log\/lifeboat-hoss\.log 2>&1$/);
  // The randomized delay becomes a fixed offset inside the window, different per name.
  for (const name of ["a", "b", "deis", "hoss"]) {
    const [m, h, ...rest] = cronSchedule("daily", "30min", name).split(" ");
    assert.ok(Number(h) === 0 && Number(m) < 30, `${name}: ${m} ${h}`);
    assert.equal(rest, ["*", "*", "*"]);
  }
  assert.is(cronSchedule("weekly", "0", "x"), "0 0 * * 1");
  assert.is(cronSchedule("hourly", "0", "x"), "0 * * * *");
  assert.is(cronSchedule("*-*-* 23:50", "20min", "a").split(" ").slice(2).join(" "), "* * *", "wraps within the day");
});

test("install → list → remove round trip in temp folders: systemd units, then a cron file", async () => {
  const d = dirs();
  const { ctx, logs } = testContext({ argv: ["--yes"] });
  const spec = { name: "mini", recipe: MINI, config: d.site };
  const r = await installSchedule(spec, { unitDir: d.units, cronDir: d.cron, ctx });
  assert.equal(r.files.sort(), [join(d.units, "lifeboat-mini.service"), join(d.units, "lifeboat-mini.timer")]);
  assert.is(r.enabled, false);
  assert.match(logs(), /systemctl skipped; where the units are used, run: systemctl daemon-reload && systemctl enable --now lifeboat-mini\.timer/);
  assert.is(statSync(r.files[0]).mode & 0o777, 0o644);
  assert.is(verify(d.units, r.files).code, 0);
  assert.equal(readdirSync(d.units).sort(), ["lifeboat-mini.service", "lifeboat-mini.timer"], "no partial file left");

  await rejects(installSchedule(spec, { unitDir: d.units, cronDir: d.cron, cron: true, ctx }), /a systemd schedule named 'mini' exists already/);
  await installSchedule({ ...spec, name: "mini-cron", onCalendar: "03:15", randomizedDelay: "0" }, { unitDir: d.units, cronDir: d.cron, cron: true, ctx });

  const listed = listSchedules({ unitDir: d.units, cronDir: d.cron });
  assert.equal(listed.map((e) => [e.name, e.kind, e.recipe, e.config, e.onCalendar, e.cronSchedule]), [
    ["mini", "systemd", MINI, d.site, "daily", undefined],
    ["mini-cron", "cron", MINI, d.site, "03:15", "15 3 * * *"],
  ]);
  assert.equal(listed[0].command.slice(-3), ["--config", d.site, "--yes"]);

  assert.equal(await removeSchedule("mini", { unitDir: d.units, cronDir: d.cron, ctx }), [join(d.units, "lifeboat-mini.timer"), join(d.units, "lifeboat-mini.service")]);
  await removeSchedule("mini-cron", { unitDir: d.units, cronDir: d.cron, ctx });
  assert.equal(readdirSync(d.units), []);
  assert.equal(readdirSync(d.cron), []);
  await rejects(removeSchedule("mini", { unitDir: d.units, cronDir: d.cron, ctx }), /no schedule named 'mini'/);
});

test("files lifeboat did not write are not listed, and not removed", () => {
  const d = dirs();
  writeFileSync(join(d.units, "lifeboat-other.timer"), "[Timer]\nOnCalendar=daily\n");
  writeFileSync(join(d.cron, "lifeboat-other"), "0 0 * * * root true\n");
  assert.equal(listSchedules({ unitDir: d.units, cronDir: d.cron }), []);
});

test("dry-run prints the units and the commands and writes nothing", async () => {
  const d = dirs();
  const { ctx, logs } = testContext({ argv: ["--dry-run"] });
  await installSchedule({ name: "mini", recipe: MINI, config: d.site }, { unitDir: d.units, cronDir: d.cron, ctx, systemctl: true });
  await installSchedule({ name: "mini2", recipe: MINI, config: d.site }, { unitDir: d.units, cronDir: d.cron, ctx, cron: true });
  assert.equal(readdirSync(d.units), []);
  assert.equal(readdirSync(d.cron), []);
  const out = logs();
  assert.match(out, /\[dry-run\] would write .*lifeboat-mini\.service \(mode 0644\):/);
  assert.match(out, /    ExecStart=.*mini-recipe\.ts --config/);
  assert.match(out, /\[dry-run\] systemctl daemon-reload/);
  assert.match(out, /\[dry-run\] systemctl enable --now lifeboat-mini\.timer/);
  assert.match(out, /\[dry-run\] would write .*lifeboat-mini2 \(mode 0644\):/);
});

test("remove is refused without --yes when nobody can answer, and leaves the files", async () => {
  const d = dirs();
  const { ctx } = testContext({ argv: ["--yes"] });
  await installSchedule({ name: "mini", recipe: MINI, config: d.site }, { unitDir: d.units, cronDir: d.cron, ctx });
  const { ctx: noYes } = testContext({ argv: [] });
  await rejects(removeSchedule("mini", { unitDir: d.units, cronDir: d.cron, ctx: noYes }), (e: Error & { exitCode?: number }) => e.exitCode === 5);
  assert.is(readdirSync(d.units).length, 2);
});

test("the tasks: schedule:install checks the site file with the recipe, schedule:list --json, schedule:remove --yes", () => {
  const d = dirs();
  const run = (...args: string[]) => {
    const r = spawnSync("node", ["--import=tsx", RUN, ...args, `--unit-dir=${d.units}`, `--cron-dir=${d.cron}`], { encoding: "utf8", env: { ...process.env, CI: "1" } });
    return { code: r.status, out: r.stdout, err: r.stderr };
  };
  const bad = join(d.root, "bad.yaml");
  writeFileSync(bad, "dir: /tmp/x\nno-such-setting: 1\n");
  const refused = run("schedule:install", MINI, "--config", bad);
  assert.is(refused.code, 2, refused.err);
  assert.match(refused.err, /does not accept the site file/);
  assert.equal(readdirSync(d.units), []);

  const ok = run("schedule:install", MINI, "--config", d.site, "--on-calendar", "Mon..Fri 03:00", "--randomized-delay", "1h");
  assert.is(ok.code, 0, ok.err);
  assert.ok(existsSync(join(d.units, "lifeboat-mini-recipe.timer")), "named after the recipe");
  assert.match(readFileSync(join(d.units, "lifeboat-mini-recipe.timer"), "utf8"), /\nOnCalendar=Mon\.\.Fri 03:00\nPersistent=true\nRandomizedDelaySec=1h\n/);
  const badCal = run("schedule:install", MINI, "--config", d.site, "--name", "x", "--on-calendar", "nightly");
  assert.is(badCal.code, 2);
  assert.match(badCal.err, /systemd does not accept 'nightly'/);

  const listed = run("schedule:list", "--json");
  assert.is(listed.code, 0, listed.err);
  assert.equal(JSON.parse(listed.out).map((e: { name: string; kind: string }) => `${e.name} ${e.kind}`), ["mini-recipe systemd"]);
  assert.is(run("schedule:remove", "mini-recipe", "--yes").code, 0);
  assert.equal(readdirSync(d.units), []);
});

test.run();
