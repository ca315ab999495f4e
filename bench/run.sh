#!/usr/bin/env bash
# make bench: every benchmark, on the lab, one after another (they share 2 cores).
# Each writes its table to bench/<name>.md; bench/README.md indexes them.
#   bash bench/run.sh [archive|s3|pg|ssh|offsite|xenon|lambdastack|startup|hcoop]...
set -euo pipefail
cd "$(dirname "$0")/.."
# The project's node (node_modules/.bin/node) runs the TypeScript itself; Node's compile cache on.
export PATH="$PWD/node_modules/.bin:$PATH" NODE_COMPILE_CACHE="${NODE_COMPILE_CACHE:-${TMPDIR:-/tmp}/node-compile-cache}"
unset NODE_OPTIONS
which=("$@"); [ ${#which[@]} -eq 0 ] && which=(archive s3 pg ssh offsite xenon lambdastack startup hcoop)
started=()
cleanup() { [ ${#started[@]} -gt 0 ] && bash test/lab/lab.sh down "${started[@]}" >/dev/null 2>&1 || true; }
trap cleanup EXIT
need() { for p in "$@"; do bash "test/lab/$p.sh" status >/dev/null 2>&1 || { started+=("$p"); bash "test/lab/$p.sh" up; }; done; }
for b in "${which[@]}"; do
  case $b in
    archive) ;;
    s3) need ceph ;;
    pg) need docker pg ;;
    ssh) need sshd ;;
    offsite) need ceph sshd ;;
    xenon) ;;
    lambdastack) need docker lshosts ;;
    hcoop) need afs ;;
    startup) ;;
  esac
  echo "== bench/$b.ts (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  args=()
  # s3: downloads onto a fresh journaled ext4 (see bench/s3.md, "How it is measured"), and the memory table.
  [ "$b" = s3 ] && args=(--memory --download-fs ext4)
  node "bench/$b.ts" "${args[@]}"
done
