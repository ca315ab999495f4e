#!/usr/bin/env bash
# make test: typecheck, unit tests (Node, and Deno for the files marked `// deno: yes`),
# then the lab pieces the other tests name in their `// needs: PIECE…` line, then those
# tests and the drills. Lab pieces this run started are stopped again at the end, so
# `make test` works whether or not the lab was up and leaves nothing behind.
#
#   bash test/run.sh            everything
#   bash test/run.sh --unit     only the tests that need no lab
#   bash test/run.sh FILE…      just these files (their lab pieces are brought up)
set -uo pipefail
cd "$(dirname "$0")/.."
# The project's node (node_modules/.bin/node, installed by `npm ci`: package.json pins it) runs
# the TypeScript itself (type stripping), with Node's compile cache: no loader, no tsx.
export PATH="$PWD/node_modules/.bin:$PATH" NODE_COMPILE_CACHE="${NODE_COMPILE_CACHE:-${TMPDIR:-/tmp}/node-compile-cache}"
unset NODE_OPTIONS
[ -x node_modules/.bin/node ] || { echo "node_modules/.bin/node missing: run make deps (npm ci) first" >&2; exit 1; }
export FORCE_COLOR=0 NO_COLOR=1

unit_only=0
files=()
for a in "$@"; do
  case $a in
    --unit) unit_only=1 ;;
    *) files+=("$a") ;;
  esac
done
[ ${#files[@]} -eq 0 ] && mapfile -t files < <(ls test/*.test.ts)

needs_of() { sed -n 's|^// needs: *||p' "$1" | head -1; }
passed=0 failed=0 failures=()
log_dir=$(mktemp -d /tmp/lifeboat-test-logs.XXXXXX)

# run_file LABEL CMD…: runs one uvu file, adds its counts, keeps its log.
run_file() {
  local label=$1; shift
  local log="$log_dir/$(echo "$label" | tr '/ ' '__').log" t0=$SECONDS rc
  printf '── %s\n' "$label"
  timeout 1800 "$@" >"$log" 2>&1; rc=$?
  local total pass
  total=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | sed -n 's/^ *Total: *\([0-9]*\).*/\1/p' | tail -1)
  pass=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | sed -n 's/^ *Passed: *\([0-9]*\).*/\1/p' | tail -1)
  total=${total:-0} pass=${pass:-0}
  if [ "$rc" -ne 0 ] && [ "$pass" -eq "$total" ]; then total=$((total + 1)); fi  # crashed outside a test
  passed=$((passed + pass)); failed=$((failed + total - pass))
  if [ "$rc" -ne 0 ] || [ "$pass" -lt "$total" ]; then  # uvu exits 0 when a before hook throws
    failures+=("$label")
    sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -v '^\s*$' | tail -60 | sed 's/^/   │ /'
    printf '   ✖ %s: %s of %s passed (exit %s, %ss)\n' "$label" "$pass" "$total" "$rc" $((SECONDS - t0))
  else
    printf '   ✔ %s passed (%ss)\n' "$total" $((SECONDS - t0))
  fi
}

echo "── typecheck (tsc --noEmit)"
if npx tsc --noEmit -p . >"$log_dir/tsc.log" 2>&1; then echo "   ✔ clean"; else
  sed 's/^/   │ /' "$log_dir/tsc.log" | head -40; failed=$((failed + 1)); failures+=("typecheck"); fi

lab_files=()
for f in "${files[@]}"; do
  if [ -n "$(needs_of "$f")" ]; then lab_files+=("$f"); continue; fi
  run_file "$f" node "$f"
  if grep -q '^// deno: yes' "$f"; then run_file "$f (deno)" npx deno run -A "$f"; fi
done

started=()
stop_started() {
  [ ${#started[@]} -eq 0 ] && return 0
  if [ -e "${LIFEBOAT_LAB:-/var/tmp/lifeboat-lab}/held" ]; then
    echo "── lab held up (lab.sh up / make lab-up): left running: ${started[*]}"; started=(); return 0
  fi
  echo "── lab down (pieces this run started: ${started[*]})"
  bash test/lab/lab.sh down "${started[@]}" || true
  started=()
}
trap 'stop_started' EXIT
trap 'stop_started; exit 130' INT TERM

if [ $unit_only -eq 0 ] && [ ${#lab_files[@]} -gt 0 ]; then
  pieces=()
  for f in "${lab_files[@]}"; do for p in $(needs_of "$f"); do [[ " ${pieces[*]} " == *" $p "* ]] || pieces+=("$p"); done; done
  # a fixed, sensible start order
  ordered=()
  for p in docker pg mariadb sshd slapd ceph afs lshosts; do [[ " ${pieces[*]} " == *" $p "* ]] && ordered+=("$p"); done
  echo "── lab up: ${ordered[*]}"
  lab_ok=1
  for p in "${ordered[@]}"; do
    if bash "test/lab/$p.sh" status >/dev/null 2>&1; then echo "   $p: already up (left running)"; continue; fi
    started+=("$p")
    if ! bash "test/lab/$p.sh" up; then echo "   ✖ lab piece $p failed to start"; lab_ok=0; failures+=("lab:$p"); failed=$((failed + 1)); fi
  done
  for f in "${lab_files[@]}"; do
    missing=""
    for p in $(needs_of "$f"); do bash "test/lab/$p.sh" status >/dev/null 2>&1 || missing+=" $p"; done
    if [ -n "$missing" ]; then echo "── $f"; echo "   ✖ not run: lab piece(s)$missing down"; failed=$((failed + 1)); failures+=("$f"); continue; fi
    run_file "$f" node "$f"
    if grep -q '^// deno: yes' "$f"; then run_file "$f (deno)" npx deno run -A "$f"; fi
  done
fi
stop_started

echo
# A digest of each failure last, so the few lines a CI page shows name the test and what it saw.
for f in "${failures[@]}"; do
  log="$log_dir/$(echo "$f" | tr '/ ' '__').log"
  [ -f "$log" ] || continue
  echo "✖ $f:"
  digest=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -A7 '^ *FAIL ' | grep -v '^\s*$\|Expected values\|Actual:\|^--$' | sed 's/·/ /g' | tr -s ' ' | head -6)
  [ -n "$digest" ] || digest=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -v '^\s*$' | tail -4)  # crashed outside a test
  printf '%s\n' "$digest" | cut -c1-200 | sed 's/^ */   /'
done
if [ ${#failures[@]} -gt 0 ]; then echo "failed: ${failures[*]}"; echo "logs: $log_dir"; else rm -rf "$log_dir"; fi
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
