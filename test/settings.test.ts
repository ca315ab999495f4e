// Settings: flags win over env, env over the site file, the site file over defaults;
// every bad value is named with where it came from.
// deno: yes
import { test } from "uvu";
import * as assert from "uvu/assert";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { helpText, parseSettings, Secrets, UsageError, type SettingSpecs } from "../lib/internal.ts";
import { cleanupTmp, tmp } from "./helpers.ts";
import { targetKey } from "../lib/recipe.ts";
import { withoutCredentials } from "../lib/mod.ts";
import { restoreStagingName } from "../recipes/xenon.ts";

const specs = {
  "gateway.endpoint": { describe: "S3 endpoint", default: "http://127.0.0.1:7480" },
  "gateway.secret-key": { describe: "S3 secret", secret: true },
  buckets: { type: "list", describe: "buckets", default: ["db_wal", "registry"] },
  parallel: { type: "number", describe: "transfers", default: 16 },
  mode: { describe: "mode", choices: ["full", "incremental"], default: "full" },
} as const;

function site(text: string): string {
  const f = join(tmp(), "site.yaml");
  writeFileSync(f, text);
  return f;
}

const parse = (argv: string[], env: Record<string, string> = {}, siteKnown?: SettingSpecs[]) =>
  parseSettings(specs, { argv, env, secrets: new Secrets(), siteKnown });

function usage(fn: () => unknown, re: RegExp) {
  try {
    fn();
  } catch (e) {
    assert.instance(e, UsageError);
    assert.match((e as Error).message, re);
    return;
  }
  assert.unreachable("expected a UsageError");
}

test.after.each(() => cleanupTmp());

test("defaults apply when nothing sets a value", () => {
  const r = parse([]);
  assert.is(r.values["gateway.endpoint"], "http://127.0.0.1:7480");
  assert.equal(r.values.buckets, ["db_wal", "registry"]);
  assert.is(r.values.parallel, 16);
  assert.is(r.sources.parallel, "default");
});

test("flags win over env, env over the site file, the site file over defaults", () => {
  const f = site("gateway:\n  endpoint: http://site:1\nparallel: 4\nbuckets: [a, b]\n");
  const onlySite = parse([`--config=${f}`]);
  assert.is(onlySite.values["gateway.endpoint"], "http://site:1");
  assert.is(onlySite.values.parallel, 4);
  assert.equal(onlySite.values.buckets, ["a", "b"]);
  const env = parse([`--config=${f}`], { LIFEBOAT_GATEWAY_ENDPOINT: "http://env:2" });
  assert.is(env.values["gateway.endpoint"], "http://env:2");
  assert.is(env.sources["gateway.endpoint"], "env LIFEBOAT_GATEWAY_ENDPOINT");
  const flag = parse([`--config=${f}`, "--gateway.endpoint=http://flag:3", "--buckets", "x,y"], { LIFEBOAT_GATEWAY_ENDPOINT: "http://env:2" });
  assert.is(flag.values["gateway.endpoint"], "http://flag:3");
  assert.equal(flag.values.buckets, ["x", "y"]);
});

test("the site file may be named by LIFEBOAT_CONFIG", () => {
  const f = site("parallel: 7\n");
  assert.is(parse([], { LIFEBOAT_CONFIG: f }).values.parallel, 7);
});

test("an unknown site key is refused, naming the key and the file; keys of another table it is shared with are accepted", () => {
  const f = site("gatway:\n  endpoint: typo\n");
  usage(() => parse([`--config=${f}`]), /unknown setting 'gatway.endpoint' in site file .*site\.yaml/);
  const g = site("restore:\n  platform: true\nparallel: 2\n");
  const other = { "restore.platform": { type: "boolean", describe: "x" } } as const;
  assert.is(parse([`--config=${g}`], {}, [other]).values.parallel, 2);
  usage(() => parse([`--config=${site("restore:\n  platfrom: true\n")}`], {}, [other]), /unknown setting 'restore.platfrom'/);
});

test("a setting read by another recipe of the system: not required here, hidden from --help, refused as a flag, fine in the site file", () => {
  const shared = {
    dir: { describe: "shared" },
    "restore.target": { describe: "restore only", required: true, usedBy: ["demo-restore"] },
  } as const satisfies SettingSpecs;
  const p = (reader: string, argv: string[]) => parseSettings(shared, { argv, env: {}, secrets: new Secrets(), reader });
  assert.is(p("demo-backup", []).values.dir, "", "restore.target is not required of the backup");
  usage(() => p("demo-restore", []), /setting 'restore.target' is required/);
  usage(() => p("demo-backup", ["--restore.target=x"]), /'--restore.target' is a setting of demo-restore, not of demo-backup/);
  assert.is(p("demo-backup", [`--config=${site("restore:\n  target: /x\n")}`]).values["restore.target"], "/x");
  assert.not.match(helpText({ name: "demo-backup", usage: "", description: "", settings: shared }), /restore\.target/);
  assert.match(helpText({ name: "demo-restore", usage: "", description: "", settings: shared }), /--restore\.target=STRING/);
});

test("ill-typed values name the key and their source", () => {
  usage(() => parse(["--parallel=lots"]), /setting 'parallel' from --parallel: expected a number, got "lots"/);
  const f = site("parallel: [1, 2]\n");
  usage(() => parse([`--config=${f}`]), /setting 'parallel' from site file .*: expected a number/);
  usage(() => parse(["--mode=sometimes"]), /expected one of full\|incremental/);
  usage(() => parse([`--config=${site("a: [unclosed\n")}`]), /not valid YAML/);
});

test("a site file that is not valid YAML is refused without showing the line: it may hold a secret", () => {
  const cases = [
    ["gateway:\n  secret-key: @Zx9pQ\n", /BAD_SCALAR_START at line 2, column 15 \(key secret-key\)/],
    ["gateway:\n  password: *Zx9pQ\n", /UNRESOLVED_ALIAS/],
    ["password: 'Zx9pQ\n", /MISSING_CHAR at line 2, column 1/],
  ] as const;
  for (const [text, says] of cases) {
    try {
      parse([`--config=${site(text)}`]);
      assert.unreachable("parsed");
    } catch (e) {
      assert.instance(e, UsageError);
      assert.not.match((e as Error).message, /Zx9pQ/);
      assert.match((e as Error).message, says);
    }
  }
});

test("a secret comes from env, a file, a command or the site file, never argv, and is registered", () => {
  const secrets = new Secrets();
  const dir = tmp();
  writeFileSync(join(dir, "key"), "from-file-123\n", { mode: 0o600 });
  const r = parseSettings(specs, { argv: [`--gateway.secret-key-file=${join(dir, "key")}`], env: {}, secrets });
  assert.is(r.values["gateway.secret-key"], "from-file-123");
  assert.is(secrets.redact("key=from-file-123"), "key=***");
  const c = parseSettings(specs, { argv: ["--gateway.secret-key-command=echo from-command-456"], env: {}, secrets: new Secrets() });
  assert.is(c.values["gateway.secret-key"], "from-command-456");
  const s = parseSettings(specs, { argv: [`--config=${site("gateway:\n  secret-key: from-site-789\n")}`], env: {}, secrets: new Secrets() });
  assert.is(s.values["gateway.secret-key"], "from-site-789");
  usage(() => parse(["--gateway.secret-key=on-argv"]), /cannot be given on the command line/);
});

test("Secrets masks every registered value and passwords in URLs", () => {
  const s = new Secrets();
  s.add("p@ss w0rd");
  assert.is(s.redact("login with p@ss w0rd now"), "login with *** now");
  assert.is(s.redact("postgres://app:letmein@db:5432/x"), "postgres://app:***@db:5432/x");
  // a password written with an unencoded "@" is masked whole, up to the host
  assert.is(s.redact("fetch http://admin:p@ss@xenon:8000/core failed"), "fetch http://admin:***@xenon:8000/core failed");
  assert.is(s.redact("http://admin:s3cr#t@xenon:8000 and http://a:b?c@h/x"), "http://admin:***@xenon:8000 and http://a:***@h/x");
  assert.is(s.redact('{"url":"http://u:p@h","email":"a@b.c"}'), '{"url":"http://u:***@h","email":"a@b.c"}');
});

test("withoutCredentials takes a URL's user and password out of what is kept: lock and journal names, Xenon's staging folders", () => {
  assert.is(withoutCredentials("http://admin:hunter2@xenon:8000"), "http://xenon:8000");
  assert.is(withoutCredentials("see http://admin:p@ss@x:1/a?b=c@d and ssh://u@h/dir"), "see http://x:1/a?b=c@d and ssh://h/dir");
  assert.is(withoutCredentials("http://admin:s3cr#t@xenon:8000"), "http://xenon:8000");
  assert.is(withoutCredentials('{"url":"http://u:p@h","email":"a@b.c"}'), '{"url":"http://h","email":"a@b.c"}');
  assert.is(withoutCredentials("/var/backups/lifeboat"), "/var/backups/lifeboat");
  assert.not.match(targetKey("xenon-restore", withoutCredentials("http://admin:hunter2@x:8000")), /hunter2|admin/);
  assert.not.match(restoreStagingName("http://admin:hunter2@x:8000"), /hunter2|admin/);
  assert.is(restoreStagingName("http://admin:hunter2@x:8000"), restoreStagingName("http://x:8000"));
});

test.run();
