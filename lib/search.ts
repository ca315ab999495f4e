// search: the Elasticsearch / OpenSearch snapshot protocol (register a repository, snapshot,
// list, prune, restore, health), over httpJson.
//
// What Hoss (`hossadm backup/restore`) and LambdaStack/Epiphany's logging backup and recovery do
// with a search cluster, in one place:
//   backup:   PUT _snapshot/REPO {type: fs, settings: {location}} → PUT _snapshot/REPO/NAME →
//             poll GET _snapshot/REPO/NAME until it is no longer IN_PROGRESS → the state must be
//             SUCCESS → delete the snapshots the retention does not keep;
//   recovery: close (or delete) the indices the snapshot holds → POST _snapshot/REPO/NAME/_restore →
//             wait until the restored indices are at least yellow.
// Reads (GET) run in dry-run too; every call that changes the cluster is printed, not sent, and
// the waits return a placeholder. Repository and snapshot names are case-sensitive: LambdaStack's
// backup registers `LambdaStack` and its recovery asks for `lambdastack`, so a missing repository
// error lists the ones that are registered.
import { setTimeout as sleep } from "node:timers/promises";
import { throwIfAborted, useContext, type Context } from "./context.ts";
import { LifeboatError, UsageError } from "./errors.ts";
import { waitForHealthy, type HttpProbe } from "./health.ts";
import { httpJson, HttpError, type BasicAuth, type HttpJsonOptions } from "./http.ts";
import { formatDuration } from "./log.ts";

/** How to reach the cluster: shared by every search helper. */
export interface SearchOptions {
  /** HTTP basic auth (the password is masked). `http://user:pass@host:9200` in the URL works too. */
  auth?: BasicAuth;
  /** A bearer token, sent as `Authorization: Bearer …` and masked. */
  bearer?: string;
  /** Extra request headers (authorization, token and key values are masked). */
  headers?: Record<string, string>;
  /** Retries of reads and repeatable writes on connection errors, 5xx and 429 (httpJson's default: 3). Snapshot creation and restore are never repeated. */
  retries?: number;
  ctx?: Context;
}

/** Options for {@link searchRegisterRepository}. */
export interface SearchRepositoryOptions extends SearchOptions {
  /** Repository type; only the shared-filesystem type is supported (default "fs"). */
  type?: "fs";
  /** The directory as the search node sees it; it must lie under the node's `path.repo`. */
  location: string;
  /** Compress index metadata files (default: the server's, false). */
  compress?: boolean;
  /** Register read-only: for restoring from a repository another cluster writes to. */
  readonly?: boolean;
  /** Let the node check that it can write there (default true). */
  verify?: boolean;
}

/** Options for {@link searchSnapshot}. */
export interface SearchSnapshotOptions extends SearchOptions {
  /** Indices (names or patterns) to snapshot (default: all). */
  indices?: string[];
  /** Include the cluster state: templates, persistent settings (Hoss: true). */
  includeGlobalState: boolean;
  /** Give up waiting after this many ms (default 12 hours, as LambdaStack waits). */
  timeoutMs?: number;
  /** Pause between polls of GET _snapshot/REPO/NAME, in ms (default 10 000). 0: hold one request open with wait_for_completion=true instead. */
  pollIntervalMs?: number;
  /** Take what there is when some primaries are unassigned; the snapshot then ends PARTIAL, which still throws (default false: the node refuses to start). */
  partial?: boolean;
  /** Free-form metadata stored with the snapshot. */
  metadata?: Record<string, unknown>;
  /**
   * When a snapshot of that name is there already: "refuse" (default: the node's "already
   * exists" is the error), or "use" it, for a name that is the run's own and a run that may be
   * resumed (a killed run took it before it could record so): used when it ended SUCCESS, waited
   * for while in progress, deleted and taken again when it ended otherwise.
   */
  existing?: "refuse" | "use";
}

/** A snapshot as GET _snapshot/REPO/NAME describes it. */
export interface SearchSnapshotInfo {
  name: string;
  uuid: string;
  /** IN_PROGRESS, SUCCESS, PARTIAL, FAILED or INCOMPATIBLE. */
  state: string;
  indices: string[];
  includeGlobalState: boolean;
  start: Date;
  /** Unset while in progress. */
  end?: Date;
  shards: { total: number; successful: number; failed: number };
  /** Shards that were not stored, and why. */
  failures: { index: string; shard: number; reason: string; status?: string }[];
  /** Why a FAILED snapshot failed. */
  reason?: string;
  /** True for the placeholder a dry run returns. */
  dryRun?: boolean;
}

/** Options for {@link searchLatestSnapshot}. */
export interface SearchLatestOptions extends SearchOptions {
  /** Also consider PARTIAL snapshots (default false: only SUCCESS). */
  includePartial?: boolean;
}

/** Options for {@link searchDeleteSnapshots}: `names`, or `keepLast` and/or `olderThan`. */
export interface SearchDeleteOptions extends SearchOptions {
  /** Keep the newest N snapshots (N ≥ 1). */
  keepLast?: number;
  /** Delete snapshots that started before this time (a Date), or more than this many ms ago (a number). With keepLast, a snapshot is kept when either rule keeps it. */
  olderThan?: Date | number;
  /** Delete exactly these snapshots (each must exist). Not with keepLast or olderThan. */
  names?: string[];
}

/** What {@link searchDeleteSnapshots} did (in dry-run: would do). */
export interface SearchDeleteResult {
  deleted: string[];
  kept: string[];
}

/** Options for {@link searchRestore}. */
export interface SearchRestoreOptions extends SearchOptions {
  /** Indices of the snapshot to restore: names or patterns, `-pattern` excludes (default: all it holds). */
  indices?: string[];
  /** What to do with existing indices of the same name: close them (the restore replaces them) or delete them first. */
  existing: "close" | "delete";
  /** Restore the cluster state too (templates, persistent settings). */
  includeGlobalState: boolean;
  /** Hold the _restore request until the shards are restored (default true); either way it then waits for health. */
  waitForCompletion?: boolean;
  /** Time limit of the restore request and of the health wait after it, each (default 1 hour). */
  timeoutMs?: number;
}

/** What {@link searchRestore} did (in dry-run: would do). */
export interface SearchRestoreResult {
  snapshot: string;
  /** The restored indices. */
  indices: string[];
  /** Existing indices that were closed, then replaced. */
  closed: string[];
  /** Existing indices that were deleted first. */
  deleted: string[];
  dryRun: boolean;
}

/** GET _cluster/health, as the node answers it. */
export interface SearchHealth {
  status: "green" | "yellow" | "red";
  cluster_name: string;
  number_of_nodes: number;
  active_primary_shards: number;
  unassigned_shards: number;
  [key: string]: unknown;
}

/** Options for {@link searchHealthProbe}. */
export interface SearchProbeOptions extends Pick<SearchOptions, "auth" | "bearer" | "headers"> {
  /** The worst status that counts as up (default "yellow": a one-node cluster never gets green with replicas). */
  atLeast?: "yellow" | "green";
  /** Only these indices' health (default: the cluster's). */
  indices?: string[];
}

const RANK = { green: 0, yellow: 1, red: 2 } as const;

/**
 * Registers (or updates) a snapshot repository: PUT _snapshot/REPO.
 * @example
 * await searchRegisterRepository("http://127.0.0.1:9200", "hoss-backup-repository", { location: "/mnt/snapshots" });
 */
export async function searchRegisterRepository(url: string, repo: string, opts: SearchRepositoryOptions): Promise<void> {
  const settings: Record<string, unknown> = { location: opts.location };
  if (opts.compress !== undefined) settings.compress = opts.compress;
  if (opts.readonly !== undefined) settings.readonly = opts.readonly;
  const query = opts.verify === false ? "?verify=false" : "";
  await call(url, `_snapshot/${seg(repo)}${query}`, opts, { method: "PUT", body: { type: opts.type ?? "fs", settings } }).catch((e) => {
    const { reason } = osError(e);
    throw new LifeboatError(`registering snapshot repository ${repo} at ${opts.location} on ${shown(url, opts)} failed: ${reason}`, {
      hint: /path\.repo/.test(reason)
        ? `add ${opts.location} (or a parent) to path.repo in the node's opensearch.yml / elasticsearch.yml and restart it`
        : /not accessible|i_o_exception|AccessDenied|permission/i.test(reason)
          ? `the search node's user must be able to write ${opts.location}`
          : "check the URL, the credentials and the node's log",
      cause: e,
    });
  });
}

/**
 * Takes a snapshot and waits until it is done; throws unless it ended SUCCESS (PARTIAL and
 * FAILED are named, with the shards that failed). In dry-run it returns a placeholder.
 * @example
 * const snap = await searchSnapshot(es, "hoss-backup-repository", `hoss-snap-${stamp().toLowerCase()}`, { includeGlobalState: true });
 * console.log(snap.indices);
 */
export async function searchSnapshot(url: string, repo: string, name: string, opts: SearchSnapshotOptions): Promise<SearchSnapshotInfo> {
  const ctx = opts.ctx ?? useContext();
  const timeoutMs = opts.timeoutMs ?? 12 * 3600_000;
  const interval = opts.pollIntervalMs ?? 10_000;
  const body: Record<string, unknown> = { include_global_state: opts.includeGlobalState };
  if (opts.indices?.length) body.indices = opts.indices.join(",");
  if (opts.partial) body.partial = true;
  if (opts.metadata) body.metadata = opts.metadata;
  const placeholder: SearchSnapshotInfo = {
    name, uuid: "dry-run", state: "SUCCESS", indices: opts.indices ?? [], includeGlobalState: opts.includeGlobalState,
    start: new Date(), shards: { total: 0, successful: 0, failed: 0 }, failures: [], dryRun: true,
  };
  const path = `_snapshot/${seg(repo)}/${seg(name)}`;
  const refused = (e: unknown): never => {
    const { type, reason } = osError(e);
    throw new LifeboatError(`snapshot ${name} in repository ${repo} on ${shown(url, opts)} was refused: ${reason}`, {
      hint: /primary shards/.test(reason)
        ? "some indices are red (primaries unassigned): check GET _cluster/health and _cat/indices; pass partial: true only to keep what there is"
        : type === "repository_missing_exception"
          ? `register the repository first (searchRegisterRepository); names are case-sensitive`
          : /already exists|already in progress/.test(reason)
            ? "choose another snapshot name, or delete the old snapshot first"
            : "check the node's log",
      cause: e,
    });
  };
  // A snapshot of that name left by a killed run (opts.existing "use"): "done" when it ended
  // SUCCESS, "wait" while it runs; one that ended otherwise is deleted and taken again.
  const leftOver = async (e: unknown): Promise<"done" | "wait" | "again"> => {
    if (opts.existing !== "use" || !/already exists/.test(osError(e).reason)) return refused(e);
    const there = await searchGetSnapshot(url, repo, name, opts);
    if (there.state === "SUCCESS") {
      ctx.log.info(`snapshot ${name} is in ${repo} already (an interrupted run took it): used`);
      return "done";
    }
    if (there.state === "IN_PROGRESS" || there.state === "STARTED" || there.state === "INIT") {
      ctx.log.info(`snapshot ${name} is in ${repo} already and still ${there.state} (an interrupted run started it): waiting for it`);
      return "wait";
    }
    ctx.log.warn(`snapshot ${name} is in ${repo} already, ${there.state} (an interrupted run took it): deleting it and taking it again`);
    await call(url, path, opts, { method: "DELETE", retries: 0 });
    return "again";
  };
  /** PUT, with a left-over snapshot of the name dealt with once: the node's answer, or what leftOver found. */
  const put = async (query: string, req: HttpJsonOptions): Promise<unknown> => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await call(url, `${path}${query}`, opts, { method: "PUT", body, retries: 0, ...req });
      } catch (e) {
        const found = attempt === 0 ? await leftOver(e) : refused(e);
        if (found !== "again") return found;
      }
    }
  };
  let info: SearchSnapshotInfo | undefined;
  const answer = interval <= 0
    ? await put("?wait_for_completion=true", { timeoutMs, dryRunResult: { snapshot: null } })
    : await put("", { dryRunResult: null });
  if (answer === "done") info = await searchGetSnapshot(url, repo, name, opts);
  else if (answer !== "wait" && interval <= 0) {
    const raw = (answer as { snapshot: RawSnapshot | null }).snapshot;
    if (!raw) return placeholder; // dry run
    info = fromRaw(raw);
  } else if (ctx.dryRun && answer === null) return placeholder;
  if (!info) {
    const every = interval > 0 ? interval : 10_000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      throwIfAborted(ctx);
      info = await searchGetSnapshot(url, repo, name, opts);
      if (info.state !== "IN_PROGRESS" && info.state !== "STARTED" && info.state !== "INIT") break;
      if (Date.now() >= deadline) {
        throw new LifeboatError(`snapshot ${name} in repository ${repo} is still ${info.state} after ${formatDuration(timeoutMs)} (${info.shards.successful}/${info.shards.total} shards done)`, {
          hint: "it goes on in the cluster: raise timeoutMs, or watch GET _snapshot/REPO/NAME/_status; a snapshot cannot be resumed by taking it again",
        });
      }
      ctx.log.debug(`snapshot ${name}: ${info.state}, ${info.shards.successful}/${info.shards.total} shards`);
      await sleep(Math.min(every, Math.max(0, deadline - Date.now())), undefined, { signal: ctx.signal }).catch(() => throwIfAborted(ctx));
    }
  }
  searchCheckSnapshot(info, repo);
  ctx.log.ok(`snapshot ${name} in ${repo}: SUCCESS, ${info.indices.length} indices, ${info.shards.total} shards`);
  return info;
}

/**
 * Throws a LifeboatError unless the snapshot ended SUCCESS: names PARTIAL, FAILED or
 * INCOMPATIBLE, the reason and each failed shard.
 * @example
 * searchCheckSnapshot(await searchGetSnapshot(es, "backups", "nightly"), "backups");
 */
export function searchCheckSnapshot(info: SearchSnapshotInfo, repo: string): void {
  if (info.state === "SUCCESS") return;
  const failed = info.failures.map((f) => `${f.index}[${f.shard}]: ${f.reason}`);
  const parts = [
    info.reason ? `reason: ${info.reason}` : "",
    `${info.shards.failed} of ${info.shards.total} shards failed`,
    failed.length ? `failures: ${failed.slice(0, 10).join("; ")}${failed.length > 10 ? `; … ${failed.length - 10} more` : ""}` : "",
  ].filter(Boolean);
  const hints: Record<string, string> = {
    PARTIAL: "some shards were not stored: check that every index is green or yellow (GET _cluster/health, _cat/indices) and the node's log, then snapshot again",
    FAILED: "nothing usable was stored: check the node's log and that the repository location is writable by the search node, then snapshot again",
    INCOMPATIBLE: "the snapshot was written by a version this cluster cannot read",
  };
  throw new LifeboatError(`snapshot ${info.name} in repository ${repo} ended ${info.state}, not SUCCESS (${parts.join("; ")})`, {
    hint: hints[info.state] ?? "check the node's log",
  });
}

/**
 * One snapshot's description: GET _snapshot/REPO/NAME.
 * @example
 * const s = await searchGetSnapshot(es, "backups", "nightly"); // s.state, s.indices
 */
export async function searchGetSnapshot(url: string, repo: string, name: string, opts: SearchOptions = {}): Promise<SearchSnapshotInfo> {
  const r = await call<{ snapshots: RawSnapshot[] }>(url, `_snapshot/${seg(repo)}/${seg(name)}`, opts).catch((e) => missing(e, url, repo, opts, name));
  const s = r.snapshots?.[0];
  if (!s) throw new LifeboatError(`snapshot ${name} is not in repository ${repo} on ${shown(url, opts)}`, { hint: "list the snapshots with searchListSnapshots" });
  return fromRaw(s);
}

/**
 * Every snapshot in the repository, oldest first (by start time).
 * @example
 * for (const s of await searchListSnapshots(es, "backups")) console.log(s.name, s.state, s.start);
 */
export async function searchListSnapshots(url: string, repo: string, opts: SearchOptions = {}): Promise<SearchSnapshotInfo[]> {
  const r = await call<{ snapshots: RawSnapshot[] }>(url, `_snapshot/${seg(repo)}/_all`, opts).catch((e) => missing(e, url, repo, opts));
  return (r.snapshots ?? []).map(fromRaw).sort((a, b) => a.start.getTime() - b.start.getTime() || a.name.localeCompare(b.name));
}

/**
 * The newest snapshot that ended SUCCESS (LambdaStack's `snapshot_name: latest`); throws when there is none.
 * @example
 * const latest = await searchLatestSnapshot(es, "lambdastack");
 * await searchRestore(es, "lambdastack", latest.name, { existing: "close", includeGlobalState: false });
 */
export async function searchLatestSnapshot(url: string, repo: string, opts: SearchLatestOptions = {}): Promise<SearchSnapshotInfo> {
  const all = await searchListSnapshots(url, repo, opts);
  const ok = all.filter((s) => s.state === "SUCCESS" || (opts.includePartial && s.state === "PARTIAL"));
  const latest = ok[ok.length - 1];
  if (!latest) {
    throw new LifeboatError(`repository ${repo} on ${shown(url, opts)} holds no ${opts.includePartial ? "SUCCESS or PARTIAL" : "SUCCESS"} snapshot (${all.length} snapshots: ${all.map((s) => `${s.name} ${s.state}`).join(", ") || "none"})`, {
      hint: "take a snapshot first, or check that the repository points at the right location",
    });
  }
  return latest;
}

/**
 * Deletes old snapshots: those beyond the newest `keepLast`, or started before `olderThan`, or
 * exactly `names`. A snapshot in progress is never deleted, and neither is the newest SUCCESS one
 * under keepLast/olderThan. One DELETE per snapshot (older clusters take one name at a time).
 * @example
 * await searchDeleteSnapshots(es, "lambdastack", { keepLast: 1 });                     // LambdaStack: only the newest stays
 * await searchDeleteSnapshots(es, "backups", { keepLast: 7, olderThan: 30 * 86_400_000 });
 * await searchDeleteSnapshots(es, "hoss-backup-repository", { names: [snap.name] });
 */
export async function searchDeleteSnapshots(url: string, repo: string, opts: SearchDeleteOptions): Promise<SearchDeleteResult> {
  const ctx = opts.ctx ?? useContext();
  const byRule = opts.keepLast !== undefined || opts.olderThan !== undefined;
  if (opts.names && byRule) throw new UsageError("searchDeleteSnapshots: give names, or keepLast/olderThan, not both");
  if (!opts.names && !byRule) throw new UsageError("searchDeleteSnapshots: say what to delete: keepLast, olderThan or names");
  if (opts.keepLast !== undefined && !(Number.isInteger(opts.keepLast) && opts.keepLast >= 1)) {
    throw new UsageError(`searchDeleteSnapshots: keepLast must be a whole number ≥ 1, not ${opts.keepLast}`, "to delete every snapshot, name them");
  }
  // In a dry run, named snapshots may be ones an earlier step would have taken: just say it.
  const all = ctx.dryRun && opts.names ? opts.names.map((name) => ({ name }) as SearchSnapshotInfo) : await searchListSnapshots(url, repo, opts);
  let doomed: SearchSnapshotInfo[];
  if (opts.names) {
    const unknown = opts.names.filter((n) => !all.some((s) => s.name === n));
    if (unknown.length) {
      throw new LifeboatError(`repository ${repo} has no snapshot ${unknown.join(", ")} (it has: ${all.map((s) => s.name).join(", ") || "none"})`, { hint: "names are case-sensitive" });
    }
    doomed = all.filter((s) => opts.names!.includes(s.name));
  } else {
    const cutoff = opts.olderThan === undefined ? undefined : typeof opts.olderThan === "number" ? Date.now() - opts.olderThan : opts.olderThan.getTime();
    const newestGood = [...all].reverse().find((s) => s.state === "SUCCESS");
    doomed = all.filter((s, i) => {
      if (s.state === "IN_PROGRESS" || s === newestGood) return false;
      const keptByCount = opts.keepLast !== undefined && i >= all.length - opts.keepLast;
      const keptByAge = cutoff !== undefined && s.start.getTime() >= cutoff;
      return !keptByCount && !keptByAge;
    });
  }
  const inProgress = doomed.filter((s) => s.state === "IN_PROGRESS");
  if (inProgress.length) throw new LifeboatError(`snapshot ${inProgress.map((s) => s.name).join(", ")} in ${repo} is still in progress; not deleting it`, { hint: "wait until it ends, then delete it" });
  for (const s of doomed) {
    throwIfAborted(ctx);
    await call(url, `_snapshot/${seg(repo)}/${seg(s.name)}`, opts, { method: "DELETE", expect: [200, 404] });
  }
  const deleted = doomed.map((s) => s.name);
  const kept = all.filter((s) => !doomed.includes(s)).map((s) => s.name);
  if (deleted.length) ctx.log.ok(`${ctx.dryRun ? "would delete" : "deleted"} ${deleted.length} snapshots from ${repo}: ${deleted.join(", ")}; kept ${kept.length}`);
  return { deleted, kept };
}

/**
 * Restores a snapshot as Hoss and LambdaStack recovery do: closes (or deletes) the existing
 * indices the snapshot holds, POSTs _restore, then waits until the restored indices are at least
 * yellow. In dry-run, reads still run, the close/delete/_restore calls are printed, the wait is too.
 * @example
 * await searchRestore(es, "hoss-backup-repository", meta.search.snapshot, { existing: "delete", includeGlobalState: true });
 * await searchRestore(es, "lambdastack", latest.name, { existing: "close", includeGlobalState: false, indices: ["*", "-.opendistro_security"] });
 */
export async function searchRestore(url: string, repo: string, name: string, opts: SearchRestoreOptions): Promise<SearchRestoreResult> {
  const ctx = opts.ctx ?? useContext();
  const timeoutMs = opts.timeoutMs ?? 3600_000;
  let info: SearchSnapshotInfo;
  try {
    info = await searchGetSnapshot(url, repo, name, opts);
  } catch (e) {
    // a dry run of a restore that registers the repository in an earlier step cannot read it yet
    if (!ctx.dryRun) throw e;
    ctx.log.warn(`[dry-run] cannot read snapshot ${name} now (${(e as Error).message}); showing the restore of ${opts.indices?.join(", ") ?? "all its indices"}`);
    info = { name, uuid: "dry-run", state: "SUCCESS", indices: (opts.indices ?? []).filter((p) => !p.includes("*") && !p.startsWith("-")), includeGlobalState: opts.includeGlobalState, start: new Date(), shards: { total: 0, successful: 0, failed: 0 }, failures: [], dryRun: true };
  }
  if (info.state !== "SUCCESS" && info.state !== "PARTIAL") {
    throw new LifeboatError(`snapshot ${name} in repository ${repo} is ${info.state}: it cannot be restored${info.reason ? ` (${info.reason})` : ""}`, { hint: "restore another snapshot (searchListSnapshots lists them)" });
  }
  const indices = select(info.indices, opts.indices);
  if (indices.length === 0 && !info.dryRun) {
    throw new LifeboatError(`restoring snapshot ${name}: ${opts.indices ? `${opts.indices.join(", ")} selects none of its indices` : "it holds no index"} (it has: ${info.indices.join(", ") || "none"})`, { hint: "check the indices option" });
  }
  const broken = info.failures.filter((f) => indices.includes(f.index));
  if (broken.length) {
    throw new LifeboatError(`snapshot ${name} is PARTIAL and did not store ${[...new Set(broken.map((f) => f.index))].join(", ")}: ${broken.map((f) => f.reason).join("; ")}`, {
      hint: "leave those indices out (indices: [\"*\", \"-NAME\"]) or restore another snapshot",
    });
  }

  // the indices in the way: an open index with the same name makes _restore fail
  const present = info.dryRun
    ? indices.map((index) => ({ index, status: "open" })) // the server is not there yet: show the worst case
    : indices.length
    ? await call<{ index: string; status: string }[]>(url, "_cat/indices?format=json&h=index,status", opts).then((rows) => rows.filter((r) => indices.includes(r.index)))
    : [];
  const closed: string[] = [];
  const deleted: string[] = [];
  if (opts.existing === "delete" && present.length) {
    deleted.push(...present.map((r) => r.index));
    await call(url, list(deleted), opts, { method: "DELETE", expect: [200, 404] });
  } else if (opts.existing === "close") {
    closed.push(...present.filter((r) => r.status === "open").map((r) => r.index));
    if (closed.length) await call(url, `${list(closed)}/_close`, opts, { method: "POST" });
  }

  const wait = opts.waitForCompletion ?? true;
  const body: Record<string, unknown> = { include_global_state: opts.includeGlobalState };
  if (indices.length) body.indices = indices.join(",");
  const r = await call<{ snapshot?: { indices: string[]; shards: { total: number; failed: number } }; accepted?: boolean } | null>(
    url, `_snapshot/${seg(repo)}/${seg(name)}/_restore?wait_for_completion=${wait}`, opts,
    { method: "POST", body, retries: 0, timeoutMs, dryRunResult: null },
  ).catch((e) => {
    const { reason } = osError(e);
    throw new LifeboatError(`restoring snapshot ${name} from repository ${repo} on ${shown(url, opts)} failed: ${reason}${closed.length ? ` (${closed.join(", ")} left closed)` : ""}`, {
      hint: /open index with same name/.test(reason)
        ? "an index was opened again meanwhile: stop whatever writes to the cluster, then restore again"
        : /checksum|corrupt|missing/i.test(reason)
          ? "the snapshot in the repository is damaged: restore another one"
          : "check the node's log; closed indices can be reopened with POST INDEX/_open",
      cause: e,
    });
  });
  if (r?.snapshot && r.snapshot.shards.failed > 0) {
    throw new LifeboatError(`restoring snapshot ${name}: ${r.snapshot.shards.failed} of ${r.snapshot.shards.total} shards failed`, { hint: "check the node's log and GET _cat/shards" });
  }
  const restored = r?.snapshot?.indices ?? indices;
  if (restored.length) {
    await waitForHealthy(searchHealthProbe(url, { ...opts, indices: restored }), {
      timeoutMs,
      label: `the ${restored.length} restored indices of snapshot ${name} to be at least yellow`,
      hint: "a restored index stays red while its primaries cannot be assigned: check GET _cluster/allocation/explain",
      ctx,
    });
  }
  if (!ctx.dryRun) ctx.log.ok(`restored ${restored.length} indices from snapshot ${name}: ${restored.join(", ")}`);
  return { snapshot: name, indices: restored, closed, deleted, dryRun: ctx.dryRun };
}

/**
 * The cluster's health: GET _cluster/health.
 * @example
 * if ((await searchHealth(es)).status === "red") throw new LifeboatError("the cluster is red");
 */
export function searchHealth(url: string, opts: SearchOptions = {}): Promise<SearchHealth> {
  return call<SearchHealth>(url, "_cluster/health", opts);
}

/**
 * A readiness probe for waitForHealthy: up when the cluster (or the given indices) is at least yellow.
 * @example
 * await waitForHealthy(searchHealthProbe("http://127.0.0.1:9200", { auth }), { timeoutMs: 60_000, label: "OpenSearch" });
 */
export function searchHealthProbe(url: string, opts: SearchProbeOptions = {}): HttpProbe {
  const worst = RANK[opts.atLeast ?? "yellow"];
  const path = opts.indices?.length ? `_cluster/health/${list(opts.indices)}` : "_cluster/health";
  return {
    http: join(url, path),
    auth: opts.auth,
    headers: headersOf(opts),
    json: (h: { status?: string }) => h?.status !== undefined && h.status in RANK && RANK[h.status as keyof typeof RANK] <= worst,
  };
}

// ---------------------------------------------------------------------------------

interface RawSnapshot {
  snapshot: string;
  uuid?: string;
  state?: string;
  indices?: string[];
  include_global_state?: boolean;
  start_time_in_millis?: number;
  end_time_in_millis?: number;
  reason?: string;
  failures?: { index?: string; shard_id?: number; reason?: string; status?: string }[];
  shards?: { total?: number; successful?: number; failed?: number };
}

function fromRaw(s: RawSnapshot): SearchSnapshotInfo {
  const failures = (s.failures ?? []).map((f) => ({ index: f.index ?? "?", shard: f.shard_id ?? 0, reason: f.reason ?? "unknown", status: f.status }));
  const total = s.shards?.total ?? 0;
  return {
    name: s.snapshot,
    uuid: s.uuid ?? "",
    state: s.state ?? "UNKNOWN",
    indices: s.indices ?? [],
    includeGlobalState: s.include_global_state ?? false,
    start: new Date(s.start_time_in_millis ?? 0),
    end: s.end_time_in_millis ? new Date(s.end_time_in_millis) : undefined,
    shards: { total, successful: s.shards?.successful ?? total - failures.length, failed: s.shards?.failed ?? failures.length },
    failures,
    reason: s.reason || undefined,
  };
}

/** Indices of the snapshot that patterns pick, in order: `name`, `glob*`, `-exclude`. */
function select(all: string[], patterns: string[] | undefined): string[] {
  if (!patterns?.length) return [...all];
  const re = (g: string) => new RegExp(`^${g.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`);
  const picked = new Set<string>();
  for (const p of patterns) {
    if (p.startsWith("-")) {
      for (const n of [...picked]) if (re(p.slice(1)).test(n)) picked.delete(n);
    } else {
      for (const n of all) if (re(p).test(n)) picked.add(n);
    }
  }
  return all.filter((n) => picked.has(n));
}

function seg(name: string): string {
  // encodeURIComponent leaves "." and ".." as they are, and URL parsing then takes them as path
  // steps (DELETE _snapshot/REPO/.. would unregister the repository); a leading "_" names an API.
  if (name === "" || name === "." || name === ".." || name.startsWith("_")) {
    throw new UsageError(`${JSON.stringify(name)} is not a valid repository, snapshot or index name`, "names are lower-case and do not start with _ (Elasticsearch/OpenSearch's own rule)");
  }
  return encodeURIComponent(name);
}

function list(names: string[]): string {
  return names.map(seg).join(",");
}

function join(url: string, path: string): string {
  return `${url.replace(/\/+$/, "")}/${path}`;
}

function headersOf(opts: Pick<SearchOptions, "bearer" | "headers">): Record<string, string> | undefined {
  if (!opts.bearer) return opts.headers;
  return { ...opts.headers, authorization: `Bearer ${opts.bearer}` };
}

/** The URL as messages show it: without credentials. */
function shown(url: string, opts: SearchOptions): string {
  const ctx = opts.ctx ?? useContext();
  try {
    const u = new URL(url);
    u.username = "";
    u.password = "";
    return u.href.replace(/\/$/, "");
  } catch {
    return ctx.secrets.redact(url);
  }
}

function call<T = unknown>(url: string, path: string, opts: SearchOptions, req: HttpJsonOptions = {}): Promise<T> {
  return httpJson<T>(join(url, path), { auth: opts.auth, headers: headersOf(opts), retries: opts.retries, ctx: opts.ctx, ...req });
}

/** The node's own words from an error answer: {"error":{"type","reason"}}. */
function osError(e: unknown): { type?: string; reason: string } {
  if (e instanceof HttpError && e.body) {
    try {
      const b = JSON.parse(e.body) as { error?: { type?: string; reason?: string; caused_by?: { reason?: string }; root_cause?: { reason?: string }[] } | string };
      if (typeof b.error === "string") return { reason: b.error };
      if (b.error?.reason) {
        const deeper = b.error.caused_by?.reason ?? b.error.root_cause?.[0]?.reason;
        return { type: b.error.type, reason: deeper && deeper !== b.error.reason ? `${b.error.reason}: ${deeper}` : b.error.reason };
      }
    } catch {
      // trimmed: pick the first type and reason out of the text
      const type = /"type":"([^"]+)"/.exec(e.body)?.[1];
      const reason = /"reason":"((?:[^"\\]|\\.)*)/.exec(e.body)?.[1];
      if (reason) return { type, reason };
    }
    return { reason: `HTTP ${e.status}: ${e.body}` };
  }
  return { reason: (e as Error)?.message ?? String(e) };
}

/** Turns "repository missing" into an error that lists the registered ones (LambdaStack vs lambdastack). */
async function missing(e: unknown, url: string, repo: string, opts: SearchOptions, snapshot?: string): Promise<never> {
  const { type, reason } = osError(e);
  if (type === "repository_missing_exception") {
    const known = await call<Record<string, unknown>>(url, "_snapshot", opts).then(Object.keys, () => [] as string[]);
    const alike = known.filter((k) => k.toLowerCase() === repo.toLowerCase());
    throw new LifeboatError(`snapshot repository ${repo} is not registered on ${shown(url, opts)} (registered: ${known.join(", ") || "none"})`, {
      hint: alike.length ? `names are case-sensitive: did you mean ${alike.join(" or ")}?` : "register it with searchRegisterRepository at the location that holds the snapshots",
      cause: e,
    });
  }
  if (type === "snapshot_missing_exception") {
    throw new LifeboatError(`snapshot ${snapshot} is not in repository ${repo} on ${shown(url, opts)}`, { hint: "list the snapshots with searchListSnapshots", cause: e });
  }
  throw new LifeboatError(`reading ${snapshot ? `snapshot ${snapshot}` : "the snapshots"} of repository ${repo} on ${shown(url, opts)} failed: ${reason}`, { hint: "check the URL and the credentials", cause: e });
}
