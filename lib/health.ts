// health: wait until a service answers: an HTTP endpoint, a TCP port or a command.
//
// A restore often ends with "start the server and wait until it is up" (hossadm waits
// 15 minutes for it). waitForHealthy probes, pauses with lib/retry.ts (from intervalMs doubling
// up to maxIntervalMs), shows a spinner with the elapsed time, and on timeout throws an error
// that names the probe and what its last attempt saw. An interrupt (SIGINT/SIGTERM) ends the wait.
import { createConnection } from "node:net";
import { useContext, type Context } from "./context.ts";
import { LifeboatError } from "./errors.ts";
import { exec, ExecError, shellJoin } from "./exec.ts";
import { describeFetchError, fetchOnce, maskedBody, prepare, type BasicAuth } from "./http.ts";
import { formatDuration } from "./log.ts";
import { retry } from "./retry.ts";

/** Thrown by a probe that is not healthy yet: the one failure waitForHealthy retries. */
const NOT_YET = new Error("not healthy yet");

/** Healthy when the URL answers with an expected status (and the JSON predicate agrees). */
export interface HttpProbe {
  /** The URL to GET; `user:pass@` in it is moved to a header and masked. */
  http: string;
  /** Statuses that count as up (default: any 2xx). */
  status?: number | number[];
  /** Called with the parsed JSON body; up only when it returns true. */
  json?: (body: any) => boolean;
  /** Extra request headers (authorization and token values are masked). */
  headers?: Record<string, string>;
  /** Basic auth; the password is registered as a secret. */
  auth?: BasicAuth;
}

/** Healthy when a TCP connection to host:port succeeds. */
export interface TcpProbe {
  tcp: { host: string; port: number };
}

/** Healthy when the command exits 0 (and its stdout satisfies the predicate). */
export interface CommandProbe {
  /** The argv to run (use sshCommand(target, argv) for a remote check). */
  command: readonly string[];
  /** Called with the command's stdout; up only when it returns true. */
  stdout?: (out: string) => boolean;
  /** Extra environment variables (registered secrets are masked). */
  env?: Record<string, string>;
}

/** What to wait for. */
export type HealthProbe = HttpProbe | TcpProbe | CommandProbe;

/** Options for {@link waitForHealthy}. */
export interface WaitOptions {
  /** Give up after this many ms (default 15 minutes, as hossadm restore waits). */
  timeoutMs?: number;
  /** Pause after the first failed attempt, in ms (default 1000); doubles up to maxIntervalMs. */
  intervalMs?: number;
  /** Longest pause between attempts, in ms (default 15 000). Equal to intervalMs for a fixed pace. */
  maxIntervalMs?: number;
  /** Time limit of one attempt, in ms (default 10 000). */
  attemptTimeoutMs?: number;
  /** What is being waited for, in the spinner and errors (default: the probe, e.g. "http://127.0.0.1:9090/-/ready"). */
  label?: string;
  /** What the operator should do when it times out (printed under the error). */
  hint?: string;
  ctx?: Context;
}

/** How the wait went. */
export interface WaitResult {
  /** Probes made (0 in dry-run). */
  attempts: number;
  elapsedMs: number;
  /** True when the wait was printed, not done. */
  dryRun: boolean;
}

/**
 * Probes until healthy, or throws a LifeboatError naming the probe and its last result.
 * In dry-run it prints what it would wait for and returns at once.
 * @example
 * await waitForHealthy({ http: "http://127.0.0.1:9090/-/ready" });
 * await waitForHealthy({ tcp: { host: "127.0.0.1", port: 5432 } }, { timeoutMs: 60_000 });
 * await waitForHealthy({ http: `${es}/_cluster/health`, json: (h) => h.status !== "red" }, { label: "OpenSearch" });
 * await waitForHealthy({ command: ["pg_isready", "-h", "127.0.0.1"] });
 */
export async function waitForHealthy(probe: HealthProbe, opts: WaitOptions = {}): Promise<WaitResult> {
  const ctx = opts.ctx ?? useContext();
  const timeoutMs = opts.timeoutMs ?? 15 * 60_000;
  const label = opts.label ?? describeProbe(probe, ctx);
  if (ctx.dryRun) {
    ctx.log.command(`wait up to ${formatDuration(timeoutMs)} for ${label}${opts.label ? ` (${describeProbe(probe, ctx)})` : ""}`, "dry-run");
    return { attempts: 0, elapsedMs: 0, dryRun: true };
  }
  const check = checker(probe, ctx);
  const started = Date.now();
  const deadline = started + timeoutMs;
  const spinner = ctx.log.spinner(`waiting for ${label}`);
  let attempts = 0;
  let last = "no attempt yet";
  const status = () => `waiting for ${label} (${formatDuration(Date.now() - started)}; last: ${last})`;
  const tick = setInterval(() => spinner.update(status()), 1000);
  tick.unref?.();
  try {
    // Each probe that is not yet healthy throws NOT_YET; retry() paces them until the deadline.
    await retry(async () => {
      attempts++;
      const limit = Math.max(1000, Math.min(opts.attemptTimeoutMs ?? 10_000, deadline - Date.now()));
      const r = await check(limit).catch((e: Error) => ({ ok: false, detail: e.message }));
      last = r.detail;
      if (!r.ok) throw NOT_YET;
    }, {
      attempts: Infinity,
      baseMs: opts.intervalMs ?? 1000,
      maxMs: opts.maxIntervalMs ?? 15_000,
      jitter: false,
      maxElapsedMs: timeoutMs,
      retryable: (e) => e === NOT_YET,
      onRetry: () => {
        ctx.log.debug(`${label}: not yet (${last})`);
        spinner.update(status());
      },
      signal: ctx.signal,
    });
    spinner.succeed(`${label} is up (${attempts} attempt${attempts > 1 ? "s" : ""})`);
    return { attempts, elapsedMs: Date.now() - started, dryRun: false };
  } catch (e) {
    if (e !== NOT_YET) {
      spinner.fail(`stopped waiting for ${label}`);
      throw e;
    }
  } finally {
    clearInterval(tick);
  }
  const elapsed = formatDuration(Date.now() - started);
  spinner.fail(`${label} is not up after ${elapsed}`);
  throw new LifeboatError(`gave up waiting for ${label} after ${elapsed} (${attempts} attempts); last result: ${last}`, {
    hint: opts.hint ?? "check the service's own logs; raise the timeout if it is only slow to start",
  });
}

/** "http://127.0.0.1:9090/-/ready answers 2xx", "tcp 127.0.0.1:5432", "command pg_isready -h db". */
export function describeProbe(probe: HealthProbe, ctx: Context = useContext()): string {
  if ("http" in probe) {
    const { display } = prepare(probe.http, probe, ctx);
    const st = probe.status === undefined ? "2xx" : [probe.status].flat().join("/");
    return `${display} to answer ${st}${probe.json ? " with the expected JSON" : ""}`;
  }
  if ("tcp" in probe) return `tcp ${probe.tcp.host}:${probe.tcp.port} to accept connections`;
  return `\`${ctx.secrets.redact(shellJoin(probe.command))}\` to succeed`;
}

type Check = (timeoutMs: number) => Promise<{ ok: boolean; detail: string }>;

function checker(probe: HealthProbe, ctx: Context): Check {
  if ("http" in probe) {
    const req = prepare(probe.http, probe, ctx);
    const want = probe.status === undefined ? null : [probe.status].flat();
    return async (timeoutMs) => {
      let res;
      try {
        res = await fetchOnce(req, "GET", timeoutMs);
      } catch (e) {
        return { ok: false, detail: describeFetchError(e, timeoutMs) };
      }
      const status = `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ""}`;
      const okStatus = want ? want.includes(res.status) : res.status >= 200 && res.status < 300;
      if (!okStatus) return { ok: false, detail: `${status}${res.text ? `: ${maskedBody(ctx, res.text, 200)}` : ""}` };
      if (!probe.json) return { ok: true, detail: status };
      let body: unknown;
      try {
        body = JSON.parse(res.text);
      } catch {
        return { ok: false, detail: `${status} but the body is not JSON: ${maskedBody(ctx, res.text, 200)}` };
      }
      return probe.json(body)
        ? { ok: true, detail: status }
        : { ok: false, detail: `${status} but the JSON check said not yet: ${maskedBody(ctx, res.text, 200)}` };
    };
  }
  if ("tcp" in probe) {
    const { host, port } = probe.tcp;
    return (timeoutMs) =>
      new Promise((resolve) => {
        const sock = createConnection({ host, port });
        const done = (ok: boolean, detail: string) => {
          sock.destroy();
          resolve({ ok, detail });
        };
        sock.setTimeout(timeoutMs, () => done(false, `no connection within ${formatDuration(timeoutMs)}`));
        sock.once("connect", () => done(true, "connected"));
        sock.once("error", (e: NodeJS.ErrnoException) => done(false, e.code === "ECONNREFUSED" ? "connection refused (ECONNREFUSED)" : `${e.message}`));
      });
  }
  return async (timeoutMs) => {
    try {
      const r = await exec(probe.command, { readOnly: true, stdout: "capture", env: probe.env, timeoutMs, ctx });
      if (!probe.stdout || probe.stdout(r.stdout)) return { ok: true, detail: "exit 0" };
      return { ok: false, detail: `exit 0 but stdout did not match: ${maskedBody(ctx, r.stdout, 200) || "(empty)"}` };
    } catch (e) {
      if (!(e instanceof ExecError)) throw e;
      const why = e.message.startsWith("command failed (") ? e.message.slice("command failed (".length).split(")")[0] : "failed";
      const tail = ctx.secrets.redact(e.stderr).trim().split("\n").slice(-3).join(" | ");
      return { ok: false, detail: `${why}${tail ? `: ${tail}` : ""}` };
    }
  };
}
