// docker: run commands in a container, copy files in and out, look at and remove containers.
//
// Each helper is a thin layer over `exec` with the docker CLI, built from argv arrays.
// Environment VALUES never reach argv: `docker exec -e KEY` names the variable and the
// docker client takes its value from its own environment, which exec sets. Container
// names are checked before use, so a name can never be read as a flag.
import { resolve } from "node:path";
import { exec, ExecError, shellQuote, type ExecOptions, type ExecResult } from "./exec.ts";
import { LifeboatError, UsageError } from "./errors.ts";
import { useContext, type Context } from "./context.ts";

/** Options for {@link dockerExec}: those of {@link exec} (stdin, stdout, okCodes, …) plus where to run inside. */
export interface DockerExecOptions extends Omit<ExecOptions, "cwd" | "env"> {
  /** User (name or uid[:gid]) to run as inside the container (-u); default: the image's user. */
  user?: string;
  /** Working directory inside the container (-w). */
  workdir?: string;
  /**
   * Environment for the command. Only the names go into argv (`-e KEY`); the values travel in
   * the docker client's environment. Register secret values with ctx.secrets.add so printed
   * commands mask them.
   */
  env?: Record<string, string | undefined>;
  /** Keep stdin open (-i). Default: true when stdin is given and is not "ignore". */
  interactive?: boolean;
  /** Docker daemon to talk to (`docker --host`), e.g. "ssh://core@deis-1"; default: the client's own (DOCKER_HOST). */
  dockerHost?: string;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** Throws a UsageError unless name is a valid container name or id (so it can never be read as a flag). */
export function checkContainerName(name: string): void {
  if (!NAME.test(name)) {
    throw new UsageError(`invalid container name ${JSON.stringify(name)}`, "a container name is letters, digits, '_', '.' and '-', starting with a letter or digit");
  }
}

/**
 * Runs argv inside a running container: `docker exec [-i] [-u U] [-w W] [-e K]… CONTAINER argv…`.
 * Stdin and stdout stream like {@link exec}'s (files, Node streams), so gigabytes pass in flat memory.
 * @example
 * // The Deis runbook: docker exec deis-database sudo -u postgres pg_dumpall > dump_all.sql
 * await dockerExec("deis-database", ["pg_dumpall"], { user: "postgres", stdout: { file: "dump_all.sql" } });
 * await dockerExec("db", ["psql", "-f", "-"], { user: "postgres", stdin: { file: "dump_all.sql" }, env: { PGPASSWORD: pw } });
 */
export async function dockerExec(container: string, argv: readonly string[], opts: DockerExecOptions = {}): Promise<ExecResult> {
  checkContainerName(container);
  if (argv.length === 0) throw new UsageError(`docker exec in ${container}: empty argv`);
  const { user, workdir, env, interactive, dockerHost, ...rest } = opts;
  const args = [...docker(dockerHost), "exec"];
  const stdin = opts.stdin ?? "ignore";
  if (interactive ?? stdin !== "ignore") args.push("-i");
  if (user !== undefined) args.push("-u", user);
  if (workdir !== undefined) args.push("-w", workdir);
  const ctx = opts.ctx ?? useContext();
  const childEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(env ?? {})) {
    if (v === undefined) continue;
    // exec prints env as KEY='quoted value': mask a secret in its quoted form too.
    if (ctx.secrets.redact(v) !== v) ctx.secrets.add(shellQuote(v));
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new UsageError(`docker exec in ${container}: invalid environment variable name ${JSON.stringify(k)}`);
    args.push("-e", k);
    childEnv[k] = v;
  }
  args.push(container, ...argv);
  try {
    return await exec(args, { ...rest, env: childEnv });
  } catch (e) {
    throw dockerError(e, `docker exec in container ${container}`, container, opts.ctx);
  }
}

/** Options for {@link dockerCp}. */
export interface DockerCpOptions {
  /** Keep uid/gid of the source (-a); without it, files copied in belong to root. */
  archive?: boolean;
  /** Follow a symlink given as the source (-L). */
  followLink?: boolean;
  /** Docker daemon to talk to (`docker --host`), e.g. "ssh://core@deis-1"; default: the client's own (DOCKER_HOST). */
  dockerHost?: string;
  /** The context (default: the current one). */
  ctx?: Context;
}

/** One side of a copy: a host path, or a path inside a container. */
export interface CpSide {
  /** The container, or undefined for the host. */
  container?: string;
  /** The path (on the host: made absolute; in a container: as given, absolute recommended). */
  path: string;
}

/**
 * Parses docker cp's syntax, as the docker CLI does: "CONTAINER:PATH" is a container path; an
 * absolute path, a path without ':' or one starting with '.' is a host path.
 * @example parseCpArg("deis-database:/app/dump_all.sql") // { container: "deis-database", path: "/app/dump_all.sql" }
 */
export function parseCpArg(arg: string): CpSide {
  if (arg.startsWith("/")) return { path: arg };
  const i = arg.indexOf(":");
  if (i < 0 || arg.startsWith(".")) return { path: arg };
  return { container: arg.slice(0, i), path: arg.slice(i + 1) };
}

/**
 * Copies a file or directory between the host and a container, either way:
 * `docker cp [-a] [-L] -- SRC DST`. Each side is "CONTAINER:PATH" (docker's syntax) or a host
 * path, or a {@link CpSide} when a host path contains ':'. Host paths are made absolute, so
 * names with spaces, quotes, newlines, ':' or a leading '-' are copied as they are.
 * @example
 * await dockerCp("deis-database:/app/dump_all.sql", "backups/dump_all.sql");
 * await dockerCp({ path: "./odd:name.sql" }, { container: "db", path: "/tmp/in.sql" });
 */
export async function dockerCp(src: string | CpSide, dst: string | CpSide, opts: DockerCpOptions = {}): Promise<ExecResult> {
  const s = typeof src === "string" ? parseCpArg(src) : src;
  const d = typeof dst === "string" ? parseCpArg(dst) : dst;
  if (s.container === undefined && d.container === undefined) {
    throw new UsageError(`docker cp ${JSON.stringify(s.path)} ${JSON.stringify(d.path)}: neither side is in a container`, "write one side as CONTAINER:PATH");
  }
  const args = [...docker(opts.dockerHost), "cp"];
  if (opts.archive) args.push("-a");
  if (opts.followLink) args.push("-L");
  args.push("--", cpWord(s), cpWord(d));
  const ctr = s.container ?? d.container!;
  try {
    return await exec(args, { ctx: opts.ctx, stdout: "ignore" });
  } catch (e) {
    throw dockerError(e, `docker cp ${typeof src === "string" ? src : cpWord(s)} → ${typeof dst === "string" ? dst : cpWord(d)}`, ctr, opts.ctx);
  }
}

function cpWord(side: CpSide): string {
  if (side.container === undefined) return resolve(side.path);
  checkContainerName(side.container);
  if (side.path === "") throw new UsageError(`docker cp: empty path in container ${side.container}`);
  return `${side.container}:${side.path}`;
}

/** What {@link containerState} reports: docker's State.Status, or "missing". */
export type ContainerStatus = "created" | "running" | "paused" | "restarting" | "removing" | "exited" | "dead" | "missing";

/** Options for the container queries and {@link dockerRm}. */
export interface ContainerOptions {
  /** Docker daemon to talk to (`docker --host`), e.g. "ssh://core@deis-1"; default: the client's own (DOCKER_HOST). */
  dockerHost?: string;
  /** The context (default: the current one). */
  ctx?: Context;
}

/**
 * The container's state ("running", "exited", …), or "missing" when there is no such
 * container. A read-only probe: it runs in dry-run too.
 * @example if ((await containerState("deis-database")) !== "running") throw new Error("start it first");
 */
export async function containerState(name: string, opts: ContainerOptions = {}): Promise<ContainerStatus> {
  checkContainerName(name);
  try {
    const r = await exec([...docker(opts.dockerHost), "container", "inspect", "--format", "{{.State.Status}}", "--", name], { readOnly: true, ctx: opts.ctx });
    return r.stdout.trim() as ContainerStatus;
  } catch (e) {
    if (e instanceof ExecError && /no such (container|object)/i.test(e.stderr)) return "missing";
    throw dockerError(e, `docker container inspect ${name}`, name, opts.ctx);
  }
}

/**
 * True when a container of that name exists, whatever its state.
 * @example if (await containerExists("deis-database")) await dockerRm("deis-database", { force: true });
 */
export async function containerExists(name: string, opts: ContainerOptions = {}): Promise<boolean> {
  return (await containerState(name, opts)) !== "missing";
}

/** Options for {@link dockerRm}. */
export interface DockerRmOptions extends ContainerOptions {
  /** Stop a running container first (-f). */
  force?: boolean;
  /** Remove its anonymous volumes too (-v). */
  volumes?: boolean;
  /** A container that does not exist is fine (default false: it is an error). */
  missingOk?: boolean;
}

/**
 * Removes a container: `docker rm [-f] [-v] -- NAME`. Returns false when it did not exist (with missingOk).
 * @example await dockerRm("deis-database", { force: true, volumes: true, missingOk: true });
 */
export async function dockerRm(name: string, opts: DockerRmOptions = {}): Promise<boolean> {
  checkContainerName(name);
  const args = [...docker(opts.dockerHost), "rm"];
  if (opts.force) args.push("-f");
  if (opts.volumes) args.push("-v");
  args.push("--", name);
  try {
    await exec(args, { ctx: opts.ctx, stdout: "ignore" });
    return true;
  } catch (e) {
    if (opts.missingOk && e instanceof ExecError && /no such container/i.test(e.stderr)) return false;
    throw dockerError(e, `docker rm ${name}`, name, opts.ctx);
  }
}

/**
 * The docker CLI as argv, pointed at a daemon when one is given (`docker --host=…`).
 * @example await exec([...dockerCli("ssh://core@deis-1"), "ps", "-q"], { readOnly: true });
 */
export function dockerCli(host: string | undefined): string[] {
  if (host === undefined || host === "") return ["docker"];
  return ["docker", `--host=${host}`];
}
const docker = dockerCli;

/** Turns docker's own failures (no container, not running, no daemon) into errors that say what to do. */
function dockerError(e: unknown, what: string, container: string, ctx: Context = useContext()): unknown {
  if (!(e instanceof ExecError)) return e;
  const err = ctx.secrets.redact(e.stderr);
  if (e.code === null) {
    return new LifeboatError(`${what}: the docker CLI could not start`, { hint: "install the docker client, or put it on PATH", cause: e });
  }
  if (/no such container/i.test(err) && err.includes(container)) {
    return new LifeboatError(`${what}: container ${container} does not exist (docker exit ${e.code})`, {
      hint: "check the name with `docker ps -a`",
      cause: e,
    });
  }
  if (/is not running|is paused|is restarting/i.test(err)) {
    return new LifeboatError(`${what}: container ${container} is not running (docker exit ${e.code})`, {
      hint: `start it first (docker start ${container}) and check \`docker logs ${container}\``,
      cause: e,
    });
  }
  if (/cannot connect to the docker daemon|error during connect/i.test(err)) {
    return new LifeboatError(`${what}: cannot reach the docker daemon (docker exit ${e.code})`, {
      hint: "is dockerd running, and does DOCKER_HOST point at it?",
      cause: e,
    });
  }
  return e;
}
