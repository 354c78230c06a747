"""The soak's parts (make soak): the hostile-input generator, its cases through the in-process
handler, the raw HTTP client, the flaky sink, the load plan and the reading of what the sink got."""

from __future__ import annotations

import base64
import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from conftest import API_KEY
from local_stack.api import build_event
from local_stack.lambda_runtime import LambdaContext
from soak import deliveries, hostile, jsontext, load, table
from soak.flaky_sink import FlakySink
from soak.jsontext import Raw
from soak.wire import send_raw

SEED = 11
HANDLER_CASES = hostile.generate(SEED, 40, API_KEY)
OVERSIZED = [hostile.case(SEED, number, API_KEY) for number in (1_000, 3_000, 5_000, 7_000)]


# -- the generator ---------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_cases_and_another_seed_others():
    # Given two generations with one seed and one with another / Then the first two are equal
    assert hostile.generate(5, 60, API_KEY) == hostile.generate(5, 60, API_KEY)
    assert hostile.generate(6, 60, API_KEY) != hostile.generate(5, 60, API_KEY)
    # And case i depends only on (seed, i)
    assert hostile.case(5, 59, API_KEY) == hostile.generate(5, 60, API_KEY)[59]


def test_cases_spread_over_every_route_method_and_kind_of_hostility():
    # Given a few hundred cases
    cases = hostile.generate(1, 600, API_KEY)
    # Then every route family, method and kind is there
    assert {case.family for case in cases} == {"delivery", "tracking", "profile", "health", "unknown"}
    assert {case.method for case in cases} == set(hostile.METHODS)
    targets = {case.target.split(b"?")[0] for case in cases}
    for _, template, _, _ in hostile.ROUTES:
        if template and "{id}" not in template:
            assert template.encode() in targets
    kinds = {part for case in cases for part in case.kind.split("+")}
    assert {
        "mutated",
        "batch-mix",
        "random-json",
        "malformed",
        "non-utf8",
        "deep",
        "empty",
        "profile-id",
        "bad-credentials",
    } <= kinds
    # And some carry bytes no latin-1 client library would send as they are
    assert any(b"\xff" in value for case in cases for _, value in case.headers)
    assert any(any(byte > 0x7F for byte in case.target) for case in cases)
    assert any(rb"\ud8" in case.body or rb"\udc" in case.body for case in cases)  # lone surrogate escapes
    assert any(b"1e400" in case.body or b"1E+999" in case.body for case in cases)


def test_oversized_cases_are_a_few_past_each_limit_and_one_large_within():
    # Given the oversized cases (one per 2,000)
    assert [case.kind for case in OVERSIZED] == ["oversized"] * 4
    assert sum(case.kind.startswith("oversized") for case in hostile.generate(2, 2_000, API_KEY)) == 1
    mib = 1024 * 1024
    # Then one body is past 5 MiB, one holds more than 4,000 messages, one is between 512 KB and 5 MiB
    assert any(len(case.body) > 5 * mib for case in OVERSIZED)
    assert any(len(json.loads(case.body)) > 4_000 for case in OVERSIZED if case.body.startswith(b"[{"))
    assert any(512 * 1024 < len(case.body) < 5 * mib and case.expect == frozenset({200}) for case in OVERSIZED)


def test_every_tagged_message_uses_ids_of_the_reserved_prefix_and_of_its_case_only():
    # Given the tags of many cases
    cases = hostile.generate(4, 400, API_KEY)
    tags = [(case.number, tag) for case in cases for tag in case.tags]
    # Then each reference and message id is under the seed's prefix and names its own case
    assert tags
    for number, tag in tags:
        own = f"{hostile.tag_prefix(4)}{number:06d}"
        assert own in tag.message_id and all(own in reference for reference in tag.references)


# -- the cases through the in-process handler (fast: a few dozen) ---------------------------------------


@pytest.mark.parametrize("case", HANDLER_CASES + OVERSIZED[:2], ids=lambda case: f"{case.number}-{case.kind}")
def test_hostile_case_through_the_handler_is_answered_below_500_with_a_json_body(api, case):
    # Given a hostile request as API Gateway would hand it over (headers and target read as latin-1)
    event = build_event(case.method, case.text_target(), case.text_headers(), case.body)
    # When the inbound handler gets it
    response = api.module.lambda_handler(event, LambdaContext("InboundFunction", 512, 10))
    # Then it answers below 500 with a JSON body
    body = response.get("body") or ""
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    assert response["statusCode"] < 500, (response["statusCode"], body[:300])
    json.loads(body)


def test_table_keys_of_a_message_are_its_identity_event_dedup_marker_and_account():
    # Given a message readable under a Profile API path / Then the items it would write (docs/design.md)
    assert table.keys_of("/v1/users/anonymous_id:hx1-000001", "hx1-000001-m") == [
        ("id#anonymous_id#hx1-000001", "identity"),
        ("id#anonymous_id#hx1-000001", "event#hx1-000001-m"),
        ("msg#hx1-000001-m", "msg"),
    ]
    assert table.keys_of("/v1/users/user_id:a%40b", "m")[0] == ("id#user_id#a@b", "identity")
    assert table.keys_of("/v1/accounts/hx1-000001-group", "m") == [("account#hx1-000001-group", "account")]


# -- JSON text ----------------------------------------------------------------------------------------


def test_raw_pieces_are_written_verbatim_and_surrogates_escaped():
    text = jsontext.dumps({"n": Raw("1e400"), "s": "a\ud800", "deep": Raw("[[[]]]"), "l": [1, None]})
    assert text == '{"n":1e400,"s":"a\\ud800","deep":[[[]]],"l":[1,null]}'
    assert json.loads(text)["n"] == float("inf")
    with pytest.raises(UnicodeDecodeError):
        jsontext.encode({"s": "\ud800"}, ensure_ascii=False).decode("utf-8")  # raw surrogate: not UTF-8


# -- the raw client -----------------------------------------------------------------------------------


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        answer = json.dumps({"path": self.path, "auth": self.headers["Authorization"], "body": body.decode("latin-1")})
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer.encode())

    def log_message(self, *args: object) -> None:
        pass


def test_send_raw_puts_non_latin1_bytes_on_the_wire_as_they_are():
    # Given a server that echoes what it read (http.server reads the head as latin-1)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # When a request with raw bytes in its target, a header and its body is sent
        reply = send_raw(
            "127.0.0.1",
            server.server_address[1],
            "POST",
            b"/v1/users/\xff%00",
            (("Authorization", "Basic 🔑".encode()),),
            b"\xff\xfe",
            timeout=10,
        )
    finally:
        server.shutdown()
        server.server_close()
    # Then the server got those bytes
    assert reply.status == 200
    assert reply.json() == {
        "path": "/v1/users/\xff%00",
        "auth": "Basic 🔑".encode().decode("latin-1"),
        "body": "\xff\xfe",
    }


# -- the flaky sink -----------------------------------------------------------------------------------


def _statuses(sink: FlakySink, count: int) -> list[int]:
    auth = ("write-key", "")
    return [
        requests.post(f"{sink.url}/v1/batch", json={"batch": []}, auth=auth, timeout=10).status_code
        for _ in range(count)
    ]


def test_flaky_sink_refuses_a_share_with_500_or_429_the_same_way_for_one_seed():
    # Given two sinks with one seed, failing 30% of requests
    with_seed = [FlakySink(0.3, seed=7).start() for _ in range(2)]
    try:
        # When each gets 60 requests
        first, second = (_statuses(sink, 60) for sink in with_seed)
    finally:
        for sink in with_seed:
            sink.stop()
    # Then both answer alike: mostly 200, some 500 and 429
    assert first == second
    assert set(first) == {200, 429, 500}
    assert 5 <= sum(status != 200 for status in first) <= 35


# -- the load plan and the reading of deliveries --------------------------------------------------------


def test_load_bodies_carry_every_message_once_and_each_user_in_order():
    # Given users and a sender's bodies
    users = load.make_users(random.Random(1), "t", 6, 8)
    bodies = load.plan_bodies(random.Random(2), users, ((1, 1), (5, 1), (30, 1)), put_patch_share=0.2)
    # Then every message is sent once, and a user's messages in their order
    sent = [s for body in bodies for s in body.messages]
    assert sorted(s.message_id for s in sent) == sorted(s.message_id for u in users for s in u.messages)
    for user in users:
        assert [s.seq for s in sent if s.user == user.user_id] == list(range(1, 9))
    assert {body.method for body in bodies} <= {"POST", "PUT", "PATCH"}
    assert all(body.path.startswith("/v1/") == (body.method == "POST" and body.path != "/segment") for body in bodies)


def _delivered(message_id: str, kind: str, user: str, seq: int, mid: str) -> dict:
    holder = "traits" if kind == "identify" else "properties"
    return {"messageId": message_id, "type": kind, holder: {"soak_user": user, "soak_seq": seq, "soak_mid": mid}}


def test_deliveries_tell_order_breaks_split_ids_and_refusals():
    # Given what a sink saw: u1's seq 2 refused then accepted after seq 3; an event under two ids
    entries = [
        (0, 200, _delivered("o1", "identify", "u1", 1, "m1")),
        (1, 500, _delivered("o2", "track", "u1", 2, "m2")),
        (2, 200, _delivered("o3", "track", "u1", 3, "m3")),
        (3, 200, _delivered("o2", "track", "u1", 2, "m2")),
        (3, 200, _delivered("o4", "track", "u2", 1, "n1")),
        (4, 200, _delivered("o5", "track", "u2", 1, "n1")),
    ]
    # When read
    seen = deliveries.analyse(entries)
    # Then
    assert seen.order_violations() == {"u1": [1, 3, 2]}
    assert {mid: ids for mid, ids in seen.ids_by_event.items() if len(ids) > 1} == {"n1": {"o4", "o5"}}
    assert seen.refused_ids == {"o2"} and "o2" in seen.accepted_ids
    assert seen.accepted_events() == {"m2", "m3", "n1"}
    assert seen.last_identify_seq() == {"u1": 1}


def test_oversized_bodies_over_lambdas_limit_expect_api_gateways_500_and_the_rest_their_answer():
    # Given the soak's oversized cases (5 MiB + 1 message, 4,001 messages, 6 MiB of spaces, ~1 MiB)
    # with the media types the generator picks (binary ones arrive base64-encoded in the event)
    from soak import hostile

    cases = [hostile._oversized(random.Random(n), n, "t", "k") for n in range(0, 80_000, 2_000)]
    # Then exactly those whose API Gateway event is over Lambda's 6 MB expect API Gateway's 500
    # (as on AWS), and every 6 MiB body is one of them
    for case in cases:
        assert (case.expect == frozenset({500})) == hostile.lambda_refuses(case), case.number
    assert all(hostile.lambda_refuses(case) for case in cases if len(case.body) > 6 * 1024 * 1024)
    assert any(case.expect == frozenset({200}) for case in cases)
