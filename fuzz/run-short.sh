#!/bin/sh
# Runs every fuzz target for N seconds each (default 30) and exits non-zero
# when one crashes; the crashing input is left in fuzz/artifacts/<target>/.
#   fuzz/run-short.sh [SECONDS]
# Needs rustup's nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# Without nightly it prints SKIP and exits 0; without cargo-fuzz it fails.
# Inputs are capped at 16 KiB: seeds built against vmlinux.h are ~600 KiB
# and run a hundred times slower; the out-of-memory bugs found so far were
# all reachable from small inputs (libFuzzer's malloc limit is the RSS
# limit, 2 GiB, so a parser allocating what a header claims is a crash).
set -eu
secs=${1:-30}
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "SKIP fuzz/run-short.sh: no nightly toolchain (rustup toolchain install nightly); NOTHING WAS FUZZED" >&2
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run-short.sh: cargo-fuzz is missing: cargo install cargo-fuzz" >&2
    exit 1
fi
target_dir=${CARGO_TARGET_DIR:-$here/../target}/fuzz
if [ ! -d corpus ]; then
    ./seed.sh || echo "fuzz/run-short.sh: no seed objects; fuzzing from empty corpora" >&2
fi
failed=""
for t in $(cargo +nightly fuzz list); do
    mkdir -p "corpus/$t"
    echo "== fuzz target $t for ${secs}s"
    dict=""
    [ -f "$t.dict" ] && dict="-dict=$here/$t.dict"
    # shellcheck disable=SC2086 # $dict is one word or none
    if ! cargo +nightly fuzz run --target-dir "$target_dir" "$t" "corpus/$t" -- \
        -max_total_time="$secs" -max_len=16384 -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 $dict; then
        failed="$failed $t"
    fi
done
if [ -n "$failed" ]; then
    echo "fuzz/run-short.sh: CRASHED:$failed (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz/run-short.sh: all targets ran ${secs}s without a crash"
