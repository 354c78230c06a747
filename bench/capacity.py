"""DynamoDB request units as on-demand bills them, computed from the requests a run really made.

Pure functions over recorded calls (`Call`); nothing here talks to AWS or moto.

Item size (AWS "Item sizes and formats"; the same rules as emulators calibrated on real DynamoDB):
  an item is the sum over its attributes of len(name, UTF-8) + the value's size, where
  S = UTF-8 length, B = bytes, N ~ 1 + ceil(significant digits / 2), BOOL/NULL = 1,
  L/M = 3 + 1 per element (+ the key's length for M) + the elements, sets = sum of elements.
  No per-item overhead is added for request units (none is billed); index entries are sized on
  what they project (ALL: the whole item; KEYS_ONLY: table key + index key). The 100 bytes per
  item/index entry that AWS adds applies to storage only (STORAGE_OVERHEAD_BYTES).

Units (us-east-1 on-demand):
  write: ceil(size / 1 KB), at least 1, on the larger of the item before and after a write; a
    write whose condition fails still costs the existing item's units (at least 1).
  read: ceil(size / 4 KB), at least 1 (also for a missing item), x1 strongly consistent,
    x0.5 eventually consistent; a Query rounds the sum of the items it read.
  transactions: every Put/Update/Delete costs 2x its write units, a ConditionCheck 2x its read
    units. A cancelled transaction is charged as if it ran (an upper bound: AWS documents that
    cancelled transactions consume capacity, not how much).
  index writes (per index, on the projected entry, not doubled in transactions): joining the
    index = units of the new entry; leaving = units of the old; same key and different entry =
    units of the larger; a moved key = both; an unchanged entry = nothing.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096
STORAGE_OVERHEAD_BYTES = 100
TRANSACTION_FACTOR = 2

# us-east-1 list prices, USD
PRICE_WRITE_UNIT = 0.625 / 1e6
PRICE_READ_UNIT = 0.125 / 1e6
PRICE_HTTP_API_REQUEST = 1.00 / 1e6
PRICE_LAMBDA_REQUEST = 0.20 / 1e6
PRICE_LAMBDA_GB_SECOND_ARM = 0.0000133334
PRICE_STORAGE_GB_MONTH = 0.25
HTTP_API_METERING_BYTES = 512 * 1024  # an HTTP API request is metered per started 512 KB
# What one message costs at the very least on this architecture: one API request, one Lambda
# request and one write of up to 1 KB.
FLOOR_PER_MILLION = (PRICE_HTTP_API_REQUEST + PRICE_LAMBDA_REQUEST + PRICE_WRITE_UNIT) * 1e6


# -- item size -------------------------------------------------------------------------------


def number_size(text: str) -> int:
    digits = text.lstrip("+-").lower().split("e")[0].replace(".", "").strip("0")
    return 1 + math.ceil(max(len(digits), 1) / 2)


def value_size(value: Mapping[str, Any]) -> int:
    """Size of one typed attribute value ({"S": ...}, {"N": ...}, {"M": {...}}, ...)."""
    ((kind, raw),) = value.items()
    if kind == "S":
        return len(raw.encode("utf-8"))
    if kind == "N":
        return number_size(str(raw))
    if kind == "B":
        return len(raw)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(item.encode("utf-8")) for item in raw)
    if kind == "NS":
        return sum(number_size(str(item)) for item in raw)
    if kind == "BS":
        return sum(len(item) for item in raw)
    if kind == "L":
        return 3 + len(raw) + sum(value_size(item) for item in raw)
    if kind == "M":
        return 3 + sum(len(key.encode("utf-8")) + 1 + value_size(item) for key, item in raw.items())
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item: Mapping[str, Any] | None) -> int:
    if not item:
        return 0
    return sum(len(name.encode("utf-8")) + value_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / WRITE_UNIT_BYTES))


def read_units(size: int) -> int:
    return max(1, math.ceil(size / READ_UNIT_BYTES))


# -- indexes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Index:
    name: str
    hash_key: str
    range_key: str | None
    projection: str  # ALL | KEYS_ONLY | INCLUDE
    included: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableModel:
    keys: tuple[str, ...]  # table hash key (, range key)
    indexes: tuple[Index, ...]

    def key_of(self, item: Mapping[str, Any]) -> str:
        return json.dumps([item[name] for name in self.keys], sort_keys=True)

    def with_index(self, name: str, projection: str | None) -> TableModel:
        """The same table with index `name` projecting `projection` (None: without that index)."""
        indexes = tuple(
            replace(ix, projection=projection) if ix.name == name and projection is not None else ix
            for ix in self.indexes
            if not (ix.name == name and projection is None)
        )
        return replace(self, indexes=indexes)


def table_model(template: Mapping[str, Any], logical_id: str = "Table") -> TableModel:
    props = template["Resources"][logical_id]["Properties"]
    keys = tuple(k["AttributeName"] for k in sorted(props["KeySchema"], key=lambda k: k["KeyType"] != "HASH"))
    indexes = []
    for spec in [*props.get("LocalSecondaryIndexes", []), *props.get("GlobalSecondaryIndexes", [])]:
        schema = {k["KeyType"]: k["AttributeName"] for k in spec["KeySchema"]}
        projection = spec.get("Projection", {})
        indexes.append(
            Index(
                spec["IndexName"],
                schema["HASH"],
                schema.get("RANGE"),
                projection.get("ProjectionType", "ALL"),
                tuple(projection.get("NonKeyAttributes", ())),
            )
        )
    return TableModel(keys, tuple(indexes))


def index_entry(item: Mapping[str, Any] | None, index: Index, table: TableModel) -> dict[str, Any] | None:
    """What `index` stores for `item`, or None when the item is not in it (sparse)."""
    if not item or index.hash_key not in item or (index.range_key and index.range_key not in item):
        return None
    if index.projection == "ALL":
        return dict(item)
    names = {*table.keys, index.hash_key, *([index.range_key] if index.range_key else [])}
    if index.projection == "INCLUDE":
        names |= set(index.included)
    return {name: value for name, value in item.items() if name in names}


def index_write_units(
    old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, index: Index, table: TableModel
) -> int:
    before, after = index_entry(old, index, table), index_entry(new, index, table)
    if before is None and after is None:
        return 0
    if before is None or after is None:
        return write_units(item_size(before or after))
    moved = any(before.get(k) != after.get(k) for k in (index.hash_key, index.range_key) if k)
    if moved:
        return write_units(item_size(before)) + write_units(item_size(after))
    if before == after:
        return 0
    return max(write_units(item_size(before)), write_units(item_size(after)))


# -- recorded calls --------------------------------------------------------------------------


@dataclass
class Call:
    """One DynamoDB request as the connector made it.

    `before`/`after`: images of the items it wrote, by TableModel.key_of (None: absent).
    `error`: the error code, if any; `reasons`: a cancelled transaction's reason codes.
    """

    operation: str
    params: dict[str, Any]
    response: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    reasons: list[str] = field(default_factory=list)
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    moto_units: float | None = None  # what moto's ReturnConsumedCapacity said


@dataclass
class Usage:
    write: float = 0.0  # table write request units
    index_write: float = 0.0
    read: float = 0.0

    @property
    def write_total(self) -> float:
        return self.write + self.index_write

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.write + other.write, self.index_write + other.index_write, self.read + other.read)

    def scaled(self, factor: float) -> Usage:
        return Usage(self.write * factor, self.index_write * factor, self.read * factor)

    def dollars(self) -> float:
        return self.write_total * PRICE_WRITE_UNIT + self.read * PRICE_READ_UNIT


def _written(
    table: TableModel,
    call: Call,
    item_or_key: Mapping[str, Any],
    new: Mapping[str, Any] | None,
    factor: int,
    failed: bool,
) -> Usage:
    key = table.key_of(item_or_key)
    old = call.before.get(key)
    if failed:
        return Usage(write=factor * write_units(item_size(old)))
    usage = Usage(write=factor * write_units(max(item_size(old), item_size(new))))
    usage.index_write = sum(index_write_units(old, new, ix, table) for ix in table.indexes)
    return usage


def call_usage(call: Call, table: TableModel) -> Usage:
    op, params = call.operation, call.params
    failed = call.error is not None
    if op == "PutItem":
        return _written(table, call, params["Item"], params["Item"], 1, failed)
    if op == "DeleteItem":
        return _written(table, call, params["Key"], None, 1, failed)
    if op == "UpdateItem":
        return _written(table, call, params["Key"], call.after.get(table.key_of(params["Key"])), 1, failed)
    if op == "BatchWriteItem":
        usage = Usage()
        for name, requests in params["RequestItems"].items():
            unprocessed = call.response.get("UnprocessedItems", {}).get(name, [])
            for request in requests:
                if request in unprocessed:
                    continue  # written (and billed) by the retry
                if "PutRequest" in request:
                    item = request["PutRequest"]["Item"]
                    usage += _written(table, call, item, item, 1, False)
                else:
                    usage += _written(table, call, request["DeleteRequest"]["Key"], None, 1, False)
        return usage
    if op == "TransactWriteItems":
        usage = Usage()
        for action in params["TransactItems"]:
            ((kind, body),) = action.items()
            if kind == "ConditionCheck":
                size = item_size(call.before.get(table.key_of(body["Key"])))
                usage += Usage(read=TRANSACTION_FACTOR * read_units(size))
            elif kind == "Put":
                usage += _written(table, call, body["Item"], body["Item"], TRANSACTION_FACTOR, False)
            else:
                new = call.after.get(table.key_of(body["Key"])) if kind == "Update" else None
                usage += _written(table, call, body["Key"], new, TRANSACTION_FACTOR, False)
        # A cancelled transaction writes nothing: no index writes; table units as if it ran.
        return Usage(write=usage.write, read=usage.read) if failed else usage
    if op in ("GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"):
        return Usage(read=_read_units(call, table))
    return Usage()


def _read_units(call: Call, table: TableModel) -> float:
    op, params, response = call.operation, call.params, call.response
    if call.error:
        return 0.0
    if op == "GetItem":
        factor = 1.0 if params.get("ConsistentRead") else 0.5
        item = call.before.get(table.key_of(params["Key"]), response.get("Item"))
        return factor * read_units(item_size(item))
    if op == "BatchGetItem":
        total = 0.0
        for name, request in params["RequestItems"].items():
            factor = 1.0 if request.get("ConsistentRead") else 0.5
            found = {table.key_of(item): item for item in response.get("Responses", {}).get(name, [])}
            found.update({k: item for k, item in call.before.items() if k in found})  # full items if projected
            unprocessed = {table.key_of(k) for k in response.get("UnprocessedKeys", {}).get(name, {}).get("Keys", [])}
            for key in request["Keys"]:
                k = table.key_of(key)
                if k not in unprocessed:
                    total += factor * read_units(item_size(found.get(k)))
        return total
    if op == "TransactGetItems":
        return sum(TRANSACTION_FACTOR * read_units(item_size(r.get("Item"))) for r in response.get("Responses", []))
    # Query/Scan: the items read, rounded once (items cut by a ProjectionExpression are undercounted).
    factor = 1.0 if params.get("ConsistentRead") else 0.5
    return factor * read_units(sum(item_size(item) for item in response.get("Items", [])))


def total_usage(calls: Iterable[Call], table: TableModel) -> Usage:
    usage = Usage()
    for call in calls:
        usage += call_usage(call, table)
    return usage


# -- what-ifs: the same requests under a changed design ---------------------------------------------


def map_written_items(calls: Iterable[Call], change: Callable[[dict[str, Any]], dict[str, Any]]) -> list[Call]:
    """The calls with every item they write (and its before/after images) passed through `change`."""

    def items(mapping: dict[str, Any]) -> dict[str, Any]:
        return {key: (change(item) if item else item) for key, item in mapping.items()}

    changed = []
    for call in calls:
        params = copy.deepcopy(call.params)
        if "Item" in params:
            params["Item"] = change(params["Item"])
        for action in params.get("TransactItems", []):
            if "Put" in action:
                action["Put"]["Item"] = change(action["Put"]["Item"])
        for requests in params.get("RequestItems", {}).values():
            for request in requests if isinstance(requests, list) else []:
                if "PutRequest" in request:
                    request["PutRequest"]["Item"] = change(request["PutRequest"]["Item"])
        changed.append(replace(call, params=params, before=items(call.before), after=items(call.after)))
    return changed


def drop_transact_items(calls: Iterable[Call], drop: Callable[[str, dict[str, Any]], bool]) -> list[Call]:
    """The calls with matching transaction actions removed; a transaction left with one Put
    becomes a conditional PutItem, one left with nothing disappears."""
    changed = []
    for call in calls:
        if call.operation != "TransactWriteItems":
            changed.append(call)
            continue
        kept = [a for a in call.params["TransactItems"] if not drop(*next(iter(a.items())))]
        if not kept:
            continue
        if len(kept) == 1 and "Put" in kept[0]:
            put = kept[0]["Put"]
            changed.append(replace(call, operation="PutItem", params=put))
        else:
            changed.append(replace(call, params={**call.params, "TransactItems": kept}))
    return changed


def eventually_consistent(calls: Iterable[Call]) -> list[Call]:
    """The calls with their BatchGetItem/GetItem reads eventually consistent."""
    changed = []
    for call in calls:
        if call.operation == "BatchGetItem":
            items = {
                name: {**request, "ConsistentRead": False} for name, request in call.params["RequestItems"].items()
            }
            call = replace(call, params={**call.params, "RequestItems": items})
        elif call.operation == "GetItem":
            call = replace(call, params={**call.params, "ConsistentRead": False})
        changed.append(call)
    return changed


def starts_with(attribute: str, prefix: str) -> Callable[[str, dict[str, Any]], bool]:
    def match(kind: str, body: dict[str, Any]) -> bool:
        item = body.get("Item") or body.get("Key") or {}
        value = item.get(attribute, {}).get("S", "")
        return value.startswith(prefix)

    return match


def keep_map_keys(attribute: str, keep: Mapping[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """An item change keeping only the `keep` keys of map `attribute` (nested: {"page": {"url": None}})."""

    def prune(value: dict[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
        kept = {}
        for key, inner in value.get("M", {}).items():
            if key in wanted:
                kept[key] = prune(inner, wanted[key]) if wanted[key] and "M" in inner else inner
        return {"M": kept}

    def change(item: dict[str, Any]) -> dict[str, Any]:
        if attribute not in item or "M" not in item[attribute]:
            return item
        return {**item, attribute: prune(item[attribute], keep)}

    return change


def stored_bytes(item: Mapping[str, Any], table: TableModel) -> int:
    """Bytes billed as storage for an item and its index entries (100 bytes overhead each)."""
    total = item_size(item) + STORAGE_OVERHEAD_BYTES
    for index in table.indexes:
        entry = index_entry(item, index, table)
        if entry is not None:
            total += item_size(entry) + STORAGE_OVERHEAD_BYTES
    return total


def written_items(calls: Iterable[Call], attempted: bool = False) -> list[dict[str, Any]]:
    """Items the calls put (with `attempted`, also those of writes that failed)."""
    items = []
    for call in calls:
        if call.error and not attempted:
            continue
        params = call.params
        if call.operation == "PutItem":
            items.append(params["Item"])
        items.extend(a["Put"]["Item"] for a in params.get("TransactItems", []) if "Put" in a)
        if call.operation == "BatchWriteItem":
            items.extend(
                r["PutRequest"]["Item"]
                for requests in params["RequestItems"].values()
                for r in requests
                if "PutRequest" in r
            )
    return items
