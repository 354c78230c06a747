"""The table gateway: the boto3 client, error mapping, pagination, batches with retries, and the
(de)serialization of items. The job stores (profiles, events, dead_letters, jobs, syncs,
inventory) make their requests through it; it is the only place that calls DynamoDB."""

from __future__ import annotations

import base64
import random
import time
from decimal import Decimal
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from segment_connector.domain.errors import ACCESS_DENIED_CODES, BadRequest, PermissionDenied, StoreUnavailable
from segment_connector.domain.storable import exact_decimal

BATCH_ATTEMPTS = 6
MAX_CONNECTIONS = 64  # at least as many as the inbound's parallel writers (botocore's default is 10)
WRITE_BATCH = 25  # items per BatchWriteItem
READ_BATCH = 100  # keys per BatchGetItem
UNAVAILABLE = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "LimitExceededException",
}
BIG_INT = 10**38
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def to_dynamo(value: Any) -> Any:
    """JSON-like value -> what TypeSerializer accepts (floats become Decimals)."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= BIG_INT:
        return exact_decimal(value)  # 10**45 is 1E+45: one significant digit, storable as is
    if isinstance(value, dict):
        return {key: to_dynamo(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_dynamo(item) for item in value]
    return value


def from_dynamo(value: Any) -> Any:
    """Stored value -> plain JSON types (Decimals become int or float)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: from_dynamo(item) for key, item in value.items()}
    if isinstance(value, (list, set, tuple)):
        return [from_dynamo(item) for item in value]
    return value


def serialize(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _serializer.serialize(to_dynamo(value)) for key, value in item.items()}


def serialize_value(value: Any) -> dict[str, Any]:
    """One attribute value in DynamoDB's typed form (an expression's value)."""
    result: dict[str, Any] = _serializer.serialize(to_dynamo(value))
    return result


def deserialize_image(image: dict[str, Any]) -> dict[str, Any]:
    """A stream record's image as Lambda passes it (binary values as base64 text) -> an item."""
    return deserialize({key: _binary_decoded(value) for key, value in image.items()})


def _binary_decoded(value: Any) -> Any:
    if not isinstance(value, dict) or len(value) != 1:
        return value
    ((kind, inner),) = value.items()
    if kind == "B" and isinstance(inner, str):
        return {"B": base64.b64decode(inner)}
    if kind == "BS" and isinstance(inner, list):
        return {"BS": [base64.b64decode(v) if isinstance(v, str) else v for v in inner]}
    if kind == "M" and isinstance(inner, dict):
        return {"M": {k: _binary_decoded(v) for k, v in inner.items()}}
    if kind == "L" and isinstance(inner, list):
        return {"L": [_binary_decoded(v) for v in inner]}
    return value


def deserialize(item: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = from_dynamo({key: _deserializer.deserialize(value) for key, value in item.items()})
    return result


def key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def is_condition_failure(error: ClientError) -> bool:
    return bool(error.response["Error"]["Code"] == "ConditionalCheckFailedException")


def backoff(attempt: int) -> float:
    """Unprocessed items are throttled items: wait 50 ms, 100 ms, 200 ms ... with jitter."""
    return 0.05 * 2.0**attempt * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not cryptography


def make_client() -> Any:
    return boto3.client(
        "dynamodb",
        # parameter_validation off: DynamoDB validates every request anyway, and botocore's
        # client-side walk of each item was a quarter of the inbound's CPU on large batches.
        config=Config(
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=2,
            read_timeout=4,
            max_pool_connections=MAX_CONNECTIONS,
            parameter_validation=False,
        ),
    )


class Table:
    """One DynamoDB table through one client: `name`, `client`, and the requests' plumbing."""

    def __init__(self, name: str, client: Any = None):
        self.name = name
        self.client = client or make_client()

    def call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        """One request; throttling and outages become StoreUnavailable, validation BadRequest,
        a missing grant PermissionDenied (other ClientErrors are raised as they are)."""
        try:
            response: dict[str, Any] = getattr(self.client, operation)(**kwargs)
            return response
        except ClientError as error:
            code = error.response["Error"]["Code"]
            if code in UNAVAILABLE:
                raise StoreUnavailable() from error
            if code == "ValidationException":
                raise BadRequest(f"the data cannot be stored: {error.response['Error'].get('Message', '')}") from error
            if code in ACCESS_DENIED_CODES:
                raise PermissionDenied(str(error.response["Error"].get("Message", ""))) from error
            raise
        except BotoCoreError as error:
            raise StoreUnavailable() from error

    def get(self, item_key: dict[str, Any]) -> dict[str, Any] | None:
        """One item, strongly consistent (None: there is none)."""
        response = self.call("get_item", TableName=self.name, Key=item_key, ConsistentRead=True)
        return deserialize(response["Item"]) if "Item" in response else None

    def put_item(self, item: dict[str, Any]) -> None:
        self.call("put_item", TableName=self.name, Item=serialize(item))

    def conditional(self, operation: str, **kwargs: Any) -> bool:
        """A conditional request on the table: False when its condition failed."""
        return self.if_condition(operation, **kwargs) is not None

    def if_condition(self, operation: str, **kwargs: Any) -> dict[str, Any] | None:
        """A conditional request on the table: its response, or None when its condition failed."""
        try:
            return self.call(operation, TableName=self.name, **kwargs)
        except ClientError as error:
            if not is_condition_failure(error):
                raise
            return None

    def update_if(
        self,
        item_key: dict[str, Any],
        expression: str,
        condition: str,
        values: dict[str, Any],
        names: dict[str, str] | None = None,
    ) -> bool:
        return self.updated_if(item_key, expression, condition, values, names, returns=None) is not None

    def updated_if(
        self,
        item_key: dict[str, Any],
        expression: str,
        condition: str,
        values: dict[str, Any],
        names: dict[str, str] | None = None,
        returns: str | None = "ALL_NEW",
    ) -> dict[str, Any] | None:
        """A conditional UpdateItem: the attributes `returns` (ReturnValues) asks for, deserialized
        ({} without it), or None when the condition failed."""
        response = self.if_condition(
            "update_item",
            Key=item_key,
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeValues=values,
            **({"ExpressionAttributeNames": names} if names else {}),
            **({"ReturnValues": returns} if returns else {}),
        )
        return None if response is None else deserialize(response.get("Attributes", {}))

    def put_action(self, item: dict[str, Any], condition: str, values: dict[str, Any] | None = None) -> dict[str, Any]:
        """A conditional Put of a TransactWriteItems."""
        put: dict[str, Any] = {"TableName": self.name, "Item": serialize(item), "ConditionExpression": condition}
        if values:
            put["ExpressionAttributeValues"] = values
        return {"Put": put}

    def query_all(self, **kwargs: Any) -> list[dict[str, Any]]:
        """Every page of a query on the table (raw items)."""
        items: list[dict[str, Any]] = []
        while True:
            response = self.call("query", TableName=self.name, **kwargs)
            items.extend(response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return items
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def batch_get(
        self, keys: list[dict[str, Any]], consistent: bool = True, projection: str | None = None
    ) -> list[dict[str, Any]]:
        """The items at these keys (deserialized), 100 keys a request, unprocessed keys retried."""
        items: list[dict[str, Any]] = []
        for start in range(0, len(keys), READ_BATCH):
            request: dict[str, Any] = {"Keys": keys[start : start + READ_BATCH], "ConsistentRead": consistent}
            if projection:
                request["ProjectionExpression"] = projection
            pending: dict[str, Any] = {self.name: request}
            for attempt in range(BATCH_ATTEMPTS):
                response = self.call("batch_get_item", RequestItems=pending)
                items.extend(deserialize(raw) for raw in response.get("Responses", {}).get(self.name, []))
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
                time.sleep(backoff(attempt))
            else:
                raise StoreUnavailable()
        return items

    def batch_write(self, requests: list[dict[str, Any]]) -> None:
        """One BatchWriteItem (at most WRITE_BATCH requests), unprocessed items retried."""
        pending: dict[str, Any] = {self.name: requests}
        for attempt in range(BATCH_ATTEMPTS):
            response = self.call("batch_write_item", RequestItems=pending)
            pending = response.get("UnprocessedItems") or {}
            if not pending:
                return
            time.sleep(backoff(attempt))
        raise StoreUnavailable()
