"""Events keep `properties` and `context` in one compressed body (issue 15's write budget): what
goes in comes out, from every form a body reaches the code in, and a browser event fits 1 KB."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import Binary
from hypothesis import given, settings
from hypothesis import strategies as st

from segment_connector.domain.event_body import pack, unpack
from segment_connector.domain.models.items import StoredEvent
from segment_connector.store.table import deserialize, deserialize_image, serialize

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**40), 10**40) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(
    properties=st.dictionaries(st.text(max_size=12), json_values, max_size=6),
    context=st.dictionaries(st.text(max_size=12), json_values, max_size=6),
)
def test_what_is_packed_is_unpacked_whole(properties: dict[str, Any], context: dict[str, Any]) -> None:
    assert unpack(pack(properties, context)) == (properties, context)


def test_a_body_reads_the_same_as_bytes_as_boto3_binary_and_as_a_stream_records_base64() -> None:
    body = pack({"total": Decimal("12.5"), "n": Decimal(3)}, {"ip": "1.2.3.4"})
    expected = ({"total": 12.5, "n": 3}, {"ip": "1.2.3.4"})
    assert unpack(body) == unpack(Binary(body)) == unpack(base64.b64encode(body).decode()) == expected


def test_a_body_of_an_unknown_version_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown version"):
        unpack(b"\x07abc")


def event(**fields: Any) -> StoredEvent:
    return StoredEvent.build(
        "id#user_id#u1",
        "m-1",
        "2026-12-01T10:00:00.000Z",
        type="track",
        event="Order Completed",
        source="segment",
        **fields,
    )


def test_an_event_round_trips_through_the_table_and_a_stream_image() -> None:
    # Given an event with a browser's context
    context = {
        "ip": "203.0.113.9",
        "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
        "page": {
            "url": "https://shop.example/cart",
            "path": "/cart",
            "title": "Cart",
            "referrer": "https://www.google.com/",
        },
        "library": {"name": "analytics.js", "version": "next-1.70.0"},
        "locale": "en-US",
    }
    stored = event(properties={"revenue": 99.5, "products": [{"sku": "A-1", "quantity": 2}]}, context=context)
    item = stored.to_item()
    # Then the table keeps a body and no message_id, and the item reads back whole
    assert "properties" not in item and "context" not in item and "message_id" not in item
    assert StoredEvent.from_item(deserialize(serialize(item))) == stored
    # And a Lambda stream image (binary as base64 text) reads back whole too
    image = json.loads(json.dumps(serialize(item), default=lambda b: base64.b64encode(b).decode()))
    assert StoredEvent.from_item(deserialize_image(image)) == stored


def test_an_event_stored_before_bodies_were_packed_still_reads() -> None:
    old = {**event().model_dump(exclude_none=True), "properties": {"a": 1}, "context": {"ip": "x"}}
    del old["message_id"]
    read = StoredEvent.from_item(old)
    assert (read.properties, read.context, read.message_id) == ({"a": 1}, {"ip": "x"}, "m-1")
