#!/usr/bin/env bash
# make demo: the main job — a real backup → destroy → restore → compare drill.
# Brings up the lab pieces the drill needs and stops again the ones it started.
set -euo pipefail
cd "$(dirname "$0")/.."
export NODE_OPTIONS="--import=tsx"
# The Deis drill is the main job; DRILL=archive or DRILL=hoss picks another.
DRILL=${DRILL:-deis}
case $DRILL in
  deis) PIECES=${PIECES:-docker sshd ceph} ;;
  hoss) PIECES=${PIECES:-docker slapd} ;;
  *) PIECES=${PIECES:-} ;;
esac
started=()
cleanup() { [ ${#started[@]} -gt 0 ] && bash test/lab/lab.sh down "${started[@]}" >/dev/null 2>&1 || true; }
trap cleanup EXIT
for p in $PIECES; do
  bash "test/lab/$p.sh" status >/dev/null 2>&1 || { started+=("$p"); bash "test/lab/$p.sh" up; }
done
npx zx tasks/run.ts "drill:$DRILL" "$@"
