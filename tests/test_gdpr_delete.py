"""GDPR delete: answered once recorded (a tombstone), then swept in bounded, restartable steps by
OutboundFunction from the table's stream (segment_connector/deletion.py)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from harness import TABLE, TEST_DEPLOYMENT, Api, Aws, iam_authority, template_without
from local_stack.iam.deployment import authority_for
from local_stack.iam.enforce import enforce
from resync_helpers import Resync
from segment_connector.domain.models.items import StoredEvent, identity_pk
from segment_connector.inbound import identity
from segment_connector.outbound import deletion as sweep
from segment_connector.resync import clock as resync_clock
from segment_connector.store import deletion, deletions_pending
from segment_connector.store import profile_store as storage
from segment_connector.store.table import serialize
from stream_helpers import Connector, failed_sequence_numbers

PERSONAL = ("user", "alias", "event", "ids", "sync", "seghist", "deletion", "deletion_pending")


class CountingClient:
    """The outbound's DynamoDB client, counting the requests made through it."""

    def __init__(self, client: Any):
        self.client = client
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)
        if not callable(method) or name.startswith("_"):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return method(*args, **kwargs)

        return call


def put_events(aws: Aws, partition: str, count: int, prefix: str) -> None:
    """Given `count` events stored under `partition` (written directly: an administrator's set-up)."""
    for start in range(0, count, 25):
        requests = [
            {
                "PutRequest": {
                    "Item": serialize(
                        StoredEvent.build(
                            partition,
                            f"{prefix}-{n}",
                            "2026-01-01T00:00:00.000Z",
                            type="track",
                            event="E",
                            source="api",
                        ).to_item()
                    )
                }
            }
            for n in range(start, min(start + 25, count))
        ]
        aws.dynamodb.batch_write_item(RequestItems={TABLE: requests})


def profile_item(aws: Aws, pk: str) -> dict[str, Any]:
    return next(i for i in aws.items() if i["pk"] == pk and i["kind"] == "user")


def put_sync_item(aws: Aws, uid: str) -> None:
    aws.dynamodb.put_item(
        TableName=TABLE, Item=serialize({"pk": f"sync#user#{uid}", "sk": "sync", "kind": "sync", "view": "v1"})
    )


def left(aws: Aws) -> list[tuple[str, str]]:
    return sorted((i["pk"], i["sk"]) for i in aws.items() if i.get("kind") in PERSONAL)


def three_partition_user(connector: Connector, aws: Aws, events: int) -> str:
    """Given u1 with anonymous id a1 and an aliased user id old-u, `events` events spread over the
    three partitions, a sync item; the stream's records so far handled. Returns the profile's uid."""
    connector.post({"type": "identify", "userId": "old-u", "messageId": "i0", "traits": {"plan": "x"}})
    connector.post({"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "i1"})
    connector.post({"type": "alias", "userId": "u1", "previousId": "old-u", "messageId": "al1"})
    partitions = [identity_pk("user_id", "u1"), identity_pk("anonymous_id", "a1"), identity_pk("user_id", "old-u")]
    for index, partition in enumerate(partitions):
        put_events(aws, partition, events // 3 + (1 if index < events % 3 else 0), f"e{index}")
    uid = str(profile_item(aws, identity_pk("user_id", "u1"))["uid"])
    put_sync_item(aws, uid)
    connector.drain(rounds=50)
    assert not connector.stream.read()
    return uid


def run_steps(connector: Connector, limit: int = 200) -> list[int]:
    """Invoke OutboundFunction with the stream's records until none is left; the requests of each."""
    counting = CountingClient(storage._shared.client)  # type: ignore[union-attr]
    storage._shared.client = counting  # type: ignore[union-attr]
    per_step: list[int] = []
    try:
        for _ in range(limit):
            if not connector.stream.read():
                return per_step
            before = counting.calls
            response = connector.invoke()
            assert not failed_sequence_numbers(response), response
            per_step.append(counting.calls - before)
    finally:
        storage._shared.client = counting.client  # type: ignore[union-attr]
    raise AssertionError("the deletion did not finish")


def test_a_user_with_events_in_three_partitions_is_deleted_completely_in_bounded_steps(
    connector: Connector, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a user with 2,500 events in three partitions (anonymous id, user id, an aliased user id)
    three_partition_user(connector, aws, 2_500)
    sent_before = len(connector.sent())
    monkeypatch.setattr(sweep, "STEP_REQUESTS", 30)
    # When Segment deletes the user, and OutboundFunction works the stream
    status, answer = connector.api.post("/segment", {"type": "delete", "userId": "u1", "messageId": "d1"})
    assert status == 200, answer
    steps = run_steps(connector)
    # Then nothing of the person is left: profile, aliases, events, sync item, tombstone
    assert left(aws) == []
    # in several steps, each within its budget (+ reading and recording the tombstone)
    assert len(steps) >= 5
    assert max(steps) <= 30 + 2, steps
    # and the sweep sent nothing to Segment
    assert len(connector.sent()) == sent_before


def test_the_delete_is_answered_before_the_sweep_and_the_profile_is_gone_at_once(
    connector: Connector, aws: Aws
) -> None:
    # Given a user with events
    three_partition_user(connector, aws, 30)
    # When Segment deletes the user
    status, answer = connector.api.post("/segment", {"type": "delete", "userId": "u1", "messageId": "d1"})
    # Then the call is answered 200 with the deletion recorded, before any event is swept
    assert status == 200 and answer["stored"] == 1, answer
    (tombstone,) = aws.items_of_kind("deletion")
    assert tombstone["deleted_at"] and tombstone["step"] == 0
    assert len(aws.items_of_kind("event")) == 30
    # and no profile is left to read or to send
    assert aws.items_of_kind("user") == []
    # When Segment delivers the delete again (a retry): it is a duplicate, not a second deletion
    status, answer = connector.api.post("/segment", {"type": "delete", "userId": "u1", "messageId": "d1"})
    assert status == 200 and answer["duplicate"] == 1, answer
    assert len(aws.items_of_kind("deletion")) == 1


def test_the_profile_api_shows_nothing_of_a_deleted_user_while_the_sweep_has_not_run(
    connector: Connector, aws: Aws
) -> None:
    # Given a user with events under each of its ids, and an unrelated visitor seen only through events
    three_partition_user(connector, aws, 30)
    put_events(aws, identity_pk("anonymous_id", "visitor"), 2, "v")
    # When Segment deletes the user and the sweep has not run yet (its events are still stored)
    assert connector.api.post("/segment", {"type": "delete", "userId": "u1", "messageId": "d1"})[0] == 200
    assert len(aws.items_of_kind("event")) == 32
    # Then none of the deleted person's ids answers with a stand-in built from those events
    for reference in ("user_id:u1", "anonymous_id:a1", "user_id:old-u"):
        status, body = connector.api.get(f"/v1/users/{reference}")
        assert status == 404, (reference, body)
    # and a visitor seen only through events is still answered as before
    assert connector.api.get("/v1/users/anonymous_id:visitor")[0] == 200
    # When the sweep has run: still nothing
    run_steps(connector)
    assert connector.api.get("/v1/users/user_id:u1")[0] == 404


def test_a_step_killed_midway_is_run_again_and_the_deletion_completes(
    connector: Connector, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a user with 1,200 events and a step that dies after two batches of deletes
    three_partition_user(connector, aws, 1_200)
    connector.api.post("/segment", {"type": "delete", "userId": "u1", "messageId": "d1"})
    real = deletion.DeletionStore.delete_keys
    calls = {"n": 0}

    def dying(self: deletion.DeletionStore, keys: list[tuple[str, str]]) -> int:
        calls["n"] += 1
        if calls["n"] > 2:
            raise RuntimeError("killed")
        return real(self, keys)

    monkeypatch.setattr(deletion.DeletionStore, "delete_keys", dying)
    # When OutboundFunction works the stream: the step fails and its record is reported
    response = connector.invoke()
    assert failed_sequence_numbers(response)
    assert 0 < len(aws.items_of_kind("event")) < 1_200
    # and is handed again (the stream's retry) once the fault is gone
    monkeypatch.setattr(deletion.DeletionStore, "delete_keys", real)
    run_steps(connector)
    # Then nothing is left
    assert left(aws) == []


def test_a_profile_over_the_anonymous_id_bound_is_deleted_with_the_dropped_ids(
    connector: Connector, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a profile bounded to 5 anonymous ids that has seen 12, each with an event of its own
    monkeypatch.setattr(identity, "MAX_ANONYMOUS_IDS", 5)
    for n in range(12):
        connector.post({"type": "identify", "userId": "u1", "anonymousId": f"a{n}", "messageId": f"i{n}"})
        connector.post({"type": "track", "anonymousId": f"a{n}", "event": "E", "messageId": f"t{n}"})
    profile = profile_item(aws, identity_pk("user_id", "u1"))
    assert len(profile["anonymous_ids"]) == 5
    assert {pk for i in aws.items_of_kind("ids") for pk in i["ids"]} == {
        identity_pk("anonymous_id", f"a{n}") for n in range(7)
    }
    connector.drain()
    # When Segment deletes the user and the sweep runs
    connector.api.post("/segment", {"type": "delete", "userId": "u1", "messageId": "d1"})
    run_steps(connector)
    # Then the aliases of the dropped ids and their events are gone too
    assert left(aws) == []


def test_a_merged_profiles_dropped_ids_are_deleted_too(
    connector: Connector, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given old-u, bounded to 3 anonymous ids, that saw 6 (3 dropped, each with an event), merged
    # into u1 by an alias call
    monkeypatch.setattr(identity, "MAX_ANONYMOUS_IDS", 3)
    for n in range(6):
        connector.post({"type": "identify", "userId": "old-u", "anonymousId": f"b{n}", "messageId": f"i{n}"})
        connector.post({"type": "track", "anonymousId": f"b{n}", "event": "E", "messageId": f"t{n}"})
    connector.post({"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "j1"})
    connector.post({"type": "alias", "userId": "u1", "previousId": "old-u", "messageId": "al1"})
    connector.drain()
    # When Segment deletes u1 and the sweep runs
    connector.api.post("/segment", {"type": "delete", "userId": "u1", "messageId": "d1"})
    run_steps(connector)
    # Then old-u's dropped ids (kept under its own uid) are gone with their events
    assert left(aws) == []


def test_a_message_after_the_delete_starts_a_new_profile_whose_events_survive_the_sweep(
    connector: Connector, aws: Aws
) -> None:
    # Given a user with events, deleted
    three_partition_user(connector, aws, 60)
    connector.api.post("/segment", {"type": "delete", "userId": "u1", "messageId": "d1"})
    # When the user comes back before the sweep ran (messages received after the delete)
    later = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    connector.post({"type": "identify", "userId": "u1", "messageId": "n1", "traits": {"new": 1}, "timestamp": later})
    connector.post({"type": "track", "userId": "u1", "anonymousId": "a1", "event": "Back", "messageId": "n2"})
    connector.post({"type": "track", "userId": "u1", "event": "Again", "messageId": "n3", "timestamp": later})
    run_steps(connector)
    # Then the new profile and its events survive; nothing of before the delete does
    status, user = connector.api.get("/v1/users/user_id:u1")
    assert status == 200 and user["traits"] == {"new": 1}
    assert sorted(e["message_id"] for e in aws.items_of_kind("event")) == ["n2", "n3"]
    assert aws.items_of_kind("deletion") == []
    assert not [i for i in aws.items() if i["pk"] == identity_pk("user_id", "old-u")]


def test_the_sync_item_of_the_deleted_profile_is_removed(connector: Connector, aws: Aws) -> None:
    # Given a user whose resync marker exists
    uid = three_partition_user(connector, aws, 3)
    assert [i for i in aws.items() if i["pk"] == f"sync#user#{uid}"]
    # When the user is deleted and the sweep runs
    connector.api.post("/segment", {"type": "delete", "userId": "u1", "messageId": "d1"})
    run_steps(connector)
    # Then the marker is gone
    assert aws.items_of_kind("sync") == []


def test_a_delete_of_ids_never_seen_as_a_profile_erases_their_events(connector: Connector, aws: Aws) -> None:
    # Given events of an anonymous id that no identify ever named
    put_events(aws, identity_pk("anonymous_id", "lonely"), 40, "l")
    # When it is deleted and the sweep runs
    connector.api.post("/segment", {"type": "delete", "anonymousId": "lonely", "messageId": "d1"})
    run_steps(connector)
    # Then its events are gone
    assert left(aws) == []


def test_the_sweep_needs_outbounds_batch_write_grant(connector: Connector, aws: Aws, api: Api, tmp_path: Path) -> None:
    # Given OutboundFunction's role without dynamodb:BatchWriteItem
    three_partition_user(connector, aws, 3)
    api.post("/segment", {"type": "delete", "userId": "u1", "messageId": "d1"})
    enforce(
        authority_for(
            TEST_DEPLOYMENT, template_without("OutboundFunction", "dynamodb:BatchWriteItem", tmp_path), record=False
        )
    )
    try:
        # When the step runs
        response = connector.invoke()
    finally:
        enforce(iam_authority())
    # Then it is denied and its record is retried; the events are still there
    assert failed_sequence_numbers(response)
    assert len(aws.items_of_kind("event")) == 3


def test_the_same_step_handed_twice_at_once_is_worked_once(
    connector: Connector, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a deletion in progress whose step record is handed to two invocations at the same time
    three_partition_user(connector, aws, 1_500)
    monkeypatch.setattr(sweep, "STEP_REQUESTS", 30)
    connector.api.post("/segment", {"type": "delete", "userId": "u1", "messageId": "d1"})
    (record,) = connector.stream.read()
    connector.stream.pending.clear()
    # When both run it
    with ThreadPoolExecutor(max_workers=2) as pool:
        responses = list(pool.map(lambda _: connector.handler({"Records": [record]}), range(2)))
    # Then both succeed, one step is recorded (one next record), and the deletion completes
    assert not any(failed_sequence_numbers(response) for response in responses)
    (tombstone,) = aws.items_of_kind("deletion")
    assert tombstone["step"] == 1
    run_steps(connector)
    assert left(aws) == []


def as_segment_sends(connector: Connector, call: dict[str, Any], attempts: int = 5) -> tuple[int, Any]:
    """POST a call as Segment does: a 503 (too many concurrent updates of one profile: a loaded machine
    runs out of the write retries) is sent again; the answer to the last attempt."""
    for _ in range(attempts):
        status, body = connector.api.post("/segment", call)
        if status != 503:
            break
    return status, body


def test_identifies_racing_the_delete_never_keep_the_deleted_profile(connector: Connector, aws: Aws) -> None:
    # Given u1 with a trait, and its uid
    uid = three_partition_user(connector, aws, 3)
    # When the delete and identifies of u1 arrive at the same time
    later = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    calls = [{"type": "delete", "userId": "u1", "messageId": "d1"}] + [
        {"type": "identify", "userId": "u1", "messageId": f"n{n}", "traits": {"n": n}, "timestamp": later}
        for n in range(6)
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda call: as_segment_sends(connector, call), calls))
    assert all(status == 200 for status, _ in answers), answers
    run_steps(connector)
    # Then what is left is a new profile (new uid), without what the deleted one had
    users = aws.items_of_kind("user")
    assert all(user["uid"] != uid and "plan" not in user["traits"] for user in users), users
    assert aws.items_of_kind("deletion") == []


PRO = {"name": "Pro", "rule": {"trait": "plan", "op": "eq", "value": "pro"}}
STREAM_ATTEMPTS = 1 + 6  # the mapping's MaximumRetryAttempts: then the stream drops the record


def merged_user_with_history(connector: Connector, aws: Aws) -> list[str]:
    """Given old-u and u1, both in "Pro" and announced, then old-u merged into u1 by an alias call:
    two segment histories (one per uid). Returns the uids."""
    connector.settings(segments=[PRO], synchronized_segments=["ALL"])
    connector.post({"type": "identify", "userId": "old-u", "messageId": "i0", "traits": {"plan": "pro"}})
    connector.post(
        {"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "i1", "traits": {"plan": "pro"}}
    )
    connector.drain(rounds=20)
    connector.post({"type": "alias", "userId": "u1", "previousId": "old-u", "messageId": "al1"})
    connector.drain(rounds=20)
    histories = aws.items_of_kind("seghist")
    assert len(histories) == 2, histories
    return [str(item["pk"]).removeprefix("seghist#") for item in histories]


def test_the_sweep_deletes_the_segment_history_of_every_uid_merged_ones_included(
    connector: Connector, aws: Aws
) -> None:
    # Given u1 with old-u merged into it, each with its segment history
    uids = merged_user_with_history(connector, aws)
    # When Segment deletes u1 and the sweep runs
    connector.api.post("/segment", {"type": "delete", "userId": "u1", "messageId": "d1"})
    run_steps(connector)
    # Then both histories are gone with the rest of the person
    assert not [i for i in aws.items() if i["pk"] in {f"seghist#{uid}" for uid in uids}]
    assert left(aws) == []


def fail_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every deletion step dies (an exception) after it read its tombstone."""

    def dying(self: deletion.DeletionStore, partition: str, before: str) -> list[tuple[str, str]]:
        raise RuntimeError("killed")

    monkeypatch.setattr(deletion.DeletionStore, "event_keys", dying)


def dashboard_deletions(console_api: Api) -> dict[str, Any]:
    status, board = console_api.get("/console/api/dashboard")
    assert status == 200, board
    deletions: dict[str, Any] = board["deletions"]
    return deletions


def test_a_deletion_the_stream_gave_up_on_is_shown_then_resumed_by_the_schedule_and_completes(
    connector: Connector, aws: Aws, console_api: Api, sink: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a user with events, deleted: the deletion is registered as in progress with its tombstone
    three_partition_user(connector, aws, 90)
    assert dashboard_deletions(console_api)["in_progress"] == 0
    connector.api.post("/segment", {"type": "delete", "userId": "u1", "messageId": "d1"})
    (registration,) = aws.items_of_kind("deletion_pending")
    assert registration["pk"] == "deletions" and registration["sk"] == "deletion#d1"
    # And its step dies on every attempt until the stream gives up on the record
    real = deletion.DeletionStore.event_keys
    fail_steps(monkeypatch)
    for _ in range(STREAM_ATTEMPTS):
        assert failed_sequence_numbers(connector.invoke())
    connector.stream.pending.clear()
    assert len(aws.items_of_kind("event")) == 90 and len(aws.items_of_kind("deletion")) == 1
    # Then the console shows it in progress, with the oldest's age
    shown = dashboard_deletions(console_api)
    assert shown["in_progress"] == 1 and shown["oldest_deleted_at"] == registration["deleted_at"]
    assert isinstance(shown["oldest_age_seconds"], int) and shown["oldest_age_seconds"] >= 0
    # When the fault is gone and ResyncFunction's schedule fires before the deletion counts as stalled
    monkeypatch.setattr(deletion.DeletionStore, "event_keys", real)
    resyncs = Resync(aws, sink, monkeypatch)
    resyncs.invoke({"action": "status"})
    # Then nothing restarts it yet
    assert connector.stream.read() == []
    # When the schedule fires once its last step is older than STALLED_SECONDS
    later = resync_clock.utcnow() + timedelta(seconds=deletions_pending.STALLED_SECONDS + 1)
    monkeypatch.setattr(resync_clock, "utcnow", lambda: later)
    resyncs.invoke({"action": "status"})
    # Then its tombstone is touched (the next step's stream record) and the sweep runs to the end
    (tombstone,) = aws.items_of_kind("deletion")
    assert tombstone["step"] == 1 and tombstone["resumed"] == 1
    run_steps(connector)
    assert left(aws) == []
    assert dashboard_deletions(console_api) == {"in_progress": 0, "oldest_deleted_at": None, "oldest_age_seconds": None}
    # And the next tick writes nothing: no deletion in progress
    resyncs.invoke({"action": "status"})
    assert connector.stream.read() == [] and aws.items_of_kind("deletion") == []


def test_resuming_a_stalled_deletion_needs_resyncs_update_grant(
    connector: Connector, aws: Aws, sink: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given a deletion whose step record the stream dropped
    three_partition_user(connector, aws, 3)
    connector.api.post("/segment", {"type": "delete", "userId": "u1", "messageId": "d1"})
    connector.stream.skip()
    resyncs = Resync(aws, sink, monkeypatch)
    later = resync_clock.utcnow() + timedelta(seconds=deletions_pending.STALLED_SECONDS + 1)
    monkeypatch.setattr(resync_clock, "utcnow", lambda: later)
    # When the schedule fires with ResyncFunction's role without dynamodb:UpdateItem
    enforce(
        authority_for(
            TEST_DEPLOYMENT, template_without("ResyncFunction", "dynamodb:UpdateItem", tmp_path), record=False
        )
    )
    try:
        answer = resyncs.invoke({"action": "status"})
    finally:
        enforce(iam_authority())
    # Then the status is still answered, the touch is denied and nothing restarts
    assert answer == {"status": "none"}
    (tombstone,) = aws.items_of_kind("deletion")
    assert tombstone["step"] == 0 and connector.stream.read() == []
    # And with the grant back, the next tick resumes it
    resyncs.invoke({"action": "status"})
    run_steps(connector)
    assert left(aws) == []
