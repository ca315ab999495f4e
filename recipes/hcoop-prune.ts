// hcoop-prune: retention by weekly chain, in the backups folder and at the remote repository.
// A dry run (the plan, nothing removed) unless --yes.
//
//   npx zx recipes/hcoop-prune.ts --config hcoop.site.yaml [--retention.weeks=N] [--yes]
//   cron.daily:  hcoop-backup.ts --config … && hcoop-prune.ts --config … --yes
//
// Runbook → step: none: HCoop's 2008 backups failed for weeks because the target was full
// (BackupInfo's history); lifeboat bounds both copies.
//   (lifeboat) → "plan": keep every day from the start of the newest retention.weeks chains (a
//                weekly full and its incrementals), plus any older day holding a full that a kept
//                incremental needs (planRetention in recipes/hcoop.ts); printed for each place
//   (lifeboat) → "prune-local" and "prune-remote": confirmed removals of whole day folders
// Operator notes:
//   - retention.weeks 0 (the default) keeps everything: set it in the site file.
//   - each place is planned from its own manifests: a day only at the remote is pruned there.
//
// Settings: recipes/hcoop.ts (flags, env LIFEBOAT_*, --config site file; hcoop.site.example.yaml).
import { exec, mirrorRemove, offsiteOptions, recipe, step } from "../lib/mod.ts";
import * as hcoop from "./hcoop.ts";

await recipe({
  name: "hcoop-prune",
  description: "retention by weekly chain: drop old day folders locally and at the remote repository, never a full a kept day needs (a dry run unless --yes)",
  usage: "npx zx recipes/hcoop-prune.ts --config hcoop.site.yaml [--retention.weeks=N] [--yes]",
  settings: hcoop.settings,
  target: (ctx) => ctx.settings["backups.dir"],
  plan: (ctx) => {
    const s = ctx.settings;
    const weeks = s["retention.weeks"];
    const root = s["backups.dir"];
    const yes = (ctx.settings as unknown as { yes?: boolean }).yes === true; // without --yes: the plan only

    const plan = step("plan", `plan retention: the newest ${weeks || "(all)"} weekly chain(s), locally and at ${s["offsite.to"].join(", ") || "no remote"}`, async () => {
      const local = hcoop.planRetention(hcoop.readDays(root), weeks);
      const remote: Record<string, { keep: string[]; drop: string[] }> = {};
      for (const to of s["offsite.to"]) remote[to] = hcoop.planRetention(await hcoop.remoteDays(to, offsiteOptions(s)), weeks);
      for (const [where, p] of [[root, local], ...Object.entries(remote)] as const) {
        ctx.log.info(`${where}: keep ${p.keep.join(", ") || "nothing"}`);
        ctx.log.info(`${where}: ${yes ? "remove" : "would remove"} ${p.drop.join(", ") || "nothing"}`);
      }
      return { local, remote };
    });

    const local = step("prune-local", `remove old day folders in ${root}`, async () => {
      // the manifest first: a removal cut short leaves a folder that reads as incomplete, not a day that seems whole
      for (const d of plan.output.local.drop) {
        await exec(["rm", "-f", "--", `${hcoop.LAYOUT.dayDir(root, d)}/${hcoop.LAYOUT.manifestName(d)}`]);
        await exec(["rm", "-rf", "--", hcoop.LAYOUT.dayDir(root, d)]);
      }
    }, { when: weeks > 0 && yes, confirm: `remove ${plan.hasOutput ? plan.output.local.drop.length : "the old"} day folder(s) in ${root}?` });

    const remote = step("prune-remote", `remove old day folders at ${s["offsite.to"].join(", ")}`, async () => {
      for (const [to, p] of Object.entries(plan.output.remote)) await mirrorRemove(to, p.drop, { ...offsiteOptions(s), marker: hcoop.LAYOUT.manifestName });
    }, { when: weeks > 0 && yes && s["offsite.to"].length > 0, confirm: `remove old day folders at ${s["offsite.to"].join(", ")}?` });

    return {
      steps: [plan, local, remote],
      report: () => [
        `local     kept ${plan.output.local.keep.length}, ${local.hasOutput ? "removed" : "would remove"} ${plan.output.local.drop.length}: ${plan.output.local.drop.join(", ") || "none"}`,
        ...Object.entries(plan.output.remote).map(([to, p]) => `remote    ${to}: kept ${p.keep.length}, ${remote.hasOutput ? "removed" : "would remove"} ${p.drop.length}: ${p.drop.join(", ") || "none"}`),
      ],
    };
  },
});
