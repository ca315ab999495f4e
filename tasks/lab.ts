// Tasks for the local lab: real services on loopback, for the drills and the tests.
import { fileURLToPath } from "node:url";
import { exec, task } from "../lib/mod.ts";

const labSh = fileURLToPath(new URL("../test/lab/lab.sh", import.meta.url));

const lab = (verb: string, description: string) =>
  task({
    name: `lab:${verb}`,
    description,
    usage: `tasks/run.ts lab:${verb} [PIECE...]   (pieces: docker sshd pg ceph slapd)`,
    async run(ctx) {
      await exec(["bash", labSh, verb, ...ctx.args], { stdout: "inherit", readOnly: verb === "status" });
    },
  });

export default [
  lab("up", "install (Debian packages) and start the lab services on loopback; idempotent"),
  lab("down", "stop every lab service, leaving nothing running"),
  lab("status", "show which lab services are up"),
];
