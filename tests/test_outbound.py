"""OutboundFunction, what is sent: filter, whitelists, change detection, segment events, groups.

Records are produced by the inbound handler (or the store), read from moto's DynamoDB stream,
shaped and filtered like Lambda does (stream_helpers) and handed to the real handler, which
sends over HTTP to a SegmentSink on 127.0.0.1.
"""

from __future__ import annotations

import pytest

from segment_connector import __version__
from segment_connector.domain.models.items import StoredEvent
from segment_connector.store.profile_store import ProfileStore

PRO = {"name": "Pro", "rule": {"trait": "plan", "op": "eq", "value": "pro"}}
VIP = {"name": "VIP", "rule": {"trait": "spent", "op": "gte", "value": 1000}}


def identify(message, user_id="u1", anonymous_id=None, **traits):
    fields = {"userId": user_id} if user_id else {}
    if anonymous_id:
        fields["anonymousId"] = anonymous_id
    return message("identify", traits=traits, **fields)


def segments_of(messages):
    return [m["traits"]["hull_segments"] for m in messages]


# -- the User Filter ------------------------------------------------------------------------------


def test_a_user_entering_the_filter_is_identified_with_segments_and_whitelisted_traits(connector, message):
    # Given users in "Pro" are synchronized, with email and the dotted address.city
    connector.settings(
        segments=[PRO, VIP], synchronized_segments=["Pro"], synchronized_properties=["email", "address.city"]
    )
    # When a user becomes pro
    connector.post(
        identify(
            message,
            "u1",
            "a1",
            plan="pro",
            email="Ann@Example.com",
            secret="s",
            address={"city": "Paris", "zip": "75001"},
        )
    )
    connector.drain()
    # Then one identify carries its ids, segments and only the whitelisted traits
    (sent,) = connector.sent("identify")
    assert sent["userId"] == "u1" and sent["anonymousId"] == "a1"
    assert sent["traits"] == {"hull_segments": ["Pro"], "email": "Ann@Example.com", "address": {"city": "Paris"}}
    # and every message is marked as the connector's own
    assert sent["context"]["library"] == {"name": "segment-connector", "version": __version__}
    assert sent["integrations"] == {"Hull": False, "segment-connector": False}
    assert sent["messageId"].startswith("sc-") and len(sent["messageId"]) < 100


def test_users_outside_the_filter_and_their_events_are_not_sent(connector, message):
    # Given only "Pro" users are synchronized
    connector.settings(segments=[PRO], synchronized_segments=["Pro"])
    # When a free user is identified and tracks an event
    connector.post(identify(message, "u2", plan="free"), message("track", userId="u2", event="Clicked"))
    connector.drain()
    # Then nothing is sent
    assert connector.sent() == []


@pytest.mark.parametrize(("synchronized", "expected"), [(["ALL"], 1), ([], 0)])
def test_all_sends_every_user_and_an_empty_filter_sends_nobody(connector, message, synchronized, expected):
    # Given the filter ["ALL"] or []
    connector.settings(segments=[PRO], synchronized_segments=synchronized)
    # When a user in no segment is identified and tracks
    connector.post(identify(message, "u1", plan="free"), message("track", userId="u1", event="Clicked"))
    connector.drain()
    # Then ALL sends its identify and event, [] sends nothing
    assert len(connector.sent("identify")) == expected
    assert len(connector.sent("track")) == expected


def test_leaving_the_filter_sends_one_last_identify_then_silence(connector, message):
    # Given a pro user already sent
    connector.settings(segments=[PRO], synchronized_segments=["Pro"], synchronized_properties=["plan"])
    connector.post(identify(message, plan="pro"))
    connector.drain()
    # When it stops being pro
    connector.post(identify(message, plan="free"))
    connector.drain()
    # Then one last identify tells Segment it left the segment
    assert segments_of(connector.sent("identify")) == [["Pro"], []]
    assert connector.sent("identify")[-1]["traits"]["plan"] == "free"
    # When it changes again and tracks an event
    connector.post(identify(message, plan="basic"), message("track", userId="u1", event="Clicked"))
    connector.drain()
    # Then nothing more is sent about it
    assert len(connector.sent("identify")) == 2
    assert [event for event, _ in connector.tracks()] == ["Entered Segment"]


# -- whitelisted dotted paths --------------------------------------------------------------------

ADDRESS = {"city": "Paris", "zip": "75001", "street": "1 rue de Rivoli"}


@pytest.mark.parametrize(
    ("whitelist", "expected"),
    [
        pytest.param(["address.city"], {"address": {"city": "Paris"}}, id="one-sub-path"),
        pytest.param(["address.city", "address.zip"], {"address": {"city": "Paris", "zip": "75001"}}, id="merged"),
        pytest.param(["address.city", "address"], {"address": ADDRESS}, id="whole-object-wins"),
        pytest.param(["address.country", "phone", "address.city.name"], {}, id="missing-not-sent"),
    ],
)
def test_whitelisted_dotted_paths_are_sent_nested(connector, message, whitelist, expected):
    # Given every user synchronized with these whitelisted paths
    connector.settings(synchronized_segments=["ALL"], synchronized_properties=whitelist)
    # When a user with a nested address is identified
    connector.post(identify(message, plan="pro", address=ADDRESS))
    connector.drain()
    # Then its identify carries the whitelisted values nested as they are stored
    (sent,) = connector.sent("identify")
    assert sent["traits"] == {"hull_segments": [], **expected}


def test_a_trait_stored_under_a_dotted_name_is_sent_flat_unless_a_nested_value_exists(connector, message):
    # Given "a.b" whitelisted
    connector.settings(synchronized_segments=["ALL"], synchronized_properties=["a.b"])
    # When one user has a trait literally named "a.b", another also a nested a.b
    connector.post(
        identify(message, "u1", **{"a.b": "flat"}), identify(message, "u2", **{"a.b": "flat", "a": {"b": "nested"}})
    )
    connector.drain()
    # Then the first is sent under its flat name, the second nested (the nested value wins)
    assert [(m["userId"], m["traits"]) for m in connector.sent("identify")] == [
        ("u1", {"hull_segments": [], "a.b": "flat"}),
        ("u2", {"hull_segments": [], "a": {"b": "nested"}}),
    ]


def test_only_a_change_of_a_whitelisted_sub_trait_sends_an_identify(connector, message):
    # Given a user already sent with address.city whitelisted
    connector.settings(synchronized_segments=["ALL"], synchronized_properties=["address.city"])
    connector.post(identify(message, address=ADDRESS))
    connector.drain()
    # When another part of its address changes
    connector.post(
        {**identify(message, address={"street": "2 rue de Rivoli"}), "timestamp": "2026-01-02T00:00:00.000Z"}
    )
    connector.drain()
    # Then nothing is sent
    assert len(connector.sent("identify")) == 1
    # When its city changes / Then the new city is sent, nested
    connector.post({**identify(message, address={"city": "Lyon"}), "timestamp": "2026-01-03T00:00:00.000Z"})
    connector.drain()
    assert [m["traits"]["address"] for m in connector.sent("identify")] == [{"city": "Paris"}, {"city": "Lyon"}]


# -- change detection -----------------------------------------------------------------------------


def test_an_identical_identify_or_an_unsynchronized_trait_change_sends_nothing(connector, message):
    # Given a user already sent to Segment
    connector.settings(segments=[PRO], synchronized_segments=["ALL"], synchronized_properties=["plan"])
    connector.post(identify(message, plan="pro", color="red"))
    connector.drain()
    assert len(connector.sent("identify")) == 1
    # When the same traits come again later (new messageId and time), then a trait not synchronized changes
    again = {**identify(message, plan="pro", color="red"), "timestamp": "2026-01-02T00:00:00.000Z"}
    connector.post(again)
    connector.post({**identify(message, plan="pro", color="blue"), "timestamp": "2026-01-03T00:00:00.000Z"})
    assert len(connector.stream.read()) == 2  # both did modify the stored profile (trait_times, updated_at)
    connector.drain()
    # Then nothing is sent
    assert len(connector.sent("identify")) == 1
    # When a synchronized trait changes / Then it is sent
    connector.post({**identify(message, plan="team"), "timestamp": "2026-01-04T00:00:00.000Z"})
    connector.drain()
    assert [m["traits"]["plan"] for m in connector.sent("identify")] == ["pro", "team"]


def test_changes_after_a_redelivered_identify_are_still_sent(connector, message):
    # Given a user sent once, and Segment redelivering the same identify (a deduplicated write)
    connector.settings(segments=[PRO], synchronized_segments=["ALL"], synchronized_properties=["plan"])
    first = {**identify(message, plan="free"), "timestamp": None}  # time of arrival: the retry differs
    connector.post(first)
    connector.post(first)
    connector.drain()
    # When the user changes afterwards, and another user arrives
    connector.post({**identify(message, plan="pro"), "timestamp": None})
    connector.post({**identify(message, "u2", plan="pro"), "timestamp": None})
    connector.drain()
    # Then the change still reaches Segment
    assert [(m["userId"], m["traits"]["plan"]) for m in connector.sent("identify")] == [
        ("u1", "free"),
        ("u1", "pro"),
        ("u2", "pro"),
    ]


def test_an_anonymous_user_that_gets_a_user_id_is_identified_again_without_new_segment_events(connector, message):
    # Given an anonymous pro user already sent
    connector.settings(segments=[PRO], synchronized_segments=["ALL"])
    connector.post(identify(message, None, "anon-1", plan="pro"))
    connector.drain()
    (first,) = connector.sent("identify")
    assert "userId" not in first and first["anonymousId"] == "anon-1"
    # When it identifies with a userId (the profile moves to the user_id key)
    connector.post(identify(message, "u1", "anon-1"))
    connector.drain()
    # Then an identify with both ids is sent, and it did not "enter" its segment a second time
    assert [(m.get("userId"), m["anonymousId"]) for m in connector.sent("identify")] == [
        (None, "anon-1"),
        ("u1", "anon-1"),
    ]
    assert connector.tracks() == [("Entered Segment", {"segment": "Pro"})]
    status, events = connector.api.get("/v1/users/user_id:u1/events")
    assert status == 200 and [e["event"] for e in events].count("Entered Segment") == 1


def test_a_new_anonymous_id_of_a_known_user_is_sent(connector, message):
    # Given a known user already sent
    connector.settings(synchronized_segments=["ALL"])
    connector.post(identify(message, "u1", "device-1"))
    connector.drain()
    # When it shows up with another device's anonymous id
    connector.post(identify(message, "u1", "device-2"))
    connector.drain()
    # Then Segment gets the most recent anonymous id
    assert [m["anonymousId"] for m in connector.sent("identify")] == ["device-1", "device-2"]


# -- Entered / Left Segment -----------------------------------------------------------------------


def test_entered_and_left_segment_events_are_recorded_on_the_profile_and_sent(connector, message):
    # Given two segments and every user synchronized
    connector.settings(segments=[PRO, VIP], synchronized_segments=["ALL"])
    # When a user becomes pro, then stops being pro and becomes VIP
    connector.post(identify(message, plan="pro"))
    connector.drain()
    connector.post(identify(message, plan="free", spent=5000))
    connector.drain()
    # Then the Profile API shows the events, recorded by the connector
    status, events = connector.api.get("/v1/users/user_id:u1/events")
    assert status == 200
    recorded = sorted((e["event"], e["properties"]["segment"], e["source"]) for e in events)
    assert recorded == [
        ("Entered Segment", "Pro", "connector"),
        ("Entered Segment", "VIP", "connector"),
        ("Left Segment", "Pro", "connector"),
    ]
    # and they were sent as track calls of the user
    assert sorted(connector.tracks(), key=str) == sorted(
        [
            ("Entered Segment", {"segment": "Pro"}),
            ("Left Segment", {"segment": "Pro"}),
            ("Entered Segment", {"segment": "VIP"}),
        ],
        key=str,
    )
    assert {m["userId"] for m in connector.sent("track")} == {"u1"}


def test_a_retried_record_records_its_segment_event_once_and_reuses_its_message_ids(connector, message):
    # Given the stream record of a user entering "Pro"
    connector.settings(segments=[PRO], synchronized_segments=["ALL"])
    connector.post(identify(message, plan="pro"))
    records = list(connector.stream.read())
    # When Lambda hands the same record twice (a retry)
    connector.invoke(records)
    connector.invoke(records)
    # Then the Entered Segment event is stored once, and both sends used the same messageId
    entered = [i for i in connector.aws.items_of_kind("event") if i["event"] == "Entered Segment"]
    assert len(entered) == 1
    first, second = connector.sent("identify")
    assert first["messageId"] == second["messageId"]


def test_segment_events_are_sent_only_when_whitelisted(connector, message):
    # Given Entered/Left Segment are not in send_events
    connector.settings(segments=[PRO], synchronized_segments=["ALL"], send_events=["Bought"])
    # When a user enters "Pro"
    connector.post(identify(message, plan="pro"))
    connector.drain()
    # Then the event is recorded but not sent
    assert [i["event"] for i in connector.aws.items_of_kind("event")] == ["Entered Segment"]
    assert connector.tracks() == []


# -- events ---------------------------------------------------------------------------------------


def test_send_events_whitelist_matches_track_names_and_page_and_screen(connector, message):
    # Given only "Bought" and page calls are whitelisted
    connector.settings(synchronized_segments=["ALL"], send_events=["Bought", "page"])
    # When a user tracks two events, views a page and a screen
    connector.post(
        message("track", userId="u1", event="Bought", properties={"price": 9.5}),
        message("track", userId="u1", event="Clicked"),
        message("page", userId="u1", name="Pricing", properties={"path": "/pricing"}),
        message("screen", userId="u1", name="Home"),
    )
    connector.drain()
    # Then only Bought and the page are sent
    assert connector.tracks() == [("Bought", {"price": 9.5})]
    (page,) = connector.sent("page")
    assert page["name"] == "Pricing" and page["properties"] == {"path": "/pricing"}
    assert connector.sent("screen") == []


def test_no_events_are_sent_when_send_events_is_empty(connector, message):
    # Given send_events []
    connector.settings(synchronized_segments=["ALL"], send_events=[])
    # When a user tracks / Then nothing but its identify is sent
    connector.post(identify(message), message("track", userId="u1", event="Bought"))
    connector.drain()
    assert [m["type"] for m in connector.sent()] == ["identify"]


def test_a_track_carries_properties_timestamp_and_the_useful_context(connector, message):
    # Given every user synchronized
    connector.settings(synchronized_segments=["ALL"])
    # When a track arrives with a full context
    context = {
        "ip": "203.0.113.9",
        "userAgent": "Mozilla/5.0",
        "locale": "fr-FR",
        "page": {"url": "https://shop.example/p/1", "referrer": "https://search.example/", "width": 3},
        "library": {"name": "analytics.js", "version": "5"},
        "traits": {"email": "x@example.com"},
    }
    tracked = message(
        "track",
        userId="u1",
        anonymousId="a1",
        event="Bought",
        properties={"sku": "p1"},
        timestamp="2026-02-03T04:05:06.000Z",
        context=context,
    )
    connector.post(tracked)
    connector.drain()
    # Then the track has them, with the connector's library and a messageId of its own
    (sent,) = connector.sent("track")
    assert (sent["event"], sent["properties"], sent["timestamp"]) == (
        "Bought",
        {"sku": "p1"},
        "2026-02-03T04:05:06.000Z",
    )
    assert (sent["userId"], sent["anonymousId"]) == ("u1", "a1")
    assert sent["context"] == {
        "library": {"name": "segment-connector", "version": __version__},
        "ip": "203.0.113.9",
        "userAgent": "Mozilla/5.0",
        "locale": "fr-FR",
        "page": {"url": "https://shop.example/p/1", "referrer": "https://search.example/"},
    }
    assert sent["messageId"] != tracked["messageId"]


def test_an_event_of_a_user_without_profile_is_sent_with_the_events_ids(connector, message):
    # Given every user synchronized, and a visitor never identified
    connector.settings(synchronized_segments=["ALL"])
    # When it tracks an event
    connector.post(message("track", anonymousId="visitor-9", event="Viewed"))
    connector.drain()
    # Then the track is sent with its anonymous id
    (sent,) = connector.sent("track")
    assert sent["anonymousId"] == "visitor-9" and "userId" not in sent


def test_the_events_of_a_user_without_profile_follow_a_segment_filter(connector, message):
    # Given only pro users synchronized / When a visitor without traits tracks
    connector.settings(segments=[PRO], synchronized_segments=["Pro"])
    connector.post(message("track", anonymousId="visitor-9", event="Viewed"))
    connector.drain()
    # Then it is in no segment, so nothing is sent
    assert connector.sent() == []


@pytest.mark.parametrize(("forward", "expected"), [(False, ["api-event"]), (True, ["segment-event", "api-event"])])
def test_events_from_segment_are_sent_back_only_with_forward_events(connector, message, forward, expected):
    # Given forward_events off or on
    connector.settings(synchronized_segments=["ALL"], forward_events=forward)
    # When an event comes from Segment (its webhook) and one from the Tracking API
    connector.post(message("track", userId="u1", event="segment-event"), path="/segment")
    connector.post(message("track", userId="u1", event="api-event"), path="/v1/track")
    connector.drain()
    # Then the Segment one is sent only when forwarding
    assert [event for event, _ in connector.tracks()] == expected


def test_a_sent_message_coming_back_from_segment_is_ignored(connector, message):
    # Given a user sent to Segment
    connector.settings(segments=[PRO], synchronized_segments=["ALL"], forward_events=True)
    connector.post(identify(message, plan="pro"))
    connector.drain()
    sent = connector.sent()
    assert sent
    # When Segment delivers those very messages to the connector's webhook
    for echoed in sent:
        status, body = connector.api.post("/segment", echoed)
        assert (status, body["ignored"]) == (200, 1)
    # Then nothing was written, and nothing more is sent
    assert connector.stream.read() == []
    assert connector.sent() == sent


def test_one_profile_lookup_serves_all_events_of_a_batch(connector, message, monkeypatch):
    # Given events of three users in one batch
    connector.settings(synchronized_segments=["ALL"])
    connector.post(*[message("track", userId=f"u{n}", event="Clicked") for n in range(3)])
    calls = []
    import segment_connector.outbound.reads as outbound

    real = outbound.profiles_at  # type: ignore[attr-defined]
    monkeypatch.setattr(outbound, "profiles_at", lambda store, pks: calls.append(pks) or real(store, pks))  # type: ignore[func-returns-value]
    # When the batch is handled
    connector.drain()
    # Then their users were read with one profiles_at call, and the three tracks were sent
    assert len(calls) == 1 and sorted(calls[0]) == [f"id#user_id#u{n}" for n in range(3)]
    assert len(connector.tracks()) == 3


def test_a_segment_event_written_through_the_store_is_sent_like_any_event(connector, aws):
    # Given a user and every user synchronized
    connector.settings(synchronized_segments=["ALL"])
    # When an event item is written straight into the table with source "connector"
    ProfileStore("connector-test").events.put(
        StoredEvent.build(
            "id#user_id#u7",
            "evt-1",
            "2026-01-01T00:00:00.000Z",
            type="screen",
            event="Home",
            source="connector",
            user_id="u7",
        )
    )
    connector.drain()
    # Then it is sent as a screen call
    (screen,) = connector.sent("screen")
    assert (screen["name"], screen["userId"]) == ("Home", "u7")


# -- accounts (group calls) -----------------------------------------------------------------------

BIG = {"name": "Big", "rule": {"trait": "employees", "op": "gte", "value": 100}}


def group(message, group_id="g1", user_id="u1", **traits):
    return message("group", userId=user_id, groupId=group_id, traits=traits)


def test_linking_a_user_to_an_account_sends_one_group_call(connector, message):
    # Given accounts handled, every user synchronized, name synchronized for accounts
    connector.settings(
        handle_accounts=True,
        synchronized_segments=["ALL"],
        account_segments=[BIG],
        synchronized_account_properties=["name"],
    )
    connector.post(identify(message))
    connector.drain()
    # When the user is linked to a new account
    connector.post(group(message, name="Acme", employees=500, secret="s"))
    connector.drain()
    # Then exactly one group call carries the account's segments and whitelisted traits
    (sent,) = connector.sent("group")
    assert (sent["groupId"], sent["userId"]) == ("g1", "u1")
    assert sent["traits"] == {"hull_segments": ["Big"], "name": "Acme"}
    assert sent["context"]["library"]["name"] == "segment-connector"


def test_whitelisted_dotted_account_paths_are_sent_nested_in_group_calls(connector, message):
    # Given accounts handled, with two sub-paths of the account's hq and its name whitelisted
    connector.settings(
        handle_accounts=True,
        synchronized_segments=["ALL"],
        synchronized_account_properties=["name", "hq.city", "hq.country"],
    )
    # When a user is linked to an account with a nested hq
    connector.post(group(message, name="Acme", hq={"city": "Paris", "country": "FR", "floor": 3}))
    connector.drain()
    # Then the group call carries them nested and merged
    (sent,) = connector.sent("group")
    assert sent["traits"] == {"hull_segments": [], "name": "Acme", "hq": {"city": "Paris", "country": "FR"}}


def test_an_account_change_sends_group_calls_for_its_users_only_when_it_matters(connector, message):
    # Given two users of an account already sent
    connector.settings(
        handle_accounts=True,
        synchronized_segments=["ALL"],
        account_segments=[BIG],
        synchronized_account_properties=["name"],
    )
    connector.post(group(message, user_id="u1", name="Acme", employees=500), group(message, user_id="u2"))
    connector.drain()
    assert sorted(m["userId"] for m in connector.sent("group")) == ["u1", "u2"]
    # When a trait that is not synchronized changes
    connector.post(group(message, user_id="u1", founded=1999))
    connector.drain()
    # Then no group call is sent
    assert len(connector.sent("group")) == 2
    # When the account leaves a segment
    connector.post(group(message, user_id="u1", employees=20))
    connector.drain()
    # Then each user of the account gets a group call with the new segments
    latest = connector.sent("group")[2:]
    assert sorted(m["userId"] for m in latest) == ["u1", "u2"]
    assert all(m["traits"] == {"hull_segments": [], "name": "Acme"} for m in latest)


def test_a_user_linking_to_an_account_it_changes_gets_one_group_call(connector, message):
    # Given a user of an account already sent
    connector.settings(handle_accounts=True, synchronized_segments=["ALL"], account_segments=[BIG])
    connector.post(group(message, user_id="u1", employees=500))
    connector.drain()
    # When another user joins that account with a call that also changes it
    connector.post(group(message, user_id="u2", employees=20))
    connector.drain()
    # Then each user gets exactly one group call with the new segments
    latest = connector.sent("group")[1:]
    assert sorted(m["userId"] for m in latest) == ["u1", "u2"]
    assert all(m["traits"] == {"hull_segments": []} for m in latest)


def test_no_group_calls_without_handle_accounts(connector, message):
    # Given accounts are not handled / When a group call arrives / Then no group is sent
    connector.settings(handle_accounts=False, synchronized_segments=["ALL"])
    connector.post(group(message, name="Acme"))
    connector.drain()
    assert connector.sent("group") == []


def test_an_account_trait_change_moves_its_users_between_user_segments(connector, message):
    # Given a user segment on an account trait, and only its members synchronized
    enterprise = {"name": "Enterprise", "rule": {"trait": "account.plan", "op": "eq", "value": "enterprise"}}
    connector.settings(handle_accounts=True, segments=[enterprise], synchronized_segments=["Enterprise"])
    connector.post(identify(message), group(message, plan="free"))
    connector.drain()
    assert connector.sent() == []
    # When the account becomes enterprise
    connector.post(group(message, plan="enterprise"))
    connector.drain()
    # Then the user enters the segment: identify, group and the Entered event
    assert segments_of(connector.sent("identify")) == [["Enterprise"]]
    assert [m["groupId"] for m in connector.sent("group")] == ["g1"]
    assert connector.tracks() == [("Entered Segment", {"segment": "Enterprise"})]
    # When it stops being enterprise
    connector.post(group(message, plan="free"))
    connector.drain()
    # Then one last identify, and Left Segment is recorded on the user
    assert segments_of(connector.sent("identify")) == [["Enterprise"], []]
    _, events = connector.api.get("/v1/users/user_id:u1/events")
    assert ("Left Segment", "connector") in [(e["event"], e["source"]) for e in events]


def test_the_account_filter_sends_group_calls_only_for_accounts_in_its_segments(connector, message):
    # Given accounts handled, only "Big" accounts sent
    connector.settings(
        handle_accounts=True,
        synchronized_segments=["ALL"],
        account_segments=[BIG],
        synchronized_account_segments=["Big"],
    )
    # When users join a small and a big account
    connector.post(
        group(message, user_id="u1", group_id="small", employees=5),
        group(message, user_id="u2", group_id="big", employees=500),
    )
    connector.drain()
    # Then only the big account's user gets a group call
    assert [(m["userId"], m["groupId"]) for m in connector.sent("group")] == [("u2", "big")]
    # When the small account grows into "Big"
    connector.post(group(message, user_id="u1", group_id="small", employees=200))
    connector.drain()
    # Then its user gets a group call; and when it shrinks again, nothing more is sent
    assert [(m["userId"], m["groupId"]) for m in connector.sent("group")][1:] == [("u1", "small")]
    connector.post(group(message, user_id="u1", group_id="small", employees=1))
    connector.drain()
    assert len(connector.sent("group")) == 2


def test_an_empty_account_filter_sends_no_group_call(connector, message):
    connector.settings(handle_accounts=True, synchronized_segments=["ALL"], synchronized_account_segments=[])
    connector.post(group(message, name="Acme"))
    connector.drain()
    assert connector.sent("group") == [] and connector.sent("identify")


@pytest.mark.parametrize("names", [["Nope"], ["ALL", "Missing"]])
def test_the_account_filter_names_only_defined_account_segments(aws, names):
    from segment_connector.domain.errors import SettingsInvalid
    from segment_connector.runtime import config

    aws.set_settings(account_segments=[BIG], synchronized_account_segments=names)
    with pytest.raises(SettingsInvalid) as error:
        config.load_settings()
    assert "synchronized_account_segments" in str(error.value.details)


def test_one_users_calls_reach_segment_in_the_order_of_a_large_delivery(connector, message):
    # Given everyone sent, with the trait "step"
    connector.settings(synchronized_segments=["ALL"], synchronized_properties=["step"])
    # When one delivery (large enough to be written in rounds) holds identify, 7 tracks, identify
    calls = [message("identify", userId="u1", traits={"step": 1})]
    calls += [message("track", userId="u1", event="Step", properties={"step": n}) for n in range(2, 9)]
    calls += [message("identify", userId="u1", traits={"step": 9})]
    # And other users' events in the same delivery
    calls += [message("track", userId=f"other{n}", event="Step", properties={"step": 0}) for n in range(6)]
    connector.post(*calls)
    connector.drain()
    # Then u1's calls reach Segment in the order they were sent
    steps = [m.get("traits", m.get("properties", {})).get("step") for m in connector.sent() if m.get("userId") == "u1"]
    assert steps == list(range(1, 10))
