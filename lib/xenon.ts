// xenon: VMware Xenon's management API (PATCH /core/management), as its wiki "Backup Restore"
// and ServiceHostManagementService describe it: backup and restore requests, the host's id,
// and document counts of factories. Errors show Xenon's own message (its ServiceErrorResponse)
// plainly, e.g. "Xenon at http://h:8000 refused the backup (HTTP 500): destination /x must be a
// local file for zip backup.".
//
// Auth: a token goes as `x-xenon-auth-token` (Xenon's header); a user and password log in
// first with POST /core/authn/basic, whose answer carries the token; a 403 with that token (a
// restarted host forgot it) logs in again once.
import { LifeboatError, UsageError } from "./errors.ts";
import { useContext, type Context } from "./context.ts";
import { HttpError, httpJson } from "./http.ts";

export const XENON_BACKUP_KIND = "com:vmware:xenon:services:common:ServiceHostManagementService:BackupRequest";
export const XENON_RESTORE_KIND = "com:vmware:xenon:services:common:ServiceHostManagementService:RestoreRequest";

/** How to reach a Xenon host's management API. */
export interface XenonOptions {
  /** An auth token (sent as x-xenon-auth-token). */
  token?: string;
  /** User for basic login (POST /core/authn/basic), with password. */
  user?: string;
  password?: string;
  /** Time limit of a backup or restore PATCH, which answers only when the work is done, in ms (default 1 hour). */
  timeoutMs?: number;
  /** Index to back up or restore (indexServiceLink; default /core/document-index; /core/in-memory-document-index for the in-memory one). */
  indexServiceLink?: string;
  ctx?: Context;
}

/** A backup request's own fields. */
export interface XenonBackupRequest {
  /** file:/path.zip, file:/dir/ or http(s)://… (STREAM). */
  destination: string;
  type: "ZIP" | "DIRECTORY" | "STREAM";
}

/** A restore request's own fields. */
export interface XenonRestoreRequest {
  /** file:/path.zip, file:/dir/ or http(s)://… (a ranged GET server). */
  destination: string;
  /** Drop every document version updated after this instant (µs since the epoch). */
  timeSnapshotBoundaryMicros?: number;
}

const tokens = new Map<string, string>();

async function headers(base: string, opts: XenonOptions, ctx: Context): Promise<Record<string, string>> {
  if (opts.token) {
    ctx.secrets.add(opts.token);
    return { "x-xenon-auth-token": opts.token };
  }
  if (!opts.user) return {};
  const key = `${base} ${opts.user}`;
  if (!tokens.has(key)) {
    if (ctx.dryRun) return {};
    ctx.secrets.add(opts.password ?? "");
    const r = await fetch(`${base}/core/authn/basic`, {
      method: "POST",
      headers: { authorization: `Basic ${Buffer.from(`${opts.user}:${opts.password ?? ""}`).toString("base64")}`, "content-type": "application/json" },
      body: JSON.stringify({ requestType: "LOGIN" }),
      signal: ctx.signal,
    }).catch((e: Error) => {
      throw new LifeboatError(`Xenon at ${base}: login failed: ${e.message}`, { hint: "is the host up? check url" });
    });
    const token = r.headers.get("x-xenon-auth-token");
    if (r.status !== 200 || !token) throw new LifeboatError(`Xenon at ${base}: login as ${opts.user} refused (HTTP ${r.status})`, { hint: "check auth.user and auth.password" });
    ctx.secrets.add(token);
    tokens.set(key, token);
  }
  return { "x-xenon-auth-token": tokens.get(key)! };
}

/** Runs a request with the auth headers; a 403 with a cached login token (the host restarted and forgot it) logs in again once. */
async function authed<T>(base: string, opts: XenonOptions, ctx: Context, request: (h: Record<string, string>) => Promise<T>): Promise<T> {
  try {
    return await request(await headers(base, opts, ctx));
  } catch (e) {
    const key = `${base} ${opts.user}`;
    if (!(e instanceof HttpError && e.status === 403 && !opts.token && opts.user && tokens.has(key))) throw e;
    tokens.delete(key);
    return await request(await headers(base, opts, ctx));
  }
}

/** A GET through {@link authed}; a 403 says which settings to check. */
async function getJson<T>(base: string, path: string, opts: XenonOptions, ctx: Context, dryRunResult?: unknown): Promise<T> {
  try {
    return await authed(base, opts, ctx, (h) => httpJson<T>(`${base}${path}`, { headers: h, retries: 2, ctx, ...(dryRunResult !== undefined ? { dryRunResult } : {}) }));
  } catch (e) {
    if (e instanceof HttpError && (e.status === 401 || e.status === 403)) {
      throw new LifeboatError(`Xenon at ${base} refused GET ${path} (HTTP ${e.status}): ${xenonMessage(e)}`, { hint: "check auth.token or auth.user/auth.password", cause: e });
    }
    throw e;
  }
}

/** Xenon's message from a ServiceErrorResponse body, else the body. */
function xenonMessage(e: HttpError): string {
  try {
    const m = (JSON.parse(e.body) as { message?: string }).message;
    if (m) return m;
  } catch { /* not JSON */ }
  return e.body || e.message;
}

async function management<T>(base: string, what: string, body: Record<string, unknown>, opts: XenonOptions): Promise<T> {
  const ctx = opts.ctx ?? useContext();
  const url = `${base.replace(/\/+$/, "")}/core/management`;
  try {
    return await authed(base.replace(/\/+$/, ""), opts, ctx, (h) => httpJson<T>(url, { method: "PATCH", body, headers: h, retries: 0, timeoutMs: opts.timeoutMs ?? 3_600_000, dryRunResult: body, ctx }));
  } catch (e) {
    if (e instanceof HttpError && e.status !== null) {
      throw new LifeboatError(`Xenon at ${base} refused the ${what} (HTTP ${e.status}): ${xenonMessage(e)}`, {
        hint: e.status === 403 ? "check auth.token or auth.user/auth.password" : e.status >= 500 ? "the message is Xenon's own; check the destination and the host's log" : undefined,
        cause: e,
      });
    }
    throw e;
  }
}

/**
 * PATCHes a BackupRequest to /core/management and waits until Xenon has finished (it answers
 * when the zip, copy or upload is done). Resolves to Xenon's echo of the request.
 * @example await xenonBackup("http://xenon:8000", { destination: "file:/var/backup/xenon.zip", type: "ZIP" });
 */
export function xenonBackup(base: string, req: XenonBackupRequest, opts: XenonOptions = {}): Promise<Record<string, unknown>> {
  return management(base, "backup", {
    kind: XENON_BACKUP_KIND,
    destination: req.destination,
    backupType: req.type,
    ...(opts.indexServiceLink ? { indexServiceLink: opts.indexServiceLink } : {}),
  }, opts);
}

/**
 * PATCHes a RestoreRequest to /core/management. The host must be restarted afterwards (the
 * wiki: "you MUST restart the service host"), except for the in-memory index.
 * @example await xenonRestore("http://xenon:8000", { destination: "file:/var/backup/xenon.zip", timeSnapshotBoundaryMicros: 1763719200000000 });
 */
export function xenonRestore(base: string, req: XenonRestoreRequest, opts: XenonOptions = {}): Promise<Record<string, unknown>> {
  return management(base, "restore", {
    kind: XENON_RESTORE_KIND,
    destination: req.destination,
    ...(req.timeSnapshotBoundaryMicros !== undefined ? { timeSnapshotBoundaryMicros: req.timeSnapshotBoundaryMicros } : {}),
    ...(opts.indexServiceLink ? { indexServiceLink: opts.indexServiceLink } : {}),
  }, opts);
}

/**
 * The host's id and port (GET /core/management).
 * @example const { id } = await xenonHostInfo("http://xenon:8000");
 */
export async function xenonHostInfo(base: string, opts: XenonOptions = {}): Promise<{ id: string; httpPort: number }> {
  const ctx = opts.ctx ?? useContext();
  const b = base.replace(/\/+$/, "");
  return await getJson<{ id: string; httpPort: number }>(b, "/core/management", opts, ctx);
}

/**
 * The number of documents of each factory (GET FACTORY, documentLinks).
 * @example const counts = await xenonCounts("http://xenon:8000", ["/core/examples"]);   // { "/core/examples": 120 }
 */
export async function xenonCounts(base: string, factories: string[], opts: XenonOptions & { dryRunResult?: Record<string, number> } = {}): Promise<Record<string, number>> {
  const ctx = opts.ctx ?? useContext();
  const b = base.replace(/\/+$/, "");
  const out: Record<string, number> = {};
  for (const f of factories) {
    const r = await getJson<{ documentLinks?: string[]; documentCount?: number } | undefined>(b, f, opts, ctx, opts.dryRunResult ? { documentCount: opts.dryRunResult[f] ?? 0 } : undefined);
    out[f] = r?.documentLinks?.length ?? r?.documentCount ?? 0;
  }
  return out;
}

/** An instant ("2026-11-21 10:00:00Z", ISO 8601, or µs since the epoch) as timeSnapshotBoundaryMicros. */
export function toMicros(at: string): number {
  if (/^\d{13,}$/.test(at.trim())) return Number(at.trim());
  const ms = Date.parse(at.trim().replace(" ", "T"));
  if (Number.isNaN(ms) || !/(Z|[+-]\d\d:?\d\d)$/i.test(at.trim())) {
    throw new UsageError(`--at ${JSON.stringify(at)} is not an instant with a zone`, 'write it like "2026-11-21 10:00:00Z" or 2026-11-21T10:00:00+01:00');
  }
  return ms * 1000;
}
