#!/usr/bin/env bash
# Lab piece "pg": two PostgreSQL 15 clusters on the host (Debian's /usr/lib/postgresql/15/bin).
#
#   pg.sh up            source cluster on 127.0.0.1:55432 (seeded once: databases shop and bench,
#                       role app) and an EMPTY target cluster on 127.0.0.1:55433 (restore target)
#   pg.sh down          pg_ctl stop -m fast, both
#   pg.sh status        both accept connections
#   pg.sh reset-target  wipe the target cluster and start it again empty
#   pg.sh env           print $LAB/pg.env
#
# Both clusters: superuser postgres with the password in $LAB/pg/postgres.password, host auth
# scram-sha-256 (127.0.0.1, ::1), local (socket in $LAB/pg/run) trust, owned by the OS user postgres.
# fsync is off: this is a lab, speed matters more than surviving a power cut.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/common.sh"

P=$LAB/pg
BIN=/usr/lib/postgresql/15/bin
RUN=$P/run
PWFILE=$P/postgres.password
APPPWFILE=$P/app.password
SRC_PORT=55432
TGT_PORT=55433

as_pg() { (cd "$P" && setpriv --reuid=postgres --regid=postgres --init-groups env HOME="$P" "$@"); }
psql_src() { "$BIN/psql" -h "$RUN" -p "$SRC_PORT" -U postgres -X -q -v ON_ERROR_STOP=1 "$@"; }

gen_pw() { [ -s "$1" ] || (umask 077; head -c 18 /dev/urandom | base64 | tr '+/' '-_' > "$1"); chmod 600 "$1"; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

running() { [ -f "$P/$1/postmaster.pid" ] && as_pg "$BIN/pg_ctl" -D "$P/$1" status >/dev/null 2>&1; }

init_cluster() {
  local name=$1 port=$2 dir=$P/$1 pw
  rm -rf "$dir"
  install -d -m 700 -o postgres -g postgres "$dir"
  pw=$(mktemp "$P/.pw.XXXXXX")
  cat "$PWFILE" > "$pw"
  chown postgres "$pw"
  as_pg "$BIN/initdb" -D "$dir" -U postgres --pwfile="$pw" -E UTF8 --locale=C.UTF-8 \
    --auth-host=scram-sha-256 --auth-local=trust >"$P/log/$name.initdb.log" 2>&1 \
    || { rm -f "$pw"; tail -20 "$P/log/$name.initdb.log" >&2; lab_die "initdb $name failed"; }
  rm -f "$pw"
  cat >> "$dir/postgresql.conf" <<EOF

# lifeboat-lab
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$RUN'
fsync = off
logging_collector = off
EOF
}

start_cluster() {
  local name=$1 port=$2
  running "$name" && return 0
  port_busy "$port" && lab_die "127.0.0.1:$port is taken by something else"
  # The lab's ports lie in the kernel's ephemeral range (32768-60999): a client connection can hold
  # the port as its source port for a moment, and the bind fails though nothing listens. Try again.
  local try
  for try in 1 2 3 4 5; do
    local lines; lines=$(wc -l < "$P/log/$name.log" 2>/dev/null || echo 0)
    as_pg "$BIN/pg_ctl" -D "$P/$name" -l "$P/log/$name.log" -w -t 60 start >/dev/null && return 0
    tail -n +"$((lines + 1))" "$P/log/$name.log" | grep -q "Address already in use" && ! port_busy "$port" && [ "$try" -lt 5 ] || break
    echo "lab: pg: 127.0.0.1:$port was briefly in use (a client's source port?); starting $name again" >&2
    sleep 2
  done
  tail -20 "$P/log/$name.log" >&2
  lab_die "cluster $name did not start"
}

stop_cluster() {
  running "$1" || return 0
  as_pg "$BIN/pg_ctl" -D "$P/$1" -m fast -w -t 60 stop >/dev/null
}

seed_source() {
  psql_src -d postgres -v apppw="$(cat "$APPPWFILE")" <<'SQL'
CREATE ROLE app LOGIN PASSWORD :'apppw';
CREATE DATABASE shop OWNER app;
CREATE DATABASE bench;
\connect shop
SET ROLE app;
CREATE TABLE customers (
  id    serial PRIMARY KEY,
  name  text NOT NULL,
  email text UNIQUE,
  city  text
);
INSERT INTO customers (name, email, city) VALUES
  ('Zoë Ångström', 'zoe@example.org', 'Malmö'),
  ('José Müller', 'jose@example.org', 'São Paulo'),
  ('Ярослава Ковальчук', 'yaro@example.org', 'Київ'),
  ('山田 太郎', 'taro@example.org', '東京'),
  ('Seán O''Connor', 'sean@example.org', 'Dún Laoghaire'),
  ('emoji 🚀 fan', 'rocket@example.org', NULL);
INSERT INTO customers (name, email, city)
  SELECT format('customer %s', g), format('c%s@example.org', g), (ARRAY['Berlin','Paris','Łódź','Reykjavík'])[1 + g % 4]
  FROM generate_series(1, 494) g;
CREATE TABLE products (
  sku   text PRIMARY KEY,
  title text NOT NULL,
  price numeric(10,2) NOT NULL CHECK (price >= 0)
);
INSERT INTO products
  SELECT format('P%s', lpad(g::text, 3, '0')), format('product %s — “nº %s”', g, g), round((g * 1.37)::numeric, 2)
  FROM generate_series(1, 200) g;
CREATE TABLE orders (
  id          serial PRIMARY KEY,
  customer_id int NOT NULL REFERENCES customers(id),
  placed_at   timestamptz NOT NULL,
  note        text
);
INSERT INTO orders (customer_id, placed_at, note)
  SELECT 1 + g % 500, timestamptz '2024-01-01 00:00:00+00' + g * interval '37 minutes',
         CASE WHEN g % 50 = 0 THEN 'gift: ''wrap'' it, "please"' END
  FROM generate_series(1, 1000) g;
CREATE TABLE "order lines" (
  order_id int  NOT NULL REFERENCES orders(id),
  sku      text NOT NULL REFERENCES products(sku),
  qty      int  NOT NULL,
  PRIMARY KEY (order_id, sku)
);
INSERT INTO "order lines"
  SELECT o, format('P%s', lpad((1 + (o + 67 * k) % 200)::text, 3, '0')), k
  FROM generate_series(1, 1000) o, generate_series(1, 3) k;
CREATE VIEW order_totals AS
  SELECT l.order_id, sum(l.qty * p.price) AS total FROM "order lines" l JOIN products p USING (sku) GROUP BY l.order_id;
SQL
  "$BIN/pgbench" -h "$RUN" -p "$SRC_PORT" -U postgres -i -q -s 2 bench >"$P/log/pgbench-init.log" 2>&1 \
    || { tail -20 "$P/log/pgbench-init.log" >&2; lab_die "pgbench -i failed"; }
}

write_pg_env() {
  write_env pg LAB_PG_HOST=127.0.0.1 LAB_PG_PORT=$SRC_PORT LAB_PG_TARGET_PORT=$TGT_PORT \
    LAB_PG_USER=postgres LAB_PG_PASSWORD_FILE="$PWFILE" LAB_PG_APP_USER=app \
    LAB_PG_APP_PASSWORD_FILE="$APPPWFILE" LAB_PG_BIN="$BIN" LAB_PG_SOCKET_DIR="$RUN" \
    LAB_PG_DATABASES="shop bench"
}

prepare() {
  apt_ensure postgresql-15 postgresql-client-15
  id postgres >/dev/null 2>&1 || lab_die "no OS user postgres (it comes with postgresql-common)"
  mkdir -p "$P/log" "$RUN"
  chown postgres:postgres "$P/log" "$RUN"
  chmod 755 "$P"
  gen_pw "$PWFILE"
  gen_pw "$APPPWFILE"
}

up() {
  local t0; t0=$(date +%s%N)
  reserve_ports "$SRC_PORT" "$TGT_PORT"
  prepare
  # The source is seeded once; a cluster without the marker is a half-made one: redo it.
  if [ ! -f "$P/source.seeded" ]; then
    stop_cluster source
    init_cluster source $SRC_PORT
    start_cluster source $SRC_PORT
    seed_source
    touch "$P/source.seeded"
  else
    start_cluster source $SRC_PORT
  fi
  if [ ! -s "$P/target/PG_VERSION" ]; then
    init_cluster target $TGT_PORT
  fi
  start_cluster target $TGT_PORT
  write_pg_env
  ready pg "source 127.0.0.1:$SRC_PORT (shop, bench), target 127.0.0.1:$TGT_PORT (empty)" "$t0"
}

reset_target() {
  local t0; t0=$(date +%s%N)
  prepare
  stop_cluster target
  init_cluster target $TGT_PORT
  start_cluster target $TGT_PORT
  ready pg "target 127.0.0.1:$TGT_PORT wiped (empty)" "$t0"
}

down() {
  stop_cluster target
  stop_cluster source
  rm -f "$LAB/pg.env"
}

status() {
  local rc=0 n
  for n in source:$SRC_PORT target:$TGT_PORT; do
    if "$BIN/pg_isready" -q -h 127.0.0.1 -p "${n#*:}"; then
      echo "pg: ${n%%:*} up on 127.0.0.1:${n#*:}"
    else
      echo "pg: ${n%%:*} down"; rc=1
    fi
  done
  return $rc
}

case ${1:-status} in
  up) up ;;
  down) down ;;
  status) status ;;
  reset-target) reset_target ;;
  env) cat "$LAB/pg.env" ;;
  *) echo "usage: pg.sh up|down|status|reset-target|env" >&2; exit 2 ;;
esac
