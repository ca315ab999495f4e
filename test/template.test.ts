// The template recipe an operator copies (docs/template/) really works: it answers --help,
// backs up a sample state directory with awkward names and a dump, and restores it.
// deno: no
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { compareTrees } from "../lib/mod.ts";
import { makeSampleTree } from "../tasks/drills/fixtures.ts";
import { cleanupTmp, tmp } from "./helpers.ts";

const TEMPLATE = new URL("../docs/template/", import.meta.url).pathname;

function run(recipe: string, args: string[]) {
  const r = spawnSync(process.execPath, ["--import=tsx", join(TEMPLATE, `${recipe}.ts`), ...args], { encoding: "utf8", env: { ...process.env, CI: "1" } });
  return { code: r.status, out: r.stdout + r.stderr };
}

test.after.each(() => cleanupTmp());

test("the template recipes answer --help with their own settings", () => {
  const b = run("example-backup", ["--help"]);
  assert.is(b.code, 0, b.out);
  assert.match(b.out, /--source\.dir=STRING/);
  assert.not.match(b.out, /--restore\.dir/);
  const r = run("example-restore", ["--help"]);
  assert.is(r.code, 0, r.out);
  assert.match(r.out, /--restore\.dir=STRING/);
});

test("the template backs up a directory and a dump, and restores the directory byte for byte", async () => {
  const root = tmp();
  const source = makeSampleTree(join(root, "source"));
  const common = [`--backups.dir=${join(root, "backups")}`, `--state-dir=${join(root, "state")}`];
  const b = run("example-backup", [...common, `--source.dir=${source}`, "--source.dump=sh,-c,echo the dump"]);
  assert.is(b.code, 0, b.out);
  const archive = readdirSync(join(root, "backups")).find((f) => f.endsWith(".tar.gz"));
  assert.ok(archive, b.out);
  const restored = join(root, "restored");
  const r = run("example-restore", [...common, join(root, "backups", archive!), `--restore.dir=${restored}`, "--yes"]);
  assert.is(r.code, 0, r.out);
  assert.equal(await compareTrees(source, restored), []);
  assert.match(readFileSync(join(root, "backups", `${archive}.info.json`), "utf8"), /example-backup/);
});

test("the template restore refuses without --yes when nobody can answer, and touches nothing", () => {
  const root = tmp();
  const source = makeSampleTree(join(root, "source"));
  const common = [`--backups.dir=${join(root, "backups")}`, `--state-dir=${join(root, "state")}`];
  assert.is(run("example-backup", [...common, `--source.dir=${source}`]).code, 0);
  const archive = join(root, "backups", readdirSync(join(root, "backups")).find((f) => f.endsWith(".tar.gz"))!);
  const r = run("example-restore", [...common, archive, `--restore.dir=${join(root, "restored")}`]);
  assert.is(r.code, 5, r.out);
  assert.match(r.out, /pass --yes/);
});

test.run();
