// TEMPLATE — example-restore: restore what example-backup archived. Copy it (see example.ts).
//
//   npx zx recipes/example-restore.ts ARCHIVE --config site.yaml [--dry-run] [--yes] [--resume]
//
// Steps (runbook line → step):
//   (lifeboat)                         → "verify the archive": every byte against its manifest,
//                                         before anything is touched (damaged: exit 3)
//   tar xzf backup.tar.gz              → "unpack the archive into the staging dir"
//   cp -a state /srv/example           → "put the state directory back" (asks first; --yes in scripts)
//   (lifeboat)                         → "remove the staging dir"
//
// Settings: docs/template/example.ts (see --help and example.site.example.yaml).
import { ageOptions, exec, recipe, step, unpackArchive, UsageError, verifyArchive } from "../../lib/mod.ts";
import * as example from "./example.ts";

await recipe({
  name: "example-restore",
  description: "restore a directory (and keep the dump) from an example-backup archive",
  usage: "npx zx recipes/example-restore.ts ARCHIVE --config site.yaml [--dry-run] [--yes] [--resume]",
  settings: example.settings,
  target: (ctx) => ctx.settings["restore.dir"],
  plan: (ctx) => {
    const s = ctx.settings;
    const archive = ctx.args[0];
    if (!archive || ctx.args.length > 1) throw new UsageError("give exactly one ARCHIVE to restore", "e.g. npx zx recipes/example-restore.ts /var/backups/lifeboat/example-backup-2026-11-21T101500Z.tar.gz");
    const staging = `${s["backups.dir"]}/.example-restore-staging`;
    const decrypt = ageOptions(s);

    // Verify first: a damaged, truncated or wrongly keyed archive stops here, nothing touched.
    // The output is the backup's typed record (example.Meta).
    const verified = step("verify", "verify the archive", async () => {
      const meta = (await verifyArchive<example.ArchiveMeta>(archive, { decrypt })).manifest?.meta.example;
      if (!meta) throw new UsageError(`${archive} was not made by example-backup (its manifest has no meta.example)`);
      return meta;
    });

    return {
      steps: [
        verified,
        step("unpack", "unpack the archive into the staging dir", async () => {
          await exec(["rm", "-rf", "--", staging]);
          await unpackArchive(archive, staging, { decrypt, sameOwner: true });
        }),
        // A destructive step asks first; without a terminal it needs --yes (else exit 5).
        step("put-back", `put the state directory back into ${s["restore.dir"]}`, async () => {
          await exec(["mkdir", "-p", "--", s["restore.dir"]]);
          await exec(["cp", "-a", "-T", "--", `${staging}/${example.LAYOUT.state}`, s["restore.dir"]]);
        }, { confirm: `replace the files in ${s["restore.dir"]} with the archive's?` }),
        step("remove-staging", "remove the staging dir", () => exec(["rm", "-rf", "--", staging])),
      ],
      report: () => [`restored ${verified.output.source} → ${s["restore.dir"]}`],
    };
  },
});
