// lib/afs.ts and lib/sealed.ts on the lab's real OpenAFS cell: listvol parsing and filters,
// backupsys with prefixes, examine's clone time, full and incremental dumps through gzip + age or
// ccrypt into sealed files, restores with -overwrite full then incremental, rename, remove, the
// name checks, and the refusals (wrong key, truncated file) before vos restore runs.
// Run: bash test/run.sh test/afs.test.ts
// needs: afs
import { test } from "uvu";
import * as assert from "uvu/assert";
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, truncateSync, writeFileSync } from "node:fs";
import { Writable } from "node:stream";
import {
  afsBackupSys,
  afsDump,
  afsDumpToFile,
  afsExamine,
  afsListVolumes,
  afsRemove,
  afsRename,
  afsRestoreFile,
  afsTransactions,
  InterruptedError,
  checkVolumeName,
  compareTrees,
  restoredName,
  sealTreeToFile,
  unsealTreeTo,
  verifySealed,
  type Seal,
} from "../lib/mod.ts";
import { createOpenVolume, inCell, labCell, removeVolume, volumePath, volumeTree, writeFile } from "../tasks/drills/afs-cell.ts";
import { cleanupTmp, testContext, tmp } from "./helpers.ts";

const { logs } = testContext();
const { cell } = labCell();
const VOLS = ["user.tafs", "db.tafs", "mail.tafs", "user.tafs.nobackup", "user.tafs.restored", "user.tafs.r2", "user.tafs.busy"];
test.before(() => VOLS.forEach(removeVolume));
test.after(() => {
  VOLS.forEach(removeVolume);
  cleanupTmp();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function rejects(p: Promise<unknown>, re: RegExp): Promise<void> {
  try {
    await p;
  } catch (e) {
    assert.match((e as Error).message, re);
    return;
  }
  assert.unreachable(`expected a rejection matching ${re}`);
}

test("volume names: 22 characters at most; NAME.restored that does not fit names a shorter suffix", () => {
  assert.is(checkVolumeName("user.alice"), "user.alice");
  assert.is(restoredName("user.alice"), "user.alice.restored");
  assert.throws(() => checkVolumeName("user.a-very-long-name-x"), /at most 22/);
  assert.throws(() => checkVolumeName("-rf"), /characters/);
  assert.throws(() => checkVolumeName("user.x y"), /characters/);
  try {
    restoredName("user.fourteen.c");
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, /user\.fourteen\.c\.restored is 24 characters/);
    assert.match((e as { hint: string }).hint, /--restore\.suffix=\.rest/);
  }
});

test("listvol -format is parsed and filtered by prefix, exclude and type; backupsys clones only the prefixes", async () => {
  for (const v of ["user.tafs", "db.tafs", "mail.tafs", "user.tafs.nobackup"]) createOpenVolume(v);
  const r = await afsBackupSys(cell, { prefixes: ["user.", "db."] });
  assert.ok(r.backedUp >= 3, `backed up ${r.backedUp}`);
  const all = await afsListVolumes(cell, { prefixes: ["user.tafs", "db.tafs", "mail.tafs"] });
  const names = all.map((v) => `${v.name}:${v.type}`);
  assert.ok(names.includes("user.tafs.backup:BK"), names.join(" "));
  assert.ok(names.includes("db.tafs.backup:BK"));
  assert.not.ok(names.includes("mail.tafs.backup:BK"), "mail. was not a prefix");
  const rw = await afsListVolumes(cell, { prefixes: ["user.tafs", "db.tafs", "mail.tafs"], exclude: /nobackup/, types: ["RW"] });
  assert.equal(rw.map((v) => v.name), ["db.tafs", "mail.tafs", "user.tafs"]);
  assert.ok(rw.every((v) => v.id > 0 && v.creationDate > 1e9));
});

for (const kind of ["age", "ccrypt"] as const) {
  test(`full + incremental dumps through gzip + ${kind} restore as the live volume was (-overwrite full, then incremental)`, async () => {
    const dir = tmp();
    const seal: Seal = kind === "age" ? { kind: "age", age: { passphrase: "correct horse" } } : { kind: "ccrypt", keyFile: `${dir}/key` };
    writeFileSync(`${dir}/key`, "lab-key-1\n", { mode: 0o600 });
    const vol = "user.tafs";
    removeVolume("user.tafs.restored");
    writeFile(vol, "a file", "one\n");
    writeFile(vol, "big.bin", randomBytes(300_000));
    inCell(["mkdir", "-p", `${volumePath(vol)}/empty dir`]);
    inCell(["ln", "-sfn", "a file", `${volumePath(vol)}/link`]);
    await afsBackupSys(cell, { prefixes: [vol] });
    const bk1 = await afsExamine(cell, `${vol}.backup`);
    assert.ok(bk1 && bk1.type === "BK" && bk1.creationDate > 1e9);
    const full = await afsDumpToFile(cell, `${vol}.backup`, `${dir}/full${kind}.dump.gz`, { seal });
    assert.ok(full.bytes > 1000 && full.plainBytes > 300_000 && full.sha256.length === 64);
    await sleep(1100); // mtimes have 1 s resolution: a change in the clone's second would be missed
    writeFile(vol, "a file", "two\n");
    writeFile(vol, "new 'quoted' $(name)", "new\n");
    inCell(["rm", `${volumePath(vol)}/big.bin`]);
    await afsBackupSys(cell, { prefixes: [vol] });
    const inc = await afsDumpToFile(cell, `${vol}.backup`, `${dir}/inc${kind}.dump.gz`, { seal, since: bk1!.creationDate });
    assert.ok(inc.bytes < full.bytes / 5, `incremental ${inc.bytes} vs full ${full.bytes}`);
    await verifySealed(full.path, { seal, sha256: full.sha256, bytes: full.bytes });
    await afsRestoreFile(cell, "user.tafs.restored", full.path, { seal, overwrite: "full" });
    await afsRestoreFile(cell, "user.tafs.restored", inc.path, { seal, overwrite: "incremental" });
    const diffs = await compareTrees(volumeTree(vol, tmp()), volumeTree("user.tafs.restored", tmp()), { owners: false });
    assert.equal(diffs, []);
    assert.ok(!logs().includes("correct horse"), "the passphrase never reaches the log");
  });
}

test("a wrong ccrypt key and a truncated file are refused before vos restore runs; no volume is created", async () => {
  const dir = tmp();
  writeFileSync(`${dir}/key`, "right\n");
  writeFileSync(`${dir}/wrong`, "wrong\n");
  const seal: Seal = { kind: "ccrypt", keyFile: `${dir}/key` };
  const f = await afsDumpToFile(cell, "db.tafs.backup", `${dir}/db.dump.gz.aescrypt`, { seal });
  removeVolume("user.tafs.r2");
  await rejects(verifySealed(f.path, { seal: { kind: "ccrypt", keyFile: `${dir}/wrong` } }), /does not open it/);
  truncateSync(f.path, f.bytes - 100);
  await rejects(verifySealed(f.path, { seal, sha256: f.sha256 }), /truncated|sha256/);
  // ccrypt itself would accept the truncated file: only the sha256 catches it.
  const raw = readFileSync(f.path);
  assert.ok(raw.length === f.bytes - 100);
  assert.is(await afsExamine(cell, "user.tafs.r2"), null);
});

test("a databases archive sealed with ccrypt unpacks whole; damaged in the middle it is refused by its sha256 and nothing appears", async () => {
  const dir = tmp();
  writeFileSync(`${dir}/key`, "right\n");
  const seal: Seal = { kind: "ccrypt", keyFile: `${dir}/key` };
  mkdirSync(`${dir}/db`);
  const dump = randomBytes(200_000);
  writeFileSync(`${dir}/db/shop 'x'.dump`, dump);
  const f = await sealTreeToFile(`${dir}/db`, `${dir}/2026.11.29-databases.tar.gz.aescrypt`, { seal });
  assert.equal(await unsealTreeTo(f.path, `${dir}/restored/ok`, { seal, sha256: f.sha256, bytes: f.bytes }), ["shop 'x'.dump"]);
  assert.ok(readFileSync(`${dir}/restored/ok/shop 'x'.dump`).equals(dump));
  const raw = readFileSync(f.path);
  raw[raw.length >> 1] ^= 0x55;
  writeFileSync(f.path, raw);
  await rejects(unsealTreeTo(f.path, `${dir}/restored/bad`, { seal, sha256: f.sha256, bytes: f.bytes }), /sha256 mismatch/);
  assert.equal(readdirSync(`${dir}/restored`), ["ok"]);
});

test("a vos dump stopped mid-way (an interrupt, a consumer failing on a full disk) ends its volserver transaction: the volume is not left busy", async () => {
  const vol = "user.tafs.busy";
  createOpenVolume(vol);
  for (let i = 0; i < 12; i++) writeFile(vol, `f${i}`, randomBytes(1 << 20));
  const id = (await afsExamine(cell, vol))!.id;
  const leftOver = async () => {
    let left = await afsTransactions(cell, { volumes: [id] });
    for (let i = 0; i < 20 && left.length; i++) left = (await sleep(100), await afsTransactions(cell, { volumes: [id] }));
    return left.map((t) => `transaction ${t.id} ${t.procedure}${t.inCall ? " (in a call)" : ""}`);
  };
  // an interrupt while vos is mid-dump (a slow consumer keeps it there)
  const { ctx } = testContext();
  const slow = new Writable({ write: (_c, _e, done) => void setTimeout(done, 20) });
  const dumping = afsDump(cell, vol, slow, { ctx });
  await sleep(700);
  ctx.abort(new InterruptedError("SIGINT"));
  await dumping.then(() => assert.unreachable("the dump should have been stopped"), () => {});
  testContext(); // a context not aborted, for what follows
  assert.equal(await leftOver(), [], "after an interrupt");
  // the consumer fails (as a full disk downstream does)
  let n = 0;
  const full = new Writable({ write: (c: Buffer, _e, done) => ((n += c.length) > 1 << 20 ? done(Object.assign(new Error("ENOSPC: no space left on device"), { code: "ENOSPC" })) : done()) });
  await afsDump(cell, vol, full).then(() => assert.unreachable("the dump should have failed"), () => {});
  assert.equal(await leftOver(), [], "after the consumer failed");
});

test("rename and remove", async () => {
  await afsRename(cell, "mail.tafs", "user.tafs.r2");
  assert.ok(await afsExamine(cell, "user.tafs.r2"));
  assert.is(await afsExamine(cell, "mail.tafs"), null);
  await afsRemove(cell, "user.tafs.r2");
  assert.is(await afsExamine(cell, "user.tafs.r2"), null);
});

test.run();
