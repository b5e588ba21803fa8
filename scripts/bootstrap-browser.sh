#!/usr/bin/env bash
# Headless Chromium for the demo page's browser test (tests/api/browser.rs).
# Idempotent and fast when everything is present.
#
#   - Debian's `chromium` package at /usr/bin/chromium (apt-get, needs root)
#   - `playwright-core` (pinned in package.json, installed by `npm ci` in
#     scripts/bootstrap.sh) drives it. It has no install script and never
#     downloads a browser of its own: the test passes executablePath.
set -euo pipefail
cd "$(dirname "$0")/.."

CHROMIUM=/usr/bin/chromium
say() { printf 'bootstrap-browser: %s\n' "$*" >&2; }

if [ ! -x "$CHROMIUM" ]; then
    if ! command -v apt-get >/dev/null; then
        say "no $CHROMIUM and no apt-get: install Chromium so that $CHROMIUM exists"
        exit 1
    fi
    sudo=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || { say "apt-get needs root (or sudo)"; exit 1; }
        sudo=sudo
    fi
    say "installing Debian's chromium (once, about a minute)"
    export DEBIAN_FRONTEND=noninteractive
    # The package lists may be missing or stale on a fresh machine.
    $sudo apt-get install -y --no-install-recommends chromium \
        || { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends chromium; }
fi

if [ ! -f node_modules/playwright-core/package.json ]; then
    say "node_modules/playwright-core is missing; run scripts/bootstrap.sh (npm ci)"
    exit 1
fi
