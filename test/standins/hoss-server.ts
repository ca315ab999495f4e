/**
 * Hoss server STAND-IN for the lifeboat test lab: only the HTTP endpoint hossadm talks to.
 *
 * Why a stand-in: the real Hoss server is a dozen containers (core, auth, sync, dex, traefik,
 * minIO …) built from images that cannot be pulled or built here. A restore only needs to see
 * the server come up and tell its version, so this answers exactly that, and nothing else:
 *
 *   GET /core/v1/discover   200 {"version": "...", "build": "...", ...} once ready (as Hoss core,
 *                           which hossadm reads to record and check the server version);
 *                           503 {"status": "starting"} before --ready-after has passed
 *   anything else           404
 *
 *   node --import=tsx test/standins/hoss-server.ts --port 8080 [--version 2.1.0] [--build lab]
 *        [--ready-after MS] [--log FILE]
 *   -> one stdout line {"ready":true,"port":N,"pid":P} once listening on 127.0.0.1 (port 0 = any).
 *   import { startHossServer } from "./standins/hoss-server.ts"   (in-process, for tests)
 *
 * Every request is appended to --log (one line: time, method, path, status), so a drill can
 * see that the restore waited on it. Runs under Node (via tsx) and Deno: node: built-ins only.
 */
import http from "node:http";
import fs from "node:fs";
import process from "node:process";
import { fileURLToPath } from "node:url";

/** Options for {@link startHossServer}. */
export interface HossServerOptions {
  /** Port on 127.0.0.1 (0 = any free one). */
  port?: number;
  /** Version discover reports (default "2.1.0"). */
  version?: string;
  /** Build hash discover reports (default "lab"). */
  build?: string;
  /** Answer 503 until this many ms after start (default 0). */
  readyAfterMs?: number;
  /** Append one line per request to this file. */
  log?: string;
}

/** A running stand-in. */
export interface RunningHossServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

/**
 * Starts the stand-in in this process.
 * @example const srv = await startHossServer({ port: 0, version: "2.1.0" }); … await srv.close();
 */
export async function startHossServer(opts: HossServerOptions = {}): Promise<RunningHossServer> {
  const started = Date.now();
  const version = opts.version ?? "2.1.0";
  const build = opts.build ?? "lab";
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://127.0.0.1").pathname;
    let status = 404;
    let body: unknown = { error: "not found" };
    if (req.method === "GET" && path === "/core/v1/discover") {
      const ready = Date.now() - started >= (opts.readyAfterMs ?? 0);
      status = ready ? 200 : 503;
      body = ready ? { version, build, stand_in: true } : { status: "starting" };
    }
    if (opts.log) fs.appendFileSync(opts.log, `${new Date().toISOString()} ${req.method} ${path} ${status}\n`);
    const text = JSON.stringify(body);
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
    res.end(text);
    req.resume();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 8080, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        (server as { closeAllConnections?: () => void }).closeAllConnections?.();
      }),
  };
}

function isMain(): boolean {
  const m = (import.meta as { main?: boolean }).main;
  if (typeof m === "boolean") return m; // Deno
  try {
    return !!process.argv[1] && fs.realpathSync(process.argv[1]) === fs.realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

async function main(argv: string[]): Promise<void> {
  const opts: HossServerOptions = {};
  for (let i = 0; i < argv.length; i++) {
    const val = () => argv[++i];
    switch (argv[i]) {
      case "--port": opts.port = Number(val()); break;
      case "--version": opts.version = val(); break;
      case "--build": opts.build = val(); break;
      case "--ready-after": opts.readyAfterMs = Number(val()); break;
      case "--log": opts.log = val(); break;
      default:
        process.stderr.write(`usage: hoss-server.ts --port N [--version V] [--build B] [--ready-after MS] [--log FILE]\nunknown argument: ${argv[i]}\n`);
        process.exit(2);
    }
  }
  const srv = await startHossServer(opts).catch((e: Error) => {
    process.stderr.write(`hoss-server stand-in: ${e.message}\n`);
    process.exit(1);
  });
  const stop = () => void srv.close().then(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  process.stdout.write(JSON.stringify({ ready: true, port: srv.port, pid: process.pid }) + "\n");
}

if (isMain()) void main(process.argv.slice(2));
