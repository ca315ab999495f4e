// TEMPLATE — example-backup: back up a directory and a dump command's output into ONE verified
// archive. Copy it (see example.ts) and replace the steps with your runbook's.
//
//   npx zx recipes/example-backup.ts --config site.yaml [--dry-run] [--yes] [--resume]
//
// Steps (runbook line → step): keep this map; it is how an operator finds a runbook line's code.
//   (before anything is written)             → "check free space"
//   cp -a /srv/example /backup/state         → "copy the state directory"
//   example-dump > /backup/dump.out          → "dump the database"       [source.dump]
//   tar czf backup.tar.gz …                  → "pack and verify the archive"
//
// Left to the operator, and why: say what the runbook asks that this recipe does not do.
//
// Settings: docs/template/example.ts (see --help and example.site.example.yaml).
import { ageOptions, backupArchive, checkFreeSpace, exec, formatBytes, probe, recipe, step } from "../../lib/mod.ts";
import * as example from "./example.ts";

await recipe({
  name: "example-backup",
  description: "back up a directory and a dump command's output into one verified archive",
  usage: "npx zx recipes/example-backup.ts --config site.yaml [--dry-run] [--yes] [--resume]",
  settings: example.settings,
  // One lock and one journal per recipe and target: two runs on the same target never overlap.
  target: (ctx) => ctx.settings["source.dir"],
  // The plan runs once, after the settings are parsed. Values the steps share live in this closure.
  plan: (ctx) => {
    const s = ctx.settings;
    const staging = `${s["backups.dir"]}/.example-backup-staging`;

    // A step: a stable id (the journal and --resume know it by that), a title for the operator
    // (it may name hosts and paths, and may change), and what it does. What it returns is its
    // typed `output`, which later steps read; it is journaled, so --resume restores it.
    const space = step("space", "check free space", async () => {
      const used = Number((await probe(["du", "-sb", "--", s["source.dir"]])).split("\t")[0]);
      checkFreeSpace(s["backups.dir"], 2 * used); // the staging copy, then the archive
      await exec(["rm", "-rf", "--", staging]); // what an earlier failed run left
      return { startedAt: new Date().toISOString() };
    });

    const copy = step("copy", `copy the state directory ${s["source.dir"]}`, async () => {
      await exec(["mkdir", "-p", "-m", "700", "--", staging]);
      await exec(["cp", "-a", "-T", "--", s["source.dir"], `${staging}/${example.LAYOUT.state}`]);
    });

    // `when: false` shows the step as "off" in the summary instead of running it.
    const dump = step("dump", `dump the database (${s["source.dump"].join(" ")})`, async () => {
      await exec(["mkdir", "-p", "--", `${staging}/dump`]);
      // stdout to a file is written atomically (hidden partial name, fsync, rename), 0600.
      await exec(s["source.dump"], { stdout: { file: `${staging}/${example.LAYOUT.dump}`, mode: 0o600 } });
      return { command: s["source.dump"], bytes: Number(await probe(["stat", "-c", "%s", "--", `${staging}/${example.LAYOUT.dump}`]).catch(() => "0")) };
    }, { when: s["source.dump"].length > 0 });

    // One call names, packs, encrypts (age.*), verifies and records the archive. The meta's type
    // is example.ArchiveMeta, which the restore reads back.
    const pack = step("pack", "pack and verify the archive", () =>
      backupArchive<example.ArchiveMeta>(staging, {
        folder: s["backups.dir"],
        name: "example-backup",
        startedAt: new Date(space.output.startedAt),
        meta: { example: { source: s["source.dir"], dump: dump.hasOutput ? dump.output : null } },
        age: ageOptions(s),
      }));

    return {
      steps: [space, copy, dump, pack],
      // Always runs, also after a failure. Keep the staging dir of a failed run for --resume.
      cleanup: async () => {
        if (pack.hasOutput) await exec(["rm", "-rf", "--", staging]);
        else ctx.log.info(`staging kept for --resume: ${staging} (a fresh run clears it)`);
      },
      // Printed under the summary when the run succeeds.
      report: () => [
        `archive  ${pack.output.path} (${formatBytes(pack.output.bytes)})`,
        `dump     ${dump.hasOutput ? formatBytes(dump.output.bytes) : "off"}`,
      ],
    };
  },
});
