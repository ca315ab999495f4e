// inventory: read an Ansible inventory (the hosts a LambdaStack or Epiphany build dir holds).
//
// Three forms, as Ansible reads them:
//   - INI (Ansible's `ini` inventory plugin): `[group]` host lines, `[group:vars]` key=value
//     lines, `[group:children]` group names, hosts before any section are ungrouped. A host line
//     is split like Python's shlex.split (the npm port `shlex`), exactly as the plugin does:
//     `name[:port] key=value key="quoted value"`. Ranges (`web[01:03]`, `db-[a:c]`) expand.
//     Values stay strings (Ansible would literal_eval them; ports are read as numbers here).
//   - YAML (the `yaml` plugin): `all: {hosts, vars, children: {group: {hosts, vars, children}}}`.
//   - JSON from `ansible-inventory --list` (`_meta.hostvars`, groups with hosts/children/vars),
//     which covers dynamic inventories (scripts, plugins): when `ansible-inventory` is on PATH,
//     readInventory asks it first, unless told not to.
//
// Variable precedence (Ansible's, simplified): group `all`, then groups by depth (a child after
// its parent), then by name, then host vars. No vaults, no group_vars/host_vars directories,
// no Jinja templating: values that contain `{{` are kept as text.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import process from "node:process";
import { split as shlexSplit } from "shlex";
import { useContext, type Context } from "./context.ts";
import { UsageError } from "./errors.ts";
import { exec, which } from "./exec.ts";
import { lazyRequire } from "./lazy.ts";
import { yamlProblem } from "./settings.ts";
import type { SshTarget } from "./ssh.ts";

// yaml loads when a YAML inventory is parsed.
const YAML = lazyRequire<typeof import("yaml")>("yaml");

/** A group: its own hosts and child groups (not expanded), and its vars. */
export interface InventoryGroup {
  hosts: string[];
  children: string[];
  vars: Record<string, unknown>;
}

/** A parsed inventory. */
export interface Inventory {
  /** Where it was read from. */
  source: string;
  /** How: "ini", "yaml" or "ansible-inventory" (JSON). */
  format: "ini" | "yaml" | "json";
  /** Host vars as written for the host itself (group vars not merged), in order of appearance. */
  hosts: Record<string, Record<string, unknown>>;
  groups: Record<string, InventoryGroup>;
}

/** A host with its merged vars and how to reach it. */
export interface InventoryHost {
  /** The inventory name (what Ansible calls inventory_hostname). */
  name: string;
  /** Merged variables (all → groups by depth → host). */
  vars: Record<string, unknown>;
  /** ansible_host/ansible_port/ansible_user/ansible_ssh_private_key_file as an ssh target. */
  ssh: SshTarget;
}

/** Options for {@link readInventory}. */
export interface ReadInventoryOptions {
  /** Ask `ansible-inventory -i PATH --list` when it is on PATH (default true). */
  ansibleInventory?: boolean;
  ctx?: Context;
}

/** The files a build dir may keep its inventory in, in the order they are tried. */
export const INVENTORY_FILES = ["inventory", "inventory.yml", "inventory.yaml", "inventory.ini", "hosts", "hosts.yml", "hosts.yaml", "inventory.json"];

/**
 * Reads an inventory file, or a build dir holding one (`inventory`, `inventory.yml`, … `hosts`).
 * A read-only probe: it runs in dry-run too.
 * @example
 * const inv = await readInventory("build/mycluster");
 * for (const h of groupHosts(inv, "postgresql")) await ssh(h.ssh, ["pg_isready"]);
 */
export async function readInventory(path: string, opts: ReadInventoryOptions = {}): Promise<Inventory> {
  const ctx = opts.ctx ?? useContext();
  const file = inventoryFile(path);
  if (opts.ansibleInventory !== false && which("ansible-inventory")) {
    const r = await exec(["ansible-inventory", "-i", file, "--list"], { readOnly: true, ctx });
    return parseInventoryJson(r.stdout, file);
  }
  const text = readFileSync(file, "utf8");
  return parseInventory(text, file);
}

/**
 * readInventory without waiting: for a recipe's plan, which must know the hosts before any step
 * runs (so a resumed run gets the same fan-out items). `ansible-inventory` runs as a read-only
 * probe when it is on PATH.
 * @example const inv = loadInventory(s["build-dir"]);
 */
export function loadInventory(path: string, opts: Omit<ReadInventoryOptions, "ctx"> = {}): Inventory {
  const file = inventoryFile(path);
  if (opts.ansibleInventory !== false && which("ansible-inventory")) {
    return parseInventoryJson(execFileSync("ansible-inventory", ["-i", file, "--list"], { encoding: "utf8", maxBuffer: 64 << 20 }), file);
  }
  return parseInventory(readFileSync(file, "utf8"), file);
}

/** The inventory file for a path: the path itself, or the first INVENTORY_FILES entry in a dir. */
export function inventoryFile(path: string): string {
  if (!existsSync(path)) throw new UsageError(`inventory ${path}: no such file or directory`, "give the build dir that holds the cluster's Ansible inventory (-b BUILD_DIR)");
  if (!statSync(path).isDirectory()) return path;
  for (const f of INVENTORY_FILES) if (existsSync(join(path, f)) && statSync(join(path, f)).isFile()) return join(path, f);
  throw new UsageError(`build dir ${path} holds no inventory (looked for ${INVENTORY_FILES.join(", ")})`, "give the build dir that holds the cluster's Ansible inventory (-b BUILD_DIR)");
}

/**
 * Parses inventory text, telling the format from the content: JSON (`{`), YAML (a top-level
 * mapping such as `all:`), else INI.
 * @example parseInventory("[postgresql]\ndb1 ansible_host=10.0.0.5\n", "inventory")
 */
export function parseInventory(text: string, source = "inventory"): Inventory {
  const t = text.trimStart();
  if (t.startsWith("{")) return parseInventoryJson(text, source);
  const first = t.split("\n").find((l) => l.trim() && !/^\s*[#;]/.test(l)) ?? "";
  // YAML's top level is `group:` (a key with nothing after it); INI starts with `[group]` or a host line.
  if (/^[A-Za-z0-9_.-]+:\s*(#.*)?$/.test(first.trimEnd()) || first.trim() === "---") return parseInventoryYaml(text, source);
  return parseInventoryIni(text, source);
}

function emptyInventory(source: string, format: Inventory["format"]): Inventory {
  return { source, format, hosts: {}, groups: { all: { hosts: [], children: [], vars: {} }, ungrouped: { hosts: [], children: [], vars: {} } } };
}

function group(inv: Inventory, name: string): InventoryGroup {
  return (inv.groups[name] ??= { hosts: [], children: [], vars: {} });
}

function addHost(inv: Inventory, groupName: string, host: string, vars: Record<string, unknown>): void {
  inv.hosts[host] = { ...(inv.hosts[host] ?? {}), ...vars };
  const g = group(inv, groupName);
  if (!g.hosts.includes(host)) g.hosts.push(host);
}

/** Expands Ansible host ranges: `web[01:03]` → web01, web02, web03; `db-[a:c]`; `x[0:10:5]`. */
export function expandHostPattern(pattern: string): string[] {
  const m = /^(.*?)\[([0-9a-zA-Z]+):([0-9a-zA-Z]+)(?::(\d+))?\](.*)$/.exec(pattern);
  if (!m) return [pattern];
  const [, head, from, to, stepText, tail] = m;
  const step = stepText ? Number(stepText) : 1;
  const out: string[] = [];
  if (/^\d+$/.test(from) && /^\d+$/.test(to)) {
    const width = from.length;
    for (let i = Number(from); i <= Number(to); i += step) out.push(String(i).padStart(width, "0"));
  } else if (/^[a-zA-Z]$/.test(from) && /^[a-zA-Z]$/.test(to)) {
    for (let c = from.charCodeAt(0); c <= to.charCodeAt(0); c += step) out.push(String.fromCharCode(c));
  } else {
    throw new UsageError(`inventory: bad host range '${pattern}'`);
  }
  return out.flatMap((x) => expandHostPattern(`${head}${x}${tail}`));
}

/** Parses Ansible's INI inventory format. */
export function parseInventoryIni(text: string, source = "inventory"): Inventory {
  const inv = emptyInventory(source, "ini");
  let section = { name: "ungrouped", kind: "hosts" as "hosts" | "vars" | "children" };
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const where = `${source}:${i + 1}`;
    const line = raw.trim();
    if (!line || line.startsWith("#") || line.startsWith(";")) return;
    const header = /^\[([^\]]+)\]\s*(?:[#;].*)?$/.exec(line);
    if (header) {
      const [name, kind = "hosts"] = header[1].split(":");
      if (!["hosts", "vars", "children"].includes(kind)) throw new UsageError(`${where}: section [${header[1]}]: ':${kind}' is not vars or children`);
      if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new UsageError(`${where}: bad group name '${name}'`);
      section = { name, kind: kind as "hosts" | "vars" | "children" };
      group(inv, name);
      return;
    }
    if (section.kind === "vars") {
      const eq = line.indexOf("=");
      // (the line is not shown: it may be a password's)
      if (eq < 1) throw new UsageError(`${where}: expected key=value in [${section.name}:vars], got a line without '='`);
      group(inv, section.name).vars[line.slice(0, eq).trim()] = unquote(line.slice(eq + 1).trim());
      return;
    }
    let tokens: string[];
    try {
      tokens = shlexSplit(line.replace(/\s+#.*$/, ""));
    } catch (e) {
      throw new UsageError(`${where}: cannot split the line of host ${JSON.stringify(line.trim().split(/\s/)[0])}: ${(e as Error).message} (the line is not shown: it may hold a password)`);
    }
    if (section.kind === "children") {
      const g = group(inv, section.name);
      if (!g.children.includes(tokens[0])) g.children.push(tokens[0]);
      group(inv, tokens[0]);
      return;
    }
    const [hostSpec, ...rest] = tokens;
    const vars: Record<string, unknown> = {};
    for (const kv of rest) {
      const eq = kv.indexOf("=");
      if (eq < 1) throw new UsageError(`${where}: host ${hostSpec}: expected key=value, got a word without '=' (not shown: it may be a password)`);
      vars[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
    // `name:port` (not an IPv6 address) sets ansible_port, as the plugin does.
    let name = hostSpec;
    const port = /^([^:\[\]]+):(\d+)$/.exec(hostSpec);
    if (port) {
      name = port[1];
      vars.ansible_port ??= port[2];
    }
    for (const h of expandHostPattern(name)) addHost(inv, section.name, h, vars);
  });
  return finish(inv);
}

function unquote(v: string): string {
  if (v.length >= 2 && (v[0] === '"' || v[0] === "'") && v.endsWith(v[0])) return v.slice(1, -1);
  return v;
}

/** Parses Ansible's YAML inventory format. */
export function parseInventoryYaml(text: string, source = "inventory"): Inventory {
  const inv = emptyInventory(source, "yaml");
  let doc: unknown;
  try {
    doc = YAML().parse(text);
  } catch (e) {
    throw new UsageError(`${source}: not valid YAML: ${yamlProblem(e, text)}`);
  }
  if (!isMap(doc)) throw new UsageError(`${source}: a YAML inventory is a mapping of groups (all: {hosts, vars, children})`);
  const walk = (name: string, body: unknown, where: string) => {
    const g = group(inv, name);
    if (body === null || body === undefined) return;
    if (!isMap(body)) throw new UsageError(`${where}: group ${name} must be a mapping with hosts, vars or children`);
    for (const key of Object.keys(body)) {
      if (!["hosts", "vars", "children"].includes(key)) throw new UsageError(`${where}: group ${name}: unknown key '${key}' (hosts, vars, children)`);
    }
    if (body.vars !== undefined && body.vars !== null) {
      if (!isMap(body.vars)) throw new UsageError(`${where}: ${name}.vars must be a mapping`);
      Object.assign(g.vars, body.vars);
    }
    if (body.hosts !== undefined && body.hosts !== null) {
      if (!isMap(body.hosts)) throw new UsageError(`${where}: ${name}.hosts must be a mapping of host names`);
      for (const [h, hv] of Object.entries(body.hosts)) {
        if (hv !== null && !isMap(hv)) throw new UsageError(`${where}: ${name}.hosts.${h} must be a mapping of vars (or empty)`);
        for (const x of expandHostPattern(h)) addHost(inv, name, x, (hv as Record<string, unknown>) ?? {});
      }
    }
    if (body.children !== undefined && body.children !== null) {
      if (!isMap(body.children)) throw new UsageError(`${where}: ${name}.children must be a mapping of groups`);
      for (const [c, cb] of Object.entries(body.children)) {
        if (!g.children.includes(c)) g.children.push(c);
        walk(c, cb, where);
      }
    }
  };
  for (const [name, body] of Object.entries(doc)) walk(name, body, source);
  return finish(inv);
}

/** Parses `ansible-inventory --list` output (also a static JSON inventory of that shape). */
export function parseInventoryJson(text: string, source = "inventory"): Inventory {
  const inv = emptyInventory(source, "json");
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    // V8's message quotes the text around the fault, which may be a password.
    const at = /position (\d+)/.exec((e as Error).message)?.[1];
    throw new UsageError(`${source}: not valid JSON${at ? ` at position ${at}` : ""} (the text is not shown: it may hold a password)`);
  }
  if (!isMap(doc)) throw new UsageError(`${source}: ansible-inventory JSON is an object of groups`);
  const hostvars = (isMap(doc._meta) && isMap(doc._meta.hostvars) ? doc._meta.hostvars : {}) as Record<string, Record<string, unknown>>;
  for (const [name, body] of Object.entries(doc)) {
    if (name === "_meta") continue;
    const g = group(inv, name);
    const b = (Array.isArray(body) ? { hosts: body } : body) as { hosts?: string[]; children?: string[]; vars?: Record<string, unknown> };
    for (const h of b.hosts ?? []) addHost(inv, name, h, {});
    for (const c of b.children ?? []) if (!g.children.includes(c)) g.children.push(c), group(inv, c);
    Object.assign(g.vars, b.vars ?? {});
  }
  // Host vars come merged (group vars included) from ansible-inventory: keep them as the host's own.
  for (const [h, v] of Object.entries(hostvars)) inv.hosts[h] = { ...(inv.hosts[h] ?? {}), ...v };
  return finish(inv);
}

/** Every group is a child of all; hosts in no group but all/ungrouped are in ungrouped. */
function finish(inv: Inventory): Inventory {
  const all = inv.groups.all;
  const isChild = new Set(Object.values(inv.groups).flatMap((g) => g.children));
  for (const name of Object.keys(inv.groups)) {
    if (name !== "all" && !isChild.has(name) && !all.children.includes(name)) all.children.push(name);
  }
  for (const name of Object.keys(inv.groups)) cycleCheck(inv, name, []);
  const grouped = new Set(Object.entries(inv.groups).filter(([n]) => n !== "all" && n !== "ungrouped").flatMap(([, g]) => g.hosts));
  const ung = inv.groups.ungrouped;
  for (const h of [...all.hosts]) if (!grouped.has(h) && !ung.hosts.includes(h)) ung.hosts.push(h);
  return inv;
}

function cycleCheck(inv: Inventory, name: string, path: string[]): void {
  if (path.includes(name)) throw new UsageError(`${inv.source}: group ${name} is its own descendant (${[...path, name].join(" → ")})`);
  for (const c of inv.groups[name]?.children ?? []) cycleCheck(inv, c, [...path, name]);
}

/** The names of a group's hosts, its children's included, in order of appearance, each once. */
export function groupHostNames(inv: Inventory, name: string): string[] {
  if (!inv.groups[name]) return [];
  const seen: string[] = [];
  const visit = (g: string) => {
    for (const h of inv.groups[g]?.hosts ?? []) if (!seen.includes(h)) seen.push(h);
    for (const c of inv.groups[g]?.children ?? []) visit(c);
  };
  visit(name);
  if (name === "all") for (const h of Object.keys(inv.hosts)) if (!seen.includes(h)) seen.push(h);
  return seen;
}

/**
 * The hosts of a group (children included), with merged vars and ssh targets; [] when the
 * group is not in the inventory.
 * @example const [primaryCandidate, ...rest] = groupHosts(inv, "postgresql");
 */
export function groupHosts(inv: Inventory, name: string): InventoryHost[] {
  return groupHostNames(inv, name).map((h) => inventoryHost(inv, h));
}

/** One host with its merged vars. */
export function inventoryHost(inv: Inventory, name: string): InventoryHost {
  if (!(name in inv.hosts)) throw new UsageError(`${inv.source}: no host ${name}`);
  // groups holding the host, directly or through children, with their depth under all
  const depth = new Map<string, number>();
  const visit = (g: string, d: number) => {
    if ((depth.get(g) ?? -1) >= d) return;
    depth.set(g, d);
    for (const c of inv.groups[g]?.children ?? []) visit(c, d + 1);
  };
  visit("all", 0);
  const holding = Object.keys(inv.groups).filter((g) => groupHostNames(inv, g).includes(name) || g === "all");
  holding.sort((a, b) => (depth.get(a) ?? 0) - (depth.get(b) ?? 0) || (a === "all" ? -1 : b === "all" ? 1 : a.localeCompare(b)));
  const vars: Record<string, unknown> = {};
  for (const g of holding) Object.assign(vars, inv.groups[g].vars);
  Object.assign(vars, inv.hosts[name]);
  return { name, vars, ssh: sshTargetOf(name, vars, inv.source) };
}

/** The ssh target Ansible would use for a host's vars. */
export function sshTargetOf(name: string, vars: Record<string, unknown>, source = "inventory"): SshTarget {
  const str = (k: string) => (vars[k] === undefined || vars[k] === null || vars[k] === "" ? undefined : String(vars[k]));
  const portText = str("ansible_port") ?? str("ansible_ssh_port");
  const port = portText === undefined ? undefined : Number(portText);
  if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536)) throw new UsageError(`${source}: host ${name}: ansible_port '${portText}' is not a port`);
  const key = str("ansible_ssh_private_key_file") ?? str("ansible_private_key_file");
  return {
    host: str("ansible_host") ?? str("ansible_ssh_host") ?? name,
    port,
    user: str("ansible_user") ?? str("ansible_ssh_user"),
    identityFile: key ? resolveKey(key, source) : undefined,
  };
}

function resolveKey(key: string, source: string): string {
  if (key.startsWith("~/")) return join(process.env.HOME ?? "/root", key.slice(2));
  if (key.startsWith("/")) return key;
  return resolve(dirname(source), key);
}

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
