# Sourced by scripts/test.sh and bench/scaleout.sh: makes PostgreSQL and an S3-compatible server (SeaweedFS)
# available on loopback for the store contract tests, and exports where they are:
#   KEEL_TEST_POSTGRES_URL   postgres://postgres@127.0.0.1:PORT/test  (a database the tests make schemas in)
#   KEEL_TEST_S3_ENDPOINT    http://127.0.0.1:PORT, bucket `keel`, credentials in AWS_ACCESS_KEY_ID/…
#   KEEL_TEST_REQUIRE_SERVICES=1 (the tests then fail, never skip, when a service is missing)
# PostgreSQL: the server at 127.0.0.1:5432 when one answers; else a throw-away cluster (Debian's `postgresql`,
# installed when missing) on a free port. SeaweedFS: its pinned static binary (scripts/fetch-assets.sh
# seaweedfs), started in a temporary directory on free loopback ports. Both throw-away services stop when the
# calling shell exits (`keel_services_stop` runs on EXIT).

KEEL_SVC_DIR="$(mktemp -d -t keel-services.XXXXXX)"
KEEL_SVC_PIDS=()
KEEL_PG_AS=()

keel_services_stop() {
  local p i
  for p in "${KEEL_SVC_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  # SeaweedFS shuts down gracefully on SIGTERM, slowly: give it 5 s, then kill it.
  for p in "${KEEL_SVC_PIDS[@]}"; do
    for i in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  if [ -n "${KEEL_PG_DATA:-}" ]; then
    "${KEEL_PG_AS[@]}" "$KEEL_PG_BIN/pg_ctl" -D "$KEEL_PG_DATA" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$KEEL_SVC_DIR"
}
trap keel_services_stop EXIT

# A free TCP port on loopback (the kernel picks; a race with another process is possible but harmless here:
# the service would fail to start and the script says so).
keel_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

keel_wait_port() { # PORT WHAT LOG
  local i
  for i in $(seq 1 120); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.25
  done
  echo "services: $2 did not start on port $1; its log:" >&2
  tail -20 "$3" >&2 || true
  return 1
}

keel_start_postgres() {
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    export KEEL_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:5432/test"
    if psql -q -h 127.0.0.1 -U postgres -d test -c 'select 1' >/dev/null 2>&1; then
      return 0
    fi
    # A server without the `test` database: make it.
    psql -q -h 127.0.0.1 -U postgres -d postgres -c 'CREATE DATABASE test' >/dev/null
    return 0
  fi
  KEEL_PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  if [ -z "$KEEL_PG_BIN" ]; then
    echo "services: installing Debian's postgresql" >&2
    apt-get install -y -q postgresql >/dev/null
    KEEL_PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
  fi
  local port
  port="$(keel_free_port)"
  KEEL_PG_DATA="$KEEL_SVC_DIR/pg"
  # PostgreSQL refuses to run as root: as root, run it as the `postgres` user the package created.
  KEEL_PG_AS=()
  if [ "$(id -u)" = 0 ]; then
    chown -R postgres "$KEEL_SVC_DIR" 2>/dev/null || true
    KEEL_PG_AS=(runuser -u postgres --)
  fi
  "${KEEL_PG_AS[@]}" "$KEEL_PG_BIN/initdb" -D "$KEEL_PG_DATA" -U postgres -A trust >/dev/null
  "${KEEL_PG_AS[@]}" "$KEEL_PG_BIN/pg_ctl" -D "$KEEL_PG_DATA" -l "$KEEL_SVC_DIR/pg.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $KEEL_SVC_DIR -c max_connections=200 -c fsync=off" start >/dev/null
  "$KEEL_PG_BIN/psql" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -c 'CREATE DATABASE test' >/dev/null
  export KEEL_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/test"
}

keel_start_seaweedfs() {
  local cache="${KEEL_CACHE:-$HOME/.cache/keel}"
  scripts/fetch-assets.sh seaweedfs
  local weed="$cache/seaweedfs-4.48/weed"
  local s3 filer master volume admin
  s3="$(keel_free_port)"; filer="$(keel_free_port)"; master="$(keel_free_port)"
  volume="$(keel_free_port)"; admin="$(keel_free_port)"
  # gRPC ports are the HTTP port + 10000 by SeaweedFS' convention; keep them so, and below 65536.
  local p
  for p in s3 filer master volume admin; do
    while [ "${!p}" -gt 55000 ]; do printf -v "$p" '%s' "$(keel_free_port)"; done
  done
  mkdir -p "$KEEL_SVC_DIR/weed"
  cat >"$KEEL_SVC_DIR/s3.json" <<'JSON'
{"identities":[{"name":"keel","credentials":[{"accessKey":"keel","secretKey":"keel-secret"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
  "$weed" mini -dir="$KEEL_SVC_DIR/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.config="$KEEL_SVC_DIR/s3.json" \
    -webdav=false -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0 \
    -s3.port="$s3" -s3.port.grpc=$((s3 + 10000)) -filer.port="$filer" -filer.port.grpc=$((filer + 10000)) \
    -master.port="$master" -master.port.grpc=$((master + 10000)) -volume.port="$volume" \
    -volume.port.grpc=$((volume + 10000)) -admin.port="$admin" -admin.port.grpc=$((admin + 10000)) \
    >"$KEEL_SVC_DIR/weed.log" 2>&1 &
  KEEL_SVC_PIDS+=($!)
  keel_wait_port "$s3" "SeaweedFS' S3 gateway" "$KEEL_SVC_DIR/weed.log"
  local i
  for i in $(seq 1 40); do
    if echo "s3.bucket.create -name keel" | "$weed" shell -master="127.0.0.1:$master" -filer="127.0.0.1:$filer" 2>&1 |
      grep -q "created bucket keel"; then
      break
    fi
    sleep 0.25
  done
  export KEEL_TEST_S3_ENDPOINT="http://127.0.0.1:$s3"
  export AWS_ACCESS_KEY_ID=keel AWS_SECRET_ACCESS_KEY=keel-secret AWS_REGION=us-east-1
}

keel_start_postgres
keel_start_seaweedfs
export KEEL_TEST_REQUIRE_SERVICES=1
echo "services: PostgreSQL at $KEEL_TEST_POSTGRES_URL, SeaweedFS S3 at $KEEL_TEST_S3_ENDPOINT" >&2
