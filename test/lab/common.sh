# Shared shell functions for the lifeboat test lab. Sourced by test/lab/*.sh.
#
# Conventions every piece follows:
#   - state lives under $LAB/<piece>/ (LAB defaults to /var/tmp/lifeboat-lab);
#   - `<piece>.sh up` is idempotent: if the piece is already running it only re-checks and says ready;
#   - `<piece>.sh down` stops what `up` started, by pid file, and leaves no process behind;
#   - `<piece>.sh status` exits 0 when up, 1 when down;
#   - `up` writes $LAB/<piece>.env: KEY=VALUE lines (values shell-quoted) the tests read;
#   - every service listens on loopback only (127.0.0.1) or inside the lab's own netns/containers.
set -euo pipefail

LAB=${LIFEBOAT_LAB:-/var/tmp/lifeboat-lab}
export LAB
mkdir -p "$LAB"

lab_log() { printf 'lab: %s\n' "$*" >&2; }
lab_die() { printf 'lab: error: %s\n' "$*" >&2; exit 1; }

# apt_ensure PKG...: install the Debian packages that are missing, never start their services.
apt_ensure() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  lab_log "installing ${missing[*]}"
  # Keep postinst scripts from starting services (slapd, postgresql, docker ...): the lab starts its own.
  local prc=/usr/sbin/policy-rc.d created=0
  if [ ! -e "$prc" ]; then printf '#!/bin/sh\nexit 101\n' > "$prc"; chmod +x "$prc"; created=1; fi
  if [ ! -f "$LAB/.apt-updated" ] || [ -n "$(find "$LAB/.apt-updated" -mmin +360 2>/dev/null)" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null && touch "$LAB/.apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >"$LAB/apt.log" 2>&1 \
    || { [ $created = 1 ] && rm -f "$prc"; tail -20 "$LAB/apt.log" >&2; lab_die "apt-get install ${missing[*]} failed"; }
  [ $created = 1 ] && rm -f "$prc"
  return 0
}

# pid_alive PIDFILE: true when the pid in the file is a live (non-zombie) process.
pid_alive() {
  local f=$1 pid st
  [ -f "$f" ] || return 1
  pid=$(cat "$f" 2>/dev/null) || return 1
  [ -n "$pid" ] || return 1
  st=$(ps -o stat= -p "$pid" 2>/dev/null) || return 1
  [ -n "$st" ] && [[ "$st" != Z* ]]
}

# stop_pidfile PIDFILE [SECONDS]: TERM, wait, then KILL; removes the pid file.
stop_pidfile() {
  local f=$1 wait=${2:-10} pid i
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if pid_alive "$f"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < wait * 10; i++)); do pid_alive "$f" || break; sleep 0.1; done
    pid_alive "$f" && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

# wait_tcp HOST PORT SECONDS: wait until something accepts connections.
# Takes PORTs (or ranges A-B) out of the kernel's ephemeral range (net.ipv4.ip_local_reserved_ports),
# so that no client connection on this machine is given one as its source port: the lab's ports
# lie in the range (32768-60999), and a long-lived connection holding one (seen in CI: 55434, for
# more than 10 s) keeps the piece from starting. Listening on a reserved port is not affected.
reserve_ports() {
  local f=/proc/sys/net/ipv4/ip_local_reserved_ports cur p
  [ -w "$f" ] || return 0
  cur=$(cat "$f")
  for p in "$@"; do
    case ",$cur," in *",$p,"*) ;; *) cur=${cur:+$cur,}$p ;; esac
  done
  echo "$cur" > "$f" 2>/dev/null || lab_log "could not reserve ports $* (ip_local_reserved_ports)"
}

wait_tcp() {
  local host=$1 port=$2 secs=${3:-30} i
  for ((i = 0; i < secs * 10; i++)); do
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# write_env PIECE KEY=VALUE...: writes $LAB/PIECE.env with shell-quoted values.
write_env() {
  local piece=$1; shift
  local tmp="$LAB/.$piece.env.tmp" kv
  : > "$tmp"
  for kv in "$@"; do printf '%s=%q\n' "${kv%%=*}" "${kv#*=}" >> "$tmp"; done
  mv "$tmp" "$LAB/$piece.env"
}

# ready PIECE MESSAGE START_EPOCH_NS: the one-line ready report.
ready() {
  local piece=$1 msg=$2 t0=${3:-}
  if [ -n "$t0" ]; then
    local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    printf 'lab: %-8s ready  %s (%d.%ds)\n' "$piece" "$msg" $((ms / 1000)) $(((ms % 1000) / 100)) >&2
  else
    printf 'lab: %-8s ready  %s\n' "$piece" "$msg" >&2
  fi
}
