// OpenAFS volumes through `vos`: list (listvol, listvldb), backupsys, examine, dump (full or
// incremental) into a stream, restore from a stream, rename, remove, zap; the volserver's open
// transactions (status, endtrans); and dumps stored as sealed files (gzip + age|ccrypt + sha256,
// lib/sealed.ts).
//
// Every command is an argv: `vos SUB ARGS… [-cell C] [-localauth|-noauth]`, run here, behind a
// command prefix (the lab's `nsenter -t PID -m -n --`), or on the file server over ssh (quoted
// once by lib/ssh.ts). A recipe passes one AfsCell everywhere, so the lab and production share
// the code. Volume names are checked before any command runs: at most 22 characters, not
// ending in .backup/.readonly, no whitespace or leading dash.
import { PassThrough, Writable, type Readable } from "node:stream";
import { LifeboatError, UsageError } from "./errors.ts";
import { exec, ExecError, type ExecResult, type StdinSpec, type StdoutSpec } from "./exec.ts";
import { sshCommand, type SshTarget } from "./ssh.ts";
import { useContext, type Context } from "./context.ts";
import { formatDuration } from "./log.ts";
import { retry } from "./retry.ts";
import { sealToFile, unsealTo, type Seal, type SealResult } from "./sealed.ts";

/** Where and how `vos` reaches the cell. */
export interface AfsCell {
  /** The file server holding the volumes (`-server`), a name or address. */
  server: string;
  /** Its partition (`-partition`), e.g. "a" or "/vicepa" (default "a"). */
  partition?: string;
  /** `-cell NAME` (default: the machine's ThisCell). */
  cell?: string;
  /** "localauth" (default: on a file server as root, the runbook's way), "noauth" (the lab), or "tokens" (the caller's AFS tokens). */
  auth?: "localauth" | "noauth" | "tokens";
  /** argv put before every command, e.g. ["nsenter", "-t", "1234", "-m", "-n", "--"] (the lab's namespace). */
  prefix?: readonly string[];
  /** Run the commands on this host over ssh (after the prefix, which then runs there too). */
  ssh?: SshTarget;
  /** The vos program (default "vos"). */
  vos?: string;
}

/** One volume, from `vos listvol -format` or `vos examine -format`. */
export interface AfsVolume {
  name: string;
  id: number;
  type: "RW" | "RO" | "BK";
  status: string;
  /** Clone time of a .backup volume; creation time otherwise (Unix seconds). */
  creationDate: number;
  updateDate: number;
  backupDate: number;
  /** KiB used on the partition. */
  diskused: number;
  filecount: number;
  parentID: number;
  backupID: number;
}

/** The longest volume name OpenAFS accepts. */
export const AFS_MAX_NAME = 22;

/**
 * Checks a volume name before any command runs (UsageError, exit 2, otherwise).
 * @example checkVolumeName("user.alice");
 */
export function checkVolumeName(name: string, what = "volume name"): string {
  if (!name || name.length > AFS_MAX_NAME) {
    throw new UsageError(`${what} ${JSON.stringify(name)} is ${name.length} characters; OpenAFS allows at most ${AFS_MAX_NAME}`);
  }
  if (!/^[A-Za-z0-9_.+-]+$/.test(name) || name.startsWith("-") || name.startsWith(".")) {
    throw new UsageError(`${what} ${JSON.stringify(name)} has characters OpenAFS volume names do not take`, "letters, digits, . _ + - (not first)");
  }
  if (/^\d+$/.test(name)) throw new UsageError(`${what} ${JSON.stringify(name)} is all digits: vos would read it as a volume id`);
  return name;
}

/**
 * The name of a restored copy, NAME + suffix (the runbook's $VOLNAME.restored), checked: when it
 * does not fit in 22 characters the error names the longest suffix that would.
 * @example restoredName("user.alice") // "user.alice.restored"
 */
export function restoredName(name: string, suffix = ".restored"): string {
  checkVolumeName(name);
  const full = name + suffix;
  if (full.length <= AFS_MAX_NAME && !/\.(backup|readonly)$/.test(full)) return checkVolumeName(full, "restored volume name");
  const room = AFS_MAX_NAME - name.length;
  const hint = room >= 2
    ? `use a shorter suffix of at most ${room} characters (e.g. --restore.suffix=${[".restored", ".rest", ".rst", ".r"].find((s) => s.length <= room)}) or give NEWNAME`
    : `give NEWNAME (at most ${AFS_MAX_NAME} characters); ${name} leaves no room for a suffix`;
  throw new UsageError(`${full} is ${full.length} characters; OpenAFS volume names are at most ${AFS_MAX_NAME}, so NAME${suffix} does not fit every NAME`, hint);
}

function authArgs(c: AfsCell): string[] {
  const a: string[] = [];
  if (c.cell) a.push("-cell", c.cell);
  const auth = c.auth ?? "localauth";
  if (auth === "localauth") a.push("-localauth");
  else if (auth === "noauth") a.push("-noauth");
  return a;
}

/** The local argv that runs `vos ARGS…` for this cell (prefix, ssh, auth options). */
export function vosCommand(c: AfsCell, args: readonly string[]): string[] {
  const argv = [...(c.prefix ?? []), c.vos ?? "vos", ...args, ...authArgs(c)];
  return c.ssh ? sshCommand(c.ssh, argv) : argv;
}

/** Options shared by the vos helpers. */
export interface VosRunOptions {
  stdin?: StdinSpec;
  stdout?: StdoutSpec;
  readOnly?: boolean;
  /** Stop vos when its stdout is silent this many ms (exec's idleMs). */
  idleMs?: number;
  /** Stop it by closing its stdout first, then signals after this many ms (exec's stopByClosingStdout). */
  stopByClosingStdout?: number;
  ctx?: Context;
}

/** Runs `vos ARGS…` for this cell. */
export function vos(c: AfsCell, args: readonly string[], opts: VosRunOptions = {}): Promise<ExecResult> {
  return exec(vosCommand(c, args), { stdin: opts.stdin, stdout: opts.stdout ?? "capture", readOnly: opts.readOnly, idleMs: opts.idleMs, stopByClosingStdout: opts.stopByClosingStdout, ctx: opts.ctx });
}

const partOf = (c: AfsCell) => c.partition ?? "a";

/** Parses `vos listvol -format` / `vos examine -format` output into volumes. */
export function parseVolumes(text: string): AfsVolume[] {
  const out: AfsVolume[] = [];
  let cur: Record<string, string> | null = null;
  const close = () => {
    if (cur?.name) {
      const n = (k: string) => Number((cur![k] ?? "0").split("\t")[0]);
      out.push({
        name: cur.name, id: n("id"), type: (cur.type ?? "RW") as AfsVolume["type"], status: cur.status ?? "",
        creationDate: n("creationDate"), updateDate: n("updateDate"), backupDate: n("backupDate"),
        diskused: n("diskused"), filecount: n("filecount"), parentID: n("parentID"), backupID: n("backupID"),
      });
    }
    cur = null;
  };
  for (const line of text.split("\n")) {
    if (line.startsWith("BEGIN_OF_ENTRY")) { close(); cur = {}; continue; }
    if (line.startsWith("END_OF_ENTRY")) { close(); continue; }
    const m = /^(\w+)\t+(.*)$/.exec(line);
    if (m) {
      if (m[1] === "name") { if (cur?.name) close(); cur ??= {}; }
      if (cur) cur[m[1]] = m[2].trim().replace(/\s*\t\s*/g, "\t");
    } else if (cur && !line.trim() && cur.name && !text.includes("BEGIN_OF_ENTRY")) close();
  }
  close();
  return out;
}

/** Options for {@link afsListVolumes}. */
export interface ListVolumesOptions {
  /** Keep names that begin with one of these (e.g. ["user.", "db.", "mail."]); empty: all. */
  prefixes?: readonly string[];
  /** Leave out names matching this (HCoop's "not-backed-up" volumes). */
  exclude?: RegExp;
  /** Volume types to keep (default all; the backup wants ["RW"]). */
  types?: readonly AfsVolume["type"][];
  ctx?: Context;
}

/**
 * The volumes on the cell's server and partition, parsed from `vos listvol -format`, filtered.
 * A read-only probe: it runs in dry-run too.
 * @example const vols = await afsListVolumes(cell, { prefixes: ["user."], exclude: /not-backed-up/, types: ["RW"] });
 */
export async function afsListVolumes(c: AfsCell, o: ListVolumesOptions = {}): Promise<AfsVolume[]> {
  const r = await vos(c, ["listvol", "-server", c.server, "-partition", partOf(c), "-format"], { readOnly: true, ctx: o.ctx });
  return parseVolumes(r.stdout)
    .filter((v) => !o.prefixes?.length || o.prefixes.some((p) => v.name.startsWith(p)))
    .filter((v) => !o.exclude || !o.exclude.test(v.name))
    .filter((v) => !o.types?.length || o.types.includes(v.type))
    .sort((a, b) => a.name.localeCompare(b.name));
}

/**
 * The ids of every volume on the cell's server and partition (`vos listvol -fast`), including
 * busy and unattachable ones, which `vos listvol -format` lists without a name. A read-only probe.
 * @example const orphan = (await afsVolumeIds(cell)).includes(536871070);
 */
export async function afsVolumeIds(c: AfsCell, o: { ctx?: Context } = {}): Promise<number[]> {
  const r = await vos(c, ["listvol", "-server", c.server, "-partition", partOf(c), "-fast"], { readOnly: true, ctx: o.ctx });
  return r.stdout.split("\n").map((l) => l.trim()).filter((l) => /^\d+$/.test(l)).map(Number);
}

/** One VLDB entry, from `vos listvldb`: the volume's name and the ids of its RW, RO and BK volumes (0: none). */
export interface AfsVldbEntry {
  name: string;
  rw: number;
  ro: number;
  bk: number;
}

/** Parses `vos listvldb` output. */
export function parseVldb(text: string): AfsVldbEntry[] {
  const out: AfsVldbEntry[] = [];
  for (const m of text.matchAll(/^(\S+)\s*\n((?:[ \t]+.*\n?)*)/gm)) {
    if (/^(VLDB|Total)/.test(m[1])) continue;
    const id = (k: string) => Number(new RegExp(`${k}:\\s*(\\d+)`).exec(m[2])?.[1] ?? 0);
    if (!/RWrite:|ROnly:|Backup:/.test(m[2])) continue;
    out.push({ name: m[1], rw: id("RWrite"), ro: id("ROnly"), bk: id("Backup") });
  }
  return out;
}

/**
 * The VLDB's entries for the cell's server and partition (`vos listvldb -server S -partition P`).
 * A volume `vos listvol` shows but the VLDB does not know is an orphan (e.g. of an interrupted
 * `vos restore`): it cannot be dumped by name. A read-only probe.
 * @example const known = new Set((await afsListVldb(cell)).map((e) => e.name));
 */
export async function afsListVldb(c: AfsCell, o: { ctx?: Context } = {}): Promise<AfsVldbEntry[]> {
  const r = await exec(vosCommand(c, ["listvldb", "-server", c.server, "-partition", partOf(c)]), { readOnly: true, okCodes: [0, 1, 255], ctx: o.ctx });
  if (r.code !== 0 && !/no VLDB entries|Total entries: 0/i.test(r.stdout + r.stderr)) throw new LifeboatError(`vos listvldb failed (exit ${r.code}): ${r.stderr.trim().slice(-300)}`);
  return parseVldb(r.stdout);
}

/** Options for {@link afsBackupSys}. */
export interface BackupSysOptions {
  /** `-prefix` values (empty: every volume of the server and partition). */
  prefixes?: readonly string[];
  /** Return the volumes that failed (`failedVolumes`) instead of throwing (default false: throw). */
  allowFailed?: boolean;
  ctx?: Context;
}

/**
 * `vos backupsys -prefix P…`: clones every matching RW volume to NAME.backup. A volume that fails
 * ("Could not backup NAME", e.g. busy) throws, or with allowFailed is named in failedVolumes.
 * @example const r = await afsBackupSys(cell, { prefixes: ["user.", "db.", "mail."], allowFailed: true }); r.failedVolumes // ["user.bob"]
 */
export async function afsBackupSys(c: AfsCell, o: BackupSysOptions = {}): Promise<{ backedUp: number; failed: number; failedVolumes: string[] }> {
  const args = ["backupsys", "-server", c.server, "-partition", partOf(c)];
  if (o.prefixes?.length) args.push("-prefix", ...o.prefixes);
  const r = await vos(c, args, { ctx: o.ctx });
  if (r.dryRun) return { backedUp: 0, failed: 0, failedVolumes: [] };
  const m = /Total volumes backed up: (\d+); failed to backup: (\d+)/.exec(r.stdout + r.stderr);
  if (!m) throw new LifeboatError(`vos backupsys gave no total: ${(r.stdout + r.stderr).trim().slice(-300)}`);
  const failedVolumes = [...(r.stdout + r.stderr).matchAll(/Could not backup (\S+)/g)].map((x) => x[1]);
  const res = { backedUp: Number(m[1]), failed: Number(m[2]), failedVolumes };
  if (res.failed && !o.allowFailed) throw new LifeboatError(`vos backupsys: ${res.failed} volume(s) failed to back up${failedVolumes.length ? ` (${failedVolumes.join(", ")})` : ""}`, { hint: (r.stdout + r.stderr).trim().slice(-500) });
  return res;
}

/**
 * `vos backup -id VOLUME`: clones one RW volume to VOLUME.backup (what backupsys does for each).
 * @example await afsBackup(cell, "user.bob");
 */
export async function afsBackup(c: AfsCell, volume: string, o: { ctx?: Context } = {}): Promise<void> {
  checkVolumeName(volume);
  await vos(c, ["backup", "-id", volume], { ctx: o.ctx });
}

/**
 * `vos examine -format`: one volume; for a .backup volume, creationDate is its clone time.
 * Returns null when the volume does not exist. A read-only probe.
 * @example const bk = await afsExamine(cell, "user.alice.backup"); bk?.creationDate
 */
export async function afsExamine(c: AfsCell, volume: string, o: { ctx?: Context } = {}): Promise<AfsVolume | null> {
  const r = await exec(vosCommand(c, ["examine", "-id", volume, "-format"]), { readOnly: true, okCodes: [0, 1, 255], ctx: o.ctx });
  if (r.code !== 0) {
    if (/no such entry|does not exist|VLDB: no such/i.test(r.stderr + r.stdout)) return null;
    throw new LifeboatError(`vos examine ${volume} failed (exit ${r.code}): ${r.stderr.trim().slice(-300)}`);
  }
  return parseVolumes(r.stdout)[0] ?? null;
}

/** Options for {@link afsDump}. */
export interface AfsDumpOptions {
  /** Incremental since this Unix time (seconds): files changed after it. Omitted or 0: a full dump. */
  since?: number;
  /**
   * Fail when the dump stream is silent this many ms (0 or omitted: wait as long as vos does). A
   * volserver that dies mid-dump leaves vos waiting on its call for minutes; an incremental of a
   * big volume may legitimately be quiet while the server scans for changed files: be generous.
   */
  stallMs?: number;
  ctx?: Context;
}

/**
 * `vos dump -id VOLUME -time T` into a stream (stdout; never buffered). Ends out.
 * @example await afsDump(cell, "user.alice.backup", gzipStream, { since: fullCloneTime });
 */
export async function afsDump(c: AfsCell, volume: string, out: Writable, o: AfsDumpOptions = {}): Promise<void> {
  try {
    // stopped (interrupt, a full disk downstream, a stall) by closing its stdout: vos then ends its volserver
    // transaction itself; killed by a signal it left the volume busy for minutes (its call lingers)
    await vos(c, ["dump", "-id", volume, "-time", String(o.since ?? 0)], { stdout: out, idleMs: o.stallMs || undefined, stopByClosingStdout: 5000, ctx: o.ctx });
  } catch (e) {
    if (e instanceof ExecError && e.stoppedBy === "idle") {
      throw new LifeboatError(`vos dump of ${volume}: the volserver on ${c.server} sent nothing for ${Math.round(o.stallMs! / 1000)} s (it died or hangs); stopped`, {
        hint: "check the fileserver (bos status); then run again (--resume continues with the volumes not done yet)", cause: e,
      });
    }
    throw e;
  }
}

/** Options for {@link afsRestore}. */
export interface AfsRestoreOptions {
  /** `-overwrite full` (a full dump, replacing the volume if it exists) or `incremental` (on top). */
  overwrite: "full" | "incremental";
  /** Called with the volume's id as soon as vos names it ("Restoring volume NAME Id N"), before the data streams in. */
  onVolumeId?: (id: number) => void;
  ctx?: Context;
}

/**
 * `vos restore -server S -partition P -name NAME -overwrite full|incremental` from a stream or file.
 * @example await afsRestore(cell, "user.alice.restored", dumpStream, { overwrite: "full" });
 */
export async function afsRestore(c: AfsCell, name: string, input: Readable | { file: string }, o: AfsRestoreOptions): Promise<void> {
  checkVolumeName(name);
  let said = "";
  let told = false;
  const out = new Writable({
    write(chunk: Buffer, _enc, done) {
      said = (said + chunk.toString("utf8")).slice(-4096);
      const m = told ? null : /Restoring volume \S+ Id (\d+)/.exec(said);
      if (m) (told = true, o.onVolumeId?.(Number(m[1])));
      done();
    },
  });
  await vos(c, ["restore", "-server", c.server, "-partition", partOf(c), "-name", name, "-overwrite", o.overwrite], { stdin: input, stdout: out, ctx: o.ctx });
}

/** One volserver transaction, from `vos status -server S`. */
export interface AfsTransaction {
  /** The transaction id (`vos endtrans -transaction`). */
  id: number;
  /** The volume id it holds. */
  volume: number;
  partition: string;
  /** The last RPC that used it: "Dump", "Restore", "Clone", "DeleteVolume"… */
  procedure: string;
  /** Unix seconds (vos prints the server's times in local time). */
  created: number;
  lastActive: number;
  /** attachFlags and transactionFlags, e.g. "busy", "delete". */
  flags: string[];
  /** An RPC is using it now: vos status shows that call's packet counters. */
  inCall: boolean;
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
/** "Mon Nov 30 02:01:32 2026" (ctime, local time) to Unix seconds; NaN when it is not one. */
function ctimeSeconds(s: string): number {
  const m = /^\w{3} (\w{3}) +(\d+) (\d+):(\d+):(\d+) (\d{4})$/.exec(s.trim());
  if (!m || !MONTHS.includes(m[1])) return NaN;
  return new Date(Number(m[6]), MONTHS.indexOf(m[1]), Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5])).getTime() / 1000;
}

/** Parses `vos status -server S` output into transactions. */
export function parseTransactions(text: string): AfsTransaction[] {
  const out: AfsTransaction[] = [];
  for (const block of text.split(/\n-{10,}\n/)) {
    const id = /transaction: (\d+)\s+created: (.+)/.exec(block);
    const vol = /volume: (\d+)\s+partition: (\S+)\s+procedure: (\S+)/.exec(block);
    if (!id || !vol) continue;
    out.push({
      id: Number(id[1]), volume: Number(vol[1]), partition: vol[2], procedure: vol[3],
      created: ctimeSeconds(id[2]), lastActive: ctimeSeconds(/lastActiveTime: (.+)/.exec(block)?.[1] ?? id[2]),
      flags: [...block.matchAll(/(?:attachFlags|transactionFlags): +(.+)/g)].flatMap((m) => m[1].trim().split(/\s+/)),
      inCall: /packetRead:|packetSend:/.test(block),
    });
  }
  return out;
}

/**
 * The volserver's open transactions on the cell's server (`vos status -server S`), optionally
 * only those on the given volume ids. A read-only probe: it runs in dry-run too.
 * @example const left = await afsTransactions(cell, { volumes: [536870986] }); left[0]?.procedure // "Dump"
 */
export async function afsTransactions(c: AfsCell, o: { volumes?: readonly number[]; ctx?: Context } = {}): Promise<AfsTransaction[]> {
  const r = await vos(c, ["status", "-server", c.server], { readOnly: true, ctx: o.ctx });
  return parseTransactions(r.stdout).filter((t) => !o.volumes || o.volumes.includes(t.volume));
}

/**
 * `vos endtrans -server S -transaction ID`: ends a volserver transaction (what an interrupted
 * `vos dump` leaves: the volume stays "busy" until the volserver times it out after 10 minutes).
 * Which transactions may be ended is the caller's policy. In dry-run it prints the command.
 * @example for (const t of await afsTransactions(cell, { volumes: [bk.id] })) if (!t.inCall) await afsEndTransaction(cell, t.id);
 */
export async function afsEndTransaction(c: AfsCell, id: number, o: { ctx?: Context } = {}): Promise<void> {
  await vos(c, ["endtrans", "-server", c.server, "-transaction", String(id)], { ctx: o.ctx });
}

/**
 * `vos zap -server S -partition P -id ID`: removes a volume from the server's partition without
 * touching the VLDB (what an interrupted `vos restore` leaves: a volume the VLDB does not know).
 * @example await afsZap(cell, 536871070);
 */
export async function afsZap(c: AfsCell, id: number, o: { ctx?: Context } = {}): Promise<void> {
  await vos(c, ["zap", "-server", c.server, "-partition", partOf(c), "-id", String(id)], { ctx: o.ctx });
}

/** `vos rename -oldname FROM -newname TO`. */
export async function afsRename(c: AfsCell, from: string, to: string, o: { ctx?: Context } = {}): Promise<void> {
  checkVolumeName(from);
  checkVolumeName(to);
  await vos(c, ["rename", "-oldname", from, "-newname", to], { ctx: o.ctx });
}

/** `vos remove -id VOLUME` (on the cell's server and partition). */
export async function afsRemove(c: AfsCell, volume: string, o: { ctx?: Context } = {}): Promise<void> {
  checkVolumeName(volume);
  await vos(c, ["remove", "-server", c.server, "-partition", partOf(c), "-id", volume], { ctx: o.ctx });
}

/**
 * Dumps a volume into a sealed file: `vos dump | gzip | age|ccrypt > PATH`, atomically, with
 * its sha256. Nothing is held in memory. In dry-run it prints the pipeline.
 * @example const f = await afsDumpToFile(cell, "user.alice.backup", "/backups/2026.11.29/2026.11.29-user.alice.dump.gz.age", { seal, since: 0 });
 */
export async function afsDumpToFile(c: AfsCell, volume: string, path: string, o: AfsDumpOptions & { seal: Seal }): Promise<SealResult> {
  const ctx = o.ctx ?? useContext();
  const label = vosCommand(c, ["dump", "-id", volume, "-time", String(o.since ?? 0)]).join(" ");
  return sealToFile((sink) => afsDump(c, volume, sink, { since: o.since, stallMs: o.stallMs, ctx }), path, { seal: o.seal, label, ctx });
}

/**
 * Restores a sealed dump file (decrypt → gunzip → vos restore). Verify it first (verifySealed):
 * this streams it straight in.
 * @example await afsRestoreFile(cell, "user.alice.restored", file, { seal, overwrite: "full" });
 */
export async function afsRestoreFile(c: AfsCell, name: string, path: string, o: AfsRestoreOptions & { seal: Seal }): Promise<void> {
  const ctx = o.ctx ?? useContext();
  checkVolumeName(name);
  if (ctx.dryRun) {
    const dec = o.seal.kind === "ccrypt" ? `ccrypt -cdk ${o.seal.keyFile} < ${path}` : o.seal.kind === "age" ? `age -d < ${path}` : `cat ${path}`;
    ctx.log.command(`${dec} | gunzip | ${vosCommand(c, ["restore", "-server", c.server, "-partition", partOf(c), "-name", name, "-overwrite", o.overwrite]).join(" ")}`, "dry-run");
    return;
  }
  const pipe = new PassThrough();
  const feeding = unsealTo(path, pipe, { seal: o.seal, ctx }).catch((e) => {
    pipe.destroy(e);
    throw e;
  });
  await Promise.all([feeding, afsRestore(c, name, pipe, { overwrite: o.overwrite, onVolumeId: o.onVolumeId, ctx })]);
}

/** Whether a vos failure is "VOLSER: volume is busy": a volserver transaction on the volume is still open. */
export function isVolumeBusy(err: unknown): boolean {
  const e = err as { message?: string; stderr?: string; hint?: string } | null;
  return /volume is busy/i.test(`${e?.message ?? ""}\n${e?.stderr ?? ""}\n${e?.hint ?? ""}`);
}

/** Options for {@link afsWaitWhileBusy}. */
export interface BusyWaitOptions {
  /** The volume the call works on, named in the log and the final error (e.g. "user.alice.backup"). */
  volume: string;
  /** Its volume ids: the transactions `vos status` shows on them are named (empty: none looked up). */
  ids?: readonly number[];
  /** What the call is, for the log (default "vos"), e.g. "vos dump". */
  what?: string;
  /** Wait at most this many ms for the volume to come free (default 15 min); 0: fail at once. */
  maxMs?: number;
  /** Pause after the first busy failure, in ms (default 5000); it doubles up to maxPauseMs. */
  baseMs?: number;
  /** Longest pause, in ms (default 60 000). */
  maxPauseMs?: number;
  /** The caller's policy, called after each busy failure with the transactions open on ids (e.g. end its own abandoned ones). */
  onBusy?: (transactions: AfsTransaction[], attempt: number) => Promise<void>;
  ctx?: Context;
}

/** "transaction 2751 (Dump, open 2m10s, idle 5s, held by a call)". */
export function describeTransaction(t: AfsTransaction, now = Date.now() / 1000): string {
  const age = (s: number) => (Number.isFinite(s) ? formatDuration(Math.max(0, now - s) * 1000) : "?");
  return `transaction ${t.id} (${t.procedure}, open ${age(t.created)}, idle ${age(t.lastActive)}${t.inCall ? ", held by a volserver call" : ", no call"}${t.flags.includes("delete") ? ", marked for deletion" : ""})`;
}

/**
 * Runs a vos call on one volume and, while it fails "VOLSER: volume is busy" (a transaction left
 * by an interrupted vos dump or restore that the volserver still holds), runs it again with
 * backoff through lib/retry.ts, up to maxMs. Logs once which volume and transaction it waits for;
 * after the bound it fails naming the volume, the transaction and the commands an admin can run.
 * Any other failure is thrown at once.
 * @example await afsWaitWhileBusy(cell, () => afsDumpToFile(cell, "user.alice.backup", path, { seal }), { volume: "user.alice.backup", ids: [v.backupID], maxMs: 15 * 60_000 });
 */
export async function afsWaitWhileBusy<T>(c: AfsCell, fn: (attempt: number) => Promise<T>, o: BusyWaitOptions): Promise<T> {
  const ctx = o.ctx ?? useContext();
  const maxMs = o.maxMs ?? 15 * 60_000;
  const what = o.what ?? "vos";
  let open: AfsTransaction[] = [];
  const named = () => (open.length ? open.map((t) => describeTransaction(t)).join("; ") : "no transaction on it in vos status");
  const started = Date.now();
  try {
    return await retry(async (attempt) => {
      try {
        return await fn(attempt);
      } catch (err) {
        if (!isVolumeBusy(err)) throw err;
        if (o.ids?.length) open = await afsTransactions(c, { volumes: o.ids, ctx }).catch(() => open);
        if (attempt === 1 && maxMs > 0) {
          ctx.log.warn(`${o.volume} is busy: the volserver on ${c.server} still holds ${named()}, left by an interrupted vos dump or restore; ${what} waits up to ${formatDuration(maxMs)} for it to end (retried with backoff)`);
        }
        await o.onBusy?.(open, attempt);
        throw err;
      }
    }, {
      attempts: Infinity, baseMs: o.baseMs ?? 5000, maxMs: o.maxPauseMs ?? 60_000, maxElapsedMs: maxMs, signal: ctx.signal,
      retryable: (err) => maxMs > 0 && isVolumeBusy(err),
      onRetry: (_e, n, ms) => ctx.log.debug(`${o.volume}: still busy after attempt ${n}; ${what} again in ${formatDuration(ms)}`),
    });
  } catch (err) {
    if (!isVolumeBusy(err) || ctx.signal.aborted) throw err;
    const ids = open.map((t) => t.id);
    throw new LifeboatError(`${o.volume}: still busy after ${formatDuration(Date.now() - started)} (${what}): the volserver on ${c.server} holds ${named()}`, {
      cause: err,
      hint: [
        `see it: vos status -server ${c.server}`,
        ...(ids.length ? [`end it once no call holds it: ${ids.map((id) => `vos endtrans -server ${c.server} -transaction ${id}`).join("; ")}`] : []),
        "then run again with --resume (or raise afs.busy-wait)",
      ].join("\n"),
    });
  }
}
