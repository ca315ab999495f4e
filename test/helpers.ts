// Shared fixtures for the tests: a context whose log is captured, temp dirs, trees.
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createContext, setDefaultContext, type Context, type SettingSpecs } from "../lib/internal.ts";

/** A context whose log lines are captured; it becomes the default context. */
export function testContext<T extends SettingSpecs>(
  opts: { argv?: string[]; env?: Record<string, string>; settings?: T; name?: string } = {},
): { ctx: Context<T>; logs: () => string } {
  let text = "";
  const ctx = createContext({
    name: opts.name ?? "test",
    settings: opts.settings,
    argv: opts.argv ?? [],
    env: opts.env ?? {},
    sink: { write: (s: string) => (text += s), isTTY: false },
    interactive: false,
  });
  setDefaultContext(ctx as Context);
  return { ctx, logs: () => text };
}

const made: string[] = [];

/** A fresh temp dir, removed by cleanupTmp(). */
export function tmp(prefix = "lifeboat-test-"): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  made.push(d);
  return d;
}

/** Removes every dir made by tmp(). */
export function cleanupTmp(): void {
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** A TCP port on 127.0.0.1 that is free right now (the kernel picks it; we close it again). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((ok) => srv.listen(0, "127.0.0.1", ok));
  const port = (srv.address() as AddressInfo).port;
  await new Promise((ok) => srv.close(ok));
  return port;
}
