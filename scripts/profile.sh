#!/usr/bin/env bash
# Where a login flow's CPU goes (make profile): the release bundle on the
# local workerd with its V8 inspector open, returning users logging in, V8's
# sampling profiler in each isolate a login touches, workerd's threads from
# /proc and, when perf is installed, perf on workerd's main thread. Prints
# the tables, writes bench/profile-$PROFILE_LABEL.cpuprofile (a flame graph
# for speedscope or Chrome DevTools) and the run's part of BENCHMARKS.md,
# section "Where a flow's CPU goes".
#
#   PROFILE_LABEL=before scripts/profile.sh   names the run and its file (default: latest)
#   PROFILE_SECONDS (8), PROFILE_CONCURRENCY (16), PROFILE_INTERVAL_US (500)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
echo "== release bundle, with its function names (scripts/build.sh)" >&2
OTP_EDGE_WASM_NAMES=1 sh scripts/build.sh
echo "== load generator: profile of returning users' logins" >&2
export PATH="$PWD/node_modules/.bin:$PATH"
exec cargo run --locked --release -q -p otp-edge-loadgen -- profile
