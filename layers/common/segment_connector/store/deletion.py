"""The GDPR deletion's items: the tombstone (`deletion#<messageId>`), the overflow items of ids dropped
from bounded profiles (`ids#<uid>`), and what the sweep reads and deletes. The flow is described in
outbound/deletion.py (the sweep) and inbound/deletion.py (the request)."""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import ClientError

from segment_connector.domain.models.items import PROFILE_SK
from segment_connector.store import deletions_pending
from segment_connector.store.profile_store import ProfileStore
from segment_connector.store.table import WRITE_BATCH, deserialize, serialize
from segment_connector.store.table import key as _key

log = logging.getLogger(__name__)

KIND = "deletion"
SK = "deletion"
OVERFLOW_PREFIX = "ids#"
PAGE_EVENTS = 500  # event keys per query page


class DeletionStore:
    """The sweep's data access (through the store's table gateway)."""

    def __init__(self, store: ProfileStore):
        self.db = store.db
        self.table = store.table

    def tombstone(self, pk: str) -> dict[str, Any] | None:
        raw = self.db.call("get_item", TableName=self.table, Key=_key(pk, SK), ConsistentRead=True).get("Item")
        return deserialize(raw) if raw else None

    def event_keys(self, partition: str, before: str) -> list[tuple[str, str]]:
        """A page of the partition's events that happened before `before` (strongly consistent)."""
        response = self.db.call(
            "query",
            TableName=self.table,
            IndexName="by_time",
            KeyConditionExpression="pk = :pk AND event_time < :cut",
            ExpressionAttributeValues={":pk": {"S": partition}, ":cut": {"S": before}},
            ProjectionExpression="pk, sk",
            ConsistentRead=True,
            Limit=PAGE_EVENTS,
        )
        return [(raw["pk"]["S"], raw["sk"]["S"]) for raw in response.get("Items", [])]

    def delete_keys(self, keys: list[tuple[str, str]]) -> int:
        """Batch deletes (unconditional), 25 at a time; returns the requests made."""
        for start in range(0, len(keys), WRITE_BATCH):
            self.db.batch_write(
                [{"DeleteRequest": {"Key": _key(pk, sk)}} for pk, sk in keys[start : start + WRITE_BATCH]]
            )
        return -(-len(keys) // WRITE_BATCH)

    def delete_alias(self, pk: str) -> None:
        """The identity item, while it is an alias (a profile written there after the delete stays)."""
        self._delete_if(_key(pk, PROFILE_SK), "kind = :alias", {":alias": {"S": "alias"}})

    def delete_item(self, pk: str, sk: str) -> None:
        self.db.call("delete_item", TableName=self.table, Key=_key(pk, sk))

    def overflow(self, uid: str) -> list[dict[str, Any]]:
        response = self.db.call(
            "query",
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"{OVERFLOW_PREFIX}{uid}"}},
            ConsistentRead=True,
            Limit=10,
        )
        return [deserialize(raw) for raw in response.get("Items", [])]

    def put_overflow(self, item: dict[str, Any]) -> None:
        self.db.call("put_item", TableName=self.table, Item=serialize(item))

    def advance(self, tombstone: dict[str, Any], fields: dict[str, Any]) -> bool:
        """Record the cursor (the next step's stream record), if no other step did since."""
        names = {f"#{name}": name for name in fields}
        values = {f":{name}": value for name, value in fields.items()}
        sets = ", ".join(f"#{name} = :{name}" for name in fields)
        return self._update_if(
            tombstone["pk"],
            f"SET {sets}, #step = #step + :one",
            "#step = :step",
            {**names, "#step": "step"},
            {**serialize(values), ":one": {"N": "1"}, ":step": {"N": str(tombstone["step"])}},
        )

    def add_uids(self, tombstone: dict[str, Any], uids: list[str]) -> bool:
        """Queue more uids' overflow items, in place (the same step goes on)."""
        return self._update_if(
            tombstone["pk"],
            "SET uids = :uids",
            "#step = :step",
            {"#step": "step"},
            {":uids": serialize({"u": uids})["u"], ":step": {"N": str(tombstone["step"])}},
        )

    def finish(self, tombstone: dict[str, Any]) -> bool:
        """The tombstone (if no other step moved it) and its registration, in one transaction."""
        step = {
            "TableName": self.table,
            "Key": _key(tombstone["pk"], SK),
            "ConditionExpression": "#step = :step",
            "ExpressionAttributeNames": {"#step": "step"},
            "ExpressionAttributeValues": {":step": {"N": str(tombstone["step"])}},
        }
        registration = {"TableName": self.table, "Key": deletions_pending.registration_key(tombstone["pk"])}
        try:
            self.db.call("transact_write_items", TransactItems=[{"Delete": step}, {"Delete": registration}])
        except ClientError as error:
            if error.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            return False
        return True

    def _update_if(
        self, pk: str, expression: str, condition: str, names: dict[str, str], values: dict[str, Any]
    ) -> bool:
        return self.db.conditional(
            "update_item",
            Key=_key(pk, SK),
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def _delete_if(
        self, key: dict[str, Any], condition: str, values: dict[str, Any], names: dict[str, str] | None = None
    ) -> bool:
        extra = {"ExpressionAttributeNames": names} if names else {}
        return self.db.conditional(
            "delete_item", Key=key, ConditionExpression=condition, ExpressionAttributeValues=values, **extra
        )
