"""Entered/Left Segment stay exact across profile moves (anonymous -> known) and merges: for every
change the events are the difference between what Segment was last told and the segments now.

Calls go through the inbound API; the table's stream is handed to OutboundFunction as Lambda
would (stream_helpers); a resync runs ResyncFunction's handler with its self-invocations queued.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from harness import TABLE, load_handler_module
from local_stack.lambda_runtime import LambdaContext
from local_stack.template import load_template
from segment_connector.segment_api.delivery import ClientPool
from segment_connector.store import segment_history
from stream_helpers import _loopback_session, failed_sequence_numbers

PRO = {"name": "Pro", "rule": {"trait": "plan", "op": "eq", "value": "pro"}}
VIP = {"name": "VIP", "rule": {"trait": "spent", "op": "gte", "value": 1000}}
RESYNC_TIMEOUT = int(load_template()["Resources"]["ResyncFunction"]["Properties"]["Timeout"])


def identify(message: Any, user_id: str | None, anonymous_id: str | None = None, **traits: Any) -> dict[str, Any]:
    fields = {"userId": user_id} if user_id else {}
    if anonymous_id:
        fields["anonymousId"] = anonymous_id
    return message("identify", traits=traits, **fields)


def recorded(connector: Any) -> Counter[tuple[str, str]]:
    """Entered/Left Segment events stored in the table (each is sent once by the stream)."""
    return Counter(
        (item["event"], item["properties"]["segment"])
        for item in connector.aws.items_of_kind("event")
        if item["event"] in ("Entered Segment", "Left Segment")
    )


def sent(connector: Any) -> Counter[tuple[str, str]]:
    return Counter((name, properties["segment"]) for name, properties in connector.tracks())


class QueuedInvoker:
    def __init__(self) -> None:
        self.queue: deque[dict[str, Any]] = deque()

    def invoke_async(self, function_name: str, payload: dict[str, Any]) -> None:
        self.queue.append(payload)


def run_full_resync(connector: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator starts a manual (full) resync; its invocations run to the end."""
    module = load_handler_module("resync")
    module.clients = ClientPool(session_factory=_loopback_session)
    invoker = QueuedInvoker()
    monkeypatch.setattr(module.resync, "FunctionInvoker", lambda: invoker)
    monkeypatch.setenv("RESYNC_SEGMENTS", "2")
    context = LambdaContext("connector-resync", 512, RESYNC_TIMEOUT)
    module.lambda_handler({"action": "start"}, context)
    while invoker.queue:
        module.lambda_handler(invoker.queue.popleft(), context)
    assert module.lambda_handler({"action": "status"}, context)["status"] == "done"


def test_an_anonymous_user_identifying_into_a_segment_enters_it_once(connector, message):
    # Given an anonymous user outside "Pro", already sent
    connector.settings(segments=[PRO], synchronized_segments=["ALL"])
    connector.post(identify(message, None, "anon-1", plan="free"))
    connector.drain()
    # When it identifies with a userId and traits that put it in "Pro" (the profile moves key)
    connector.post(identify(message, "u1", "anon-1", plan="pro"))
    connector.drain()
    # Then exactly one Entered Segment "Pro" is recorded and sent, as the known user
    assert recorded(connector) == Counter({("Entered Segment", "Pro"): 1})
    assert sent(connector) == Counter({("Entered Segment", "Pro"): 1})
    assert {m["userId"] for m in connector.sent("track")} == {"u1"}


def test_an_anonymous_user_in_a_segment_identifying_does_not_enter_it_again(connector, message):
    # Given an anonymous user in "Pro" (its Entered Segment sent)
    connector.settings(segments=[PRO], synchronized_segments=["ALL"])
    connector.post(identify(message, None, "anon-1", plan="pro"))
    connector.drain()
    # When it identifies with a userId and stays pro
    connector.post(identify(message, "u1", "anon-1", plan="pro", name="Ann"))
    connector.drain()
    # Then no second Entered Segment
    assert recorded(connector) == Counter({("Entered Segment", "Pro"): 1})
    assert sent(connector) == Counter({("Entered Segment", "Pro"): 1})


def test_an_anonymous_user_identifying_out_of_a_segment_leaves_it_once(connector, message):
    # Given an anonymous user in "Pro"
    connector.settings(segments=[PRO], synchronized_segments=["ALL"])
    connector.post(identify(message, None, "anon-1", plan="pro"))
    connector.drain()
    # When it identifies with a userId and traits that take it out of "Pro"
    connector.post(identify(message, "u1", "anon-1", plan="free"))
    connector.drain()
    # Then exactly one Left Segment "Pro"
    assert recorded(connector) == Counter({("Entered Segment", "Pro"): 1, ("Left Segment", "Pro"): 1})
    assert sent(connector)[("Left Segment", "Pro")] == 1


def test_a_move_whose_first_records_arrive_after_it_still_enters_once(connector, message):
    # Given an anonymous user outside "Pro" whose stream record is held back (another shard)
    connector.settings(segments=[PRO], synchronized_segments=["ALL"])
    connector.post(identify(message, None, "anon-1", plan="free"))
    held = list(connector.stream.read())
    connector.stream.pending.clear()
    # When it identifies into "Pro" and the move is processed before the held record
    connector.post(identify(message, "u1", "anon-1", plan="pro"))
    move = list(connector.stream.read())
    connector.stream.pending.clear()
    connector.invoke(move)
    connector.invoke(held)
    connector.drain()
    # Then "Pro" was entered once and never left
    assert recorded(connector) == Counter({("Entered Segment", "Pro"): 1})


def test_an_alias_merge_announces_only_what_neither_profile_had(connector, message):
    # Given an anonymous profile in "Pro" and a known one in "VIP", both announced
    connector.settings(segments=[PRO, VIP], synchronized_segments=["ALL"])
    connector.post(identify(message, None, "anon-1", plan="pro"))
    connector.post(identify(message, "u1", None, spent=5000))
    connector.drain()
    # When an alias call merges them (the merged person is in both)
    connector.post(message("alias", userId="u1", previousId="anon-1"))
    connector.drain()
    # Then neither segment is entered again, and nothing is left
    assert recorded(connector) == Counter({("Entered Segment", "Pro"): 1, ("Entered Segment", "VIP"): 1})
    assert sent(connector) == Counter({("Entered Segment", "Pro"): 1, ("Entered Segment", "VIP"): 1})


def test_a_merge_leaves_once_what_the_merged_person_is_no_longer_in(connector, message):
    # Given an anonymous profile in "Pro" and a known one in "VIP", both announced
    connector.settings(segments=[PRO, VIP], synchronized_segments=["ALL"])
    connector.post(identify(message, None, "anon-1", plan="pro"))
    connector.post(identify(message, "u1", None, spent=5000))
    connector.drain()
    # When the known user identifies with the anonymous id and a plan that is not pro (a merge)
    connector.post(identify(message, "u1", "anon-1", plan="free"))
    connector.drain()
    # Then "Pro" (the absorbed profile's) is left once, "VIP" is not entered again
    assert recorded(connector) == Counter(
        {("Entered Segment", "Pro"): 1, ("Entered Segment", "VIP"): 1, ("Left Segment", "Pro"): 1}
    )


def test_a_merge_enters_once_a_segment_neither_profile_was_in(connector, message):
    # Given an anonymous profile and a known one, neither in "Pro"
    connector.settings(segments=[PRO, VIP], synchronized_segments=["ALL"])
    connector.post(identify(message, None, "anon-1", plan="free"))
    connector.post(identify(message, "u1", None, spent=5))
    connector.drain()
    # When they merge with a pro plan
    connector.post(identify(message, "u1", "anon-1", plan="pro"))
    connector.drain()
    # Then "Pro" is entered once
    assert recorded(connector) == Counter({("Entered Segment", "Pro"): 1})


def test_the_same_stream_records_delivered_twice_announce_nothing_twice(connector, message):
    # Given an anonymous user outside "Pro", then its move into "Pro"
    connector.settings(segments=[PRO, VIP], synchronized_segments=["ALL"])
    connector.post(identify(message, None, "anon-1", plan="free", spent=5000))
    connector.post(identify(message, "u2", None, plan="pro"))
    connector.drain()
    connector.post(identify(message, "u1", "anon-1", plan="pro", spent=0))
    connector.post(message("alias", userId="u1", previousId="u2"))
    records = list(connector.stream.read())
    connector.stream.pending.clear()
    # When Lambda hands the move's and the merge's records twice (a retry), then the events' records
    connector.invoke(records)
    connector.invoke(records)
    connector.drain()
    # Then each Entered/Left is recorded and sent once
    expected = Counter({("Entered Segment", "VIP"): 1, ("Entered Segment", "Pro"): 2, ("Left Segment", "VIP"): 1})
    assert recorded(connector) == expected
    assert sent(connector) == expected


def test_a_resync_after_a_move_announces_nothing_again(connector, message, monkeypatch):
    # Given an anonymous user in "Pro" that identified with a userId (and left nothing)
    connector.settings(segments=[PRO, VIP], synchronized_segments=["ALL"])
    connector.post(identify(message, None, "anon-1", plan="pro"))
    connector.drain()
    connector.post(identify(message, "u1", "anon-1", plan="pro", spent=5000))
    connector.drain()
    assert recorded(connector) == Counter({("Entered Segment", "Pro"): 1, ("Entered Segment", "VIP"): 1})
    # When the operator runs a full resync
    run_full_resync(connector, monkeypatch)
    connector.drain()
    # Then no Entered/Left is recorded or sent again (the identify is)
    assert recorded(connector) == Counter({("Entered Segment", "Pro"): 1, ("Entered Segment", "VIP"): 1})
    assert sent(connector) == Counter({("Entered Segment", "Pro"): 1, ("Entered Segment", "VIP"): 1})
    assert [m.get("userId") for m in connector.sent("identify")][-1] == "u1"


def test_a_crash_between_the_history_claim_and_the_event_store_announces_once_on_retry(connector, message, monkeypatch):
    # Given an anonymous user outside "Pro", and the function killed once after claiming the
    # move's history, before its Entered event is stored
    connector.settings(segments=[PRO], synchronized_segments=["ALL"])
    connector.post(identify(message, None, "anon-1", plan="free"))
    connector.drain()
    complete = segment_history.complete
    calls = []

    def killed_once(*args: Any, **kwargs: Any) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise TimeoutError("killed")
        return complete(*args, **kwargs)

    monkeypatch.setattr(segment_history, "complete", killed_once)
    # When it identifies into "Pro" and the stream retries the failed record
    connector.post(identify(message, "u1", "anon-1", plan="pro"))
    first = connector.drain()
    assert first[-1]["batchItemFailures"]
    assert recorded(connector) == Counter()  # claimed, not stored yet
    connector.drain()
    # Then "Pro" is entered once, recorded and sent once, and nothing is left pending
    assert recorded(connector) == Counter({("Entered Segment", "Pro"): 1})
    assert sent(connector) == Counter({("Entered Segment", "Pro"): 1})
    assert not any(item.get("pending") for item in connector.aws.items_of_kind("seghist"))


def both_read_first(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The first two segment-history reads (one per thread) each wait for the other before
    returning: both plan from the same history, neither has written yet. Returns who passed."""
    read, meeting, lock = segment_history.read, threading.Barrier(2, timeout=30), threading.Lock()
    passed: list[int] = []

    def held(*args: Any, **kwargs: Any) -> dict[str, segment_history.Announced]:
        found = read(*args, **kwargs)
        with lock:
            first_two = len(passed) < 2
            if first_two:
                passed.append(threading.get_ident())
        if first_two:
            meeting.wait()
        return found

    monkeypatch.setattr(segment_history, "read", held)
    return passed


def retried(connector: Any, records: list[dict[str, Any]], response: Any) -> None:
    """The stream hands a batch again from its first failed record, until none fails."""
    for _ in range(3):
        failed = failed_sequence_numbers(response)
        if not failed:
            return
        first = next(i for i, r in enumerate(records) if r["dynamodb"]["SequenceNumber"] in failed)
        response = connector.invoke(records[first:])
    raise AssertionError("still failing")


def test_a_live_change_and_a_resync_page_planned_from_one_history_enter_once(connector, message, monkeypatch):
    # Given a known user outside "Pro" (announced), then its change into "Pro" waiting in the stream
    connector.settings(segments=[PRO], synchronized_segments=["ALL"])
    connector.post(identify(message, "u1", None, plan="free"))
    connector.drain()
    connector.post(identify(message, "u1", None, plan="pro"))
    live = list(connector.stream.read())
    connector.stream.pending.clear()
    passed = both_read_first(monkeypatch)
    # When the live record and a full resync's page read the person's history at the same moment
    with ThreadPoolExecutor(max_workers=2) as pool:
        stream = pool.submit(connector.invoke, live)
        resync = pool.submit(run_full_resync, connector, monkeypatch)
        response = stream.result()
        resync.result()
    assert len(set(passed)) == 2  # both threads planned from the same history
    retried(connector, live, response)
    connector.drain()
    # Then "Pro" is entered once (recorded and sent), and the history says so
    assert recorded(connector) == Counter({("Entered Segment", "Pro"): 1})
    assert sent(connector) == Counter({("Entered Segment", "Pro"): 1})
    (history,) = connector.aws.items_of_kind("seghist")
    assert history["segments"] == ["Pro"] and not history.get("pending")


def test_two_records_of_a_merged_person_processed_side_by_side_announce_once(connector, message, monkeypatch):
    # Given an anonymous profile and a known one in "VIP" (announced); the anonymous one's change
    # into "Pro" is held in its shard while the merge of both (in "Pro" and "VIP") is in another
    connector.settings(segments=[PRO, VIP], synchronized_segments=["ALL"])
    connector.post(identify(message, None, "anon-1", plan="free"))
    connector.post(identify(message, "u1", None, spent=5000))
    connector.drain()
    connector.post(identify(message, None, "anon-1", plan="pro"))
    anonymous = list(connector.stream.read())
    connector.stream.pending.clear()
    connector.post(identify(message, "u1", "anon-1"))
    merge = list(connector.stream.read())
    connector.stream.pending.clear()
    assert anonymous and merge
    passed = both_read_first(monkeypatch)
    # When the two shards' records are processed side by side, from the same histories
    with ThreadPoolExecutor(max_workers=2) as pool:
        responses = list(pool.map(connector.invoke, [anonymous, merge]))
    assert len(set(passed)) == 2
    retried(connector, anonymous, responses[0])
    retried(connector, merge, responses[1])
    connector.drain()
    # Then "Pro" is entered once, "VIP" is not entered again, nothing is left
    assert recorded(connector) == Counter({("Entered Segment", "Pro"): 1, ("Entered Segment", "VIP"): 1})
    assert sent(connector) == Counter({("Entered Segment", "Pro"): 1, ("Entered Segment", "VIP"): 1})


def test_a_resync_page_killed_after_claiming_the_history_is_exact_when_resumed(connector, message, monkeypatch):
    # Given a known user outside "Pro" (announced) whose profile is changed into "Pro" without the
    # stream seeing it yet, and a resync page killed once after claiming the history, before
    # storing its Entered event
    connector.settings(segments=[PRO], synchronized_segments=["ALL"])
    connector.post(identify(message, "u1", None, plan="free"))
    connector.drain()
    connector.post(identify(message, "u1", None, plan="pro"))
    live = list(connector.stream.read())
    connector.stream.pending.clear()
    complete, calls = segment_history.complete, []

    def killed_once(*args: Any, **kwargs: Any) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise TimeoutError("killed")
        return complete(*args, **kwargs)

    monkeypatch.setattr(segment_history, "complete", killed_once)
    # When the resync runs (its failed page is run again) and the live record comes after it
    run_full_resync(connector, monkeypatch)
    assert calls and recorded(connector) == Counter({("Entered Segment", "Pro"): 1})
    connector.invoke(live)
    connector.drain()
    # Then "Pro" is entered once: the resync's claimed event, not a second one of the live record
    assert recorded(connector) == Counter({("Entered Segment", "Pro"): 1})
    assert sent(connector) == Counter({("Entered Segment", "Pro"): 1})
    assert not any(item.get("pending") for item in connector.aws.items_of_kind("seghist"))


def test_a_history_written_before_versions_were_kept_is_claimed_once(connector, message):
    # Given a known user in "Pro" whose history was written without a version (before this change)
    connector.settings(segments=[PRO, VIP], synchronized_segments=["ALL"])
    connector.post(identify(message, "u1", None, plan="pro"))
    connector.drain()
    (history,) = connector.aws.items_of_kind("seghist")
    connector.aws.dynamodb.update_item(
        TableName=TABLE,
        Key={"pk": {"S": history["pk"]}, "sk": {"S": history["sk"]}},
        UpdateExpression="REMOVE version",
    )
    # When it changes into "VIP" too
    connector.post(identify(message, "u1", None, spent=5000))
    connector.drain()
    # Then "VIP" is entered once, and the history now has a version
    assert recorded(connector) == Counter({("Entered Segment", "Pro"): 1, ("Entered Segment", "VIP"): 1})
    (history,) = connector.aws.items_of_kind("seghist")
    assert history["version"] == 1 and sorted(history["segments"]) == ["Pro", "VIP"]
