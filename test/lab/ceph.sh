#!/usr/bin/env bash
# Lab piece "ceph": a single-node Ceph 16 (Debian) with one mon, one bluestore OSD (file-backed),
# no mgr, and radosgw serving S3 on 127.0.0.1:7480 (path-style works). See NOTES.md, "Ceph RADOS Gateway".
#
#   ceph.sh up       create (first time) or restart the cluster, create the S3 user, write $LAB/ceph.env
#   ceph.sh down     stop radosgw, osd, mon by pid file (data survives), leave no process behind
#   ceph.sh status   exit 0 when radosgw answers an anonymous GET / on 127.0.0.1:7480
#   ceph.sh reset    delete every bucket (and its objects) of the lifeboat user
#
# Everything (conf, data, run dir, admin sockets, logs, keys) lives under $LAB/ceph/.
# A cluster that does not come back (kill -9 leftovers, half-made state) is wiped and recreated.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/common.sh"

D=$LAB/ceph
CONF=$D/ceph.conf
RGW_PORT=7480
MON_V2=33300
MON_V1=36789
S3_USER=lifeboat
ENDPOINT=http://127.0.0.1:$RGW_PORT
# The pools radosgw creates on first use; made up front, in parallel (saves a 4 s stall later).
RGW_POOLS=(.rgw.root default.rgw.log default.rgw.control default.rgw.meta
  default.rgw.buckets.index default.rgw.buckets.data default.rgw.buckets.non-ec)

# Timeouts (seconds) for each wait.
T_MON=30 T_OSD=60 T_RGW=60 T_CLI=60

pidf() { echo "$D/run/$1.pid"; }          # mon.a osd.0 client.rgw.a
logf() { echo "$D/log/$1.log"; }
outf() { echo "$D/log/$1.out"; }           # stdout/stderr of the daemon (early errors)

# Tail of a daemon's logs, for error messages.
log_tail() {
  local n=$1 f
  for f in "$(outf "$n")" "$(logf "$n")"; do
    [ -s "$f" ] && { printf -- '--- tail of %s\n' "$f"; tail -n 15 "$f"; }
  done
  true
}
fail() { # fail DAEMON MESSAGE: error naming the daemon, with its log tail (does not exit)
  printf 'lab: ceph: %s: %s\n' "$1" "$2" >&2
  log_tail "$1" >&2
  return 1
}

cephc() { timeout "$T_CLI" ceph -c "$CONF" --connect-timeout 30 "$@"; }
rgwadm() { timeout "$T_CLI" radosgw-admin -c "$CONF" "$@"; }

http_code() { curl -s -o /dev/null -m 5 -w '%{http_code}' "$ENDPOINT/" 2>/dev/null || true; }
rgw_answers() { [ "$(http_code)" = 200 ]; }

write_conf() {
  local fsid; fsid=$(cat "$D/fsid")
  mkdir -p "$D/run" "$D/log" "$D/crash" "$D/mon" "$D/osd" "$D/rgw"
  cat > "$CONF.tmp" <<EOF
# Written by test/lab/ceph.sh; regenerated on every up.
[global]
fsid = $fsid
mon initial members = a
mon host = [v2:127.0.0.1:$MON_V2,v1:127.0.0.1:$MON_V1]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
ms bind port min = 36800
ms bind port max = 36899
auth cluster required = none
auth service required = none
auth client required = none
keyring = $D/keyring
run dir = $D/run
crash dir = $D/crash
mon data = $D/mon/\$cluster-\$id
osd data = $D/osd/\$cluster-\$id
rgw data = $D/rgw/\$cluster-\$id
mgr data = $D/mgr/\$cluster-\$id
mon cluster log file = $D/log/cluster.log
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon data avail crit = 1
mon data avail warn = 2
paxos propose interval = 0.1
mon warn on insecure global id reclaim allowed = false

[mon]
admin socket = $D/run/\$cluster-\$name.asok
pid file = $D/run/\$name.pid
log file = $D/log/\$name.log

[osd]
admin socket = $D/run/\$cluster-\$name.asok
pid file = $D/run/\$name.pid
log file = $D/log/\$name.log
osd objectstore = bluestore
bluestore block create = true
# Sparse: disk is used only as data is written. Tests and benchmarks churn gigabytes through it.
bluestore block size = 25769803776
bluestore block db create = false
bluestore block wal create = false
bluestore fsck on mount = false
osd memory target = 1073741824
bluestore cache autotune = false
bluestore cache size = 268435456
# The block file counts as a rotational device: 5 op shards, each probing the block file on
# startup, and every close waits out the aio poll interval. Fewer shards, shorter poll: faster start.
osd op num shards = 2
osd op num threads per shard = 2
bdev aio poll ms = 50
# Mounting replays the BlueFS log (twice); by default it grows to 16 MiB+ before being compacted.
bluefs log compact min size = 1048576

# Command-line clients (ceph, radosgw-admin): no log file, no admin socket.
[client]
log to file = false
admin socket =
ms mon client mode = crc secure

[client.rgw.a]
log to file = true
admin socket = $D/run/\$cluster-\$name.asok
pid file = $D/run/\$name.pid
log file = $D/log/\$name.log
ms mon client mode = crc secure
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT tcp_nodelay=1
rgw enable usage log = false
rgw relaxed s3 bucket names = true
# Deleted objects are reclaimed by RGW's garbage collector, by default only after 2 hours;
# the lab deletes gigabytes in minutes (test buckets, benchmarks), so reclaim promptly.
rgw gc obj min wait = 30
rgw gc processor period = 30
rgw gc processor max time = 30
EOF
  mv "$CONF.tmp" "$CONF"
}

# pids_of KIND: live processes of KIND (ceph-mon, ceph-osd, radosgw) started with our conf,
# also ones whose pid file was lost or is stale (kill -9 leftovers, an interrupted up).
pids_of() {
  local kind=$1 p arg0 cmd st
  for p in /proc/[0-9]*; do
    { IFS= read -r -d '' arg0 < "$p/cmdline"; } 2>/dev/null || continue
    [ "${arg0##*/}" = "$kind" ] || continue
    cmd=$(tr '\0' ' ' 2>/dev/null < "$p/cmdline") || continue
    [[ "$cmd" == *" -c $CONF "* ]] || continue
    st=$(ps -o stat= -p "${p#/proc/}" 2>/dev/null) || continue
    [[ "$st" == Z* ]] || echo "${p#/proc/}"
  done
}

# ours NAME: the daemon's pid file names a live process that was started with our conf
# (a stale pid file may name an unrelated process that reused the pid).
ours() {
  local f c; f=$(pidf "$1")
  pid_alive "$f" || return 1
  c=$(tr '\0' ' ' 2>/dev/null < "/proc/$(cat "$f")/cmdline") || return 1
  [[ "$c" == *" -c $CONF "* ]]
}

# stop_kind KIND NAME SECONDS: by pid file, then any stray of that kind; TERM, then KILL.
stop_kind() {
  local kind=$1 n=$2 secs=$3 pids end
  ours "$n" || rm -f "$(pidf "$n")"
  stop_pidfile "$(pidf "$n")" "$secs"
  pids=$(pids_of "$kind")
  [ -z "$pids" ] && return 0
  lab_log "ceph: stopping stray $kind: "$pids
  kill -TERM $pids 2>/dev/null || true
  end=$((SECONDS + secs))
  while ((SECONDS < end)) && [ -n "$(pids_of "$kind")" ]; do sleep 0.2; done
  pids=$(pids_of "$kind")
  [ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
  end=$((SECONDS + 5))
  while ((SECONDS < end)) && [ -n "$(pids_of "$kind")" ]; do sleep 0.1; done
}

# Gateway first (it hangs on TERM once the mon/osd are gone; it keeps no data, so 10 s then KILL).
stop_all() {
  local rgw_secs=10
  [ -n "$(pids_of ceph-mon)" ] && [ -n "$(pids_of ceph-osd)" ] || rgw_secs=1
  stop_kind radosgw client.rgw.a $rgw_secs
  stop_kind ceph-osd osd.0 30
  stop_kind ceph-mon mon.a 15
  local left; left=$(pids_of radosgw; pids_of ceph-osd; pids_of ceph-mon)
  [ -z "$left" ] || lab_die "ceph: daemons still running after stop: "$left
}

# After stop_all, our ports must be free: a foreign listener would make the restart fail and
# look like a broken cluster (which up would then wipe).
check_ports_free() {
  local port
  for port in $MON_V2 $MON_V1 $RGW_PORT; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      lab_die "ceph: port 127.0.0.1:$port is in use by another process: $(ss -ltnpH "sport = :$port" 2>/dev/null | head -1)"
    fi
  done
}

# start DAEMON CMD...: runs a daemon in the foreground of its own session, in the background here.
start_daemon() {
  local n=$1; shift
  setsid "$@" -f < /dev/null > "$(outf "$n")" 2>&1 &
  echo $! > "$(pidf "$n")"   # the daemon rewrites the same pid itself
}

daemon_dead() { ! pid_alive "$(pidf "$1")"; }   # we just started it: the pid is ours

wait_mon() {
  local end=$((SECONDS + T_MON)) asok=$D/run/ceph-mon.a.asok
  while ((SECONDS < end)); do
    daemon_dead mon.a && { fail mon.a "ceph-mon exited during startup"; return 1; }
    if [ -S "$asok" ] && timeout 10 ceph --admin-daemon "$asok" mon_status 2>/dev/null | grep -q '"state": "leader"'; then
      return 0
    fi
    sleep 0.2
  done
  fail mon.a "ceph-mon did not become leader within ${T_MON}s"
}

wait_osd() {
  local end=$((SECONDS + T_OSD)) asok=$D/run/ceph-osd.0.asok
  while ((SECONDS < end)); do
    daemon_dead osd.0 && { fail osd.0 "ceph-osd exited during startup"; return 1; }
    if [ -S "$asok" ] && timeout 10 ceph --admin-daemon "$asok" status 2>/dev/null | grep -q '"state": "active"'; then
      return 0
    fi
    sleep 0.2
  done
  fail osd.0 "ceph-osd did not become active within ${T_OSD}s"
}

# On a restart: the OSD must hold every PG of the osdmap. One that lost its data (an OSD recreated
# behind the mon's back, a memstore after kill -9) holds none, and radosgw would hang on startup.
wait_pgs() {
  local end=$((SECONDS + 10)) want have asok=$D/run/ceph-osd.0.asok
  want=$(cephc osd dump -f json 2>/dev/null | jq '[.pools[].pg_num] | add // 0') \
    || { fail mon.a "ceph osd dump failed"; return 1; }
  while ((SECONDS < end)); do
    have=$(timeout 10 ceph --admin-daemon "$asok" status 2>/dev/null | jq .num_pgs) || have=?
    [ "$have" = "$want" ] && return 0
    sleep 0.2
  done
  fail osd.0 "ceph-osd holds $have of the cluster's $want PGs (its data is gone)"
}

wait_rgw() {
  local end=$((SECONDS + T_RGW))
  while ((SECONDS < end)); do
    daemon_dead client.rgw.a && { fail client.rgw.a "radosgw exited during startup"; return 1; }
    rgw_answers && return 0
    sleep 0.2
  done
  fail client.rgw.a "radosgw did not answer GET $ENDPOINT/ within ${T_RGW}s (last HTTP code: $(http_code))"
}

start_mon() { reserve_ports "$MON_V2" "$MON_V1"; start_daemon mon.a ceph-mon -c "$CONF" -i a && wait_mon; }
start_osd() { start_daemon osd.0 ceph-osd -c "$CONF" -i 0 && wait_osd; }
start_rgw() { start_daemon client.rgw.a radosgw -c "$CONF" -n client.rgw.a && wait_rgw; }

# Generated once; survive a recreate of the cluster.
ensure_keys() {
  mkdir -p "$D"; chmod 700 "$D"
  local f len
  for f in access_key secret_key; do
    [ -s "$D/$f" ] && continue
    [ $f = access_key ] && len=20 || len=40
    ( umask 077; set +o pipefail
      if [ $f = access_key ]; then LC_ALL=C tr -dc 'A-Z0-9' < /dev/urandom | head -c $len
      else LC_ALL=C tr -dc 'A-Za-z0-9' < /dev/urandom | head -c $len; fi > "$D/$f.tmp" )
    mv "$D/$f.tmp" "$D/$f"
  done
  chmod 600 "$D/access_key" "$D/secret_key"
}

wipe() {
  rm -rf "$D/mon" "$D/osd" "$D/rgw" "$D/mgr" "$D/run" "$D/crash" "$D/log" "$D/.complete" "$D/fsid" "$D/monmap"
}

# First-time creation: monmap, mon mkfs, osd new + mkfs, start all, pools, user.
create() {
  wipe
  uuidgen > "$D/fsid"
  write_conf
  monmaptool --create --clobber --fsid "$(cat "$D/fsid")" \
    --addv a "[v2:127.0.0.1:$MON_V2,v1:127.0.0.1:$MON_V1]" "$D/monmap" > "$D/log/monmaptool.out" 2>&1 \
    || { fail monmaptool "monmaptool --create failed"; return 1; }
  mkdir -p "$D/mon/ceph-a"
  timeout 60 ceph-mon -c "$CONF" --mkfs -i a --monmap "$D/monmap" > "$(outf mon.a)" 2>&1 \
    || { fail mon.a "ceph-mon --mkfs failed"; return 1; }
  start_mon || return 1
  local uuid id; uuid=$(uuidgen)
  id=$(cephc osd new "$uuid" 0 2> "$D/log/osd-new.out") || { fail osd-new "ceph osd new failed"; return 1; }
  [ "$id" = 0 ] || { fail osd-new "ceph osd new returned id '$id', expected 0"; return 1; }
  mkdir -p "$D/osd/ceph-0"
  timeout 120 ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$uuid" > "$(outf osd.0)" 2>&1 \
    || { fail osd.0 "ceph-osd --mkfs failed"; return 1; }
  start_osd || return 1
  local p pids=() rc=0
  for p in "${RGW_POOLS[@]}"; do
    ( cephc osd pool create "$p" 8 8 replicated && cephc osd pool application enable "$p" rgw ) \
      > "$D/log/pool-$p.out" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  if [ $rc != 0 ]; then
    for p in "${RGW_POOLS[@]}"; do log_tail "pool-$p" >&2; done
    fail osd.0 "creating the gateway's pools failed"; return 1
  fi
  start_rgw || return 1
  ensure_user || return 1
  touch "$D/.complete"
}

ensure_user() {
  local ak sk info
  ak=$(cat "$D/access_key"); sk=$(cat "$D/secret_key")
  if info=$(rgwadm user info --uid="$S3_USER" 2>/dev/null); then
    grep -q "\"access_key\": \"$ak\"" <<< "$info" && grep -q "\"secret_key\": \"$sk\"" <<< "$info" && return 0
    rgwadm user rm --uid="$S3_USER" > "$D/log/user.out" 2>&1 || true
  fi
  rgwadm user create --uid="$S3_USER" --display-name="$S3_USER" \
    --access-key="$ak" --secret="$sk" > "$D/log/user.out" 2>&1 \
    || { fail user "radosgw-admin user create failed"; return 1; }
}

# Restart an existing cluster; non-zero when it does not come back.
restart() {
  write_conf
  start_mon && start_osd && wait_pgs && start_rgw && ensure_user
}

do_env() {
  write_env ceph LAB_S3_ENDPOINT="$ENDPOINT" \
    LAB_S3_ACCESS_KEY="$(cat "$D/access_key")" LAB_S3_SECRET_KEY="$(cat "$D/secret_key")" \
    LAB_S3_REGION=default LAB_CEPH_CONF="$CONF"
}

all_running() {
  [ -f "$D/.complete" ] && [ -f "$CONF" ] &&
    ours mon.a && ours osd.0 && ours client.rgw.a &&
    rgw_answers
}

cmd_up() {
  local t0; t0=$(date +%s%N)
  apt_ensure radosgw ceph-mon ceph-osd ceph-common curl jq uuid-runtime
  ensure_keys
  if all_running; then
    do_env; ready ceph "$ENDPOINT (already running)" "$t0"; return 0
  fi
  stop_all
  check_ports_free
  local how=created
  if [ -f "$D/.complete" ]; then
    if restart; then how=restarted
    else
      lab_log "ceph: the existing cluster did not come back (stale or killed); wiping and recreating it"
      stop_all
      create || { stop_all; lab_die "ceph: creating the cluster failed (logs in $D/log)"; }
    fi
  else
    [ -d "$D/mon" ] && lab_log "ceph: found a half-made cluster; recreating it"
    create || { stop_all; lab_die "ceph: creating the cluster failed (logs in $D/log)"; }
  fi
  do_env
  ready ceph "$ENDPOINT user $S3_USER, bluestore ($how)" "$t0"
}

cmd_down() {
  stop_all
  rm -f "$LAB/ceph.env"
  lab_log "ceph: down"
}

cmd_status() {
  if rgw_answers; then echo "ceph: up ($ENDPOINT)"; return 0; fi
  echo "ceph: down"; return 1
}

cmd_reset() {
  [ -f "$D/.complete" ] || lab_die "ceph: no cluster (run ceph.sh up)"
  ours osd.0 || lab_die "ceph: osd.0 is not running (run ceph.sh up)"
  local buckets
  buckets=$(rgwadm bucket list --uid="$S3_USER" | jq -r '.[]') || lab_die "ceph: radosgw-admin bucket list failed"
  [ -z "$buckets" ] && return 0
  printf '%s\n' "$buckets" | xargs -r -d '\n' -P 4 -I{} \
    timeout 300 radosgw-admin -c "$CONF" bucket rm --bucket={} --purge-objects --bypass-gc \
    || lab_die "ceph: removing buckets failed"
  lab_log "ceph: reset: removed $(wc -l <<< "$buckets") bucket(s)"
}

case ${1:-status} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  reset) cmd_reset ;;
  *) echo "usage: ceph.sh up|down|status|reset" >&2; exit 2 ;;
esac
