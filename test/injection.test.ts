// Hostile names that a command would read as options: an ssh host or user that starts with "-",
// a MariaDB database named like a mariadb-dump option; and a PostgreSQL role name that holds a
// line a restore would otherwise drop. No lab: mariadb-dump and psql are stand-in scripts.
// Run: node test/injection.test.ts
// deno: yes
import { test } from "uvu";
import * as assert from "uvu/assert";
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { mariadbDump, psqlFile, sshCommand, UsageError } from "../lib/mod.ts";
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

test("psqlFile skips only the real CREATE ROLE of an existing role: one inside a quoted role name (a newline in it) reaches psql whole", async () => {
  const { ctx } = testContext();
  const dir = tmp();
  writeFileSync(join(dir, "psql"), `#!/bin/sh\ncat > "${dir}/loaded.sql"\n`);
  chmodSync(join(dir, "psql"), 0o755);
  const role = 'x";\nCREATE ROLE postgres;\n--';
  const id = `"${role.replace(/"/g, '""')}"`;
  const head = `--\n-- Roles\n--\n\nCREATE ROLE ${id};\nALTER ROLE ${id} WITH NOSUPERUSER LOGIN;\nCOMMENT ON ROLE ${id} IS 'it''s\nCREATE ROLE postgres;\n';\n`;
  const tail = `ALTER ROLE postgres WITH SUPERUSER;\n\n\\connect template1\nCREATE ROLE postgres;\nALTER TABLE t OWNER TO ${id};\n`;
  await psqlFile({ binDir: dir }, Readable.from([`${head}CREATE ROLE postgres;\n${tail}`]), { progress: false, ctx });
  assert.is(readFileSync(join(dir, "loaded.sql"), "utf8"), head + tail, "only the roles section's own CREATE ROLE postgres; is gone");
  // a plain script: a function body with a dollar quote and a block comment holding an apostrophe;
  // the data after COPY is never looked at (a row that reads CREATE ROLE postgres; stays)
  const plain = `CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $body$\n/* don't touch */ SELECT 1;\n$body$;\nCOPY t (a) FROM stdin;\nit's\nCREATE ROLE postgres;\n\\.\n`;
  await psqlFile({ binDir: dir }, Readable.from([plain]), { progress: false, ctx });
  assert.is(readFileSync(join(dir, "loaded.sql"), "utf8"), plain, "every data row reaches psql");
});

test.run();
