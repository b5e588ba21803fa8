#!/usr/bin/env bash
# The benchmark in one command: release bundles of the service and of the
# no-op baseline, native microbenchmarks of the pure hot path, then the load
# generator (bench/loadgen), which prints the table and writes BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
echo "== release bundles" >&2
sh scripts/build.sh
sh scripts/build.sh bench/noop
echo "== native microbenchmarks (criterion)" >&2
mkdir -p target
if ! cargo bench --locked --bench hot_path -- --warm-up-time 1 --measurement-time 3 --noplot >target/criterion.log 2>&1; then
    cat target/criterion.log >&2
    exit 1
fi
echo "== load generator: ${BENCH_SECONDS:-8} s per level" >&2
export PATH="$PWD/node_modules/.bin:$PATH"
cargo run --locked --release -q -p otp-edge-loadgen
