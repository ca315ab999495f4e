#!/usr/bin/env bash
# PostgreSQL containers from the lab image (built by test/lab/docker.sh up), for drills that create
# and destroy their own database container (e.g. the Deis recipe's "deis-database").
#
#   pg-container.sh run NAME [HOSTPORT] [-- DOCKER-RUN-ARGS...]
#        start a fresh container NAME (an old one of that name is removed first), password from
#        $LAB/docker/postgres.password, published on 127.0.0.1:HOSTPORT when given; waits until
#        pg_isready inside says ready and prints the ready line
#   pg-container.sh rm NAME      force-remove NAME with its anonymous volumes
#   pg-container.sh wait NAME    wait (60 s) until PostgreSQL inside NAME accepts connections
#
# Every container carries the label lifeboat-lab=1, so `docker.sh down` removes it, and
# --stop-signal SIGINT (fast shutdown; `docker import` cannot set STOPSIGNAL in the image).
# Inside: `docker exec -u postgres NAME pg_dumpall`, `docker exec -u postgres -i NAME psql -f -`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/common.sh"

export DOCKER_HOST=unix:///var/run/docker.sock
IMAGE=lifeboat-lab/postgres:15
PWFILE=$LAB/docker/postgres.password

usage() { echo "usage: pg-container.sh run NAME [HOSTPORT] [-- ARGS...] | rm NAME | wait NAME" >&2; exit 2; }

wait_ready() {
  local name=$1 i st
  for ((i = 0; i < 600; i++)); do
    docker exec "$name" pg_isready -q 2>/dev/null && return 0
    if ((i % 10 == 9)); then
      st=$(docker container inspect -f '{{.State.Status}}' "$name" 2>/dev/null || echo missing)
      if [ "$st" != running ]; then
        docker logs --tail 20 "$name" >&2 2>&1 || true
        lab_die "container $name is $st"
      fi
    fi
    sleep 0.1
  done
  docker logs --tail 20 "$name" >&2 2>&1 || true
  lab_die "container $name: PostgreSQL not ready after 60 s"
}

run() {
  local name=${1:-} port= t0 extra=()
  [ -n "$name" ] || usage
  shift
  if [ $# -gt 0 ] && [ "$1" != -- ]; then port=$1; shift; fi
  if [ $# -gt 0 ] && [ "$1" = -- ]; then shift; extra=("$@"); fi
  t0=$(date +%s%N)
  docker image inspect "$IMAGE" >/dev/null 2>&1 || lab_die "no image $IMAGE: run test/lab/docker.sh up"
  [ -s "$PWFILE" ] || lab_die "no $PWFILE: run test/lab/docker.sh up"
  docker rm -f -v "$name" >/dev/null 2>&1 || true
  local args=(-d --name "$name" --label lifeboat-lab=1 --stop-signal SIGINT -e POSTGRES_PASSWORD="$(cat "$PWFILE")")
  [ -n "$port" ] && args+=(-p "127.0.0.1:$port:5432") && reserve_ports "$port"
  # A host port in the kernel's ephemeral range can be held for a moment as a client's source port:
  # the proxy's bind then fails though nothing listens. Try again (up to 5 times).
  local try err
  for try in 1 2 3 4 5; do
    err=$(docker run "${args[@]}" "${extra[@]}" "$IMAGE" 2>&1 >/dev/null) && break
    if [ -n "$port" ] && [ "$try" -lt 5 ] && grep -q "address already in use" <<<"$err" && ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "lab: pg-ctr: 127.0.0.1:$port was briefly in use (a client's source port?); starting $name again" >&2
      docker rm -f -v "$name" >/dev/null 2>&1 || true
      sleep 2
      continue
    fi
    echo "$err" >&2
    lab_die "docker run $name failed"
  done
  wait_ready "$name"
  ready pg-ctr "$name${port:+ on 127.0.0.1:$port}" "$t0"
}

case ${1:-} in
  run) shift; run "$@" ;;
  rm) [ -n "${2:-}" ] || usage; docker rm -f -v "$2" >/dev/null 2>&1 || true ;;
  wait) [ -n "${2:-}" ] || usage; wait_ready "$2" ;;
  *) usage ;;
esac
