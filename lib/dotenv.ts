// .env files, for platforms configured by one (Hoss's ~/.hoss/.env): zx's reader, loaded with zx
// on first use, so that a recipe run by node (not through `npx zx`) does not load zx to start.
import { lazyRequire } from "./lazy.ts";

type Dotenv = typeof import("zx").dotenv;
const zx = lazyRequire<typeof import("zx")>("zx");

/**
 * zx's .env reader: `loadSafe(file)` → `{ KEY: value }`, `{}` when the file is missing; `load`
 * (missing file throws), `parse(text)`, `stringify(env)`, `config(file)` (also sets process.env).
 *
 * ```ts
 * const root = dotenv.loadSafe(`${configDir}/.env`).BACKUP_ROOT;
 * ```
 */
export const dotenv: Dotenv = {
  parse: (content) => zx().dotenv.parse(content),
  stringify: (env) => zx().dotenv.stringify(env),
  load: (...files) => zx().dotenv.load(...files),
  loadSafe: (...files) => zx().dotenv.loadSafe(...files),
  config: (def, ...files) => zx().dotenv.config(def, ...files),
};
