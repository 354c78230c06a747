"""Inbound at the edges: what Segment really sends and what hostile senders send."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness import SerializedClient, basic
from segment_connector.domain.models.settings import ConnectorSettings
from segment_connector.inbound.delivery import Delivery, Secrets
from segment_connector.inbound.ingest import receive
from segment_connector.inbound.ingestor import Ingestor
from segment_connector.store.profile_store import ProfileStore

SPEC_CONTEXT = {
    "ip": "203.0.113.7",
    "locale": "fr-FR",
    "timezone": "Europe/Paris",
    "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 Safari/605.1.15",
    "library": {"name": "analytics.js", "version": "next-1.70.0"},
    "page": {
        "path": "/pricing",
        "referrer": "https://www.example.com/",
        "search": "?plan=pro",
        "title": "Pricing",
        "url": "https://www.example.com/pricing?plan=pro",
    },
    "campaign": {"name": "autumn", "source": "newsletter", "medium": "email", "term": "crm", "content": "a"},
}


def user(api: Any, reference: str) -> tuple[int, Any]:
    return api.get(f"/v1/users/{reference}")


# -- deliveries as Segment sends them -------------------------------------------------------------


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_segment_accepts_put_and_patch_like_post(api, message, method):
    # Given a Webhooks (Actions) destination configured with PUT or PATCH
    body = [message("identify", userId="u1", traits={"plan": "pro"}), message("track", userId="u1", event="E")]
    # When it delivers
    status, answer, _ = api.request(method, "/segment", body)
    # Then it is stored exactly like a POST
    assert status == 200 and answer["stored"] == 2
    assert user(api, "user_id:u1")[1]["traits"] == {"plan": "pro"}


def test_a_1000_message_spec_batch_of_2_3_mb_is_stored_whole(api, aws, message):
    # Given a Webhooks (Actions) batch of 1,000 Spec-shaped calls across 100 users, 2.3 MB
    batch = []
    for n in range(1000):
        kind = ("track", "page", "identify")[n % 3]
        fields: dict[str, Any] = {
            "userId": f"u{n % 100}",
            "anonymousId": f"anon-{n % 100}",
            "context": SPEC_CONTEXT,
            "sentAt": "2026-01-01T00:00:01.000Z",
        }
        if kind == "track":
            fields.update(
                event="Order Completed",
                properties={
                    "order_id": f"o{n}",
                    "total": 27.5,
                    "currency": "EUR",
                    "products": [{"sku": "s" * 700, "price": 9.5}] * 2,
                },
            )
        elif kind == "page":
            fields.update(name="Pricing", properties={"path": "/pricing", "blurb": "p" * 1500})
        else:
            fields.update(traits={"email": f"user{n % 100}@example.com", "seen": n, "bio": "b" * 1600})
        batch.append(message(kind, **fields))
    raw = json.dumps(batch).encode()
    assert 2_200_000 < len(raw) < 5 * 1024 * 1024
    # When it is delivered with the writers the template deploys
    status, answer = api.post("/segment", raw=raw)
    # Then every message is stored
    assert status == 200 and answer["stored"] == 1000 and "rejected" not in answer, {
        k: v for k, v in answer.items() if k != "rejected"
    }
    events = list(aws.items_of_kind("event"))
    assert len(events) == 667
    assert len(user(api, "user_id:u7")[1]["anonymous_ids"]) == 1


def test_more_than_4000_messages_is_413(api, aws):
    # Given a body of 4,001 tiny messages
    batch = [{"type": "track", "userId": "u", "event": "E"} for _ in range(4001)]
    # When delivered, Then it is refused whole and nothing is written
    status, answer = api.post("/segment", batch)
    assert status == 413 and "at most 4000" in answer["error"]
    assert aws.items() == []


@pytest.mark.parametrize(
    "sent, stored",
    [
        ("2026-03-04T05:06:07Z", "2026-03-04T05:06:07.000Z"),
        ("2026-03-04T05:06:07.123456789Z", "2026-03-04T05:06:07.123Z"),
        ("2026-03-04T05:06:07.5+02:00", "2026-03-04T03:06:07.500Z"),
        ("2026-03-04T05:06:07", "2026-03-04T05:06:07.000Z"),
        (1772600767, "2026-03-04T05:06:07.000Z"),
        (1772600767.25, "2026-03-04T05:06:07.250Z"),
        (1772600767123, "2026-03-04T05:06:07.123Z"),
    ],
)
def test_times_as_iso_strings_or_epoch_numbers(api, message, sent, stored):
    # Given a track whose timestamp is an ISO string (any fraction, offset or none) or a number
    # When it is delivered
    status, _ = api.post("/segment", message("track", userId="u1", event="E", timestamp=sent))
    # Then its time is stored in UTC, milliseconds
    assert status == 200
    assert api.get("/v1/users/user_id:u1/events")[1][0]["timestamp"] == stored


@pytest.mark.parametrize(
    "field, value",
    [
        ("timestamp", "yesterday"),
        ("timestamp", "1969-12-31T23:59:59Z"),
        ("originalTimestamp", -1),
        ("sentAt", "9999-12-31T23:30:00-01:00"),
        ("receivedAt", 10**20),
        ("timestamp", True),
        ("timestamp", {"at": 1}),
        ("timestamp", "0001-01-01T00:00:00Z"),
    ],
)
def test_an_unusable_time_rejects_that_message_with_a_field_error(api, aws, message, field, value):
    # Given a batch where one message carries an unparseable or out-of-range time
    batch = [message("track", userId="u1", event="Bad", **{field: value}), message("track", userId="u1", event="Ok")]
    # When it is delivered
    status, answer = api.post("/segment", batch)
    # Then that message alone is rejected, naming the field; the other one is stored
    assert status == 200 and answer["stored"] == 1
    assert answer["rejected"][0]["details"][0]["field"] == field
    assert [e["event"] for e in api.get("/v1/users/user_id:u1/events")[1]] == ["Ok"]


# -- hostile input never causes a 5xx -------------------------------------------------------------


def test_lone_surrogates_in_values_are_stored_as_replacement_characters(api, message):
    # Given traits, properties and context holding lone UTF-16 surrogates (keys and values)
    raw = (
        b'[{"type":"identify","userId":"u1","messageId":"i1","traits":{"name":"Ann\\ud800e","k\\udfff":1}},'
        b'{"type":"track","userId":"u1","messageId":"t1","event":"E\\ud83d","properties":{"p":"\\udc00"},'
        b'"context":{"page":{"title":"x\\ud800"}}}]'
    )
    # When delivered
    status, answer = api.post("/segment", raw=raw)
    # Then both are stored, each surrogate replaced by U+FFFD, the rest of the text kept
    assert status == 200 and answer["stored"] == 2
    assert user(api, "user_id:u1")[1]["traits"] == {"name": "Ann\ufffde", "k\ufffd": 1}
    event = api.get("/v1/users/user_id:u1/events")[1][0]
    assert (event["event"], event["properties"], event["context"]["page"]["title"]) == (
        "E\ufffd",
        {"p": "\ufffd"},
        "x\ufffd",
    )


@pytest.mark.parametrize("field", ["userId", "anonymousId", "messageId", "groupId"])
def test_a_lone_surrogate_in_an_id_rejects_the_message(api, aws, field):
    # Given an id that is not valid unicode (ids must be exact: never repaired)
    fields = {"userId": "u1", "anonymousId": "a1", "messageId": "m1", "groupId": "g1", field: "id\ud800"}
    body = [
        {"type": "group" if field == "groupId" else "identify", **fields},
        {"type": "track", "userId": "u2", "event": "Ok"},
    ]
    # When delivered in a batch
    status, answer = api.post("/segment", raw=json.dumps(body).encode())
    # Then it is rejected naming the field, and the other message is stored
    assert status == 200 and answer["stored"] == 1
    assert answer["rejected"][0]["details"][0]["field"] == field
    assert not aws.items_of_kind("user") and not aws.items_of_kind("dedup")


@pytest.mark.parametrize(
    "raw_number, problem",
    [
        ("1e400", "out of range"),
        ("-1e400", "out of range"),
        ("1e-300", "out of range"),
        ("1e200", "out of range"),
        ("123456789012345678901234567890123456789", "38 significant digits"),
        (str(10**126), "out of range"),
    ],
)
def test_numbers_dynamodb_cannot_hold_reject_the_message_naming_the_field(api, aws, raw_number, problem):
    # Given a trait DynamoDB cannot store faithfully
    raw = (
        '[{"type":"identify","userId":"u1","traits":{"score":{"deep":' + raw_number + "}}},"
        '{"type":"track","userId":"u1","event":"Ok"}]'
    ).encode()
    # When delivered
    status, answer = api.post("/segment", raw=raw)
    # Then the message is rejected with the field's path and the problem; nothing of it is written
    assert status == 200 and answer["stored"] == 1
    [detail] = answer["rejected"][0]["details"]
    assert detail["field"] == "traits.score.deep" and problem in detail["error"]
    assert not aws.items_of_kind("user")


def test_numbers_dynamodb_can_hold_are_stored_exactly(api, message):
    # Given huge but storable numbers (one significant digit, or 38), and tiny ones
    traits = {
        "big": 10**45,
        "wide": 12345678901234567890123456789012345678,
        "small": 1e-130,
        "zero": 0.0,
        "negative": -(10**100),
    }
    # When stored and read back
    assert api.post("/segment", message("identify", userId="u1", traits=traits))[0] == 200
    # Then they come back unchanged
    assert user(api, "user_id:u1")[1]["traits"] == traits


def test_nesting_deeper_than_dynamodb_allows_rejects_the_message(api, aws, message):
    # Given properties nested 32 levels below `properties` (DynamoDB stores 32 levels in all)
    deep: Any = "leaf"
    for _ in range(32):
        deep = {"d": deep}
    batch = [message("track", userId="u1", event="Deep", properties=deep), message("track", userId="u1", event="Ok")]
    # When delivered
    status, answer = api.post("/segment", batch)
    # Then that message is rejected naming where, the other stored
    assert status == 200 and answer["stored"] == 1
    detail = answer["rejected"][0]["details"][0]
    assert detail["field"].startswith("properties.d.d") and "32 levels" in detail["error"]
    # And 31 levels below `properties` are stored
    shallow: Any = "leaf"
    for _ in range(31):
        shallow = {"d": shallow}
    assert api.post("/segment", message("track", userId="u1", event="Fits", properties=shallow))[1]["stored"] == 1


@pytest.mark.parametrize("depth", [5_000, 100_000])
def test_very_deep_bodies_cost_nothing_before_authentication(api, aws, depth):
    raw = b'{"a":' * depth + b"1" + b"}" * depth
    # Given a body nested thousands of levels deep, without credentials: 401 (never parsed)
    status, answer = api.post("/segment", raw=raw, auth=None)
    assert status == 401 and answer["code"] == "unauthorized"
    # With credentials: a 400 naming the problem, never a RecursionError
    status, answer = api.post("/segment", raw=raw)
    assert status == 400 and answer["code"] == "bad_request" and "nested" in json.dumps(answer)
    # A batch of such arrays: each item rejected alone
    status, answer = api.post("/segment", raw=b"[" + b"[" * depth + b"]" * depth + b"]")
    assert status in (200, 400) and answer["code" if status == 400 else "success"]
    # And on the Tracking API (credentials may be in the body): 401
    assert api.post("/v1/batch", raw=raw, auth=None)[0] == 401
    assert aws.items() == []


@pytest.mark.parametrize("authorization", ["Basic \xff", "Basic \xff\xfe:", "B\xe9sic abc", "Basic " + "\u20ac" * 3])
def test_an_authorization_header_that_is_not_ascii_is_401(api, message, authorization):
    # Given an Authorization header holding non-ASCII characters
    # When a delivery or a profile read is made with it, Then 401 with a JSON body
    status, answer = api.post("/segment", message("track", userId="u1", event="E"), auth=authorization)
    assert status == 401 and answer["code"] == "unauthorized"
    assert api.get("/v1/users/user_id:u1", auth=authorization)[0] == 401
    assert (
        api.post(
            "/segment", message("track", userId="u1", event="E"), headers={"x-signature": "\xff\u20ac"}, auth=None
        )[0]
        == 401
    )


@pytest.mark.parametrize(
    "reference",
    [
        "user_id:a%00b",
        "user_id:a%23b",
        "user_id:%ff",
        "user_id:%c3%28",
        "user_id:a#b",
        "email:%ff@x.io",
        "user_id:\u20ac",
        "nonsense%ff",
    ],
)
def test_profile_ids_with_odd_bytes_are_404_or_400(api, message, reference):
    # Given no such user, When a profile, its events or an account is asked for by an odd id
    for path in (f"/v1/users/{reference}", f"/v1/users/{reference}/events", f"/v1/accounts/{reference}"):
        status, answer = api.get(path)
        # Then 404 (or 400 for a malformed reference) with a JSON body, never 405 or 5xx
        assert status in (400, 404) and answer["code"] in ("bad_request", "not_found"), path


def test_a_user_whose_id_holds_a_hash_is_found(api, message):
    api.post("/segment", message("identify", userId="a#b\u20ac", traits={"plan": "pro"}))
    assert user(api, "user_id:a%23b%E2%82%AC")[1]["traits"] == {"plan": "pro"}


def test_the_profile_api_takes_basic_auth_only(api, aws, message):
    # Given a shared secret configured and a user stored
    import hashlib
    import hmac

    aws.set_secret("shared-secret", "s3cret")
    api.post("/segment", message("identify", userId="u1", traits={"plan": "pro"}))
    signature = hmac.new(b"s3cret", b"", hashlib.sha1).hexdigest()
    # When the profile is read with an X-Signature over the empty body (a token that never expires)
    status, answer = api.get("/v1/users/user_id:u1", auth=None, headers={"x-signature": signature})
    # Then 401; Basic auth still works
    assert status == 401 and answer["code"] == "unauthorized"
    assert api.get("/v1/users/user_id:u1", auth=basic())[0] == 200


# -- concurrency inside one delivery --------------------------------------------------------------


def test_50_identifies_of_one_user_through_linked_anonymous_ids_are_200_the_first_time(aws, monkeypatch):
    # Given a user with 50 anonymous ids already linked to it
    store = ProfileStore("connector-test", SerializedClient(aws.dynamodb))
    settings = ConnectorSettings()
    secrets = Secrets("k", None)
    headers = {"authorization": basic("k")}
    links = [
        {
            "type": "identify",
            "userId": "u1",
            "anonymousId": f"a{n}",
            "messageId": f"link-{n}",
            "timestamp": "2026-01-01T00:00:00Z",
        }
        for n in range(50)
    ]
    assert (
        receive(Delivery(json.dumps(links).encode(), headers, "segment"), settings, secrets, store, 16).counts["stored"]
        == 50
    )
    # When one delivery carries 50 identifies that reach the user through different ids
    identifies = [
        {
            "type": "identify",
            "anonymousId": f"a{n}",
            "messageId": f"i-{n}",
            **({"userId": "u1"} if n % 2 else {}),
            "timestamp": f"2026-01-02T00:00:{n:02d}Z",
            "traits": {f"t{n}": n, "last": n},
        }
        for n in range(50)
    ]
    conflicts = []
    commit = Ingestor._commit

    def counting_commit(self: Any, build: Any) -> Any:
        original_build = build

        def build_and_count() -> Any:
            conflicts.append(1)
            return original_build()

        return commit(self, build_and_count)

    monkeypatch.setattr(Ingestor, "_commit", counting_commit)
    result = receive(Delivery(json.dumps(identifies).encode(), headers, "segment"), settings, secrets, store, 16)
    # Then it is answered 200 the first time: every identify stored, none retried after a lost race
    assert result.counts["stored"] == 50 and not result.rejected
    assert len(conflicts) == 50
    profile = list(aws.items_of_kind("user"))
    assert len(profile) == 1
    assert profile[0]["traits"]["last"] == 49 and all(profile[0]["traits"][f"t{n}"] == n for n in range(50))


def test_an_empty_trait_name_rejects_the_message(api, aws, message):
    # Given a trait named "" (DynamoDB stores no empty attribute name)
    batch = [message("identify", userId="u1", traits={"": 1, "plan": "pro"}), message("track", userId="u1", event="Ok")]
    # When delivered, Then that message is rejected naming the field, the other stored
    status, answer = api.post("/segment", batch)
    assert status == 200 and answer["stored"] == 1
    assert answer["rejected"][0]["details"][0]["field"] == 'traits.""'


def test_a_newer_group_call_with_the_same_value_keeps_its_time(api, aws, message):
    # Given accounts stored, plan=pro observed on Jan 1 then again on Jan 3
    aws.set_settings(handle_accounts=True)
    for day, plan in (("01", "pro"), ("03", "pro"), ("02", "free")):  # Jan 2 arrives last
        api.post(
            "/segment",
            message("group", userId="u1", groupId="acme", traits={"plan": plan}, timestamp=f"2026-01-{day}T00:00:00Z"),
        )
    # Then the newest observation wins
    assert api.get("/v1/accounts/acme")[1]["traits"] == {"plan": "pro"}
