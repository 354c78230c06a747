"""The emulator's TransactWriteItems checks every condition before writing anything."""

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
