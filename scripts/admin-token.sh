#!/usr/bin/env bash
# Mints a token for the admin API (README, "Admin API"):
#
#   scripts/admin-token.sh <token_id> <scope> [<scope>...]
#   make admin-token ID=support SCOPES="users:read audit:read"
#
# Scopes: users:read users:write sessions:write audit:read. Prints the token
# (shown this once: only its hash is kept) and the entry to add to the secret
# ADMIN_API_TOKENS. The token is `oea_` and 32 bytes from the kernel's CSPRNG
# in base64url (256 bits); the entry is <token_id>:<scopes>:<sha256 hex>.
set -euo pipefail

usage() {
    echo "usage: $0 <token_id> <scope> [<scope>...]" >&2
    echo "  token_id: 1 to 40 of A-Z a-z 0-9 _ . -; scopes: users:read users:write sessions:write audit:read" >&2
    exit 2
}
[ $# -ge 2 ] || usage
id=$1
shift
[[ $id =~ ^[A-Za-z0-9_.-]{1,40}$ ]] || usage
for scope in "$@"; do
    case $scope in
        users:read | users:write | sessions:write | audit:read) ;;
        *) echo "unknown scope: $scope" >&2 && usage ;;
    esac
done

token="oea_$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
if command -v sha256sum >/dev/null; then
    hash=$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)
else
    hash=$(printf '%s' "$token" | shasum -a 256 | cut -d' ' -f1)
fi

echo "token: $token"
echo "entry: $id:$*:$hash"
cat >&2 <<'NOTE'

The token is shown this once: hand it to whoever will use it, as
`Authorization: Bearer <token>`. Add the entry to ADMIN_API_TOKENS, beside
the entries you keep (separated by commas or newlines; `wrangler secret put`
replaces the whole value):
  npx wrangler secret put ADMIN_API_TOKENS
Locally: ADMIN_API_TOKENS="..." in .dev.vars. To revoke the token, put the
secret again without its entry.
NOTE
