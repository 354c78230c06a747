"""How large a Segment delivery may be and still reach InboundFunction (`python -m local_stack.payload_limits`).

API Gateway hands the request to Lambda as a payload format 2.0 event: the body becomes a JSON
string, so each `"` and `\\` in the body takes two bytes more, and each escaped control character
(`\\u0001`) one more. Lambda refuses a synchronous event over 6,291,456 bytes (API Gateway then
answers 500 without running the function), so what counts is the event, not the body.

Typical messages: identify and track calls as Webhooks (Actions) sends them (the whole event,
context included). Worst case: messages at Segment's 32 KB limit whose strings are all `"` and
`\\` (the event takes twice their size). Figures are for a batch (a JSON array) with the headers
Segment sends.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from local_stack.api import build_event
from local_stack.lambda_runtime import MAX_REQUEST_BYTES, payload_size

MESSAGE_LIMIT = 32 * 1024  # Segment's (and the connector's) limit for one message
SEGMENT_HEADERS = [
    ("Host", "abcdef1234.execute-api.eu-west-1.amazonaws.com"),
    ("Content-Type", "application/json"),
    ("User-Agent", "Segment (Actions)"),
    ("Authorization", "Basic " + "A" * 44),
    ("Accept", "*/*"),
    ("Accept-Encoding", "gzip, deflate"),
    ("X-Amzn-Trace-Id", "Root=1-67891233-abcdef012345678912345678"),
    ("X-Forwarded-For", "203.0.113.10"),
    ("X-Forwarded-Port", "443"),
    ("X-Forwarded-Proto", "https"),
]


def _common(i: int) -> dict[str, Any]:
    return {
        "anonymousId": f"5f8b1d2e-7c3a-4e59-9b1f-{i:012d}",
        "userId": f"user-{i:08d}",
        "messageId": f"ajs-next-1712345678901-{i:08d}-4f2c9a7e1b3d",
        "timestamp": "2024-04-05T10:21:18.901Z",
        "originalTimestamp": "2024-04-05T10:21:18.734Z",
        "sentAt": "2024-04-05T10:21:18.740Z",
        "receivedAt": "2024-04-05T10:21:19.012Z",
        "channel": "client",
        "context": {
            "ip": "203.0.113.42",
            "library": {"name": "analytics.js", "version": "next-1.64.0"},
            "locale": "en-GB",
            "timezone": "Europe/London",
            "userAgent": (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
                "Chrome/123.0.0.0 Safari/537.36"
            ),
            "page": {
                "path": "/pricing",
                "referrer": "https://www.google.com/",
                "search": "?utm_source=google&utm_medium=cpc",
                "title": "Pricing - Example",
                "url": "https://www.example.com/pricing?utm_source=google&utm_medium=cpc",
            },
            "campaign": {"source": "google", "medium": "cpc", "name": "spring-sale"},
        },
        "integrations": {},
        "writeKey": "AbCdEfGhIjKlMnOpQrStUvWxYz012345",
    }


def typical_message(i: int) -> dict[str, Any]:
    """An identify (every other one) or a track, with a browser's context."""
    if i % 2 == 0:
        traits = {
            "email": f"user{i}@example.com",
            "name": "Ann Example",
            "plan": "pro",
            "company": {"name": "Example Ltd", "employees": 42},
            "created_at": "2023-11-02T08:00:00Z",
        }
        return {"type": "identify", "traits": traits, **_common(i)}
    properties = {"plan": "pro", "price": 49.0, "currency": "GBP", "cta": "Start trial", "position": 3}
    return {"type": "track", "event": "Trial Started", "properties": properties, **_common(i)}


def worst_message(i: int) -> dict[str, Any]:
    """A message of exactly MESSAGE_LIMIT bytes whose trait is all `"` and `\\` (2 bytes each in the body)."""
    message: dict[str, Any] = {"type": "identify", "userId": f"user-{i:08d}", "traits": {"note": ""}}
    room = MESSAGE_LIMIT - len(json.dumps(message, separators=(",", ":")).encode())
    message["traits"]["note"] = '"\\' * (room // 4) + '"' * (room % 4 // 2)
    return message


def body_of(messages: list[dict[str, Any]]) -> bytes:
    return json.dumps(messages, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def event_bytes(body: bytes) -> int:
    """Size of the event API Gateway sends to Lambda for a POST /segment with this body."""
    size = payload_size(build_event("POST", "/segment", SEGMENT_HEADERS, body, source_ip="203.0.113.10"))
    assert size is not None
    return size


def largest_batch(make: Callable[[int], dict[str, Any]], most: int = 100_000) -> tuple[int, int, int]:
    """(messages, body bytes, event bytes) of the largest batch whose event Lambda accepts."""
    low, high = 0, most
    while low < high:
        middle = (low + high + 1) // 2
        if event_bytes(body_of([make(i) for i in range(middle)])) <= MAX_REQUEST_BYTES:
            low = middle
        else:
            high = middle - 1
    body = body_of([make(i) for i in range(low)])
    return low, len(body), event_bytes(body)


def main() -> int:
    print(f"Lambda's synchronous request limit: {MAX_REQUEST_BYTES:,} bytes of event")
    for label, make in (("typical", typical_message), ("worst case", worst_message)):
        count, body, event = largest_batch(make)
        one = len(body_of([make(0)])) - 2
        print(f"{label:>10}: {one:,} bytes a message; at most {count:,} messages, body {body:,} bytes, event {event:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
