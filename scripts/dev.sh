#!/usr/bin/env bash
# Starts the service locally: wrangler dev on http://127.0.0.1:8787 with a
# local D1 database and the Durable Object in-process. OTP messages are printed
# to this console (MAIL_PROVIDER=log, SMS_PROVIDER=log).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PATH="$PWD/node_modules/.bin:$PATH" WRANGLER_SEND_METRICS=false

if [ ! -f .dev.vars ]; then
    # Fresh random local secrets; .dev.vars is git-ignored.
    rand() { head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'; }
    sed -e "s|^OTP_PEPPER=.*|OTP_PEPPER=$(rand)|" \
        -e "s|^JWT_SIGNING_KEYS=.*|JWT_SIGNING_KEYS=dev-$(date +%Y%m%d):$(rand)|" \
        .dev.vars.example > .dev.vars
    echo "dev: wrote .dev.vars with fresh local secrets" >&2
fi

wrangler d1 migrations apply DB --local
exec wrangler dev --ip 127.0.0.1 --port "${PORT:-8787}" "$@"
