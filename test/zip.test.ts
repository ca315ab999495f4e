// lib/zip.ts (verifyZip), the check every Xenon zip passes before lifeboat trusts it: a good
// zip's entries and CRC-32s; refused with exit 3 and a message naming the zip and the problem:
// an entry whose bytes do not match its CRC-32, a wrong size, a truncated zip, a missing central
// directory, unsafe names (`../x`, absolute, backslashes), entries in folders, and a zip whose
// files differ from the list the backup recorded. The zips are written byte by byte here (a
// stored zip is a few headers), so each one is broken exactly where the test says.
// deno: yes
import { test } from "uvu";
import * as assert from "uvu/assert";
import { truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { verifyZip, VerifyError } from "../lib/mod.ts";
import { cleanupTmp, testContext, tmp } from "./helpers.ts";

testContext();
test.after(() => cleanupTmp());

interface Member {
  name: string;
  data: Buffer | string;
  /** CRC-32 written into both headers (default: the right one). */
  crc?: number;
  /** Uncompressed size written into both headers (default: the right one). */
  size?: number;
}

/** A stored (uncompressed) zip of the members; `centralAt` is where its central directory starts. */
function storedZip(members: Member[]): { bytes: Buffer; centralAt: number } {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const m of members) {
    const data = Buffer.from(m.data);
    const name = Buffer.from(m.name);
    const crc = (m.crc ?? crc32(data)) >>> 0;
    const size = m.size ?? data.length;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4); // version needed
    local.writeUInt16LE(0x0800, 6); // UTF-8 names
    local.writeUInt16LE(0, 8); // stored
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18); // compressed size: the bytes that follow
    local.writeUInt32LE(size, 22);
    local.writeUInt16LE(name.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(0x031e, 4); // made by: unix
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(0x0800, 8);
    central.writeUInt16LE(0, 10);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(size, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, name, data);
    centrals.push(central, name);
    offset += 30 + name.length + data.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(members.length, 8);
  end.writeUInt16LE(members.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return { bytes: Buffer.concat([...locals, cd, end]), centralAt: offset };
}

const index: Member[] = [
  { name: "segments_2", data: '{"generation":2,"segments":["_0"]}' },
  { name: "_0.cfs", data: "version records ".repeat(200) },
  { name: "_0.si", data: '{"docCount":3}' },
];

function write(members: Member[], name = "b.zip"): string {
  const path = join(tmp(), name);
  writeFileSync(path, storedZip(members).bytes);
  return path;
}

/** verifyZip's refusal: a VerifyError (exit 3); fails the test when the zip was accepted. */
async function refusal(path: string, opts: Parameters<typeof verifyZip>[1] = {}): Promise<VerifyError> {
  const e = await verifyZip(path, opts).then(() => null, (x: unknown) => x);
  assert.ok(e instanceof VerifyError, `refused with a VerifyError, got ${String(e)}`);
  assert.is(e.exitCode, 3);
  assert.ok(e.message.startsWith(`zip ${path}: `), `names the zip: ${e.message}`);
  return e;
}

test("a complete zip: every entry with its size and its checked CRC-32", async () => {
  const path = write(index);
  const r = await verifyZip(path);
  assert.equal(r.entries.map((e) => [e.name, e.size, e.crc32]), index.map((m) => [m.name, Buffer.byteLength(m.data), crc32(Buffer.from(m.data)) >>> 0]));
  assert.ok(r.bytes > 3400);
  assert.equal((await verifyZip(path, { expect: r.entries })).entries.length, 3, "its own list is accepted");
});

test("an entry whose bytes do not match its CRC-32 is refused, naming the entry and both CRCs", async () => {
  const bad = index.map((m) => (m.name === "_0.cfs" ? { ...m, crc: 0x12345678 } : m));
  const e = await refusal(write(bad));
  assert.match(e.message, /_0\.cfs: CRC-32 [0-9a-f]{8} where the central directory says 12345678; it is not a complete zip/);
  // the same with the bytes changed after the zip was written (one bit flipped in the entry's data)
  const { bytes } = storedZip(index);
  const at = bytes.indexOf("version records");
  bytes[at + 5] ^= 0x01;
  const flipped = join(tmp(), "flipped.zip");
  writeFileSync(flipped, bytes);
  assert.match((await refusal(flipped)).message, /_0\.cfs: CRC-32 .* where the central directory says/);
});

test("an entry shorter than its recorded size is refused", async () => {
  const bad = index.map((m) => (m.name === "_0.si" ? { ...m, size: 999 } : m));
  assert.match((await refusal(write(bad))).message, /not a complete zip/);
});

test("a truncated zip and a zip without its central directory are refused as not complete", async () => {
  const { bytes, centralAt } = storedZip(index);
  const half = join(tmp(), "half.zip");
  writeFileSync(half, bytes.subarray(0, Math.floor(bytes.length / 2)));
  assert.match((await refusal(half)).message, /end of central directory record signature not found\. Either not a zip file, or file is truncated; it is not a complete zip/i);
  const noCd = join(tmp(), "no-cd.zip");
  writeFileSync(noCd, bytes.subarray(0, centralAt)); // every entry's bytes, no central directory (a STREAM cut before its end)
  assert.match((await refusal(noCd)).message, /it is not a complete zip/);
  const cutInCd = join(tmp(), "cut.zip");
  writeFileSync(cutInCd, bytes);
  truncateSync(cutInCd, bytes.length - 1); // one byte short of the end record
  assert.match((await refusal(cutInCd)).message, /it is not a complete zip/);
  const empty = join(tmp(), "empty.zip");
  writeFileSync(empty, "");
  await refusal(empty);
});

test("a file that is missing is refused with exit 3", async () => {
  const e = await refusal(join(tmp(), "nope.zip"));
  assert.match(e.message, /ENOENT/);
});

for (const [name, why] of [
  ["../x", "an entry that climbs out"],
  ["a/../../x", "an entry that climbs out of a folder"],
  ["/etc/passwd", "an absolute entry"],
  ["C:/x", "a drive-letter entry"],
  ["a\\..\\x", "a backslash entry"],
] as const) {
  test(`unsafe names are refused as unsafe: ${why} (${name})`, async () => {
    const e = await refusal(write([index[0], { name, data: "x" }]));
    assert.ok(e.message.includes(`unsafe entry name ${JSON.stringify(name)}`), e.message);
    assert.ok(e.message.endsWith("; refused"), "an unsafe name is not called incomplete");
  });
}

test("entries in folders (a nested file, a directory entry) are refused: Xenon's backups are flat; flat: false takes them", async () => {
  const nested = write([index[0], { name: "lucene/_0.cfs", data: "x" }]);
  assert.match((await refusal(nested)).message, /entry "lucene\/_0\.cfs" is in a folder; Xenon's backups are flat; refused$/);
  const dirEntry = write([{ name: "lucene/", data: "" }, index[0]]);
  assert.match((await refusal(dirEntry)).message, /entry "lucene\/" is in a folder/);
  assert.equal((await verifyZip(nested, { flat: false })).entries.map((e) => e.name), ["segments_2", "lucene/_0.cfs"]);
});

test("a zip whose files differ from the recorded list is refused, listing what is missing, changed and extra", async () => {
  const path = write(index);
  const recorded = (await verifyZip(path)).entries;
  const other = write([index[0], { ...index[1], data: `${index[1].data}!` }, { name: "_1.cfs", data: "new" }], "other.zip");
  const e = await refusal(other, { expect: recorded });
  assert.match(e.message, /its files differ from the list the backup recorded/);
  const cfs = recorded.find((x) => x.name === "_0.cfs")!;
  const si = recorded.find((x) => x.name === "_0.si")!;
  assert.equal(e.problems.sort(), [
    `missing or changed: _0.cfs:${cfs.crc32}`,
    `missing or changed: _0.si:${si.crc32}`,
    `not in the backup's list: _0.cfs:${crc32(Buffer.from(`${index[1].data}!`)) >>> 0}`,
    `not in the backup's list: _1.cfs:${crc32(Buffer.from("new")) >>> 0}`,
  ].sort());
  const fewer = await refusal(write(index.slice(0, 2), "fewer.zip"), { expect: recorded });
  assert.equal(fewer.problems, [`missing or changed: _0.si:${si.crc32}`]);
});

test.run();
