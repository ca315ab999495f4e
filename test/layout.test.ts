// The repository's layout rules: production code (lib/, recipes/, tasks/, bench/) imports nothing
// from test/ (it may execute scripts there, never import them); `make help` lists only real
// targets and every phony target; every drill task has its `make drill-X`. No lab needed.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import drills from "../tasks/drills/mod.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const TEST_DIR = join(ROOT, "test");

/** Every import specifier in a module's text: static, re-export, side-effect and dynamic. */
function importSpecifiers(text: string): string[] {
  const out: string[] = [];
  const patterns = [
    /^\s*(?:import|export)\s[^;]*?\bfrom\s*["']([^"']+)["']/gms,
    /^\s*import\s*["']([^"']+)["']/gm,
    /\bimport\(\s*["']([^"']+)["']\s*\)/g,
  ];
  for (const re of patterns) for (const m of text.matchAll(re)) out.push(m[1]);
  return out;
}

/** The specifiers of `file` that resolve into test/. */
function importsIntoTest(file: string, text: string): string[] {
  return importSpecifiers(text).filter((s) => {
    const path = s.startsWith(".") ? resolve(dirname(file), s) : s.startsWith("file://") ? fileURLToPath(s) : s.startsWith("/") ? s : null;
    return path !== null && (path === TEST_DIR || path.startsWith(TEST_DIR + "/"));
  });
}

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (name === "node_modules" || name.startsWith(".")) continue;
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (/\.(m?ts|m?js)$/.test(name)) out.push(p);
  }
  return out;
}

test("the import scan finds an import into test/ in every form (so the next test can fail)", () => {
  const file = join(ROOT, "tasks/drills/x.ts");
  const text = [
    `import { needLab } from "../../test/lab/lab.ts";`,
    `import {\n  a,\n  b,\n} from "../../test/drills/deis.ts";`,
    `export { c } from '../../test/fixtures/tree.ts';`,
    `import "../../test/helpers.ts";`,
    `const m = await import("../../test/standins/opensearch.ts");`,
    `import { main } from "../../lib/internal.ts";`,
    `const script = "test/lab/hoss.sh"; // executed, not imported`,
  ].join("\n");
  assert.equal(importsIntoTest(file, text), ["../../test/lab/lab.ts", "../../test/drills/deis.ts", "../../test/fixtures/tree.ts", "../../test/helpers.ts", "../../test/standins/opensearch.ts"]);
});

test("no file outside test/ imports from test/", () => {
  const found: string[] = [];
  let scanned = 0;
  for (const top of ["lib", "recipes", "tasks", "bench"]) {
    for (const f of sources(join(ROOT, top))) {
      scanned++;
      for (const s of importsIntoTest(f, readFileSync(f, "utf8"))) found.push(`${relative(ROOT, f)} imports ${s}`);
    }
  }
  assert.ok(scanned > 20, `only ${scanned} files scanned`);
  assert.equal(found, [], `production code must not import test/ (move the module to tasks/drills/ or lib/):\n${found.join("\n")}`);
});

const makefile = readFileSync(join(ROOT, "Makefile"), "utf8");
const rules = new Set([...makefile.matchAll(/^([A-Za-z0-9_.-]+)\s*:(?!=)/gm)].map((m) => m[1]));

function helpTargets(): string[] {
  const r = spawnSync("make", ["-s", "--no-print-directory", "help"], { cwd: ROOT, encoding: "utf8" });
  assert.is(r.status, 0, r.stderr);
  return [...r.stdout.matchAll(/^\s*make\s+([A-Za-z0-9_.-]+)/gm)].map((m) => m[1]);
}

test("recipes reach lib/ only through lib/mod.ts (the recipe-author surface), and lib/ imports no recipe", () => {
  const bad: string[] = [];
  for (const dir of ["recipes", "docs/template"]) {
    for (const file of sources(join(ROOT, dir))) {
      for (const spec of importSpecifiers(readFileSync(file, "utf8"))) {
        const path = spec.startsWith(".") ? resolve(dirname(file), spec) : null;
        if (path && path.startsWith(join(ROOT, "lib") + "/") && path !== join(ROOT, "lib/mod.ts")) bad.push(`${relative(ROOT, file)} imports ${spec}`);
      }
    }
  }
  for (const file of sources(join(ROOT, "lib"))) {
    for (const spec of importSpecifiers(readFileSync(file, "utf8"))) {
      if (spec.includes("/recipes/") || spec.includes("/tasks/")) bad.push(`${relative(ROOT, file)} imports ${spec}`);
    }
  }
  assert.equal(bad, []);
});

test("importing lib/ loads neither undici nor node:http's ES facade (a process that syncs S3 starts 20-40 ms sooner)", () => {
  // node:http as an ES import builds a facade that reads every export; its WebSocket getter
  // loads undici (Node 22 and later). lib/ takes it through builtinModule (lib/lazy.ts).
  const probe = `for (const m of ["./lib/mod.ts", "./lib/s3.ts", "./lib/ranged.ts"]) await import(m);
    const s3 = await import("./lib/s3.ts");
    s3.s3Client({ endpoint: "http://127.0.0.1:9", accessKey: "a", secretKey: "b" }).destroy();
    console.log(JSON.stringify(process.moduleLoadList.filter((m) => /undici|NativeModule https?$/.test(m))));`;
  const r = spawnSync(process.execPath, [...process.execArgv, "--input-type=module", "-e", probe], { cwd: ROOT, encoding: "utf8" });
  assert.is(r.status, 0, r.stderr);
  const loaded: string[] = JSON.parse(r.stdout.trim().split("\n").pop()!);
  assert.ok(loaded.includes("NativeModule http"), `node:http was not loaded at all: ${r.stdout}`); // the probe reached the module
  assert.equal(loaded.filter((m) => m.includes("undici")), []);
});

test("every target make help lists is a rule in the Makefile", () => {
  const listed = helpTargets();
  assert.ok(listed.includes("demo") && listed.includes("test"), `make help lists: ${listed.join(" ")}`);
  assert.equal(listed.filter((t) => !rules.has(t)), [], "make help lists targets the Makefile does not have");
});

test("make help lists every phony target", () => {
  const phony = (/^\.PHONY:((?:.*\\\n)*.*)$/m.exec(makefile)?.[1] ?? "").replace(/\\\n/g, " ").split(/\s+/).filter(Boolean);
  assert.ok(phony.length > 5, `.PHONY: ${phony.join(" ")}`);
  const listed = new Set(helpTargets());
  assert.equal(phony.filter((t) => t !== "help" && !listed.has(t)), [], "phony targets make help does not list");
});

test("every drill task has a make drill-X target that runs it", () => {
  assert.ok(drills.length >= 3);
  for (const d of drills) {
    const target = d.name.replace(":", "-");
    assert.ok(rules.has(target), `no Makefile target ${target} for task ${d.name}`);
    assert.match(makefile, new RegExp(`^${target}:.*\\n\\t\\$\\(RUN\\) ${d.name}\\b`, "m"), `${target} does not run ${d.name}`);
  }
});

test.run();
