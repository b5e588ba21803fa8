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

# The deployed bundle has no function names: the wasm's name section is
# about 53 KB of its gzipped size (worker-build keeps whatever the linker
# leaves, `--debuginfo`). A panic still logs its message and source
# location. `make profile` sets OTP_EDGE_WASM_NAMES=1 to keep them, so V8's
# profile names every function.
if [ "${OTP_EDGE_WASM_NAMES:-}" = 1 ]; then
    export CARGO_PROFILE_RELEASE_STRIP=debuginfo
else
    export CARGO_PROFILE_RELEASE_STRIP=symbols
fi

# Unchanged inputs, unchanged bundle: worker-build re-runs wasm-bindgen and
# wasm-opt (about 25 s here) even when cargo has nothing to do, so a build
# whose inputs (the crate's sources and manifests, the workspace lock file,
# the tools' versions, RUSTFLAGS) match the last successful one is skipped.
fingerprint() {
    {
        find src Cargo.toml -type f -print0 | sort -z | xargs -0 sha256sum
        sha256sum "$ROOT/Cargo.lock"
        rustc -V
        worker-build --version 2>/dev/null || true
        wasm-bindgen --version
        wasm-opt --version
        echo "RUSTFLAGS=${RUSTFLAGS:-} STRIP=$CARGO_PROFILE_RELEASE_STRIP"
    } | sha256sum | cut -d' ' -f1
}
inputs=$(fingerprint)
if [ -f build/index.js ] && [ -f build/index_bg.wasm ] && [ "$(cat build/.inputs 2>/dev/null)" = "$inputs" ]; then
    echo "build: inputs unchanged since the last build; build/ is up to date" >&2
    exit 0
fi
rm -f build/.inputs
worker-build --release
echo "$inputs" > build/.inputs
