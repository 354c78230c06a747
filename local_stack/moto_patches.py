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

Scan: moto builds and sorts the whole table for every page, then walks it from the start to the
page's exclusive start key, hashing every item's partition for the parallel-scan segment. After
the soak's main phase (~100,000 items) each page of a resync took seconds and a resync of 3,000
users did not end in 11 minutes. The same pages (key order, Limit, 1 MB, segment by the md5 of
the partition key as moto computes it) from the partitions of the segment only, starting at the
key; a scan of an index, with legacy filters or with non-string keys takes moto's own path.
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
    _scan_from_the_start_key()
    _PATCHED = True


original_scan: Any = None  # moto's own Table.scan (tests compare the pages)


def _scan_from_the_start_key() -> None:
    from moto.dynamodb.models.table import Table

    global original_scan
    original = original_scan = Table.scan

    def scan(self: Any, filters: Any, limit: Any, exclusive_start_key: Any, *args: Any, **kwargs: Any) -> Any:
        names = ("filter_expression", "index_name", "consistent_read", "projection_expression")
        options = dict(zip(names, args, strict=False))
        options.update(kwargs)
        keys = [key.value for key in self.items]
        if options.get("index_name") or filters or not self.range_key_attr or not all(isinstance(k, str) for k in keys):
            return original(self, filters, limit, exclusive_start_key, *args, **kwargs)
        return _scan_pages(self, limit, exclusive_start_key, options)

    Table.scan = scan  # type: ignore[method-assign]


def _scan_pages(table: Any, limit: Any, start_key: Any, options: dict[str, Any]) -> Any:
    import copy
    import hashlib

    from moto.dynamodb.models.table import RESULT_SIZE_LIMIT

    segment, total = options.get("segments") or (None, None)

    def in_segment(value: str) -> bool:
        return total is None or hashlib.md5(value.encode("utf8")).digest()[0] % total == segment  # noqa: S324 - moto's own segment hash

    start = None
    if start_key:
        start = (start_key[table.hash_key_attr]["S"], start_key[table.range_key_attr]["S"])
    partitions = sorted((key for key in table.items if in_segment(key.value)), key=lambda key: key.value)
    results: list[Any] = []
    size = scanned = 0
    last_key = None
    for partition in partitions:
        if start is not None and partition.value < start[0]:
            continue
        for sort_key, item in sorted(table.items[partition].items(), key=lambda pair: pair[0].value):
            if start is not None and (partition.value, sort_key.value) <= start:
                continue
            item_size = item.size()
            if len(results) == limit or size + item_size > RESULT_SIZE_LIMIT:
                last_key = table._get_last_evaluated_key(results[-1], None)
                break
            results.append(copy.deepcopy(item))
            size += item_size
            scanned += 1
        if last_key is not None:
            break
    if options.get("filter_expression") is not None:
        results = [item for item in results if options["filter_expression"].expr(item)]
    if options.get("projection_expression"):
        results = [item.project(options["projection_expression"]) for item in results]
    return results, scanned, last_key


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
