#!/usr/bin/env bash
# Lab piece "mariadb": one MariaDB server (Debian 12's mariadb-server, 10.11) on the host, with its
# own datadir under $LAB/mariadb, listening on 127.0.0.1:53306 and a private socket.
#
#   mariadb.sh up       install mariadb-server if missing, create the datadir once, start mariadbd
#   mariadb.sh down     stop it (by pid file), leave nothing running
#   mariadb.sh status   exit 0 when it answers
#   mariadb.sh env      print $LAB/mariadb.env
#
# Accounts: the admin user `lifeboat` (all privileges, with grant option) for 127.0.0.1 and
# localhost, its password in $LAB/mariadb/lifeboat.password and, for clients, a defaults file
# $LAB/mariadb/client.cnf ([client] user/password/host/port, mode 600), so no password ever
# appears on argv. root@localhost keeps Debian's unix_socket authentication.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/common.sh"

P=$LAB/mariadb
PORT=53306
RUN=$P/run
SOCK=$RUN/mysqld.sock
PIDF=$RUN/mariadbd.pid
PWFILE=$P/lifeboat.password
CNF=$P/client.cnf

gen_pw() { [ -s "$1" ] || (umask 077; head -c 18 /dev/urandom | base64 | tr '+/' '-_' > "$1"); chmod 600 "$1"; }
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
answers() { mariadb-admin --defaults-file="$CNF" --connect-timeout=2 ping >/dev/null 2>&1; }

prepare() {
  apt_ensure mariadb-server mariadb-client
  id mysql >/dev/null 2>&1 || lab_die "no OS user mysql (it comes with mariadb-server)"
  mkdir -p "$P/log" "$RUN"
  chown mysql:mysql "$P/log" "$RUN"
  chmod 755 "$P"
  gen_pw "$PWFILE"
  (umask 077; printf '[client]\nuser=lifeboat\npassword=%s\nhost=127.0.0.1\nport=%s\n' "$(cat "$PWFILE")" "$PORT" > "$CNF.tmp" && mv "$CNF.tmp" "$CNF")
}

start() {
  pid_alive "$PIDF" && return 0
  reserve_ports "$PORT"
  port_busy "$PORT" && lab_die "127.0.0.1:$PORT is taken by something else"
  # The port lies in the kernel's ephemeral range: a client connection can hold it as its source
  # port for a moment, and the bind fails though nothing listens. mariadbd then exits: try again.
  local try i pid lines
  for try in 1 2 3 4 5; do
    lines=$(wc -l < "$P/log/mariadbd.err" 2>/dev/null || echo 0)
    # --no-defaults: nothing from /etc/mysql; every path under $P.
    setsid mariadbd --no-defaults --user=mysql --datadir="$P/data" --socket="$SOCK" --pid-file="$PIDF" \
      --port="$PORT" --bind-address=127.0.0.1 --skip-name-resolve --log-error="$P/log/mariadbd.err" \
      --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
      --innodb-buffer-pool-size=64M --innodb-log-file-size=16M --innodb-flush-log-at-trx-commit=2 \
      --skip-log-bin --performance-schema=OFF </dev/null >>"$P/log/mariadbd.out" 2>&1 &
    pid=$!
    for ((i = 0; i < 600; i++)); do
      [ -S "$SOCK" ] && mariadb-admin --no-defaults --socket="$SOCK" -uroot ping >/dev/null 2>&1 && return 0
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && break # running but not answering: no second one beside it
    tail -n +"$((lines + 1))" "$P/log/mariadbd.err" 2>/dev/null | grep -q "Address already in use" && ! port_busy "$PORT" && [ "$try" -lt 5 ] || break
    echo "lab: mariadb: 127.0.0.1:$PORT was briefly in use (a client's source port?); starting mariadbd again" >&2
    sleep 2
  done
  tail -20 "$P/log/mariadbd.err" >&2
  lab_die "mariadbd did not start"
}

init_datadir() {
  rm -rf "$P/data"
  install -d -m 750 -o mysql -g mysql "$P/data"
  mariadb-install-db --no-defaults --user=mysql --datadir="$P/data" --auth-root-authentication-method=socket \
    --skip-test-db >"$P/log/install-db.log" 2>&1 || { tail -20 "$P/log/install-db.log" >&2; lab_die "mariadb-install-db failed"; }
}

create_user() {
  local pw; pw=$(cat "$PWFILE")
  # The statement goes on stdin (not argv): the password stays out of ps.
  mariadb --no-defaults --socket="$SOCK" -uroot <<SQL
CREATE USER IF NOT EXISTS 'lifeboat'@'127.0.0.1' IDENTIFIED BY '$pw';
CREATE USER IF NOT EXISTS 'lifeboat'@'localhost' IDENTIFIED BY '$pw';
GRANT ALL PRIVILEGES ON *.* TO 'lifeboat'@'127.0.0.1' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO 'lifeboat'@'localhost' WITH GRANT OPTION;
SQL
}

up() {
  local t0; t0=$(date +%s%N)
  prepare
  # The datadir is made once; one without the marker is half-made: redo it.
  if [ ! -f "$P/data.ready" ]; then
    stop_pidfile "$PIDF" 30
    init_datadir
    start
    create_user
    touch "$P/data.ready"
  else
    start
  fi
  answers || lab_die "mariadbd runs but user lifeboat cannot log in (see $P/log/mariadbd.err)"
  write_env mariadb LAB_MARIADB_HOST=127.0.0.1 LAB_MARIADB_PORT=$PORT LAB_MARIADB_SOCKET="$SOCK" \
    LAB_MARIADB_USER=lifeboat LAB_MARIADB_PASSWORD_FILE="$PWFILE" LAB_MARIADB_DEFAULTS_FILE="$CNF"
  ready mariadb "127.0.0.1:$PORT (user lifeboat; $CNF)" "$t0"
}

down() {
  stop_pidfile "$PIDF" 60
  rm -f "$LAB/mariadb.env"
}

status() {
  if pid_alive "$PIDF" && answers; then echo "mariadb: up on 127.0.0.1:$PORT"; else echo "mariadb: down"; return 1; fi
}

case ${1:-status} in
  up) up ;;
  down) down ;;
  status) status ;;
  env) cat "$LAB/mariadb.env" ;;
  *) echo "usage: mariadb.sh up|down|status|env" >&2; exit 2 ;;
esac
