// Hostile names that a command would read as options: an ssh host or user that starts with "-",
// a MariaDB database named like a mariadb-dump option. No lab: mariadb-dump is a stand-in
// script that records its arguments.
// Run: node test/injection.test.ts
// deno: yes
import { test } from "uvu";
import * as assert from "uvu/assert";
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { mariadbDump, sshCommand, UsageError } from "../lib/mod.ts";
import { cleanupTmp, testContext, tmp } from "./helpers.ts";

test.after(() => cleanupTmp());

test("sshCommand refuses a host or user that ssh would read as an option, or that holds a space or a newline", () => {
  for (const target of [{ host: "-oProxyCommand=touch /tmp/x" }, { host: "-oProxyCommand=id" }, { host: "db1", user: "-oProxyCommand=id" }, { host: "db1\n-oX=y" }, { host: "a b" }, { host: "" }]) {
    assert.throws(() => sshCommand(target, ["true"]), (e: Error) => e instanceof UsageError && /is not a valid (host|user) name/.test(e.message), JSON.stringify(target));
  }
  const argv = sshCommand({ host: "db-1.example", user: "backup" }, ["true"]);
  assert.equal(argv.slice(-3), ["backup@db-1.example", "--", "true"]);
});

test("mariadbDump passes a database named like an option as a name: '--version', '-r FILE'", async () => {
  const { ctx } = testContext();
  const dir = tmp();
  const victim = join(dir, "victim");
  writeFileSync(victim, "precious\n");
  // A stand-in mariadb-dump: records its arguments one per line, and honours -r/--version as the real one would.
  const tool = join(dir, "mariadb-dump");
  writeFileSync(tool, `#!/bin/sh
printf '%s\\n' "$@" > "${dir}/args"
for a in "$@"; do
  case "$a" in --) break ;; --version) echo "mariadb-dump Ver 10.11"; exit 0 ;; -r*) : > "\${a#-r}"; exit 2 ;; esac
done
echo "-- dump of $(tail -n 1 "${dir}/args")"
`);
  chmodSync(tool, 0o755);
  for (const name of ["--version", `-r${victim}`]) {
    const out = join(dir, "out.sql");
    await mariadbDump({ binDir: dir, socket: join(dir, "no.sock") }, name, out, { ctx });
    const args = readFileSync(join(dir, "args"), "utf8").split("\n").slice(0, -1);
    assert.equal(args.slice(-3), ["--databases", "--", name]);
    assert.is(readFileSync(out, "utf8"), `-- dump of ${name}\n`);
    assert.is(readFileSync(victim, "utf8"), "precious\n");
  }
  assert.ok(existsSync(victim));
});

test.run();
