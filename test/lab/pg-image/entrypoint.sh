#!/bin/sh
# Entrypoint of the lab's PostgreSQL 15 image (lifeboat-lab/postgres:15), busybox sh.
# On an empty $PGDATA: initdb with a scram password for "postgres" from $POSTGRES_PASSWORD,
# local trust, host scram-sha-256 from anywhere, listen on '*'. Then exec postgres as the
# postgres user, so postgres is PID 1 and `docker stop` (SIGINT = fast shutdown) is quick.
# /usr/bin/setpriv is util-linux's: busybox sh prefers its own applets, and busybox setpriv has no --reuid.
#   docker run IMAGE                      -> postgres
#   docker run IMAGE -c work_mem=64MB     -> postgres -c work_mem=64MB
#   docker run IMAGE postgres -c ...      -> the same
#   docker run IMAGE sh                   -> any other command, as root, no init
set -eu
PGDATA=${PGDATA:-/var/lib/postgresql/data}
export PGDATA

if [ $# -gt 0 ] && [ "$1" = postgres ]; then shift; set -- -- "$@"; fi
case ${1:-} in
  --) shift ;;
  -*|'') ;;
  *) exec "$@" ;;
esac

as_pg() { if [ "$(id -u)" = 0 ]; then /usr/bin/setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; else "$@"; fi; }

if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /run/postgresql
  chown postgres:postgres "$PGDATA" /run/postgresql
  chmod 700 "$PGDATA"
  chmod 2775 /run/postgresql
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "entrypoint: POSTGRES_PASSWORD is empty; set it (docker run -e POSTGRES_PASSWORD=...)" >&2
    exit 1
  fi
  pw=$(mktemp /tmp/pw.XXXXXX)
  printf '%s\n' "$POSTGRES_PASSWORD" > "$pw"
  [ "$(id -u)" = 0 ] && chown postgres "$pw"
  as_pg initdb -D "$PGDATA" -U postgres --pwfile="$pw" -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 >/tmp/initdb.log 2>&1 \
    || { cat /tmp/initdb.log >&2; rm -f "$pw"; exit 1; }
  rm -f "$pw"
  printf "\n# lifeboat-lab\nlisten_addresses = '*'\n" >> "$PGDATA/postgresql.conf"
  printf '\n# lifeboat-lab\nhost all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
  echo "entrypoint: initialized $PGDATA" >&2
fi

unset POSTGRES_PASSWORD
if [ "$(id -u)" = 0 ]; then
  exec /usr/bin/setpriv --reuid=postgres --regid=postgres --init-groups -- postgres -D "$PGDATA" "$@"
fi
exec postgres -D "$PGDATA" "$@"
