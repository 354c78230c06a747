"""What the table holds, for operators (CLI status, console): items counted or sampled by kind with
parallel Scans, and the dead letters counted and listed. A Scan reads the whole table (its cost is
the table's size): never for the functions' hot paths."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from segment_connector.store.dead_letters import PK as DEAD_LETTER_PK
from segment_connector.store.table import Table, deserialize

MAX_SCAN_THREADS = 16


class KindCounts:
    """Items per kind; `exact` False: an estimate (the count ran out of time). A plain class, not a
    dataclass: the console's cold start makes it, and a dataclass compiles its methods (~0.4 ms)."""

    __slots__ = ("counts", "exact")

    def __init__(self, counts: dict[str, int], exact: bool) -> None:
        self.counts = counts
        self.exact = exact

    def __getitem__(self, kind: str) -> int:
        return self.counts[kind]


class Inventory:
    """Counts and samples of the table's items, and the dead letters, for operators."""

    def __init__(self, table: Table):
        self.table = table

    def count_kinds(self, kinds: Iterable[str], total_segments: int = 4, seconds: float | None = None) -> KindCounts:
        """How many items of each kind (user, account, event, ...): ONE parallel Scan of the table
        that returns only `kind`, every page, the segments side by side.

        With `seconds`, it stops by then and estimates instead: the kinds' shares of what was
        read, times DescribeTable's item count.
        """
        from concurrent.futures import ThreadPoolExecutor

        kinds = list(dict.fromkeys(kinds))
        if not kinds:
            return KindCounts({}, exact=True)
        deadline = None if seconds is None else time.monotonic() + seconds
        values = {f":k{i}": {"S": kind} for i, kind in enumerate(kinds)}

        def count(segment: int) -> tuple[dict[str, int], int, bool]:
            request = self._scan_request(segment, total_segments, values)
            request["ProjectionExpression"] = "#kind"
            found = dict.fromkeys(kinds, 0)
            scanned = 0
            while True:
                response = self.table.call("scan", **request)
                for item in response.get("Items", []):
                    found[item["kind"]["S"]] += 1
                scanned += int(response.get("ScannedCount", 0))
                if "LastEvaluatedKey" not in response:
                    return found, scanned, True
                if deadline is not None and time.monotonic() > deadline:
                    return found, scanned, False
                request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

        with ThreadPoolExecutor(max_workers=min(total_segments, MAX_SCAN_THREADS), thread_name_prefix="count") as pool:
            results = list(pool.map(count, range(total_segments)))
        counts = dict.fromkeys(kinds, 0)
        for found, _, _ in results:
            for kind, number in found.items():
                counts[kind] += number
        if all(result[2] for result in results):
            return KindCounts(counts, exact=True)
        scanned = sum(result[1] for result in results)
        total = int(self.table.call("describe_table", TableName=self.table.name)["Table"].get("ItemCount", 0))
        if scanned:
            counts = {kind: max(number, round(number * total / scanned)) for kind, number in counts.items()}
        return KindCounts(counts, exact=False)

    def sample_kinds(
        self, kinds: Iterable[str], per_segment: int, total_segments: int = 4, max_pages: int = 3
    ) -> list[dict[str, Any]]:
        """A bounded sample of the items of these kinds: per parallel-scan segment, pages until
        `per_segment` items or `max_pages` pages (each at most 1 MB read), segments side by side.
        The segments split the key space by hash, so the sample spreads over the whole table."""
        from concurrent.futures import ThreadPoolExecutor

        values = {f":k{i}": {"S": kind} for i, kind in enumerate(dict.fromkeys(kinds))}

        def sample(segment: int) -> list[dict[str, Any]]:
            request = self._scan_request(segment, total_segments, values)
            items: list[dict[str, Any]] = []
            for _ in range(max_pages):
                response = self.table.call("scan", **request)
                items.extend(deserialize(raw) for raw in response.get("Items", []))
                if len(items) >= per_segment or "LastEvaluatedKey" not in response:
                    break
                request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
            return items[:per_segment]

        with ThreadPoolExecutor(max_workers=min(total_segments, MAX_SCAN_THREADS), thread_name_prefix="sample") as pool:
            return [item for items in pool.map(sample, range(total_segments)) for item in items]

    def _scan_request(self, segment: int, total_segments: int, values: dict[str, Any]) -> dict[str, Any]:
        return {
            "TableName": self.table.name,
            "Segment": segment,
            "TotalSegments": total_segments,
            "FilterExpression": f"#kind IN ({', '.join(values)})",
            "ExpressionAttributeNames": {"#kind": "kind"},
            "ExpressionAttributeValues": values,
        }

    def count_dead_letters(self) -> int:
        """How many dead letters are kept (a Query on their partition that counts, every page)."""
        request: dict[str, Any] = {
            "TableName": self.table.name,
            "Select": "COUNT",
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": DEAD_LETTER_PK}},
        }
        found = 0
        while True:
            response = self.table.call("query", **request)
            found += int(response.get("Count", 0))
            if "LastEvaluatedKey" not in response:
                return found
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def oldest_dead_letters(self, limit: int) -> list[dict[str, Any]]:
        """The `limit` oldest dead letters (sk starts with their time), payloads parsed."""
        request: dict[str, Any] = {
            "TableName": self.table.name,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": DEAD_LETTER_PK}},
        }
        letters: list[dict[str, Any]] = []
        while len(letters) < limit:
            response = self.table.call("query", **request, Limit=limit - len(letters))
            letters.extend(deserialize(raw) for raw in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                break
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        for letter in letters:
            letter["payload"] = json.loads(letter["payload"])
        return letters[:limit]
