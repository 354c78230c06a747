"""Property-based tests of the inbound side: whatever JSON a sender puts in a message, the answer is
a 2xx or a 4xx with a body (never an unexpected exception, never a 5xx), a rejected message writes
nothing, and a time in any accepted shape is stored as the instant it names.

Profiles (HYPOTHESIS_PROFILE): `fast` (default, for `make test`) and `thorough` (thousands of examples):
    HYPOTHESIS_PROFILE=thorough .venv/bin/python -m pytest tests/test_properties.py
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from conftest import API_KEY, TABLE, basic
from segment_connector.domain.errors import ConnectorError
from segment_connector.domain.models.items import account_pk, identity_pk
from segment_connector.domain.models.messages import MESSAGE_ADAPTER
from segment_connector.inbound.delivery import Delivery, Secrets
from segment_connector.inbound.ingest import receive as receive_delivery
from segment_connector.inbound.outcomes import IngestResult
from segment_connector.runtime import config
from segment_connector.store.profile_store import shared_store
from soak import jsontext, values
from soak.jsontext import Raw

# The fixtures (moto) are set up once per test, not per example: examples share the table.
_BASE = settings(
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
settings.register_profile("fast", _BASE, max_examples=120, derandomize=True)  # the same examples every run
settings.register_profile("thorough", _BASE, max_examples=3_000)
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))

KINDS = ("identify", "track", "page", "screen", "group", "alias")
FIELDS = (
    "type",
    "messageId",
    "userId",
    "anonymousId",
    "groupId",
    "previousId",
    "user_id",
    "anonymous_id",
    "event",
    "name",
    "category",
    "timestamp",
    "originalTimestamp",
    "receivedAt",
    "sentAt",
    "traits",
    "properties",
    "context",
    "integrations",
    "traits.email",
    "traits.plan",
    "traits.address.city",
    "properties.revenue",
    "context.library",
    "context.library.name",
    "context.traits.x",
    "integrations.segment-connector",
    "integrations.Hull",
    "writeKey",
    "batch",
    "extra",
)
EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime.max.replace(tzinfo=UTC)

# -- strategies --------------------------------------------------------------------------------------

surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"])
texts = st.text(st.one_of(st.characters(), surrogates), max_size=20) | st.sampled_from(values.UNICODE)
unstorable_numbers = st.sampled_from(values.BAD_NUMBERS).map(Raw)
deep = st.integers(min_value=30, max_value=40).map(values.nested_object) | st.sampled_from(
    [values.nested_array(1_000), values.nested_object(3_000)]
)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**50), max_value=10**50),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
    unstorable_numbers,
    deep,
    st.sampled_from(values.GOOD_TIMES + values.BAD_TIMES),
)
keys = texts | st.sampled_from(["email", "id", "firstname", "", "a.b", "hull_segments", "$set"])
json_values = st.recursive(
    leaves, lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4), max_leaves=12
)


def base_message(kind: str, tag: str) -> dict[str, Any]:
    """A valid message whose every write would be keyed by `tag`."""
    message: dict[str, Any] = {
        "type": kind,
        "messageId": f"{tag}-m",
        "anonymousId": tag,
        "timestamp": "2026-01-01T00:00:00.000Z",
        "context": {"ip": "203.0.113.1"},
    }
    extras: dict[str, dict[str, Any]] = {
        "identify": {"traits": {"email": f"{tag}@example.com", "plan": "pro"}},
        "track": {"event": "Signed Up", "properties": {"revenue": 9.5}},
        "page": {"name": "Home", "properties": {"path": "/"}},
        "screen": {"name": "Home"},
        "group": {"groupId": f"{tag}-g", "traits": {"name": "Initech"}},
        "alias": {"userId": tag, "previousId": f"{tag}-prev"},
    }
    return message | extras[kind]


def set_field(message: dict[str, Any], path: str, value: Any) -> None:
    node = message
    *parents, last = path.split(".")
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = value


@st.composite
def mutated_messages(draw: Any, tag: str = "prop-tag") -> tuple[str, dict[str, Any]]:
    kind = draw(st.sampled_from(KINDS))
    message = base_message(kind, tag)
    for path in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3)):
        if path in ("anonymousId", "userId") and message.get(path) == tag:
            continue  # the tag stays where it is: it tells whether the message wrote anything
        set_field(message, path, draw(json_values))
    return kind, message


# -- helpers -----------------------------------------------------------------------------------------


def receive(body: bytes, call: str | None, source: Literal["segment", "api"]) -> IngestResult:
    delivery = Delivery(
        raw_body=body, headers={"authorization": basic(), "content-type": "application/json"}, source=source, call=call
    )
    return receive_delivery(
        delivery,
        config.load_settings(),
        Secrets(API_KEY, None),
        shared_store(config.table_name()),
        config.inbound_writers(),
    )


def answer_of(body: bytes, call: str | None = None) -> tuple[int, dict[str, Any]]:
    """What the handler would answer: 200 with the result, or the ConnectorError's status and body.

    Any other exception propagates (the handler would crash: a 5xx from API Gateway)."""
    try:
        result = receive(body, call, "api" if call else "segment")
    except ConnectorError as error:
        return error.status, error.body()
    return 200, result.body()


def assert_answer_is_a_client_answer(status: int, answer: dict[str, Any]) -> None:
    assert status < 500, answer
    json.dumps(answer, allow_nan=False)  # the handler serializes it: it must be plain JSON
    if status >= 400:
        assert {"error", "code", "message"} <= answer.keys()


def items_under(aws: Any, tag: str) -> list[dict[str, Any]]:
    """Every item a message keyed by `tag` (see base_message) could have written: its identities,
    events, account and dedup marker. Read by key: no scan (moto cannot return some stored maps)."""
    partitions = [
        identity_pk("anonymous_id", tag),
        identity_pk("user_id", tag),
        identity_pk("email", f"{tag}@example.com"),
        account_pk(f"{tag}-g"),
        f"msg#{tag}-m",
        identity_pk("anonymous_id", f"{tag}-prev"),
        identity_pk("user_id", f"{tag}-prev"),
    ]
    found = []
    for pk in partitions:
        found += aws.dynamodb.query(
            TableName=TABLE, KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": pk}}
        )["Items"]
    return found


# -- the message models ------------------------------------------------------------------------------


@PROFILE
@given(mutated_messages(), st.booleans())
def test_message_models_accept_or_reject_any_json_with_a_validation_error_only(drawn, ensure_ascii):
    # Given a message with any JSON values in any fields, as the JSON parser hands it over
    _, message = drawn
    parsed = json.loads(jsontext.encode(message, ensure_ascii).decode("utf-8", "surrogatepass"))
    # When the models validate it
    try:
        validated = MESSAGE_ADAPTER.validate_python(parsed)
    except ValidationError:
        return
    # Then an accepted message has a time between 1970 and 9999
    when = validated.event_time(datetime(2026, 1, 1, tzinfo=UTC))
    assert EARLIEST <= when <= LATEST


# -- receive(): single messages, Tracking API calls, batches ---------------------------------------------


@PROFILE
@given(drawn=mutated_messages(), ensure_ascii=st.booleans(), tracking_api=st.booleans())
def test_any_json_in_any_field_is_answered_2xx_or_4xx(aws, drawn, ensure_ascii, tracking_api):
    # Given a message with hostile values in random fields, sent to /segment or /v1/<type>
    kind, message = drawn
    body = jsontext.encode(message, ensure_ascii)
    # When the connector receives it / Then it answers 200 or a 4xx with an error body
    assert_answer_is_a_client_answer(*answer_of(body, kind if tracking_api else None))


@PROFILE
@given(st.lists(mutated_messages(), min_size=1, max_size=12), st.sampled_from(["array", "batch", "v1"]))
def test_any_json_in_a_batch_is_answered_2xx_or_4xx(aws, drawn, shape):
    # Given a batch of messages with hostile values, as an array, {"batch": [...]} or /v1/batch
    messages = [message for _, message in drawn]
    payload = messages if shape == "array" else {"batch": messages}
    # When received / Then 200 (invalid items listed as rejected) or a 4xx, never an exception
    status, answer = answer_of(jsontext.encode(payload), "batch" if shape == "v1" else None)
    assert_answer_is_a_client_answer(status, answer)
    if status == 200:
        assert sum(answer[k] for k in ("stored", "duplicate", "unchanged", "ignored")) + len(
            answer.get("rejected", [])
        ) == len(messages)


@PROFILE
@given(st.data())
def test_a_rejected_message_writes_nothing(aws, data):
    # Given a batch: a valid message, and a mutated one whose ids are its own (a fresh tag)
    number = uuid.uuid4().hex
    tag = f"tag{number}x"
    _, mutated = data.draw(mutated_messages(tag))
    valid = base_message("track", f"ok{number}")
    # When the connector receives it
    status, answer = answer_of(jsontext.encode([valid, mutated]))
    # Then if the mutated message was rejected, nothing holds its tag; the valid one is stored
    assert_answer_is_a_client_answer(status, answer)
    rejected = {entry["index"] for entry in answer.get("rejected", [])}
    if status == 200 and 1 in rejected:
        assert items_under(aws, tag) == []
    if status == 200:
        assert 0 not in rejected


# -- times ---------------------------------------------------------------------------------------------

instants = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59), timezones=st.just(UTC)
)


def _fraction(moment: datetime, digits: int) -> str:
    return "" if digits == 0 else "." + (f"{moment.microsecond:06d}" + "0" * 3)[:digits]


@st.composite
def sent_times(draw: Any) -> tuple[Any, datetime]:
    """(what the sender writes, the instant it names to the millisecond)."""
    moment = draw(instants)
    shape = draw(st.sampled_from(["z", "offset", "no-zone", "epoch-s", "epoch-ms"]))
    digits = draw(st.integers(min_value=0, max_value=9))
    milliseconds_written = f"{moment.microsecond:06d}"[: min(digits, 3)].ljust(3, "0")
    exact = moment.replace(microsecond=int(milliseconds_written) * 1000)  # extra digits are cut, not rounded
    if shape == "z":
        return moment.strftime("%Y-%m-%dT%H:%M:%S") + _fraction(moment, digits) + "Z", exact
    if shape == "no-zone":
        return moment.strftime("%Y-%m-%dT%H:%M:%S") + _fraction(moment, digits), exact
    if shape == "offset":
        offset = timedelta(minutes=draw(st.integers(min_value=-14 * 60, max_value=14 * 60)))
        try:
            local = moment.astimezone(timezone(offset))
        except OverflowError:  # the local date would be before year 1 or after 9999
            assume(False)
        return local.isoformat(timespec="seconds")[:19] + _fraction(moment, digits) + local.isoformat()[-6:], exact
    seconds = int(moment.timestamp())
    if shape == "epoch-s":
        assume(seconds <= 10**11)  # above, a number is read as milliseconds
        return seconds, moment.replace(microsecond=0)
    milliseconds = seconds * 1000 + moment.microsecond // 1000
    assume(milliseconds > 10**11)
    return milliseconds, moment.replace(microsecond=moment.microsecond // 1000 * 1000)


@PROFILE
@given(sent_times())
@example(sent=(8_867_491_200_001, datetime(2251, 1, 1, 0, 0, 0, 1000, tzinfo=UTC)))  # found by this test
def test_a_time_in_any_accepted_shape_is_stored_as_its_instant(aws, sent):
    # Given a track whose timestamp is an ISO string (Z, offset or no zone, 0-9 fraction digits) or epoch number
    timestamp, instant = sent
    number = uuid.uuid4().hex
    message = {**base_message("track", f"time{number}"), "timestamp": timestamp}
    # When received
    status, answer = answer_of(jsontext.encode(message))
    # Then it is stored with that instant (to the millisecond, in UTC): as its time, or, for an
    # instant after the receipt (which counts as the receipt), as the time the message gave
    assert status == 200 and answer["stored"] == 1, answer
    events = [item for item in items_under(aws, f"time{number}") if item["sk"]["S"].startswith("event#")]
    written = instant.strftime("%Y-%m-%dT%H:%M:%S.%f")[:23] + "Z"
    assert [event.get("original_timestamp", event["timestamp"])["S"] for event in events] == [written]
    assert [event["timestamp"]["S"] <= written for event in events] == [True]
    assert [instant <= datetime.now(UTC) or "original_timestamp" in event for event in events] == [True]


@PROFILE
@given(
    st.one_of(
        st.datetimes(max_value=datetime(1969, 12, 31, 23, 59, 59)).map(lambda d: d.isoformat() + "Z"),
        st.integers(max_value=-1),
        st.integers(min_value=253_402_300_800_000, max_value=10**30),
        st.sampled_from(["10000-01-01T00:00:00Z", "+10000-01-01T00:00:00Z", "0000-01-01T00:00:00Z"]),
    )
)
def test_a_time_out_of_range_is_refused_with_a_field_error(aws, timestamp):
    # Given a track timed before 1970 or after 9999
    message = {**base_message("track", "late"), "timestamp": timestamp}
    # When received / Then 400 naming the timestamp field, nothing stored
    status, answer = answer_of(jsontext.encode(message))
    assert status == 400, answer
    assert any(detail["field"] == "timestamp" for detail in answer.get("details") or []), answer
