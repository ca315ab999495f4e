// hcoop-get: backup-manager's `get`: fetch one file of a day from the remote repository into
// the local day folder, checked against the day's manifest (sha256), with the manifest beside it.
//
//   npx zx recipes/hcoop-get.ts DATE FILE --config hcoop.site.yaml
//   (FILE: YYYY.MM.DD-$VOLNAME.dump.gz.aescrypt, $VOLNAME.dump.gz.aescrypt, $VOLNAME, or "databases")
//
// Runbook (HCoop wiki BackupInfo §1.2) → step:
//   backup-manager get YYYY.MM.DD $VOLNAME.dump.gz.aescrypt
//                  → "get": the day's manifest read at offsite.to (the first), the file fetched
//                    (lib/mirror.ts) into backups.dir/DATE/ and kept only when its sha256 matches
//   (then)         → hcoop-restore DATE VOLNAME reads it from there (and fetches by itself when
//                    the day is missing locally)
//
// Settings: recipes/hcoop.ts (flags, env LIFEBOAT_*, --config site file; hcoop.site.example.yaml).
import { formatBytes, offsiteOptions, recipe, step, UsageError } from "../lib/mod.ts";
import * as hcoop from "./hcoop.ts";

await recipe({
  name: "hcoop-get",
  description: "fetch one file of a backup day from the remote repository into backups.dir, verified against the day's manifest",
  usage: "npx zx recipes/hcoop-get.ts DATE FILE --config hcoop.site.yaml",
  settings: hcoop.settings,
  target: (ctx) => `${ctx.settings["backups.dir"]}:${ctx.args[0] ?? ""}`,
  plan: (ctx) => {
    const s = ctx.settings;
    const [first, file] = ctx.args;
    if (!first || !file || ctx.args.length > 2) throw new UsageError("give DATE FILE", "e.g. npx zx recipes/hcoop-get.ts 2026.11.24 user.alice.dump.gz.aescrypt --config hcoop.site.yaml");
    if (!s["offsite.to"].length) throw new UsageError("hcoop-get needs offsite.to (the remote repository)");
    const date = first.replaceAll("-", ".");
    const get = step("get", `fetch ${date} ${file} from ${s["offsite.to"][0]} (sha256 checked)`, () => hcoop.fetchFile(s["offsite.to"][0], s["backups.dir"], date, file, offsiteOptions(s)));
    return { steps: [get], report: () => [`fetched   ${get.output.path} (${formatBytes(get.output.bytes)}), sha256 matches the manifest`] };
  },
});
