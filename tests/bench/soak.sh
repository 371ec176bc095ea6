#!/usr/bin/env bash
# The SIGKILL soak: hamlet-server (release) on a fresh SQLite data folder, writers syncing into
# it over loopback, the server killed with SIGKILL at random moments and restarted, and every
# acknowledged change checked after each restart (see tests/src/soak.rs).
#
#   bash tests/bench/soak.sh             # 1,000 kills
#   bash tests/bench/soak.sh 20          # 20 kills (what CI runs)
#   SOAK_PROFILE=debug bash tests/bench/soak.sh 20
#
# Any other hamlet-soak option can follow the count (`bash tests/bench/soak.sh 50 --seed 7`), or
# be set through its HAMLET_SOAK_* variable. SOAK_SKIP_BUILD=1 uses the binaries already built.
# Exits non-zero on any loss, and if the soak could not run.
set -euo pipefail

cd "$(dirname "$0")/../.."
KILLS=${1:-1000}
shift || true
PROFILE=${SOAK_PROFILE:-release}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
if [[ $PROFILE == release ]]; then
  FLAGS=(--release)
else
  FLAGS=()
fi
if [[ -z ${SOAK_SKIP_BUILD:-} ]]; then
  cargo build "${FLAGS[@]}" -p hamlet-server -p hamlet-tests --bin hamlet-server --bin hamlet-soak
fi

echo "hamlet-soak, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $PROFILE build"
echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), load $(cut -d' ' -f1-3 /proc/loadavg)"
exec "$TARGET/$PROFILE/hamlet-soak" --kills "$KILLS" --server "$TARGET/$PROFILE/hamlet-server" "$@"
