"""Check a user's hash chain from their events (a JSON array, oldest first) on standard input.

    curl -s -H "Authorization: Bearer $TOKEN" "localhost:8000/api/alice/events?limit=1000" \
        | python3 docs/verify_chain.py

Standard library only, so an auditor can read it whole and port it to any language.
"""

import hashlib
import json
import sys


def canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


head, expected_seq = "0" * 64, 1
for event in json.load(sys.stdin):
    hashed = {k: v for k, v in event.items() if k not in ("position", "hash", "data")}
    if event["seq"] != expected_seq or event["prev_hash"] != head:
        sys.exit(f"broken at seq {expected_seq}: missing, reordered or relinked")
    if hashlib.sha256(canonical(event["data"])).hexdigest() != event["data_hash"]:
        sys.exit(f"broken at seq {event['seq']}: data does not match data_hash")
    if hashlib.sha256(canonical(hashed)).hexdigest() != event["hash"]:
        sys.exit(f"broken at seq {event['seq']}: hash does not recompute")
    head, expected_seq = event["hash"], expected_seq + 1
print(f"ok: {expected_seq - 1} events, head {head}")
