#!/usr/bin/env bash
# Installs everything the build and the tests need, on a fresh machine.
# Idempotent: when all is in place it only checks versions (a few seconds).
#
#   - Rust target wasm32-unknown-unknown
#   - worker-build (pinned) and wasm-bindgen-cli (= the wasm-bindgen in Cargo.lock)
#   - npm devDependencies: wrangler, Node 22 for it, binaryen (wasm-opt), esbuild
set -euo pipefail
cd "$(dirname "$0")/.."

WORKER_BUILD_VERSION=0.8.7
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"

say() { printf 'bootstrap: %s\n' "$*" >&2; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    say "adding Rust target wasm32-unknown-unknown"
    rustup target add wasm32-unknown-unknown
fi

# cargo_tool BINARY CRATE VERSION: install CRATE@VERSION unless BINARY reports it.
cargo_tool() {
    local bin=$1 crate=$2 version=$3
    if "$CARGO_BIN/$bin" --version 2>/dev/null | grep -qF "$version"; then
        return
    fi
    say "installing $crate $version (a few minutes, once)"
    # --locked first for a reproducible build; a dependency yanked since the
    # release makes that fail, and then the newest compatible ones are used.
    cargo install "$crate" --version "$version" --locked --force \
        || cargo install "$crate" --version "$version" --force
}
cargo_tool worker-build worker-build "$WORKER_BUILD_VERSION"
cargo_tool wasm-bindgen wasm-bindgen-cli "$WASM_BINDGEN_VERSION"

# npm ci only when package-lock.json changed since the last install.
lock_sum=$(sha256sum package-lock.json package.json | sha256sum | cut -c1-64)
stamp=node_modules/.bootstrap-stamp
if [ "$(cat "$stamp" 2>/dev/null)" != "$lock_sum" ]; then
    say "installing npm packages (wrangler, node 22, binaryen, esbuild)"
    npm ci --no-audit --no-fund --loglevel=error
    echo "$lock_sum" > "$stamp"
fi

# Node 22 from the npm package `node` is what wrangler runs on.
if ! node_modules/.bin/node --version | grep -q '^v22\.'; then
    say "node_modules/.bin/node is not Node 22; remove node_modules and run again"
    exit 1
fi

# Test-only tools: schemathesis (PyPI) and Debian's Chromium.
scripts/bootstrap-python.sh
scripts/bootstrap-browser.sh
