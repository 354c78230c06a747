"""The bench's capacity arithmetic (bench/capacity.py): item sizes and request units, no timing."""

from __future__ import annotations

import pytest

from bench.capacity import (
    Call,
    Index,
    TableModel,
    drop_transact_items,
    index_write_units,
    item_size,
    keep_map_keys,
    map_written_items,
    number_size,
    read_units,
    starts_with,
    total_usage,
    value_size,
    write_units,
)

TABLE = TableModel(
    ("pk", "sk"),
    (
        Index("by_time", "pk", "event_time", "ALL"),
        Index("users_by_account", "account_id", None, "KEYS_ONLY"),
    ),
)


def s(text: str) -> dict:
    return {"S": text}


def event(pk: str = "id#user_id#u1", size: int = 1500) -> dict:
    return {"pk": s(pk), "sk": s("event#m1"), "event_time": s("2026-01-01T00:00:00.000Z#m1"), "blob": s("x" * size)}


def test_item_size_counts_names_and_utf8_values():
    assert item_size({"pk": s("abc")}) == 2 + 3
    assert item_size({"name": s("é")}) == 4 + 2
    assert item_size({"flag": {"BOOL": True}, "nothing": {"NULL": True}}) == 4 + 1 + 7 + 1


def test_numbers_take_about_one_byte_per_two_significant_digits():
    assert number_size("1") == 2
    assert number_size("12345") == 4
    assert number_size("-0.00120") == 2  # leading and trailing zeros do not count
    assert number_size("129.9") == 3


def test_lists_and_maps_cost_three_bytes_plus_one_per_element():
    assert value_size({"L": []}) == 3
    assert value_size({"L": [s("ab"), s("c")]}) == 3 + 2 + 2 + 1
    assert value_size({"M": {"k": s("v")}}) == 3 + 1 + 1 + 1
    assert value_size({"SS": ["a", "bc"]}) == 3


def test_units_round_up_and_are_at_least_one():
    assert [write_units(n) for n in (0, 1, 1024, 1025, 2500)] == [1, 1, 1, 2, 3]
    assert [read_units(n) for n in (0, 4096, 4097)] == [1, 1, 2]


def test_index_writes_follow_the_projection_and_membership():
    new = event(size=1500)
    lsi, gsi = TABLE.indexes
    assert index_write_units(None, new, lsi, TABLE) == 2  # ALL: the whole item
    assert index_write_units(None, new, gsi, TABLE) == 0  # not in the sparse GSI
    profile = {"pk": s("id#user_id#u1"), "sk": s("identity"), "account_id": s("a1"), "traits": s("x" * 3000)}
    assert index_write_units(None, profile, gsi, TABLE) == 1  # KEYS_ONLY: keys only
    assert index_write_units(profile, {**profile, "traits": s("y")}, gsi, TABLE) == 0  # entry unchanged
    assert index_write_units(profile, {**profile, "account_id": s("a2")}, gsi, TABLE) == 2  # moved: out + in


def test_put_of_a_new_event_pays_table_and_lsi():
    usage = total_usage([Call("PutItem", {"Item": event(size=1500)})], TABLE)
    assert (usage.write, usage.index_write, usage.read) == (2, 2, 0)


def test_failed_condition_costs_the_existing_item_and_no_index_write():
    existing = event(size=1500)
    key = TABLE.key_of(existing)
    usage = total_usage(
        [Call("PutItem", {"Item": existing}, error="ConditionalCheckFailedException", before={key: existing})], TABLE
    )
    assert (usage.write, usage.index_write) == (2, 0)


def test_transactions_double_writes_and_condition_checks_cost_two_reads():
    alias = {"pk": s("id#anonymous_id#a1"), "sk": s("identity"), "kind": s("alias")}
    call = Call(
        "TransactWriteItems",
        {
            "TransactItems": [
                {"Put": {"Item": event(size=1500)}},
                {"ConditionCheck": {"Key": {"pk": alias["pk"], "sk": alias["sk"]}}},
            ]
        },
        before={TABLE.key_of(alias): alias},
    )
    usage = total_usage([call], TABLE)
    assert (usage.write, usage.index_write, usage.read) == (4, 2, 2)


def test_reads_by_consistency():
    found = {"pk": s("id#user_id#u1"), "sk": s("identity"), "data": s("x" * 5000)}
    keys = [{"pk": found["pk"], "sk": found["sk"]}, {"pk": s("id#email#e"), "sk": s("identity")}]
    strong = Call(
        "BatchGetItem",
        {"RequestItems": {"t": {"Keys": keys, "ConsistentRead": True}}},
        response={"Responses": {"t": [found]}},
    )
    eventual = Call("BatchGetItem", {"RequestItems": {"t": {"Keys": keys}}}, response={"Responses": {"t": [found]}})
    assert total_usage([strong], TABLE).read == 2 + 1  # 5 KB item, and a missing one still costs a unit
    assert total_usage([eventual], TABLE).read == 1.5


def test_what_ifs_rewrite_the_recorded_requests():
    marker = {"Put": {"Item": {"pk": s("msg#m1"), "sk": s("msg")}}}
    profile = {"Put": {"Item": {"pk": s("id#user_id#u1"), "sk": s("identity")}}}
    calls = drop_transact_items(
        [Call("TransactWriteItems", {"TransactItems": [marker, profile]})], starts_with("pk", "msg#")
    )
    assert [(c.operation, c.params["Item"]["pk"]["S"]) for c in calls] == [("PutItem", "id#user_id#u1")]
    item = {
        **event(size=10),
        "context": {
            "M": {"ip": s("1.2.3.4"), "page": {"M": {"url": s("u"), "hash": s("h")}}, "library": s("x" * 2000)}
        },
    }
    (trimmed,) = map_written_items(
        [Call("PutItem", {"Item": item})], keep_map_keys("context", {"ip": None, "page": {"url": None}})
    )
    assert trimmed.params["Item"]["context"] == {"M": {"ip": s("1.2.3.4"), "page": {"M": {"url": s("u")}}}}
    assert item["context"]["M"]["library"]  # the recorded call is left as it was


@pytest.mark.parametrize("projection, units", [("ALL", 2), ("KEYS_ONLY", 1), (None, 0)])
def test_index_what_if(projection, units):
    table = TABLE.with_index("by_time", projection)
    assert total_usage([Call("PutItem", {"Item": event(size=1500)})], table).index_write == units
