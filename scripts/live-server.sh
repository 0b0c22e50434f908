# Sourced (`. scripts/live-server.sh NAME`) by the scripts that drive a live `keel serve` on loopback
# (scripts/schemathesis.sh, bench/abuse.sh): builds the release binary, makes a throw-away home holding the
# employment quickstart model, and defines `start_server [serve flags…]`, which starts `keel serve --port 0`
# and waits (up to 30 s) for the address it reports. Sets KEEL, WORK, KEEL_HOME, PID and ADDR; on exit the
# server is stopped and the home removed.
cargo build -q --release -j2 -p keel-cli >&2
KEEL="$PWD/target/release/keel"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/keel-$1.XXXXXX")
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
export KEEL_HOME="$WORK/home"
"$KEEL" quickstart --json > /dev/null

start_server() {
  "$KEEL" serve --port 0 "$@" > "$WORK/serve.out" 2> "$WORK/serve.err" &
  PID=$!
  ADDR=""
  for _ in $(seq 300); do
    ADDR=$(sed -n 's#^listening on http://##p' "$WORK/serve.out")
    [ -n "$ADDR" ] && return 0
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "keel serve did not start" >&2
  cat "$WORK/serve.err" >&2
  exit 1
}
