"""SegmentClient against a real HTTP server on loopback (SegmentSink), with a fake clock and sleep."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests

from local_stack.segment_sink import SegmentSink
from segment_connector.segment_api.client import HELD_BACK, SegmentClient

WRITE_KEY = "wk_test_123"
DEADLINE = 120.0


@pytest.fixture
def make_client(fake_time):
    session = requests.Session()
    session.trust_env = False  # no proxy between the client and the loopback sink

    def make(url: str, **options) -> SegmentClient:
        return SegmentClient(WRITE_KEY, url, session=session, sleep=fake_time.sleep, clock=fake_time.clock, **options)

    yield make
    session.close()


def track(message_id: str, **properties) -> dict:
    return {"messageId": message_id, "type": "track", "userId": "u1", "event": "Clicked", "properties": properties}


def ids(messages: list[dict]) -> list[str]:
    return [message["messageId"] for message in messages]


# -- batching --------------------------------------------------------------------------------


def test_three_messages_go_in_one_batch_request(sink, make_client):
    # Given three messages
    messages = [track("m1"), track("m2"), track("m3")]
    # When they are sent
    report = make_client(sink.url).send(messages, deadline=DEADLINE)
    # Then one POST /v1/batch carries all of them, in order, with a UTC sentAt
    (request,) = sink.requests
    assert request.path == "/v1/batch"
    assert ids(request.body["batch"]) == ["m1", "m2", "m3"]
    assert request.body["sentAt"].endswith("Z")
    assert datetime.fromisoformat(request.body["sentAt"]).tzinfo is not None
    assert report.delivered == ["m1", "m2", "m3"]
    assert (report.failed, report.rejected, report.requests) == ({}, {}, 1)


def test_batches_are_filled_up_to_max_batch_bytes_in_order(sink, make_client):
    # Given 40 messages of ~500 bytes and a 5,000 byte batch limit
    limit = 5_000
    messages = [track(f"m{i:02}", text="x" * (400 + 7 * i)) for i in range(40)]
    # When they are sent
    report = make_client(sink.url, max_batch_bytes=limit).send(messages, deadline=DEADLINE)
    # Then several requests, each under the limit and each as full as the next message allows
    requests_ = sink.requests
    assert len(requests_) > 1
    sizes = [int(request.headers["Content-Length"]) for request in requests_]
    assert all(size <= limit for size in sizes)
    for size, following in zip(sizes, requests_[1:], strict=False):
        next_message = json.dumps(following.body["batch"][0], separators=(",", ":"))
        assert size + 1 + len(next_message) > limit
    # And the order is preserved
    assert ids(sink.messages) == ids(messages) == report.delivered
    assert report.requests == len(requests_)


def test_2501_messages_need_two_requests(sink, make_client):
    messages = [{"messageId": f"m{i}", "type": "track", "event": "e"} for i in range(2_501)]
    report = make_client(sink.url).send(messages, deadline=DEADLINE)
    assert [len(request.body["batch"]) for request in sink.requests] == [2_500, 1]
    assert len(report.delivered) == 2_501
    assert report.requests == 2


def test_oversize_message_is_rejected_and_the_others_delivered(sink, make_client):
    # Given a message whose JSON is over 32 KB between two normal ones
    messages = [track("m1"), track("big", blob="x" * 33_000), track("m3")]
    # When they are sent
    report = make_client(sink.url).send(messages, deadline=DEADLINE)
    # Then the big one is never sent and reported as rejected
    assert report.rejected == {"big": "message exceeds 32 KB"}
    assert report.delivered == ["m1", "m3"]
    assert ids(sink.messages) == ["m1", "m3"]


def test_sizes_are_measured_in_utf8_bytes(sink, make_client):
    # Given a message of 15,000 "é" (30 KB in UTF-8, 90 KB escaped) and one of 16,001 (32,002 bytes)
    messages = [track("fits", text="é" * 15_000), track("big", text="é" * 16_001)]
    # When they are sent
    report = make_client(sink.url).send(messages, deadline=DEADLINE)
    # Then the first is delivered in a body of UTF-8 characters, the second rejected
    assert (report.delivered, report.rejected) == (["fits"], {"big": "message exceeds 32 KB"})
    (request,) = sink.requests
    assert int(request.headers["Content-Length"]) < 32_000
    assert request.body["batch"][0]["properties"]["text"] == "é" * 15_000


def test_batches_are_packed_by_utf8_size(sink, make_client):
    # Given ten messages of about 2,100 UTF-8 bytes (6,000 escaped) and a 5,000 byte batch limit
    messages = [track(f"m{i}", text="ü" * 1_000) for i in range(10)]
    # When they are sent / Then two go in each request
    make_client(sink.url, max_batch_bytes=5_000).send(messages, deadline=DEADLINE)
    assert [len(request.body["batch"]) for request in sink.requests] == [2] * 5
    assert all(int(request.headers["Content-Length"]) <= 5_000 for request in sink.requests)


def test_a_lone_surrogate_is_sent_as_a_replacement_character_without_failing_the_batch(sink, make_client):
    # Given a message holding a lone surrogate (not encodable in UTF-8) between two others
    messages = [track("m1"), track("odd", name="Zoé \ud800!", emoji="\U0001f389"), track("m3")]
    # When they are sent
    report = make_client(sink.url).send(messages, deadline=DEADLINE)
    # Then all are delivered; the surrogate became U+FFFD and the rest is intact
    assert report.delivered == ["m1", "odd", "m3"]
    assert sink.messages[1]["properties"] == {"name": "Zoé \ufffd!", "emoji": "\U0001f389"}


def test_request_carries_basic_auth_with_the_write_key_and_json_headers(sink, make_client):
    make_client(sink.url).send([track("m1")], deadline=DEADLINE)
    (request,) = sink.requests
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    assert request.write_key == WRITE_KEY
    assert request.headers["Content-Type"] == "application/json"
    assert "segment-connector" in request.headers["User-Agent"]


def test_message_without_message_id_is_a_programmer_error(sink, make_client):
    with pytest.raises(ValueError, match="messageId"):
        make_client(sink.url).send([track("m1"), {"type": "track", "event": "e"}], deadline=DEADLINE)
    assert sink.requests == []  # validated before anything is sent


# -- retries -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_after", "expected_wait"),
    [
        pytest.param("7", 7.0, id="seconds"),
        pytest.param(format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True), 60.0, id="date-capped"),
    ],
)
def test_429_waits_for_retry_after_then_delivers(sink, make_client, fake_time, retry_after, expected_wait):
    # Given Segment rate-limits the first request
    sink.script((429, {"Retry-After": retry_after}, {"error": "slow down"}))
    # When a message is sent
    report = make_client(sink.url).send([track("m1")], deadline=DEADLINE)
    # Then the client waited as told (capped at 60 s) and the retry delivered it
    assert fake_time.waits == [expected_wait]
    assert report.delivered == ["m1"]
    assert report.requests == len(sink.requests) == 2


def test_500_then_200_is_delivered_after_a_backoff(sink, make_client, fake_time):
    sink.script((500, {}, {"error": "oops"}))
    report = make_client(sink.url).send([track("m1")], deadline=DEADLINE)
    assert report.delivered == ["m1"]
    assert report.requests == 2
    (wait,) = fake_time.waits
    assert 0.1 <= wait <= 0.2  # first backoff step, with jitter


def test_persistent_503_fails_the_batch_at_the_deadline_without_raising(sink, make_client, fake_time):
    # Given Segment answers 503 to everything
    sink.responder = lambda path, body: (503, {}, {"error": "unavailable"})
    # When two messages are sent with 30 s to go
    report = make_client(sink.url).send([track("m1"), track("m2")], deadline=30.0)
    # Then they are reported as failed (transient), after growing waits capped at 5 s that stay within the deadline
    assert report.delivered == [] and report.rejected == {}
    assert set(report.failed) == {"m1", "m2"}
    assert report.failed["m1"].startswith("HTTP 503")
    for attempt, wait in enumerate(fake_time.waits):
        delay = min(5.0, 0.2 * 2**attempt)
        assert delay / 2 <= wait <= delay
    assert fake_time.now < 30.0
    assert report.requests == len(sink.requests) == len(fake_time.waits) + 1


def test_connection_refused_is_reported_as_failed(make_client, fake_time):
    # Given a port nobody listens on any more
    with SegmentSink() as closed:
        url = closed.url
    # When a message is sent there
    report = make_client(url).send([track("m1")], deadline=3.0)
    # Then it is retried until the deadline, then reported as failed
    assert report.failed == {"m1": report.failed["m1"]}
    assert report.failed["m1"].startswith("network error: ConnectionError")
    assert report.requests == len(fake_time.waits) + 1 >= 2
    assert WRITE_KEY not in repr(report)


def test_deadline_already_passed_sends_nothing(sink, make_client, fake_time):
    fake_time.now = 10.0
    report = make_client(sink.url).send([track("m1")], deadline=10.0)
    assert report.failed == {"m1": "deadline reached before sending"}
    assert report.requests == 0 and sink.requests == []


# -- permanent errors --------------------------------------------------------------------------


def test_400_is_bisected_down_to_the_bad_message(sink, make_client, fake_time):
    # Given Segment answers 400 to any request containing message "bad"
    def responder(path, body):
        if "bad" in ids(body["batch"]):
            return 400, {}, {"error": "bad message"}
        return None

    sink.responder = responder
    messages = [track("m1"), track("m2"), track("bad"), track("m4")]
    # When the four are sent
    report = make_client(sink.url).send(messages, deadline=DEADLINE)
    # Then halves are sent separately until only the bad one is left and rejected
    assert sorted(report.delivered) == ["m1", "m2", "m4"]
    assert list(report.rejected) == ["bad"]
    assert report.rejected["bad"].startswith("HTTP 400: ") and "bad message" in report.rejected["bad"]
    assert ids(sink.accepted_messages) == ["m1", "m2", "m4"]
    # [m1 m2 bad m4] -> [m1 m2] ok, [bad m4] -> [bad] 400, [m4] ok
    assert report.requests == len(sink.requests) == 5
    assert fake_time.waits == []  # permanent errors are not retried


def test_order_holds_back_later_messages_of_a_user_whose_message_failed(sink, make_client):
    # Given one message per request, and Segment failing every request that carries m1
    sink.responder = lambda path, body: (
        (503, {}, {"error": "unavailable"}) if any(m["messageId"] == "m1" for m in body["batch"]) else None
    )
    messages = [track("m1"), track("m2"), track("m3")]
    order = {"m1": "ann", "m2": "bob", "m3": "ann"}
    # When sent with per-user order
    report = make_client(sink.url, max_batch_messages=1).send(messages, deadline=5.0, order=order)
    # Then bob's message goes, ann's later one is not sent at all
    assert report.delivered == ["m2"]
    assert report.failed["m3"] == HELD_BACK and report.failed["m1"].startswith("HTTP 503")
    assert "m3" not in [m["messageId"] for m in sink.messages]


def test_a_failed_message_without_a_key_holds_nothing_back(sink, make_client):
    # Given one message per request, Segment failing m1, and an order that keys only m3
    sink.responder = lambda path, body: (
        (503, {}, {"error": "unavailable"}) if any(m["messageId"] == "m1" for m in body["batch"]) else None
    )
    messages = [track("m1"), track("m2"), track("m3")]
    # When sent
    report = make_client(sink.url, max_batch_messages=1).send(messages, deadline=5.0, order={"m3": "ann"})
    # Then the messages without a key after m1 are still sent
    assert report.delivered == ["m2", "m3"]
    assert report.failed["m1"].startswith("HTTP 503") and HELD_BACK not in report.failed.values()


def test_retry_for_bounds_the_retrying_of_a_whole_send_well_inside_its_deadline(sink, make_client, fake_time):
    # Given Segment down (503, Retry-After 2 s) and two requests' worth of messages
    sink.responder = lambda path, body: (503, {"Retry-After": "2"}, {"error": "unavailable"})
    client = make_client(sink.url, max_batch_messages=1)
    # When sent with 100 s until the deadline but 10 s of retrying
    report = client.send([track("m1"), track("m2")], deadline=100.0, retry_for=10.0)
    # Then retrying stopped after about 10 s (not 100): the second request got one try, no wait
    assert fake_time.now <= 10.0 and sum(fake_time.waits) <= 10.0
    assert ids(sink.messages).count("m1") > 1 and ids(sink.messages).count("m2") == 1
    assert set(report.failed) == {"m1", "m2"} and "Segment looks down" in report.failed["m2"]
