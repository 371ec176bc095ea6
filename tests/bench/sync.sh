#!/usr/bin/env bash
# The sync benchmark: hamlet-load against a fresh server of each kind, one after the other,
# over loopback, and one line per run.
#
#   bash tests/bench/sync.sh            # 200 clients, 1,000 documents × 100 changes
#   HAMLET_LOAD_DOCS=200 HAMLET_LOAD_CHANGES=50 bash tests/bench/sync.sh
#   BENCH_RUNS="sqlite node" bash tests/bench/sync.sh
#
# Runs (BENCH_RUNS, default "sqlite postgres node"):
#   sqlite    hamlet-server on SQLite in a fresh temporary data folder
#   postgres  hamlet-server on a fresh PostgreSQL database (made with createdb, dropped after)
#   node      the automerge-repo reference server (tests/js/reference-server.mjs, needs
#             `npm ci` in tests/js) with its NodeFS storage in a fresh folder
#
# The workload comes from hamlet-load's own variables (HAMLET_LOAD_CLIENTS, HAMLET_LOAD_DOCS,
# HAMLET_LOAD_CHANGES, HAMLET_LOAD_ROUND_TIMEOUT, HAMLET_LOAD_THREADS). Also:
#   BENCH_RUN_TIMEOUT  seconds one run may take before it is stopped (600)
#   BENCH_PG_HOST / BENCH_PG_PORT / BENCH_PG_USER   PostgreSQL server (127.0.0.1 / 5432 / postgres)
#   BENCH_OUT          folder for each run's JSON report and server log (a new temporary folder)
#   BENCH_SKIP_BUILD=1 use the release binaries already built
#   BENCH_MAX_LOAD     before each run, wait until the 1-minute load average is at most this (1.0),
#   BENCH_SETTLE       but no longer than this many seconds (180); the line shows the load measured
#
# Exits non-zero if any run failed or did not get every change acknowledged. Servers, databases
# and temporary folders are cleaned up however it ends.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
RUNS=${BENCH_RUNS:-sqlite postgres node}
RUN_TIMEOUT=${BENCH_RUN_TIMEOUT:-600}
PG_HOST=${BENCH_PG_HOST:-127.0.0.1}
PG_PORT=${BENCH_PG_PORT:-5432}
PG_USER=${BENCH_PG_USER:-postgres}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d -t hamlet-bench.XXXXXX)
OUT=${BENCH_OUT:-$WORK/out}
mkdir -p "$OUT"

SERVER_PID=""
DATABASE=""

stop_server() {
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 150); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ -n $SERVER_PID ]]; then
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}

drop_database() {
  if [[ -n $DATABASE ]]; then
    dropdb -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" --if-exists "$DATABASE" || true
    DATABASE=""
  fi
}

cleanup() {
  stop_server
  drop_database
  if [[ -z ${BENCH_OUT:-} ]]; then
    echo "reports and server logs: $OUT (removed; set BENCH_OUT to keep them)" >&2
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts "$@" in the background with stdout to $1's log, and waits (30 s at most) until its first
# stdout line matches the pattern in $PATTERN. Sets SERVER_PID and LISTEN_LINE.
start_server() {
  local log=$1
  shift
  "$@" >"$log.out" 2>"$log.err" &
  SERVER_PID=$!
  for _ in $(seq 1 300); do
    if LISTEN_LINE=$(grep -m1 -E "$PATTERN" "$log.out" 2>/dev/null); then
      return 0
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "server exited before listening:" >&2
      tail -20 "$log.err" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "server did not start listening within 30 s" >&2
  return 1
}

# Waits (BENCH_SETTLE seconds at most) for the 1-minute load average to fall to BENCH_MAX_LOAD:
# the previous run, or someone else's compile, would otherwise share the cores.
settle() {
  local waited=0
  while awk -v max="${BENCH_MAX_LOAD:-1.0}" '{ exit !($1 > max) }' /proc/loadavg \
    && ((waited < ${BENCH_SETTLE:-180})); do
    sleep 5
    waited=$((waited + 5))
  done
}

# Runs the generator against $1 (ws URL), watching $SERVER_PID; prints one line for run $2.
load() {
  local url=$1 name=$2 status=0
  local loadavg
  settle
  loadavg=$(cut -d' ' -f1-3 /proc/loadavg)
  timeout -k 10 "$RUN_TIMEOUT" "$TARGET/release/hamlet-load" --url "$url" --server-pid "$SERVER_PID" --json \
    >"$OUT/$name.json" 2>"$OUT/$name.log" || status=$?
  local line
  line=$(head -1 "$OUT/$name.log")
  if [[ $status == 124 || $status == 137 ]]; then
    line="timed out after ${RUN_TIMEOUT} s"
  fi
  printf '%-9s (load %s) %s\n' "$name" "$loadavg" "$line"
  if [[ $status != 0 ]]; then
    sed -n '2,12p' "$OUT/$name.log" | sed 's/^/          /'
    FAILED=$((FAILED + 1))
  fi
}

if [[ -z ${BENCH_SKIP_BUILD:-} ]]; then
  cargo build --release -p hamlet-server -p hamlet-tests
fi

echo "hamlet-load sync benchmark, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM"
echo "workload: ${HAMLET_LOAD_CLIENTS:-200} clients, ${HAMLET_LOAD_DOCS:-1000} documents x ${HAMLET_LOAD_CHANGES:-100} changes; run timeout ${RUN_TIMEOUT} s; generator and server share the machine's cores"

FAILED=0
for run in $RUNS; do
  mkdir -p "$WORK/$run"
  case $run in
    sqlite)
      PATTERN='listening on http://'
      start_server "$OUT/$run-server" env RUST_LOG=warn "$TARGET/release/hamlet-server" serve \
        --listen 127.0.0.1:0 --insecure-open-sync --data-dir "$WORK/$run/data"
      load "ws://${LISTEN_LINE##*http://}/sync" "$run"
      ;;
    postgres)
      DATABASE="hamlet_bench_$$_$(date +%s)"
      createdb -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" "$DATABASE"
      PATTERN='listening on http://'
      start_server "$OUT/$run-server" env RUST_LOG=warn "$TARGET/release/hamlet-server" serve \
        --listen 127.0.0.1:0 --insecure-open-sync --database-url "postgres://$PG_USER@$PG_HOST:$PG_PORT/$DATABASE"
      load "ws://${LISTEN_LINE##*http://}/sync" "$run"
      ;;
    node)
      PATTERN='^listening on [0-9]+'
      start_server "$OUT/$run-server" node "$ROOT/tests/js/reference-server.mjs" 0 "$WORK/$run/storage"
      load "ws://127.0.0.1:${LISTEN_LINE##* }/sync" "$run"
      ;;
    *)
      echo "unknown run $run (expected sqlite, postgres or node)" >&2
      FAILED=$((FAILED + 1))
      continue
      ;;
  esac
  stop_server
  drop_database
done

exit $((FAILED > 0))
