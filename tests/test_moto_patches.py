"""The emulator's shortcuts: TransactWriteItems checks every condition before writing anything; a
scan answers moto's own pages."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from harness import TABLE


def put(pk: str, condition: str | None = None) -> dict:
    op = {"TableName": TABLE, "Item": {"pk": {"S": pk}, "sk": {"S": "x"}, "kind": {"S": "t"}}}
    if condition:
        op["ConditionExpression"] = condition
    return {"Put": op}


def test_a_failed_condition_writes_nothing_and_names_the_item(aws):
    client = boto3.client("dynamodb")
    client.put_item(TableName=TABLE, Item={"pk": {"S": "taken"}, "sk": {"S": "x"}})
    # When the second of three items fails its condition
    with pytest.raises(ClientError) as caught:
        client.transact_write_items(TransactItems=[put("a"), put("taken", "attribute_not_exists(pk)"), put("b")])
    # Then the reasons name it and neither of the others was written
    reasons = [r["Code"] for r in caught.value.response["CancellationReasons"]]
    assert reasons == ["None", "ConditionalCheckFailed", "None"]
    assert sorted(item["pk"] for item in aws.items()) == ["taken"]


def test_all_conditions_holding_writes_every_item(aws):
    client = boto3.client("dynamodb")
    client.transact_write_items(TransactItems=[put("a", "attribute_not_exists(pk)"), put("b")])
    assert sorted(item["pk"] for item in aws.items()) == ["a", "b"]


def scan_pages(client, segment: int, total: int, limit: int) -> list[list[tuple[str, str]]]:
    pages, start = [], None
    while True:
        request = {"TableName": TABLE, "Segment": segment, "TotalSegments": total, "Limit": limit}
        answer = client.scan(**request, **({"ExclusiveStartKey": start} if start else {}))
        pages.append([(item["pk"]["S"], item["sk"]["S"]) for item in answer["Items"]])
        start = answer.get("LastEvaluatedKey")
        if not start:
            return pages


def test_scan_pages_are_moto_s_own_pages(aws, monkeypatch):
    import random

    from moto.dynamodb.models.table import Table

    from local_stack import moto_patches

    client = boto3.client("dynamodb")
    chosen = random.Random(7)
    for number in range(400):
        value = "x" * chosen.randint(1, 40)
        item = {"pk": {"S": f"p{chosen.randint(0, 60)}"}, "sk": {"S": f"s{number}"}, "v": {"S": value}}
        client.put_item(TableName=TABLE, Item=item)
    cases = [(0, 1, 7), (3, 4, 5), (0, 16, 3), (15, 16, 50)]
    # When the same parallel scans page through the table with the shortcut and with moto's own scan
    patched = {case: scan_pages(client, *case) for case in cases}
    monkeypatch.setattr(Table, "scan", moto_patches.original_scan)
    own = {case: scan_pages(client, *case) for case in cases}
    # Then the pages are the same, and together the segments hold every item once
    assert patched == own
    assert sum(len(page) for page in patched[(0, 1, 7)]) == 400
