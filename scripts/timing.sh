#!/usr/bin/env bash
# Do login requests for registered accounts and for unknown destinations
# take measurably different times? Builds the release bundle (as the
# benchmark does), measures black-box on a fresh service, prints the figures
# and rewrites their section of BENCHMARKS.md (bench/loadgen/src/timing.rs;
# knobs TIMING_N, TIMING_WARMUP, TIMING_SEED, TIMING_GAP_MS).
exec "$(dirname "$0")/bench.sh" timing
