#!/usr/bin/env bash
# Runs Hamlet's fuzz targets one after another, each until it has had SECONDS of CPU time
# (default 600, ten CPU-minutes), at the lowest CPU priority, and prints what each did. On a
# busy machine a target gets less CPU than wall time, so it runs in rounds (libFuzzer's
# -max_total_time is wall time) until its user + system time reaches SECONDS. See
# docs/security.md.
#
#   fuzz/run.sh [CPU-SECONDS] [TARGET...]      (targets: wire sync bundle csv projection; default all)
#
# Environment: FUZZ_SANITIZER (default none: the code is safe Rust, and without AddressSanitizer
# a target runs about twice as fast; set "address" to check dependencies' unsafe code too;
# targets always build with debug assertions and overflow checks, as a debug server runs),
# FUZZ_RSS_MB (default 2048: an input that makes a target use more counts as a crash),
# FUZZ_SKIP_BUILD=1 (run the targets as last built), FUZZ_NICE (default 19: the lowest CPU
# priority, so a run never slows other work; the budget is CPU time, so it only takes longer).
#
# Inputs: fuzz/seeds/<target> (honest data, committed) and fuzz/regressions/<target> (crashers
# once found, committed) start the corpus; what the fuzzer adds goes to fuzz/corpus/<target>,
# crashers to fuzz/artifacts/<target> (neither is committed). Exits non-zero if any target
# found a crash.
set -euo pipefail
cd "$(dirname "$0")"

fail() { printf 'fuzz/run.sh: %s\n' "$*" >&2; exit 2; }

seconds="${1:-600}"
[[ "$seconds" =~ ^[0-9]+$ ]] || fail "SECONDS must be a whole number, not ${seconds:?}"
shift || true
all=(wire sync bundle csv projection)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
for t in "${targets[@]}"; do
  [[ " ${all[*]} " == *" $t "* ]] || fail "unknown target $t (known: ${all[*]})"
done
sanitizer="${FUZZ_SANITIZER:-none}"
rss_mb="${FUZZ_RSS_MB:-2048}"

rustup toolchain list 2>/dev/null | grep -q '^nightly' \
  || fail "the nightly toolchain is not installed (rustup toolchain install nightly)"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  nice -n 19 cargo install cargo-fuzz || fail "cannot install cargo-fuzz"
fi

# The fuzz crate keeps its own target dir (fuzz/target): its flags differ from a normal build's.
unset CARGO_TARGET_DIR
echo "building the fuzz targets (sanitizer: $sanitizer)"
if [ "${FUZZ_SKIP_BUILD:-0}" != 1 ]; then
  nice -n 19 cargo +nightly fuzz build -s "$sanitizer" --debug-assertions || fail "the fuzz targets do not build"
fi
triple="$(rustc +nightly -vV | sed -n 's/^host: //p')"
bin_dir="target/$triple/release"
artifacts() { find "artifacts/$1" -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' \); }

found=0
printf '\n%-11s %8s %8s %12s %9s %7s %8s\n' target seconds cpu-s executions exec/s corpus crashes
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t" "seeds/$t" "regressions/$t"
  log="artifacts/$t/last-run.log"
  before=$(artifacts "$t" | wc -l)
  TIMEFORMAT='%R %U %S'
  wall=0 cpu=0 runs=0
  : >"$log"
  while awk -v c="$cpu" -v s="$seconds" 'BEGIN { exit !(c < s) }'; do
    round=$(awk -v c="$cpu" -v s="$seconds" 'BEGIN { r = s - c; if (r < 30) r = 30; printf "%d", r }')
    # libFuzzer exits non-zero on a crash; the figures are still wanted.
    { time nice -n "${FUZZ_NICE:-19}" "$bin_dir/$t" "corpus/$t" "seeds/$t" "regressions/$t" \
        -max_total_time="$round" -rss_limit_mb="$rss_mb" -timeout=20 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" >>"$log" 2>&1 || true; } 2>"artifacts/$t/time"
    read -r w user sys <"artifacts/$t/time"
    done_runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    sed -i 's/^stat::number_of_executed_units:/stat::counted_units:/' "$log"
    runs=$(( runs + ${done_runs:-0} ))
    wall=$(awk -v a="$wall" -v b="$w" 'BEGIN { print a + b }')
    cpu=$(awk -v a="$cpu" -v u="$user" -v s="$sys" 'BEGIN { print a + u + s }')
    [ "$(( $(artifacts "$t" | wc -l) - before ))" -eq 0 ] || break
    # A round that ends at once without a crash is a target that cannot run: say so, do not spin.
    awk -v w="$w" 'BEGIN { exit !(w < 2) }' && { tail -n 5 "$log" >&2; fail "$t stopped after $w s (see fuzz/$log)"; }
  done
  rate=$(awk -v r="$runs" -v w="$wall" 'BEGIN { if (w > 0) printf "%.0f", r / w; else print 0 }')
  cpu=$(awk -v c="$cpu" 'BEGIN { printf "%.0f", c }')
  corpus=$(find "corpus/$t" -type f | wc -l)
  crashes=$(( $(artifacts "$t" | wc -l) - before ))
  printf '%-11s %8.0f %8s %12s %9s %7s %8s\n' "$t" "$wall" "$cpu" "$runs" "$rate" "$corpus" "$crashes"
  if [ "$crashes" -gt 0 ]; then
    found=1
    grep -m 3 -E 'panicked at|ERROR: libFuzzer|SUMMARY' "$log" | sed 's/^/    /' || true
    sed -n 's/^.*Test unit written to /    input: fuzz\//p' "$log"
  fi
done
exit "$found"
