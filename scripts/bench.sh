#!/usr/bin/env bash
# The benchmark in one command: release bundles of the service and of the
# no-op baseline, native microbenchmarks of the pure hot path, then the load
# generator (bench/loadgen), which prints the table and writes BENCHMARKS.md.
#
#   scripts/bench.sh          everything (make bench), the timing comparison last
#   scripts/bench.sh timing   only the service's bundle and the timing comparison
#                             of registered and unknown destinations (make timing),
#                             which rewrites its own section of BENCHMARKS.md
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-all}
case $mode in
    all | timing) ;;
    *) echo "usage: $0 [timing]" >&2; exit 2 ;;
esac
scripts/bootstrap.sh
echo "== release bundles" >&2
sh scripts/build.sh
if [ "$mode" = timing ]; then
    echo "== load generator: timing of registered vs unknown destinations" >&2
    export PATH="$PWD/node_modules/.bin:$PATH"
    exec cargo run --locked --release -q -p otp-edge-loadgen -- timing
fi
sh scripts/build.sh bench/noop
echo "== native microbenchmarks (criterion)" >&2
mkdir -p target
if ! cargo bench --locked --bench hot_path -- --warm-up-time 1 --measurement-time 3 --noplot >target/criterion.log 2>&1; then
    cat target/criterion.log >&2
    exit 1
fi
echo "== load generator: ${BENCH_SECONDS:-8} s per level, then the timing comparison" >&2
export PATH="$PWD/node_modules/.bin:$PATH"
cargo run --locked --release -q -p otp-edge-loadgen
