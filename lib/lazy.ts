// Loading a dependency when it is first used, not when lib/mod.ts is imported.
//
// A recipe's `--help`, a dry run or a task that never draws a spinner or parses YAML should
// not pay for ora or yaml at startup. Helpers whose API is synchronous (Logger.spinner,
// parseSettings) cannot `await import()`, so `lazyRequire` loads the package through
// Node's `require` the first time the getter is called: CommonJS packages as they are,
// ES-module packages through require(esm) (Node 20.19+, 22.12+; Deno 2). Helpers that are
// async anyway use `await import()` inline instead.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

/**
 * A getter that loads a package on its first call and returns the same module after that.
 *
 * ```ts
 * const yaml = lazyRequire<typeof import("yaml")>("yaml");
 * export const parseYaml = (text: string) => yaml().parse(text);
 * ```
 */
export function lazyRequire<T>(specifier: string): () => T {
  let mod: T | undefined;
  return () => (mod ??= require(specifier) as T);
}

/**
 * A Node built-in module, loaded as CommonJS. An `import { request } from "node:http"` builds
 * the module's ES facade, which reads every export once; on Node 22 and later node:http's
 * `WebSocket` getter then loads undici (the fetch implementation), 25–40 ms of a process's start
 * for a module that is only used for its `request` and `Agent`. Deno 2 has `require` as well.
 *
 * ```ts
 * const http = builtinModule<typeof import("node:http")>("node:http");
 * http.request({ host: "127.0.0.1", port: 7480, path: "/" });
 * ```
 */
export function builtinModule<T>(name: `node:${string}`): T {
  return require(name) as T;
}
