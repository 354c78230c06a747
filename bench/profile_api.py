"""Part 4: DynamoDB requests per route of the Segment-compatible Profile API (issue 16).

The real InboundFunction handler answers each route for a user known by three ids, with traits,
an account and events in two partitions; the requests it makes are counted (and their read
units priced, as bench/capacity.py does). The issue's budget: a `traits` answer costs at most 2.
"""

from __future__ import annotations

import base64
from collections import Counter

from bench.capacity import table_model, total_usage
from bench.dynamodb_model import ModelledDynamoDB
from bench.stack import PREFIX, TEMPLATE, InboundStack

SPACE = "bench"
TOKEN = "bench-profile-token"  # noqa: S105 - the bench account's own
TRAITS_BUDGET = 2
ROUTES = [
    ("traits, by user_id", "users", "user_id:u1", "traits", ""),
    ("traits, by email (an alias)", "users", "email:ann@example.com", "traits", ""),
    ("traits, verbose + include + limit", "users", "user_id:u1", "traits", "?verbose=true&include=plan&limit=1"),
    ("traits, class=audience", "users", "user_id:u1", "traits", "?class=audience"),
    ("traits, by an id of a moved profile", "users", "anonymous_id:m2", "traits", ""),
    ("traits, a visitor known by events only", "users", "anonymous_id:v1", "traits", ""),
    ("external_ids", "users", "user_id:u1", "external_ids", ""),
    ("events (2 partitions)", "users", "user_id:u1", "events", ""),
    ("events, asc, time range", "users", "user_id:u1", "events", "?sort=asc&start=2026-01-02T00:00:00Z"),
    ("metadata (2 partitions)", "users", "user_id:u1", "metadata", ""),
    ("links of a user", "users", "user_id:u1", "links", ""),
    ("links of an account", "accounts", "group_id:g1", "links", ""),
    ("traits of an account", "accounts", "group_id:g1", "traits", ""),
]


def _setup(stack: InboundStack) -> None:
    import boto3

    boto3.client("ssm").put_parameter(Name=f"{PREFIX}/profile-token", Value=TOKEN, Type="SecureString")
    traits = {"email": "ann@example.com", "plan": "pro", "seats": 3}
    stack.post({"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "i1", "traits": traits})
    stack.post({"type": "group", "userId": "u1", "groupId": "g1", "messageId": "g1", "traits": {"name": "Acme"}})
    # a visitor on two devices who then identifies: the profile moves from m1 to u2 (m2's alias follows)
    for message_id, ids in (("m1", {"anonymousId": "m1"}), ("m2", {"anonymousId": "m2"}), ("m3", {"userId": "u2"})):
        stack.post({"type": "identify", "messageId": message_id, **ids, "traits": {"email": "mo@example.com"}})
    # an anonymous visitor seen only through a page view, while someone's deletion is in progress
    stack.post({"type": "page", "anonymousId": "v1", "messageId": "v1", "name": "Home"})
    stack.post({"type": "identify", "userId": "gone", "messageId": "d1", "traits": {"plan": "x"}})
    stack.post({"type": "delete", "userId": "gone", "messageId": "d2"})
    for day in range(1, 6):
        for ids, prefix in (({"userId": "u1"}, "u"), ({"anonymousId": "a1"}, "a")):
            track = {"type": "track", "event": "Viewed", "messageId": f"{prefix}{day}", **ids}
            stack.post({**track, "timestamp": f"2026-01-0{day}T00:00:00Z"})


def main() -> int:
    table = table_model(TEMPLATE)
    authorization = "Basic " + base64.b64encode(f"{TOKEN}:".encode()).decode()
    print("\nSegment-compatible Profile API: DynamoDB requests per answer (a user with 3 ids, 10 events, an account)")
    print(f"  {'route':38} {'status':>6} {'requests':>8} {'RRU':>5}  operations")
    failed = 0
    with InboundStack({"handle_accounts": True}, space_id=SPACE) as stack:
        _setup(stack)
        with ModelledDynamoDB(table, sleep=False) as model:
            for name, collection, profile, resource, query in ROUTES:
                path = f"/v1/spaces/{SPACE}/collections/{collection}/profiles/{profile}/{resource}{query}"
                model.reset()
                answer = stack.get(path, authorization)
                operations = Counter(call.operation for call in model.calls)
                shown = ", ".join(f"{count} {operation}" for operation, count in operations.items())
                read = total_usage(model.calls, table).read
                print(f"  {name:38} {answer.status:>6} {len(model.calls):>8} {read:>5g}  {shown}")
                over = resource == "traits" and collection == "users" and "class" not in query
                if answer.status != 200 or (over and len(model.calls) > TRAITS_BUDGET):
                    failed = 1
    print(f"  budget: a traits answer costs at most {TRAITS_BUDGET} requests (class=audience reads the account too")
    print("  when a user segment reads account traits); events and metadata: one Query per event partition")
    return failed
