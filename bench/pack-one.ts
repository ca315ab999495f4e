// One packArchive run, for bench/archive.ts to time under /usr/bin/time -v.
//   node --import=tsx bench/pack-one.ts SRC DST [workers]
import process from "node:process";
import { createContext, packArchive, setDefaultContext } from "../lib/internal.ts";
setDefaultContext(createContext({ name: "bench", argv: [], env: {}, sink: { write: () => true } }));
await packArchive(process.argv[2], process.argv[3], { workers: Number(process.argv[4] ?? 0) || undefined, progress: false });
