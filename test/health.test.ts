// waitForHealthy against local servers that come up late, never come up, or answer wrong.
// Run: node --import=tsx test/health.test.ts
// deno: yes
import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { createServer as createTcpServer } from "node:net";
import { join } from "node:path";
import { waitForHealthy } from "../lib/health.ts";
import { InterruptedError, LifeboatError } from "../lib/errors.ts";
import { cleanupTmp, testContext, tmp, freePort } from "./helpers.ts";

const quick = { intervalMs: 100, maxIntervalMs: 200 };
const servers: { close(): unknown }[] = [];


function httpServer(port: number, handler: (n: number) => { status: number; body: unknown }): Promise<Server> {
  let n = 0;
  const s = createServer((_req, res) => {
    const { status, body } = handler(++n);
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  });
  servers.push(s);
  return new Promise((r) => s.listen(port, "127.0.0.1", () => r(s)));
}

test.after(() => {
  for (const s of servers) s.close();
  cleanupTmp();
});

test("waitForHealthy succeeds on an HTTP server that comes up late", async () => {
  const { logs } = testContext();
  const port = await freePort();
  setTimeout(() => void httpServer(port, () => ({ status: 200, body: { ok: true } })), 1200);
  const r = await waitForHealthy({ http: `http://127.0.0.1:${port}/-/ready` }, { ...quick, timeoutMs: 30_000 });
  assert.ok(r.attempts > 1, "it had to wait");
  assert.match(logs(), `http://127.0.0.1:${port}/-/ready to answer 2xx is up`);
});

test("waitForHealthy times out naming the probe and its last HTTP status", async () => {
  testContext();
  const port = await freePort();
  await httpServer(port, () => ({ status: 503, body: { status: "starting" } }));
  const err = await waitForHealthy({ http: `http://admin:hunter2@127.0.0.1:${port}/health` }, { ...quick, timeoutMs: 800 }).catch((e) => e);
  assert.instance(err, LifeboatError);
  assert.match(err.message, `gave up waiting for http://admin:***@127.0.0.1:${port}/health to answer 2xx`);
  assert.match(err.message, `last result: HTTP 503 Service Unavailable: {"status":"starting"}`);
  assert.not.match(err.message, "hunter2");
});

test("a JSON predicate keeps waiting until it holds", async () => {
  testContext();
  const port = await freePort();
  await httpServer(port, (n) => ({ status: 200, body: { status: n < 3 ? "red" : "yellow" } }));
  const r = await waitForHealthy(
    { http: `http://127.0.0.1:${port}/_cluster/health`, json: (h) => h.status !== "red" },
    { ...quick, timeoutMs: 30_000, label: "OpenSearch" },
  );
  assert.is(r.attempts, 3);
});

test("a TCP probe names connection refused when it times out", async () => {
  testContext();
  const port = await freePort();
  const err = await waitForHealthy({ tcp: { host: "127.0.0.1", port } }, { ...quick, timeoutMs: 600 }).catch((e) => e);
  assert.match(err.message, `gave up waiting for tcp 127.0.0.1:${port} to accept connections`);
  assert.match(err.message, "last result: connection refused (ECONNREFUSED)");
});

test("an interrupt ends the wait at once with the interrupt, not a timeout", async () => {
  const { ctx } = testContext();
  const port = await freePort();
  const wait = waitForHealthy({ tcp: { host: "127.0.0.1", port } }, { intervalMs: 60_000, maxIntervalMs: 60_000, timeoutMs: 15 * 60_000, ctx });
  setTimeout(() => ctx.abort(new InterruptedError("SIGINT")), 50);
  const stuck = new Promise((r) => setTimeout(() => r(new Error("still waiting 20 s after the interrupt")), 20_000).unref());
  const err = await Promise.race([wait.catch((e) => e), stuck]);
  assert.instance(err, InterruptedError);
});

test("a TCP probe succeeds once the port listens", async () => {
  testContext();
  const port = await freePort();
  setTimeout(() => {
    const s = createTcpServer((c) => c.end());
    servers.push(s);
    s.listen(port, "127.0.0.1");
  }, 500);
  const r = await waitForHealthy({ tcp: { host: "127.0.0.1", port } }, { ...quick, timeoutMs: 30_000 });
  assert.ok(r.attempts >= 1);
});

test("a command probe waits for exit 0 with matching stdout", async () => {
  testContext();
  const marker = join(tmp(), "ready");
  setTimeout(() => writeFileSync(marker, "accepting connections\n"), 500);
  const r = await waitForHealthy({ command: ["cat", marker], stdout: (out) => out.includes("accepting") }, { ...quick, timeoutMs: 30_000 });
  assert.ok(r.attempts > 1);
});

test("a command probe that keeps failing reports its exit code and stderr tail", async () => {
  testContext();
  const err = await waitForHealthy({ command: ["sh", "-c", "echo 'no response from 127.0.0.1:5432' >&2; exit 2"] }, { ...quick, timeoutMs: 500 }).catch((e) => e);
  assert.match(err.message, "gave up waiting for `sh -c");
  assert.match(err.message, "last result: exit 2: no response from 127.0.0.1:5432");
});

test("dry-run prints what it would wait for and probes nothing", async () => {
  const { logs } = testContext({ argv: ["--dry-run"] });
  const marker = join(tmp(), "touched");
  const r = await waitForHealthy({ command: ["touch", marker] }, { timeoutMs: 60_000 });
  assert.is(r.dryRun, true);
  assert.not.ok(existsSync(marker));
  assert.match(logs(), "[dry-run] wait up to 1m00s for `touch ");
});

test.run();
