// TEMPLATE — copy this folder to write a new system's recipes (see docs/writing-a-recipe.md).
//
//   cp docs/template/example.ts                 recipes/mysys.ts
//   cp docs/template/example-backup.ts          recipes/mysys-backup.ts
//   cp docs/template/example-restore.ts         recipes/mysys-restore.ts
//   cp docs/template/example.site.example.yaml  recipes/mysys.site.example.yaml
//   then rename "example" to "mysys" in all four, and replace the steps with your runbook's.
//
// This file is the system's contract, read by both recipes and by nothing else:
//   - `settings`: ONE table for both recipes. Each key is a flag (--source.dir=…), an env var
//     (LIFEBOAT_SOURCE_DIR) and a key of the site file (source: { dir: … }). `usedBy` marks a
//     key only one recipe reads: it is hidden from the other's --help and refused as its flag.
//   - `Meta`: what the backup records in its manifest and the restore reads back. tsc checks
//     both recipes against this one type, so the contract cannot drift.
//   - `LAYOUT`: where things sit inside the archive.
// It runs nothing when imported.
import { AGE_SETTINGS, type SettingSpecs } from "../../lib/mod.ts";

const BACKUP = ["example-backup"] as const;
const RESTORE = ["example-restore"] as const;

/** The settings of both example recipes. */
export const settings = {
  "backups.dir": { describe: "folder for archives (created 0700)", default: "/var/backups/lifeboat" },
  "source.dir": { describe: "the directory the system keeps its state in", required: true, usedBy: BACKUP },
  "source.dump": { type: "list", describe: "a command that prints a dump of the system's database, as argv (empty: none)", usedBy: BACKUP },
  "restore.dir": { describe: "where the restore puts the directory back (created when missing)", required: true, usedBy: RESTORE },
  ...AGE_SETTINGS,
} as const satisfies SettingSpecs;

/** Where things sit inside an example-backup archive. */
export const LAYOUT = {
  /** The state directory, as it was. */
  state: "state",
  /** The dump command's output. */
  dump: "dump/dump.out",
} as const;

/** What example-backup records in `manifest.meta.example` and example-restore reads. */
export interface Meta {
  source: string;
  dump: { command: string[]; bytes: number } | null;
}

/** The manifest's recipe data of an example-backup archive. */
export type ArchiveMeta = { example: Meta };
