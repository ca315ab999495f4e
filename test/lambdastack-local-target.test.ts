// lambdastack-backup with a local target path (--repository.host=local) that fills up during the
// copy: the archive and its .sha1 are written under hidden partial names and renamed only when
// whole, so the run fails naming "no space left" and leaves nothing in the target; once there is
// room, --resume puts the archive and its .sha1 there. One private host (ls-51, haproxy), so it
// never collides with test/lambdastack*.test.ts (ls-1..ls-6) or the fault matrix (ls-41, ls-42).
// Run: bash test/run.sh test/lambdastack-local-target.test.ts
// needs: docker lshosts
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { runRecipe } from "../tasks/drills/faults.ts";
import { onHost, provision, rmHosts, upHosts, writeInventory, writeSite, type Layout } from "../tasks/drills/lambdastack.ts";
import { needLab } from "../tasks/drills/lab.ts";
import { testContext } from "./helpers.ts";

needLab("docker", "lshosts");
testContext();
const LAYOUT: Layout = { "ls-51": ["haproxy"] };
const work = mkdtempSync(join(tmpdir(), "lifeboat-ls-local-"));
const target = join(work, "target");
const filler = join(target, "filler.bin");

test.before(() => {
  rmHosts(Object.keys(LAYOUT));
  upHosts(Object.keys(LAYOUT));
  provision(LAYOUT);
  // 3 MiB that do not compress: the archive is ~3 MiB, the up-front estimate ~3.3 MiB
  onHost("ls-51", "mkdir -p /etc/haproxy /etc/ssl/haproxy && head -c 3145728 /dev/urandom > /etc/haproxy/big.bin");
  mkdirSync(target);
  const r = spawnSync("mount", ["-t", "tmpfs", "-o", "size=8m,mode=700", "lifeboat-ls-local", target]);
  if (r.status !== 0) throw new Error(`cannot mount a tmpfs for the target: ${r.stderr}`);
});

test.after(() => {
  spawnSync("umount", ["-l", target]);
  rmHosts(Object.keys(LAYOUT));
  rmSync(work, { recursive: true, force: true });
});

test("a local target that fills during the copy: fails naming 'no space left', no final-named archive or partial is left; --resume puts it there whole", async () => {
  const build = writeInventory(join(work, "build"), LAYOUT);
  const site = writeSite(join(work, "backup.yml"), work, "backup");
  const args = ["-b", build, "-t", target, "-f", site, "-c", "load_balancer", "--repository.host=local"];
  // at the "back up" heading (after the free-space check passed), the recipe is paused while the
  // target is filled, so the filler is in place before the copy whatever the machine's load
  const fill = (pid: number) => {
    process.kill(pid, "SIGSTOP");
    try {
      spawnSync("dd", ["if=/dev/zero", `of=${filler}`, "bs=64k", "status=none"]);
    } finally {
      process.kill(pid, "SIGCONT");
    }
    return true;
  };
  const r = await runRecipe("lambdastack-backup", args, {}, { step: /^back up/, fire: fill });
  assert.is(r.code, 1, r.output.slice(-3000));
  assert.ok(r.firedAt !== undefined, "the target was filled during the run");
  assert.match(r.output, `no space left on ${target}`);
  assert.equal(readdirSync(target).filter((n) => n !== "filler.bin"), [], "nothing but the filler in the target");

  rmSync(filler);
  const again = await runRecipe("lambdastack-backup", [...args, "--resume"], {});
  assert.is(again.code, 0, again.output.slice(-3000));
  const names = readdirSync(target).sort();
  assert.is(names.length, 2, names.join(", "));
  assert.match(names[0], /^haproxy_etc_\d{8}-\d{6}\.tar\.gz$/);
  assert.is(names[1], `${names[0]}.sha1`);
  assert.match(readFileSync(join(target, names[1]), "utf8"), new RegExp(`^[0-9a-f]{40}  ${names[0].replaceAll(".", "\\.")}\\n$`));
});

test.run();
