// Comparisons for drills: two directory trees, entry by entry.
import { createHash } from "node:crypto";
import { createReadStream, lstatSync, readdirSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";

/** Options for {@link compareTrees}. */
export interface CompareOptions {
  /** Compare uid/gid too (default true). */
  owners?: boolean;
  /** Compare permission bits (default true). */
  modes?: boolean;
  /** Relative paths to leave out (exact match or prefix followed by "/"). */
  ignore?: string[];
}

interface Node {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  sha?: string;
  link?: string;
}

async function index(root: string, o: CompareOptions): Promise<Map<string, Node>> {
  const out = new Map<string, Node>();
  const skip = (rel: string) => (o.ignore ?? []).some((i) => rel === i || rel.startsWith(i + "/"));
  const visit = async (dir: string, prefix: string) => {
    for (const name of readdirSync(dir).sort()) {
      const rel = prefix ? `${prefix}/${name}` : name;
      if (skip(rel)) continue;
      const p = join(dir, name);
      const st = lstatSync(p);
      const node: Node = { type: "other", mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, size: 0 };
      if (st.isDirectory()) node.type = "dir";
      else if (st.isSymbolicLink()) {
        node.type = "symlink";
        node.link = readlinkSync(p);
      } else if (st.isFile()) {
        node.type = "file";
        node.size = st.size;
        const h = createHash("sha256");
        await pipeline(createReadStream(p), h);
        node.sha = h.digest("hex");
      }
      out.set(rel, node);
      if (st.isDirectory()) await visit(p, rel);
    }
  };
  await visit(root, "");
  return out;
}

/**
 * Compares two trees: names, types, contents (sha256), link targets, modes and owners.
 * Resolves to a list of differences, empty when the trees match.
 * @example const diffs = await compareTrees("/var/lib/app", "/tmp/restored"); if (diffs.length) throw …
 */
export async function compareTrees(a: string, b: string, opts: CompareOptions = {}): Promise<string[]> {
  const o = { owners: true, modes: true, ...opts };
  const [ia, ib] = await Promise.all([index(a, o), index(b, o)]);
  const diffs: string[] = [];
  for (const [p, x] of ia) {
    const y = ib.get(p);
    if (!y) diffs.push(`${JSON.stringify(p)}: missing on the right`);
    else if (x.type !== y.type) diffs.push(`${JSON.stringify(p)}: ${x.type} vs ${y.type}`);
    else if (x.sha !== y.sha) diffs.push(`${JSON.stringify(p)}: contents differ`);
    else if (x.link !== y.link) diffs.push(`${JSON.stringify(p)}: symlink target ${x.link} vs ${y.link}`);
    else if (o.modes && x.type !== "symlink" && x.mode !== y.mode) diffs.push(`${JSON.stringify(p)}: mode ${x.mode.toString(8)} vs ${y.mode.toString(8)}`);
    else if (o.owners && (x.uid !== y.uid || x.gid !== y.gid)) diffs.push(`${JSON.stringify(p)}: owner ${x.uid}:${x.gid} vs ${y.uid}:${y.gid}`);
  }
  for (const p of ib.keys()) if (!ia.has(p)) diffs.push(`${JSON.stringify(p)}: missing on the left`);
  return diffs;
}
