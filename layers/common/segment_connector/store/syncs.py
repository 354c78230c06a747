"""Resync's sync items (`sync#<key>`/`sync`): per profile, the view last synced and the transition
being sent, written by conditional updates so that two workers never send the same transition."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from segment_connector.store.table import Table, is_condition_failure, serialize_value

SYNC_WRITERS = 16  # a resync page's conditional updates of sync items, side by side


@dataclass
class _SyncWrite:
    """One conditional update of a profile's sync item (resync)."""

    key: str
    expression: str
    condition: str
    values: dict[str, Any]
    names: dict[str, str] = field(default_factory=dict)

    def request(self, table: str) -> dict[str, Any]:
        return {
            "TableName": table,
            "Key": {"pk": {"S": f"sync#{self.key}"}, "sk": {"S": "sync"}},
            "UpdateExpression": self.expression,
            "ConditionExpression": self.condition,
            "ExpressionAttributeNames": {"#view": "view", **self.names},
            "ExpressionAttributeValues": {**self.values, ":kind": {"S": "sync"}},
        }


def _unchanged_since_read(
    key: str, observed: str | None, seq: int, expression: str, values: dict[str, Any]
) -> _SyncWrite:
    """`expression` (its `values`, and `:seq`) on the profile's sync item if its synced view is
    still `observed` (None: none recorded), no transition is pending and no newer job than `seq`
    has written it."""
    condition = "attribute_not_exists(pending) AND (attribute_not_exists(seq) OR seq <= :seq)"
    values = {**values, ":seq": {"N": str(seq)}}
    if observed is None:
        condition += " AND attribute_not_exists(#view)"
    else:
        condition += " AND #view = :observed"
        values[":observed"] = {"S": observed}
    return _SyncWrite(key, expression, condition, values)


class SyncItems:
    """The profiles' sync items."""

    def __init__(self, table: Table):
        self.table = table

    def markers(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The synced view recorded per profile key (resync_plan.sync_key), where there is one."""
        requests = [{"pk": {"S": f"sync#{key}"}, "sk": {"S": "sync"}} for key in dict.fromkeys(keys)]
        return {raw["pk"].removeprefix("sync#"): raw for raw in self.table.batch_get(requests)}

    def claim(self, claims: list[tuple[str, str | None, dict[str, Any]]], seq: int) -> set[str]:
        """Record, per (key, observed view, pending), that a transition is being sent (`pending`:
        from, to, seq), if the profile's synced view is still `observed` (None: none recorded), no
        transition is pending and no newer job (higher seq) has written it; the keys where that no
        longer held (read them again)."""
        expression = "SET pending = :pending, kind = :kind"
        writes = [
            _unchanged_since_read(key, observed, seq, expression, {":pending": serialize_value(pending)})
            for key, observed, pending in claims
        ]
        return self._write(writes)

    def commit(self, claims: list[tuple[str, dict[str, Any]]]) -> set[str]:
        """The pending transitions were sent: each synced view becomes its `to`; the keys another
        worker completed first (no longer pending as claimed)."""
        writes = [
            _SyncWrite(
                key,
                "SET #view = :to, seq = :seq, kind = :kind REMOVE pending",
                "pending.#to = :to AND pending.#from = :from AND pending.seq = :seq",
                {
                    ":to": {"S": str(pending["to"])},
                    ":from": {"S": str(pending["from"])},
                    ":seq": {"N": str(pending["seq"])},
                },
                {"#to": "to", "#from": "from"},
            )
            for key, pending in claims
        ]
        return self._write(writes)

    def advance(self, keys: list[tuple[str, str | None]], view: str, seq: int) -> set[str]:
        """Profiles whose transition changes nothing that is sent: record `view` as synced by job
        `seq`, per (key, observed view; None: none recorded), if still observed, nothing is pending
        and no newer job wrote it; the keys where that no longer held."""
        expression = "SET #view = :to, seq = :seq, kind = :kind"
        writes = [_unchanged_since_read(key, observed, seq, expression, {":to": {"S": view}}) for key, observed in keys]
        return self._write(writes)

    def _write(self, writes: list[_SyncWrite]) -> set[str]:
        """Conditional updates of sync items, SYNC_WRITERS side by side (one UpdateItem each: a
        transaction would cost twice the write units and fail as a whole); the keys whose
        condition failed (the others are written)."""
        if len(writes) <= 1:
            return {write.key for write in writes if not self._update(write)}
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(SYNC_WRITERS, len(writes)), thread_name_prefix="sync") as pool:
            written = list(pool.map(self._update, writes))
        return {write.key for write, ok in zip(writes, written, strict=True) if not ok}

    def _update(self, write: _SyncWrite) -> bool:
        try:
            self.table.call("update_item", **write.request(self.table.name))
        except ClientError as error:
            if is_condition_failure(error):
                return False
            raise
        return True
