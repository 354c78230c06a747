"""What stored data looks like after each call type (read back through the Profile API)."""

from __future__ import annotations

import threading

from segment_connector.domain.errors import VersionConflict


def user(api, ref):
    status, body = api.get(f"/v1/users/{ref}")
    assert status == 200, body
    return body


def events(api, ref, query=""):
    status, body = api.get(f"/v1/users/{ref}/events{query}")
    assert status == 200, body
    return body


def test_identify_merges_traits_and_normalises_names(api, message):
    # Given a user with traits
    api.post(
        "/segment",
        message(
            "identify",
            userId="u1",
            traits={
                "FirstName": "Ann",
                "LASTNAME": "Lee",
                "createdAt": "2020-01-01",
                "plan": "free",
                "id": "x",
                "external_id": "y",
                "guest_id": "z",
                "uniqToken": "t",
                "visitToken": "v",
                "address": {"city": "Paris", "country": "FR"},
                "nothing": None,
            },
        ),
    )
    # When a second identify changes one trait and nulls another
    api.post(
        "/segment",
        message("identify", userId="u1", timestamp="2026-01-02T00:00:00Z", traits={"plan": "pro", "first_name": None}),
    )
    # Then traits are merged (not replaced), renamed, id-like keys and nulls dropped, nesting kept
    assert user(api, "user_id:u1")["traits"] == {
        "first_name": "Ann",
        "last_name": "Lee",
        "created_at": "2020-01-01",
        "plan": "pro",
        "address": {"city": "Paris", "country": "FR"},
    }


def test_email_is_lowercased_and_resolves_the_user(api, message):
    api.post("/segment", message("identify", userId="u1", traits={"email": " Ann@Example.COM "}))
    profile = user(api, "email:ann%40example.com")
    assert profile["email"] == "ann@example.com" and profile["user_id"] == "u1"


def test_invalid_email_is_not_an_identity(api, message):
    api.post("/segment", message("identify", userId="u1", traits={"email": "not-an-email"}))
    assert user(api, "user_id:u1")["email"] is None
    assert api.get("/v1/users/email:not-an-email")[0] == 404


def test_anonymous_then_known_ends_on_one_profile(api, message):
    # Given events and traits recorded under an anonymousId alone
    api.post("/segment", message("page", anonymousId="a1", name="Pricing", timestamp="2026-01-01T00:00:01Z"))
    api.post("/segment", message("identify", anonymousId="a1", traits={"utm": "ads"}))
    # When identify links the userId and that anonymousId
    api.post(
        "/segment",
        message("identify", userId="u1", anonymousId="a1", traits={"name": "Ann"}, timestamp="2026-01-01T00:00:02Z"),
    )
    api.post("/segment", message("track", userId="u1", event="Signed Up", timestamp="2026-01-01T00:00:03Z"))
    # Then both references return the same profile, with all traits and all events
    by_user, by_anon = user(api, "user_id:u1"), user(api, "anonymous_id:a1")
    assert by_user == by_anon
    assert by_user["anonymous_ids"] == ["a1"] and by_user["traits"] == {"utm": "ads", "name": "Ann"}
    assert [e["event"] for e in events(api, "anonymous_id:a1")] == ["Signed Up", "Pricing"]


def test_a_user_collects_several_anonymous_ids_most_recent_last(api, message):
    api.post("/segment", message("identify", userId="u1", anonymousId="a1"))
    api.post("/segment", message("identify", userId="u1", anonymousId="a2"))
    assert user(api, "user_id:u1")["anonymous_ids"] == ["a1", "a2"]
    assert user(api, "anonymous_id:a2")["user_id"] == "u1"


def test_an_anonymous_id_of_another_known_user_is_not_stolen(api, message):
    # Given a1 belongs to u1 (shared browser)
    api.post("/segment", message("identify", userId="u1", anonymousId="a1"))
    # When u2 logs in on the same browser
    api.post("/segment", message("identify", userId="u2", anonymousId="a1", traits={"name": "Bob"}))
    # Then u1 and u2 stay two users and a1 stays with u1
    assert user(api, "anonymous_id:a1")["user_id"] == "u1"
    assert user(api, "user_id:u2")["traits"] == {"name": "Bob"}


def test_alias_merges_previous_profile_into_user(api, message):
    api.post("/segment", message("identify", userId="old", traits={"a": 1}))
    api.post("/segment", message("track", userId="old", event="Before"))
    api.post("/segment", message("identify", userId="new", traits={"b": 2}))
    # When alias(previousId=old, userId=new)
    assert api.post("/segment", message("alias", previousId="old", userId="new"))[0] == 200
    # Then one profile: traits and events of both
    merged = user(api, "user_id:new")
    assert merged["traits"] == {"a": 1, "b": 2}
    assert user(api, "user_id:old")["id"] == merged["id"]
    assert [e["event"] for e in events(api, "user_id:new")] == ["Before"]


def test_alias_of_an_unknown_previous_id_links_it(api, message):
    api.post("/segment", message("alias", previousId="anon-9", userId="u1"))
    assert user(api, "anonymous_id:anon-9")["user_id"] == "u1"


def test_track_page_screen_are_stored_with_properties_context_and_time(api, message):
    api.post(
        "/segment",
        message(
            "track",
            userId="u1",
            event="Bought",
            properties={"price": 9.5},
            context={"ip": "1.1.1.1"},
            timestamp="2026-01-01T00:00:03Z",
        ),
    )
    api.post(
        "/segment",
        message(
            "page",
            userId="u1",
            name="Home",
            category="Docs",
            properties={"url": "https://x"},
            timestamp=None,
            originalTimestamp="2026-01-01T00:00:02Z",
        ),
    )
    api.post(
        "/segment", message("screen", userId="u1", name="Settings", timestamp=None, receivedAt="2026-01-01T00:00:01Z")
    )
    stored = events(api, "user_id:u1")
    assert [(e["type"], e["event"], e["timestamp"]) for e in stored] == [
        ("track", "Bought", "2026-01-01T00:00:03.000Z"),
        ("page", "Home", "2026-01-01T00:00:02.000Z"),
        ("screen", "Settings", "2026-01-01T00:00:01.000Z"),
    ]
    assert stored[0]["properties"] == {"price": 9.5} and stored[0]["context"] == {"ip": "1.1.1.1"}
    assert stored[1]["properties"] == {"url": "https://x", "category": "Docs"}
    assert all(e["source"] == "segment" for e in stored)


def test_event_time_falls_back_to_server_time(api, message):
    api.post("/segment", {"type": "track", "userId": "u1", "event": "E", "messageId": "m"})
    assert events(api, "user_id:u1")[0]["timestamp"].startswith("20")


def test_pages_and_screens_are_skipped_when_turned_off(api, aws, message):
    aws.set_settings(handle_pages=False, handle_screens=False)
    _, body = api.post("/segment", [message("page", userId="u1"), message("screen", userId="u1")])
    assert body["ignored"] == 2 and aws.items() == []


def test_events_limit_newest_first(api, message):
    for second in range(5):
        api.post(
            "/segment", message("track", userId="u1", event=f"E{second}", timestamp=f"2026-01-01T00:00:0{second}Z")
        )
    assert [e["event"] for e in events(api, "user_id:u1", "?limit=2")] == ["E4", "E3"]
    assert api.get("/v1/users/user_id:u1/events?limit=501")[0] == 400
    assert api.get("/v1/users/user_id:u1/events?limit=abc")[0] == 400


def test_group_is_ignored_unless_handle_accounts(api, aws, message):
    _, body = api.post("/segment", message("group", userId="u1", groupId="g1", traits={"plan": "pro"}))
    assert body["ignored"] == 1 and aws.items() == []
    assert api.get("/v1/accounts/g1")[0] == 404


def test_group_creates_account_links_user_last_group_wins(api, aws, message):
    aws.set_settings(handle_accounts=True)
    api.post("/segment", message("group", userId="u1", groupId="g1", traits={"plan": "pro", "seats": 3}))
    api.post(
        "/segment", message("group", userId="u1", groupId="g1", traits={"seats": 5}, timestamp="2026-01-01T00:00:01Z")
    )
    assert api.get("/v1/accounts/g1") == (200, {"id": "g1", "traits": {"plan": "pro", "seats": 5}, "segments": []})
    api.post("/segment", message("group", userId="u1", groupId="g2", timestamp="2026-01-01T00:00:02Z"))
    assert user(api, "user_id:u1")["account_id"] == "g2"
    # an older group call delivered late does not win
    api.post("/segment", message("group", userId="u1", groupId="g1", timestamp="2025-12-31T00:00:00Z"))
    assert user(api, "user_id:u1")["account_id"] == "g2"


def test_delete_removes_profile_links_and_events(api, aws, message, connector):
    api.post("/segment", message("identify", userId="u1", anonymousId="a1", traits={"email": "a@b.co"}))
    api.post("/segment", message("track", userId="u1", event="E"))
    api.post("/segment", message("track", anonymousId="a1", event="F"))
    assert api.post("/segment", {"type": "delete", "userId": "u1", "messageId": "d1"})[0] == 200
    connector.drain(rounds=20)  # the sweep runs in OutboundFunction, from the table's stream (deletion.py)
    for ref in ("user_id:u1", "anonymous_id:a1", "email:a@b.co"):
        assert api.get(f"/v1/users/{ref}")[0] == 404
    assert [i for i in aws.items() if i["kind"] in ("user", "alias", "event")] == []


def test_opted_out_and_own_messages_are_acknowledged_and_ignored(api, aws, message):
    _, body = api.post(
        "/segment",
        [
            message("track", userId="u1", event="E", integrations={"Hull": False}),
            message("track", userId="u1", event="E", integrations={"segment-connector": False}),
            message("track", userId="u1", event="E", context={"library": {"name": "segment-connector"}}),
        ],
    )
    assert body["ignored"] == 3 and aws.items() == []


def test_snake_case_top_level_keys_are_accepted(api, message):
    api.post(
        "/segment", {"type": "identify", "user_id": "u1", "anonymous_id": "a1", "message_id": "m1", "traits": {"x": 1}}
    )
    assert user(api, "anonymous_id:a1")["traits"] == {"x": 1}


def test_ignore_segment_user_id(api, aws, message):
    aws.set_settings(ignore_segment_userId=True)
    api.post("/segment", message("identify", userId="u1", anonymousId="a1", traits={"email": "a@b.co"}))
    _, body = api.post("/segment", message("track", userId="u1", event="no anonymous id"))
    assert body["ignored"] == 1
    profile = user(api, "email:a@b.co")
    assert profile["user_id"] is None and profile["anonymous_ids"] == ["a1"]
    assert api.get("/v1/users/user_id:u1")[0] == 404


def test_redelivery_is_deduplicated(api, aws, message):
    track = message("track", userId="u1", event="Bought")
    identify = message("identify", userId="u1", traits={"n": 1})
    assert api.post("/segment", [track, identify])[1]["stored"] == 2
    _, body = api.post("/segment", [track, identify])
    assert (body["stored"], body["duplicate"], body["unchanged"]) == (0, 1, 1)
    assert len(events(api, "user_id:u1")) == 1


def test_an_older_identify_delivered_late_does_not_overwrite_newer_traits(api, message):
    newer = message("identify", userId="u1", traits={"plan": "pro"}, timestamp="2026-02-01T00:00:00Z")
    older = message("identify", userId="u1", traits={"plan": "free", "seats": 1}, timestamp="2026-01-01T00:00:00Z")
    api.post("/segment", newer)
    api.post("/segment", older)
    assert user(api, "user_id:u1")["traits"] == {"plan": "pro", "seats": 1}


def test_concurrent_identifies_do_not_lose_traits(api, message):
    # Given two identifies of one user racing: the second commits between the first's read and write
    api.post("/segment", message("identify", userId="u1", traits={"base": 0}))
    store = api.module.store()
    original = store.profiles.commit
    raced = threading.Event()

    def commit_after_rival(change):
        if not raced.is_set():
            raced.set()
            api.post("/segment", message("identify", userId="u1", traits={"b": 2}))
        return original(change)

    store.profiles.commit = commit_after_rival
    try:
        # When the first identify commits after the rival
        assert api.post("/segment", message("identify", userId="u1", traits={"a": 1}))[0] == 200
    finally:
        store.profiles.commit = original
    # Then its stale write was refused and retried: both traits are there
    assert user(api, "user_id:u1")["traits"] == {"base": 0, "a": 1, "b": 2}


def test_a_commit_that_keeps_losing_races_is_503(api, message):
    store = api.module.store()
    original = store.profiles.commit

    def always_conflict(change):
        raise VersionConflict("busy")

    store.profiles.commit = always_conflict
    try:
        status, body = api.post("/segment", message("identify", userId="u1", traits={"a": 1}))
    finally:
        store.profiles.commit = original
    assert status == 503 and body["code"] == "store_unavailable"


def test_profile_api_unknown_user_and_bad_reference(api):
    status, body = api.get("/v1/users/user_id:nobody")
    assert status == 404 and body["error"]
    assert api.get("/v1/users/phone:123")[0] == 400
    assert api.get("/v1/users/user_id:u1", auth=None)[0] == 401


def test_a_visitor_seen_only_through_events_has_a_profile(api, message):
    api.post("/segment", message("track", anonymousId="visitor", event="Viewed"))
    profile = user(api, "anonymous_id:visitor")
    assert profile["anonymous_ids"] == ["visitor"] and profile["traits"] == {}


def test_blank_ids_count_as_absent_and_numeric_ids_as_text(api, message):
    _, body = api.post("/segment", message("track", userId="  ", anonymousId="a1", event="E"))
    assert body["stored"] == 1
    api.post("/segment", message("identify", userId=42, traits={"n": 1}))
    assert user(api, "user_id:42")["user_id"] == "42"
    assert user(api, "anonymous_id:a1")["user_id"] is None


def test_calls_without_message_id_are_each_stored(api, message):
    # Given two identical tracks without messageId (nothing identifies a redelivery)
    track = {"type": "track", "userId": "u1", "event": "Click"}
    # When both arrive / Then both are stored
    assert api.post("/segment", track)[1]["stored"] == 1
    assert api.post("/segment", track)[1]["stored"] == 1
    assert len(events(api, "user_id:u1")) == 2


def test_a_track_with_a_new_anonymous_id_links_it_to_the_user(api, message):
    # Given a known user with one anonymous id, and a visitor with events of its own
    api.post("/segment", message("identify", userId="u1", anonymousId="a1", traits={"n": 1}))
    api.post("/segment", message("page", anonymousId="a2", name="Landing", timestamp="2026-01-01T00:00:01Z"))
    # When a track carries the userId and the visitor's anonymousId
    assert (
        api.post(
            "/segment",
            message("track", userId="u1", anonymousId="a2", event="Bought", timestamp="2026-01-01T00:00:02Z"),
        )[1]["stored"]
        == 1
    )
    # Then the visitor is the user, with both anonymous ids and all events
    profile = user(api, "anonymous_id:a2")
    assert profile["user_id"] == "u1" and profile["anonymous_ids"] == ["a1", "a2"]
    assert [e["event"] for e in events(api, "user_id:u1")] == ["Bought", "Landing"]


def test_a_track_does_not_take_another_users_anonymous_id(api, message):
    api.post("/segment", message("identify", userId="u1", anonymousId="shared"))
    api.post("/segment", message("track", userId="u2", anonymousId="shared", event="E"))
    assert user(api, "anonymous_id:shared")["user_id"] == "u1"
    assert [e["event"] for e in events(api, "user_id:u2")] == ["E"]


def test_nested_traits_are_merged_not_replaced(api, message):
    api.post("/segment", message("identify", userId="u1", traits={"address": {"city": "Paris", "country": "FR"}}))
    api.post(
        "/segment",
        message(
            "identify",
            userId="u1",
            timestamp="2026-01-02T00:00:00Z",
            traits={"address": {"zip": "75001", "country": None}},
        ),
    )
    assert user(api, "user_id:u1")["traits"]["address"] == {"city": "Paris", "country": "FR", "zip": "75001"}


def test_profile_segments_follow_the_users_and_the_accounts_traits(api, aws, message):
    # Given segments on a user trait and on the linked account's traits
    aws.set_settings(
        handle_accounts=True,
        segments=[
            {"name": "Pro", "rule": {"trait": "plan", "op": "eq", "value": "pro"}},
            {"name": "Big", "rule": {"trait": "account.employees", "op": "gte", "value": 100}},
        ],
        account_segments=[{"name": "Large", "rule": {"trait": "employees", "op": "gt", "value": 50}}],
    )
    api.post("/segment", message("identify", userId="u1", traits={"plan": "pro"}))
    assert user(api, "user_id:u1")["segments"] == ["Pro"]
    # When the user joins a big account / Then both segments show, and the account's own
    api.post("/segment", message("group", userId="u1", groupId="g1", traits={"employees": 250}))
    assert user(api, "user_id:u1")["segments"] == ["Pro", "Big"]
    assert api.get("/v1/accounts/g1")[1]["segments"] == ["Large"]
