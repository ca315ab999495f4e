// One archive operation, for bench/archive.ts to time under /usr/bin/time -v.
//   node --import=tsx bench/pack-one.ts pack SRC DST [gzip|zstd] [workers]
//   node --import=tsx bench/pack-one.ts unpack ARCHIVE TARGET
//   node --import=tsx bench/pack-one.ts verify ARCHIVE
import process from "node:process";
// Only what the operation needs (not lib/mod.ts): the figures are the archive code's own.
import { packArchive, unpackArchive, verifyArchive } from "../lib/archive.ts";
import { createContext, setDefaultContext } from "../lib/context.ts";
setDefaultContext(createContext({ name: "bench", argv: [], env: {}, sink: { write: () => true } }));
const [op, a, b, compression, workers] = process.argv.slice(2);
if (op === "pack") await packArchive(a, b, { compression: compression === "zstd" ? "zstd" : "gzip", workers: Number(workers ?? 0) || undefined, progress: false });
else if (op === "unpack") await unpackArchive(a, b, { progress: false });
else if (op === "verify") await verifyArchive(a, { progress: false });
else throw new Error(`unknown operation ${op}: pack, unpack or verify`);
