#!/usr/bin/env bash
# Runs every test: native unit tests of the rules, then the black-box suite,
# which builds the Worker once, starts it under wrangler dev (local workerd,
# local D1, the real Durable Object) with fake providers on loopback, and
# talks HTTP to it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
echo "== native unit tests" >&2
# The benches run once each (criterion's test mode), so they cannot rot.
cargo test --locked --lib --benches
# The load generator's own rules: its statistics (Mann-Whitney, KS) against scipy's values.
cargo test --locked -p otp-edge-loadgen
echo "== black-box tests against wrangler dev" >&2
cargo test --locked --test api -- --test-threads "${TEST_THREADS:-8}"
