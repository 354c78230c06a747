"""OutboundFunction, how it is sent: batching, retries, per-user order, dead letters and replay,
invalid settings and a missing write key. Waits are injected (FakeTime): no test sleeps."""

from __future__ import annotations

import json
import time

import pytest
import requests

from harness import PREFIX
from replay_helpers import EVERYONE, replay
from segment_connector.domain.models.items import StoredEvent
from segment_connector.runtime import config
from segment_connector.segment_api.delivery import ClientPool
from segment_connector.store.profile_store import ProfileStore
from stream_helpers import emitted_metrics, failed_sequence_numbers

UNAVAILABLE = (503, {"Retry-After": "60"}, {"error": "unavailable"})


def counts(job):
    """A replay's counts."""
    return {key: job[key] for key in ("replayed", "failed")}


def sequence_numbers(records):
    return [record["dynamodb"]["SequenceNumber"] for record in records]


def test_many_records_go_to_segment_in_one_request(connector, message):
    # Given every user synchronized and 40 events of 8 users in the stream
    connector.settings(**EVERYONE)
    connector.post(*[message("track", userId=f"u{n % 8}", event=f"E{n}") for n in range(40)])
    in_stream = [record["dynamodb"]["NewImage"]["event"]["S"] for record in connector.stream.read()]
    # When the batch is handled
    (response,) = connector.drain()
    # Then one request carried all of them, in stream order
    assert response == {"batchItemFailures": []}
    (request,) = connector.sink.requests
    assert request.path == "/v1/batch" and [m["event"] for m in request.messages] == in_stream
    assert sorted(in_stream) == sorted(f"E{n}" for n in range(40))


def test_a_429_with_retry_after_is_retried_after_the_asked_wait(connector, message):
    # Given Segment answers 429 Retry-After: 7 once
    connector.settings(**EVERYONE)
    connector.sink.script((429, {"Retry-After": "7"}, {"error": "slow down"}))
    connector.post(message("track", userId="u1", event="Bought"))
    # When the record is handled
    (response,) = connector.drain()
    # Then the client waited 7 s (fake clock) and the second try got through
    assert response == {"batchItemFailures": []}
    assert connector.time.waits == [7.0]
    assert [r.status for r in connector.sink.requests] == [429, 200]
    assert connector.tracks() == [("Bought", {})]


def test_a_rejected_message_is_kept_as_a_dead_letter_and_replay_sends_it(connector, message, capsys, monkeypatch):
    # Given Segment rejects the first request for good
    connector.settings(**EVERYONE)
    connector.sink.script((400, {}, {"error": "invalid event"}))
    connector.post(message("track", userId="u1", event="Bought", properties={"sku": "p1"}))
    # When the record is handled
    (response,) = connector.drain()
    # Then the record is done (not retried) and the message is kept with its payload and reason
    assert response == {"batchItemFailures": []}
    (letter,) = connector.dead_letters()
    rejected = connector.sink.messages[0]
    assert json.loads(letter["payload"]) == rejected and letter["message_id"] == rejected["messageId"]
    assert "HTTP 400" in letter["reason"]
    assert emitted_metrics(capsys.readouterr().out).get("MessagesDeadLettered") == 1
    # When the operator replays while Segment still rejects it
    connector.sink.script((400, {}, {"error": "still invalid"}))
    job = replay(connector, monkeypatch)
    assert counts(job) == {"replayed": 0, "failed": 1}
    # Then it is kept, with the new reason, which the summary reports too
    (letter,) = connector.dead_letters()
    assert letter["reason"].startswith("replay: HTTP 400") and "still invalid" in letter["reason"]
    assert job["errors"] == [{"message_id": rejected["messageId"], "reason": letter["reason"]}]
    # When replayed again once Segment accepts it
    job = replay(connector, monkeypatch)
    assert counts(job) == {"replayed": 1, "failed": 0}
    assert emitted_metrics(capsys.readouterr().out).get("DeadLettersReplayed") == 1
    # Then the same message (same messageId) was delivered and the dead letter is gone
    assert connector.sent("track") == [rejected]
    assert connector.dead_letters() == []


def test_a_message_over_32_kb_is_not_sent_but_kept_as_a_dead_letter(connector):
    # Given an event too large for Segment written into the table, and a small one
    connector.settings(**EVERYONE)
    store = ProfileStore("connector-test")
    for message_id, size in (("big", 40_000), ("small", 10)):
        store.events.put(
            StoredEvent.build(
                "id#user_id#u1",
                message_id,
                "2026-01-01T00:00:00.000Z",
                type="track",
                event=message_id,
                properties={"blob": "x" * size},
                source="api",
                user_id="u1",
            )
        )
    # When the records are handled
    (response,) = connector.drain()
    # Then only the small one is sent; the big one is a dead letter with its reason
    assert response == {"batchItemFailures": []}
    assert [event for event, _ in connector.tracks()] == ["small"]
    (letter,) = connector.dead_letters()
    assert json.loads(letter["payload"])["event"] == "big" and "32 KB" in letter["reason"]


# -- UTF-8 ------------------------------------------------------------------------------------------

BIO = "éèàçô" * 2_000  # 10,000 characters: 20 KB in UTF-8, 60 KB as \uXXXX escapes


def record_bodies(connector) -> list[bytes]:
    """The raw bodies of the requests the client sends from now on."""
    bodies: list[bytes] = []

    def session() -> requests.Session:
        session = requests.Session()
        session.trust_env = False
        session.hooks["response"].append(lambda response, *args, **kwargs: bodies.append(response.request.body))
        return session

    connector.module.clients = ClientPool(
        sleep=connector.time.sleep, clock=connector.time.clock, session_factory=session
    )
    return bodies


def test_a_long_non_ascii_trait_is_sent_as_utf8_without_escapes(connector, message):
    # Given a whitelisted bio of 10,000 accented characters (under 32 KB in UTF-8 only)
    connector.settings(**EVERYONE, synchronized_properties=["bio"])
    bodies = record_bodies(connector)
    connector.post(message("identify", userId="u1", traits={"bio": BIO}))
    # When the user is sent
    (response,) = connector.drain()
    # Then Segment receives it, the characters written as UTF-8 in the body
    assert response == {"batchItemFailures": []}
    (sent,) = connector.sent("identify")
    assert sent["traits"]["bio"] == BIO
    (body,) = bodies
    assert BIO.encode() in body and b"\\u00e9" not in body
    assert connector.dead_letters() == []


def test_a_message_over_32_kb_in_utf8_is_kept_as_a_dead_letter(connector):
    # Given an event whose text is 32,002 bytes in UTF-8 (16,001 characters)
    connector.settings(**EVERYONE)
    ProfileStore("connector-test").events.put(
        StoredEvent.build(
            "id#user_id#u1",
            "big",
            "2026-01-01T00:00:00.000Z",
            type="track",
            event="big",
            properties={"text": "é" * 16_001},
            source="api",
            user_id="u1",
        )
    )
    # When it is handled / Then it is not sent but kept
    (response,) = connector.drain()
    assert response == {"batchItemFailures": []}
    assert connector.sink.requests == []
    (letter,) = connector.dead_letters()
    assert "32 KB" in letter["reason"]


def test_a_dead_letter_with_non_ascii_text_replays_unchanged(connector, message, monkeypatch):
    # Given a track with non-ASCII text that Segment rejected once
    text = "Crème brûlée à Besançon — 東京 ✓ 🎉"
    connector.settings(**EVERYONE)
    connector.sink.script((400, {}, {"error": "invalid event"}))
    connector.post(message("track", userId="u1", event="Commandé", properties={"note": text}))
    connector.drain()
    (letter,) = connector.dead_letters()
    assert json.loads(letter["payload"])["properties"] == {"note": text}
    # When it is replayed
    bodies = record_bodies(connector)
    assert counts(replay(connector, monkeypatch)) == {"replayed": 1, "failed": 0}
    # Then Segment gets the same text, in UTF-8
    assert connector.tracks() == [("Commandé", {"note": text})]
    assert text.encode() in bodies[0]


def test_a_transient_failure_fails_the_record_then_becomes_a_dead_letter_after_the_attempts(
    connector, message, monkeypatch
):
    # Given records are dead-lettered after 2 attempts, and Segment is unavailable
    monkeypatch.setenv("DEAD_LETTER_AFTER_ATTEMPTS", "2")
    connector.settings(**EVERYONE)
    connector.sink.responder = lambda path, body: UNAVAILABLE
    connector.post(message("track", userId="u1", event="Bought"))
    records = list(connector.stream.read())
    # When the record is handled
    first = connector.invoke()
    # Then it is reported failed at once (Retry-After 60 s is past the 20 s an invocation retries
    # for: Segment looks down, the stream retries), nothing kept yet
    assert failed_sequence_numbers(first) == sequence_numbers(records)
    assert len(connector.sink.requests) == 1 and connector.time.now < 20
    assert connector.dead_letters() == []
    # When Lambda retries it and it fails again
    second = connector.invoke()
    # Then it is kept as a dead letter instead of failing a third time
    assert failed_sequence_numbers(second) == []
    (letter,) = connector.dead_letters()
    assert "HTTP 503" in letter["reason"] and "after 2 attempts" in letter["reason"]
    # When Segment is back and the operator replays / Then it is delivered
    connector.sink.responder = None
    assert counts(replay(connector, monkeypatch)) == {"replayed": 1, "failed": 0}
    assert [event for event, _ in connector.tracks()] == ["Bought"]


def test_a_record_older_than_the_age_limit_becomes_a_dead_letter_at_once(connector, message, monkeypatch):
    # Given Segment is unavailable and a record older than DEAD_LETTER_AFTER_AGE_SECONDS
    monkeypatch.setenv("DEAD_LETTER_AFTER_AGE_SECONDS", "3000")
    connector.settings(**EVERYONE)
    connector.sink.responder = lambda path, body: UNAVAILABLE
    connector.post(message("track", userId="u1", event="Bought"))
    (record,) = connector.stream.read()
    record["dynamodb"]["ApproximateCreationDateTime"] = int(time.time()) - 3100
    # When it fails for the first time
    response = connector.invoke()
    # Then it is kept as a dead letter rather than reported failed
    assert response == {"batchItemFailures": []}
    assert len(connector.dead_letters()) == 1


def test_after_a_failure_later_messages_of_the_same_user_wait_and_others_go_on(connector, message):
    # Given one message per request, and Segment throttling the first request beyond the 20 s an
    # invocation retries for
    connector.use_client(max_batch_messages=1)
    connector.settings(**EVERYONE)
    connector.sink.script((429, {"Retry-After": "60"}, {}))
    for user, event in (("ann", "A1"), ("bob", "B1"), ("ann", "A2")):
        connector.post(message("track", userId=user, event=event))
    records = list(connector.stream.read())
    # When the batch is handled
    response = connector.invoke()
    # Then Ann's first event failed, Bob's went through, and Ann's second was not sent before her first
    assert [m["event"] for m in connector.sink.messages] == ["A1", "B1"]
    assert failed_sequence_numbers(response) == [sequence_numbers(records)[0], sequence_numbers(records)[2]]
    # When Lambda retries from the first failed record
    assert failed_sequence_numbers(connector.invoke()) == []
    # Then Ann's events arrive in order (Bob's is sent again with the same messageId)
    delivered = [m["event"] for m in connector.sent("track")]
    assert delivered == ["B1", "A1", "B1", "A2"]
    assert len({m["messageId"] for m in connector.sent("track")}) == 3


def test_invalid_settings_report_every_record_failed_without_crashing(connector, message, function_log):
    # Given records in the stream, then settings broken by the operator
    connector.module = function_log.cold_start("OutboundFunction")
    connector.use_client()
    connector.settings(**EVERYONE)
    connector.post(message("track", userId="u1", event="A"), message("track", userId="u2", event="B"))
    records = list(connector.stream.read())
    connector.aws.ssm.put_parameter(
        Name=f"{PREFIX}/settings", Value='{"synchronized_segments": ["Nope"]}', Type="String", Overwrite=True
    )
    config.clear_caches()
    # When the batch is handled
    response = connector.invoke()
    # Then every record is reported failed (an attempt counted), nothing is sent, and the error is logged
    assert failed_sequence_numbers(response) == sequence_numbers(records)
    assert connector.sink.requests == []
    (line,) = function_log.find("records are retried, then kept whole as dead letters")
    assert line["level"] == "ERROR" and "cannot be used (synchronized_segments: " in line["message"]
    # When the operator fixes them / Then Lambda's retry delivers
    connector.settings(**EVERYONE)
    assert failed_sequence_numbers(connector.invoke()) == []
    assert [event for event, _ in connector.tracks()] == ["A", "B"]


def test_without_a_write_key_nothing_is_sent_and_no_record_fails(connector, message, aws):
    # Given no write key (that it is logged once per cold start: test_logs.py)
    aws.ssm.delete_parameter(Name=f"{PREFIX}/write-key")
    config.clear_caches()
    connector.settings(**EVERYONE)
    # When two batches are handled
    connector.post(message("track", userId="u1", event="A"))
    first = connector.drain()
    connector.post(message("track", userId="u1", event="B"), message("track", userId="u2", event="C"))
    second = connector.drain()
    # Then nothing was sent and no record failed
    assert first and second
    assert connector.sink.requests == []
    assert all(failed_sequence_numbers(r) == [] for r in first + second)


def test_message_ids_are_stable_per_change_and_unlike_inbound_ones(connector, message):
    # Given an identify and a track of a synchronized user
    connector.settings(**EVERYONE)
    inbound = [message("identify", userId="u1", traits={"a": 1}), message("track", userId="u1", event="A")]
    connector.post(*inbound)
    records = list(connector.stream.read())
    # When the same records are handled twice (a retry)
    connector.invoke(records)
    connector.invoke(records)
    # Then the retry reused the messageIds, which differ from each other and from the inbound ones
    first, second = connector.sink.requests
    assert [m["messageId"] for m in first.messages] == [m["messageId"] for m in second.messages]
    ids = {m["messageId"] for m in first.messages}
    assert len(ids) == 2 and not ids & {m["messageId"] for m in inbound}


@pytest.mark.parametrize("attempts", ["", "not-a-number"])
def test_unset_or_bad_attempt_limit_falls_back_to_the_default(connector, message, monkeypatch, attempts):
    # Given DEAD_LETTER_AFTER_ATTEMPTS unset or unreadable, and Segment unavailable
    monkeypatch.setenv("DEAD_LETTER_AFTER_ATTEMPTS", attempts)
    connector.settings(**EVERYONE)
    connector.sink.responder = lambda path, body: UNAVAILABLE
    connector.post(message("track", userId="u1", event="A"))
    # When it fails three times / Then it is still retried (the default is 4 attempts)
    for _ in range(3):
        assert failed_sequence_numbers(connector.invoke()) != []
    # When it fails the fourth time / Then it becomes a dead letter
    assert failed_sequence_numbers(connector.invoke()) == []
    assert len(connector.dead_letters()) == 1


def test_while_segment_is_down_an_invocation_stops_early_and_no_record_outlives_the_stream(connector, message):
    # Given Segment down (503, Retry-After 1 s), one message per request, and three users' events
    connector.use_client(max_batch_messages=1)
    connector.settings(**EVERYONE)
    connector.sink.responder = lambda path, body: (503, {"Retry-After": "1"}, {"error": "unavailable"})
    for user in ("ann", "bob", "cid"):
        connector.post(message("track", userId=user, event=f"E-{user}"))
    records = list(connector.stream.read())
    # When the stream hands the batch over
    response = connector.invoke()
    # Then the invocation gives up after about 20 s of retrying (not the ~110 s it has): the later
    # requests get one try each, without waiting, and the records are reported failed for the
    # stream to retry
    assert connector.time.now <= 25
    tries = [m["event"] for m in connector.sink.messages]
    assert tries.count("E-ann") > 1 and tries[-2:] == ["E-bob", "E-cid"]
    assert failed_sequence_numbers(response) == sequence_numbers(records)
    # When the stream retries, within its MaximumRetryAttempts (6)
    retries = 0
    while failed_sequence_numbers(response) and retries < 6:
        response = connector.invoke()
        retries += 1
    # Then, before the stream gives up, every message is kept as a dead letter with its payload
    assert failed_sequence_numbers(response) == [] and retries == 3
    kept = sorted(json.loads(letter["payload"])["event"] for letter in connector.dead_letters())
    assert kept == ["E-ann", "E-bob", "E-cid"]
    assert connector.time.now <= 4 * 25  # far inside the 3,000 s after which records are kept anyway
