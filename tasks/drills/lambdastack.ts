// The LambdaStack drill on the lab's Debian hosts (test/lab/lshosts.sh: ls-1..ls-3, and ls-4..ls-6
// started for the "new hosts" recovery). Used by test/lambdastack.test.ts and the drill:lambdastack
// task (make drill-lambdastack).
//
//   1. provision the hosts of inventory A as LambdaStack's `apply` would (services enabled and
//      started per group; ls-1 a streaming PostgreSQL standby of ls-2, listed first in the
//      postgresql group, so the recipes must ask for the primary) and seed real data: Prometheus series backfilled with
//      `promtool tsdb create-blocks-from openmetrics`, an Alertmanager silence, Grafana's data dir,
//      HAProxy's config and a certificate, PostgreSQL databases, roles and rows, RabbitMQ vhosts,
//      users, permissions, queues, an exchange, a binding, a policy and persistent messages, search
//      documents, and the config dirs;
//   2. back up every component in one run (lambdastack-backup -b BUILD_DIR, rabbitmq.messages on);
//   3. refusals before anything is cleared: a damaged .sha1, a damaged archive (exit 3, the hosts
//      compare equal to the seed afterwards); recovery --dry-run changes nothing;
//   4. destroy (wipe the data dirs, drop databases and roles, delete vhosts and users, delete the
//      index, expire the silence, break the configs), recover onto the same hosts, compare:
//      Prometheus range queries, silences, RabbitMQ definitions and messages, pg_dumpall (rows and
//      roles), config and data-dir bytes (modes, owners, sha256), documents;
//   5. recover onto new hosts ls-4..ls-6 with inventory B (the repository stays on ls-1) and compare;
//   6. failures of the backup: one host down (the others complete, the summary names it; --resume
//      after it is back finishes it, with an off-site copy of each archive), a target too small
//      (refused up front with the estimate), --dry-run (nothing written, no node stopped), a
//      failing mnesia copy (the node is started again);
//   and postgresql.restore-configs: a config changed after the backup is kept by a plain recovery
//   and replaced by one with the flag.
// The recipes run as child processes, as an operator runs them; the drill looks at the hosts with
// `docker exec` (curl, psql, find on the host itself).
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import YAML from "yaml";
import { formatDuration } from "../../lib/mod.ts";
import { runRecipe, type RecipeRun } from "./hoss.ts";
import { drillTask, LAB_SCRIPTS, needLab } from "./lab.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url)).replace(/\/$/, "");

/** Inventory groups per host. */
export type Layout = Record<string, string[]>;

/**
 * A streaming standby (pg_basebackup -R) of the layout's postgresql host: the host is in the
 * inventory's postgresql group, listed FIRST, so the recipes must ask which host is the primary.
 */
export const STANDBY = "postgresql_standby";

/** Inventory A: the cluster as it was backed up (ls-1 also runs a PostgreSQL standby of ls-2). */
export const LAYOUT_A: Layout = {
  "ls-1": ["repository", STANDBY, "haproxy", "prometheus", "alertmanager", "grafana"],
  "ls-2": ["postgresql", "rabbitmq"],
  "ls-3": ["logging", "kibana"],
};
/** Inventory B: new hosts for every component; the repository host (and its archives) stays. */
export const LAYOUT_B: Layout = {
  "ls-1": ["repository"],
  "ls-4": ["haproxy", "prometheus", "alertmanager", "grafana"],
  "ls-5": ["postgresql", "rabbitmq"],
  "ls-6": ["logging", "kibana"],
};

/** A layout without its PostgreSQL standby (a test whose primary goes down while the standby answers). */
export function withoutStandby(layout: Layout): Layout {
  return Object.fromEntries(Object.entries(layout).map(([h, gs]) => [h, gs.filter((g) => g !== STANDBY)]));
}

/** The lab's systemctl units of each group. */
const UNITS: Record<string, string> = {
  haproxy: "haproxy", prometheus: "prometheus", alertmanager: "prometheus-alertmanager", grafana: "grafana-server",
  postgresql: "postgresql", [STANDBY]: "postgresql", rabbitmq: "rabbitmq-server", logging: "elasticsearch", kibana: "kibana",
};

/** The dirs whose bytes are compared, per group. */
const DIRS: Record<string, string[]> = {
  haproxy: ["/etc/haproxy", "/etc/ssl/haproxy"], prometheus: ["/etc/prometheus"], grafana: ["/var/lib/grafana"],
  rabbitmq: ["/etc/rabbitmq"], logging: ["/etc/elasticsearch"], kibana: ["/etc/kibana"],
};

export const TARGET = "/lsbackup/mounted";
const SERIES = '{__name__=~"lifeboat_seed_.*"}';

/** The first host of a group in a layout. */
export function hostOf(layout: Layout, group: string): string {
  const h = Object.keys(layout).find((n) => layout[n].includes(group));
  if (!h) throw new Error(`no host in group ${group}`);
  return h;
}

/** Runs a bash script on a lab host (docker exec); returns its stdout. */
export function onHost(host: string, script: string, input?: string): string {
  return execFileSync("docker", ["exec", "-i", host, "bash", "-euo", "pipefail", "-c", script], { input: input ?? "", encoding: "utf8", maxBuffer: 64 << 20, stdio: ["pipe", "pipe", "pipe"] });
}

/** An HTTP call on the host itself (the services listen on its loopback only). */
function curl(host: string, method: string, url: string, body?: unknown, user?: string): string {
  const args = ["curl", "-sSf", "-X", method, ...(user ? ["-u", user] : []), ...(body !== undefined ? ["-H", "content-type: application/json", "--data-binary", "@-"] : []), url];
  return execFileSync("docker", ["exec", "-i", host, ...args], { input: body !== undefined ? JSON.stringify(body) : "", encoding: "utf8", maxBuffer: 64 << 20, stdio: ["pipe", "pipe", "pipe"] });
}
const rabbit = (host: string, method: string, path: string, body?: unknown) => curl(host, method, `http://127.0.0.1:15672/api${path}`, body, "guest:guest");

/** Starts lab hosts (ls-4 …) that are not running; their ssh ports are in lshosts.env. */
export function upHosts(names: string[]): void {
  execFileSync("bash", [join(LAB_SCRIPTS, "lshosts.sh"), "up-hosts", ...names], { stdio: ["ignore", "ignore", "inherit"] });
}
/** Removes lab hosts (data included). */
export function rmHosts(names: string[]): void {
  spawnSync("bash", [join(LAB_SCRIPTS, "lshosts.sh"), "rm", ...names], { stdio: "ignore" });
}

/** Enables and starts each host's services, as LambdaStack's `apply` leaves a cluster; clones the standbys. */
export function provision(layout: Layout): void {
  for (const [host, groups] of Object.entries(layout)) {
    const units = groups.map((g) => UNITS[g]).filter(Boolean);
    if (units.length) onHost(host, `ENABLE_NOW=1 systemctl enable "$@"`.replace('"$@"', units.join(" ")));
  }
  // a standby: its own cluster replaced by a base backup of the primary (over the lab network,
  // pg_hba's `host replication all samenet trust`), started streaming from it
  for (const host of Object.keys(layout).filter((h) => layout[h].includes(STANDBY))) {
    onHost(host, `systemctl stop postgresql && rm -rf /var/lib/postgresql/15/main
      runuser -u postgres -- pg_basebackup -h '${hostOf(layout, "postgresql")}' -U postgres -D /var/lib/postgresql/15/main -R -X stream -c fast
      systemctl start postgresql`);
  }
}

/** What the standby says: in recovery (t/f), streaming from the primary, and its postmaster pid. */
export function standbyState(layout: Layout): { host: string; inRecovery: string; streaming: boolean; pid: string } {
  const host = Object.keys(layout).find((h) => layout[h].includes(STANDBY));
  if (!host) throw new Error("no standby in the layout");
  const q = (h: string, sql: string) => onHost(h, `runuser -u postgres -- psql -XAtq -d postgres -c "$1"`.replace("$1", sql)).trim();
  return {
    host,
    inRecovery: q(host, "SELECT pg_is_in_recovery()"),
    streaming: q(host, "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'") === "1",
    pid: onHost(host, "head -1 /var/lib/postgresql/15/main/postmaster.pid").trim(),
  };
}

/** The seeded Prometheus window: 4 h of 1-minute samples ending 2 h before the hour. */
export function seedWindow(now = Date.now()): { start: number; end: number } {
  const end = Math.floor(now / 3_600_000) * 3600 - 2 * 3600;
  return { start: end - 4 * 3600, end };
}

/** The component each inventory group belongs to (for the `only` of seed, capture, destroy). */
const COMPONENT_OF: Record<string, string> = {
  haproxy: "load_balancer", prometheus: "monitoring", alertmanager: "monitoring", grafana: "monitoring",
  postgresql: "postgresql", rabbitmq: "rabbitmq", logging: "logging", kibana: "logging",
};

/** Seeds every component's data (or the `only` components') on the hosts of a layout. */
export function seed(layout: Layout, w = seedWindow(), only?: string[]): void {
  const does = (c: string) => !only || only.includes(c);
  if (does("monitoring")) seedMonitoring(layout, w);
  if (does("load_balancer")) seedLoadBalancer(layout);
  if (does("postgresql")) seedPostgresql(layout);
  if (does("rabbitmq")) seedRabbitmq(layout);
  if (does("logging")) seedLogging(layout);
}

function seedMonitoring(layout: Layout, w: { start: number; end: number }): void {
  // Prometheus: backfilled series, as blocks in the data dir
  const om: string[] = ["# HELP lifeboat_seed_temperature a gauge", "# TYPE lifeboat_seed_temperature gauge"];
  for (let t = w.start; t < w.end; t += 60) for (const room of ["a", "b b"]) om.push(`lifeboat_seed_temperature{room="${room}"} ${(20 + 5 * Math.sin(t / 1800 + room.length)).toFixed(3)} ${t}`);
  om.push("# HELP lifeboat_seed_requests a counter", "# TYPE lifeboat_seed_requests counter");
  for (let t = w.start, n = 0; t < w.end; t += 60, n += (t / 60) % 7) om.push(`lifeboat_seed_requests_total{code="200"} ${n} ${t}`);
  om.push("# EOF", "");
  const prom = hostOf(layout, "prometheus");
  onHost(prom, `cat > /tmp/seed.om && systemctl stop prometheus
    promtool tsdb create-blocks-from openmetrics /tmp/seed.om /var/lib/prometheus >/dev/null && rm /tmp/seed.om
    chown -R prometheus:prometheus /var/lib/prometheus
    echo '# lifeboat drill: site tuning' >> /etc/prometheus/prometheus.yml
    systemctl start prometheus`, om.join("\n"));
  // Alertmanager: one active silence
  const now = new Date();
  curl(hostOf(layout, "alertmanager"), "POST", "http://127.0.0.1:9093/api/v2/silences", {
    matchers: [{ name: "alertname", value: "LifeboatDrill", isRegex: false, isEqual: true }],
    startsAt: now.toISOString(), endsAt: new Date(now.getTime() + 7 * 86_400_000).toISOString(), createdBy: "drill", comment: "maintenance ✓ 'quoted'",
  });
  // Grafana's data dir as files
  onHost(hostOf(layout, "grafana"), `cd /var/lib/grafana && mkdir -p dashboards plugins/clock-panel png
    head -c 300000 /dev/urandom > grafana.db && echo '{"title":"Hosts ✓"}' > 'dashboards/hosts board.json'
    echo plugin > plugins/clock-panel/module.js && chmod 640 grafana.db`);
}

function seedLoadBalancer(layout: Layout): void {
  // HAProxy: a TLS frontend with its certificate
  onHost(hostOf(layout, "haproxy"), `cd /etc/ssl/haproxy
    openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=lb.lab -days 30 -keyout k.pem -out c.pem 2>/dev/null
    cat c.pem k.pem > lb.lab.pem && rm c.pem k.pem && chmod 600 lb.lab.pem
    cat > /etc/haproxy/haproxy.cfg <<'CFG'
# lifeboat drill: the cluster's load balancer
global
    log /dev/log local0
    maxconn 512
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend https
    bind 127.0.0.1:8443 ssl crt /etc/ssl/haproxy/lb.lab.pem
    default_backend grafana
backend grafana
    server g1 127.0.0.1:3000 check
CFG
    systemctl restart haproxy`);
}

function seedPostgresql(layout: Layout): void {
  // PostgreSQL: databases, roles, rows
  onHost(hostOf(layout, "postgresql"), `runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 <<'SQL'
CREATE ROLE app LOGIN PASSWORD 'app-secret';
CREATE ROLE "report user" LOGIN PASSWORD 'r3port';
CREATE DATABASE shop OWNER app;
CREATE DATABASE "metrics data";
\\c shop
CREATE TABLE orders (id int PRIMARY KEY, item text, qty int, at timestamptz);
INSERT INTO orders SELECT i, 'item ' || i || ' ✓', i % 13, '2026-11-01'::timestamptz + i * interval '1 minute' FROM generate_series(1, 5000) i;
ALTER TABLE orders OWNER TO app;
\\c "metrics data"
CREATE TABLE "it's a table" (k text PRIMARY KEY, v jsonb);
INSERT INTO "it's a table" VALUES ('a', '{"x": 1}'), ('$(b)', '[1,2]');
GRANT SELECT ON "it's a table" TO "report user";
SQL`);
}

function seedRabbitmq(layout: Layout): void {
  // RabbitMQ: vhosts, users, permissions, queues, exchange, binding, policy, persistent messages
  const r = hostOf(layout, "rabbitmq");
  rabbit(r, "PUT", "/vhosts/v1", {});
  rabbit(r, "PUT", "/vhosts/shop%20prod", {});
  rabbit(r, "PUT", "/users/alice", { password: "alice-pw", tags: "monitoring" });
  rabbit(r, "PUT", "/permissions/v1/alice", { configure: ".*", write: ".*", read: ".*" });
  rabbit(r, "PUT", "/permissions/shop%20prod/alice", { configure: "", write: "^q", read: ".*" });
  rabbit(r, "PUT", "/queues/v1/orders", { durable: true });
  rabbit(r, "PUT", "/queues/shop%20prod/q%20two", { durable: true, arguments: { "x-max-priority": 5 } });
  rabbit(r, "PUT", "/exchanges/v1/events", { type: "topic", durable: true });
  rabbit(r, "POST", "/bindings/v1/e/events/q/orders", { routing_key: "order.#" });
  rabbit(r, "PUT", "/policies/v1/cap", { pattern: "^orders$", definition: { "max-length": 10000 }, "apply-to": "queues" });
  for (let i = 1; i <= 20; i++) rabbit(r, "POST", "/exchanges/v1/events/publish", { properties: { delivery_mode: 2 }, routing_key: "order.new", payload: `order ${i} ✓`, payload_encoding: "string" });
  onHost(r, `echo 'drill note' > /etc/rabbitmq/lifeboat-note.txt`);
}

function seedLogging(layout: Layout): void {
  // search documents and the logging hosts' configs
  const l = hostOf(layout, "logging");
  for (const [id, doc] of [["1", { msg: "first ✓", level: "info" }], ["two", { msg: "second 'quoted'", level: "warn" }], ["$(3)", { msg: "third", level: "error" }]] as const) {
    curl(l, "PUT", `http://127.0.0.1:9200/logs-2026.11/_doc/${encodeURIComponent(id)}?refresh=true`, doc);
  }
  onHost(l, `printf 'cluster.name: lambdastack\\npath.repo: ["/var/lib/elasticsearch-snapshots"]\\n' > /etc/elasticsearch/elasticsearch.yml`);
  onHost(hostOf(layout, "kibana"), `printf 'server.host: 127.0.0.1\\n' > /etc/kibana/kibana.yml`);
}

/** What is compared: one entry per thing, JSON-comparable. */
export type Snapshot = Record<string, unknown>;

/** Reads every component's state (or the `only` components') on the hosts of a layout. */
export function capture(layout: Layout, w: { start: number; end: number }, opts: { messages?: boolean; only?: string[] } = {}): Snapshot {
  const out: Snapshot = {};
  const does = (c: string) => !opts.only || opts.only.includes(c);
  // a destroyed thing reads as its error (the comparison then names it)
  const take = (key: string, fn: () => unknown) => {
    try {
      out[key] = fn();
    } catch (e) {
      out[key] = `unreadable: ${String((e as Error).message).split("\n").slice(0, 2).join(" ")}`;
    }
  };
  if (does("monitoring")) captureMonitoring(layout, w, take);
  if (does("rabbitmq")) captureRabbitmq(layout, out, take, opts.messages);
  if (does("postgresql")) {
    const pg = hostOf(layout, "postgresql");
    take("postgresql: pg_dumpall (rows and roles)", () => onHost(pg, "runuser -u postgres -- pg_dumpall --restrict-key=lifeboatdrill"));
    take("postgresql: orders rows", () => onHost(pg, `runuser -u postgres -- psql -At -d shop -c 'SELECT count(*), sum(qty) FROM orders'`).trim());
  }
  if (does("logging")) take("search: documents", () => (JSON.parse(curl(hostOf(layout, "logging"), "GET", "http://127.0.0.1:9200/logs-2026.11/_search?size=100&sort=_id")).hits.hits as { _id: string; _source: unknown }[]).map((h) => [h._id, h._source]));
  for (const [group, dirs] of Object.entries(DIRS)) {
    if (!does(COMPONENT_OF[group])) continue;
    const host = hostOf(layout, group);
    for (const d of dirs) {
      take(`files: ${group} ${d}`, () => onHost(host, `cd '${d}' && find . -printf '%p %y %m %U:%G %l\\n' | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum`));
    }
  }
  return out;
}

type Take = (key: string, fn: () => unknown) => void;

function captureMonitoring(layout: Layout, w: { start: number; end: number }, take: Take): void {
  const prom = hostOf(layout, "prometheus");
  const q = (query: string) => JSON.parse(onHost(prom, `curl -sSf -G --data-urlencode "query=$1" --data start=${w.start} --data end=${w.end - 60} --data step=60 http://127.0.0.1:9090/api/v1/query_range`.replace("$1", query.replaceAll('"', '\\"'))));
  take("prometheus: range query", () => (q(SERIES).data.result as { metric: Record<string, string> }[]).sort((a, b) => JSON.stringify(a.metric).localeCompare(JSON.stringify(b.metric))));
  take("prometheus: rate()", () => q("sum(rate(lifeboat_seed_requests_total[10m]))").data.result);
  take("alertmanager: silences", () => (JSON.parse(curl(hostOf(layout, "alertmanager"), "GET", "http://127.0.0.1:9093/api/v2/silences")) as { matchers: unknown; endsAt: string; comment: string; createdBy: string; status: { state: string } }[])
    .filter((s) => s.status.state === "active").map((s) => ({ matchers: s.matchers, endsAt: s.endsAt, comment: s.comment, createdBy: s.createdBy })));
}

function captureRabbitmq(layout: Layout, out: Snapshot, take: Take, messages?: boolean): void {
  const r = hostOf(layout, "rabbitmq");
  let defs: Record<string, unknown[]> = {};
  take("rabbitmq: definitions read", () => ((defs = JSON.parse(rabbit(r, "GET", "/definitions"))), true));
  for (const k of ["vhosts", "users", "permissions", "queues", "exchanges", "bindings", "policies", "topic_permissions", "parameters"]) {
    out[`rabbitmq: ${k}`] = (defs[k] ?? []).map((x) => JSON.stringify(x)).sort();
  }
  if (messages) take("rabbitmq: messages in v1/orders", () => (JSON.parse(rabbit(r, "POST", "/queues/v1/orders/get", { count: 100, ackmode: "ack_requeue_true", encoding: "auto" })) as { payload: string }[]).map((m) => m.payload));
}

/** The keys whose values differ between two snapshots, with a short excerpt. */
export function differences(a: Snapshot, b: Snapshot): string[] {
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])];
  return keys.filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k])).map((k) => `${k}: ${JSON.stringify(a[k])?.slice(0, 160)} ≠ ${JSON.stringify(b[k])?.slice(0, 160)}`);
}

/** Destroys the data of every component (or of the `only` ones): data dirs, databases, vhosts, index, silence, configs. */
export function destroy(layout: Layout, only?: string[]): void {
  const does = (c: string) => !only || only.includes(c);
  if (does("monitoring")) {
    onHost(hostOf(layout, "prometheus"), `systemctl stop prometheus && rm -rf /var/lib/prometheus/* && echo '# destroyed' >> /etc/prometheus/prometheus.yml && systemctl start prometheus`);
    const am = hostOf(layout, "alertmanager");
    for (const s of JSON.parse(curl(am, "GET", "http://127.0.0.1:9093/api/v2/silences")) as { id: string; status: { state: string } }[]) {
      if (s.status.state !== "expired") curl(am, "DELETE", `http://127.0.0.1:9093/api/v2/silence/${s.id}`);
    }
    onHost(hostOf(layout, "grafana"), `rm -rf /var/lib/grafana/*`);
  }
  if (does("load_balancer")) onHost(hostOf(layout, "haproxy"), `rm -f /etc/ssl/haproxy/* && printf 'global\\n' > /etc/haproxy/haproxy.cfg`);
  if (does("postgresql")) onHost(hostOf(layout, "postgresql"), `runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -c 'DROP DATABASE IF EXISTS shop' -c 'DROP DATABASE IF EXISTS "metrics data"' -c 'DROP ROLE IF EXISTS app' -c 'DROP ROLE IF EXISTS "report user"'`);
  if (does("rabbitmq")) {
    const r = hostOf(layout, "rabbitmq");
    rabbit(r, "DELETE", "/vhosts/v1");
    rabbit(r, "DELETE", "/vhosts/shop%20prod");
    rabbit(r, "DELETE", "/users/alice");
    onHost(r, `rm -f /etc/rabbitmq/lifeboat-note.txt`);
  }
  if (does("logging")) {
    curl(hostOf(layout, "logging"), "DELETE", "http://127.0.0.1:9200/logs-2026.11");
    onHost(hostOf(layout, "logging"), `rm -f /etc/elasticsearch/elasticsearch.yml`);
  }
}

/** Writes an Ansible INI inventory for a layout (ssh ports from lshosts.env); returns the build dir. */
export function writeInventory(dir: string, layout: Layout): string {
  const lab = needLab("lshosts");
  const groups = [...new Set(Object.values(layout).flat().map((g) => (g === STANDBY ? "postgresql" : g)))];
  const lines = ["# generated by tasks/drills/lambdastack.ts", "[all:vars]", "ansible_user=root", "ansible_host=127.0.0.1", `ansible_ssh_private_key_file=${lab.LSHOSTS_KEY}`, ""];
  for (const g of groups) {
    lines.push(`[${g}]`);
    // the standbys first in the postgresql group: the primary is asked for, never assumed
    const members = Object.keys(layout).filter((h) => layout[h].includes(g) || (g === "postgresql" && layout[h].includes(STANDBY)));
    members.sort((a, b) => Number(layout[b].includes(STANDBY)) - Number(layout[a].includes(STANDBY)));
    for (const h of members) lines.push(`${h} ansible_port=${lab[`LSHOSTS_PORT_${h.replace(/-/g, "_")}`]}`);
    lines.push("");
  }
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "inventory"), lines.join("\n"));
  return dir;
}

/** A LambdaStack backup/recovery document plus lifeboat's keys, as the operator's site file. */
export function writeSite(path: string, work: string, kind: "backup" | "recovery", extra: Record<string, unknown> = {}): string {
  const components = Object.fromEntries(["load_balancer", "logging", "monitoring", "postgresql", "rabbitmq"].map((c) => [c, kind === "backup" ? { enabled: true } : { enabled: true, snapshot_name: "latest" }]));
  const doc = {
    kind: `configuration/${kind}`, title: `${kind} config`, name: "default", provider: "any",
    specification: { components },
    "state-dir": join(work, "state"), "staging-dir": join(work, "staging"), concurrency: 4,
    rabbitmq: { messages: true },
    ...extra,
  };
  writeFileSync(path, YAML.stringify(doc));
  return path;
}

/** Archive names in the repository dir on a host. */
export function listTarget(host = "ls-1", dir = TARGET): string[] {
  return onHost(host, `mkdir -p '${dir}' && ls -1 '${dir}'`).split("\n").filter(Boolean).sort();
}

/** Waits (bounded) until ssh and the host's enabled services answer again after a docker start. */
export function waitHost(host: string, unit: string): void {
  for (let i = 0; i < 120; i++) {
    if (spawnSync("docker", ["exec", host, "systemctl", "is-active", unit], { stdio: "ignore" }).status === 0) return;
    execFileSync("sleep", ["0.5"]);
  }
  throw new Error(`${host}: ${unit} did not come back within 60 s`);
}

/** Options for {@link lambdastackDrill}. */
export interface LambdastackDrillOptions {
  log?: (line: string) => void;
  /** Recover onto ls-4..ls-6 as well (default true). */
  newHosts?: boolean;
  /** The failure cases (refusals, host down, small target, dry runs) (default true). */
  failures?: boolean;
  keep?: boolean;
  echo?: boolean;
  signal?: AbortSignal;
}

/** What the drill found. */
export interface LambdastackDrillResult {
  dir: string;
  archives: string[];
  snapshot: string;
  compared: string[];
  diffsSameHosts: string[];
  diffsNewHosts: string[] | null;
  /** exit code + last error lines, and whether the hosts were untouched. */
  refusals: Record<string, { code: number; message: string; untouched: boolean }>;
  hostDown: { code: number; output: string; archivesWhileDown: string[]; resumeCode: number; resumeOutput: string; archivesAfter: string[]; offsite: string[] } | null;
  smallTarget: { code: number; output: string; written: string[] } | null;
  dryRun: { backupCode: number; backupOutput: string; recoveryCode: number; written: string[]; staged: string[]; rabbitActive: boolean; untouched: boolean } | null;
  ms: { seed: number; backup: number; recoverSame: number; recoverNew: number };
  /** postgresql.conf changed after the backup: kept by a plain recovery, replaced with postgresql.restore-configs. */
  configs: { keptByDefault: boolean; restoredWithFlag: boolean };
  /** A backup whose mnesia copy fails: its exit, and whether the node runs again. */
  mnesiaFailure: { code: number; output: string; rabbitActive: boolean; restarted: boolean } | null;
  /**
   * The PostgreSQL standby listed first in the postgresql group: its state before the backup, the
   * host the backup's manifest names, the recipes' output (summary keys, the dry run's question),
   * and its state after the recovery onto the same hosts.
   */
  standby: { host: string; primary: string; before: ReturnType<typeof standbyState>; after: ReturnType<typeof standbyState> | null; manifestHost: string; manifestPrimary: string; backupOutput: string; recoveryOutput: string; recoveryDryRunOutput: string } | null;
}

/**
 * Runs the drill on the lshosts lab piece (which must be up); throws when a recipe fails where it
 * should not. Compare results are returned, not thrown.
 * @example const r = await lambdastackDrill({ log: console.error }); r.diffsSameHosts // []
 */
export async function lambdastackDrill(opts: LambdastackDrillOptions = {}): Promise<LambdastackDrillResult> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const dir = mkdtempSync(join(tmpdir(), "lifeboat-lambdastack-drill-"));
  const buildA = writeInventory(join(dir, "build-a"), LAYOUT_A);
  const siteB = writeSite(join(dir, "backup.yml"), dir, "backup");
  const siteR = writeSite(join(dir, "recovery.yml"), dir, "recovery");
  const run = async (name: string, args: string[]): Promise<RecipeRun> => {
    const r = await runRecipe(name, args, { echo: opts.echo, signal: opts.signal });
    log(`${name} ${args.join(" ")}: exit ${r.code} (${(r.ms / 1000).toFixed(1)} s)`);
    return r;
  };
  const must = async (name: string, args: string[]) => {
    const r = await run(name, args);
    if (r.code !== 0) throw new Error(`${name} ${args.join(" ")} exited ${r.code}:\n${r.output.slice(-4000)}`);
    return r;
  };
  const newHosts = Object.keys(LAYOUT_B).filter((h) => !(h in LAYOUT_A));
  const result: LambdastackDrillResult = { dir, archives: [], snapshot: "", compared: [], diffsSameHosts: [], diffsNewHosts: null, refusals: {}, hostDown: null, smallTarget: null, dryRun: null, configs: { keptByDefault: false, restoredWithFlag: false }, mnesiaFailure: null, standby: null, ms: { seed: 0, backup: 0, recoverSame: 0, recoverNew: 0 } };
  const w = seedWindow();
  try {
    // 1. provision and seed
    const t0 = Date.now();
    rmHosts(Object.keys(LAYOUT_A)); // fresh hosts: a drill run never builds on an earlier one
    upHosts(Object.keys(LAYOUT_A));
    provision(LAYOUT_A);
    seed(LAYOUT_A, w);
    const before = capture(LAYOUT_A, w, { messages: true });
    const standbyBefore = standbyState(LAYOUT_A);
    result.compared = Object.keys(before);
    result.ms.seed = Date.now() - t0;
    log(`seeded and captured ${result.compared.length} things in ${formatDuration(result.ms.seed)}`);

    // 2. back up every component in one run
    const b = await must("lambdastack-backup", ["-b", buildA, "-t", TARGET, "-f", siteB]);
    result.ms.backup = b.ms;
    result.archives = listTarget();
    result.snapshot = /_(\d{8}-\d{6})\.tar\.gz$/.exec(result.archives.find((a) => a.endsWith(".tar.gz")) ?? "")?.[1] ?? "";
    log(`backup: ${result.archives.length / 2} archives (+ .sha1), snapshot ${result.snapshot}`);
    const pgManifest = JSON.parse(onHost("ls-1", `tar -xzOf '${TARGET}/postgresql_${result.snapshot}.tar.gz' --wildcards '*manifest.json'`)).meta.lambdastack;
    result.standby = { host: standbyBefore.host, primary: hostOf(LAYOUT_A, "postgresql"), before: standbyBefore, after: null, manifestHost: pgManifest.host, manifestPrimary: pgManifest.facts.primary, backupOutput: b.output, recoveryOutput: "", recoveryDryRunOutput: "" };

    // 3. refusals before anything is cleared, and a recovery dry run
    if (opts.failures !== false) {
      // markers in dirs recovery clears: still there = nothing was cleared
      const markers: [string, string][] = [[hostOf(LAYOUT_A, "haproxy"), "/etc/haproxy"], [hostOf(LAYOUT_A, "grafana"), "/var/lib/grafana"], [hostOf(LAYOUT_A, "rabbitmq"), "/etc/rabbitmq"], [hostOf(LAYOUT_A, "logging"), "/etc/elasticsearch"]];
      for (const [h, d] of markers) onHost(h, `touch '${d}/not-in-the-backup.marker'`);
      const untouched = () => markers.every(([h, d]) => spawnSync("docker", ["exec", h, "test", "-e", `${d}/not-in-the-backup.marker`]).status === 0);
      const damage = async (label: string, file: string, how: string) => {
        onHost("ls-1", `cd '${TARGET}' && cp -p '${file}' /tmp/keep && ${how}`);
        const r = await run("lambdastack-recovery", ["-b", buildA, "-t", TARGET, "-f", siteR, "--yes"]);
        onHost("ls-1", `cd '${TARGET}' && mv /tmp/keep '${file}'`);
        result.refusals[label] = { code: r.code, message: lastError(r.output), untouched: untouched() };
      };
      const haproxy = result.archives.find((a) => a.startsWith("haproxy_etc_") && a.endsWith(".tar.gz"))!;
      const grafana = result.archives.find((a) => a.startsWith("grafana_data_") && a.endsWith(".tar.gz"))!; // ~300 kB
      await damage("damaged .sha1", `${haproxy}.sha1`, `sed -E -i 's/^[0-9a-f]{8}/00000000/' '${haproxy}.sha1'`);
      await damage("damaged archive", grafana, `printf 'XXXXXXXX' | dd of='${grafana}' bs=1 seek=2000 conv=notrunc status=none`);
      await damage("truncated archive, .sha1 made to match", grafana, `cp -p '${grafana}.sha1' /tmp/keep.sha1 && truncate -s -3000 '${grafana}' && sha1sum '${grafana}' > '${grafana}.sha1'`);
      onHost("ls-1", `cd '${TARGET}' && mv /tmp/keep.sha1 '${grafana}.sha1'`);
      const dry = await run("lambdastack-recovery", ["-b", buildA, "-t", TARGET, "-f", siteR, "--dry-run"]);
      result.refusals["recovery --dry-run"] = { code: dry.code, message: lastError(dry.output), untouched: untouched() };
      result.standby!.recoveryDryRunOutput = dry.output;
      for (const [h, d] of markers) onHost(h, `rm -f '${d}/not-in-the-backup.marker'`);
    }

    // 4. destroy, recover onto the same hosts, compare
    destroy(LAYOUT_A);
    const destroyed = differences(before, capture(LAYOUT_A, w, { messages: true }));
    log(`destroyed: ${destroyed.length} of ${result.compared.length} things now differ`);
    // a config changed after the backup: recovery keeps the current *.conf unless postgresql.restore-configs
    const pgHost = hostOf(LAYOUT_A, "postgresql"), pgConf = "/etc/postgresql/15/main/postgresql.conf";
    onHost(pgHost, `echo '# changed after the backup' >> ${pgConf}`);
    const rs = await must("lambdastack-recovery", ["-b", buildA, "-t", TARGET, "-f", siteR, "--yes"]);
    result.ms.recoverSame = rs.ms;
    result.standby!.recoveryOutput = rs.output;
    result.standby!.after = standbyState(LAYOUT_A);
    const changed = () => onHost(pgHost, `grep -c 'changed after the backup' ${pgConf} || true`).trim() !== "0";
    result.configs = { keptByDefault: changed(), restoredWithFlag: false };
    result.diffsSameHosts = differences(before, capture(LAYOUT_A, w, { messages: true }));
    log(`recovered onto ${Object.keys(LAYOUT_A).join(", ")}: ${result.diffsSameHosts.length} differences`);

    if (opts.failures !== false) {
      await must("lambdastack-recovery", ["-b", buildA, "-t", TARGET, "-f", siteR, "-c", "postgresql", "--postgresql.restore-configs", "--yes"]);
      result.configs.restoredWithFlag = !changed();
    }

    // 5. onto new hosts
    if (opts.newHosts !== false) {
      upHosts(newHosts);
      const buildB = writeInventory(join(dir, "build-b"), LAYOUT_B);
      provision(LAYOUT_B);
      const rn = await must("lambdastack-recovery", ["-b", buildB, "-t", TARGET, "-f", siteR, "--snapshot", result.snapshot, "--yes"]);
      result.ms.recoverNew = rn.ms;
      result.diffsNewHosts = differences(before, capture(LAYOUT_B, w, { messages: true }));
      log(`recovered onto new hosts ${newHosts.join(", ")}: ${result.diffsNewHosts.length} differences`);
    }

    // 6. backup failures
    if (opts.failures !== false) {
      // a dry run writes nothing anywhere and stops no node
      const staging = join(dir, "staging");
      rmSync(staging, { recursive: true, force: true });
      const listed = listTarget();
      const dry = await run("lambdastack-backup", ["-b", buildA, "-t", TARGET, "-f", siteB, "--dry-run"]);
      const staged = existsSync(staging) ? execFileSync("find", [staging, "-type", "f"], { encoding: "utf8" }).split("\n").filter(Boolean) : [];
      const rabbitActive = spawnSync("docker", ["exec", "ls-2", "systemctl", "is-active", "rabbitmq-server"], { stdio: "ignore" }).status === 0;
      const rd = await run("lambdastack-recovery", ["-b", buildA, "-t", TARGET, "-f", siteR, "--dry-run"]);
      result.dryRun = { backupCode: dry.code, backupOutput: dry.output, recoveryCode: rd.code, written: listTarget().filter((n) => !listed.includes(n)), staged, rabbitActive, untouched: differences(before, capture(LAYOUT_A, w, { messages: true })).length === 0 };

      // a target too small: refused up front, with the estimate
      const small = join(dir, "small");
      mkdirSync(small);
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=256k,mode=700", "lifeboat-ls-small", small]);
      try {
        const r = await run("lambdastack-backup", ["-b", buildA, "-t", small, "-f", siteB, "--repository.host=local"]);
        result.smallTarget = { code: r.code, output: r.output, written: readdirSync(small) };
      } finally {
        spawnSync("umount", [small]);
      }

      // one host down: the others complete, the summary names it; --resume once it is back
      // (with an off-site copy of each archive into a local dir, as an NFS mount would be)
      const offsite = join(dir, "offsite");
      execFileSync("docker", ["stop", "-t", "2", "ls-3"], { stdio: "ignore" });
      const beforeDown = listTarget();
      let down: RecipeRun;
      try {
        down = await run("lambdastack-backup", ["-b", buildA, "-t", TARGET, "-f", siteB, "--rabbitmq.messages=false", `--offsite.to=${offsite}`]);
      } finally {
        execFileSync("docker", ["start", "ls-3"], { stdio: "ignore" });
      }
      const whileDown = listTarget().filter((n) => !beforeDown.includes(n));
      waitHost("ls-3", "elasticsearch");
      const resumed = await run("lambdastack-backup", ["-b", buildA, "-t", TARGET, "-f", siteB, "--rabbitmq.messages=false", `--offsite.to=${offsite}`, "--resume"]);
      result.hostDown = { code: down.code, output: down.output, archivesWhileDown: whileDown, resumeCode: resumed.code, resumeOutput: resumed.output, archivesAfter: listTarget().filter((n) => !beforeDown.includes(n)), offsite: existsSync(offsite) ? readdirSync(offsite).sort() : [] };
    }
    if (opts.failures !== false) {
      // the mnesia copy fails (no such dir): the node that was stopped for it is started again
      const rh = hostOf(LAYOUT_A, "rabbitmq");
      const pid = () => onHost(rh, "cat /run/lifeboat/rabbitmq-server.pid").trim();
      const pidBefore = pid();
      const r = await run("lambdastack-backup", ["-b", buildA, "-t", TARGET, "-f", siteB, "-c", "rabbitmq", "--rabbitmq.mnesia-dir=/var/lib/rabbitmq/no-such-dir"]);
      const active = spawnSync("docker", ["exec", rh, "systemctl", "is-active", "rabbitmq-server"], { stdio: "ignore" }).status === 0;
      result.mnesiaFailure = { code: r.code, output: r.output, rabbitActive: active, restarted: pid() !== pidBefore };
    }
    return result;
  } finally {
    if (opts.newHosts !== false) rmHosts(newHosts);
    if (!opts.keep) rmSync(dir, { recursive: true, force: true });
  }
}

export function lastError(output: string): string {
  return output.split("\n").filter((l) => !/^\[(dry-run|probe)\]/.test(l) && /error|refused|mismatch|damaged|not enough|failed|✖/i.test(l)).slice(-3).join(" | ").slice(0, 600);
}

/** The drill as a task: make drill-lambdastack. */
export const lambdastackDrillTask = drillTask({
  name: "drill:lambdastack",
  needs: ["docker", "lshosts"],
  description: "LambdaStack: seed five components on three Debian hosts, back up in one fan-out run, refuse damaged archives, destroy, recover onto the same hosts and onto three new ones, compare; host down, small target, dry runs",
  usage: "tasks/run.ts drill:lambdastack [--keep] [--no-new-hosts] [--no-failures] [--verbose]",
  settings: {
    keep: { type: "boolean", describe: "keep the drill's temp dir (inventories, site files, journals)" },
    "new-hosts": { type: "boolean", describe: "also recover onto ls-4..ls-6 with a second inventory", default: true },
    failures: { type: "boolean", describe: "also the failure cases (damaged archives, host down, small target, dry runs)", default: true },
  },
  async run(ctx) {
    if (ctx.dryRun) {
      ctx.log.info("[dry-run] would provision and seed ls-1..ls-3, run lambdastack-backup, destroy, run lambdastack-recovery onto the same and onto new hosts, and compare");
      return;
    }
    const r = await lambdastackDrill({ log: (l) => ctx.log.info(l), keep: ctx.settings.keep, newHosts: ctx.settings["new-hosts"], failures: ctx.settings.failures, echo: ctx.settings.verbose, signal: ctx.signal });
    ctx.log.info(`  archives  ${r.archives.filter((a) => !a.endsWith(".sha1")).join(", ")}`);
    ctx.log.info(`  compared  ${r.compared.length}: ${r.compared.join("; ")}`);
    for (const [k, v] of Object.entries(r.refusals)) ctx.log.info(`  refusal   ${k}: exit ${v.code}, hosts ${v.untouched ? "untouched" : "CHANGED"}: ${v.message}`);
    if (r.smallTarget) ctx.log.info(`  small     exit ${r.smallTarget.code}: ${lastError(r.smallTarget.output)}`);
    if (r.hostDown) ctx.log.info(`  host down exit ${r.hostDown.code} (${r.hostDown.archivesWhileDown.length / 2} archives written meanwhile); --resume exit ${r.hostDown.resumeCode}`);
    ctx.log.info(`  timings   seed ${formatDuration(r.ms.seed)}, backup ${formatDuration(r.ms.backup)}, recovery ${formatDuration(r.ms.recoverSame)} (same hosts), ${formatDuration(r.ms.recoverNew)} (new hosts)`);
    const diffs = [...r.diffsSameHosts, ...(r.diffsNewHosts ?? [])];
    const badRefusals = Object.entries(r.refusals).filter(([k, v]) => !v.untouched || v.code !== (k.includes("dry-run") ? 0 : 3));
    if (diffs.length || badRefusals.length) throw new Error(`drill:lambdastack: ${diffs.length} differences, ${badRefusals.length} bad refusals: ${[...diffs, ...badRefusals.map(([k]) => k)].slice(0, 8).join("; ")}`);
    ctx.log.ok("every component came back on the same hosts" + (r.diffsNewHosts ? " and on new hosts" : ""));
    if (ctx.settings.keep) ctx.log.info(`  kept      ${r.dir}`);
  },
});
