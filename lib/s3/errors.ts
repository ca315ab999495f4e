// s3/errors.ts: what an S3 failure means. S3Error (named endpoint, call and what to do next),
// which failures may pass (the SDK's classification plus dropped connections and Ceph's
// "completion already in progress"), and `patiently`, lib/retry.ts with that classification.
import { LifeboatError } from "../errors.ts";
import { retry } from "../retry.ts";
import type { S3Handle } from "./client.ts";

/** An S3 call failed; `code` is the gateway's error code (AccessDenied, NoSuchBucket …) or the network error code. */
export class S3Error extends LifeboatError {
  readonly code: string;
  readonly status?: number;
  constructor(message: string, code: string, status: number | undefined, hint: string | undefined, cause: unknown) {
    super(message, { hint, cause });
    this.code = code;
    this.status = status;
  }
}

const DENIED = new Set(["AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden", "InvalidToken"]);
const UNREACHABLE = new Set(["ECONNREFUSED", "ENOTFOUND", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN", "ETIMEDOUT", "ECONNRESET", "TimeoutError"]);

export function errCode(e: any): string {
  return String(e?.code ?? e?.errors?.[0]?.code ?? e?.Code ?? e?.name ?? "Error");
}

/** Turns an SDK or network error into an S3Error that names the endpoint, the call and what to do. */
export function s3Error(h: S3Handle, what: string, e: unknown): Error {
  if (e instanceof LifeboatError) return e;
  const err = e as any;
  const status: number | undefined = err?.$metadata?.httpStatusCode;
  const name: string = err?.name && err.name !== "Error" ? err.name : errCode(err);
  const where = `s3 ${h.endpoint}: ${what}`;
  if (DENIED.has(name) || status === 403) {
    return new S3Error(`${where}: access denied (${name})`, name, status,
      "check the access key and secret key for this gateway, and that the user may use this bucket", e);
  }
  if (name === "NoSuchBucket") {
    return new S3Error(`${where}: no such bucket`, name, status, "create it first (s3MakeBucket, like `s3cmd mb`), or check its name", e);
  }
  const code = errCode(err);
  if (name === "TimeoutError" || code === "ETIMEDOUT") {
    return new S3Error(`${where}: the gateway did not answer in time (${err?.message ?? code})`, "TimeoutError", status,
      "is it overloaded or stopped? A Ceph cluster that is full (`ceph health`) leaves writes unanswered", e);
  }
  if (UNREACHABLE.has(code) || UNREACHABLE.has(name)) {
    return new S3Error(`${where}: gateway unreachable (${code}: ${err?.message ?? ""})`, code, status,
      "is the gateway running and listening there? check the endpoint URL and port", e);
  }
  const msg = err?.message && err.message !== name && err.message !== "UnknownError" ? `: ${err.message}` : "";
  const hint = name === "InvalidBucketName"
    ? "bucket names are 3-63 lowercase letters, digits, dots and hyphens; Ceph takes _ and capitals only with `rgw relaxed s3 bucket names = true`"
    : undefined;
  return new S3Error(`${where}: ${name}${status ? ` (HTTP ${status})` : ""}${msg}`, name, status, hint, e);
}

export async function call<T>(h: S3Handle, what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw s3Error(h, what, e);
  }
}

/** A body that did not match its ETag: retried, and reported as VerifyError once attempts run out. */
export class ChecksumMismatch extends Error {
  readonly $retryable = {};
}

const RETRYABLE_STREAM_CODES = new Set(["ERR_STREAM_PREMATURE_CLOSE", "ECONNRESET", "EPIPE", "ECONNABORTED", "ERR_SOCKET_CONNECTION_TIMEOUT"]);

let sdkClassify: typeof import("@smithy/core/retry") | undefined;

/**
 * Runs fn; when it fails, the SDK's error classification is loaded before the failure goes on to
 * be classified (isRetryable). A run where nothing fails never loads it.
 */
export async function classified<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    sdkClassify ??= await import("@smithy/core/retry");
    throw e;
  }
}

/** The SDK's classification of an error, plus the stream errors a dropped connection gives. */
function errorType(e: any): "TRANSIENT" | "THROTTLING" | "SERVER_ERROR" | "CLIENT_ERROR" {
  if (e instanceof LifeboatError) return "CLIENT_ERROR";
  // Every failure passes through classified() first; without it, only the stream errors are known.
  const c = sdkClassify;
  if (c?.isThrottlingError(e)) return "THROTTLING";
  if (c?.isTransientError(e) || RETRYABLE_STREAM_CODES.has(e?.code) || e?.message === "aborted") return "TRANSIENT";
  if (c?.isServerError(e)) return "SERVER_ERROR";
  return "CLIENT_ERROR";
}

/** Ceph's answer to a multipart completion while another one of the same upload holds its lock (as after a gateway restart mid-completion). */
export function completionInProgress(e: any): boolean {
  return /already in progress/i.test(String(e?.message ?? "")) && (e?.name === "InternalError" || e?.$metadata?.httpStatusCode === 500);
}

/** What the SDK's retry strategy would try again (throttling and transient failures, 5xx among them), and a completion in progress. */
export function isRetryable(e: unknown): boolean {
  const t = errorType(e);
  return t === "TRANSIENT" || t === "THROTTLING" || completionInProgress(e);
}

/**
 * How long a call (or a sync, counted from its last success) keeps retrying a gateway that
 * fails every request, by default: 90 s. A refused connection gives up sooner, when its attempts
 * run out (10 attempts: about 28 s); a silent gateway, after the first attempt that starts
 * later than this fails at its socket timeout (60 s): about 2 minutes at most.
 */
export const S3_MAX_OUTAGE_MS = 90_000;

/** A failure that says the gateway is not there (refused, unreachable, reset, silent), as opposed to a refusal or bad bytes. */
export function isOutage(e: unknown): boolean {
  const err = e as any;
  const code = errCode(err);
  return UNREACHABLE.has(code) || UNREACHABLE.has(String(err?.name)) || (err instanceof S3Error && UNREACHABLE.has(err.code));
}

/**
 * Runs one call with retries: transient failures (connection refused or reset, timeouts,
 * 5xx, throttling, a body that failed its checksum) are retried with exponential backoff
 * (500 ms doubling, at most 4 s apart), so a gateway restart is ridden out; anything else
 * fails at once, and so does a failure once maxElapsedMs (default {@link S3_MAX_OUTAGE_MS})
 * have passed since the first attempt. When the signal aborts, its reason is thrown.
 */
export function patiently<T>(attempts: number, fn: () => Promise<T>, signal?: AbortSignal, maxElapsedMs = S3_MAX_OUTAGE_MS): Promise<T> {
  return retry(() => classified(fn), { attempts, baseMs: 500, maxMs: 4000, jitter: false, retryable: isRetryable, signal, maxElapsedMs });
}
