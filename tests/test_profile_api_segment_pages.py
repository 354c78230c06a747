"""The Segment-compatible Profile API's pages: users with thousands of traits, events and ids,
cursors that stay right while the profile changes, tampered cursors and the 5 MB cap."""

from __future__ import annotations

import json
import random
import threading
from typing import Any

from harness import Api
from segment_connector.domain.models.items import identity_pk
from segment_connector.views.profiles import MAX_ANSWER_BYTES
from segment_connector.views.segment_profiles.request import encode_cursor
from segment_profile_helpers import pages, path, put_account, put_events, put_user, store_of, tampered


def test_thousands_of_traits_come_once_each_in_name_order(segment_profiles: Api):
    # Given a user with 3,000 traits
    traits = {f"trait_{index:04d}": index for index in range(3000)}
    put_user(store_of(segment_profiles), "big", traits=traits)
    # When all pages of 200 are read
    answers = pages(segment_profiles, path("user_id:big", "traits", limit=200))
    # Then every trait comes once, in name order, 200 a page
    names = [name for answer in answers for name in answer["traits"]]
    assert names == sorted(traits) and len(answers) == 15
    assert {name: value for answer in answers for name, value in answer["traits"].items()} == traits
    # And include pages through its names only (the default limit: 10)
    wanted = ",".join(f"trait_{index:04d}" for index in range(0, 3000, 100))
    answers = pages(segment_profiles, path("user_id:big", "traits", include=wanted))
    assert [name for answer in answers for name in answer["traits"]] == sorted(wanted.split(","))
    assert [len(answer["traits"]) for answer in answers] == [10, 10, 10]


def test_thousands_of_ids_come_once_each(segment_profiles: Api):
    # Given a user with 1,000 anonymous ids (the bound a profile keeps), an email and a user_id
    anonymous = [f"anon-{index:04d}" for index in range(1000)]
    put_user(store_of(segment_profiles), "many", anonymous_ids=anonymous, email="m@example.com")
    # When all pages of 100 are read, asked by one of its anonymous ids
    answers = pages(segment_profiles, path("anonymous_id:anon-0500", "external_ids", limit=100))
    # Then every id comes once, by type then id
    pairs = [(item["type"], item["id"]) for answer in answers for item in answer["data"]]
    assert pairs == [*(("anonymous_id", a) for a in anonymous), ("email", "m@example.com"), ("user_id", "many")]
    answers = pages(segment_profiles, path("user_id:many", "external_ids", include="user_id,email", limit=1))
    assert [item["type"] for answer in answers for item in answer["data"]] == ["email", "user_id"]


def test_thousands_of_events_across_partitions_come_once_each_either_way(segment_profiles: Api):
    # Given a user whose 2,000 events are in two partitions, pairwise at the same times
    store = store_of(segment_profiles)
    put_user(store, "busy", anonymous_ids=["dev"])
    stored = put_events(store, identity_pk("user_id", "busy"), 1000)
    stored += put_events(store, identity_pk("anonymous_id", "dev"), 1000)
    # When all pages of 100 are read, newest first
    answers = pages(segment_profiles, path("user_id:busy", "events", limit=100))
    # Then every event comes once, newest first
    events = [event for answer in answers for event in answer["data"]]
    assert sorted(event["message_id"] for event in events) == sorted(stored) and len(answers) == 20
    times = [event["timestamp"] for event in events]
    assert times == sorted(times, reverse=True)
    # And oldest first in a time range, every event of the range comes once, oldest first
    answers = pages(
        segment_profiles,
        path("user_id:busy", "events", limit=100, sort="asc", start="2026-01-01T00:05:00Z", end="2026-01-01T00:10:00Z"),
    )
    events = [event for answer in answers for event in answer["data"]]
    assert len({event["message_id"] for event in events}) == len(events) == 2 * 300
    times = [event["timestamp"] for event in events]
    assert times == sorted(times) and times[0] == "2026-01-01T00:05:00.000Z" and times[-1] < "2026-01-01T00:10:00"


def test_an_accounts_many_users_come_once_each(segment_profiles: Api):
    # Given an account with 130 users
    store = store_of(segment_profiles)
    put_account(store, "big-co", {"name": "Big"})
    for index in range(130):
        put_user(store, f"member-{index:03d}", account_id="big-co")
    # When its links are read 20 a page (the default)
    answers = pages(segment_profiles, path("group_id:big-co", "links", collection="accounts"))
    # Then every user comes once
    users = [link["external_ids"][0]["id"] for answer in answers for link in answer["data"]]
    assert sorted(users) == [f"member-{index:03d}" for index in range(130)] and len(users) == 130
    assert [len(answer["data"]) for answer in answers] == [20] * 6 + [10]


def test_pages_neither_repeat_nor_skip_while_the_profile_changes(segment_profiles: Api):
    # Given a user with events and traits
    store = store_of(segment_profiles)
    put_user(store, "live", traits={f"t{index:03d}": index for index in range(0, 200, 2)})
    first = put_events(store, identity_pk("user_id", "live"), 200, day=10)
    seen_events: list[str] = []
    seen_traits: list[str] = []
    url = path("user_id:live", "events", limit=30)
    traits_url = path("user_id:live", "traits", limit=30)
    following: dict[str, str] = {}
    for round_ in range(8):
        # When pages are read while newer and older events arrive and traits are added in between
        status, body = segment_profiles.get(url + (f"&next={following['e']}" if "e" in following else ""))
        assert status == 200, body
        seen_events += [event["message_id"] for event in body["data"]]
        if following.get("t") != "":  # until the last page of traits
            status, traits = segment_profiles.get(traits_url + (f"&next={following['t']}" if "t" in following else ""))
            seen_traits += list(traits["traits"])
            following["t"] = traits["cursor"]["next"]
        following["e"] = body["cursor"]["next"]
        put_events(store, identity_pk("user_id", "live"), 5, name=f"newer-{round_}", day=20)
        put_events(store, identity_pk("user_id", "live"), 5, name=f"older-{round_}", day=1)
        profile = store.profiles.identity_items([identity_pk("user_id", "live")])[identity_pk("user_id", "live")]
        profile.traits[f"t{round_ * 2 + 1:03d}"] = "added"  # type: ignore[union-attr]
        store.db.put_item(profile.to_item())
    # Then each event of the first set came once, in order, and no trait came twice
    original = [message_id for message_id in seen_events if message_id in set(first)]
    assert original == list(reversed(first))
    assert len(seen_traits) == len(set(seen_traits))
    assert set(seen_traits) >= {f"t{index:03d}" for index in range(0, 200, 2)}


def test_pages_hold_while_writers_add_events_at_the_same_time(segment_profiles: Api):
    # Given a user with 200 events and a writer adding newer ones on another thread
    store = store_of(segment_profiles)
    put_user(store, "racing")
    stored = put_events(store, identity_pk("user_id", "racing"), 200, day=5)
    stop = threading.Event()

    def write() -> None:
        for round_ in range(1000):
            if stop.wait(0.02):
                return
            put_events(store, identity_pk("user_id", "racing"), 2, name=f"new-{round_}", day=25)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        # When every page is read oldest first meanwhile
        answers = pages(segment_profiles, path("user_id:racing", "events", limit=50, sort="asc"))
    finally:
        stop.set()
        writer.join()
    # Then the first 200 came once each, in order, before any newer one
    ids = [event["message_id"] for answer in answers for event in answer["data"]]
    assert ids[:200] == stored and len(ids) == len(set(ids))


def test_a_tampered_cursor_is_a_validation_error_never_a_5xx(segment_profiles: Api):
    # Given a user with enough of everything for two pages
    store = store_of(segment_profiles)
    put_account(store, "co", {})
    put_user(store, "t", traits={"a": 1, "b": 2}, anonymous_ids=["x", "y"], account_id="co")
    put_user(store, "t2", account_id="co")
    put_events(store, identity_pk("user_id", "t"), 3)
    urls = {
        "traits": path("user_id:t", "traits", limit=1),
        "external_ids": path("user_id:t", "external_ids", limit=1),
        "events": path("user_id:t", "events", limit=1),
        "links": path("group_id:co", "links", collection="accounts", limit=1),
    }
    cursors = {name: segment_profiles.get(url)[1]["cursor"]["next"] for name, url in urls.items()}
    assert all(cursors.values()), cursors
    rng = random.Random(16)
    noise = ["x", "%00", "eyJ2IjoxfQ", "W10", "bnVsbA", "_-_-", "////", "eyJ2Ijoy" * 50, "\u00e9"]
    noise += ["".join(rng.choice("abcXYZ019-_=") for _ in range(rng.randint(1, 60))) for _ in range(40)]
    for name, url in urls.items():
        # When the cursor is garbage, another resource's, or its key is changed (to a number,
        # empty strings, a lone surrogate that DynamoDB could not take)
        others = [cursor for other, cursor in cursors.items() if other != name]
        crafted = [encode_cursor(name, key) for key in (["", "", "desc"], ["\ud800", "\ud800", "desc"], "", "\udfff")]
        for bad in [*noise, *others, *crafted, tampered(cursors[name])]:
            status, body = segment_profiles.get(url + "&" + _query(next=bad))
            # Then a 400 naming `next`
            assert status == 400, (name, bad, body)
            assert body["error"]["code"] == "validation_error" and body["error"]["message"].startswith("next")
    # And an events cursor of one sort is refused by the other
    status, body = segment_profiles.get(path("user_id:t", "events", limit=1, sort="asc", next=cursors["events"]))
    assert status == 400 and body["error"]["message"].startswith("next")


def test_an_events_answer_stays_under_5_mb(segment_profiles: Api):
    # Given a user with 40 events of about 300 KB each (12 MB in all)
    store = store_of(segment_profiles)
    put_user(store, "heavy")
    from segment_connector.domain.models.items import StoredEvent
    from segment_connector.store.table import serialize

    partition = identity_pk("user_id", "heavy")
    ids = put_events(store, partition, 40)
    for message_id in ids:
        item = store.db.get({"pk": {"S": partition}, "sk": {"S": f"event#{message_id}"}})
        assert item is not None
        event = StoredEvent.from_item(item)
        event.properties = {"blob": "\u00e9" * 100_000}  # escaped as \u00e9 twice over: about 1 MB as sent
        store.client.put_item(TableName=store.table, Item=serialize(event.to_item()))
    # When all pages of 100 are read
    answers = pages(segment_profiles, path("user_id:heavy", "events", limit=100))
    # Then each answer (as Lambda returns it) stays under 5 MB and every event still comes once
    for answer in answers:
        assert len(json.dumps(json.dumps(answer, separators=(",", ":")))) < MAX_ANSWER_BYTES
    assert len(answers) > 1
    assert sorted(event["message_id"] for answer in answers for event in answer["data"]) == sorted(ids)


def _query(**values: Any) -> str:
    from urllib.parse import urlencode

    return urlencode(values)
