// lib/sealed.ts's folder archives (the HCoop databases archive): sealTreeToFile and unsealTreeTo
// with age and with gzip only. unsealTreeTo reads the file once, checking its size and sha256 as it
// unpacks into a hidden folder that becomes the target only when all of it held. The ccrypt cases
// are in test/afs.test.ts (ccrypt comes with the afs lab piece).
// Run: bash test/run.sh test/sealed.test.ts
// deno: yes
import { test } from "uvu";
import * as assert from "uvu/assert";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sealTreeToFile, unsealTreeTo, type Seal } from "../lib/mod.ts";
import { cleanupTmp, testContext, tmp } from "./helpers.ts";

const { logs } = testContext();
test.after(cleanupTmp);

const AGE: Seal = { kind: "age", age: { passphrase: "correct horse battery" } };

async function rejects(p: Promise<unknown>, re: RegExp): Promise<Error> {
  try {
    await p;
  } catch (e) {
    assert.match((e as Error).message, re);
    return e as Error;
  }
  return assert.unreachable(`expected a rejection matching ${re}`) as never;
}

/** A folder of dumps with awkward names, sealed; returns the folder, the sealed file and its record. */
async function sealed(seal: Seal) {
  const dir = tmp();
  const src = join(dir, "src");
  mkdirSync(src);
  const files: Record<string, Buffer> = {
    "globals.sql": Buffer.from("CREATE ROLE shop;\n"),
    "sh op 'x' $(y).dump": randomBytes(300_000),
    "-dash.dump": Buffer.from("dash\n"),
  };
  for (const [n, b] of Object.entries(files)) writeFileSync(join(src, n), b);
  const r = await sealTreeToFile(src, join(dir, "2026.11.29-databases.tar.gz.age"), { seal });
  return { dir, files, r, restored: join(dir, "restored", "2026.11.29-db") };
}

/** Names in the folder beside `target`, hidden ones included: nothing may be left there after a refusal. */
const beside = (target: string) => (existsSync(join(target, "..")) ? readdirSync(join(target, "..")) : []);

test("unsealTreeTo unpacks every file byte for byte, mode 0600, with the sha256 and size checked as it reads", async () => {
  const { files, r, restored } = await sealed(AGE);
  const names = await unsealTreeTo(r.path, restored, { seal: AGE, sha256: r.sha256, bytes: r.bytes });
  assert.equal([...names].sort(), Object.keys(files).sort());
  for (const [n, b] of Object.entries(files)) {
    assert.ok(readFileSync(join(restored, n)).equals(b), n);
    assert.is(statSync(join(restored, n)).mode & 0o777, 0o600, n);
  }
  assert.equal(beside(restored), ["2026.11.29-db"], "no hidden folder is left beside it");
  assert.not.match(logs(), /correct horse/);
});

test("a sealed file damaged in the middle (same size) is refused by its sha256, and nothing appears at the target", async () => {
  const { r, restored } = await sealed({ kind: "none" });
  const raw = readFileSync(r.path);
  raw[Math.floor(raw.length / 2)] ^= 0xff;
  writeFileSync(r.path, raw);
  const e = await rejects(unsealTreeTo(r.path, restored, { seal: { kind: "none" }, sha256: r.sha256, bytes: r.bytes }), /sha256 mismatch/);
  assert.is((e as { exitCode?: number }).exitCode, 3);
  assert.not.ok(existsSync(restored));
  assert.equal(beside(restored), []);
});

test("a truncated file is refused by its size before anything is decrypted; a wrong passphrase is named; neither leaves anything", async () => {
  const { r, restored } = await sealed(AGE);
  await rejects(unsealTreeTo(r.path, restored, { seal: { kind: "age", age: { passphrase: "wrong" } }, sha256: r.sha256, bytes: r.bytes }), /passphrase or identity does not open it|damaged/);
  assert.equal(beside(restored), []);
  truncateSync(r.path, r.bytes - 10);
  await rejects(unsealTreeTo(r.path, restored, { seal: AGE, sha256: r.sha256, bytes: r.bytes }), /bytes, the manifest says .*truncated/);
  assert.equal(beside(restored), []);
});

test("a killed run's hidden folder is removed by the next unpack, and a target that is not empty is refused untouched", async () => {
  const { r, restored } = await sealed(AGE);
  const parent = join(restored, "..");
  mkdirSync(join(parent, ".partial-2026.11.29-db.999999"), { recursive: true }); // pid 999999: gone
  writeFileSync(join(parent, ".partial-2026.11.29-db.999999", "half.dump"), "half");
  await unsealTreeTo(r.path, restored, { seal: AGE, sha256: r.sha256, bytes: r.bytes });
  assert.equal(beside(restored), ["2026.11.29-db"]);
  const before = readdirSync(restored).sort();
  writeFileSync(join(restored, "precious.sql"), "the operator's own");
  await rejects(unsealTreeTo(r.path, restored, { seal: AGE, sha256: r.sha256 }), /is not empty \(precious\.sql not from/);
  assert.equal(readdirSync(restored).sort(), [...before, "precious.sql"].sort());
  assert.is(readFileSync(join(restored, "precious.sql"), "utf8"), "the operator's own");
});

test("a folder already holding the archive's files byte for byte (a run killed after its move) is accepted; one changed byte or a missing file is refused untouched", async () => {
  const { r, restored } = await sealed(AGE);
  const first = await unsealTreeTo(r.path, restored, { seal: AGE, sha256: r.sha256, bytes: r.bytes });
  const again = await unsealTreeTo(r.path, restored, { seal: AGE, sha256: r.sha256, bytes: r.bytes });
  assert.equal(again.sort(), first.sort());
  const victim = first.sort()[0];
  const body = readFileSync(join(restored, victim));
  body[body.length - 1] ^= 1;
  writeFileSync(join(restored, victim), body);
  await rejects(unsealTreeTo(r.path, restored, { seal: AGE, sha256: r.sha256 }), new RegExp(`is not empty \\(${victim.replace(/[.]/g, "\\.")} differs`));
  assert.equal(readFileSync(join(restored, victim)), body);
  rmSync(join(restored, victim));
  await rejects(unsealTreeTo(r.path, restored, { seal: AGE, sha256: r.sha256 }), new RegExp(`is not empty \\(without ${victim.replace(/[.]/g, "\\.")}`));
  assert.not.ok(existsSync(join(restored, victim)));
  // the right bytes, but through a link (not what the unpack writes): refused too
  const elsewhere = join(restored, "..", "elsewhere");
  body[body.length - 1] ^= 1;
  writeFileSync(elsewhere, body, { mode: 0o600 });
  symlinkSync(elsewhere, join(restored, victim));
  await rejects(unsealTreeTo(r.path, restored, { seal: AGE, sha256: r.sha256 }), new RegExp(`is not empty \\(${victim.replace(/[.]/g, "\\.")} differs`));
});

test.run();
