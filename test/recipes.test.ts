// Every recipe, without a lab: its system's example site file loads against the system's one
// settings table for each of its recipes, and every recipe answers --help.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createContext, Secrets, type SettingSpecs } from "../lib/internal.ts";
import { parseSettings } from "../lib/settings.ts";

const RECIPES = new URL("../recipes/", import.meta.url).pathname;
const files = readdirSync(RECIPES);
const systems = files.filter((f) => f.endsWith(".site.example.yaml")).map((f) => f.replace(".site.example.yaml", ""));
const recipesOf = (system: string) => files.filter((f) => f.startsWith(`${system}-`) && f.endsWith(".ts")).map((f) => f.replace(/\.ts$/, ""));

test("every system has an example site file, a settings module and recipes", () => {
  assert.ok(systems.length >= 2, `systems: ${systems.join(", ")}`);
  for (const sys of systems) {
    assert.ok(files.includes(`${sys}.ts`), `recipes/${sys}.ts holds ${sys}'s settings`);
    assert.ok(recipesOf(sys).length >= 2, `${sys} has a backup and a restore recipe`);
  }
});

for (const sys of systems) {
  test(`${sys}.site.example.yaml loads against ${sys}'s settings for each of its recipes`, async () => {
    const { settings } = (await import(join(RECIPES, `${sys}.ts`))) as { settings: SettingSpecs };
    for (const name of recipesOf(sys)) {
      const parsed = parseSettings(settings, { argv: ["--config", join(RECIPES, `${sys}.site.example.yaml`)], env: {}, secrets: new Secrets(), reader: name });
      const fromSite = Object.entries(parsed.sources).filter(([, src]) => src.startsWith("site file")).map(([k]) => k);
      assert.ok(fromSite.length >= 3, `${name}: the example sets settings (${fromSite.join(", ")})`);
    }
  });

  test(`${sys}: a flag of another recipe's setting is refused naming the recipe that reads it`, async () => {
    const { settings } = (await import(join(RECIPES, `${sys}.ts`))) as { settings: SettingSpecs };
    const [key, spec] = Object.entries(settings).find(([, s]) => s.usedBy?.length && s.type !== "boolean" && !s.secret) ?? [];
    if (!key) return;
    const other = recipesOf(sys).find((r) => !spec!.usedBy!.includes(r))!;
    assert.throws(
      () => createContext({ name: other, settings, argv: [`--${key}=x`], env: {} }),
      (e: Error) => e.message.includes(`is a setting of ${spec!.usedBy!.join(", ")}, not of ${other}`),
    );
  });

  for (const name of recipesOf(sys)) {
    test(`recipes/${name}.ts --help exits 0 and shows only its own settings`, async () => {
      const { settings } = (await import(join(RECIPES, `${sys}.ts`))) as { settings: SettingSpecs };
      const r = spawnSync(process.execPath, ["--import=tsx", join(RECIPES, `${name}.ts`), "--help"], { encoding: "utf8", env: { ...process.env, CI: "1" } });
      assert.is(r.status, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^${name} — `));
      for (const [key, spec] of Object.entries(settings)) {
        const shown = r.stdout.includes(`--${key}`);
        assert.is(shown, !spec.usedBy || spec.usedBy.includes(name), `--help of ${name} ${shown ? "shows" : "hides"} ${key}`);
      }
    });
  }
}

test("a task reads a recipe's site file: its age block is used, the system's other keys are accepted, a typo is not", () => {
  const dir = mkdtempSync(join(tmpdir(), "lifeboat-site-"));
  try {
    const site = join(dir, "site.yaml");
    writeFileSync(site, readFileSync(join(RECIPES, "deis.site.example.yaml"), "utf8") + "age:\n  identity-file: /nonexistent/key\n");
    const task = (args: string[]) => spawnSync(process.execPath, ["--import=tsx", new URL("../tasks/run.ts", import.meta.url).pathname, ...args], { encoding: "utf8", env: { ...process.env, CI: "1" } });
    const listed = task(["archive:list", dir, "--config", site]);
    assert.is(listed.status, 0, listed.stderr);
    const verify = task(["archive:verify", join(dir, "x.tar.gz"), "--config", site]);
    assert.match(verify.stderr, /\/nonexistent\/key/, "archive:verify took age.identity-file from the site file");
    writeFileSync(site, "gatway:\n  endpoint: x\n");
    const typo = task(["archive:list", dir, "--config", site]);
    assert.is(typo.status, 2);
    assert.match(typo.stderr, /unknown setting 'gatway.endpoint'/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("hoss-backup refuses a database name that cannot be its dump's file name, before anything runs", () => {
  for (const bad of ["../etc", "a/b", "-x"]) {
    const r = spawnSync(process.execPath, ["--import=tsx", join(RECIPES, "hoss-backup.ts"), `--db.databases=hoss_core,${bad}`, "--dry-run"], { encoding: "utf8", env: { ...process.env, CI: "1" } });
    assert.is(r.status, 2, r.stderr);
    assert.match(r.stderr, `db.databases: ${JSON.stringify(bad)} cannot be a dump's file name`);
  }
});

test("xenon recipes refuse a relative staging or workspace folder: Xenon is given it as a file: URI, which would resolve it here", () => {
  for (const [name, flag] of [["xenon-backup", "--staging=rel/dir"], ["xenon-backup", "--directory.workspace=ws"], ["xenon-restore", "--host-staging=x"]] as const) {
    const args = name === "xenon-restore" ? ["/nonexistent/xenon-backup.tar.gz", flag, "--ssh.host=h"] : [flag, "--dry-run"];
    const r = spawnSync(process.execPath, ["--import=tsx", join(RECIPES, `${name}.ts`), ...args, "--dry-run"], { encoding: "utf8", env: { ...process.env, CI: "1" } });
    assert.is(r.status, 2, `${name} ${flag}: ${r.stderr}`);
    assert.match(r.stderr, /must be an absolute path/);
  }
});

test.run();
