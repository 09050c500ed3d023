#!/usr/bin/env bash
# Runs every cargo-fuzz target (or the ones named) for SECONDS each, one
# after the other, at the lowest CPU priority, and prints per target the
# executions, executions per second, new units, coverage and corpus size.
#
#   scripts/fuzz.sh SECONDS [TARGET...]
#   scripts/fuzz.sh --merge [TARGET...]   # fold new finds into fuzz/corpus
#
# Needs `cargo install cargo-fuzz`; works on the stable toolchain through
# RUSTC_BOOTSTRAP=1 (cargo-fuzz passes nightly-only flags to rustc).
# Each run is bounded twice: libFuzzer's -max_total_time and `timeout`.
# New inputs go to fuzz/target/work-corpus/<target> (not committed); the
# committed fuzz/corpus/<target> is read as the seed. `--merge` adds to the
# committed corpus only the work inputs that reach new coverage (a set
# cover over edges and comparisons, ignoring hit counts, so it stays a few
# hundred files at most). Crashes
# land in fuzz/artifacts/<target>/ (replayed by `cargo test`; minimize them
# with `cargo fuzz tmin` and move them to fuzz/regressions/<target>/).
set -euo pipefail

usage() {
    echo "usage: $0 SECONDS [TARGET...] | $0 --merge [TARGET...]" >&2
    exit 2
}
[ $# -ge 1 ] || usage
mode=run
if [ "$1" = --merge ]; then
    mode=merge
elif [[ "$1" =~ ^[0-9]+$ ]]; then
    secs=$1
else
    usage
fi
shift

cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

# One build of every target up front, so the clock measures fuzzing only.
nice -n 19 cargo fuzz build >&2

printf '%-20s %8s %12s %10s %8s %8s %8s %8s\n' \
    target seconds execs execs/s new cov ft corpus
for t in "${targets[@]}"; do
    work="target/work-corpus/$t"
    mkdir -p "$work" "artifacts/$t"
    log="target/fuzz-$t.log"
    if [ "$mode" = merge ]; then
        nice -n 19 cargo fuzz run "$t" "corpus/$t" "$work" -- -set_cover_merge=1 -use_counters=0 >"$log" 2>&1
        printf '%-20s merged: %s committed inputs (%s)\n' "$t" \
            "$(find "corpus/$t" -type f | wc -l)" "$(du -sh "corpus/$t" | cut -f1)"
        continue
    fi
    start=$(date +%s)
    # -timeout: one input may take at most 10 s; -rss_limit_mb and
    # -malloc_limit_mb turn unbounded allocation into a reported crash.
    status=0
    timeout --kill-after=30 $((secs + 120)) nice -n 19 \
        cargo fuzz run "$t" "$work" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 -malloc_limit_mb=256 \
        -print_final_stats=1 >"$log" 2>&1 || status=$?
    took=$(($(date +%s) - start))
    stat() { grep -m1 "^stat::$1:" "$log" | awk '{print $2}'; }
    last=$(grep -E '#[0-9]+.*(pulse|NEW|REDUCE|DONE).*cov:' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    printf '%-20s %8s %12s %10s %8s %8s %8s %8s\n' "$t" "$took" \
        "$(stat number_of_executed_units)" "$(stat average_exec_per_sec)" \
        "$(stat new_units_added)" "${cov:-?}" "${ft:-?}" \
        "$(find "$work" "corpus/$t" -type f | wc -l)"
    if [ "$status" -ne 0 ]; then
        echo "$t: fuzzer exited $status; see fuzz/$log and fuzz/artifacts/$t/" >&2
    fi
done
