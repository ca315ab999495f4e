// The LambdaStack recipes on one private lab host (ls-53: repository, haproxy, prometheus,
// alertmanager), so it never collides with test/lambdastack*.test.ts (ls-1..ls-6, ls-51, ls-52)
// or the fault matrix (ls-41, ls-42):
//   - recovery takes the snapshot it is told even when a newer one exists: --snapshot over a
//     document that says latest, and the document's snapshot_name alone;
//   - an archive whose haproxy config `haproxy -c` refuses stops the load_balancer recovery
//     before haproxy is stopped: the host's own config is put back, haproxy runs on untouched;
//   - a target on the repository host smaller than the estimate is refused up front (df over ssh);
//   - Prometheus' TSDB snapshot is removed from the host after a backup, and after a backup
//     whose fetch of the snapshot fails (a `tar` on the host that fails for snapshot dirs); one
//     a SIGKILLed backup left there is removed by the next backup;
//   - a snapshot name in Prometheus' answer that is no snapshot's ("../keep", from whatever
//     listens on its port) is refused before that path is fetched or removed on the host.
// Run: bash test/run.sh test/lambdastack-snapshots.test.ts
// needs: docker lshosts
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { runRecipe } from "../tasks/drills/hoss.ts";
import { runRecipe as runKilled } from "../tasks/drills/faults.ts";
import { listTarget, onHost, provision, rmHosts, TARGET, upHosts, writeInventory, writeSite, type Layout } from "../tasks/drills/lambdastack.ts";
import { needLab } from "../tasks/drills/lab.ts";
import { testContext } from "./helpers.ts";

needLab("docker", "lshosts");
testContext();
const HOST = "ls-53";
const LAYOUT: Layout = { [HOST]: ["repository", "haproxy", "prometheus", "alertmanager"] };
const work = mkdtempSync(join(tmpdir(), "lifeboat-ls-snapshots-"));
const build = join(work, "build");
const siteB = join(work, "backup.yml"), siteR = join(work, "recovery.yml");

/** A valid haproxy.cfg that says which version it is; `extra` goes into its global section. */
const cfg = (version: string, extra = "") => `# lifeboat test: version ${version}
global
    maxconn 64
${extra}defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend web
    bind 127.0.0.1:8080
    default_backend app
backend app
    server s1 127.0.0.1:9
`;
const writeCfg = (text: string) => onHost(HOST, "cat > /etc/haproxy/haproxy.cfg", text);
const version = () => /version (\S+)/.exec(onHost(HOST, "head -1 /etc/haproxy/haproxy.cfg"))?.[1];
const backup = (components: string, more: string[] = []) => runRecipe("lambdastack-backup", ["-b", build, "-t", TARGET, "-f", siteB, "-c", components, ...more]);
const recovery = (args: string[]) => runRecipe("lambdastack-recovery", ["-b", build, "-t", TARGET, ...args, "--yes"]);
/** The snapshot names of a prefix on the repository host, oldest first. */
const snapshots = (prefix: string) => listTarget(HOST).filter((n) => n.startsWith(`${prefix}_`) && n.endsWith(".tar.gz")).map((n) => n.slice(prefix.length + 1, -".tar.gz".length));

test.before(() => {
  rmHosts([HOST]);
  upHosts([HOST]);
  provision(LAYOUT);
  writeInventory(build, LAYOUT);
  writeSite(siteB, work, "backup");
  writeSite(siteR, work, "recovery");
});

test.after(() => {
  rmHosts([HOST]);
  rmSync(work, { recursive: true, force: true });
});

test("recovery takes the named snapshot when a newer one exists: --snapshot over a document that says latest, and the document's snapshot_name alone", async () => {
  writeCfg(cfg("A"));
  onHost(HOST, "systemctl restart haproxy");
  const a = await backup("load_balancer");
  assert.is(a.code, 0, a.output.slice(-2000));
  writeCfg(cfg("B"));
  const b = await backup("load_balancer");
  assert.is(b.code, 0, b.output.slice(-2000));
  const [s1, s2] = snapshots("haproxy_etc");
  assert.ok(s1 && s2 && s1 < s2, `two snapshots, the second newer: ${s1}, ${s2}`);

  writeCfg(cfg("C"));
  const byFlag = await recovery(["-f", siteR, "-c", "load_balancer", "--snapshot", s1]);
  assert.is(byFlag.code, 0, byFlag.output.slice(-2000));
  assert.match(byFlag.output, `haproxy_etc_${s1}.tar.gz`);
  assert.is(version(), "A", "the flag's snapshot, not the document's latest");

  writeCfg(cfg("C"));
  const named = writeSite(join(work, "recovery-named.yml"), work, "recovery", { specification: { components: { load_balancer: { enabled: true, snapshot_name: s1 } } } });
  const byDoc = await recovery(["-f", named]);
  assert.is(byDoc.code, 0, byDoc.output.slice(-2000));
  assert.is(version(), "A", "the document's snapshot_name");

  const latest = await recovery(["-f", siteR, "-c", "load_balancer"]);
  assert.is(latest.code, 0, latest.output.slice(-2000));
  assert.is(version(), "B", "latest is the newer one");
});

test("an archive whose config haproxy -c refuses stops the load_balancer recovery before haproxy is stopped: exit 1 naming haproxy's complaint, the host's own config put back, haproxy running on with the same pid", async () => {
  writeCfg(cfg("broken", "    lifeboat_no_such_keyword on\n"));
  const b = await backup("load_balancer"); // haproxy runs on with the config it read at start
  assert.is(b.code, 0, b.output.slice(-2000));
  writeCfg(cfg("D"));
  const state = () => onHost(HOST, "cd /etc && find haproxy ssl/haproxy -printf '%p %y %m %U:%G\\n' | LC_ALL=C sort && find haproxy ssl/haproxy -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum");
  const pid = () => onHost(HOST, "cat /run/lifeboat/haproxy.pid").trim();
  const [stateBefore, pidBefore] = [state(), pid()];

  const r = await recovery(["-f", siteR, "-c", "load_balancer"]);
  assert.is(r.code, 1, r.output.slice(-2000));
  assert.match(r.output, /load_balancer@ls-53 \(haproxy -c on ls-53 refuses the archive's \/etc\/haproxy\/haproxy\.cfg \(.*lifeboat_no_such_keyword.*\); the host's own \/etc\/haproxy and \/etc\/ssl\/haproxy were put back and haproxy was neither stopped nor restarted/);
  assert.is(state(), stateBefore, "the host's config dirs are as they were");
  assert.is(version(), "D");
  assert.is(pid(), pidBefore, "haproxy was not stopped or restarted");
  assert.is(spawnSync("docker", ["exec", HOST, "systemctl", "is-active", "haproxy"]).status, 0);
  assert.is(onHost(HOST, "ls -d /etc/*.lifeboat-before-recovery /etc/ssl/*.lifeboat-before-recovery 2>/dev/null || true").trim(), "", "no set-aside dir is left");
});

test("a target on the repository host too small for the estimate is refused up front (df over ssh), naming both numbers; nothing is written there", async () => {
  const small = "/dev/shm/lifeboat-small"; // the container's /dev/shm: a 64 MiB tmpfs
  onHost(HOST, "truncate -s 200M /etc/haproxy/sparse.bin"); // du -b counts 200 MiB, no disk used
  try {
    const r = await runRecipe("lambdastack-backup", ["-b", build, "-t", small, "-f", siteB, "-c", "load_balancer"]);
    assert.is(r.code, 1, r.output.slice(-2000));
    assert.match(r.output, /estimate: 200\.0 MiB of data in 1 parts \(\+10%\); free: \d/);
    assert.match(r.output, new RegExp(`not enough space on ${HOST}:${small}: \\S+ \\S+ free, the backup needs about 220\\.0 MiB`));
    assert.is(onHost(HOST, `ls -A ${small} 2>/dev/null || true`).trim(), "", "nothing in the target");
  } finally {
    onHost(HOST, "rm -f /etc/haproxy/sparse.bin");
  }
});

test("Prometheus' TSDB snapshot is removed from the host after a backup, and after a backup whose fetch of the snapshot fails", async () => {
  const left = () => onHost(HOST, "ls -A /var/lib/prometheus/snapshots").trim();
  const ok = await backup("monitoring");
  assert.is(ok.code, 0, ok.output.slice(-2000));
  assert.is(snapshots("prometheus_snapshot").length, 1, "the snapshot was archived");
  assert.is(left(), "", "no snapshot left on the host");

  // a tar on the host that fails for snapshot dirs (and says which it was asked for)
  onHost(HOST, `cat > /usr/local/bin/tar <<'SH'
#!/bin/sh
case "$*" in */var/lib/prometheus/snapshots/*) [ -d "$2" ] && echo "$2" >> /tmp/lifeboat-tar-refused; echo "tar: simulated read error" >&2; exit 2 ;; esac
exec /usr/bin/tar "$@"
SH
chmod 755 /usr/local/bin/tar`);
  try {
    const bad = await backup("monitoring");
    assert.is(bad.code, 1, bad.output.slice(-2000));
    assert.match(bad.output, /monitoring@ls-53 \(.*failed \(exit 2\): .*tar -C \/var\/lib\/prometheus\/snapshots\//, bad.output.slice(-2500));
    assert.match(onHost(HOST, "cat /tmp/lifeboat-tar-refused"), /^\/var\/lib\/prometheus\/snapshots\/\S+\n$/, "a snapshot was made and its fetch failed");
    assert.is(left(), "", "the snapshot was removed all the same");
  } finally {
    onHost(HOST, "rm -f /usr/local/bin/tar /tmp/lifeboat-tar-refused");
  }
});

test("a backup SIGKILLed while fetching Prometheus' snapshot leaves it on the host; the next backup removes it first, then its own", async () => {
  const left = () => onHost(HOST, "ls -A /var/lib/prometheus/snapshots").trim();
  // a tar on the host that hangs for snapshot dirs (and says so), so the kill lands mid-fetch
  onHost(HOST, `cat > /usr/local/bin/tar <<'SH'
#!/bin/sh
case "$*" in */var/lib/prometheus/snapshots/*) echo "$2" > /tmp/lifeboat-tar-hung; exec sleep 61 ;; esac
exec /usr/bin/tar "$@"
SH
chmod 755 /usr/local/bin/tar`);
  let killed;
  try {
    killed = await runKilled("lambdastack-backup", ["-b", build, "-t", TARGET, "-f", siteB, "-c", "monitoring"], {}, {
      fire: async (pid) => {
        for (let i = 0; i < 600; i++, await sleep(100)) if (onHost(HOST, "cat /tmp/lifeboat-tar-hung 2>/dev/null || true").trim()) return (process.kill(pid, "SIGKILL"), true);
        return false;
      },
    });
  } finally {
    onHost(HOST, "rm -f /usr/local/bin/tar /tmp/lifeboat-tar-hung; pkill -f 'sleep 6[1]' || true");
  }
  assert.is(killed.signal, "SIGKILL", killed.output.slice(-2000));
  const snap = left();
  assert.match(snap, /^\S+$/, "the killed backup left its snapshot on the host");
  const again = await backup("monitoring");
  assert.is(again.code, 0, again.output.slice(-2000));
  assert.ok(again.output.includes(`removing the Prometheus snapshot /var/lib/prometheus/snapshots/${snap}, left by a backup that was interrupted`), again.output.slice(-3000));
  assert.is(left(), "", "neither snapshot is left");
});

test("a snapshot name that is not a snapshot's ('../keep', from whatever listens on Prometheus' port) is refused: nothing outside snapshots/ is fetched or removed", async () => {
  // Prometheus stopped; on its port, a server that answers every request with that name.
  onHost(HOST, `mkdir -p /var/lib/prometheus/keep && echo precious > /var/lib/prometheus/keep/file && systemctl stop prometheus
cat > /tmp/fake-prom.py <<'PY'
import http.server, json
class H(http.server.BaseHTTPRequestHandler):
    def answer(self):
        b = json.dumps({"status": "success", "data": {"name": "../keep"}}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json"); self.send_header("Content-Length", str(len(b))); self.end_headers(); self.wfile.write(b)
    do_GET = do_POST = answer
http.server.HTTPServer(("127.0.0.1", 9090), H).serve_forever()
PY
(setsid python3 /tmp/fake-prom.py >/dev/null 2>&1 &) ; for i in $(seq 50); do python3 -c 'import socket; socket.create_connection(("127.0.0.1", 9090))' 2>/dev/null && break; sleep 0.1; done`);
  try {
    const bad = await backup("monitoring");
    assert.is(bad.code, 1, bad.output.slice(-2000));
    assert.match(bad.output, /Prometheus answered the snapshot request with the name "\.\.\/keep", which is not a snapshot's name/, bad.output.slice(-2500));
    assert.is(onHost(HOST, "cat /var/lib/prometheus/keep/file"), "precious\n", "the folder the name pointed at is still there");
  } finally {
    onHost(HOST, "pkill -f 'fake-pro[m]' || true"); // (its own command line must not match)
    onHost(HOST, "rm -rf /tmp/fake-prom.py /var/lib/prometheus/keep; systemctl start prometheus");
  }
});

test.run();
