"""Reads of the stack's own table (moto, on loopback), by the keys docs/design.md lays out."""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import unquote

import boto3

ANY_CREDENTIAL = "soak"  # moto takes any


class Table:
    """A DynamoDB client for the local stack's table (endpoint and name from its state file)."""

    def __init__(self, state: dict[str, Any]):
        self._name = state["table_name"]
        self._endpoint, self._region = state["aws_endpoint_url"], state["region"]
        self._local = threading.local()

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = boto3.client(
                "dynamodb",
                endpoint_url=self._endpoint,
                region_name=self._region,
                aws_access_key_id=ANY_CREDENTIAL,
                aws_secret_access_key=ANY_CREDENTIAL,
            )
        return client

    def partition(self, pk: str, limit: int | None = None) -> list[dict[str, Any]]:
        """The items under `pk` (all of them, or the first `limit`); a Query (slow on a large moto table)."""
        query: dict[str, Any] = {
            "TableName": self._name,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
        }
        items: list[dict[str, Any]] = []
        while True:
            page = self._client().query(**query, **({"Limit": limit} if limit else {}))
            items += page.get("Items", [])
            if "LastEvaluatedKey" not in page or (limit and len(items) >= limit):
                return items
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def dead_letters(self) -> list[dict[str, Any]]:
        return self.partition("deadletter")

    def existing(self, keys: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """The items that exist among `keys` ((pk, sk) pairs, at most 100): one BatchGetItem, no
        Query (moto's Query reads every item of the table, so it slows down as the table grows)."""
        request = {self._name: {"Keys": [{"pk": {"S": pk}, "sk": {"S": sk}} for pk, sk in dict.fromkeys(keys)]}}
        found: list[dict[str, Any]] = []
        while request:
            page = self._client().batch_get_item(RequestItems=request)
            found += page.get("Responses", {}).get(self._name, [])
            request = page.get("UnprocessedKeys") or {}
        return found


def keys_of(reference: str, message_id: str) -> list[tuple[str, str]]:
    """The items a message sent with `message_id` and readable under a Profile API path would have
    written (docs/design.md): its identity's profile or alias, its event, its dedup marker, its account."""
    if reference.startswith("/v1/accounts/"):
        return [(f"account#{unquote(reference.removeprefix('/v1/accounts/'))}", "account")]
    kind, _, value = unquote(reference.removeprefix("/v1/users/")).partition(":")
    identity = f"id#{kind}#{value}"
    return [(identity, "identity"), (identity, f"event#{message_id}"), (f"msg#{message_id}", "msg")]
