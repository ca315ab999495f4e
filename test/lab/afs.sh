#!/usr/bin/env bash
# Lab piece: a real single-node OpenAFS 1.8 cell (Debian's packages), for the HCoop recipes.
#
#   afs.sh up       install (if missing), create a fresh cell, start it, print one ready line
#   afs.sh down     stop the FUSE client and every server, delete the namespace and the cell
#   afs.sh status   exit 0 when the cell answers `vos listvldb`
#
# Why it looks like this (../shared/lab/NOTES.md, "OpenAFS 1.8.9 server"):
#   - OpenAFS refuses loopback server addresses, so the cell runs in its own network namespace
#     ($NS) whose `lo` also carries $ADDR (198.18.0.0/15, the benchmarking range). No traffic
#     leaves that namespace: it has no other interface.
#   - OpenAFS reads fixed Debian paths (/etc/openafs, /var/lib/openafs, /var/log/openafs, /vicepa).
#     A holder process keeps one private mount namespace (made by `ip netns exec`) in which
#     $LAB/afs/{etc,lib,log,vicepa} are bind-mounted over those paths, so the host's own
#     OpenAFS config is never touched and the whole cell lives under $LAB/afs. Every command
#     runs inside with `nsenter -t HOLDER -m -n --` (the env file's LAB_AFS_PREFIX). The only
#     thing made outside $LAB is an empty /vicepa directory, the bind mount's target.
#   - bosserver -noauth; ptserver and vlserver first, wait for `vos listvldb` (ubik quorum),
#     only then the `dafs` fileserver instance, else its address registration fails for minutes.
#   - the FUSE client afsd.fuse runs in the same mount namespace: volume V is at
#     $MNT/.:mount/$CELL:V/ (-dynroot). A fresh volume grants rights only to
#     system:administrators; tasks/drills/hcoop.ts opens its root ACL (dump, patch, restore).
#   - the cell is throwaway: `down` deletes it, `up` makes a fresh one (about 10 s).
#
# Env file ($LAB/afs.env): LAB_AFS_CELL, LAB_AFS_SERVER (address), LAB_AFS_PARTITION,
# LAB_AFS_NETNS, LAB_AFS_PREFIX (argv, space-separated, no quoting needed), LAB_AFS_FUSE_MNT,
# LAB_AFS_DIR.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/common.sh"

PIECE=afs
DIR=$LAB/afs
NS=lifeboat-afs
ADDR=198.18.10.1
CELL=lab.lifeboat
PART=/vicepa
HOLDER_PID=$DIR/holder.pid
BOS_PID=$DIR/bosserver.pid
FUSE_MNT=$DIR/mnt

install() {
  if command -v vos >/dev/null && [ -x /usr/sbin/bosserver ] && [ -x /usr/sbin/afsd.fuse ] && command -v restorevol >/dev/null && command -v ccrypt >/dev/null; then
    return 0
  fi
  for q in "openafs-client openafs-client/thiscell string $CELL" "openafs-client openafs-client/run-client boolean false" \
           "openafs-client openafs-client/afsdb boolean false" "openafs-fileserver openafs-fileserver/thiscell string $CELL"; do
    echo "$q" | debconf-set-selections
  done
  apt_ensure openafs-fileserver openafs-dbserver openafs-client openafs-fuse ccrypt fuse3
}

holder_alive() { pid_alive "$HOLDER_PID"; }
# in_ns CMD…: run inside the cell's network and mount namespace.
in_ns() { nsenter -t "$(cat "$HOLDER_PID")" -m -n -- "$@"; }

vldb_answers() { holder_alive && timeout 10 nsenter -t "$(cat "$HOLDER_PID")" -m -n -- vos listvldb -server "$ADDR" -noauth >/dev/null 2>&1; }

make_cell_files() {
  rm -rf "$DIR"
  mkdir -p "$DIR"/{etc/server,lib/db,lib/local,log,vicepa,cache,mnt}
  chmod 700 "$DIR" "$DIR/lib/db" "$DIR/lib/local" "$DIR/cache"
  touch "$DIR/vicepa/AlwaysAttach"
  printf '%s\n' "$CELL" > "$DIR/etc/server/ThisCell"
  printf '>%s #lifeboat lab cell\n%s #afs.lab\n' "$CELL" "$ADDR" > "$DIR/etc/server/CellServDB"
  cp "$DIR/etc/server/ThisCell" "$DIR/etc/ThisCell"
  cp "$DIR/etc/server/CellServDB" "$DIR/etc/CellServDB"
  printf '/afs:%s:200000\n' "$DIR/cache" > "$DIR/etc/cacheinfo"
  # The fileserver registers this address alone (never 127.x or the host's).
  printf '%s\n' "$ADDR" > "$DIR/lib/local/NetInfo"
  mkdir -p /etc/netns/$NS
  # Servers look up their own host name: it must resolve to ADDR inside the namespace.
  printf '127.0.0.1 localhost\n%s afs.lab %s\n' "$ADDR" "$(hostname)" > /etc/netns/$NS/hosts
  [ -d "$PART" ] || mkdir -m 700 "$PART"
}

make_netns() {
  ip netns list | grep -qw "^$NS" || ip netns add "$NS"
  ip -n "$NS" link set lo up
  ip -n "$NS" addr show dev lo | grep -q "$ADDR/" || ip -n "$NS" addr add "$ADDR/32" dev lo
}

start_holder() {
  # One mount namespace for the whole cell: the bind mounts live as long as this process.
  setsid ip netns exec "$NS" bash -c '
    set -e
    mount --bind "$1/etc" /etc/openafs
    mount --bind "$1/lib" /var/lib/openafs
    mount --bind "$1/log" /var/log/openafs
    mount --bind "$1/vicepa" /vicepa
    echo $$ > "$1/holder.pid.tmp"; mv "$1/holder.pid.tmp" "$1/holder.pid"
    exec sleep infinity' afs-holder "$DIR" </dev/null >"$DIR/holder.out" 2>&1 &
  local i
  for ((i = 0; i < 50; i++)); do holder_alive && return 0; sleep 0.1; done
  cat "$DIR/holder.out" >&2
  lab_die "the namespace holder did not start"
}

start_cell() {
  in_ns setsid bosserver -noauth -nofork </dev/null >"$DIR/bosserver.out" 2>&1 &
  echo $! > "$BOS_PID"
  local i
  for ((i = 0; i < 100; i++)); do in_ns bos getdate -server "$ADDR" -file bosserver -noauth >/dev/null 2>&1 && break; sleep 0.1; done
  in_ns bos getdate -server "$ADDR" -file bosserver -noauth >/dev/null 2>&1 || { cat "$DIR/bosserver.out" >&2; lab_die "bosserver does not answer"; }
  in_ns bos setcellname -server "$ADDR" -name "$CELL" -noauth >/dev/null 2>&1 || true
  in_ns bos create -server "$ADDR" -instance ptserver -type simple -cmd /usr/lib/openafs/ptserver -noauth
  in_ns bos create -server "$ADDR" -instance vlserver -type simple -cmd /usr/lib/openafs/vlserver -noauth
  for ((i = 0; i < 300; i++)); do vldb_answers && break; sleep 0.2; done
  vldb_answers || { tail -20 "$DIR"/log/VLLog >&2 || true; lab_die "vlserver has no quorum after 60 s"; }
  in_ns bos create -server "$ADDR" -instance dafs -type dafs \
    -cmd "/usr/lib/openafs/dafileserver -L" /usr/lib/openafs/davolserver /usr/lib/openafs/salvageserver /usr/lib/openafs/dasalvager -noauth
  # Ready when the volserver answers and the partition is attached.
  for ((i = 0; i < 300; i++)); do
    in_ns vos listpart -server "$ADDR" -noauth 2>/dev/null | grep -q "$PART" && break; sleep 0.2
  done
  in_ns vos listpart -server "$ADDR" -noauth 2>/dev/null | grep -q "$PART" || { tail -20 "$DIR"/log/FileLog >&2 || true; lab_die "the fileserver did not attach $PART within 60 s"; }
  # The fileserver registers itself with the vldb; wait for it so `vos create` finds the server.
  for ((i = 0; i < 300; i++)); do
    in_ns vos listaddrs -noauth 2>/dev/null | grep -q "$ADDR\|afs.lab" && break; sleep 0.2
  done
}

start_fuse() {
  # Daemonizes; its mount lives in the holder's mount namespace.
  in_ns afsd.fuse -dynroot -fakestat -nosettime -confdir /etc/openafs -cachedir "$DIR/cache" -blocks 200000 -mountdir "$FUSE_MNT" \
    </dev/null >"$DIR/afsd.out" 2>&1 || { cat "$DIR/afsd.out" >&2; lab_die "afsd.fuse did not start"; }
  local i
  for ((i = 0; i < 100; i++)); do in_ns test -d "$FUSE_MNT/.:mount" 2>/dev/null && return 0; sleep 0.1; done
  lab_log "warning: the FUSE client's mount $FUSE_MNT does not show .:mount (the drill will say so)"
}

env_out() {
  write_env "$PIECE" LAB_AFS_CELL="$CELL" LAB_AFS_SERVER="$ADDR" LAB_AFS_PARTITION="$PART" LAB_AFS_NETNS="$NS" \
    LAB_AFS_PREFIX="nsenter -t $(cat "$HOLDER_PID") -m -n --" LAB_AFS_FUSE_MNT="$FUSE_MNT" LAB_AFS_DIR="$DIR"
}

stop_all() {
  if holder_alive; then
    # The FUSE client first (it talks to the fileserver), then every server process.
    in_ns fusermount -u -z "$FUSE_MNT" >/dev/null 2>&1 || in_ns umount -l "$FUSE_MNT" >/dev/null 2>&1 || true
    timeout 30 nsenter -t "$(cat "$HOLDER_PID")" -m -n -- bos shutdown -server "$ADDR" -wait -noauth >/dev/null 2>&1 || true
  fi
  stop_pidfile "$BOS_PID" 10
  # Whatever still runs in the namespace (the fileserver's helpers, afsd.fuse): only processes
  # inside OUR network namespace, by pid.
  local pids p
  if ip netns list | grep -qw "^$NS"; then
    pids=$(ip netns pids "$NS" 2>/dev/null || true)
    for p in $pids; do [ -f "$HOLDER_PID" ] && [ "$p" = "$(cat "$HOLDER_PID")" ] && continue; kill -TERM "$p" 2>/dev/null || true; done
    sleep 0.5
    pids=$(ip netns pids "$NS" 2>/dev/null || true)
    for p in $pids; do [ -f "$HOLDER_PID" ] && [ "$p" = "$(cat "$HOLDER_PID")" ] && continue; kill -KILL "$p" 2>/dev/null || true; done
  fi
  stop_pidfile "$HOLDER_PID" 5
  ip netns list | grep -qw "^$NS" && ip netns del "$NS" 2>/dev/null || true
  rm -rf "/etc/netns/$NS"
}

cmd=${1:-status}
case $cmd in
  up)
    t0=$(date +%s%N)
    if vldb_answers; then
      env_out
      ready "$PIECE" "cell $CELL on $ADDR in netns $NS (already running)"
      exit 0
    fi
    install
    stop_all
    make_cell_files
    make_netns
    start_holder
    start_cell
    start_fuse
    env_out
    ready "$PIECE" "cell $CELL on $ADDR in netns $NS, FUSE at $FUSE_MNT" "$t0" ;;
  down)
    stop_all
    rm -f "$LAB/$PIECE.env"
    rm -rf "$DIR" ;;
  status)
    if vldb_answers; then echo "afs: up (cell $CELL on $ADDR, netns $NS)"; exit 0; fi
    echo "afs: down"; exit 1 ;;
  *) echo "usage: afs.sh up|down|status" >&2; exit 2 ;;
esac
