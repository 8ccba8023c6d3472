"""Signs messages with the reference Standard Webhooks library (PyPI
`standardwebhooks`), the way a provider using it would. Reads one JSON object
per line: {"secret", "id", "timestamp", "body"}; prints the signature header."""
import json
import sys
from datetime import datetime, timezone

try:
    from standardwebhooks.webhooks import Webhook
except ImportError:
    print("the reference library is missing: pip install standardwebhooks", file=sys.stderr)
    sys.exit(3)

for line in sys.stdin:
    case = json.loads(line)
    when = datetime.fromtimestamp(case["timestamp"], tz=timezone.utc)
    print(Webhook(case["secret"]).sign(case["id"], when, case["body"]), flush=True)
