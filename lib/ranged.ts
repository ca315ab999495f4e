// ranged: files over HTTP in ranges, both ways, for servers that push or pull a backup in
// chunks (Xenon's STREAM backups and http restores).
//
// - receiveRangedPuts: an HTTP server that takes PUTs carrying `Content-Range: bytes S-E/T`
//   (E EXCLUSIVE, as Xenon's FileUtils.putFile sends them) in any order, writes each body at S
//   into a hidden partial file, and only when every byte of T arrived exactly once renames it
//   into place. It refuses overlapping, out-of-range or mis-sized chunks, a changing total, and
//   gives up with a clear error when chunks stop coming.
// - serveRanged: serves one file for as long as a callback runs: GET with `Range: bytes=S-E`
//   answers bytes [S, min(E, size)) with `Content-Range: bytes S-END/SIZE`, END exclusive (what
//   Xenon's FileUtils.getFile reads); a GET without Range answers the whole file.
// Both listen where they are told (default 127.0.0.1), hold at most one chunk per request in
// memory, stop on the context's interrupt, and describe themselves in a dry run.
import { randomBytes } from "node:crypto";
import { createReadStream, existsSync, statSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { LifeboatError, UsageError, VerifyError } from "./errors.ts";
import { useContext, type Context } from "./context.ts";
import { captureToFile } from "./files.ts";
import { formatBytes } from "./log.ts";
import { settledWithin } from "./retry.ts";
import { builtinModule } from "./lazy.ts";

// Not `import … from "node:http"`: see builtinModule.
const { createServer } = builtinModule<typeof import("node:http")>("node:http");

/**
 * The default URL path of a served or received file: /TOKEN/backup.zip with 128 random bits, so
 * that only the client given the URL can fetch the file (a plaintext backup) or send into it;
 * anyone else who can connect gets 404.
 */
function unguessablePath(): string {
  return `/${randomBytes(16).toString("hex")}/backup.zip`;
}

/**
 * publicUrl checked before anything listens, as the base the client is given: its scheme, host,
 * port and path (a reverse proxy's prefix; an older setting's trailing /backup.zip is dropped).
 */
function publicBase(publicUrl: string | undefined, setting: string): string | undefined {
  if (!publicUrl) return undefined;
  let u: URL;
  try {
    u = new URL(publicUrl);
  } catch {
    throw new UsageError(`${setting} ${JSON.stringify(publicUrl)} is not a URL`, "give it as http://HOST:PORT, the address the other host reaches this one by");
  }
  if (!u.host) throw new UsageError(`${setting} ${JSON.stringify(publicUrl)} names no host`, "give it as http://HOST:PORT");
  return `${u.protocol}//${u.host}${u.pathname.replace(/\/backup\.zip$/, "").replace(/\/+$/, "")}`;
}

/** The URL a client is given: the public base with our path, else the listener's address. */
function clientUrl(base: string | undefined, listen: string, port: number | string, urlPath: string): string {
  return `${base ?? `http://${listen.includes(":") ? `[${listen}]` : listen}:${port}`}${urlPath}`;
}

/** Whether a request's path is ours: the token path, after whatever prefix a reverse proxy kept. */
function ourPath(reqUrl: string | undefined, urlPath: string): boolean {
  return new URL(reqUrl ?? "/", "http://x").pathname.endsWith(urlPath);
}

/** Options for {@link receiveRangedPuts}. */
export interface ReceiveOptions {
  /** Address to listen on (default 127.0.0.1). */
  listen?: string;
  /** Port (default 0: any free one). */
  port?: number;
  /** How the sender reaches this host, when by another name: its scheme, host and port are used, with our path (default http://LISTEN:PORT). */
  publicUrl?: string;
  /** URL path the PUTs go to (default /TOKEN/backup.zip, TOKEN 128 random bits); other paths get 404. */
  path?: string;
  /** Give up when no chunk arrived for this long once the first came, in ms (default 60 000). */
  idleTimeoutMs?: number;
  /** Give up when no first chunk came for this long, in ms (default 30 minutes: the sender may prepare a while). */
  firstChunkTimeoutMs?: number;
  /** Largest chunk accepted, in bytes (default 64 MiB). */
  maxChunkBytes?: number;
  /** Mode of the file (default 0600). */
  mode?: number;
  /** Called after each chunk with the bytes received so far and the total. */
  onProgress?: (received: number, total: number) => void;
  ctx?: Context;
}

/** What {@link receiveRangedPuts} received. */
export interface ReceiveResult {
  path: string;
  bytes: number;
  chunks: number;
  ms: number;
}

/** A half-open byte range [start, end). */
type Range = [number, number];

/**
 * Receives one file as ranged PUTs: starts the server, calls send(url) (which makes the sender
 * push, e.g. a Xenon STREAM backup PATCH), and resolves when send has resolved and every byte
 * arrived exactly once; the file then appears at `file` (atomically, 0600). Fails, leaving
 * no file, when send fails, a chunk is refused, chunks stop coming, or bytes are missing when
 * send returns.
 * @example
 * const got = await receiveRangedPuts("/var/backups/xenon.zip", { listen: "0.0.0.0", port: 8099, publicUrl: "http://backup-host:8099" },
 *   (url) => xenonBackup(host, { destination: url, type: "STREAM" }));
 */
export async function receiveRangedPuts<T>(file: string, opts: ReceiveOptions, send: (url: string) => Promise<T>): Promise<ReceiveResult & { sent: T }> {
  const ctx = opts.ctx ?? useContext();
  const listen = opts.listen ?? "127.0.0.1";
  const urlPath = opts.path ?? (ctx.dryRun ? "/TOKEN/backup.zip" : unguessablePath());
  const base = publicBase(opts.publicUrl, "stream.url"); // refused before anything listens
  if (ctx.dryRun) {
    const url = clientUrl(base, listen, opts.port || "PORT", urlPath);
    ctx.log.command(`receive ranged PUTs on ${listen}:${opts.port ?? "any port"}${urlPath} into ${file} (0600, atomic)`, "dry-run");
    return { path: file, bytes: 0, chunks: 0, ms: 0, sent: await send(url) };
  }
  const t0 = Date.now();
  const maxChunk = opts.maxChunkBytes ?? 64 << 20;
  return await captureToFile(file, async (tmp) => {
    const fh: FileHandle = await open(tmp, "r+");
    const got: Range[] = [];
    let total: number | null = null;
    let received = 0;
    let chunks = 0;
    let failure: Error | null = null;
    let lastChunk = 0;
    let told = false; // the failure is a refusal the sender was answered with
    let failNow: (e: Error) => void = () => {};
    const failed = new Promise<never>((_, no) => (failNow = no));
    failed.catch(() => {});
    const fail = (e: Error) => {
      failure ??= e;
      failNow(failure);
    };
    const server: Server = createServer((req, res) => void take(req, res));
    async function take(req: IncomingMessage, res: ServerResponse): Promise<void> {
      const refuse = (status: number, why: string) => {
        res.writeHead(status, { "content-type": "text/plain" }).end(`${why}\n`);
        told ||= !failure;
        fail(new LifeboatError(`stream into ${file}: refused a chunk: ${why}`, { hint: "the sender sent a bad or repeated chunk; nothing was kept; run the backup again" }));
      };
      if (!ourPath(req.url, urlPath)) return void res.writeHead(404).end();
      if (req.method !== "PUT") return void res.writeHead(405, { allow: "PUT" }).end();
      if (failure) return void res.writeHead(503).end(`${failure.message}\n`);
      const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(String(req.headers["content-range"] ?? ""));
      if (!m) return refuse(400, `no usable Content-Range (got ${JSON.stringify(req.headers["content-range"] ?? null)}; want "bytes START-END/TOTAL")`);
      const [start, end, t] = [Number(m[1]), Number(m[2]), Number(m[3])];
      if (total !== null && t !== total) return refuse(400, `bytes ${start}-${end}/${t}: total ${t} differs from the ${total} of earlier chunks`);
      if (start === end && end === t) return void res.writeHead(200).end(); // Xenon's putChunks fills its last batch of 10 with empty PUTs at the end
      if (start >= end || end > t) return refuse(416, `bytes ${start}-${end}/${t} is out of range (END is exclusive and at most TOTAL)`);
      if (end - start > maxChunk) return refuse(413, `bytes ${start}-${end}/${t}: ${formatBytes(end - start)} is larger than ${formatBytes(maxChunk)}`);
      const clash = got.find(([a, b]) => start < b && a < end);
      if (clash) return refuse(409, `bytes ${start}-${end}/${t} overlaps bytes ${clash[0]}-${clash[1]} already received`);
      total = t;
      got.push([start, end]); // claimed now: a parallel duplicate is refused
      const parts: Buffer[] = [];
      let len = 0;
      try {
        for await (const b of req) {
          len += (b as Buffer).length;
          if (len > end - start) break;
          parts.push(b as Buffer);
        }
      } catch (e) {
        got.splice(got.findIndex((r) => r[0] === start && r[1] === end), 1);
        return fail(new LifeboatError(`stream into ${file}: the connection broke during bytes ${start}-${end}: ${(e as Error).message}`));
      }
      if (len !== end - start) return refuse(400, `bytes ${start}-${end}/${t}: the body has ${len} bytes, the range says ${end - start}`);
      const body = Buffer.concat(parts);
      try {
        for (let at = 0; at < len;) at += (await fh.write(body, at, len - at, start + at)).bytesWritten; // a full disk first writes short, then fails
      } catch (e) {
        res.writeHead(507).end();
        return fail(e as Error);
      }
      received += len;
      chunks++;
      lastChunk = Date.now();
      opts.onProgress?.(received, t);
      res.writeHead(200).end();
    }
    await new Promise<void>((ok, no) => {
      server.once("error", (e) => no(new LifeboatError(`cannot listen on ${listen}:${opts.port ?? 0} for the stream: ${e.message}`, { hint: "choose another stream.port or stream.listen" })));
      server.listen(opts.port ?? 0, listen, ok);
    });
    const port = (server.address() as AddressInfo).port;
    const url = clientUrl(base, listen, port, urlPath);
    ctx.log.info(`  receiving the stream at ${url}`);
    const idle = opts.idleTimeoutMs ?? 60_000;
    const first = opts.firstChunkTimeoutMs ?? 30 * 60_000;
    const started = Date.now();
    const timer = setInterval(() => {
      const quiet = Date.now() - (lastChunk || started);
      if (lastChunk && quiet > idle) fail(new LifeboatError(`stream into ${file}: no chunk for ${Math.round(quiet / 1000)} s after ${formatBytes(received)} of ${formatBytes(total ?? 0)}; the sender stopped`, { hint: "check the Xenon host's log; run the backup again" }));
      if (!lastChunk && quiet > first) fail(new LifeboatError(`stream into ${file}: no chunk came within ${Math.round(first / 1000)} s`, { hint: `can the Xenon host reach ${url}? set stream.url to an address it can reach` }));
    }, Math.min(1000, idle / 4));
    const onAbort = () => fail(ctx.signal.reason as Error);
    ctx.signal.addEventListener("abort", onAbort);
    try {
      const sending = send(url).then((v) => ({ v }), (e: Error) => {
        fail(e);
        return null;
      });
      const sent = await Promise.race([sending, failed]).catch(async (e) => {
        // A refused sender was told why: let it take in its answer and give up (Xenon fails its
        // PATCH on a non-2xx) before the connections close, so it reports the refusal rather
        // than a reset; a stalled or interrupted one is not waited for.
        if (told) await settledWithin(sending, SENDER_GRACE_MS);
        throw e;
      });
      if (failure) throw failure;
      if (!sent) throw new LifeboatError("the sender failed");
      if (total === null || received !== total) {
        throw new VerifyError(
          `stream into ${file}: truncated: ${formatBytes(received)} of ${total === null ? "an unknown total" : formatBytes(total)} arrived when the sender said it was done${total !== null ? `; missing ${missing(got, total).slice(0, 5).map(([a, b]) => `${a}-${b}`).join(", ")}` : ""}`,
          [],
          "nothing was kept; run the backup again",
        );
      }
      await fh.sync();
      return { path: file, bytes: received, chunks, ms: Date.now() - t0, sent: sent.v };
    } finally {
      clearInterval(timer);
      ctx.signal.removeEventListener("abort", onAbort);
      server.closeAllConnections();
      await new Promise((ok) => server.close(ok));
      await fh.close();
    }
  }, { mode: opts.mode ?? 0o600, label: `the stream into ${file}` });
}

/** How long a refused sender is given to take in its answer before the receiver closes. */
const SENDER_GRACE_MS = 5000;

function missing(got: Range[], total: number): Range[] {
  const out: Range[] = [];
  let at = 0;
  for (const [a, b] of [...got].sort((x, y) => x[0] - y[0])) {
    if (a > at) out.push([at, a]);
    at = Math.max(at, b);
  }
  if (at < total) out.push([at, total]);
  return out;
}

/** Options for {@link serveRanged}. */
export interface ServeOptions {
  /** Address to listen on (default 127.0.0.1). */
  listen?: string;
  /** Port (default 0: any free one). */
  port?: number;
  /** How the client reaches this host, when by another name: its scheme, host and port are used, with our path (default http://LISTEN:PORT). */
  publicUrl?: string;
  /** URL path of the file (default /TOKEN/backup.zip, TOKEN 128 random bits); other paths get 404. */
  path?: string;
  ctx?: Context;
}

/**
 * Serves one file over HTTP with Range support while use(url) runs, then stops. Resolves to
 * what use resolved to, plus how many requests and bytes were served.
 * @example await serveRanged("/var/backups/x.zip", { listen: "0.0.0.0", publicUrl: "http://backup-host:8098", port: 8098 },
 *   (url) => xenonRestore(host, { destination: url }));
 */
export async function serveRanged<T>(file: string, opts: ServeOptions, use: (url: string) => Promise<T>): Promise<{ result: T; requests: number; bytes: number }> {
  const ctx = opts.ctx ?? useContext();
  const listen = opts.listen ?? "127.0.0.1";
  const urlPath = opts.path ?? (ctx.dryRun ? "/TOKEN/backup.zip" : unguessablePath());
  const base = publicBase(opts.publicUrl, "http.url"); // refused before anything listens
  if (ctx.dryRun) {
    ctx.log.command(`serve ${file} with Range support on ${listen}:${opts.port ?? "any port"}${urlPath} while the restore runs`, "dry-run");
    return { result: await use(clientUrl(base, listen, opts.port || "PORT", urlPath)), requests: 0, bytes: 0 };
  }
  if (!existsSync(file)) throw new LifeboatError(`cannot serve ${file}: no such file`);
  let requests = 0;
  let bytes = 0;
  const server = createServer((req, res) => {
    if (!ourPath(req.url, urlPath)) return void res.writeHead(404).end();
    if (req.method !== "GET" && req.method !== "HEAD") return void res.writeHead(405, { allow: "GET, HEAD" }).end();
    requests++;
    const size = statSync(file).size;
    const m = /^bytes=(\d+)-(\d*)$/.exec(String(req.headers.range ?? ""));
    let start = 0;
    let end = size;
    const headers: Record<string, string | number> = { "content-type": "application/octet-stream", "accept-ranges": "bytes" };
    if (m) {
      start = Number(m[1]);
      end = m[2] ? Math.min(Number(m[2]), size) : size;
      if (start >= size || start > end) return void res.writeHead(416, { "content-range": `bytes */${size}` }).end();
      headers["content-range"] = `bytes ${start}-${end}/${size}`;
    }
    headers["content-length"] = end - start;
    res.writeHead(m ? 206 : 200, headers);
    if (req.method === "HEAD" || end === start) return void res.end();
    bytes += end - start;
    createReadStream(file, { start, end: end - 1 }).on("error", () => res.destroy()).pipe(res);
  });
  await new Promise<void>((ok, no) => {
    server.once("error", (e) => no(new LifeboatError(`cannot listen on ${listen}:${opts.port ?? 0} to serve ${file}: ${e.message}`, { hint: "choose another http.port or http.listen" })));
    server.listen(opts.port ?? 0, listen, ok);
  });
  const url = clientUrl(base, listen, (server.address() as AddressInfo).port, urlPath);
  ctx.log.info(`  serving ${file} at ${url}`);
  try {
    return { result: await use(url), requests, bytes };
  } finally {
    server.closeAllConnections();
    await new Promise((ok) => server.close(ok));
  }
}
