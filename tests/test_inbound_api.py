"""Inbound HTTP contract: auth, routes and the errors table."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading

import pytest
from botocore.exceptions import ClientError

from harness import API_KEY, PREFIX, basic


def test_health_needs_no_credentials(api):
    # Given no credentials / When GET /health / Then 200 ok
    assert api.get("/health", auth=None) == (200, {"status": "ok"})


@pytest.mark.parametrize("auth", [None, basic("wrong"), "Bearer " + API_KEY, "Basic !!notbase64"])
def test_bad_or_missing_credentials_get_401_and_nothing_is_written(api, aws, message, auth):
    # Given a valid message / When sent with bad credentials
    status, body = api.post("/segment", message("identify", userId="u1", traits={"a": 1}), auth=auth)
    # Then 401 with a JSON error, and the table stays empty
    assert status == 401
    assert "credentials" in body["error"]
    assert aws.items() == []


def test_basic_auth_trims_spaces_ignores_password_and_accepts_hulls_form(api, message):
    # Given the key with surrounding spaces and a password, and Hull's base64(key) without colon
    padded = "Basic " + base64.b64encode(f"  {API_KEY} :secret".encode()).decode()
    hull_form = "Basic " + base64.b64encode(API_KEY.encode()).decode()
    # When / Then both are accepted
    assert api.post("/segment", message("track", userId="u1", event="A"), auth=padded)[0] == 200
    assert api.post("/segment", message("track", userId="u1", event="B"), auth=hull_form)[0] == 200


def test_x_signature_with_shared_secret(api, aws, message):
    # Given a shared secret configured
    aws.set_secret("shared-secret", "s3cret")
    raw = json.dumps(message("track", userId="u1", event="Signed")).encode()
    good = hmac.new(b"s3cret", raw, hashlib.sha1).hexdigest()
    # When signed correctly (no Authorization header) / Then stored
    assert api.post("/segment", raw=raw, auth=None, headers={"x-signature": good})[0] == 200
    # When the signature does not match the body / Then 401
    assert api.post("/segment", raw=raw + b" ", auth=None, headers={"x-signature": good})[0] == 401


def test_signature_is_refused_without_a_configured_secret(api, message):
    raw = json.dumps(message("track", userId="u1", event="X")).encode()
    sig = hmac.new(b"", raw, hashlib.sha1).hexdigest()
    assert api.post("/segment", raw=raw, auth=None, headers={"x-signature": sig})[0] == 401


def test_write_key_in_body_is_accepted_on_v1_routes_only(api, message):
    body = {**message("track", userId="u1", event="Bought"), "writeKey": API_KEY}
    assert api.post("/v1/track", body, auth=None)[0] == 200
    assert api.post("/segment", body, auth=None)[0] == 401


def test_body_not_json_is_400_with_line_and_column(api):
    # Given a body that is not JSON (a trailing comma on its second line)
    status, body = api.post("/segment", raw=b'{"type": "track",\n "userId": "u1",}')
    # Then 400 saying where and what, in plain words
    assert status == 400
    assert (
        body["error"]
        == "the body is not valid JSON: line 2, column 16: a comma before } is not allowed in JSON: remove it"
    )
    assert api.post("/segment", raw=b"{not json")[1]["error"] == (
        "the body is not valid JSON: line 1, column 2: expected a key in double quotes"
    )


def test_nan_is_not_json(api):
    raw = b'{"type": "track", "userId": "u1", "event": "x", "properties": {"v": NaN}}'
    assert api.post("/segment", raw=raw)[0] == 400


@pytest.mark.parametrize("body", [[], "text", 42, {"batch": "nope"}])
def test_wrong_content_is_400(api, body):
    status, payload = api.post("/segment", body)
    assert status == 400 and payload["error"]


@pytest.mark.parametrize(
    ("fields", "field", "error"),
    [
        (
            {"type": "bogus", "userId": "u1"},
            "type",
            "'bogus' is not a call this connector takes (it takes identify, track, page, screen, group, alias or "
            "delete)",
        ),
        ({"type": "trak", "userId": "u1"}, "type", "'trak' is not a call this connector takes: did you mean track?"),
        (
            {"userId": "u1"},
            "type",
            "is missing: say which call it is (identify, track, page, screen, group, alias or delete)",
        ),
        ({"type": "track", "userId": "u1"}, "event", "is required"),
        ({"type": "track", "event": "x"}, "(message)", "userId or anonymousId is required"),
        ({"type": "group", "userId": "u1"}, "groupId", "is required"),
        ({"type": "identify", "userId": "u1", "traits": ["not", "object"]}, "traits", "must be a JSON object ({...})"),
        ({"type": "identify", "userId": "u1", "timestamp": "yesterday"}, "timestamp", "must be an ISO-8601 date-time"),
        ({"type": "alias", "userId": "u1"}, "previousId", "is required"),
    ],
)
def test_single_invalid_message_is_400_with_field_details_in_plain_words(api, aws, fields, field, error):
    # Given one invalid message / When posted
    status, body = api.post("/segment", {"messageId": "m1", **fields})
    # Then 400 naming the field and what is wrong in plain words (no pydantic wording), nothing stored
    assert status == 400
    (detail,) = [detail for detail in body["details"] if detail["field"] == field]
    assert detail["error"].startswith(error), body
    assert body["error"] == f"the message cannot be stored: {field}: {detail['error']}"
    for pydantic_words in ("Unable to extract tag", "Value error", "Extra inputs", "Field required", "Input should"):
        assert pydantic_words not in json.dumps(body)
    assert aws.items() == []


def test_batch_with_invalid_messages_stores_the_valid_ones_and_lists_the_rejected(api, aws, message):
    # Given a Webhooks (Actions) array with two invalid messages
    batch = [
        message("track", userId="u1", event="Ok 1"),
        {"type": "track", "userId": "u1", "messageId": "bad-1"},
        message("track", userId="u1", event="Ok 2"),
        "not an object",
    ]
    # When posted / Then 200, valid ones stored, rejected listed with index + messageId + error
    status, body = api.post("/segment", batch)
    assert status == 200
    assert body["stored"] == 2
    assert [(r["index"], r["messageId"]) for r in body["rejected"]] == [(1, "bad-1"), (3, None)]
    assert body["rejected"][0]["details"][0]["field"] == "event"
    assert len(aws.items_of_kind("event")) == 2


def test_batch_object_shares_context_and_integrations(api, aws, message):
    body = {"batch": [message("track", userId="u1", event="A")], "context": {"ip": "1.2.3.4"}}
    assert api.post("/v1/batch", body)[0] == 200
    assert aws.items_of_kind("event")[0]["context"] == {"ip": "1.2.3.4"}


def test_message_over_32_kb_is_413(api, aws, message):
    big = message("track", userId="u1", event="Big", properties={"blob": "x" * 33_000})
    status, body = api.post("/segment", big)
    assert status == 413 and "32 KB" in body["error"]
    assert aws.items() == []


def test_oversized_message_in_a_batch_is_rejected_alone(api, aws, message):
    batch = [
        message("track", userId="u1", event="Big", properties={"blob": "x" * 33_000}),
        message("track", userId="u1", event="Small"),
    ]
    status, body = api.post("/segment", batch)
    assert status == 200 and body["stored"] == 1 and "32 KB" in body["rejected"][0]["error"]


def test_body_over_5_mib_is_413_and_nothing_is_written(api, aws, message):
    # Given a batch of 5,242,881 bytes and more
    batch = [message("track", userId="u1", event="E", properties={"p": "x" * 30_000}) for _ in range(176)]
    raw = json.dumps(batch).encode()
    assert len(raw) > 5 * 1024 * 1024
    # When it is delivered, Then it is refused whole
    status, body = api.post("/segment", raw=raw)
    assert status == 413 and "5242880 bytes" in body["error"] and body["code"] == "payload_too_large"
    assert aws.items() == []


@pytest.mark.parametrize(
    "code", ["ProvisionedThroughputExceededException", "ThrottlingException", "InternalServerError"]
)
def test_dynamodb_throttling_is_503_with_retry_after(api, message, code):
    # Given DynamoDB refusing writes
    client = api.module.store().client
    original = client.put_item

    def throttled(**kwargs):
        raise ClientError({"Error": {"Code": code, "Message": "slow down"}}, "PutItem")

    client.put_item = throttled
    try:
        # When a track arrives
        status, body, headers = api.request("POST", "/segment", message("track", userId="u1", event="E"))
    finally:
        client.put_item = original
    # Then 503 + Retry-After so Segment retries; and the retry is stored once
    assert status == 503 and headers["Retry-After"] and body["error"]
    assert api.post("/segment", message("track", userId="u1", event="E", messageId="m-1"))[1]["stored"] == 1


def test_unknown_route_is_404_and_wrong_method_405(api):
    assert api.get("/nope") == (404, {"error": "no route /nope", "code": "not_found", "message": "no route /nope"})
    assert api.post("/v1/unknown", {"userId": "u1"})[0] == 404
    status, body, headers = api.request("GET", "/segment")
    assert status == 405 and headers["Allow"] == "POST, PUT, PATCH" and body["error"]
    assert api.request("DELETE", "/v1/users/user_id:u1")[0] == 405


def test_v1_calls_take_their_type_from_the_path(api, aws):
    status, body = api.post("/v1/track", {"userId": "u1", "event": "Clicked", "messageId": "t1"})
    assert status == 200 and body["stored"] == 1
    assert aws.items_of_kind("event")[0]["source"] == "api"


def test_invalid_settings_answer_500_so_segment_retries(api, aws, message):
    aws.set_settings(handle_pages="maybe")
    status, body = api.post("/segment", message("track", userId="u1", event="E"))
    assert status == 500 and body["code"] == "settings_invalid"
    assert body["details"][0]["field"] == "handle_pages"
    assert aws.items() == []


def test_unknown_settings_keys_are_rejected(api, aws, message):
    aws.set_settings(handle_pagez=True)
    status, body = api.post("/segment", message("track", userId="u1", event="E"))
    assert status == 500 and body["details"][0]["field"] == "handle_pagez"


class SerializedClient:
    """moto's in-process DynamoDB is not thread-safe; real DynamoDB is. Serialize the emulator only."""

    def __init__(self, client):
        self._client, self._lock = client, threading.Lock()
        self.threads: set[int] = set()

    def __getattr__(self, name):
        method = getattr(self._client, name)

        def call(**kwargs):
            with self._lock:
                self.threads.add(threading.get_ident())
                return method(**kwargs)

        return call


def test_large_batch_of_many_users_is_stored_in_order_per_user(api, aws, message, monkeypatch):
    # Given parallel writers, and 60 messages over 20 users, each user's identify before its tracks
    monkeypatch.setenv("INBOUND_WRITERS", "4")
    store = api.module.store()
    serialized = SerializedClient(store.client)
    monkeypatch.setattr(store, "client", serialized)
    batch = []
    for n in range(20):
        batch.append(message("identify", userId=f"u{n}", anonymousId=f"a{n}", traits={"n": n}))
        batch.append(message("track", anonymousId=f"a{n}", event="first"))
        batch.append(message("identify", userId=f"u{n}", traits={"n": n + 100}, timestamp="2026-01-02T00:00:00Z"))
    batch.insert(30, {"type": "track", "userId": "u1"})
    # When posted as one delivery
    status, body = api.post("/segment", batch)
    # Then every valid message is stored, the invalid one is listed by its index
    assert status == 200 and body["stored"] == 60 and [r["index"] for r in body["rejected"]] == [30]
    assert len(serialized.threads) > 1  # written side by side
    for n in (0, 7, 19):
        profile = api.get(f"/v1/users/anonymous_id:a{n}")[1]
        assert profile["user_id"] == f"u{n}" and profile["traits"] == {"n": n + 100}


def test_missing_api_key_parameter_is_500_so_nothing_is_dropped(api, aws, message):
    # Given the operator has not created <prefix>/api-key (and no shared secret)
    aws.ssm.delete_parameter(Name=f"{PREFIX}/api-key")
    from segment_connector.runtime import config

    config.clear_caches()
    # When Segment delivers / Then 500 naming the missing parameter (Segment retries 5xx)
    status, body = api.post("/segment", message("track", userId="u1", event="E"))
    assert status == 500 and body["code"] == "not_configured" and "api-key" in body["error"]
    assert aws.items() == []


def test_the_delivery_answer_says_why_each_ignored_message_was_not_stored(api, aws, message):
    # Given pages off (accounts are off by default) and a batch of calls the connector does not store
    aws.set_settings(handle_pages=False, handle_screens=False)
    batch = [
        message("group", userId="u1", groupId="g1"),
        message("group", userId="u2", groupId="g1"),
        message("page", userId="u1", name="Home"),
        message("screen", userId="u1", name="Settings"),
        message("track", userId="u1", event="E", integrations={"Hull": False}),
        message("track", userId="u1", event="E", context={"library": {"name": "segment-connector"}}),
        message("alias", userId="u1", previousId="u1"),
        message("track", userId="u1", event="Stored"),
    ]
    # When delivered
    status, body = api.post("/segment", batch)
    # Then the answer keeps the count and says why, in plain words, with a count per reason
    assert status == 200 and body["stored"] == 1 and body["ignored"] == 7
    assert body["ignored_reasons"] == {
        "group calls are not stored: handle_accounts is off": 2,
        "page calls are not stored: handle_pages is off": 1,
        "screen calls are not stored: handle_screens is off": 1,
        "messages that opt out of this connector are not stored: integrations.Hull is false": 1,
        "messages sent by this connector are not stored again: context.library.name is segment-connector "
        "(the loop guard)": 1,
        "alias calls whose previousId is the userId are not stored: they link nothing": 1,
    }
    assert sum(body["ignored_reasons"].values()) == body["ignored"]


def test_ignored_reasons_name_ignore_segment_user_id(api, aws, message):
    # Given ignore_segment_userId on
    aws.set_settings(ignore_segment_userId=True, handle_accounts=True)
    # When calls name only a userId, and an alias arrives
    _, body = api.post(
        "/segment",
        [
            message("identify", userId="u1", traits={"plan": "pro"}),
            message("track", userId="u1", event="E"),
            message("group", userId="u1", groupId="g1"),
            message("alias", userId="u1", previousId="a1"),
        ],
    )
    # Then each reason names the setting
    assert body["ignored_reasons"] == {
        "identify calls without an anonymousId or a valid traits.email are not stored: ignore_segment_userId is on": 1,
        "track calls without an anonymousId are not stored: ignore_segment_userId is on": 1,
        "group calls without an anonymousId are not stored: ignore_segment_userId is on": 1,
        "alias calls are not stored: ignore_segment_userId is on": 1,
    }


def test_ignored_reasons_of_a_large_delivery_written_in_parallel(api, aws, message, monkeypatch):
    # Given parallel writers and a delivery large enough to be planned (events stored in batches)
    monkeypatch.setenv("INBOUND_WRITERS", "4")
    aws.set_settings(handle_pages=False)
    batch = [message("page", userId=f"u{n}", name="Home") for n in range(12)]
    batch += [message("track", userId=f"u{n}", event="E") for n in range(12)]
    # When delivered / Then the ignored pages are counted with their reason
    _, body = api.post("/segment", batch)
    assert body["stored"] == 12 and body["ignored"] == 12
    assert body["ignored_reasons"] == {"page calls are not stored: handle_pages is off": 12}


def test_nothing_ignored_gives_empty_ignored_reasons(api, message):
    _, body = api.post("/segment", message("track", userId="u1", event="E"))
    assert body["ignored"] == 0 and body["ignored_reasons"] == {}


def test_the_profile_api_401_names_only_basic_auth(api, aws):
    # Given a Profile API read without credentials (a shared secret exists: deliveries take X-Signature)
    status, body = api.get("/v1/users/user_id:u1", auth=None)
    # Then the 401 names what this route takes: Basic auth only
    assert status == 401
    assert body["error"] == "missing or invalid credentials: send Basic auth with the API key as the user name"


def test_a_delivery_401_names_what_that_route_accepts(api, aws, message):
    # Given no shared secret: /segment takes Basic auth only, the Tracking API also writeKey
    assert api.post("/segment", message("track", userId="u1", event="E"), auth=None)[1]["error"] == (
        "missing or invalid credentials: send Basic auth with the API key as the user name"
    )
    assert api.post("/v1/track", {"userId": "u1", "event": "E"}, auth=None)[1]["error"] == (
        'missing or invalid credentials: send Basic auth with the API key as the user name or "writeKey": '
        "the API key in the body"
    )
    # When a shared secret exists / Then /segment names X-Signature too, the Profile API still does not
    aws.set_secret("shared-secret", "s3cret")
    assert api.post("/segment", message("track", userId="u1", event="E"), auth=None)[1]["error"] == (
        "missing or invalid credentials: send Basic auth with the API key as the user name or an X-Signature "
        "header (HMAC-SHA1 of the body with the shared secret)"
    )
    assert "X-Signature" not in api.get("/v1/users/user_id:u1", auth=None)[1]["error"]
