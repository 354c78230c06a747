"""The dead-letter queue (partition `deadletter`, sk `<at>#<messageId>`) and the delivery attempt
counts (`retry#<key>`) that decide when a message becomes a dead letter. Operators' counts of the
queue are in inventory.py."""

from __future__ import annotations

import json
import time
from typing import Any

from segment_connector.store.table import Table, deserialize, key, serialize

PK = "deadletter"


class DeadLetterQueue:
    """Attempt counts and dead letters (outbound's delivery and replay)."""

    def __init__(self, table: Table):
        self.table = table

    def count_attempt(self, attempt_key: str, ttl_seconds: int = 2 * 86400) -> int:
        """One more delivery attempt of `attempt_key`; the attempts so far (this one included)."""
        response = self.table.call(
            "update_item",
            TableName=self.table.name,
            Key={"pk": {"S": f"retry#{attempt_key}"}, "sk": {"S": "retry"}},
            UpdateExpression="ADD attempts :one SET kind = :kind, expires_at = :exp",
            ExpressionAttributeValues={
                ":one": {"N": "1"},
                ":kind": {"S": "retry"},
                ":exp": {"N": str(int(time.time()) + ttl_seconds)},
            },
            ReturnValues="UPDATED_NEW",
        )
        return int(response["Attributes"]["attempts"]["N"])

    def put(self, message_id: str, payload: dict[str, Any], reason: str, at: str) -> None:
        item = {
            "pk": PK,
            "sk": f"{at}#{message_id}",
            "kind": "deadletter",
            "message_id": message_id,
            "payload": json.dumps(payload, default=str),
            "reason": reason,
        }
        self.table.call("put_item", TableName=self.table.name, Item=serialize(item))

    def after(self, after: str, limit: int) -> list[dict[str, Any]]:
        """A page of dead letters, oldest first: at most `limit` whose sk sorts after `after`
        (strongly consistent: a letter a replay just deleted is not read again)."""
        condition, values = "pk = :pk", {":pk": {"S": PK}}
        if after:
            condition, values = "pk = :pk AND sk > :after", {**values, ":after": {"S": after}}
        response = self.table.call(
            "query",
            TableName=self.table.name,
            KeyConditionExpression=condition,
            ExpressionAttributeValues=values,
            ConsistentRead=True,
            Limit=limit,
        )
        letters = [deserialize(raw) for raw in response.get("Items", [])]
        for letter in letters:
            letter["payload"] = json.loads(letter["payload"])
        return letters

    def delete(self, sk: str) -> bool:
        """Delete a letter Segment accepted; False when it was gone already (another replay)."""
        return self.table.conditional("delete_item", Key=key(PK, sk), ConditionExpression="attribute_exists(pk)")

    def set_reason(self, sk: str, reason: str) -> bool:
        """A letter still failing gets its new reason; never re-created once deleted (False then)."""
        return self.table.update_if(
            key(PK, sk), "SET reason = :reason", "attribute_exists(pk)", {":reason": {"S": reason}}
        )
