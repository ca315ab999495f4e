#!/usr/bin/env bash
# The lab "Hoss server" for the Hoss drill: what `make up` / `make down` / `make reset` /
# `make restart` do on a real Hoss, played by lab parts on loopback.
#
#   hoss.sh up ENVFILE               "make up DETACH=true": the database container (PostgreSQL 15
#                                    from the lab image, databases hoss_core and hoss_auth with their
#                                    tables, as Hoss's migrations create them), the OpenSearch
#                                    stand-in (path.repo = BACKUP_ROOT/.opensearch, the index
#                                    metadata-index that core creates at start) and the server
#                                    stand-in (test/standins/hoss-server.ts)
#   hoss.sh down ENVFILE             "make down": stop the server, OpenSearch and the database container
#   hoss.sh reset ENVFILE            "make down" + "make reset": also remove the database container
#                                    and the search data (the drill's wipe)
#   hoss.sh restart ENVFILE SERVICE  "make restart SERVICE_NAME=…": core restarts the server stand-in;
#                                    sync has no stand-in (logged only); both go to restarts.log
#   hoss.sh status ENVFILE           exit 0 when the database, OpenSearch and the server all answer
#
# ENVFILE (written by tasks/drills/hoss.ts) sets HOSS_RUN (pid and log files), HOSS_PG_CONTAINER,
# HOSS_OS_PORT, HOSS_OS_DATA, HOSS_OS_REPO, HOSS_SERVER_PORT, HOSS_SERVER_VERSION and
# HOSS_READY_AFTER_MS. Background processes write only to their log files, so whoever runs
# `hoss.sh up` (the restore recipe) gets its pipes back at once, as with `make up DETACH=true`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$here/common.sh"
export DOCKER_HOST=unix:///var/run/docker.sock

usage() { echo "usage: hoss.sh up|down|reset|status ENVFILE | hoss.sh restart ENVFILE SERVICE" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1 envfile=$2
[ -f "$envfile" ] || lab_die "no env file $envfile"
# shellcheck disable=SC1090
source "$envfile"
mkdir -p "$HOSS_RUN"

psql_in() { docker exec -i -u postgres "$HOSS_PG_CONTAINER" psql -X -q -v ON_ERROR_STOP=1 "$@"; }

# The tables Hoss's services create at start (a small, recognisable subset).
schema_core() {
  cat <<'SQL'
CREATE TABLE IF NOT EXISTS namespace (
  id serial PRIMARY KEY, name text UNIQUE NOT NULL, description text, object_store text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS dataset (
  id serial PRIMARY KEY, namespace_id integer NOT NULL REFERENCES namespace(id), name text NOT NULL,
  metadata jsonb, deleted boolean NOT NULL DEFAULT false, created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (namespace_id, name));
CREATE TABLE IF NOT EXISTS sync_policy (
  id serial PRIMARY KEY, dataset_id integer NOT NULL REFERENCES dataset(id), policy jsonb NOT NULL);
SQL
}
schema_auth() {
  cat <<'SQL'
CREATE TABLE IF NOT EXISTS account (
  id serial PRIMARY KEY, username text UNIQUE NOT NULL, email text, full_name text, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS api_key (
  id serial PRIMARY KEY, account_id integer NOT NULL REFERENCES account(id), key_hash bytea NOT NULL,
  description text, expires_at timestamptz);
SQL
}

db_up() {
  local st
  st=$(docker container inspect -f '{{.State.Status}}' "$HOSS_PG_CONTAINER" 2>/dev/null) || st=missing
  case $st in
    running) bash "$here/pg-container.sh" wait "$HOSS_PG_CONTAINER" ;; # a killed `up` may have left it starting
    missing) bash "$here/pg-container.sh" run "$HOSS_PG_CONTAINER" >/dev/null 2>"$HOSS_RUN/pg-run.log" \
               || { cat "$HOSS_RUN/pg-run.log" >&2; lab_die "database container $HOSS_PG_CONTAINER did not start"; } ;;
    *) docker start "$HOSS_PG_CONTAINER" >/dev/null; bash "$here/pg-container.sh" wait "$HOSS_PG_CONTAINER" ;;
  esac
  local db
  for db in hoss_core hoss_auth; do
    if [ -z "$(psql_in -tA -c "SELECT 1 FROM pg_database WHERE datname = '$db'" </dev/null)" ]; then
      psql_in -c "CREATE DATABASE $db" </dev/null
    fi
  done
  schema_core | psql_in -d hoss_core -f -
  schema_auth | psql_in -d hoss_auth -f -
}

start_bg() { # NAME PORT CMD...: start in the background, logs to files, wait for the port
  local name=$1 port=$2; shift 2
  pid_alive "$HOSS_RUN/$name.pid" && return 0
  setsid "$@" </dev/null >"$HOSS_RUN/$name.out" 2>&1 &
  echo $! > "$HOSS_RUN/$name.pid"
  wait_tcp 127.0.0.1 "$port" 30 || { cat "$HOSS_RUN/$name.out" >&2; lab_die "$name did not listen on 127.0.0.1:$port"; }
}

search_up() {
  mkdir -p "$HOSS_OS_DATA" "$HOSS_OS_REPO"
  start_bg opensearch "$HOSS_OS_PORT" node --import=tsx "$root/test/standins/opensearch.ts" \
    --port "$HOSS_OS_PORT" --data "$HOSS_OS_DATA" --path-repo "$HOSS_OS_REPO"
  local url=http://127.0.0.1:$HOSS_OS_PORT
  if [ "$(curl -s -o /dev/null -w '%{http_code}' -I "$url/metadata-index")" = 404 ]; then
    curl -sf -X PUT -H 'Content-Type: application/json' "$url/metadata-index" \
      -d '{"settings":{"number_of_shards":1,"number_of_replicas":0}}' >/dev/null
  fi
}

server_up() {
  start_bg server "$HOSS_SERVER_PORT" node --import=tsx "$root/test/standins/hoss-server.ts" \
    --port "$HOSS_SERVER_PORT" --version "$HOSS_SERVER_VERSION" --ready-after "${HOSS_READY_AFTER_MS:-0}" \
    --log "$HOSS_RUN/server-requests.log"
}

down() {
  stop_pidfile "$HOSS_RUN/server.pid" 10
  stop_pidfile "$HOSS_RUN/opensearch.pid" 10
  docker stop "$HOSS_PG_CONTAINER" >/dev/null 2>&1 || true
}

case $cmd in
  up)
    db_up
    search_up
    server_up
    lab_log "hoss: up (db $HOSS_PG_CONTAINER, search 127.0.0.1:$HOSS_OS_PORT, server 127.0.0.1:$HOSS_SERVER_PORT)" ;;
  down) down ;;
  reset)
    down
    bash "$here/pg-container.sh" rm "$HOSS_PG_CONTAINER"
    rm -rf "$HOSS_OS_DATA" ;;
  restart)
    [ $# -ge 3 ] || usage
    echo "$(date -u +%FT%TZ) $3" >> "$HOSS_RUN/restarts.log"
    case $3 in
      core) stop_pidfile "$HOSS_RUN/server.pid" 10; HOSS_READY_AFTER_MS=0 server_up ;;
      sync) ;;
      *) lab_die "no service $3 in the lab Hoss (core, sync)" ;;
    esac ;;
  status)
    docker exec "$HOSS_PG_CONTAINER" pg_isready -q 2>/dev/null \
      && curl -sf "http://127.0.0.1:$HOSS_OS_PORT/" >/dev/null \
      && curl -sf "http://127.0.0.1:$HOSS_SERVER_PORT/core/v1/discover" >/dev/null ;;
  *) usage ;;
esac
