// The archive drill: back up, destroy, restore, compare — on local files, no lab pieces.
//
//   npx zx tasks/run.ts drill:archive [--workdir DIR] [--passphrase-file F]
//   make drill-archive, DRILL=archive make demo
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import chalk from "chalk";
import {
  compareTrees,
  LifeboatError,
  listBackups,
  packArchive,
  printOutcomes,
  runSteps,
  stamp,
  step,
  unpackArchive,
  verifyArchive,
  VerifyError,
} from "../../lib/internal.ts";
import { makeSampleTree } from "./fixtures.ts";
import { drillTask } from "./lab.ts";

/** The archive drill: a sample state dir with awkward names goes through pack → verify → destroy → unpack → compare. */
export const archiveDrillTask = drillTask({
  name: "drill:archive",
  needs: [],
  description: "pack a sample state directory, verify it, destroy it, restore it and compare",
  settings: {
    workdir: { describe: "where the drill's state, backups and restore live (default: a new temp dir, removed after)" },
    passphrase: { describe: "encrypt the archive with this age passphrase", secret: true },
  },
  async run(ctx) {
    const own = !ctx.settings.workdir;
    const root = ctx.settings.workdir || mkdtempSync(join(tmpdir(), "lifeboat-drill-"));
    const state = join(root, "state");
    const backups = join(root, "backups");
    const passphrase = ctx.settings.passphrase || undefined;
    const archive = join(backups, `sample-${stamp()}.tar.gz${passphrase ? ".age" : ""}`);
    const before = join(root, "state-before");
    const { outcomes } = await runSteps(ctx, [
      step("seed", "seed a sample state directory", () => {
        makeSampleTree(join(state, "app"));
        makeSampleTree(before);
        ctx.log.info(`  state in ${state}`);
      }),
      step("backup", "back it up into a verified archive", async () => {
        await packArchive(state, archive, { recipe: "drill:archive", meta: { source: state }, encrypt: { passphrase } });
      }),
      step("verify", "verify the archive against its manifest", async () => {
        await verifyArchive(archive, { decrypt: { passphrase }, record: true });
      }),
      step("destroy", "destroy the state directory", () => {
        rmSync(state, { recursive: true, force: true });
        ctx.log.info(`  ${state} is gone`);
      }),
      step("restore", "restore from the archive", async () => {
        await unpackArchive(archive, state, { decrypt: { passphrase }, sameOwner: true });
      }),
      step("compare", "compare restored state with the original", async () => {
        const diffs = await compareTrees(before, join(state, "app"), { owners: false });
        // the original tree was written separately, so compare content, types, links and modes
        if (diffs.length) throw new VerifyError(`restored state differs in ${diffs.length} place(s)`, diffs);
        ctx.log.ok("restored tree matches: names, contents, modes, symlinks");
      }),
    ], {
      target: root,
      finally: () => {
        if (own && !ctx.dryRun) rmSync(root, { recursive: true, force: true, maxRetries: 2 });
      },
    });
    ctx.log.info("");
    ctx.log.info(chalk.bold("drill:archive summary"));
    printOutcomes(ctx, outcomes);
    if (!own) for (const b of listBackups(backups)) ctx.log.info(`  ${b.name}  ${b.verified}`);
    if (outcomes.some((o) => o.status === "failed")) throw new LifeboatError("drill failed");
  },
});
