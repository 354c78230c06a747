"""Long paths of the inbound: profiles that only grow, clocks that lie, users with many events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from harness import TABLE
from local_stack.api import build_event
from local_stack.lambda_runtime import LambdaContext
from local_stack.template import load_template
from segment_connector.domain.storable import MAX_ITEM_BYTES, item_size
from segment_connector.inbound import identity
from segment_connector.inbound.identity import MAX_ANONYMOUS_IDS
from segment_connector.store.table import deserialize
from segment_connector.views.profiles import MAX_ANSWER_BYTES
from stream_helpers import emitted_metrics

LONG = "x" * 300  # long anonymous ids (a device id and a session), so that a few hundred fill a profile


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def stored_events(aws: Any, pk: str) -> list[dict[str, Any]]:
    items = aws.dynamodb.query(
        TableName=TABLE, KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": pk}}
    )["Items"]
    return [deserialize(item) for item in items if item["sk"]["S"].startswith("event#")]


def profile_item(aws: Any, pk: str) -> dict[str, Any]:
    return deserialize(aws.dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": pk}, "sk": {"S": "identity"}})["Item"])


@pytest.fixture
def tenth(monkeypatch: pytest.MonkeyPatch) -> int:
    """The profile bounds at a tenth (100 anonymous ids, 110 identities): moto takes about half a
    second per write of a profile near 200 KB, so 3,000 calls at full scale would take half an hour."""
    monkeypatch.setattr(identity, "MAX_ANONYMOUS_IDS", MAX_ANONYMOUS_IDS // 10)
    monkeypatch.setattr(identity, "MAX_IDENTITIES", identity.MAX_IDENTITIES // 10)
    return MAX_ANONYMOUS_IDS // 10


# -- 1. Bounded profiles ---------------------------------------------------------------------------


def test_a_user_with_3000_anonymous_ids_keeps_the_newest_and_still_resolves_the_old_ones(api, message, tenth):
    # Given a shared userId that Segment delivers with 30 x the bound of anonymous ids (3,000 at a tenth of
    # the scale: 300 for a bound of 100), in batches, with ids long enough to pass 400 KB unbounded
    for batch in range(3):
        body = [
            message("identify", userId="shared", anonymousId=f"{LONG}-{batch * tenth + n:04d}", traits={"n": n})
            for n in range(tenth)
        ]
        # When each batch is delivered
        status, answer = api.post("/segment", body)
        # Then every call is stored: none answered 400, none rejected
        assert status == 200, answer
        assert (answer["stored"], answer.get("rejected")) == (tenth, None), answer
    # And the profile lists the newest anonymous ids, oldest first
    status, user = api.get("/v1/users/user_id:shared")
    assert status == 200
    assert user["anonymous_ids"] == [f"{LONG}-{n:04d}" for n in range(2 * tenth, 3 * tenth)]
    # And an anonymous id dropped from the list still resolves to the user
    status, old = api.get(f"/v1/users/anonymous_id:{LONG}-0000")
    assert status == 200 and old["user_id"] == "shared" and old["id"] == user["id"]


def test_the_identity_list_is_bounded_too(aws, api, message, tenth):
    # Given a user that collected one and a half times the bound of anonymous ids
    api.post("/segment", [message("identify", userId="u", anonymousId=f"{LONG}-{n}") for n in range(tenth * 3 // 2)])
    # When its profile item is read
    item = profile_item(aws, "id#user_id#u")
    # Then it lists the user's own identity and its newest anonymous ids' identities
    assert len(item["anonymous_ids"]) == tenth
    assert set(item["identities"]) == {"id#user_id#u"} | {f"id#anonymous_id#{a}" for a in item["anonymous_ids"]}


def test_anonymous_ids_of_1_kb_are_bounded_by_bytes(aws, api, message):
    # Given a user whose anonymous ids are 1,000 bytes each (1,000 of them would not fit in 400 KB)
    ids = [f"{n:04d}" + "y" * 996 for n in range(130)]
    status, answer = api.post("/segment", [message("identify", userId="u", anonymousId=a) for a in ids])
    # Then every call is stored, and the profile keeps the newest ids that fit its id budget
    assert status == 200 and answer["stored"] == 130, answer
    item = profile_item(aws, "id#user_id#u")
    assert item["anonymous_ids"] == ids[-len(item["anonymous_ids"]) :] and len(item["anonymous_ids"]) < 130
    assert item_size(item) < MAX_ITEM_BYTES // 2


def test_an_anonymous_profile_keeps_its_own_identity_when_its_list_is_trimmed(aws, api, message, tenth):
    # Given an anonymous profile (no userId) that an email ties to more anonymous ids than the bound
    first = f"{LONG}-first"
    api.post("/segment", message("identify", anonymousId=first, traits={"email": "a@example.com"}))
    body = [
        message("identify", anonymousId=f"{LONG}-{n}", traits={"email": "a@example.com"}) for n in range(tenth + 20)
    ]
    # When they are delivered
    status, answer = api.post("/segment", body)
    assert status == 200 and answer["stored"] == tenth + 20, answer
    # Then the profile stays at its first anonymous id (it does not move with each new id) and keeps the newest
    item = profile_item(aws, f"id#anonymous_id#{first}")
    assert item["kind"] == "user"
    assert item["anonymous_ids"][0] == first and item["anonymous_ids"][-1] == f"{LONG}-{tenth + 19}"
    assert len(item["anonymous_ids"]) == tenth
    assert api.get(f"/v1/users/anonymous_id:{LONG}-0")[1]["email"] == "a@example.com"


def test_a_profile_that_cannot_fit_answers_500_with_the_metric_never_400(api, message, capsys):
    # Given a user whose traits grow by 30 KB a call (each message under Segment's 32 KB)
    capsys.readouterr()
    answers = []
    for n in range(16):
        # When identifies keep adding traits until the profile would exceed 400 KB
        answers.append(api.post("/segment", message("identify", userId="big", traits={f"t{n}": "v" * 30_000})))
    statuses = [status for status, _ in answers]
    # Then the calls that fit are stored, and the first that cannot answers 500 (Segment retries), never 400
    assert 400 not in statuses
    assert statuses[:13] == [200] * 13 and set(statuses[13:]) == {500}, statuses
    assert answers[13][1]["code"] == "profile_too_large"
    # And the ProfilesTooLarge metric is emitted for each, for the alarm
    assert emitted_metrics(capsys.readouterr().out).get("ProfilesTooLarge") == 3
    # And inside a batch it fails the delivery (retried) rather than dropping the message as rejected
    status, answer = api.post(
        "/segment",
        [message("track", userId="big", event="E"), message("identify", userId="big", traits={"t99": "v" * 30_000})],
    )
    assert status == 500 and answer["code"] == "profile_too_large", answer


def test_item_size_counts_as_dynamodb_does():
    # Given DynamoDB's documented sizes / Then names and values are counted as it counts them
    assert item_size({"pk": "ab"}) == 4
    assert item_size({"n": 12345}) == 1 + 4  # 3 bytes for 5 digits, plus 1
    assert item_size({"n": 10**45}) == 1 + 2  # trailing zeros trimmed: 1 digit
    assert item_size({"b": True, "z": None}) == 4
    assert item_size({"l": ["ab", "c"]}) == 1 + 3 + (1 + 2) + (1 + 1)
    assert item_size({"m": {"k": "é"}}) == 1 + 3 + 1 + 1 + 2


def test_the_profiles_too_large_alarm_notifies_the_topic_and_is_on_the_dashboard():
    # Given the template
    resources = load_template()["Resources"]
    alarm = resources["ProfilesTooLargeAlarm"]["Properties"]
    # Then the alarm watches the inbound's ProfilesTooLarge metric and notifies the alarm topic
    assert (alarm["Namespace"], alarm["MetricName"]) == ("SegmentConnector", "ProfilesTooLarge")
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "inbound"}]
    assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == ("Sum", 0, "GreaterThanThreshold")
    assert alarm["AlarmActions"] == alarm["OKActions"] == [{"Ref": "AlarmTopic"}]
    # And the dashboard lists it with the other alarms
    assert "${ProfilesTooLargeAlarm.Arn}" in resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]


# -- 2. Future timestamps --------------------------------------------------------------------------


def test_a_future_identify_does_not_beat_a_later_real_one(api, message):
    # Given an identify from a device whose clock is years ahead
    api.post(
        "/segment",
        message("identify", userId="u", traits={"plan": "from-the-future"}, timestamp="2099-01-01T00:00:00Z"),
    )
    # When a later identify with a true clock changes the trait
    api.post("/segment", message("identify", userId="u", traits={"plan": "real"}, timestamp=iso(datetime.now(UTC))))
    # Then the later one wins
    assert api.get("/v1/users/user_id:u")[1]["traits"]["plan"] == "real"


def test_a_future_event_counts_as_received_now_and_keeps_the_time_it_gave(aws, api, message):
    # Given a track dated in the future (no sentAt to correct it by)
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    api.post("/segment", message("track", userId="u", event="E", timestamp="2099-01-01T00:00:00Z"))
    # Then it is stored at its receipt time, and the time it gave is kept beside
    [event] = stored_events(aws, "id#user_id#u")
    assert iso(before) <= event["timestamp"] <= iso(datetime.now(UTC))
    assert event["original_timestamp"] == "2099-01-01T00:00:00.000Z"


def test_a_tracking_api_call_with_sent_at_is_corrected_for_the_device_clock(aws, api):
    # Given a device whose clock is one hour ahead: it called track at its 12:00:00 and sent it 5 s later
    ahead = datetime.now(UTC) + timedelta(hours=1)
    body = {
        "userId": "u",
        "event": "E",
        "messageId": "skewed",
        "timestamp": iso(ahead),
        "sentAt": iso(ahead + timedelta(seconds=5)),
    }
    # When it arrives through the Tracking API (no receivedAt: nobody corrected it yet)
    received = datetime.now(UTC)
    assert api.post("/v1/track", body)[0] == 200
    # Then it is stored at receipt - (sentAt - timestamp): 5 s before it arrived
    [event] = stored_events(aws, "id#user_id#u")
    stored = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    assert abs(stored - (received - timedelta(seconds=5))) < timedelta(seconds=2)
    assert event["original_timestamp"] == iso(ahead)


def test_segment_s_own_correction_is_kept_and_its_rule_applied_when_timestamp_is_missing(aws, api, message):
    # Given deliveries from Segment: one with its corrected timestamp, one with only the device's times
    common = {"receivedAt": "2026-03-01T10:00:00.000Z", "sentAt": "2026-03-01T11:00:05.000Z"}
    api.post(
        "/segment",
        message(
            "track",
            userId="u",
            event="corrected",
            messageId="a",
            timestamp="2026-03-01T09:59:55.000Z",
            originalTimestamp="2026-03-01T11:00:00.000Z",
            **common,
        ),
    )
    without = message(
        "track", userId="u", event="raw", messageId="b", originalTimestamp="2026-03-01T11:00:00.000Z", **common
    )
    del without["timestamp"]
    api.post("/segment", without)
    # Then Segment's timestamp is stored as is (not corrected twice),
    # and the other gets Segment's rule: receivedAt - (sentAt - originalTimestamp)
    events = {event["event"]: event for event in stored_events(aws, "id#user_id#u")}
    assert (
        events["corrected"]["timestamp"] == "2026-03-01T09:59:55.000Z"
        and "original_timestamp" not in events["corrected"]
    )
    assert events["raw"]["timestamp"] == "2026-03-01T09:59:55.000Z"
    assert events["raw"]["original_timestamp"] == "2026-03-01T11:00:00.000Z"


def test_a_received_at_in_the_future_does_not_move_the_receipt(aws, api, message):
    # Given a Tracking API caller that claims a receivedAt and timestamp in the future
    api.post(
        "/v1/track",
        {"userId": "u", "event": "E", "timestamp": "2099-01-01T00:00:00Z", "receivedAt": "2099-01-01T00:00:00Z"},
    )
    # Then the event still counts as received now
    [event] = stored_events(aws, "id#user_id#u")
    assert event["timestamp"] <= iso(datetime.now(UTC))


# -- 3. Profile API events -------------------------------------------------------------------------


def events_answer(api: Any, path: str) -> tuple[int, Any, dict[str, str], int]:
    """Status, events, headers and the answer's size as Lambda returns it."""
    event = build_event("GET", path, [("authorization", api.auth)], b"")
    response = api.module.lambda_handler(event, LambdaContext("InboundFunction", 512, 10))
    return (
        response["statusCode"],
        json.loads(response["body"]),
        response.get("headers") or {},
        len(json.dumps(response)),
    )


def all_pages(api: Any, path: str) -> tuple[list[dict[str, Any]], list[int]]:
    events, sizes = [], []
    while True:
        status, page, headers, size = events_answer(api, path)
        assert status == 200, page
        events += page
        sizes.append(size)
        if "X-Next-Cursor" not in headers:
            return events, sizes
        link = headers["Link"]
        assert link.startswith("</v1/users/") and link.endswith('>; rel="next"')
        path = link[1 : link.index(">")]


def test_events_come_to_exactly_the_limit_across_partitions_and_pages(api, message):
    # Given a user with 600 events of about 3 KB, under its anonymous id and its userId
    padding = {"text": "p" * 3000}
    for half, ids in enumerate(({"anonymousId": "anon"}, {"userId": "u", "anonymousId": "anon"})):
        body = [
            message(
                "track",
                event=f"E{half}-{n}",
                properties=padding,
                timestamp=iso(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=2 * n + half)),
                **ids,
            )
            for n in range(300)
        ]
        assert api.post("/segment", body)[1]["stored"] == 300
    # When the Profile API is asked for 500
    status, first, headers, _ = events_answer(api, "/v1/users/user_id:u/events?limit=500")
    # Then it answers exactly 500, newest first, and a cursor for the rest
    assert status == 200 and len(first) == 500
    times = [e["timestamp"] for e in first]
    assert times == sorted(times, reverse=True)
    assert headers["X-Next-Cursor"]
    # And the next page holds the remaining 100, no event twice, and no further cursor
    status, rest, headers, _ = events_answer(
        api, f"/v1/users/user_id:u/events?limit=500&next={headers['X-Next-Cursor']}"
    )
    assert status == 200 and len(rest) == 100 and "X-Next-Cursor" not in headers
    assert len({e["message_id"] for e in first + rest}) == 600
    assert rest[0]["timestamp"] < first[-1]["timestamp"]


def test_large_events_are_paged_under_5_mb(api, message):
    # Given 120 events of about 30 KB made of quotes (each escaped twice in Lambda's answer)
    for start in range(0, 120, 40):
        body = [
            message("track", userId="big", event="E", messageId=f"q{n}", properties={"q": '"' * 15_000})
            for n in range(start, start + 40)
        ]
        status, answer = api.post("/segment", body)
        assert status == 200 and answer["stored"] == 40, answer
    # When the Profile API is asked for all of them at once, and then page after page
    events, sizes = all_pages(api, "/v1/users/user_id:big/events?limit=500")
    # Then each answer stays under 5 MB (Lambda refuses 6 MB), and the pages hold every event once
    assert len(sizes) > 1 and max(sizes) < MAX_ANSWER_BYTES + 2_000
    assert sorted(e["message_id"] for e in events) == sorted(f"q{n}" for n in range(120))


def test_a_cursor_that_is_not_one_is_a_400(api, message):
    api.post("/segment", message("track", userId="u", event="E"))
    status, body = api.get("/v1/users/user_id:u/events?next=not-a-cursor")
    assert status == 400 and body["details"][0]["field"] == "next"


@pytest.mark.parametrize("limit", ["1", "2"])
def test_equal_times_in_two_partitions_are_neither_lost_nor_repeated(api, message, limit):
    # Given events at the same instant with the same messageId under two identities of one user
    api.post("/segment", message("identify", userId="u", anonymousId="a"))
    for ids in ({"anonymousId": "a"}, {"userId": "u"}):
        api.post("/segment", message("track", event="E", messageId="same", timestamp="2026-01-01T00:00:00Z", **ids))
    api.post("/segment", message("track", userId="u", event="E", messageId="other", timestamp="2026-01-01T00:00:00Z"))
    # When paged one or two at a time / Then all three come, once each
    events, _ = all_pages(api, f"/v1/users/user_id:u/events?limit={limit}")
    assert sorted(e["message_id"] for e in events) == ["other", "same", "same"]
