"""Verifies webhooks as a receiver would, with the Standard Webhooks
project's own Python library (PyPI `standardwebhooks`), independent of the
Worker's Rust signing: `Webhook(secret).verify(body, headers)` checks the
`v1` HMAC-SHA256 of `id.timestamp.body` and that the timestamp is within
five minutes of now.

Reads {"secret": ..., "requests": [{"headers": {...}, "body": "..."}]} on
stdin; prints one entry per request, in order: {"ok": true, "payload": ...}
(the verified body, parsed) or {"ok": false, "error": ...}.
"""

import json
import sys

from standardwebhooks import Webhook

job = json.load(sys.stdin)
webhook = Webhook(job["secret"])
verdicts = []
for request in job["requests"]:
    try:
        verdicts.append({"ok": True, "payload": webhook.verify(request["body"], request["headers"])})
    except Exception as e:  # the library's verification error, or a malformed header
        verdicts.append({"ok": False, "error": f"{type(e).__name__}: {e}"})
json.dump(verdicts, sys.stdout)
