#!/bin/sh
# The wrangler [build] command: compiles the crate to wasm and bundles it into
# build/. worker-build gets local tools instead of downloading them from GitHub.
# With an argument, builds the Worker crate in that directory instead (the
# benchmark's no-op baseline, bench/noop).
set -eu
cd "$(dirname "$0")/.."
ROOT=$PWD

# The test harness builds once and then starts several Workers from that build.
if [ "${OTP_EDGE_SKIP_BUILD:-}" = 1 ] && [ -f build/index.js ]; then
    exit 0
fi

CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
for tool in "$CARGO_BIN/worker-build" "$CARGO_BIN/wasm-bindgen" node_modules/.bin/wasm-opt node_modules/.bin/esbuild; do
    if [ ! -x "$tool" ]; then
        echo "build: $tool is missing; run 'make bootstrap' (scripts/bootstrap.sh) first" >&2
        exit 1
    fi
done

PATH="$ROOT/node_modules/.bin:$CARGO_BIN:$PATH"
export WASM_BINDGEN_BIN="$CARGO_BIN/wasm-bindgen"
export WASM_OPT_BIN="$ROOT/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$ROOT/node_modules/.bin/esbuild"
cd "${1:-.}"
exec worker-build --release
