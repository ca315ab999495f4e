// The lab's OpenAFS cell as drills and tests use it (test/lab/afs.sh starts it): the AfsCell of
// the running cell, a volume the FUSE client can write into, files written through FUSE, and a
// volume's tree read back without any client (`vos dump | restorevol`).
//
// Why the ACL patch: a fresh volume grants rights only to system:administrators, and without the
// kernel cache manager there is no `fs setacl` (NOTES.md). So: dump the fresh volume, rewrite its
// root vnode's ACL (tag 'A', 192 bytes of big-endian ints: size, version 1, total, positive,
// negative, then (id, rights) pairs) to add system:anyuser (-101) with all rights, restore it.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AfsCell } from "../../lib/afs.ts";
import { needLab } from "./lab.ts";

/** The running lab cell: its AfsCell (noauth, through the namespace prefix), FUSE mount and cell name. */
export function labCell(): { cell: AfsCell; fuse: string; cellName: string; prefix: string[] } {
  const env = needLab("afs");
  const prefix = env.LAB_AFS_PREFIX.split(" ");
  return { cell: { server: env.LAB_AFS_SERVER, partition: "a", auth: "noauth", prefix }, fuse: env.LAB_AFS_FUSE_MNT, cellName: env.LAB_AFS_CELL, prefix };
}

function run(prefix: string[], argv: string[], input?: Buffer): Buffer {
  const all = [...prefix, ...argv];
  return execFileSync(all[0], all.slice(1), { input, maxBuffer: 1 << 30, stdio: ["pipe", "pipe", "pipe"] });
}

/** Rewrites a fresh volume dump's root ACL to also grant system:anyuser all rights. */
export function openAclInDump(dump: Buffer): Buffer {
  const old = Buffer.alloc(29);
  old.write("A", 0, "latin1");
  [28, 1, 1, 1, 0, -204, 0x7f].forEach((v, i) => old.writeInt32BE(v, 1 + i * 4));
  const at = dump.indexOf(old);
  if (at < 0) throw new Error("the dump has no fresh root ACL (system:administrators only) to open");
  const out = Buffer.from(dump);
  [36, 1, 2, 2, 0, -204, 0x7f, -101, 0x7f].forEach((v, i) => out.writeInt32BE(v, at + 1 + i * 4));
  return out;
}

/** Creates a volume and opens its root ACL so the FUSE client can write into it. */
export function createOpenVolume(name: string): void {
  const { cell, prefix } = labCell();
  run(prefix, ["vos", "create", "-server", cell.server, "-partition", "a", "-name", name, "-maxquota", "0", "-noauth"]);
  const dump = run(prefix, ["vos", "dump", "-id", name, "-time", "0", "-noauth"]);
  run(prefix, ["vos", "restore", "-server", cell.server, "-partition", "a", "-name", name, "-overwrite", "full", "-noauth"], openAclInDump(dump));
}

/** The volume's root as the FUSE client shows it (-dynroot: MNT/.:mount/CELL:VOLUME), inside the namespace. */
export function volumePath(volume: string): string {
  const { fuse, cellName } = labCell();
  return `${fuse}/.:mount/${cellName}:${volume}`;
}

/** Runs argv inside the cell's namespace (where the FUSE mount is). */
export function inCell(argv: string[], input?: Buffer): Buffer {
  return run(labCell().prefix, argv, input);
}

/** Writes a file through FUSE (bytes via stdin: no shell, hostile names are fine). */
export function writeFile(volume: string, rel: string, data: Buffer | string): void {
  inCell(["dd", "status=none", `of=${volumePath(volume)}/${rel}`], Buffer.from(data));
}

/** Removes a volume if it exists (quiet). */
export function removeVolume(name: string): void {
  const { cell, prefix } = labCell();
  spawnSync(prefix[0], [...prefix.slice(1), "vos", "remove", "-server", cell.server, "-partition", "a", "-id", name, "-noauth"], { stdio: "ignore" });
}

/** A volume's tree, unpacked with restorevol from a fresh full dump, into a new temp dir; returns the tree's dir. */
export function volumeTree(volume: string, into?: string): string {
  const dump = inCell(["vos", "dump", "-id", volume, "-time", "0", "-noauth"]);
  return dumpTree(dump, into);
}

/** Unpacks a dump (bytes) with restorevol; returns the volume's dir. */
export function dumpTree(dump: Buffer, into?: string): string {
  const dir = into ?? mkdtempSync(join(tmpdir(), "lifeboat-afs-tree-"));
  const file = join(dir, ".dump");
  writeFileSync(file, dump);
  execFileSync("restorevol", ["-file", file, "-dir", dir], { stdio: "ignore" });
  rmSync(file);
  const sub = readdirSync(dir).filter((n) => n !== ".dump");
  if (sub.length !== 1) throw new Error(`restorevol made ${sub.length} dirs in ${dir}`);
  return join(dir, sub[0]);
}
