// http: JSON over HTTP for management APIs (Prometheus, RabbitMQ, Elasticsearch, Xenon).
//
// One call is one request with Node's global fetch, retried with lib/retry.ts (exponential
// backoff with jitter) when the failure may pass: connection errors, timeouts, 5xx and 429.
// A 4xx is an answer, not a hiccup, and fails at once. Passwords (basic auth, or
// `user:pass@` in the URL) are registered as secrets, sent only in a header and masked
// in every message. In dry-run, GET and HEAD run (they only read) and everything else
// is printed, not sent.
import { useContext, type Context } from "./context.ts";
import { LifeboatError } from "./errors.ts";
import { retry } from "./retry.ts";

/** User name and password for HTTP basic auth. */
export interface BasicAuth {
  username: string;
  /** Registered as a secret: masked wherever lifeboat prints. */
  password: string;
}

/** Options for {@link httpJson}. */
export interface HttpJsonOptions {
  /** HTTP method (default GET). */
  method?: string;
  /** Request body: sent as JSON (content-type application/json); a string or bytes is sent as-is. */
  body?: unknown;
  /** Extra request headers. Values of headers named like authorization, cookie, token, key, secret or password are registered as secrets. */
  headers?: Record<string, string>;
  /** Basic auth. Credentials in the URL (`http://user:pass@host/`) are moved here. */
  auth?: BasicAuth;
  /** Time limit of one attempt, in ms (default 30 000). */
  timeoutMs?: number;
  /** Retries after the first attempt, on connection errors, timeouts, 5xx and 429 (default 3). Pass 0 for a call that must not repeat. */
  retries?: number;
  /** Pause before the first retry, in ms (default 500); it doubles each time up to maxDelayMs. */
  retryDelayMs?: number;
  /** Longest pause between retries, in ms (default 10 000). */
  maxDelayMs?: number;
  /** Statuses that count as success (default: any 2xx). */
  expect?: number[];
  /** Send in dry-run too: for a POST that only reads (a search, a query). GET and HEAD always run. */
  readOnly?: boolean;
  /**
   * What the request resolves to in a dry run, where it is printed and not sent (default
   * undefined). A GET with a dryRunResult is not sent either: it reads what an earlier step
   * would have made (a server that step would have started).
   */
  dryRunResult?: unknown;
  ctx?: Context;
}

/** A request failed: connection error (status null) or an unexpected status. */
export class HttpError extends LifeboatError {
  /** The HTTP status, or null when no answer came. */
  readonly status: number | null;
  /** The response body (trimmed), "" when none. */
  readonly body: string;
  constructor(message: string, status: number | null, body: string, opts: { hint?: string; cause?: unknown } = {}) {
    super(message, opts);
    this.status = status;
    this.body = body;
  }
}

/**
 * Sends one JSON request and resolves to the parsed answer (null for an empty body, the
 * text when the answer is not JSON). Fails with an {@link HttpError} naming method, URL
 * (password masked), status and a trimmed body.
 * @example
 * await httpJson("http://es:9200/_snapshot/backups", { method: "PUT", body: { type: "fs", settings: { location: "/snap" } } });
 * const snap = await httpJson<{ data: { name: string } }>(`${prom}/api/v1/admin/tsdb/snapshot`, { method: "POST", dryRunResult: { data: { name: "DRY-RUN" } } });
 * const defs = await httpJson(`${rabbit}/api/definitions`, { auth: { username: "admin", password: pw } });
 */
export async function httpJson<T = unknown>(url: string, opts: HttpJsonOptions = {}): Promise<T> {
  const ctx = opts.ctx ?? useContext();
  const method = (opts.method ?? "GET").toUpperCase();
  const req = prepare(url, opts, ctx);
  const shown = `${method} ${req.display}`;
  const reads = method === "GET" || method === "HEAD" || !!opts.readOnly;
  if (ctx.dryRun && (!reads || "dryRunResult" in opts)) {
    ctx.log.command(`${shown}${req.bodyText !== undefined ? ` ${preview(req.bodyText, ctx)}` : ""}`, "dry-run");
    return opts.dryRunResult as T;
  }
  ctx.log.command(shown, ctx.dryRun ? "probe" : "run");
  const total = Math.max(0, opts.retries ?? 3) + 1;
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const expect = (s: number) => (opts.expect ? opts.expect.includes(s) : s >= 200 && s < 300);
  /** Failures that may pass: no answer, 5xx, 429. */
  const transient = (e: unknown) => e instanceof HttpError && (e.status === null || e.status >= 500 || e.status === 429);
  return retry(async (attempt) => {
    let res: FetchResult;
    try {
      res = await fetchOnce(req, method, timeoutMs, ctx.signal);
    } catch (e) {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      const why = describeFetchError(e, timeoutMs);
      throw new HttpError(`${shown}: ${why}${attempt === total && total > 1 ? ` (${total} attempts)` : ""}`, null, "", {
        hint: "is the service up and listening there? check the host, port and scheme",
        cause: e,
      });
    }
    if (expect(res.status)) return parseBody(res, shown, ctx) as T;
    const body = maskedBody(ctx, res.text);
    const error = new HttpError(`${shown}: HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ""}${body ? `: ${body}` : ""}`, res.status, body, {
      hint: hintFor(res.status),
    });
    const last = attempt === total || !transient(error);
    return Promise.reject(last && attempt > 1 ? new HttpError(`${error.message} (${attempt} attempts)`, error.status, error.body, { hint: error.hint }) : error);
  }, {
    attempts: total,
    baseMs: opts.retryDelayMs ?? 500,
    maxMs: opts.maxDelayMs ?? 10_000,
    retryable: transient,
    onRetry: (e, attempt) => ctx.log.debug(`${(e as HttpError).message}; retrying (attempt ${attempt + 1}/${total})`),
    signal: ctx.signal,
  });
}

// ---------------------------------------------------------------------------------
// shared with health.ts

/** A request ready to send: URL without credentials, headers, body text. */
export interface PreparedRequest {
  url: string;
  /** The URL as messages show it (password masked). */
  display: string;
  headers: Record<string, string>;
  bodyText?: string | Uint8Array;
}

/** What one fetch returned. */
export interface FetchResult {
  status: number;
  statusText: string;
  text: string;
  contentType: string;
}

/** Moves URL credentials into an Authorization header, registers secrets, serialises the body. */
export function prepare(url: string, opts: Pick<HttpJsonOptions, "headers" | "auth" | "body">, ctx: Context): PreparedRequest {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new LifeboatError(`not a URL: ${ctx.secrets.redact(url)}`);
  }
  let auth = opts.auth;
  if (u.username || u.password) {
    auth ??= { username: decodeURIComponent(u.username), password: decodeURIComponent(u.password) };
    ctx.secrets.add(u.password);
    ctx.secrets.add(decodeURIComponent(u.password));
    u.username = "";
    u.password = "";
  }
  const headers: Record<string, string> = { accept: "application/json" };
  for (const [k, v] of Object.entries(opts.headers ?? {})) {
    if (/authorization|cookie|token|key|secret|password/i.test(k)) {
      ctx.secrets.add(v);
      const scheme = /^(?:Bearer|Basic|Token|ApiKey)\s+(\S.*)$/i.exec(v); // the credential alone may be echoed too
      if (scheme) ctx.secrets.add(scheme[1]);
    }
    headers[k.toLowerCase()] = v;
  }
  if (auth) {
    ctx.secrets.add(auth.password);
    const token = Buffer.from(`${auth.username}:${auth.password}`).toString("base64");
    ctx.secrets.add(token);
    headers.authorization = `Basic ${token}`;
  }
  let bodyText: string | Uint8Array | undefined;
  if (opts.body !== undefined) {
    if (typeof opts.body === "string" || opts.body instanceof Uint8Array) bodyText = opts.body;
    else {
      bodyText = JSON.stringify(opts.body);
      headers["content-type"] ??= "application/json";
    }
  }
  const display = auth ? u.href.replace(/^([a-z][a-z0-9+.-]*:\/\/)/i, `$1${encodeURIComponent(auth.username)}:***@`) : u.href;
  return { url: u.href, display, headers, bodyText };
}

/** One request, no retries; throws on connection errors, timeouts and when signal aborts. */
export async function fetchOnce(req: PreparedRequest, method: string, timeoutMs: number, signal?: AbortSignal): Promise<FetchResult> {
  const timeout = AbortSignal.timeout(timeoutMs);
  const res = await fetch(req.url, {
    method,
    headers: req.headers,
    body: req.bodyText as BodyInit | undefined,
    signal: signal ? AbortSignal.any([timeout, signal]) : timeout,
    redirect: "follow",
  });
  const text = method === "HEAD" ? "" : await res.text();
  return { status: res.status, statusText: res.statusText, text, contentType: res.headers.get("content-type") ?? "" };
}

/** "connection refused (ECONNREFUSED)", "timed out after 30s" … for a failed fetch. */
export function describeFetchError(e: unknown, timeoutMs: number): string {
  const err = e as Error & { cause?: { code?: string; message?: string } };
  if (err?.name === "TimeoutError" || err?.name === "AbortError") return `no answer within ${Math.round(timeoutMs / 100) / 10}s`;
  // Node's fetch puts the errno code on the cause; Deno's only names it in the text.
  const text = `${err?.cause?.message ?? ""} ${err?.message ?? ""}`;
  const code = err?.cause?.code ??
    (/connection refused/i.test(text) ? "ECONNREFUSED" : /connection reset/i.test(text) ? "ECONNRESET" : /dns error|failed to lookup/i.test(text) ? "ENOTFOUND" : undefined);
  const words: Record<string, string> = {
    ECONNREFUSED: "connection refused",
    ECONNRESET: "connection reset",
    ENOTFOUND: "host not found",
    EAI_AGAIN: "host name lookup failed",
    EHOSTUNREACH: "host unreachable",
    ENETUNREACH: "network unreachable",
    ETIMEDOUT: "connection timed out",
    UND_ERR_SOCKET: "connection closed",
    UND_ERR_CONNECT_TIMEOUT: "connection timed out",
  };
  if (code) return `${words[code] ?? err.cause?.message ?? "failed"} (${code})`;
  return err?.cause?.message ?? err?.message ?? String(e);
}

/** The body trimmed for a message: one line, at most 300 characters. */
export function trimBody(text: string, max = 300): string {
  const one = text.replace(/\s+/g, " ").trim();
  return one.length > max ? `${one.slice(0, max)}…` : one;
}

/**
 * A response body as an error shows it: secrets masked first (a secret cut, or split by the
 * whitespace fold, would show in part), then cut as {@link trimBody} does.
 * @example throw new Error(`HTTP 500: ${maskedBody(ctx, res.text)}`)
 */
export function maskedBody(ctx: Context, text: string, max = 300): string {
  return trimBody(ctx.secrets.redact(text.slice(0, 1 << 16)), max);
}

function parseBody(res: FetchResult, shown: string, ctx: Context): unknown {
  if (res.text.trim() === "") return null;
  try {
    return JSON.parse(res.text);
  } catch (e) {
    if (/json/i.test(res.contentType)) {
      const body = maskedBody(ctx, res.text);
      throw new HttpError(`${shown}: HTTP ${res.status} answered with invalid JSON: ${body}`, res.status, body, { cause: e });
    }
    return res.text;
  }
}

/** A request body as the dry run shows it: masked whole, then cut (a secret cut first would show in part). */
function preview(body: string | Uint8Array, ctx: Context): string {
  if (typeof body !== "string") return `(${body.length} bytes)`;
  const masked = ctx.secrets.redact(body.slice(0, 1 << 16));
  return masked.length > 200 ? `${masked.slice(0, 199)}…` : masked;
}

function hintFor(status: number): string | undefined {
  if (status === 401 || status === 403) return "check the user name and password (or token) and that the user may do this";
  if (status === 404) return "check the URL path and that the resource exists";
  if (status >= 500) return "the service is failing: check its logs";
  return undefined;
}
