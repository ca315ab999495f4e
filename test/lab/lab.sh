#!/usr/bin/env bash
# The lifeboat test lab: real services on loopback, from Debian packages.
#
#   test/lab/lab.sh up [PIECE...]      install what is missing, start, print one ready line per piece;
#                                      the lab is then HELD: test runs and drills leave it running
#   test/lab/lab.sh down [PIECE...]    stop what is running (by pid), leave nothing behind; releases the hold
#   test/lab/lab.sh status             one line per piece, exit 0 when all are up
#   test/lab/lab.sh env                the connection settings the tests read (KEY=VALUE)
#
# State lives in $LIFEBOAT_LAB (default /var/tmp/lifeboat-lab). Each piece is test/lab/PIECE.sh
# with the same four verbs; see common.sh for the conventions.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/common.sh"

ALL_PIECES=(docker sshd pg mariadb ceph slapd afs lshosts)

cmd=${1:-status}; shift || true
pieces=("$@"); [ ${#pieces[@]} -eq 0 ] && pieces=("${ALL_PIECES[@]}")

case $cmd in
  up)
    # Pieces start one after another: they share 2 cores and apt's lock.
    for p in "${pieces[@]}"; do bash "$here/$p.sh" up; done
    mkdir -p "$LAB" && touch "$LAB/held" ;;
  down)
    rm -f "$LAB/held"
    rc=0
    for ((i = ${#pieces[@]} - 1; i >= 0; i--)); do bash "$here/${pieces[i]}.sh" down || rc=1; done
    exit $rc ;;
  status)
    rc=0
    for p in "${pieces[@]}"; do
      if bash "$here/$p.sh" status >/dev/null 2>&1; then echo "$p: up"; else echo "$p: down"; rc=1; fi
    done
    exit $rc ;;
  env)
    for p in "${pieces[@]}"; do [ -f "$LAB/$p.env" ] && cat "$LAB/$p.env"; done; true ;;
  *) echo "usage: lab.sh up|down|status|env [PIECE...]" >&2; exit 2 ;;
esac
