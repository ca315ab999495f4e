#!/usr/bin/env bash
# Lab piece "lshosts": whole Debian "hosts" for the LambdaStack recipes, one container each, with
# its own filesystem, sshd and the real Debian services of a LambdaStack cluster.
#
#   lshosts.sh up                 build the host image when missing, start ls-1, ls-2, ls-3
#   lshosts.sh up-hosts NAME...   start more hosts on demand (the drill's "new hosts", ls-4 …)
#   lshosts.sh rm NAME...         remove those hosts (data included)
#   lshosts.sh down               remove every lshosts container and the network; KEEPS the image
#   lshosts.sh status             exit 0 when ls-1..3 run and answer on ssh
#   lshosts.sh image              build (or find) the image only, and say how long it took
#
# The image (lifeboat-lab/lshost:bookworm-HASH) is `debootstrap --variant=minbase` of Debian 12 from
# the registry apt uses, with openssh-server, prometheus, prometheus-alertmanager, rabbitmq-server,
# postgresql, haproxy, rsync and curl, then `docker import`. It is built once (2 to 5 min cold) and
# found by `docker image inspect` afterwards (seconds). Grafana is not in Debian: its data
# directory is plain files. Elasticsearch/OpenSearch is not in Debian either: the "elasticsearch"
# service on a host is the OpenSearch stand-in (test/standins/opensearch.ts) run by the host's own
# node (bind-mounted read-only with the stand-in and tsx).
#
# Services are started by test/lab/lshosts/init.sh (the container's entrypoint, run under
# docker-init) and managed through test/lab/lshosts/systemctl, a small stand-in for systemd's
# `systemctl start|stop|restart|is-active|enable|disable UNIT` (there is no systemd in a container).
# Both are bind-mounted read-only, so editing them needs no image rebuild.
#
# Every host: sshd on 127.0.0.1:PORT (published) with a root key generated here, the user-defined
# bridge network lifeboat-ls (hosts reach each other by name, nothing else is published), label
# lifeboat-lab=1. The env file $LAB/lshosts.env gives LSHOSTS_KEY, LSHOSTS_HOSTS (name:port …),
# LSHOSTS_PORT_<name> and LSHOSTS_IMAGE.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$here/common.sh"
export DOCKER_HOST=unix:///var/run/docker.sock

D=$LAB/lshosts
NET=lifeboat-ls
PACKAGES=openssh-server,prometheus,prometheus-alertmanager,rabbitmq-server,postgresql,haproxy,rsync,curl,procps,ca-certificates,iproute2
IMAGE=lifeboat-lab/lshost:bookworm-$(printf '%s' "$PACKAGES" | sha1sum | cut -c1-8)
BASE_PORT=${LSHOSTS_BASE_PORT:-22301}
DEFAULT_HOSTS=(ls-1 ls-2 ls-3)

host_port() { # ls-N -> BASE_PORT+N-1; any other name -> a hash slot above ls-99
  local n=$1
  if [[ $n =~ ^ls-([0-9]{1,2})$ ]]; then echo $((BASE_PORT + BASH_REMATCH[1] - 1))
  else echo $((BASE_PORT + 100 + $(printf '%s' "$n" | cksum | cut -d' ' -f1) % 100)); fi
}

mirror() { # the Debian registry apt uses here
  local u
  u=$(grep -hoE '^URIs: *\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -1 | awk '{print $2}')
  [ -n "$u" ] || u=$(grep -hoE '^deb +\S+' /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $2}')
  echo "${u:-http://deb.debian.org/debian}"
}

build_image() {
  if docker image inspect "$IMAGE" >/dev/null 2>&1; then return 0; fi
  local t0 rootfs=$D/rootfs.build debootstrap=(debootstrap)
  if ! command -v debootstrap >/dev/null; then
    # debootstrap is a shell script: unpack its package privately (no dpkg lock: another piece's
    # apt-get may hold it for minutes, e.g. a dkms build)
    if [ ! -x "$D/debootstrap/root/usr/sbin/debootstrap" ]; then
      rm -rf "$D/debootstrap"; mkdir -p "$D/debootstrap"
      (cd "$D/debootstrap" && apt-get download -q debootstrap >/dev/null 2>&1 && dpkg-deb -x debootstrap_*.deb root) \
        || lab_die "cannot fetch the debootstrap package (apt-get download debootstrap)"
    fi
    debootstrap=(env DEBOOTSTRAP_DIR="$D/debootstrap/root/usr/share/debootstrap" "$D/debootstrap/root/usr/sbin/debootstrap")
  fi
  t0=$(date +%s)
  rm -rf "$rootfs"; mkdir -p "$rootfs"
  lab_log "lshosts: debootstrap bookworm with $PACKAGES (cold build, a few minutes; log $D/debootstrap.log)"
  if ! "${debootstrap[@]}" --variant=minbase --include="$PACKAGES" bookworm "$rootfs" "$(mirror)" >"$D/debootstrap.log" 2>&1; then
    tail -30 "$D/debootstrap.log" >&2; lab_die "debootstrap failed (log $D/debootstrap.log)"
  fi
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import --change 'ENTRYPOINT ["/lifeboat/init.sh"]' - "$IMAGE" >/dev/null
  rm -rf "$rootfs"
  lab_log "lshosts: image $IMAGE built in $(( $(date +%s) - t0 )) s"
}

keys() {
  mkdir -p "$D"; chmod 700 "$D"
  [ -f "$D/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C lifeboat-lshosts -f "$D/id_ed25519"
  cp "$D/id_ed25519.pub" "$D/authorized_keys"; chmod 644 "$D/authorized_keys"
}

ssh_ok() { # NAME
  ssh -i "$D/id_ed25519" -p "$(host_port "$1")" -o BatchMode=yes -o StrictHostKeyChecking=no \
    -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=3 root@127.0.0.1 true 2>/dev/null
}

start_host() { # NAME
  local n=$1 port st
  port=$(host_port "$n")
  st=$(docker container inspect -f '{{.State.Status}}' "$n" 2>/dev/null) || st=missing
  case $st in
    running) ;;
    missing)
      mkdir -p "$D/$n"
      docker run -d --name "$n" --hostname "$n" --network "$NET" --init --label lifeboat-lab=1 --label lifeboat-lshosts=1 \
        -p "127.0.0.1:$port:22" \
        -v "$here/lshosts:/lifeboat:ro" -v "$D/authorized_keys:/etc/lifeboat/authorized_keys:ro" \
        -v /usr/bin/node:/usr/local/bin/node:ro -v "$root/test/standins:/opt/lifeboat/test/standins:ro" \
        -v "$root/node_modules:/opt/lifeboat/node_modules:ro" -v "$root/package.json:/opt/lifeboat/package.json:ro" \
        "$IMAGE" >/dev/null ;;
    *) docker start "$n" >/dev/null ;;
  esac
}

wait_host() {
  local n=$1 i
  for ((i = 0; i < 300; i++)); do ssh_ok "$n" && return 0; sleep 0.1; done
  docker logs --tail 20 "$n" >&2 2>&1 || true
  lab_die "host $n: no ssh on 127.0.0.1:$(host_port "$n") after 30 s"
}

write_lsenv() {
  local names n kv=() hosts=()
  names=$(docker ps --filter label=lifeboat-lshosts=1 --format '{{.Names}}' | sort -V)
  for n in $names; do hosts+=("$n:$(host_port "$n")"); kv+=("LSHOSTS_PORT_${n//-/_}=$(host_port "$n")"); done
  write_env lshosts LSHOSTS_KEY="$D/id_ed25519" LSHOSTS_HOSTS="${hosts[*]}" LSHOSTS_IMAGE="$IMAGE" \
    LSHOSTS_NETWORK="$NET" "${kv[@]}"
}

up_hosts() {
  local t0 n
  t0=$(date +%s%N)
  build_image; keys
  docker network inspect "$NET" >/dev/null 2>&1 || docker network create --label lifeboat-lab=1 "$NET" >/dev/null
  for n in "$@"; do start_host "$n"; done
  for n in "$@"; do wait_host "$n"; done
  write_lsenv
  ready lshosts "$* (ssh 127.0.0.1:$(host_port "$1")…)" "$t0"
}

case ${1:-status} in
  up) up_hosts "${DEFAULT_HOSTS[@]}" ;;
  up-hosts) shift; [ $# -gt 0 ] || lab_die "usage: lshosts.sh up-hosts NAME..."; up_hosts "$@" ;;
  rm) shift; for n in "$@"; do docker rm -f -v "$n" >/dev/null 2>&1 || true; rm -rf "${D:?}/$n"; done; write_lsenv ;;
  image) mkdir -p "$D"; t0=$(date +%s); build_image; echo "image $IMAGE ready in $(( $(date +%s) - t0 )) s" ;;
  down)
    ids=$(docker ps -aq --filter label=lifeboat-lshosts=1)
    [ -z "$ids" ] || docker rm -f -v $ids >/dev/null
    docker network rm "$NET" >/dev/null 2>&1 || true
    rm -f "$LAB/lshosts.env" ;;
  status)
    for n in "${DEFAULT_HOSTS[@]}"; do ssh_ok "$n" || exit 1; done ;;
  env) cat "$LAB/lshosts.env" ;;
  *) echo "usage: lshosts.sh up|up-hosts NAME...|rm NAME...|down|status|image|env" >&2; exit 2 ;;
esac
