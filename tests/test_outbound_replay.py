"""Replay of dead letters: started by `{"action": "replay"}`, worked asynchronously page by page
by OutboundFunction invoking itself, one replay at a time (the job item is the lock), a summary
as the answer, progress in the job item; a delivered letter is never sent again nor re-created.

Lambda's asynchronous invocations are held in a queue (`Replays`): the tests run them, one by one
or side by side in threads. The Invoke calls are real botocore calls, checked against the
function's role (its grant to invoke itself), answered before they leave the process."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from harness import PREFIX
from replay_helpers import EVERYONE, Replays, accepted_ids, counts, dead_letter_tracks, replay
from segment_connector.outbound import replay as replay_module
from segment_connector.runtime import config
from segment_connector.segment_api.client import SegmentClient
from segment_connector.store.profile_store import ProfileStore
from stream_helpers import TIMEOUT, failed_sequence_numbers

# -- the basics ----------------------------------------------------------------------------------


def test_replay_answers_a_summary_at_once_and_the_work_sends_the_letters(connector, monkeypatch) -> None:
    # Given three dead letters
    letters = dead_letter_tracks(connector, 3)
    replays = Replays(connector, monkeypatch)
    # When the operator starts a replay
    started = replays.start()
    # Then the answer is a summary (no list of letters), nothing is sent yet, one worker is queued
    assert started["started"] is True and counts(started) == {
        "status": "running",
        "tried": 0,
        "replayed": 0,
        "failed": 0,
    }
    assert started["total"] == 3 and "letters" not in started
    assert connector.sent() == [] and len(replays.queue) == 1
    # When the worker runs / Then every letter is sent with its messageId, deleted, and counted
    replays.run()
    assert counts(replays.job()) == {"status": "done", "tried": 3, "replayed": 3, "failed": 0}
    assert sorted(accepted_ids(connector)) == sorted(json.loads(letter["payload"])["messageId"] for letter in letters)
    assert connector.dead_letters() == []


def test_replay_works_page_by_page_across_invocations(connector, monkeypatch) -> None:
    # Given five dead letters, pages of two, and invocations with time for one page only
    dead_letter_tracks(connector, 5)
    monkeypatch.setattr(replay_module, "PAGE_SIZE", 2)
    replays = Replays(connector, monkeypatch)
    replays.start()
    # When the first worker runs
    replays.step(timeout=30)
    # Then it did one page, recorded it, and queued the next invocation
    assert counts(replays.job()) == {"status": "running", "tried": 2, "replayed": 2, "failed": 0}
    assert len(connector.dead_letters()) == 3 and len(replays.queue) == 1
    # When the chain runs to its end / Then every letter went once, in order
    assert replays.run(timeout=30) == 3
    assert counts(replays.job()) == {"status": "done", "tried": 5, "replayed": 5, "failed": 0}
    assert [m["event"] for m in connector.sent("track")] == [f"E{n}" for n in range(5)]


def test_replay_with_a_limit_tries_only_the_oldest(connector, monkeypatch) -> None:
    letters = dead_letter_tracks(connector, 3)
    job = replay(connector, monkeypatch, limit=2)
    assert counts(job) == {"status": "done", "tried": 2, "replayed": 2, "failed": 0} and job["limit"] == 2
    assert [letter["sk"] for letter in connector.dead_letters()] == [letters[2]["sk"]]


def test_letters_that_still_fail_stay_with_their_reason_and_the_first_errors_are_reported(connector, monkeypatch):
    # Given two dead letters, and Segment rejecting everything
    dead_letter_tracks(connector, 2)
    connector.sink.responder = lambda path, body: (400, {}, {"error": "still invalid"})
    # When replayed
    job = replay(connector, monkeypatch)
    # Then both stay, with the new reason, and the summary gives the first errors
    assert counts(job) == {"status": "done", "tried": 2, "replayed": 0, "failed": 2}
    assert [error["reason"][:15] for error in job["errors"]] == ["replay: HTTP 40"] * 2
    assert all("still invalid" in letter["reason"] for letter in connector.dead_letters())


def test_replay_without_a_write_key_fails_the_job_and_keeps_the_letters(connector, monkeypatch) -> None:
    dead_letter_tracks(connector, 1)
    connector.aws.ssm.delete_parameter(Name=f"{PREFIX}/write-key")
    config.clear_caches()
    job = replay(connector, monkeypatch)
    assert job["status"] == "failed" and "no write key" in job["reason"]
    assert len(connector.dead_letters()) == 1


def test_replay_with_nothing_to_replay_is_done_at_once(connector, monkeypatch) -> None:
    connector.settings(**EVERYONE)
    job = replay(connector, monkeypatch)
    assert counts(job) == {"status": "done", "tried": 0, "replayed": 0, "failed": 0}
    assert connector.sink.requests == []


@pytest.mark.parametrize("limit", [0, -1, "2", 1.5, True])
def test_replay_refuses_a_limit_that_is_not_a_positive_whole_number(connector, limit) -> None:
    connector.settings(**EVERYONE)
    with pytest.raises(ValueError, match="limit"):
        connector.handler({"action": "replay", "limit": limit})


# -- the lock and the races ----------------------------------------------------------------------


def test_two_replays_started_at_once_send_each_letter_once(connector, monkeypatch) -> None:
    # Given four dead letters
    letters = dead_letter_tracks(connector, 4)
    replays = Replays(connector, monkeypatch)
    barrier = threading.Barrier(2)
    answers: list[dict[str, Any]] = []

    def click() -> None:
        barrier.wait()
        answers.append(replays.start())

    # When two operators start a replay at the same moment
    threads = [threading.Thread(target=click) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then one started it, the other got the running replay back, and one worker is queued
    assert sorted(answer["started"] for answer in answers) == [False, True]
    assert answers[0]["id"] == answers[1]["id"] and len(replays.queue) == 1
    # When the worker event is delivered twice (Lambda's asynchronous invocations are at least
    # once) and both copies run side by side
    replays.queue.append(dict(replays.queue[0]))
    workers = [threading.Thread(target=replays.step) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    replays.run()
    # Then every letter was sent exactly once and none is left
    assert sorted(accepted_ids(connector)) == sorted(json.loads(letter["payload"])["messageId"] for letter in letters)
    assert counts(replays.job()) == {"status": "done", "tried": 4, "replayed": 4, "failed": 0}
    assert connector.dead_letters() == []


def test_a_second_start_while_one_runs_sends_nothing_and_never_recreates_a_delivered_letter(
    connector, monkeypatch
) -> None:
    # Given a replay that delivered its first page
    dead_letter_tracks(connector, 4)
    monkeypatch.setattr(replay_module, "PAGE_SIZE", 2)
    replays = Replays(connector, monkeypatch)
    replays.start()
    replays.step(timeout=30)
    sent_before = accepted_ids(connector)
    # When the operator clicks replay again
    again = replays.start()
    # Then it is the running replay, with its progress; nothing new is queued or sent
    assert again["started"] is False and again["tried"] == 2 and len(replays.queue) == 1
    # When the chain ends / Then the delivered letters never came back, and none went twice
    replays.run(timeout=30)
    assert connector.dead_letters() == []
    assert len(accepted_ids(connector)) == len(set(accepted_ids(connector))) == 4
    assert accepted_ids(connector)[:2] == sent_before


def test_a_reason_update_never_recreates_a_letter_another_run_deleted(connector) -> None:
    # Given a letter that a replay delivered and deleted
    (letter,) = dead_letter_tracks(connector, 1)
    store = ProfileStore("connector-test")
    assert store.dead_letters.delete(letter["sk"]) is True
    # When a slower run records its failure for the same letter
    assert store.dead_letters.set_reason(letter["sk"], "replay: HTTP 503") is False
    # Then the letter stays gone, and deleting it again says so
    assert connector.dead_letters() == [] and store.dead_letters.delete(letter["sk"]) is False


class Killed(BaseException):
    """The worker's process stops here (as a timeout or a crash would)."""


@pytest.mark.parametrize("accepted", [False, True], ids=["before-segment-answered", "after-segment-accepted"])
def test_a_replay_killed_mid_page_and_restarted_loses_nothing(connector, monkeypatch, accepted: bool) -> None:
    # Given six dead letters, pages of two, and a worker killed in its second page: before Segment
    # answered, or once Segment accepted the page but before its letters were deleted
    letters = dead_letter_tracks(connector, 6)
    monkeypatch.setattr(replay_module, "PAGE_SIZE", 2)
    replays = Replays(connector, monkeypatch)
    replays.start()
    real_send = SegmentClient.send
    sends = {"n": 0}

    def send(self: SegmentClient, messages: list[dict[str, Any]], **options: Any) -> Any:
        sends["n"] += 1
        if sends["n"] == 2:
            if accepted:
                real_send(self, messages, **options)
            raise Killed()
        return real_send(self, messages, **options)

    monkeypatch.setattr(SegmentClient, "send", send)
    with pytest.raises(Killed):
        replays.step()
    # Then the first page is delivered and gone; the second page's letters are all still kept
    assert counts(replays.job())["tried"] == 2 and len(connector.dead_letters()) == 4
    # When its lease expires (no invocation took it over) / Then the status says it is stalled
    clock = replay_module.wall_clock
    monkeypatch.setattr(replay_module, "wall_clock", lambda: clock() + TIMEOUT + 60)
    assert replays.job()["status"] == "stalled"
    # When the operator starts a replay again
    replays.queue.clear()  # Lambda's retries of the killed invocation are spent
    restarted = replays.start()
    replays.run()
    # Then it replaced the stalled one and every letter is delivered; nothing is left
    assert restarted["started"] is True
    ids = accepted_ids(connector)
    expected = [json.loads(letter["payload"])["messageId"] for letter in letters]
    assert set(ids) == set(expected) and connector.dead_letters() == []
    assert counts(replays.job()) == {"status": "done", "tried": 4, "replayed": 4, "failed": 0}
    # and nothing went twice, but the page Segment had accepted when the worker died: sent again
    # with the same messageIds (Segment deduplicates on them), never under a new one
    twice = sorted({i for i in ids if ids.count(i) > 1})
    assert twice == (sorted(expected[2:4]) if accepted else [])


# -- records kept whole: planned at replay, with the settings of then --------------------------------


def test_invalid_settings_keep_records_whole_before_the_stream_gives_up_and_replay_sends_them(
    connector, message, monkeypatch
) -> None:
    # Given two events in the stream, settings broken by the operator, and records kept after 2 attempts
    monkeypatch.setenv("DEAD_LETTER_AFTER_ATTEMPTS", "2")
    connector.settings(**EVERYONE)
    connector.post(message("track", userId="u1", event="A"), message("track", userId="u2", event="B"))
    connector.aws.ssm.put_parameter(
        Name=f"{PREFIX}/settings", Value='{"synchronized_segments": ["Nope"]}', Type="String", Overwrite=True
    )
    config.clear_caches()
    # When the stream hands the batch over (its first try, then its retry)
    assert failed_sequence_numbers(connector.invoke()) != []
    second = connector.invoke()
    # Then nothing is sent, and the second attempt kept both records whole (their images), so the
    # stream never sends them to its on-failure queue with metadata only
    assert failed_sequence_numbers(second) == [] and connector.sink.requests == []
    letters = connector.dead_letters()
    assert [letter["message_id"][:7] for letter in letters] == ["record-", "record-"]
    kept = json.loads(letters[0]["payload"])["stream_record"]
    assert kept["dynamodb"]["NewImage"]["event"] == {"S": "A"}
    assert "settings invalid" in letters[0]["reason"] and "after 2 attempts" in letters[0]["reason"]
    # When the operator fixes the settings and replays / Then both events are planned and sent then
    connector.settings(**EVERYONE, send_events=["B"])
    job = replay(connector, monkeypatch)
    assert counts(job) == {"status": "done", "tried": 2, "replayed": 2, "failed": 0}
    assert connector.tracks() == [("B", {})]  # A is not sent: the settings of now say so
    assert connector.dead_letters() == []


def test_a_batch_that_cannot_be_planned_counts_attempts_and_is_kept_whole(connector, message, monkeypatch) -> None:
    # Given records, and DynamoDB failing the batch's reads
    monkeypatch.setenv("DEAD_LETTER_AFTER_ATTEMPTS", "2")
    connector.settings(**EVERYONE)
    connector.post(message("track", userId="u1", event="A"))

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("DynamoDB is unreachable")

    from segment_connector.outbound import reads as outbound
    from segment_connector.store.identities import profiles_at as working

    monkeypatch.setattr(outbound, "profiles_at", broken)
    # When the stream hands it over twice
    assert failed_sequence_numbers(connector.invoke()) != []
    assert failed_sequence_numbers(connector.invoke()) == []
    # Then it is kept whole, and a replay once DynamoDB answers sends it
    (letter,) = connector.dead_letters()
    assert "batch not planned" in letter["reason"] and letter["message_id"].startswith("record-")
    monkeypatch.setattr(outbound, "profiles_at", working)
    assert counts(replay(connector, monkeypatch))["replayed"] == 1
    assert connector.tracks() == [("A", {})]


def test_a_replayed_record_uses_the_message_ids_of_its_original_planning(connector, message, monkeypatch) -> None:
    # Given an event delivered normally, and the same record kept whole (as if it had failed)
    connector.settings(**EVERYONE)
    connector.post(message("track", userId="u1", event="A"))
    (record,) = list(connector.stream.read())
    connector.invoke()
    (sent,) = connector.sent("track")
    from datetime import UTC, datetime

    from segment_connector.segment_api.delivery import DeadLetters, bare_plan

    DeadLetters(ProfileStore("connector-test"), datetime.now(UTC)).keep_record(bare_plan(record, "x"), "x")
    # When it is replayed / Then Segment gets the same messageId (it deduplicates on it)
    replay(connector, monkeypatch)
    assert [m["messageId"] for m in connector.sent("track")] == [sent["messageId"]] * 2
