// An operator's own LambdaStack configuration/backup and configuration/recovery documents as the
// site file of the LambdaStack recipes: the shape of LambdaStack's default documents (kind, title,
// name, provider, every component's `enabled`, kubernetes included in the backup one,
// `snapshot_name` in the recovery one) is accepted; a document enabling nothing is refused
// (LambdaStack would do nothing); kubernetes enabled is said to be left out, and why; the
// snapshot is taken from flags, then env, then the document. No lab: the settings and the
// recipes' plan-time refusals only.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { UsageError } from "../lib/mod.ts";
import { chosenComponents, settings, snapshotName, argvWithShortFlags } from "../recipes/lambdastack.ts";
import { runRecipe } from "../tasks/drills/hoss.ts";
import { cleanupTmp, testContext, tmp } from "./helpers.ts";

/** LambdaStack's default backup document (schema/common/defaults/configuration/backup.yml), with `enabled` set per component. */
const backupDoc = (on: Record<string, boolean> = {}) => `kind: configuration/backup
title: Backup Config
name: default
provider: any
specification:
  components:
    load_balancer:
      enabled: ${on.load_balancer ?? false}
    logging:
      enabled: ${on.logging ?? false}
    monitoring:
      enabled: ${on.monitoring ?? false}
    postgresql:
      enabled: ${on.postgresql ?? false}
    rabbitmq:
      enabled: ${on.rabbitmq ?? false}
# kubernetes: backed up only, its recovery is manual (upstream's comment, in short)
    kubernetes:
      enabled: ${on.kubernetes ?? false}
`;

/** LambdaStack's default recovery document (…/configuration/recovery.yml), with `enabled` and `snapshot_name` per component. */
const recoveryDoc = (on: Record<string, boolean> = {}, snap: Record<string, string> = {}) => `---
kind: configuration/recovery
title: Recovery Config
name: default
provider: any
specification:
  components:
${["load_balancer", "logging", "monitoring", "postgresql", "rabbitmq"].map((c) => `    ${c}:\n      enabled: ${on[c] ?? false}\n      snapshot_name: ${snap[c] ?? "latest"}`).join("\n")}
`;

const file = (text: string, name = "doc.yml") => {
  const f = join(tmp("lifeboat-ls-doc-"), name);
  writeFileSync(f, text);
  return f;
};
const ctxOf = (name: "lambdastack-backup" | "lambdastack-recovery", argv: string[], env: Record<string, string> = {}) =>
  testContext({ name, settings, argv: argvWithShortFlags(["-b", "/nonexistent/build", ...argv]), env });
const usage = (fn: () => unknown): UsageError => {
  try {
    fn();
  } catch (e) {
    if (e instanceof UsageError) return e;
    throw e;
  }
  throw new Error("no usage error");
};

test.after(cleanupTmp);

test("LambdaStack's default backup document (kubernetes: {enabled: false} included) is accepted; the components it enables are the ones worked on", () => {
  const { ctx, logs } = ctxOf("lambdastack-backup", ["-f", file(backupDoc({ monitoring: true, postgresql: true }))]);
  assert.equal(chosenComponents(ctx), ["monitoring", "postgresql"]);
  assert.not.match(logs(), /kubernetes/);
});

test("LambdaStack's default recovery document is accepted; its enabled components and snapshot_name are read", () => {
  const { ctx } = ctxOf("lambdastack-recovery", ["-f", file(recoveryDoc({ logging: true, rabbitmq: true }, { logging: "20200604-150829" }))]);
  assert.equal(chosenComponents(ctx), ["logging", "rabbitmq"]);
  assert.is(snapshotName(ctx, "logging"), "20200604-150829");
  assert.is(snapshotName(ctx, "rabbitmq"), "latest");
});

test("kubernetes enabled in the document: a warning says lifeboat does not back it up and why; the other components go on", () => {
  const { ctx, logs } = ctxOf("lambdastack-backup", ["-f", file(backupDoc({ load_balancer: true, kubernetes: true }))]);
  assert.equal(chosenComponents(ctx), ["load_balancer"]);
  assert.match(logs(), /kubernetes is enabled in \S+doc\.yml, but lifeboat does not back up kubernetes: LambdaStack has no recovery for it/);
  const e = usage(() => chosenComponents(ctxOf("lambdastack-backup", ["-c", "kubernetes"]).ctx));
  assert.match(e.message, "unknown component 'kubernetes'");
  assert.match(e.hint ?? "", /lifeboat does not back up kubernetes/);
});

test("a document that enables no component is refused, naming the document and what to do (LambdaStack would do nothing)", () => {
  const doc = file(backupDoc({ kubernetes: true }));
  const e = usage(() => chosenComponents(ctxOf("lambdastack-backup", ["-f", doc]).ctx));
  assert.match(e.message, `${doc} enables no component lifeboat works on`);
  assert.match(e.message, "load_balancer.enabled: false");
  assert.match(e.message, "kubernetes.enabled: true");
  assert.match(e.hint ?? "", /enabled: true for the ones to back up .* or pass -c load_balancer,logging,monitoring,postgresql,rabbitmq/);
  const r = usage(() => chosenComponents(ctxOf("lambdastack-recovery", ["-f", file(recoveryDoc())]).ctx));
  assert.match(r.hint ?? "", /the ones to recover/);
  // -c still picks, whatever the document enables; no document at all: every component
  assert.equal(chosenComponents(ctxOf("lambdastack-backup", ["-f", doc, "-c", "rabbitmq"]).ctx), ["rabbitmq"]);
  assert.is(chosenComponents(ctxOf("lambdastack-backup", []).ctx).length, 5);
});

test("the recipes refuse the all-disabled default documents before anything runs (exit 2), naming the document", async () => {
  const build = tmp("lifeboat-ls-doc-build-");
  writeFileSync(join(build, "inventory"), "[haproxy]\nlb1 ansible_host=127.0.0.1 ansible_port=9\n");
  for (const [name, doc] of [["lambdastack-backup", file(backupDoc(), "backup.yml")], ["lambdastack-recovery", file(recoveryDoc(), "recovery.yml")]]) {
    const r = await runRecipe(name, ["-b", build, "-f", doc, "--yes"]);
    assert.is(r.code, 2, r.output.slice(-1500));
    assert.match(r.output, `${doc} enables no component lifeboat works on`);
    assert.not.match(r.output, /unknown setting/);
  }
});

test("the snapshot: a --snapshot flag or LIFEBOAT_SNAPSHOT wins over the document's snapshot_name, which wins over the site file's snapshot", () => {
  const doc = file(`${recoveryDoc({ load_balancer: true }, { load_balancer: "20261101-010101" })}snapshot: 20261102-020202\n`);
  assert.is(snapshotName(ctxOf("lambdastack-recovery", ["-f", doc]).ctx, "load_balancer"), "20261101-010101");
  assert.is(snapshotName(ctxOf("lambdastack-recovery", ["-f", doc]).ctx, "logging"), "latest", "the document's own snapshot_name: latest");
  assert.is(snapshotName(ctxOf("lambdastack-recovery", ["-f", doc, "--snapshot", "20261103-030303"]).ctx, "load_balancer"), "20261103-030303");
  assert.is(snapshotName(ctxOf("lambdastack-recovery", ["-f", doc], { LIFEBOAT_SNAPSHOT: "20261104-040404" }).ctx, "load_balancer"), "20261104-040404");
  const noName = file("snapshot: 20261102-020202\n");
  assert.is(snapshotName(ctxOf("lambdastack-recovery", ["-f", noName]).ctx, "monitoring"), "20261102-020202");
  assert.match(usage(() => snapshotName(ctxOf("lambdastack-recovery", ["--snapshot", "yesterday"]).ctx, "monitoring")).message, "must be latest or YYYYMMDD-HHMMSS");
});

test.run();
