"""A settings change resyncs event conditions and computed traits like trait rules (issue 15): the
stored events get what the new rules read of them (`facts`, in their `by_time` entries), and each user
is evaluated with them; outbound tags an event stored with an older (cached) settings document."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from harness import TABLE
from resync_helpers import PRO, put_users
from segment_connector.domain.activity import ActivitySpec
from segment_connector.domain.models.items import StoredEvent, UserProfile, identity_pk
from segment_connector.domain.models.settings import ConnectorSettings
from segment_connector.domain.times import format_time
from segment_connector.resync import work as resync_work
from segment_connector.store.event_facts import EventFacts, Tag
from segment_connector.store.profile_store import ProfileStore
from segment_connector.store.table import WRITE_BATCH, serialize

ORDER = "Order Completed"
BUYERS: dict[str, Any] = {
    "name": "Buyers",
    "rule": {"event": ORDER, "count": {"op": "gte", "value": 2}, "within_days": 30},
}
ANNOUNCEMENTS = ["Entered Segment", "Left Segment"]


def ago(days: float) -> str:
    return format_time(datetime.now(UTC) - timedelta(days=days))


def buyers(days: int) -> dict[str, Any]:
    return {**BUYERS, "rule": {**BUYERS["rule"], "within_days": days}}


def put_events(aws: Any, events: list[tuple[str, str, float, dict[str, Any]]], pk: str | None = None) -> None:
    """Given stored events (user id, name, days ago, properties) as inbound stored them while no
    rule read them: without facts, outside the index."""
    requests = []
    for n, (user_id, name, days, properties) in enumerate(events):
        event = StoredEvent.build(
            pk or identity_pk("user_id", user_id),
            f"{pk or user_id}-{name}-{n}",
            ago(days),
            type="track",
            event=name,
            properties=properties,
            source="segment",
            user_id=user_id,
        )
        requests.append({"PutRequest": {"Item": serialize(event.to_item())}})
    for start in range(0, len(requests), WRITE_BATCH):
        aws.dynamodb.batch_write_item(RequestItems={TABLE: requests[start : start + WRITE_BATCH]})


def orders(user_id: str, *days: float, **properties: Any) -> list[tuple[str, str, float, dict[str, Any]]]:
    return [(user_id, ORDER, day, properties) for day in days]


def events_of(aws: Any, name: str) -> list[dict[str, Any]]:
    return [item for item in aws.items_of_kind("event") if item["event"] == name and item["source"] != "connector"]


def announced(aws: Any) -> Counter[tuple[str, str, str]]:
    return Counter(
        (e["user_id"], e["event"], e["properties"]["segment"])
        for e in aws.items_of_kind("event")
        if e["source"] == "connector"
    )


class Sent:
    """The identify calls Segment accepted after a mark (the sink keeps every request)."""

    def __init__(self, resyncs: Any):
        self.sink = resyncs.sink
        self.mark()

    def mark(self) -> None:
        self.start = len(self.sink.accepted_messages)

    def identifies(self) -> list[dict[str, Any]]:
        return [m for m in self.sink.accepted_messages[self.start :] if m["type"] == "identify"]

    def identified(self) -> Counter[str]:
        return Counter(m["userId"] for m in self.identifies())

    def last_traits(self) -> dict[str, dict[str, Any]]:
        return {m["userId"]: m["traits"] for m in self.identifies()}


class Writes:
    """Counts (and can fail once) the re-tagging's writes of events."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_at: int = 0):
        self.calls, self.fail_at = 0, fail_at
        real = EventFacts.write

        def write(facts: EventFacts, tag: Tag, strict: bool) -> bool:
            self.calls += 1
            if self.calls == self.fail_at:
                raise RuntimeError(f"killed at write #{self.calls}")
            return real(facts, tag, strict)

        monkeypatch.setattr(EventFacts, "write", write)


def test_a_new_event_segment_sends_exactly_the_users_with_two_orders_in_the_window(resyncs, aws):
    # Given users sent with their segments, and orders stored while no rule read events
    resyncs.given_settings(segments=[PRO], synchronized_segments=["ALL"])
    put_users(aws, [{"user_id": name} for name in ("ann", "bob", "cid", "dan")])
    eve = UserProfile(
        pk=identity_pk("user_id", "eve"),
        user_id="eve",
        anonymous_ids=["anon-eve"],
        identities=[identity_pk("user_id", "eve"), identity_pk("anonymous_id", "anon-eve")],
        created_at="2026-01-01T00:00:00.000Z",
        updated_at="2026-01-01T00:00:00.000Z",
        version=2,
    )
    aws.dynamodb.put_item(TableName=TABLE, Item=serialize(eve.to_item()))
    put_events(aws, orders("ann", 3, 10) + orders("bob", 5, 40) + orders("cid", 1, 2, 50))
    put_events(aws, [("dan", "Product Viewed", 1, {}), ("dan", "Product Viewed", 2, {})])
    put_events(aws, orders("eve", 4))
    put_events(aws, orders("eve", 6), pk=identity_pk("anonymous_id", "anon-eve"))  # before eve identified
    assert all("facts" not in event for event in events_of(aws, ORDER))
    # When the settings add "Buyers" (2 orders in 30 days)
    sent = Sent(resyncs)
    resyncs.change_settings(segments=[PRO, BUYERS], synchronized_segments=["ALL"])
    resyncs.run()
    # Then exactly the users with 2 orders in the window are identified with it and enter it
    assert sent.identified() == Counter({"ann": 1, "cid": 1, "eve": 1})
    assert sent.last_traits() == {user: {"hull_segments": ["Buyers"]} for user in ("ann", "cid", "eve")}
    assert announced(aws) == Counter({(user, "Entered Segment", "Buyers"): 1 for user in ("ann", "cid", "eve")})
    assert resyncs.job()["status"] == "done"
    # And every order is in the index now (what later evaluations read); other events are not
    assert all(event["facts"] == {} for event in events_of(aws, ORDER))
    assert all("facts" not in event for event in events_of(aws, "Product Viewed"))


def test_a_condition_on_a_new_property_path_tags_the_events_and_moves_users_by_it(resyncs, aws):
    # Given "Big" = an order of 100 or more, with the orders already tagged for it
    big = {"name": "Big", "rule": {"event": ORDER, "where": {"property": "total", "op": "gte", "value": 100}}}
    put_users(aws, [{"user_id": name} for name in ("ann", "bob", "cid", "dan")])
    put_events(
        aws,
        orders("ann", 2, total=150, shipping={"country": "DE"})
        + orders("bob", 2, total=20, shipping={"country": "FR", "city": "Lyon"})
        + orders("cid", 2, total=200, shipping={"country": "FR"})
        + orders("dan", 2, total=10, shipping={"country": "DE"}),
    )
    resyncs.given_settings(segments=[big], synchronized_segments=["ALL"])
    assert {event["user_id"]: event["facts"] for event in events_of(aws, ORDER)}["bob"] == {"total": 20}
    told, sent = announced(aws), Sent(resyncs)
    # When "Big" becomes "an order shipped to France"
    france = {
        "name": "Big",
        "rule": {"event": ORDER, "where": {"property": "shipping.country", "op": "eq", "value": "FR"}},
    }
    resyncs.change_settings(segments=[france], synchronized_segments=["ALL"])
    resyncs.run()
    # Then ann leaves, bob enters, cid (in both ways) and dan (in neither) are not sent
    assert sent.identified() == Counter({"ann": 1, "bob": 1})
    assert sent.last_traits() == {"ann": {"hull_segments": []}, "bob": {"hull_segments": ["Big"]}}
    assert announced(aws) - told == Counter({("ann", "Left Segment", "Big"): 1, ("bob", "Entered Segment", "Big"): 1})
    # And the orders keep what both settings read (facts are only added)
    facts = {event["user_id"]: event["facts"] for event in events_of(aws, ORDER)}
    assert facts["bob"] == {"total": 20, "shipping": {"country": "FR"}}


def test_a_changed_window_moves_users_without_tagging_anything(resyncs, aws, monkeypatch):
    # Given "Buyers" within 30 days, the orders tagged by its resync (all stored ones, older too)
    put_users(aws, [{"user_id": name} for name in ("ann", "bob", "cid")])
    put_events(aws, orders("ann", 2, 3) + orders("bob", 3, 20) + orders("cid", 35, 40))
    resyncs.given_settings(segments=[buyers(30)], synchronized_segments=["ALL"])
    writes, sent = Writes(monkeypatch), Sent(resyncs)
    # When the window becomes 7 days
    resyncs.change_settings(segments=[buyers(7)], synchronized_segments=["ALL"])
    resyncs.run()
    # Then bob (one order in 7 days) leaves; ann stays; nothing is tagged
    assert sent.identified() == Counter({"bob": 1})
    assert sent.last_traits() == {"bob": {"hull_segments": []}}
    # When it becomes 60 days
    sent.mark()
    resyncs.change_settings(segments=[buyers(60)], synchronized_segments=["ALL"])
    resyncs.run()
    # Then bob enters again, and cid with its orders of 35 and 40 days ago; still nothing tagged
    assert sent.identified() == Counter({"bob": 1, "cid": 1})
    assert all(traits == {"hull_segments": ["Buyers"]} for traits in sent.last_traits().values())
    assert writes.calls == 0


@pytest.mark.parametrize("fail_at", [1, 7, 16])
def test_a_page_killed_while_tagging_and_run_again_sends_nothing_twice(resyncs, aws, monkeypatch, fail_at):
    # Given 30 users sent, the even ones with 2 orders, the odd ones with 1; 2 segments, pages of 5
    users = [f"u{n:02d}" for n in range(30)]
    resyncs.given_settings(segments=[PRO], synchronized_segments=["ALL"])
    put_users(aws, [{"user_id": user} for user in users])
    put_events(aws, [event for n, user in enumerate(users) for event in orders(user, *([1, 2] if n % 2 == 0 else [1]))])
    monkeypatch.setenv("RESYNC_SEGMENTS", "2")
    monkeypatch.setattr(resync_work, "PAGE_SIZE", 5)
    # And the invocation dies at a chosen write of an event, once
    writes, sent = Writes(monkeypatch, fail_at=fail_at), Sent(resyncs)
    # When "Buyers" is added and the invocations (and the retry) run
    resyncs.change_settings(segments=[PRO, BUYERS], synchronized_segments=["ALL"])
    resyncs.run()
    assert writes.calls > fail_at
    # Then each even user got one identify and entered "Buyers" once; nobody else
    buying = users[::2]
    assert sent.identified() == Counter(dict.fromkeys(buying, 1))
    assert announced(aws) == Counter({(user, "Entered Segment", "Buyers"): 1 for user in buying})
    job = resyncs.job()
    assert (job["status"], job["evaluated"]) == ("done", 30)
    assert all(event["facts"] == {} for event in events_of(aws, ORDER))


def test_an_event_stored_with_older_settings_is_tagged_by_outbound(connector, message):
    # Given a user, and 2 orders that inbound stored while its cached settings read no events
    connector.settings(segments=[], synchronized_segments=["ALL"], send_events=ANNOUNCEMENTS)
    connector.post(message("identify", userId="u1", traits={"plan": "free"}))
    connector.drain()
    for days in (1, 2):
        connector.post(message("track", userId="u1", event=ORDER, properties={"total": 5}, timestamp=ago(days)))
    # When the stream reaches them under settings with "Buyers"
    connector.settings(segments=[BUYERS], synchronized_segments=["ALL"], send_events=ANNOUNCEMENTS)
    connector.drain()
    # Then the user enters "Buyers", and the orders are tagged
    assert [(name, props["segment"]) for name, props in connector.tracks()] == [("Entered Segment", "Buyers")]
    stored = events_of(connector.aws, ORDER)
    assert len(stored) == 2 and all(e["facts"] == {} for e in stored)
    # When the user's traits change (an evaluation that reads the index)
    connector.post(message("identify", userId="u1", traits={"plan": "pro"}))
    connector.drain()
    # Then it is still in "Buyers": no Left Segment
    assert [name for name, _ in connector.tracks()] == ["Entered Segment"]
    assert connector.sent("identify")[-1]["traits"]["hull_segments"] == ["Buyers"]


# -- the store: deletes and writers racing --------------------------------------------------------


def test_a_tag_of_an_event_deleted_meanwhile_does_not_bring_it_back(aws):
    store = ProfileStore(TABLE)
    tag = Tag(identity_pk("user_id", "gone"), "evt#m1", {"total": 5})
    assert EventFacts(store.db).write(tag, strict=True) is False
    assert aws.items_of_kind("event") == []


def test_two_writers_tagging_one_user_at_once_keep_what_both_read(aws):
    # Given 150 orders of one user stored without facts
    put_events(
        aws, [("ann", ORDER, 1 + n / 1000, {"total": n, "shipping": {"country": "FR"}, "x": 1}) for n in range(150)]
    )
    spec = {
        "total": ActivitySpec.of(
            ConnectorSettings.model_validate(
                {
                    "segments": [
                        {"name": "T", "rule": {"event": ORDER, "where": {"property": "total", "op": "gt", "value": 1}}}
                    ]
                }
            ).event_filters()
        ),
        "country": ActivitySpec({ORDER: frozenset({"shipping.country"})}, None),
    }
    store = ProfileStore(TABLE)
    start = threading.Barrier(2)
    errors: list[BaseException] = []
    now = datetime.now(UTC)

    def tag(name: str) -> None:
        try:
            start.wait()
            EventFacts(store.db).retag([identity_pk("user_id", "ann")], spec[name], now - timedelta(days=30), [], now)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)

    # When two writers tag them at once with settings that read different paths
    threads = [threading.Thread(target=tag, args=(name,)) for name in spec]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then every order keeps both paths
    assert not errors, errors
    stored = events_of(aws, ORDER)
    assert len(stored) == 150
    assert all(e["facts"] == {"total": e["properties"]["total"], "shipping": {"country": "FR"}} for e in stored)
