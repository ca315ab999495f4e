// LDAP: facts about LDIF exports (slapcat's output), read in a stream.
import { createReadStream, existsSync } from "node:fs";
import { createInterface } from "node:readline";
import { useContext, type Context } from "./context.ts";

/**
 * The number of entries in an LDIF file: its `dn:` (or base64 `dn::`) lines, read as a
 * stream. In a dry run a file an earlier step would have written counts as 0.
 * @example const entries = await ldifEntries(`${staging}/ldap/hoss.ldif`);
 */
export async function ldifEntries(file: string, ctx: Context = useContext()): Promise<number> {
  if (ctx.dryRun && !existsSync(file)) return 0;
  let n = 0;
  const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  for await (const line of lines) if (/^dn::? /.test(line)) n++;
  return n;
}
