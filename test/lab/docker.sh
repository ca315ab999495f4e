#!/usr/bin/env bash
# Lab piece "docker": Debian's Docker engine (docker.io 20.10), a locally built PostgreSQL 15
# image and one seeded lab container.
#
#   docker.sh up      start dockerd (or use the one already running), build lifeboat-lab/postgres:15
#                     when missing or outdated, run container lifeboat-pg on 127.0.0.1:55434
#                     seeded with database "inventory"
#   docker.sh down    remove every container labelled lifeboat-lab=1; stop dockerd if we started it
#   docker.sh status  dockerd answers and lifeboat-pg is running
#   docker.sh env     print $LAB/docker.env
#
# Client: /usr/local/bin/docker (28.x) is first on PATH; it negotiates API 1.41 with dockerd
# 20.10 by itself, so no DOCKER_API_VERSION is set. /usr/bin/docker (20.10) works as well.
# More containers from the image: test/lab/pg-container.sh run|rm|wait NAME [HOSTPORT].
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/common.sh"

export DOCKER_HOST=unix:///var/run/docker.sock
D=$LAB/docker
PIDFILE=$D/dockerd.pid          # exists only when this lab started dockerd
LOGFILE=$D/dockerd.log
PWFILE=$D/postgres.password
IMAGE=lifeboat-lab/postgres:15
CTR=lifeboat-pg
CTR_PORT=55434
PG15=/usr/lib/postgresql/15

docker_ok() { timeout 10 docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; }

start_dockerd() {
  if docker_ok; then
    pid_alive "$PIDFILE" || lab_log "docker: using a dockerd this lab did not start"
    return 0
  fi
  if ! pid_alive "$PIDFILE"; then
    rm -f "$PIDFILE"
    lab_log "docker: starting dockerd (log $LOGFILE)"
    # Debian's own binaries first: dockerd finds containerd, runc, docker-proxy, docker-init on PATH.
    PATH=/usr/sbin:/usr/bin:/sbin:/bin setsid /usr/sbin/dockerd --host "$DOCKER_HOST" \
      --pidfile "$PIDFILE" >>"$LOGFILE" 2>&1 </dev/null &
  fi
  local i
  for ((i = 0; i < 600; i++)); do
    docker_ok && return 0
    [ $i -gt 20 ] && ! pid_alive "$PIDFILE" && ! pgrep -x dockerd >/dev/null && break
    sleep 0.1
  done
  tail -20 "$LOGFILE" >&2
  lab_die "dockerd did not come up"
}

# Everything that goes into the image; its hash is the image's label, so a change rebuilds it.
image_hash() {
  { declare -f build_image; cat "$here/pg-image/entrypoint.sh"; dpkg-query -W postgresql-15 busybox-static; } \
    | sha256sum | cut -c1-16
}

build_image() {
  local hash=$1 root=$D/rootfs f lib
  rm -rf "$root"
  mkdir -p "$root"/{bin,sbin,etc,root,tmp,run/postgresql,usr/bin,usr/sbin,usr/lib/postgresql,usr/share/postgresql,var/lib/postgresql/data}
  chmod 1777 "$root/tmp"
  ln -s ../run "$root/var/run"
  # PostgreSQL 15: binaries, modules (no JIT: it would pull in 100 MB of LLVM), share files, zone data.
  cp -a "$PG15" "$root/usr/lib/postgresql/"
  rm -rf "$root$PG15/lib/bitcode" "$root$PG15/lib/pgxs" "$root$PG15"/lib/llvmjit*
  cp -a /usr/share/postgresql/15 "$root/usr/share/postgresql/"
  cp -a /usr/share/zoneinfo "$root/usr/share/"
  mkdir -p "$root/usr/lib/locale"
  cp -a /usr/lib/locale/C.utf8 "$root/usr/lib/locale/"   # initdb --locale=C.UTF-8 needs the files
  cp -a /usr/bin/setpriv "$root/usr/bin/"
  # The shared libraries they need, copied (dereferenced) to the paths ldd reports.
  for f in "$root$PG15"/bin/* "$root$PG15"/lib/*.so /usr/bin/setpriv; do
    ldd "$f" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'
  done | sort -u | while read -r lib; do
    cp -L --parents "$lib" "$root/"
  done
  # busybox for /bin/sh and the usual tools (never shadowing a real binary).
  cp /bin/busybox "$root/bin/busybox"
  for f in $(/bin/busybox --list); do
    [ -e "$root/bin/$f" ] || [ -e "$root/usr/bin/$f" ] || ln -s busybox "$root/bin/$f"
  done
  cat > "$root/etc/passwd" <<'EOP'
root:x:0:0:root:/root:/bin/sh
postgres:x:999:999:PostgreSQL administrator:/var/lib/postgresql:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOP
  cat > "$root/etc/group" <<'EOG'
root:x:0:
postgres:x:999:
nogroup:x:65534:
EOG
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$root/etc/nsswitch.conf"
  echo Etc/UTC > "$root/etc/timezone"
  ln -s /usr/share/zoneinfo/Etc/UTC "$root/etc/localtime"
  cp "$here/pg-image/entrypoint.sh" "$root/entrypoint.sh"
  chmod 755 "$root/entrypoint.sh"
  chown -R 999:999 "$root/var/lib/postgresql" "$root/run/postgresql"
  tar -C "$root" -cf - . | docker import \
    --change 'ENTRYPOINT ["/entrypoint.sh"]' \
    --change 'CMD ["postgres"]' \
    --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV PGDATA=/var/lib/postgresql/data' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'VOLUME /var/lib/postgresql/data' \
    --change 'EXPOSE 5432' \
    --change "LABEL lifeboat-lab=1 lifeboat-lab.hash=$hash" \
    - "$IMAGE" >/dev/null
  rm -rf "$root"
}

ensure_image() {
  local want have
  want=$(image_hash)
  have=$(docker image inspect -f '{{index .Config.Labels "lifeboat-lab.hash"}}' "$IMAGE" 2>/dev/null || true)
  [ "$have" = "$want" ] && return 0
  local t0; t0=$(date +%s%N)
  lab_log "docker: building $IMAGE (hash $want${have:+, was $have})"
  build_image "$want"
  lab_log "docker: built $IMAGE, $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%d MB", $1/1e6}') in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
}

seed_inventory() {
  docker exec -i -u postgres "$CTR" psql -q -v ON_ERROR_STOP=1 -f - >/dev/null <<'SQL'
CREATE DATABASE inventory;
\connect inventory
CREATE TABLE warehouses (
  id   int PRIMARY KEY,
  name text NOT NULL,
  city text NOT NULL
);
INSERT INTO warehouses VALUES (1, 'Main', 'Zürich'), (2, 'North', 'Tromsø'), (3, 'O''Brien''s shed', 'Cork');
CREATE TABLE items (
  sku        text PRIMARY KEY,
  name       text NOT NULL,
  "unit price" numeric(10,2) NOT NULL,
  created_at timestamptz NOT NULL DEFAULT '2024-01-01 00:00:00+00'
);
INSERT INTO items (sku, name, "unit price", created_at)
  SELECT format('SKU-%s', lpad(g::text, 4, '0')), format('item #%s — “%s”', g, md5(g::text)),
         (g % 97) + 0.99, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour'
  FROM generate_series(1, 300) g;
CREATE TABLE "stock levels" (
  warehouse_id int  REFERENCES warehouses(id),
  sku          text REFERENCES items(sku),
  "qty on hand" int NOT NULL,
  "it's counted" boolean NOT NULL DEFAULT true,
  PRIMARY KEY (warehouse_id, sku)
);
INSERT INTO "stock levels" (warehouse_id, sku, "qty on hand", "it's counted")
  SELECT w, format('SKU-%s', lpad(g::text, 4, '0')), (g * w * 7) % 500, g % 10 <> 0
  FROM generate_series(1, 300) g, generate_series(1, 3) w WHERE (g + w) % 4 <> 0;
CREATE VIEW low_stock AS SELECT * FROM "stock levels" WHERE "qty on hand" < 20;
SQL
}

ensure_container() {
  local img_id ctr_img state
  img_id=$(docker image inspect -f '{{.Id}}' "$IMAGE")
  ctr_img=$(docker container inspect -f '{{.Image}}' "$CTR" 2>/dev/null || true)
  if [ -n "$ctr_img" ] && [ "$ctr_img" != "$img_id" ]; then
    lab_log "docker: $CTR runs an outdated image; recreating it"
    docker rm -f -v "$CTR" >/dev/null
    ctr_img=
  fi
  if [ -z "$ctr_img" ]; then
    bash "$here/pg-container.sh" run "$CTR" "$CTR_PORT"
    seed_inventory
    return 0
  fi
  state=$(docker container inspect -f '{{.State.Status}}' "$CTR")
  if [ "$state" != running ]; then
    docker start "$CTR" >/dev/null
    bash "$here/pg-container.sh" wait "$CTR"
  fi
  # An earlier up may have died before seeding finished.
  if ! docker exec -u postgres "$CTR" psql -tAqc "select 1 from pg_database where datname='inventory'" | grep -q 1; then
    docker exec -u postgres "$CTR" psql -qc 'DROP DATABASE IF EXISTS inventory' >/dev/null
    seed_inventory
  fi
}

up() {
  local t0; t0=$(date +%s%N)
  mkdir -p "$D"
  apt_ensure docker.io postgresql-15 postgresql-client-15 busybox-static tzdata
  start_dockerd
  [ -s "$PWFILE" ] || { (umask 077; head -c 18 /dev/urandom | base64 | tr '+/' '-_' > "$PWFILE"); }
  chmod 600 "$PWFILE"
  ensure_image
  ensure_container
  # Images left dangling by a rebuild (the old container still used them at build time).
  docker image prune -f --filter label=lifeboat-lab=1 >/dev/null 2>&1 || true
  wait_tcp 127.0.0.1 "$CTR_PORT" 20 || lab_die "$CTR does not accept connections on 127.0.0.1:$CTR_PORT"
  local api server
  server=$(docker version -f '{{.Server.Version}}')
  api=$(docker version -f '{{.Server.APIVersion}}')
  write_env docker LAB_DOCKER=1 LAB_DOCKER_HOST="$DOCKER_HOST" \
    LAB_PG_IMAGE="$IMAGE" LAB_PG_CONTAINER="$CTR" LAB_PG_CONTAINER_PORT="$CTR_PORT" \
    LAB_PG_CONTAINER_PASSWORD_FILE="$PWFILE" LAB_PG_CONTAINER_DB=inventory
  sed -i "1i # dockerd $server (API $api); client $(command -v docker) $(docker version -f '{{.Client.Version}}') negotiates the API itself: no DOCKER_API_VERSION needed" "$LAB/docker.env"
  ready docker "dockerd $server, $IMAGE, $CTR on 127.0.0.1:$CTR_PORT" "$t0"
}

down() {
  if docker_ok; then
    local ids
    ids=$(docker ps -aq --filter label=lifeboat-lab=1)
    [ -n "$ids" ] && docker rm -f -v $ids >/dev/null
  fi
  if [ -f "$PIDFILE" ]; then
    local pid ctrd shims p
    pid=$(cat "$PIDFILE")
    # dockerd's own containerd and the shims of its "moby" namespace: ours to stop too.
    ctrd=$(pgrep -P "$pid" -x containerd || true)
    shims=$(pgrep -f 'containerd-shim-runc-v2 -namespace moby' || true)
    stop_pidfile "$PIDFILE" 30
    for p in $ctrd $shims; do
      for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$p" 2>/dev/null || break; [[ $(ps -o stat= -p "$p") == Z* ]] && break; sleep 0.5; done
      kill -KILL "$p" 2>/dev/null || true
    done
    lab_log "docker: dockerd stopped"
  else
    lab_log "docker: dockerd was not started by the lab; left running"
  fi
  rm -f "$LAB/docker.env"
}

status() {
  docker_ok || { echo "docker: dockerd does not answer"; return 1; }
  [ "$(docker container inspect -f '{{.State.Running}}' "$CTR" 2>/dev/null)" = true ] \
    || { echo "docker: $CTR is not running"; return 1; }
  docker exec "$CTR" pg_isready -q || { echo "docker: $CTR is not ready"; return 1; }
  echo "docker: up (dockerd $(docker version -f '{{.Server.Version}}'), $CTR on 127.0.0.1:$CTR_PORT)"
}

case ${1:-status} in
  up) up ;;
  down) down ;;
  status) status ;;
  env) cat "$LAB/docker.env" ;;
  *) echo "usage: docker.sh up|down|status|env" >&2; exit 2 ;;
esac
