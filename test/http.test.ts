// httpJson against a local node:http server: retries, refusals, masking, dry-run.
// Run: node --import=tsx test/http.test.ts
// deno: yes
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { InterruptedError } from "../lib/errors.ts";
import { httpJson, HttpError } from "../lib/http.ts";
import { testContext } from "./helpers.ts";

const PASSWORD = "pw-Tr0ub4dor&3";
const hits: Record<string, number> = {};
const seen: { method: string; path: string; auth?: string; body: string }[] = [];
let flakyFailures = 2;

const server: Server = createServer(async (req: IncomingMessage, res) => {
  let body = "";
  for await (const c of req) body += c;
  const path = req.url ?? "/";
  hits[path] = (hits[path] ?? 0) + 1;
  seen.push({ method: req.method ?? "", path, auth: req.headers.authorization, body });
  const json = (status: number, v: unknown) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(v));
  };
  if (path === "/flaky") return hits[path] <= flakyFailures ? json(503, { error: "warming up" }) : json(200, { ok: true, after: hits[path] });
  if (path === "/missing") return json(404, { error: "no such index", status: 404 });
  if (path === "/always-500") return json(500, { error: `internal; you sent ${req.headers.authorization}` });
  if (path === "/echo") return json(200, { method: req.method, body: body ? JSON.parse(body) : null, auth: req.headers.authorization ?? null });
  if (path === "/empty") return res.writeHead(204).end();
  // an error page that quotes the bearer token alone, after enough text that the 300-character cut falls inside it
  if (path === "/echo-token") return json(401, { error: `${"x".repeat(270)} token ${String(req.headers.authorization).replace(/^Bearer /, "")} is not valid` });
  json(404, {});
});
await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
const fast = { retryDelayMs: 10, maxDelayMs: 20 };

/** The HttpError a call fails with (the test fails if it succeeds). */
function failure(p: Promise<unknown>): Promise<HttpError> {
  return p.then(
    () => assert.unreachable("expected the call to fail") as never,
    (e: unknown) => {
      assert.instance(e, HttpError);
      return e as HttpError;
    },
  );
}

test.after(() => void server.close());

test("httpJson retries a 503 and then returns the JSON", async () => {
  testContext();
  hits["/flaky"] = 0;
  const r = await httpJson<{ ok: boolean; after: number }>(`${base}/flaky`, fast);
  assert.equal(r, { ok: true, after: 3 });
});

test("httpJson does not retry a 404 and names method, URL and status", async () => {
  testContext();
  hits["/missing"] = 0;
  const err = await failure(httpJson(`${base}/missing`, fast));
  assert.instance(err, HttpError);
  assert.is(err.status, 404);
  assert.is(hits["/missing"], 1);
  assert.match(err.message, `GET ${base}/missing: HTTP 404 Not Found: {"error":"no such index","status":404}`);
});

test("httpJson gives up after its retries on a 5xx and says how many attempts", async () => {
  testContext();
  hits["/always-500"] = 0;
  const err = await failure(httpJson(`${base}/always-500`, { ...fast, retries: 2 }));
  assert.is(hits["/always-500"], 3);
  assert.is(err.status, 500);
  assert.match(err.message, "(3 attempts)");
});

test("an interrupt during httpJson's retries ends them with the interrupt", async () => {
  const { ctx } = testContext();
  hits["/always-500"] = 0;
  const call = httpJson(`${base}/always-500`, { retries: 5, retryDelayMs: 60_000, maxDelayMs: 60_000, ctx });
  setTimeout(() => ctx.abort(new InterruptedError("SIGTERM")), 50);
  const stuck = new Promise((r) => setTimeout(() => r(new Error("still waiting 20 s after the interrupt")), 20_000).unref());
  const err = await Promise.race([call.catch((e) => e), stuck]);
  assert.instance(err, InterruptedError);
  assert.is(hits["/always-500"], 1, "no attempt after the interrupt");
});

test("httpJson masks the password from auth or the URL in errors and logs", async () => {
  const { logs } = testContext({ argv: ["--verbose"] });
  const e1 = await failure(httpJson(`${base}/always-500`, { ...fast, retries: 1, auth: { username: "admin", password: PASSWORD } }));
  const e2 = await failure(httpJson(`http://admin:${encodeURIComponent(PASSWORD)}@127.0.0.1:${new URL(base).port}/always-500`, { ...fast, retries: 0 }));
  const basic = Buffer.from(`admin:${PASSWORD}`).toString("base64");
  assert.is(seen.at(-1)!.auth, `Basic ${basic}`, "the URL's credentials are sent as basic auth");
  for (const text of [e1.message, e2.message, logs()]) {
    assert.not.match(text, PASSWORD);
    assert.not.match(text, encodeURIComponent(PASSWORD));
    assert.not.match(text, basic);
  }
  assert.match(e2.message, `http://admin:***@127.0.0.1:`);
});

test("httpJson masks a bearer token quoted alone in an error body, also where the message is cut inside it", async () => {
  const { logs } = testContext({ argv: ["--verbose"] });
  const token = "tok-9f8e7d6c5b4a39281706";
  const e = await failure(httpJson(`${base}/echo-token`, { ...fast, retries: 0, headers: { authorization: `Bearer ${token}` } }));
  assert.match(e.message, /HTTP 401/);
  for (const text of [e.message, e.body, logs()]) {
    assert.not.match(text, token.slice(0, 8), "not even the part before the cut");
  }
});

test("httpJson sends a JSON body with basic auth and reads an empty answer as null", async () => {
  testContext();
  const r = await httpJson<{ method: string; body: unknown; auth: string }>(`${base}/echo`, {
    method: "put",
    body: { type: "fs", settings: { location: "/snap" } },
    auth: { username: "u", password: "p" },
  });
  assert.equal(r, { method: "PUT", body: { type: "fs", settings: { location: "/snap" } }, auth: `Basic ${Buffer.from("u:p").toString("base64")}` });
  assert.is(await httpJson(`${base}/empty`, { method: "DELETE" }), null);
});

test("httpJson in dry-run prints a PUT without sending it, and still runs a GET", async () => {
  const { logs } = testContext({ argv: ["--dry-run"] });
  const before = seen.length;
  const r = await httpJson(`${base}/echo`, { method: "PUT", body: { type: "fs", settings: { location: "/snap" } }, dryRunResult: { acknowledged: true } });
  assert.equal(r, { acknowledged: true });
  assert.is(seen.length, before, "nothing was sent");
  assert.match(logs(), `[dry-run] PUT ${base}/echo {"type":"fs","settings":{"location":"/snap"}}`);
  await httpJson(`${base}/echo`);
  assert.is(seen.length, before + 1, "a GET still runs in dry-run");
});

test("httpJson fails on a refused connection with a clear message", async () => {
  testContext();
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
  const port = (closed.address() as AddressInfo).port;
  await new Promise((r) => closed.close(r));
  const err = await failure(httpJson(`http://127.0.0.1:${port}/api/definitions`, { ...fast, retries: 2 }));
  assert.instance(err, HttpError);
  assert.is(err.status, null);
  assert.match(err.message, `GET http://127.0.0.1:${port}/api/definitions: connection refused (ECONNREFUSED) (3 attempts)`);
});

test.run();
