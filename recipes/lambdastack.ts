// LambdaStack: what lambdastack-backup.ts and lambdastack-recovery.ts share, declared once.
//
//   - `settings`: the one settings table of both recipes. The site file can be LambdaStack's own
//     `configuration/backup` or `configuration/recovery` document (kind, title, name, provider,
//     specification.components.<name>.enabled / .snapshot_name are read as they are), plus
//     lifeboat's own keys beside them (recipes/lambdastack.site.example.yaml).
//   - `COMPONENTS`: the component names, in LambdaStack's (sorted) order.
//   - `Meta`: what each archive's manifest records (`meta.lambdastack`), which recovery reads.
//   - `Part`, `BackupPart`, `RecoveryPart`: what each component file (recipes/lambdastack/*.ts)
//     gives the recipes: one archive per part, `<prefix>_<YYYYMMDD-HHMMSS>.tar.gz`.
//   - `argvWithShortFlags`: LambdaStack's own `-b BUILD_DIR -t TARGET_PATH -c a,b -f FILE`.
//
// This file runs nothing: the recipes import it.
import { AGE_SETTINGS, offsiteSettings, UsageError, groupHosts, inventoryHost, loadInventory, sshTunnel, type Context, type Inventory, type InventoryHost, type SettingSpecs, type SettingValues, type SshTarget } from "../lib/mod.ts";

const BACKUP = ["lambdastack-backup"] as const;
const RECOVERY = ["lambdastack-recovery"] as const;

/** LambdaStack's components, in the order its engine runs them (kubernetes is not supported). */
export const COMPONENTS = ["load_balancer", "logging", "monitoring", "postgresql", "rabbitmq"] as const;
export type Component = (typeof COMPONENTS)[number];

const componentKeys = Object.fromEntries(
  COMPONENTS.flatMap((c) => [
    [`specification.components.${c}.enabled`, { type: "boolean", describe: `LambdaStack document: back up / recover ${c} (when -c is not given)` }],
    [`specification.components.${c}.snapshot_name`, { describe: `LambdaStack recovery document: ${c}'s snapshot, latest or YYYYMMDD-HHMMSS (a --snapshot flag or env wins over it)`, usedBy: RECOVERY }],
  ]),
) as Record<`specification.components.${Component}.${"enabled" | "snapshot_name"}`, { type?: "boolean"; describe: string; usedBy?: readonly string[] }>;

/** Why lifeboat leaves kubernetes out, said when a document enables it. */
const KUBERNETES_LEFT_OUT = "lifeboat does not back up kubernetes: LambdaStack has no recovery for it (its own default document says recovery is done by hand, per the Kubernetes documentation), so take an etcd snapshot (etcdctl snapshot save) and /etc/kubernetes/pki with Kubernetes' own tools";

/** The settings of both LambdaStack recipes (see --help of each, and lambdastack.site.example.yaml). */
export const settings = {
  "build-dir": { describe: "-b: the build dir holding the cluster's Ansible inventory (or the inventory file itself)", required: true },
  "target-path": { describe: "-t: where archives land: this dir on the repository host (LambdaStack's /lsbackup/mounted), or here when there is none", default: "/lsbackup/mounted" },
  components: { type: "list", describe: "-c: components to back up / recover (default: those enabled in the document; a document enabling none is refused; no document: all)", default: [] },
  "repository.host": { describe: "inventory host that keeps the archives (default: the first host of group `repository`; `local`: this machine)" },
  concurrency: { type: "number", describe: "hosts × components worked on at once", default: 4 },
  "staging-dir": { describe: "scratch space on this machine (one dir per archive while it is built or unpacked)", default: "/var/tmp/lifeboat-lambdastack" },
  "ssh.identity-file": { describe: "ssh key for hosts whose inventory entry names none" },
  "ssh.known-hosts": { describe: "known_hosts file; with it, host keys are checked strictly" },
  "postgresql.os-user": { describe: "the OS user pg_dumpall and psql run as, reached over ssh with the host's key (LambdaStack's become_user)", default: "postgres" },
  "postgresql.version": { describe: "PostgreSQL major version (Debian's /etc/postgresql/VERSION/main)", default: "15" },
  "postgresql.config-dir": { describe: "config dir (default /etc/postgresql/VERSION/main)" },
  "postgresql.data-dir": { describe: "data dir (default /var/lib/postgresql/VERSION/main)" },
  "postgresql.restore-configs": { type: "boolean", describe: "recovery: put the backed-up *.conf back (upstream keeps the current ones; Epiphany #2565)", default: false, usedBy: RECOVERY },
  "monitoring.data-directory": { describe: "Prometheus --storage.tsdb.path", default: "/var/lib/prometheus" },
  "monitoring.prometheus-port": { type: "number", describe: "Prometheus port on its host (admin API enabled)", default: 9090 },
  "monitoring.alertmanager-port": { type: "number", describe: "Alertmanager port on its host", default: 9093 },
  "monitoring.grafana-data-dir": { describe: "Grafana's data dir", default: "/var/lib/grafana" },
  "logging.port": { type: "number", describe: "Elasticsearch/OpenSearch port on its host", default: 9200 },
  "logging.repository": { describe: "snapshot repository name, the same for backup and recovery (upstream: LambdaStack vs lambdastack)", default: "lambdastack" },
  "logging.location": { describe: "fs repository dir on the logging host (under path.repo)", default: "/var/lib/elasticsearch-snapshots" },
  "logging.user": { describe: "search API user (empty: none)" },
  "logging.password": { describe: "search API password", secret: true },
  "rabbitmq.port": { type: "number", describe: "management API port on the RabbitMQ host", default: 15672 },
  "rabbitmq.user": { describe: "management API user", default: "guest" },
  "rabbitmq.password": { describe: "management API password", secret: true, default: "guest" },
  "rabbitmq.messages": { type: "boolean", describe: "also the mnesia dir (messages), copied while the node is stopped (runbook §4.2)", default: false },
  "rabbitmq.mnesia-dir": { describe: "RABBITMQ_MNESIA_BASE", default: "/var/lib/rabbitmq/mnesia" },
  snapshot: { describe: "recovery: latest or YYYYMMDD-HHMMSS, for components whose document sets no snapshot_name", default: "latest", usedBy: RECOVERY },
  from: { describe: "recovery: take the archives from this off-site destination (the backup's offsite.to: s3://BUCKET/PREFIX, ssh://USER@HOST:PORT/DIR or a path, with the offsite.s3.* / offsite.ssh.* settings) instead of target-path on the repository host", usedBy: RECOVERY },
  ...AGE_SETTINGS,
  ...offsiteSettings(BACKUP), // offsite.to: each archive is also copied there (lib/offsite.ts); retention: the destination's own
  // LambdaStack's document header: accepted so an operator's backup.yml / recovery.yml is the site file
  kind: { describe: "LambdaStack document kind (configuration/backup or configuration/recovery)", choices: ["configuration/backup", "configuration/recovery"] },
  title: { describe: "LambdaStack document title (ignored)" },
  name: { describe: "LambdaStack document name (ignored)" },
  provider: { describe: "LambdaStack document provider (ignored)" },
  version: { describe: "LambdaStack document version (ignored)" },
  ...componentKeys,
  // in LambdaStack's default backup document (enabled: false); lifeboat says why it is left out when it is true
  "specification.components.kubernetes.enabled": { type: "boolean", describe: "LambdaStack backup document: kubernetes is NOT backed up by lifeboat (LambdaStack recovers it by hand); true only warns" },
} as const satisfies SettingSpecs;

export type Settings = SettingValues<typeof settings>;

/** What each archive's manifest records in `meta.lambdastack`, and recovery reads back. */
export interface Meta {
  component: Component;
  /** LambdaStack's snapshot prefix, e.g. prometheus_snapshot. */
  prefix: string;
  /** YYYYMMDD-HHMMSS (UTC) of the backup run. */
  snapshot: string;
  /** The inventory host it came from, and its ssh address at the time. */
  host: string;
  address: string;
  /** Part-specific facts (Prometheus snapshot name, primary, database bytes …). */
  facts: Record<string, unknown>;
}

/** What the manifest's recipe data holds. */
export type ArchiveMeta = { lambdastack: Meta };

/** What component files get: the settings, the inventory, and how to reach a host. */
export interface Env {
  s: Settings;
  inv: Inventory;
  /** A host's ssh target, with the site's key and known_hosts when the inventory has none. */
  ssh(h: InventoryHost): SshTarget;
  /** The hosts of a group, [] when the inventory has none. */
  hosts(group: string): InventoryHost[];
  ctx: Context;
}

/** One archive of one component. */
export interface Part {
  component: Component;
  prefix: string;
  /** The host it is taken from / put back on (for postgresql: the group's first host; the primary is asked for, see locate). */
  host: InventoryHost;
}

/** A part as the backup takes it. */
export interface BackupPart extends Part {
  /** Bytes it will need on the target (before compression). */
  estimate(): Promise<number>;
  /**
   * The host it will be taken from when that is asked, not assumed (postgresql: the primary),
   * found by the free-space step (read-only) and journaled; the summary names it. collect asks
   * again and records where it really ran.
   */
  locate?(): Promise<string>;
  /** Puts the part's files into stage (an empty local dir); returns facts for the manifest. */
  collect(stage: string, snapshot: string): Promise<{ host?: InventoryHost; facts?: Record<string, unknown> }>;
  /** Puts the host back as it was (e.g. starts a service collect stopped): the backup step's cleanup runs it after the step, also when it failed or was interrupted (a killed run owes it to the next one). Must be harmless when collect never ran. */
  cleanup?(): Promise<void>;
}

/** A part as recovery puts it back: `files` is the unpacked archive (manifest removed). */
export interface RecoveryPart extends Part {
  /**
   * Where the part goes, found once before any host is touched (postgresql: the primary). Read-only.
   * Its result is a step output, journaled: a resumed run gets the same answer even when the
   * server that gave it is stopped by then. Passed to restore as `located`.
   */
  locate?(): Promise<Record<string, string>>;
  restore(files: string, meta: Meta, located?: Record<string, string>): Promise<Record<string, unknown>>;
}

/** The environment the component files work in. */
export function environment(ctx: Context, s: Settings): Env {
  const inv = loadInventory(s["build-dir"]);
  const ssh = (h: InventoryHost): SshTarget => ({
    ...h.ssh,
    identityFile: h.ssh.identityFile ?? (s["ssh.identity-file"] || undefined),
    knownHostsFile: s["ssh.known-hosts"] || undefined,
    options: s["ssh.known-hosts"] ? undefined : { StrictHostKeyChecking: "no", UserKnownHostsFile: "/dev/null", LogLevel: "ERROR" },
  });
  return { s, inv, ssh, hosts: (g) => groupHosts(inv, g), ctx };
}

/**
 * The components this run works on: -c, else those the document enables, else (no document
 * says anything about components) all. A document that names components but enables none is
 * refused: LambdaStack would do nothing, lifeboat will not guess. A document enabling kubernetes
 * gets a warning saying why it is left out.
 */
export function chosenComponents(ctx: Context<typeof settings>): Component[] {
  const s = ctx.settings;
  const key = (c: string) => `specification.components.${c}.enabled`;
  const doc = s.config || "the site file";
  if (s["specification.components.kubernetes.enabled"]) ctx.log.warn(`kubernetes is enabled in ${doc}, but ${KUBERNETES_LEFT_OUT}`);
  if (s.components.length) {
    for (const c of s.components) if (!(COMPONENTS as readonly string[]).includes(c)) throw new UsageError(`unknown component '${c}'`, `components are ${COMPONENTS.join(", ")} (${c === "kubernetes" ? KUBERNETES_LEFT_OUT : "kubernetes is not supported: LambdaStack recovers it by hand"})`);
    return s.components as Component[];
  }
  const enabled = COMPONENTS.filter((c) => (s as Record<string, unknown>)[key(c)] === true);
  if (enabled.length) return enabled;
  const named = [...COMPONENTS, "kubernetes"].filter((c) => ctx.sources[key(c)] && ctx.sources[key(c)] !== "unset" && ctx.sources[key(c)] !== "default");
  if (named.length) {
    throw new UsageError(`${doc} enables no component lifeboat works on (${named.map((c) => `${c}.enabled: ${(s as Record<string, unknown>)[key(c)]}`).join(", ")})`,
      `set specification.components.<name>.enabled: true for the ones to ${ctx.name.endsWith("recovery") ? "recover" : "back up"} (${COMPONENTS.join(", ")}), or pass -c ${COMPONENTS.join(",")}`);
  }
  return [...COMPONENTS];
}

/**
 * The snapshot recovery looks for, flags, then env, then the site file: a --snapshot flag (or
 * LIFEBOAT_SNAPSHOT) wins over the document's snapshot_name; else the document's snapshot_name
 * for the component; else the site file's `snapshot`; else latest.
 */
export function snapshotName(ctx: Context<typeof settings>, c: Component): string {
  const s = ctx.settings;
  const fromRun = /^(--|env )/.test(ctx.sources.snapshot ?? "");
  const doc = (s as Record<string, unknown>)[`specification.components.${c}.snapshot_name`];
  const v = String(fromRun || !doc ? s.snapshot : doc);
  if (!/^(\d{8}-\d{6}|latest)$/.test(v)) throw new UsageError(`snapshot_name '${v}' for ${c}: must be latest or YYYYMMDD-HHMMSS`);
  return v;
}

/** LambdaStack's snapshot name for a time: YYYYMMDD-HHMMSS (UTC here; LambdaStack uses the host's clock). */
export function snapshotStamp(d: Date): string {
  return d.toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
}

/** `<prefix>_<snapshot>.tar.gz`, as LambdaStack names archives (`.tar.gz.age` when encrypted). */
export function archiveName(prefix: string, snapshot: string, encrypted = false): string {
  return `${prefix}_${snapshot}.tar.gz${encrypted ? ".age" : ""}`;
}

/**
 * The fan-out items of a backup or a recovery: one per component and host (`component@host`, the
 * host as `hostOf` says, e.g. the PostgreSQL primary found by asking), its parts in order.
 */
export function componentHosts<P extends Part>(parts: readonly P[], hostOf: (p: P) => string): { key: string; parts: P[] }[] {
  const keyOf = (p: P) => `${p.component}@${hostOf(p)}`;
  return [...new Set(parts.map(keyOf))].map((key) => ({ key, parts: parts.filter((p) => keyOf(p) === key) }));
}

/** The host keeping the archives: repository.host, else the first of group `repository`; null: this machine. */
export function repositoryHost(env: Env): InventoryHost | null {
  const name = env.s["repository.host"];
  if (name === "local") return null;
  if (name) return inventoryHost(env.inv, name);
  return env.hosts("repository")[0] ?? null;
}

/** The archive recovery takes for a prefix among a dir's names: the named snapshot, or the newest. */
export function pickArchive(names: string[], prefix: string, snapshot: string): string | undefined {
  const re = new RegExp(`^${prefix}_(\\d{8}-\\d{6})\\.tar\\.gz(\\.age)?$`);
  const found = names.filter((n) => re.test(n)).sort();
  return snapshot === "latest" ? found.at(-1) : found.find((n) => n.startsWith(`${prefix}_${snapshot}.`));
}

/** LambdaStack's CLI flags: -b, -t, -c, -f (its document file) become lifeboat's settings. */
export function argvWithShortFlags(argv: string[]): string[] {
  const map: Record<string, string> = { "-b": "--build-dir", "-t": "--target-path", "-c": "--components", "-f": "--config" };
  return argv.map((a) => map[a] ?? a);
}

/** Runs fn with an ssh tunnel to a port that listens only on the host itself; always closes it. */
export async function viaTunnel<T>(target: SshTarget, port: number, fn: (url: string) => Promise<T>): Promise<T> {
  const t = await sshTunnel(target, port);
  try {
    return await fn(t.url);
  } finally {
    await t.close();
  }
}
