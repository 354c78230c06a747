"""A cheaper TransactWriteItems for moto's DynamoDB (local stack and tests only).

moto backs every transaction with a deep copy of the whole table (stream records included) and
restores that copy when a condition fails. The cost grows with the table: identify calls got
slower and memory grew without bound under load, and the restore swaps the stream's shard under
the stream reader. Real DynamoDB checks every condition first and writes only when all hold; this
does the same for Put, Delete and ConditionCheck items (anything else goes to moto's own code).
Callers serialize requests (the local moto server takes them one at a time), so checking and then
writing is atomic here.
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
    _PATCHED = True


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
