"""Status warnings: computed from the raw settings document and which keys exist (a pure function)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from segment_connector import LIBRARY_NAME
from segment_connector.domain.models.settings import ConnectorSettings
from segment_connector.ops.status import CODES, StatusWarning, Warning, status_warnings  # noqa: A004 - the alias under test

KEYS: dict[str, Any] = {"has_write_key": True, "has_api_key": True}
# Everyone, with an attribute, and events from Segment sent back (forward_events on raises its own warning)
SENDS_SOMETHING = {"synchronized_segments": ["ALL"], "synchronized_properties": ["email"], "send_events": []}


def codes(document, **keys):
    return [warning["code"] for warning in status_warnings(document, **{**KEYS, **keys})]


def test_a_working_configuration_has_no_warning():
    # Given both keys, everyone synchronized with an attribute and no events / Then nothing to warn about
    assert status_warnings(SENDS_SOMETHING, **KEYS) == []


def test_warnings_are_code_and_message_dicts():
    # Given a document that raises every warning
    document = {
        "segments": [{"name": "Pro", "rule": {"trait": "plan", "op": "eq", "value": "pro"}}],
        "synchronized_segments": ["Gone"],
        "forward_events": True,
    }
    warnings = status_warnings(document, has_write_key=False, has_api_key=False)
    # Then each is exactly {"code", "message"}, JSON as it is, with attribute access too
    assert all(set(warning) == {"code", "message"} for warning in warnings)
    assert json.loads(json.dumps(warnings)) == [dict(warning) for warning in warnings]
    assert all(isinstance(warning, StatusWarning) and warning.code == warning["code"] for warning in warnings)
    assert Warning is StatusWarning
    assert [warning.code for warning in warnings] == [
        "no_write_key",
        "unknown_segment",
        "forward_events_loop",
        "no_api_key",
    ]
    assert set(CODES) == {
        "no_write_key",
        "no_users_in_filter",
        "nothing_to_send",
        "unknown_segment",
        "computed_trait_shadows",
        "forward_events_loop",
        "forward_events_off",
        "no_api_key",
    }


@pytest.mark.parametrize(
    "document",
    [
        {"segments": [{"name": "Pro", "rule": {"trait": "plan", "op": "exists"}}]},
        {"account_segments": [{"name": "Big", "rule": {"trait": "employees", "op": "gte", "value": 100}}]},
        {"synchronized_segments": ["ALL"]},
    ],
)
def test_no_write_key_when_segments_or_a_filter_are_set(document):
    # Given segments or a User Filter, and no write key
    warnings = status_warnings(document, has_write_key=False, has_api_key=True)
    # Then nothing can be sent: the warning says so and how to fix it
    (warning,) = [w for w in warnings if w.code == "no_write_key"]
    assert "write key" in warning.message and "keys set write-key" in warning.message


def test_no_write_key_is_not_raised_when_nothing_is_configured_to_send():
    # Given the template's default settings (no segments, an empty filter) and no write key
    # Then the missing key is not what is wrong, the empty filter is (with or without a key)
    assert codes({"synchronized_segments": [], "send_events": []}, has_write_key=False) == ["no_users_in_filter"]
    assert codes({"synchronized_segments": [], "send_events": [], "synchronized_properties": ["email"]}) == [
        "no_users_in_filter"
    ]


@pytest.mark.parametrize("document", [{"synchronized_segments": []}, {}])
@pytest.mark.parametrize("has_write_key", [True, False])
def test_no_users_in_filter_says_the_user_filter_sends_nobody(document, has_write_key):
    # Given synchronized_segments [] (also the default when it is missing), with or without a write key
    warnings = status_warnings(
        {**document, "synchronized_properties": ["email"], "send_events": []},
        has_write_key=has_write_key,
        has_api_key=True,
    )
    # Then the warning says, in plain words, that nobody is sent, and how to fix it
    (warning,) = warnings
    assert warning.code == "no_users_in_filter"
    assert warning.message.startswith("The User Filter sends nobody: synchronized_segments is []")
    assert '["ALL"]' in warning.message


def test_nothing_to_send_without_attributes_and_events():
    # Given a write key, everyone synchronized, but no attribute and no event
    document = {"synchronized_segments": ["ALL"], "synchronized_properties": [], "send_events": []}
    # Then the warning names both lists
    (warning,) = status_warnings(document, **KEYS)
    assert warning.code == "nothing_to_send"
    assert "synchronized_properties" in warning.message and "send_events" in warning.message
    # And events alone (the default send_events ["ALL"]) or attributes alone are something to send
    assert codes({"synchronized_segments": ["ALL"], "forward_events": True}) == ["forward_events_loop"]
    assert codes({**document, "synchronized_properties": ["plan"]}) == []
    assert "nothing_to_send" not in codes(document, has_write_key=False)


def test_unknown_segment_names_each_unknown_name_once():
    # Given filters naming segments that no definition defines (ALL is always known)
    document = {
        "segments": [{"name": "Pro", "rule": {"trait": "plan", "op": "eq", "value": "pro"}}],
        "synchronized_segments": ["Pro", "ALL", "Ghost", "Ghost", "Other"],
        "synchronized_account_segments": ["Big"],
        "synchronized_properties": ["email"],
    }
    warnings = [w for w in status_warnings(document, **KEYS) if w.code == "unknown_segment"]
    # Then one warning per unknown name, naming it and its filter
    assert len(warnings) == 3
    assert "'Ghost'" in warnings[0].message and "synchronized_segments" in warnings[0].message
    assert "'Other'" in warnings[1].message
    assert "'Big'" in warnings[2].message and "synchronized_account_segments" in warnings[2].message
    assert "account_segments" in warnings[2].message


def test_unknown_segment_is_reported_for_a_document_the_model_refuses():
    # Given a document that the functions refuse (an unknown name is a validation error too)
    document = {"synchronized_segments": ["Ghost"], "synchronized_properties": ["email"], "send_events": []}
    with pytest.raises(ValueError, match="Ghost"):
        ConnectorSettings.model_validate(document)
    # Then the warnings still explain it
    assert codes(document) == ["unknown_segment"]


def test_the_account_filter_defaults_to_all():
    # Given no synchronized_account_segments (default ["ALL"]) / Then no unknown account segment
    assert codes(SENDS_SOMETHING) == []
    assert ConnectorSettings().synchronized_account_segments == ["ALL"]


@pytest.mark.parametrize("on", [True, "true", "yes", 1])
def test_forward_events_loop_explains_the_loop_and_the_guard(on):
    # Given forward_events on (as pydantic would read it)
    (warning,) = status_warnings({**SENDS_SOMETHING, "forward_events": on}, **KEYS)
    # Then the message explains the loop and the guard against it
    assert warning.code == "forward_events_loop"
    assert "sent back to Segment" in warning.message and "loop" in warning.message
    assert f'context.library.name "{LIBRARY_NAME}"' in warning.message
    assert '{"Hull": false, "segment-connector": false}' in warning.message


@pytest.mark.parametrize("off", [False, "false", 0, None, "missing"])
def test_forward_events_off_says_events_from_segment_are_not_sent_back(off):
    # Given forward_events off (or missing: its default) and events to send (send_events ["ALL"])
    document = {**SENDS_SOMETHING, "send_events": ["ALL"], "forward_events": off}
    if off == "missing":
        del document["forward_events"]
    # Then the warning says that Segment's own events are not sent back, and how to change it
    (warning,) = status_warnings(document, **KEYS)
    assert warning.code == "forward_events_off"
    assert warning.message.startswith("forward_events is off: the track, page and screen calls that came from Segment")
    assert "not sent back to Segment" in warning.message and "Turn forward_events on" in warning.message
    # And without events to send (send_events []) there is nothing to say
    assert codes({**document, "send_events": []}) == []


def test_no_api_key_names_the_parameter():
    # Given no <prefix>/api-key
    (warning,) = status_warnings(SENDS_SOMETHING, has_write_key=True, has_api_key=False, prefix="/sc/")
    # Then deliveries are refused: the warning names the parameter and the fix
    assert warning.code == "no_api_key"
    assert "/sc/api-key" in warning.message and "keys set api-key" in warning.message


def test_values_of_the_wrong_type_do_not_break_the_warnings():
    # Given a document with values the model refuses
    document = {
        "segments": "nope",
        "synchronized_segments": "Pro",
        "send_events": None,
        "synchronized_properties": {"a": 1},
        "forward_events": "maybe",
    }
    # Then the warnings are still computed (wrong lists count as empty)
    assert codes(document) == ["nothing_to_send"]
    # not even an object: the defaults (an empty User Filter, send_events ["ALL"], forward_events off)
    assert codes([], has_api_key=False) == ["no_users_in_filter", "forward_events_off", "no_api_key"]


COMPUTED = [
    {"name": "revenue", "type": "sum", "event": "Order Completed", "property": "total"},
    {"name": "orders", "type": "count", "event": "Order Completed"},
]


def test_computed_trait_shadows_names_each_computed_trait_users_also_send():
    # Given computed traits, and users seen sending revenue and plan (not orders)
    document = {**SENDS_SOMETHING, "computed_traits": COMPUTED}
    warnings = status_warnings(document, **KEYS, received_traits={"plan", "revenue"})
    # Then one warning, naming revenue, in the shape of the others
    assert [(w.code, set(w)) for w in warnings] == [("computed_trait_shadows", {"code", "message"})]
    assert "'revenue'" in warnings[0].message and "'orders'" not in warnings[0].message
    # And none when no received trait has a computed trait's name, or nothing is computed
    assert status_warnings(document, **KEYS, received_traits={"plan"}) == []
    assert status_warnings(SENDS_SOMETHING, **KEYS, received_traits={"revenue"}) == []
