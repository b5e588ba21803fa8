#!/usr/bin/env bash
# Python tools for the tests: schemathesis, which fuzzes the Worker against
# src/http/assets/openapi.json (tests/api/fuzz.rs); openapi-spec-validator, which
# checks that document against the OpenAPI 3.1 specification's own schema
# (tests/api/contract.rs); openapi-python-client, which generates a
# Python client from the served document (tests/api/generated_client.rs);
# and standardwebhooks, the Standard Webhooks project's own library, which
# verifies the Worker's signed webhooks as a receiver would
# (tests/api/webhooks.rs, tests/python/verify_webhooks.py).
# Installed with the machine's python3 into a project-local virtualenv,
# target/venv, so a clean clone has none and `cargo clean` or
# `git clean -xdf` removes it.
# Idempotent: when the pinned versions are there it only checks them (a
# fraction of a second).
set -euo pipefail
cd "$(dirname "$0")/.."

PINNED="schemathesis==4.32.5 openapi-spec-validator==0.9.0 openapi-python-client==0.29.1 standardwebhooks==1.1.0"
VENV=target/venv

say() { printf 'bootstrap-python: %s\n' "$*" >&2; }

# The pinned packages the venv holds, as `name==version`, read from their
# metadata (importing schemathesis would take a second or two).
installed() {
    # shellcheck disable=SC2086 # PINNED is a list of requirements
    "$VENV/bin/python" -c '
import sys
from importlib.metadata import version, PackageNotFoundError
found = []
for pin in sys.argv[1:]:
    name = pin.split("==")[0]
    try:
        found.append(name + "==" + version(name))
    except PackageNotFoundError:
        pass
print(" ".join(found))
' $PINNED 2>/dev/null
}

if [ -x "$VENV/bin/st" ] && [ "$(installed)" = "$PINNED" ]; then
    exit 0
fi

# One installer at a time (two test processes may both get here on a fresh
# machine); the second finds the work done.
mkdir -p "$(dirname "$VENV")"
if command -v flock >/dev/null; then
    exec 9>"$VENV.lock"
    flock 9
    if [ -x "$VENV/bin/st" ] && [ "$(installed)" = "$PINNED" ]; then
        exit 0
    fi
fi

if ! command -v python3 >/dev/null; then
    say "python3 (3.9 or later) is required to install $PINNED"
    exit 1
fi
# A venv whose python3 went away (the machine's was upgraded) cannot be repaired.
if [ -d "$VENV" ] && ! "$VENV/bin/python" -c '' 2>/dev/null; then
    say "removing the broken virtualenv $VENV"
    rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
    say "creating the virtualenv $VENV"
    python3 -m venv "$VENV"
fi
say "installing $PINNED into $VENV (a minute, once)"
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input $PINNED
if [ "$(installed)" != "$PINNED" ]; then
    say "expected $PINNED in $VENV, found: $(installed)"
    exit 1
fi
