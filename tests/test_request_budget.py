"""DynamoDB requests per message (the budget of the inbound issue), counted at the client."""

from __future__ import annotations

import pytest


@pytest.fixture
def requests_made(api):
    calls: list[str] = []
    client = api.module.store().client
    client.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))
    return calls


def test_known_users_track_page_screen_cost_one_request_each(api, message, requests_made):
    api.post("/segment", message("identify", userId="u1", traits={"a": 1}))
    requests_made.clear()
    for call in (
        message("track", userId="u1", event="E"),
        message("page", userId="u1", name="P"),
        message("screen", userId="u1", name="S"),
    ):
        api.post("/segment", call)
    assert requests_made == ["PutItem", "PutItem", "PutItem"]


def test_duplicate_track_costs_one_request(api, message, requests_made):
    track = message("track", userId="u1", event="E")
    api.post("/segment", track)
    requests_made.clear()
    api.post("/segment", track)
    assert requests_made == ["PutItem"]


def test_known_users_identify_costs_at_most_two_requests(api, message, requests_made):
    api.post("/segment", message("identify", userId="u1", anonymousId="a1", traits={"a": 1}))
    requests_made.clear()
    api.post(
        "/segment",
        message("identify", userId="u1", anonymousId="a1", traits={"a": 2}, timestamp="2026-01-02T00:00:00Z"),
    )
    # one conditional PutItem, not a transaction: a change of one profile alone (issue 15's budget)
    assert requests_made == ["BatchGetItem", "PutItem"]


def test_a_redelivered_identify_of_a_known_user_is_a_duplicate_without_a_marker_item(api, message, aws, requests_made):
    # Given two identifies of a known user observed at the same moment, each applied to it alone
    # (no dedup marker item written), the second one winning
    api.post("/segment", message("identify", userId="u1", traits={"a": 0}, timestamp="2026-01-01T00:00:00Z"))
    first = message("identify", userId="u1", traits={"a": 1}, timestamp="2026-01-02T00:00:00Z")
    second = message("identify", userId="u1", traits={"a": 2}, timestamp="2026-01-02T00:00:00Z")
    for sent in (first, second):
        status, answer = api.post("/segment", sent)
        assert status == 200 and answer["stored"] == 1
    markers = len(aws.items_of_kind("dedup"))
    # When Segment delivers the first one again (its value would win the tie)
    requests_made.clear()
    status, answer = api.post("/segment", first)
    # Then it is a duplicate, found in the profile's recent messages: one read, nothing written
    assert status == 200 and answer.get("duplicate") == 1
    assert requests_made == ["BatchGetItem"]
    assert len(aws.items_of_kind("dedup")) == markers
    (profile,) = aws.items_of_kind("user")
    assert profile["traits"] == {"a": 2}


def test_a_profile_keeps_only_its_newest_message_hashes(api, message, aws):
    from segment_connector.store.profiles import RECENT_MESSAGES

    for n in range(RECENT_MESSAGES + 3):
        api.post("/segment", message("identify", userId="u1", traits={"n": n}, timestamp=f"2026-01-01T00:00:{n:02d}Z"))
    (profile,) = aws.items_of_kind("user")
    assert len(profile["recent_messages"]) == RECENT_MESSAGES and profile["traits"] == {"n": RECENT_MESSAGES + 2}


def test_known_users_track_with_a_known_anonymous_id_costs_one_request(api, message, requests_made):
    api.post("/segment", message("identify", userId="u1", anonymousId="a1"))
    requests_made.clear()
    api.post("/segment", message("track", userId="u1", anonymousId="a1", event="E"))
    assert requests_made == ["TransactWriteItems"]
