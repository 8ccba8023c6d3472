"""Verifies hookwarden's `v1a` (Ed25519) signatures with the public key
alone, through PyPI `cryptography` (OpenSSL's Ed25519): an implementation
independent of ours. Reads one JSON object per line: {"publicKey",
"headers", "body"}; prints "ok" or "fail: <reason>" per line."""
import base64
import json
import sys
import time

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
except ImportError:
    print("the verifier needs `cryptography`: pip install cryptography", file=sys.stderr)
    sys.exit(3)


def verdict(case):
    public = case["publicKey"]
    if not public.startswith("whpk_"):
        return "fail: not a whpk_ key"
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public[5:]))
    h = case["headers"]
    if abs(time.time() - int(h["webhook-timestamp"])) > 300:
        return "fail: timestamp outside the tolerance"
    signed = f'{h["webhook-id"]}.{h["webhook-timestamp"]}.{case["body"]}'.encode()
    for token in h["webhook-signature"].split(" "):
        version, _, sig = token.partition(",")
        if version != "v1a":
            continue
        try:
            key.verify(base64.b64decode(sig), signed)
            return "ok"
        except (InvalidSignature, ValueError):
            continue
    return "fail: no v1a signature verifies"


for line in sys.stdin:
    print(verdict(json.loads(line)), flush=True)
