// exec: the one way lifeboat starts processes. Dry-run printing, masking, streams, failures.
// deno: yes
import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Writable } from "node:stream";
import { exec, ExecError, shellJoin } from "../lib/mod.ts";
import { cleanupTmp, testContext, tmp } from "./helpers.ts";

test.after.each(() => cleanupTmp());

test("dry-run prints the command quoted for a POSIX shell and does not run it", async () => {
  const { logs } = testContext({ argv: ["--dry-run"] });
  const f = join(tmp(), "it's $(x)");
  const r = await exec(["touch", "--", f]);
  assert.ok(r.dryRun);
  assert.not.ok(existsSync(f));
  assert.ok(logs().includes(`[dry-run] touch -- '${f.replace("'", "'\\''")}'`), logs());
});

test("a quoted word reads back as the same argv in sh", async () => {
  testContext();
  const words = ["a b", "it's", "$(touch /tmp/pwned-lifeboat)", "new\nline", "-n", "ünï", ""];
  const r = await exec(["sh", "-c", `printf '%s\\0' ${shellJoin(words)}`]);
  assert.equal(r.stdout.split("\0").slice(0, -1), words);
  assert.not.ok(existsSync("/tmp/pwned-lifeboat"));
});

test("a secret with a quote in it is masked in dry-run prints, env and argv alike", async () => {
  const { ctx, logs } = testContext({ argv: ["--dry-run"] });
  const secret = "pa'ss w\"ord";
  ctx.secrets.add(secret);
  await exec(["mysql", `--password=${secret}`, secret], { env: { PGPASSWORD: secret } });
  assert.not.ok(logs().includes("pa'"), logs());
  assert.not.ok(logs().includes("pa'\\''ss"), logs());
  assert.match(logs(), /PGPASSWORD='\*\*\*'|PGPASSWORD=\*\*\*/);
});

test("a failing command names its exit code and stderr tail, masked", async () => {
  const { ctx } = testContext();
  ctx.secrets.add("s3cr3t-value");
  try {
    await exec(["sh", "-c", "echo 'login as s3cr3t-value refused' >&2; exit 7"]);
    assert.unreachable();
  } catch (e) {
    assert.instance(e, ExecError);
    assert.match((e as Error).message, /exit 7/);
    assert.match((e as Error).message, /login as \*\*\* refused/);
  }
});

test("a stdout stream that fails mid-run stops the command and rejects (no unhandled rejection)", async () => {
  testContext();
  let n = 0;
  const broken = new Writable({
    write(_c, _e, cb) {
      if (++n === 3) cb(Object.assign(new Error("disk gone"), { code: "EIO" }));
      else cb();
    },
  });
  const t0 = Date.now();
  try {
    await exec(["sh", "-c", "yes lifeboat | head -c 100000000"], { stdout: broken });
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, /a stream failed \(disk gone\)/);
  }
  assert.ok(Date.now() - t0 < 20000, "the command was stopped");
});

test("okCodes accepts documented non-zero exits", async () => {
  testContext();
  const r = await exec(["sh", "-c", "exit 1"], { okCodes: [0, 1] });
  assert.is(r.code, 1);
});

test.run();
