#!/usr/bin/env bash
# Lab piece: OpenLDAP slapd 2.5 (Debian) on ldap://127.0.0.1:3389, the Hoss "internal LDAP server".
#
#   slapd.sh up            install (if missing), write the config, start; seed once when the db is new
#   slapd.sh stop-server   stop only the daemon, keep config and data (for slapcat/slapadd drills)
#   slapd.sh start-server  start the daemon again on the existing data
#   slapd.sh wipe          stop, delete the database, re-create it EMPTY (no entries at all), start
#   slapd.sh down          stop the daemon (data stays; `rm -rf $LAB/slapd` for a full reset)
#   slapd.sh status        exit 0 when the daemon answers
#
# Private state under $LAB/slapd: slapd.conf (0600), rootpw (0600, no trailing newline, so
# `ldapsearch -y` can read it), db/ (mdb), slapd.pid, seed.ldif. The system slapd (/etc/ldap/slapd.d,
# /var/lib/ldap) is never configured nor started: we preseed slapd/no_configuration and apt_ensure
# blocks service starts with policy-rc.d.
#
# Offline drill (NOTES.md: slapcat, slapadd into a fresh db, slapcat again gives identical LDIF):
#   slapcat -f $LAB_SLAPD_CONF -l dump.ldif; slapd.sh wipe; slapd.sh stop-server
#   slapadd -f $LAB_SLAPD_CONF -l dump.ldif; slapd.sh start-server
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/common.sh"

PIECE=slapd
DIR=$LAB/slapd
CONF=$DIR/slapd.conf
DB=$DIR/db
PIDFILE=$DIR/slapd.pid
PWFILE=$DIR/rootpw
SEEDED=$DIR/.seeded
HOST=127.0.0.1
PORT=3389
URL=ldap://$HOST:$PORT
BASE=dc=hoss,dc=lab
ROOTDN=cn=admin,$BASE

install() {
  command -v slapd >/dev/null 2>&1 && command -v ldapsearch >/dev/null 2>&1 && [ -x /usr/sbin/slapd ] && return 0
  # Debian's postinst would otherwise build /etc/ldap/slapd.d and /var/lib/ldap for dc=nodomain.
  echo 'slapd slapd/no_configuration boolean true' | debconf-set-selections
  apt_ensure slapd ldap-utils
}

write_conf() {
  mkdir -p "$DIR" "$DB"
  chmod 700 "$DIR"
  if [ ! -s "$PWFILE" ]; then
    (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=\n' > "$PWFILE")
  fi
  chmod 600 "$PWFILE"
  local hash tmp=$CONF.tmp
  hash=$(slappasswd -T "$PWFILE")
  (umask 077; cat > "$tmp" <<EOF
# Written by test/lab/slapd.sh: the lab's private slapd, never the system one.
include         /etc/ldap/schema/core.schema
include         /etc/ldap/schema/cosine.schema
include         /etc/ldap/schema/inetorgperson.schema
include         /etc/ldap/schema/nis.schema

pidfile         $PIDFILE
argsfile        $DIR/slapd.args
modulepath      /usr/lib/ldap
moduleload      back_mdb
sizelimit       5000
loglevel        none

database        mdb
maxsize         268435456
suffix          "$BASE"
rootdn          "$ROOTDN"
rootpw          $hash
directory       $DB
index           objectClass eq
index           uid,cn,mail eq,sub
index           member eq
index           entryUUID,entryCSN eq

access to dn.base="" by * read
access to dn.base="cn=Subschema" by * read
access to attrs=userPassword by self write by anonymous auth by * none
access to * by users read by anonymous auth
EOF
  )
  mv "$tmp" "$CONF"
}

running() { pid_alive "$PIDFILE"; }

start_server() {
  running && return 0
  [ -f "$CONF" ] || lab_die "no $CONF: run 'slapd.sh up' first"
  if (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; then
    lab_die "$HOST:$PORT is already taken by another process (not $PIDFILE)"
  fi
  rm -f "$PIDFILE"
  local out
  out=$(slaptest -Q -u -f "$CONF" 2>&1) || lab_die "slaptest rejects $CONF: $out"
  # slapd detaches; the parent exits after the child has opened the db and listener.
  slapd -f "$CONF" -h "$URL/" -n lab-slapd </dev/null >"$DIR/slapd.out" 2>&1 \
    || { cat "$DIR/slapd.out" >&2; lab_die "slapd failed to start"; }
  wait_tcp "$HOST" "$PORT" 10 || lab_die "slapd did not listen on $HOST:$PORT"
  local i
  for ((i = 0; i < 50; i++)); do [ -s "$PIDFILE" ] && break; sleep 0.1; done
  running || lab_die "slapd exited (no live pid in $PIDFILE)"
}

stop_server() { stop_pidfile "$PIDFILE" 15; }

# ldif_attr NAME VALUE: one LDIF line, base64 (NAME:: ...) when the value is not a SAFE-STRING.
ldif_attr() {
  local n=$1 v=$2
  if [[ $v == *$'\n'* || $v == [\ :\<]* || $v == *' ' ]] || printf '%s' "$v" | LC_ALL=C grep -q '[^ -~]'; then
    printf '%s:: %s\n' "$n" "$(printf '%s' "$v" | base64 -w0)"
  else
    printf '%s: %s\n' "$n" "$v"
  fi
}

# The seed: an organisation, ou=people (20 inetOrgPerson, 10 of them also posixAccount; unicode
# names; one entry named by cn with a comma and spaces; a binary jpegPhoto; a multi-line
# description), ou=groups (3 groupOfNames).
seed_ldif() {
  printf 'dn: %s\nobjectClass: dcObject\nobjectClass: organization\ndc: hoss\no: Hoss Lab\n\n' "$BASE"
  printf 'dn: ou=people,%s\nobjectClass: organizationalUnit\nou: people\n\n' "$BASE"
  printf 'dn: ou=groups,%s\nobjectClass: organizationalUnit\nou: groups\n\n' "$BASE"
  # uid|givenName|sn|cn (cn defaults to "givenName sn")
  local people=(
    "alice|Alice|Anderson|" "bob|Bob|Brown|" "carol|Carol|Chen|" "dave|Dave|Dubois|"
    "zoe|Zoë|Ångström|" "jose|José|Núñez|" "lukasz|Łukasz|Żółciński|" "soren|Søren|Kierkegård|"
    "taro|太郎|田中|田中 太郎" "olga|Όλγα|Παπαδοπούλου|" "jdoe|Jane Q.|Doe|Doe, Jane Q."
    "erin|Erin|O'Brien|" "frank|Frank|Müller|" "grace|Grace|Hopper|" "heidi|Heidi|Schmidt|"
    "ivan|Иван|Петров|" "judy|Judy|Garcia|" "mallory|Mallory|Mallet|" "nia|Nia|Okafor|"
    "oscar|Oscar|Åberg|"
  )
  local i=0 rec uid gn sn cn dn
  for rec in "${people[@]}"; do
    IFS='|' read -r uid gn sn cn <<<"$rec"
    [ -n "$cn" ] || cn="$gn $sn"
    i=$((i + 1))
    if [ "$uid" = jdoe ]; then dn="cn=Doe\\, Jane Q.,ou=people,$BASE"; else dn="uid=$uid,ou=people,$BASE"; fi
    ldif_attr dn "$dn"
    echo "objectClass: inetOrgPerson"
    [ $i -le 10 ] && echo "objectClass: posixAccount"
    ldif_attr uid "$uid"
    ldif_attr cn "$cn"
    ldif_attr sn "$sn"
    ldif_attr givenName "$gn"
    ldif_attr displayName "$cn"
    echo "mail: $uid@hoss.lab"
    echo "employeeNumber: $((1000 + i))"
    if [ $i -le 10 ]; then
      echo "uidNumber: $((10000 + i))"
      echo "gidNumber: 10000"
      echo "homeDirectory: /home/$uid"
      echo "loginShell: /bin/bash"
    fi
    case $uid in
      alice) echo "userPassword: $(slappasswd -s alice-lab-password)"
             echo "telephoneNumber: +1 555 0100" ;;
      zoe) printf 'jpegPhoto:: %s\n' "$(printf '\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9' | base64 -w0)" ;;
      jdoe) ldif_attr description $'Two-line note:\nsecond line, with a comma' ;;
      taro) ldif_attr description "東京オフィス" ;;
    esac
    echo
  done
  local m
  printf 'dn: cn=admins,ou=groups,%s\nobjectClass: groupOfNames\ncn: admins\ndescription: Hoss administrators\n' "$BASE"
  for m in "uid=alice,ou=people,$BASE" "cn=Doe\\, Jane Q.,ou=people,$BASE" "uid=taro,ou=people,$BASE"; do echo "member: $m"; done
  echo
  printf 'dn: cn=developers,ou=groups,%s\nobjectClass: groupOfNames\ncn: developers\n' "$BASE"
  ldif_attr description "Entwickler & développeurs"
  for m in bob carol dave zoe jose lukasz soren olga ivan; do echo "member: uid=$m,ou=people,$BASE"; done
  echo
  printf 'dn: cn=support,ou=groups,%s\nobjectClass: groupOfNames\ncn: support\n' "$BASE"
  for m in erin frank grace heidi judy nia oscar; do echo "member: uid=$m,ou=people,$BASE"; done
  echo "member: uid=mallory,ou=people,$BASE"
  echo
}

seed() {
  seed_ldif > "$DIR/seed.ldif"
  ldapadd -x -H "$URL" -D "$ROOTDN" -y "$PWFILE" -f "$DIR/seed.ldif" >"$DIR/seed.out" 2>&1 \
    || { cat "$DIR/seed.out" >&2; lab_die "seeding failed"; }
  touch "$SEEDED"
}

count_entries() {
  ldapsearch -x -LLL -H "$URL" -D "$ROOTDN" -y "$PWFILE" -b "$BASE" dn 2>/dev/null | grep -c '^dn' || true
}

check() {
  ldapsearch -x -LLL -H "$URL" -b "" -s base namingContexts 2>/dev/null | grep -q "namingContexts: $BASE"
}

env_out() {
  write_env "$PIECE" LAB_LDAP_URL="$URL" LAB_LDAP_BASE="$BASE" LAB_LDAP_ROOTDN="$ROOTDN" \
    LAB_LDAP_ROOTPW_FILE="$PWFILE" LAB_SLAPD_CONF="$CONF" LAB_SLAPD_DB="$DB" LAB_SLAPD_PIDFILE="$PIDFILE"
}

cmd=${1:-status}
case $cmd in
  up)
    t0=$(date +%s%N)
    if running && check; then
      env_out
      ready "$PIECE" "$URL $BASE ($(count_entries) entries, already running)"
      exit 0
    fi
    install
    write_conf
    start_server
    check || lab_die "slapd does not answer on $URL"
    [ -f "$SEEDED" ] || seed
    env_out
    ready "$PIECE" "$URL $BASE ($(count_entries) entries)" "$t0" ;;
  start-server)
    write_conf; start_server; check || lab_die "slapd does not answer on $URL"
    ready "$PIECE" "$URL (server started)" ;;
  stop-server)
    stop_server; lab_log "slapd stopped, data kept in $DB" ;;
  wipe)
    stop_server
    [ -n "$DB" ] && rm -rf "$DB"
    write_conf
    start_server
    check || lab_die "slapd does not answer on $URL"
    [ -f "$SEEDED" ] || touch "$SEEDED"   # an explicit wipe must never be re-seeded by `up`
    env_out
    ready "$PIECE" "$URL (wiped: empty database)" ;;
  down)
    stop_server; rm -f "$LAB/$PIECE.env" ;;
  status)
    if running && check; then echo "slapd: up ($URL, pid $(cat "$PIDFILE"))"; exit 0; fi
    echo "slapd: down"; exit 1 ;;
  *) echo "usage: slapd.sh up|down|status|stop-server|start-server|wipe" >&2; exit 2 ;;
esac
