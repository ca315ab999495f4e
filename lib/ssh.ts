// ssh: run commands and stream tar on a remote host.
//
// The remote command is an argv array, quoted once, here, for the remote POSIX shell
// (sshd hands the command line to the login shell). Nothing else in lifeboat quotes
// for a remote shell.
import { shellJoin } from "./exec.ts";

/** How to reach a host over ssh. Comes from the site config. */
export interface SshTarget {
  /** Host name or address. */
  host: string;
  /** Port (default 22). */
  port?: number;
  /** Login user (default: ssh's default). */
  user?: string;
  /** Private key file (-i). */
  identityFile?: string;
  /** known_hosts file; with it, StrictHostKeyChecking=yes. */
  knownHostsFile?: string;
  /** Extra -o options, e.g. { ConnectTimeout: "10" }. */
  options?: Record<string, string>;
}

/**
 * The local argv that runs remoteArgv on target: ["ssh", …, "--", "<quoted remote command>"].
 * @example await exec(sshCommand({ host: "store-1", user: "core" }, ["ls", "-la", "/var/lib/deis/store"]));
 */
export function sshCommand(target: SshTarget, remoteArgv: readonly string[]): string[] {
  const argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"];
  if (target.port) argv.push("-p", String(target.port));
  if (target.identityFile) argv.push("-i", target.identityFile, "-o", "IdentitiesOnly=yes");
  if (target.knownHostsFile) argv.push("-o", `UserKnownHostsFile=${target.knownHostsFile}`, "-o", "StrictHostKeyChecking=yes");
  for (const [k, v] of Object.entries(target.options ?? {})) argv.push("-o", `${k}=${v}`);
  argv.push(target.user ? `${target.user}@${target.host}` : target.host);
  argv.push("--", shellJoin(remoteArgv));
  return argv;
}
