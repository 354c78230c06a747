"""Two shortcuts in moto's DynamoDB (local stack, tests and bench only): a cheaper
TransactWriteItems, and item values answered as they are.

TransactWriteItems:

moto backs every transaction with a deep copy of the whole table (stream records included) and
restores that copy when a condition fails. The cost grows with the table: identify calls got
slower and memory grew without bound under load, and the restore swaps the stream's shard under
the stream reader. Real DynamoDB checks every condition first and writes only when all hold; this
does the same for Put, Delete and ConditionCheck items (anything else goes to moto's own code).
Callers serialize requests (the local moto server takes them one at a time), so checking and then
writing is atomic here.

Answers: moto writes every response through a generic serializer that walks the service model for
each value; an item's attribute values (`{"S": ...}`, `{"L": [...]}`, ...) are already in their
wire form, and walking them cost ~0.25 s per request for a 100 KB profile (1,000 anonymous ids),
most of an identify's time in the soak. An attribute value holding no binary (`B`, `BS`: base64 on
the wire) is copied as it is; everything else takes moto's own path.
"""

from __future__ import annotations

from typing import Any

_PATCHED = False


def apply() -> None:
    global _PATCHED
    if _PATCHED:
        return
    from moto.dynamodb.models import DynamoDBBackend

    original = DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        if (
            any(
                len(item) != 1 or next(iter(item)) not in ("Put", "Delete", "ConditionCheck") for item in transact_items
            )
            or len(transact_items) > 100
        ):
            return original(self, transact_items)
        _check_then_write(self, transact_items)

    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    _answer_values_as_they_are()
    _PATCHED = True


def _answer_values_as_they_are() -> None:
    from moto.core.serialize import ResponseSerializer

    original = ResponseSerializer._serialize

    def serialize(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if shape.name == "AttributeValue" and not _holds_binary(value):
            serialized[self.get_serialized_name(shape, key)] = value
            return
        original(self, serialized, value, shape, key)

    ResponseSerializer._serialize = serialize  # type: ignore[method-assign]


def _holds_binary(value: Any) -> bool:
    """Whether an attribute value (wire form) holds bytes or anything else JSON cannot carry."""
    if isinstance(value, dict):
        return any(kind in ("B", "BS") or _holds_binary(inner) for kind, inner in value.items())
    if isinstance(value, list):
        return any(_holds_binary(inner) for inner in value)
    return not isinstance(value, str | bool | int | float) and value is not None


def _check_then_write(backend: Any, transact_items: list[dict[str, Any]]) -> None:
    from moto.dynamodb.comparisons import get_filter_expression
    from moto.dynamodb.exceptions import MultipleTransactionsException, TransactionCanceledException

    seen: set[tuple[str, str]] = set()
    reasons: list[tuple[Any, Any, Any]] = []
    keys: list[dict[str, Any]] = []
    for item in transact_items:
        op_type, op = next(iter(item.items()))
        table_name = op["TableName"]
        if op_type == "Put":
            table = backend.get_table(table_name)
            key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
            if table.range_key_attr is not None:
                key[table.range_key_attr] = op["Item"][table.range_key_attr]
        else:
            key = op["Key"]
        identity = (table_name, str(dict(sorted(key.items()))))
        if identity in seen:
            raise MultipleTransactionsException()
        seen.add(identity)
        keys.append(key)
        condition = op.get("ConditionExpression")
        current = backend.get_item(table_name, key)
        holds = condition is None or get_filter_expression(
            condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
        ).expr(current)
        reasons.append(
            (None, None, None) if holds else ("ConditionalCheckFailed", "The conditional request failed", None)
        )
    if any(code is not None for code, _, _ in reasons):
        raise TransactionCanceledException(reasons)
    for item, key in zip(transact_items, keys, strict=False):
        op_type, op = next(iter(item.items()))
        if op_type == "Put":
            backend.put_item(op["TableName"], op["Item"])
        elif op_type == "Delete":
            backend.delete_item(op["TableName"], key)
