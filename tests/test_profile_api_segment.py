"""The Segment-compatible Profile API (issue 16): routes, parameters, shapes and errors, through
InboundFunction's handler. Its token and failures: test_profile_api_segment_auth.py; pages over
large profiles: test_profile_api_segment_pages.py; the local stack: test_profile_api_segment_local.py."""

from __future__ import annotations

from typing import Any

import pytest

from harness import Api, Aws
from segment_profile_helpers import SPACE, TOKEN, Message, identify_ann, path


def test_traits_answer_by_each_id_type_with_nested_traits_as_stored(segment_profiles: Api, api: Api, message: Message):
    # Given a user known by user_id, anonymous_id and email
    identify_ann(api, message)
    expected = {"address": {"city": "Oslo", "zip": "0150"}, "email": "Ann@Example.com", "plan": "pro"}
    for profile in ("user_id:u1", "anonymous_id:a1", "email:ann@example.com", "email:ANN@EXAMPLE.COM"):
        # When a Segment client asks for the traits by that id
        status, body, headers = segment_profiles.request("GET", path(profile, "traits"))
        # Then it gets them in Segment's shape, with a cursor saying that nothing follows
        assert status == 200, body
        assert body == {
            "traits": expected,
            "cursor": {"url": path(profile, "traits").replace("%40", "@"), "has_more": False, "next": "", "limit": 10},
        }
        assert headers["Request-Id"]


def test_traits_take_include_verbose_and_limit(segment_profiles: Api, api: Api, message: Message):
    # Given a user whose plan changed later than the rest of the traits
    identify_ann(api, message)
    later = message("identify", userId="u1", traits={"plan": "max"}, timestamp="2026-03-01T00:00:00.000Z")
    assert api.post("/segment", later)[0] == 200
    # When traits are asked with include and verbose
    status, body = segment_profiles.get(path("user_id:u1", "traits", include="plan,address,nope", verbose="true"))
    # Then only those come back, each with its value and when it changed
    assert status == 200, body
    assert body["traits"] == {
        "address": {"value": {"city": "Oslo", "zip": "0150"}, "updated_at": "2026-01-01T00:00:00.000Z"},
        "plan": {"value": "max", "updated_at": "2026-03-01T00:00:00.000Z"},
    }
    # And limit takes 1 to 200
    status, body = segment_profiles.get(path("user_id:u1", "traits", limit=2))
    assert (status, list(body["traits"]), body["cursor"]["has_more"]) == (200, ["address", "email"], True)
    assert segment_profiles.get(path("user_id:u1", "traits", limit=200))[0] == 200
    for bad in ("0", "201", "ten", "-1", "1.5"):
        status, body = segment_profiles.get(path("user_id:u1", "traits", limit=bad))
        assert status == 400 and body["error"]["code"] == "validation_error", (bad, body)
        assert "limit" in body["error"]["message"]
    status, body = segment_profiles.get(path("user_id:u1", "traits", verbose="maybe"))
    assert status == 400 and "verbose" in body["error"]["message"]


def test_trait_classes_audience_and_computed_trait(segment_profiles: Api, api: Api, aws: Aws, message: Message):
    # Given segments, one of which the user is in
    aws.set_settings(
        segments=[
            {"name": "Pro", "rule": {"trait": "plan", "op": "eq", "value": "pro"}},
            {"name": "Free", "rule": {"trait": "plan", "op": "eq", "value": "free"}},
        ]
    )
    identify_ann(api, message)
    # When the audiences are asked: Then the segments it is in, as Segment lists audiences
    status, body = segment_profiles.get(path("user_id:u1", "traits", **{"class": "audience"}))
    assert (status, body["traits"]) == (200, {"Pro": True})
    status, body = segment_profiles.get(path("user_id:u1", "traits", **{"class": "audience", "verbose": "true"}))
    assert body["traits"] == {"Pro": {"value": True, "updated_at": None}}
    # And computed traits (none computed yet: issue 15) answer an empty set
    status, body = segment_profiles.get(path("user_id:u1", "traits", **{"class": "computed_trait"}))
    assert (status, body["traits"], body["cursor"]["has_more"]) == (200, {}, False)
    status, body = segment_profiles.get(path("user_id:u1", "traits", **{"class": "segment"}))
    assert status == 400 and body["error"]["code"] == "validation_error" and "class" in body["error"]["message"]


def test_the_identifier_is_url_decoded(segment_profiles: Api, api: Api, message: Message):
    # Given a user whose ids hold characters a URL encodes
    body = message("identify", userId="a+b c:é", traits={"email": "x+tag@example.com"})
    assert api.post("/segment", body)[0] == 200
    for profile in ("user_id:a+b c:é", "email:x+tag@example.com"):
        # When asked by them (`%2B` for `+`): Then the user is found
        status, answer = segment_profiles.get(path(profile, "external_ids"))
        assert status == 200, (profile, answer)
        assert {(i["type"], i["id"]) for i in answer["data"]} == {
            ("user_id", "a+b c:é"),
            ("email", "x+tag@example.com"),
        }


def test_external_ids_in_type_then_id_order(segment_profiles: Api, api: Api, message: Message):
    # Given a user with a user_id, two anonymous ids and an email
    identify_ann(api, message)
    assert api.post("/segment", message("track", userId="u1", anonymousId="a0", event="E"))[0] == 200
    # When its external ids are asked
    status, body = segment_profiles.get(path("anonymous_id:a0", "external_ids"))
    # Then each comes in Segment's shape, by type then id
    assert status == 200, body
    assert [(i["type"], i["id"]) for i in body["data"]] == [
        ("anonymous_id", "a0"),
        ("anonymous_id", "a1"),
        ("email", "ann@example.com"),
        ("user_id", "u1"),
    ]
    assert set(body["data"][0]) == {"id", "type", "collection", "created_at", "encoding"}
    assert {(i["collection"], i["encoding"]) for i in body["data"]} == {("users", "none")}
    assert body["cursor"]["limit"] == 10
    # And include keeps the types asked for; limit takes 1 to 100
    status, body = segment_profiles.get(path("user_id:u1", "external_ids", include="email,user_id"))
    assert [i["type"] for i in body["data"]] == ["email", "user_id"]
    assert segment_profiles.get(path("user_id:u1", "external_ids", limit=100))[0] == 200
    assert segment_profiles.get(path("user_id:u1", "external_ids", limit=101))[0] == 400


def test_events_shape_sort_time_range_and_names(segment_profiles: Api, api: Api, message: Message):
    # Given a user's track, page and screen calls on three days
    identify_ann(api, message)
    calls = [
        message("track", userId="u1", event="Signed Up", properties={"plan": "pro"}, timestamp="2026-01-01T10:00:00Z"),
        message("page", anonymousId="a1", name="Home", timestamp="2026-01-02T10:00:00Z", context={"ip": "1.2.3.4"}),
        message("track", userId="u1", event="Paid", properties={"amount": 3}, timestamp="2026-01-03T10:00:00Z"),
    ]
    for call in calls:
        assert api.post("/segment", call)[0] == 200
    # When the events are asked: Then newest first, each in Segment's shape
    status, body = segment_profiles.get(path("user_id:u1", "events"))
    assert status == 200, body
    assert [e["message_id"] for e in body["data"]] == [
        calls[2]["messageId"],
        calls[1]["messageId"],
        calls[0]["messageId"],
    ]
    assert body["data"][0] == {
        "type": "track",
        "event": "Paid",
        "message_id": calls[2]["messageId"],
        "timestamp": "2026-01-03T10:00:00.000Z",
        "properties": {"amount": 3},
        "context": {},
        "external_ids": [{"id": "u1", "type": "user_id", "collection": "users", "encoding": "none"}],
    }
    page = body["data"][1]
    assert (page["type"], page["name"], page["context"], "event" not in page) == (
        "page",
        "Home",
        {"ip": "1.2.3.4"},
        True,
    )
    assert page["external_ids"] == [{"id": "a1", "type": "anonymous_id", "collection": "users", "encoding": "none"}]

    def ids(**query: Any) -> list[str]:
        status, answer = segment_profiles.get(path("user_id:u1", "events", **query))
        assert status == 200, answer
        return [event["message_id"] for event in answer["data"]]

    first, second, third = (call["messageId"] for call in calls)
    assert ids(sort="asc") == [first, second, third]
    assert ids(start="2026-01-02T00:00:00Z") == [third, second]
    assert ids(end="2026-01-02T10:00:00.000Z") == [first]  # end is exclusive
    assert ids(start="2026-01-01T10:00:00+00:00", end="2026-01-03T00:00:00Z", sort="asc") == [first, second]
    assert ids(start="2026-01-03T00:00:00Z", end="2026-01-01T00:00:00Z") == []
    assert ids(include="Paid,Signed Up") == [third, first]
    assert ids(exclude="Paid") == [second, first]
    assert ids(limit=1) == [third]
    for query, parameter in (
        ({"sort": "newest"}, "sort"),
        ({"start": "yesterday"}, "start"),
        ({"end": "2026-13-01"}, "end"),
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"include": "a", "exclude": "b"}, "exclude"),
    ):
        status, answer = segment_profiles.get(path("user_id:u1", "events", **query))
        assert status == 400 and answer["error"]["code"] == "validation_error", (query, answer)
        assert answer["error"]["message"].startswith(parameter), answer


def test_metadata_of_a_user_and_an_account(segment_profiles: Api, api: Api, aws: Aws, message: Message):
    # Given a user with two events and an account
    aws.set_settings(handle_accounts=True)
    identify_ann(api, message)
    old = message("track", userId="u1", event="A", timestamp="2026-01-01T00:00:00Z")
    new = message("track", anonymousId="a1", event="B", timestamp="2026-01-05T00:00:00Z")
    for call in (new, old, message("group", userId="u1", groupId="g1", traits={"name": "Acme"})):
        assert api.post("/segment", call)[0] == 200
    # When their metadata is asked
    status, body = segment_profiles.get(path("user_id:u1", "metadata"))
    # Then it says when they were created and updated and their first and last events
    assert status == 200, body
    metadata = body["metadata"]
    assert metadata["created_at"] and metadata["updated_at"] >= metadata["created_at"]
    assert (metadata["expires_at"], metadata["first_message_id"], metadata["last_message_id"]) == (
        None,
        old["messageId"],
        new["messageId"],
    )
    status, body = segment_profiles.get(path("group_id:g1", "metadata", collection="accounts"))
    assert status == 200 and body["metadata"]["created_at"] and body["metadata"]["last_message_id"] is None


def test_links_between_users_and_accounts(segment_profiles: Api, api: Api, aws: Aws, message: Message):
    # Given two users of an account
    aws.set_settings(handle_accounts=True)
    identify_ann(api, message)
    for user in ("u1", "u2"):
        assert api.post("/segment", message("group", userId=user, groupId="g1", traits={"plan": "team"}))[0] == 200
    # When a user's links are asked: Then its account
    status, body = segment_profiles.get(path("user_id:u1", "links"))
    assert status == 200, body
    (link,) = body["data"]
    assert link["to_collection"] == "accounts"
    assert [(i["id"], i["type"], i["collection"], i["encoding"]) for i in link["external_ids"]] == [
        ("g1", "group_id", "accounts", "none")
    ]
    assert body["cursor"]["limit"] == 20
    # When the account's links are asked: Then its users with their external ids
    status, body = segment_profiles.get(path("group_id:g1", "links", collection="accounts"))
    assert status == 200, body
    assert [link["to_collection"] for link in body["data"]] == ["users", "users"]
    ids = [{(i["type"], i["id"]) for i in link["external_ids"]} for link in body["data"]]
    assert {("user_id", "u1"), ("anonymous_id", "a1"), ("email", "ann@example.com")} in ids
    assert {("user_id", "u2")} in ids
    # And the account's traits, external ids and (no) events
    status, body = segment_profiles.get(path("group_id:g1", "traits", collection="accounts"))
    assert (status, body["traits"]) == (200, {"plan": "team"})
    status, body = segment_profiles.get(path("group_id:g1", "external_ids", collection="accounts"))
    assert [(i["type"], i["id"], i["collection"]) for i in body["data"]] == [("group_id", "g1", "accounts")]
    assert segment_profiles.get(path("group_id:g1", "events", collection="accounts"))[1]["data"] == []


def test_bad_collection_or_id_type_is_a_validation_error(segment_profiles: Api, api: Api, message: Message):
    identify_ann(api, message)
    for url, parameter in (
        (path("user_id:u1", "traits", collection="people"), "collection"),
        (path("group_id:g1", "traits"), "id_type"),
        (path("user_id:u1", "traits", collection="accounts"), "id_type"),
        (path("phone:123", "traits"), "id_type"),
        ("/v1/spaces/" + SPACE + "/collections/users/profiles/u1/traits", "id_type"),
        (path("user_id:", "traits"), "id"),
    ):
        status, body, headers = segment_profiles.request("GET", url)
        assert status == 400, (url, body)
        assert body["error"]["code"] == "validation_error" and body["error"]["message"].startswith(parameter), body
        assert headers["Request-Id"]


def test_unknown_profiles_spaces_and_resources_are_not_found(segment_profiles: Api, api: Api, message: Message):
    identify_ann(api, message)
    not_found = {"error": {"code": "not_found", "message": "Profile was not found."}}
    for url in (
        path("user_id:nobody", "traits"),
        path("email:nobody@example.com", "events"),
        path("group_id:nothing", "traits", collection="accounts"),
        path("user_id:u1", "traits", space="another-space"),
        path("user_id:u1", "profile"),
        f"/v1/spaces/{SPACE}/collections/users",
    ):
        status, body, headers = segment_profiles.request("GET", url)
        assert (status, body) == (404, not_found), url
        assert headers["Request-Id"]


def test_a_traits_answer_costs_at_most_two_dynamodb_requests(
    segment_profiles: Api, api: Api, message: Message, profile_api_requests: list[str]
):
    # Given a user known by three ids
    identify_ann(api, message)
    for profile in ("user_id:u1", "anonymous_id:a1", "email:ann@example.com"):
        for query in ({}, {"verbose": "true", "include": "plan", "limit": "1"}):
            profile_api_requests.clear()
            # When its traits are asked by any of them
            status, _ = segment_profiles.get(path(profile, "traits", **query))
            # Then one request where the profile lives, two through an alias
            assert status == 200
            through_alias = ["BatchGetItem"] if profile != "user_id:u1" else []
            assert profile_api_requests == ["Query", *through_alias], (profile, profile_api_requests)


def test_traits_cost_at_most_two_requests_by_any_id_after_moves_merges_and_for_visitors(
    segment_profiles: Api, api: Api, message: Message, profile_api_requests: list[str]
):
    # Given a visitor seen on three devices, one email (the profile at the first anonymous id, the
    # others aliases of it), who then identifies (the profile moves to the user id)
    for device in ("d1", "d2", "d3"):
        identify = message("identify", anonymousId=device, traits={"email": "vi@example.com", "plan": "pro"})
        assert api.post("/segment", identify)[0] == 200
    known = message("identify", userId="u7", traits={"email": "vi@example.com", "seats": 2})
    assert api.post("/segment", known)[0] == 200
    # And a second known user merged into the first by an alias call, with ids of its own
    assert api.post("/segment", message("identify", userId="u8", anonymousId="e1", traits={"team": "x"}))[0] == 200
    assert api.post("/segment", message("identify", userId="u8", anonymousId="e2"))[0] == 200
    assert api.post("/segment", message("alias", userId="u7", previousId="u8"))[0] == 200
    # And an anonymous visitor known only by events, while another person's deletion is in progress
    assert api.post("/segment", message("track", anonymousId="v1", event="Viewed"))[0] == 200
    assert api.post("/segment", message("identify", userId="gone", traits={"plan": "x"}))[0] == 200
    assert api.post("/segment", message("delete", userId="gone"))[0] == 200
    # When the traits are asked by each id: Then at most two requests each, and the same profile
    for profile in (
        "user_id:u7",
        "anonymous_id:d1",
        "anonymous_id:d2",
        "anonymous_id:d3",
        "user_id:u8",
        "anonymous_id:e1",
        "anonymous_id:e2",
        "anonymous_id:v1",
    ):
        profile_api_requests.clear()
        status, body = segment_profiles.get(path(profile, "traits"))
        assert status == 200, (profile, body)
        assert len(profile_api_requests) <= 2, (profile, profile_api_requests)
        if profile != "anonymous_id:v1":
            assert body["traits"] == {"email": "vi@example.com", "plan": "pro", "seats": 2, "team": "x"}, profile
    # And the deleted person's events do not make a visitor of them
    assert segment_profiles.get(path("user_id:gone", "traits"))[0] == 404


def test_the_existing_profile_api_is_unchanged(segment_profiles: Api, api: Api, message: Message):
    identify_ann(api, message)
    status, body = api.get("/v1/users/user_id:u1")
    assert status == 200 and body["traits"]["plan"] == "pro" and "cursor" not in body
    assert api.get(path("user_id:u1", "traits"))[0] == 401  # the API key does not open the new routes
    assert TOKEN not in str(body)


def test_the_console_lookup_gives_the_users_traits_path(
    console_api: Api, api: Api, message: Message, monkeypatch: pytest.MonkeyPatch
):
    # Given a user, and a stack whose SpaceId is the Segment space's id
    monkeypatch.setenv("SPACE_ID", SPACE)
    identify_ann(api, message)
    # When the console looks the user up by email: Then the path of its traits, by its best id
    status, found = console_api.get("/console/api/users?q=ann%40example.com")
    assert status == 200, found
    assert found["profile_api"] == {"traits_path": path("user_id:u1", "traits")}
    # And an anonymous visitor's by its anonymous id
    assert api.post("/segment", message("track", anonymousId="v 1", event="E"))[0] == 200
    found = console_api.get("/console/api/users?q=anonymous_id:v%201")[1]
    assert found["profile_api"]["traits_path"] == path("anonymous_id:v 1", "traits")


def test_the_bench_prints_each_routes_requests_within_the_budget(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import profile_api

    # When `python -m bench profile-api` runs: Then every route answers within its budget
    assert profile_api.main() == 0
    lines = capsys.readouterr().out.splitlines()
    by_user_id = next(line for line in lines if line.strip().startswith("traits, by user_id"))
    assert " 200 " in by_user_id
    assert by_user_id.split()[4:6] == ["1", "1"], by_user_id  # one request, one read unit (status 200)
