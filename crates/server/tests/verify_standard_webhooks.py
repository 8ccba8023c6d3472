"""Verifies hookwarden's outbound signatures with the reference Standard
Webhooks library (PyPI `standardwebhooks`), an implementation independent of
ours. Reads one JSON object per line: {"secret", "headers", "body"}; prints
"ok" or "fail: <reason>" per line."""
import json
import sys

try:
    from standardwebhooks.webhooks import Webhook
except ImportError:
    print("the reference library is missing: pip install standardwebhooks", file=sys.stderr)
    sys.exit(3)

for line in sys.stdin:
    case = json.loads(line)
    try:
        Webhook(case["secret"]).verify(case["body"], case["headers"])
        print("ok", flush=True)
    except Exception as exc:  # the library raises WebhookVerificationError
        print(f"fail: {exc}", flush=True)
