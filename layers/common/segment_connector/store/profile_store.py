"""ProfileStore: the data-access layer, and the only module that talks to DynamoDB."""

from __future__ import annotations

import heapq
import json
import random
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from segment_connector.domain.errors import (
    ACCESS_DENIED_CODES,
    BadRequest,
    DuplicateMessage,
    PermissionDenied,
    StoreUnavailable,
    VersionConflict,
)
from segment_connector.domain.models.items import (
    ACCOUNT_SK,
    EVENT_SK_PREFIX,
    PROFILE_SK,
    Account,
    IdentityAlias,
    StoredEvent,
    UserProfile,
    account_pk,
)
from segment_connector.domain.storable import MAX_ITEM_BYTES, ProfileTooLarge, exact_decimal, item_size

DEDUP_DAYS = 8
RESYNC_KEY = {"pk": {"S": "resync"}, "sk": {"S": "job"}}
REPLAY_KEY = {"pk": {"S": "replay"}, "sk": {"S": "job"}}
BATCH_ATTEMPTS = 6
MAX_CONNECTIONS = 64  # at least as many as the inbound's parallel writers (botocore's default is 10)
WRITE_BATCH = 25  # items per BatchWriteItem
OVERFLOW_BYTES = 100_000  # of identity pks in one overflow item (DynamoDB's item: 400 KB)
SYNC_WRITERS = 16  # a resync page's conditional updates of sync items, side by side
_UNAVAILABLE = {
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


def deserialize(item: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = from_dynamo({key: _deserializer.deserialize(value) for key, value in item.items()})
    return result


def _identity_item(raw: dict[str, Any]) -> UserProfile | IdentityAlias | None:
    kind = raw.get("kind")
    if kind == "user":
        return UserProfile.model_validate(raw)
    if kind == "alias":
        return IdentityAlias.model_validate(raw)
    return None


@dataclass
class ProfileChange:
    """Everything one message changes, written in one transaction.

    `profiles`/`accounts` pair the new state with the version read (None: must not exist yet).
    `retired` profiles become aliases of the profile that absorbed them. `dropped`: identity pks
    the bounded profile lists let go, kept in overflow items `ids#<uid>` (with the uids of profiles
    merged in, `merged_uids`), so that a delete finds them. A delete writes its `tombstone` and
    removes the `deleted` profiles (pk, version read) (deletion.py).
    """

    message_id: str | None = None
    profiles: list[tuple[UserProfile, int | None]] = field(default_factory=list)
    retired: list[tuple[IdentityAlias, int]] = field(default_factory=list)
    aliases: list[IdentityAlias] = field(default_factory=list)
    accounts: list[tuple[Account, int | None]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    merged_uids: list[str] = field(default_factory=list)
    tombstone: dict[str, Any] | None = None
    registration: dict[str, Any] | None = None  # the tombstone's, in `deletions` (deletions_pending.py)
    deleted: list[tuple[str, int]] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.profiles or self.retired or self.aliases or self.accounts or self.tombstone)


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


class ProfileStore:
    def __init__(self, table_name: str, client: Any = None):
        self.table = table_name
        self.client = client or boto3.client(
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

    # -- reads -------------------------------------------------------------------------------

    def identity_items(self, pks: Iterable[str]) -> dict[str, UserProfile | IdentityAlias]:
        """Profiles and aliases stored at these identity pks (one strongly consistent BatchGet)."""
        keys = [{"pk": {"S": pk}, "sk": {"S": PROFILE_SK}} for pk in dict.fromkeys(pks)]
        found: dict[str, UserProfile | IdentityAlias] = {}
        for raw in self._batch_get(keys):
            item = _identity_item(raw)
            if item is not None:
                found[item.pk] = item
        return found

    def accounts(self, group_ids: Iterable[str]) -> dict[str, Account]:
        keys = [{"pk": {"S": account_pk(g)}, "sk": {"S": ACCOUNT_SK}} for g in dict.fromkeys(group_ids)]
        return {raw["group_id"]: Account.model_validate(raw) for raw in self._batch_get(keys)}

    def recent_events(self, partitions: Iterable[str], limit: int) -> list[StoredEvent]:
        """Newest first across the partitions (LSI `by_time`)."""
        events: list[StoredEvent] = []
        for pk in dict.fromkeys(partitions):
            response = self._call(
                "query",
                TableName=self.table,
                IndexName="by_time",
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": pk}},
                ScanIndexForward=False,
                Limit=limit,
            )
            events.extend(StoredEvent.model_validate(deserialize(raw)) for raw in response.get("Items", []))
        events.sort(key=lambda event: event.event_time, reverse=True)
        return events[:limit]

    def events_newest_first(
        self, partitions: Iterable[str], before: tuple[str, str] | None = None, page: int = 100
    ) -> Iterator[StoredEvent]:
        """The events of the partitions, newest first (by `event_time`, then pk), read lazily:
        each partition's pages (LSI `by_time`, at most `page` items or 1 MB each) are queried only
        when the merge reaches them. `before` = (event_time, pk) of the last event already seen."""
        streams = [self._partition_events(pk, before, page) for pk in dict.fromkeys(partitions)]
        return heapq.merge(*streams, key=lambda event: (event.event_time, event.pk), reverse=True)

    def _partition_events(self, pk: str, before: tuple[str, str] | None, page: int) -> Iterator[StoredEvent]:
        request: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": "by_time",
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
            "ScanIndexForward": False,
            "Limit": page,
        }
        if before is not None:
            # after (t, p) newest first: an earlier event_time, or the same one in a partition that sorts before p
            operator = "<=" if pk < before[1] else "<"
            request["KeyConditionExpression"] = f"pk = :pk AND event_time {operator} :before"
            request["ExpressionAttributeValues"][":before"] = {"S": before[0]}
        while True:
            response = self._call("query", **request)
            for raw in response.get("Items", []):
                yield StoredEvent.model_validate(deserialize(raw))
            if "LastEvaluatedKey" not in response:
                return
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def has_events(self, partition: str) -> bool:
        response = self._call(
            "query",
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={":pk": {"S": partition}, ":prefix": {"S": EVENT_SK_PREFIX}},
            Limit=1,
        )
        return bool(response.get("Items"))

    def users_of_account(self, group_id: str) -> list[str]:
        """pks of the profiles linked to an account (GSI `users_by_account`)."""
        items = self._query_all(
            IndexName="users_by_account",
            KeyConditionExpression="account_id = :gid",
            ExpressionAttributeValues={":gid": {"S": group_id}},
        )
        return [raw["pk"]["S"] for raw in items]

    # -- writes ------------------------------------------------------------------------------

    def put_event(self, event: StoredEvent) -> bool:
        """Store an event once: False when its messageId is already stored in that partition."""
        try:
            self._call(
                "put_item",
                TableName=self.table,
                Item=serialize(event.to_item()),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def put_new_events(self, events: list[StoredEvent]) -> list[bool]:
        """Store the events whose messageId is not stored yet in their partition; for each event,
        whether it was stored (False: a duplicate). An event keyed by its messageId is idempotent,
        so a plain BatchWriteItem is safe; the (eventually consistent) read before it keeps a
        redelivery from writing, and counting, the event twice.
        """
        keys = [{"pk": {"S": event.pk}, "sk": {"S": event.sk}} for event in events]
        existing = {(raw["pk"], raw["sk"]) for raw in self._batch_get(keys, consistent=False, projection="pk, sk")}
        stored: list[bool] = []
        writes: list[dict[str, Any]] = []
        for event in events:
            key = (event.pk, event.sk)
            stored.append(key not in existing)
            if key not in existing:
                existing.add(key)  # the same message twice in one delivery
                writes.append({"PutRequest": {"Item": serialize(event.to_item())}})
        for start in range(0, len(writes), WRITE_BATCH):
            self._batch_write(writes[start : start + WRITE_BATCH])
        return stored

    def put_event_of_linked(self, event: StoredEvent, identity: str) -> bool | None:
        """put_event, in one request with a check that `identity` already points at a profile.

        None when it does not (nothing written): the caller links that identity first.
        """
        check = {
            "ConditionCheck": {
                "TableName": self.table,
                "Key": {"pk": {"S": identity}, "sk": {"S": PROFILE_SK}},
                "ConditionExpression": "kind = :alias",
                "ExpressionAttributeValues": {":alias": {"S": "alias"}},
            }
        }
        try:
            self._call(
                "transact_write_items", TransactItems=[self._put(event.to_item(), "attribute_not_exists(pk)"), check]
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            reasons = [r.get("Code", "None") for r in error.response.get("CancellationReasons", [])]
            if reasons[:1] == ["ConditionalCheckFailed"]:
                return False
            if reasons[1:2] == ["ConditionalCheckFailed"]:
                return None
            raise StoreUnavailable() from None
        return True

    def commit(self, change: ProfileChange) -> None:
        """Write a ProfileChange atomically.

        Raises DuplicateMessage when the messageId was applied before, VersionConflict when
        another writer got there first (the caller reads again and retries), ProfileTooLarge when
        a profile or account would exceed DynamoDB's 400 KB item (checked before writing).
        """
        _check_item_sizes(change)
        try:
            self._call("transact_write_items", TransactItems=self._commit_actions(change))
        except BadRequest as error:
            if "item size" in error.message.lower():  # DynamoDB counted more than item_size did
                raise ProfileTooLarge(_first_pk(change)) from error
            raise
        except ClientError as error:
            if error.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            raise _commit_failure(change, error.response.get("CancellationReasons", [])) from None

    def _commit_actions(self, change: ProfileChange) -> list[dict[str, Any]]:
        actions: list[dict[str, Any]] = []
        if change.message_id:
            marker = {
                "pk": f"msg#{change.message_id}",
                "sk": "msg",
                "kind": "dedup",
                "expires_at": int(time.time()) + DEDUP_DAYS * 86400,
            }
            actions.append(self._put(marker, "attribute_not_exists(pk)"))
        for profile, expected in change.profiles:
            actions.append(self._versioned_put(profile.to_item(), expected))
        for alias, expected in change.retired:
            actions.append(self._put(alias.to_item(), "version = :v", {":v": {"N": str(expected)}}))
        for alias in change.aliases:
            actions.append(
                self._put(alias.to_item(), "attribute_not_exists(pk) OR kind = :alias", {":alias": {"S": "alias"}})
            )
        for account, expected in change.accounts:
            actions.append(self._versioned_put(account.to_item(), expected))
        if change.profiles and (change.dropped or change.merged_uids):
            uid = change.profiles[0][0].uid
            actions += [
                {"Put": {"TableName": self.table, "Item": serialize(item)}} for item in overflow_items(uid, change)
            ]
        if change.tombstone:
            actions.append(self._put(change.tombstone, "attribute_not_exists(pk)"))
        if change.registration:
            actions.append({"Put": {"TableName": self.table, "Item": serialize(change.registration)}})
        for pk, version in change.deleted:
            delete = {"Key": {"pk": {"S": pk}, "sk": {"S": PROFILE_SK}}, "ConditionExpression": "version = :v"}
            delete |= {"TableName": self.table, "ExpressionAttributeValues": {":v": {"N": str(version)}}}
            actions.append({"Delete": delete})
        return actions

    # -- dead letters (outbound) ---------------------------------------------------------------

    def count_attempt(self, key: str, ttl_seconds: int = 2 * 86400) -> int:
        response = self._call(
            "update_item",
            TableName=self.table,
            Key={"pk": {"S": f"retry#{key}"}, "sk": {"S": "retry"}},
            UpdateExpression="ADD attempts :one SET kind = :kind, expires_at = :exp",
            ExpressionAttributeValues={
                ":one": {"N": "1"},
                ":kind": {"S": "retry"},
                ":exp": {"N": str(int(time.time()) + ttl_seconds)},
            },
            ReturnValues="UPDATED_NEW",
        )
        return int(response["Attributes"]["attempts"]["N"])

    def put_dead_letter(self, message_id: str, payload: dict[str, Any], reason: str, at: str) -> None:
        item = {
            "pk": "deadletter",
            "sk": f"{at}#{message_id}",
            "kind": "deadletter",
            "message_id": message_id,
            "payload": json.dumps(payload, default=str),
            "reason": reason,
        }
        self._call("put_item", TableName=self.table, Item=serialize(item))

    def dead_letters_after(self, after: str, limit: int) -> list[dict[str, Any]]:
        """A page of dead letters, oldest first: at most `limit` whose sk sorts after `after`
        (strongly consistent: a letter a replay just deleted is not read again)."""
        condition, values = "pk = :pk", {":pk": {"S": "deadletter"}}
        if after:
            condition, values = "pk = :pk AND sk > :after", {**values, ":after": {"S": after}}
        response = self._call(
            "query",
            TableName=self.table,
            KeyConditionExpression=condition,
            ExpressionAttributeValues=values,
            ConsistentRead=True,
            Limit=limit,
        )
        letters = [deserialize(raw) for raw in response.get("Items", [])]
        for letter in letters:
            letter["payload"] = json.loads(letter["payload"])
        return letters

    def delete_dead_letter(self, sk: str) -> bool:
        """Delete a letter Segment accepted; False when it was gone already (another replay)."""
        try:
            self._call(
                "delete_item",
                TableName=self.table,
                Key={"pk": {"S": "deadletter"}, "sk": {"S": sk}},
                ConditionExpression="attribute_exists(pk)",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def set_dead_letter_reason(self, sk: str, reason: str) -> bool:
        """A letter still failing gets its new reason; never re-created once deleted (False then)."""
        return self._update_if(
            {"pk": {"S": "deadletter"}, "sk": {"S": sk}},
            "SET reason = :reason",
            "attribute_exists(pk)",
            {":reason": {"S": reason}},
        )

    # -- replay job (one item: the lock, the cursor and the counts) -----------------------------

    def replay_job(self) -> dict[str, Any] | None:
        response = self._call("get_item", TableName=self.table, Key=REPLAY_KEY, ConsistentRead=True)
        return deserialize(response["Item"]) if "Item" in response else None

    def put_replay_job(self, job: dict[str, Any], now: float) -> bool:
        """Start a replay: only when none runs (a running job whose lease expired is stalled and
        replaced). The conditional write is the lock: of two starts at once, one wins."""
        try:
            self._call(
                "put_item",
                TableName=self.table,
                Item=serialize({**job, **{key: value["S"] for key, value in REPLAY_KEY.items()}, "kind": "replayjob"}),
                ConditionExpression="attribute_not_exists(pk) OR #status <> :running OR lease_until < :now",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":running": {"S": "running"}, ":now": {"N": str(now)}},
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def take_replay_lease(self, job_id: str, token: str, owner: str, now: float, until: float) -> bool:
        """The invocation handed `token` (or any, once the lease expired) works job `job_id` until `until`."""
        return self._update_if(
            REPLAY_KEY,
            "SET lease_owner = :owner, lease_until = :until",
            "id = :id AND #status = :running AND (lease_owner = :token OR lease_until < :now)",
            {
                ":owner": {"S": owner},
                ":until": {"N": str(until)},
                ":id": {"S": job_id},
                ":running": {"S": "running"},
                ":token": {"S": token},
                ":now": {"N": str(now)},
            },
            {"#status": "status"},
        )

    def update_replay_job(
        self, job_id: str, owner: str, fields: dict[str, Any], add: dict[str, int] | None = None
    ) -> bool:
        """SET `fields` and ADD `add` while `owner` holds the lease of job `job_id` (False: it lost it)."""
        names = {f"#f{index}": name for index, name in enumerate(fields)}
        values = {f":f{index}": _serializer.serialize(to_dynamo(value)) for index, value in enumerate(fields.values())}
        added = {f"#a{index}": name for index, name in enumerate(add or {})}
        values.update({f":a{index}": {"N": str(value)} for index, value in enumerate((add or {}).values())})
        expression = "SET " + ", ".join(f"{name} = {name.replace('#', ':')}" for name in names)
        if added:
            expression += " ADD " + ", ".join(f"{name} {name.replace('#', ':')}" for name in added)
        return self._update_if(
            REPLAY_KEY,
            expression,
            "id = :id AND lease_owner = :owner",
            {**values, ":id": {"S": job_id}, ":owner": {"S": owner}},
            {**names, **added},
        )

    def _update_if(
        self,
        key: dict[str, Any],
        expression: str,
        condition: str,
        values: dict[str, Any],
        names: dict[str, str] | None = None,
    ) -> bool:
        try:
            self._call(
                "update_item",
                TableName=self.table,
                Key=key,
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                **({"ExpressionAttributeNames": names} if names else {}),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False
        return True

    # -- resync --------------------------------------------------------------------------------

    def resync_job(self) -> dict[str, Any] | None:
        response = self._call("get_item", TableName=self.table, Key=RESYNC_KEY, ConsistentRead=True)
        return deserialize(response["Item"]) if "Item" in response else None

    def put_resync_job(self, job: dict[str, Any], replaces: str | None) -> bool:
        """Write a new job in place of the one with id `replaces` (None: no job yet); False when
        another start got there first."""
        item = {**job, "pk": RESYNC_KEY["pk"]["S"], "sk": RESYNC_KEY["sk"]["S"], "kind": "resync"}
        if replaces is None:
            condition, values = "attribute_not_exists(pk)", None
        else:
            condition, values = "id = :previous", {":previous": {"S": replaces}}
        try:
            self._call(
                "put_item",
                TableName=self.table,
                Item=serialize(item),
                ConditionExpression=condition,
                **({"ExpressionAttributeValues": values} if values else {}),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def record_resync_progress(
        self,
        resync_id: str,
        segment: int,
        progress: dict[str, Any],
        counters: dict[str, int],
        segment_done: bool,
        now: str,
        expected_resume: str | None = None,
    ) -> dict[str, Any] | None:
        """Save one segment's progress and add to the counters, if `resync_id` is still the running
        job (and, with `expected_resume`, the segment still resumes where this page started: one
        invocation per page wins); the job after the update, or None when it was superseded, ended
        or the page was recorded by another invocation."""
        names = {"#progress": "progress", "#segment": str(segment), "#status": "status"}
        values: dict[str, Any] = {
            ":id": {"S": resync_id},
            ":running": {"S": "running"},
            ":now": {"S": now},
            ":progress": serialize({"v": progress})["v"],
        }
        adds = []
        for index, (name, value) in enumerate({**counters, **({"segments_done": 1} if segment_done else {})}.items()):
            names[f"#c{index}"] = name
            values[f":c{index}"] = {"N": str(value)}
            adds.append(f"#c{index} :c{index}")
        expression = "SET #progress.#segment = :progress, updated_at = :now" + (
            f" ADD {', '.join(adds)}" if adds else ""
        )
        condition = "id = :id AND #status = :running"
        if expected_resume is not None:
            names["#resume"] = "resume"
            values[":resume"] = {"S": expected_resume}
            condition += " AND #progress.#segment.#resume = :resume"
        return self._update_resync(expression, condition, names, values)

    def count_resync_attempt(self, resync_id: str, segment: int, now: str) -> dict[str, Any] | None:
        """One more failed attempt of a segment (its recorded progress is kept as it is); the job
        after the update, or None when `resync_id` is no longer the running job."""
        names = {"#progress": "progress", "#segment": str(segment), "#status": "status", "#attempts": "attempts"}
        values = {":id": {"S": resync_id}, ":running": {"S": "running"}, ":now": {"S": now}, ":one": {"N": "1"}}
        attempts = "#progress.#segment.#attempts"
        return self._update_resync(
            f"SET {attempts} = if_not_exists({attempts}, :zero) + :one, #progress.#segment.#at = :now",
            "id = :id AND #status = :running",
            {**names, "#at": "at"},
            {**values, ":zero": {"N": "0"}},
        )

    def touch_resync_segments(self, resync_id: str, seen: dict[int, str], now: str) -> bool:
        """Claim the resumption of segments (`seen`: each one's `at` as read): their `at` becomes
        `now` if nobody touched them since; False when another resumer or a worker got there first."""
        names: dict[str, str] = {"#progress": "progress", "#status": "status", "#at": "at"}
        values: dict[str, Any] = {":id": {"S": resync_id}, ":running": {"S": "running"}, ":now": {"S": now}}
        sets, conditions = [], ["id = :id", "#status = :running"]
        for index, (segment, at) in enumerate(seen.items()):
            names[f"#s{index}"] = str(segment)
            values[f":a{index}"] = {"S": at}
            sets.append(f"#progress.#s{index}.#at = :now")
            at_path = f"#progress.#s{index}.#at"
            conditions.append(f"({at_path} = :a{index}" + (f" OR attribute_not_exists({at_path}))" if not at else ")"))
        return self._update_resync(f"SET {', '.join(sets)}", " AND ".join(conditions), names, values) is not None

    def _update_resync(
        self, expression: str, condition: str, names: dict[str, str], values: dict[str, Any]
    ) -> dict[str, Any] | None:
        try:
            response = self._call(
                "update_item",
                TableName=self.table,
                Key=RESYNC_KEY,
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise
        return deserialize(response["Attributes"])

    def put_resync_views(self, views: dict[str, str]) -> None:
        """Keep settings documents by view id (what a profile's synced view refers to)."""
        for view, document in views.items():
            item = {"pk": RESYNC_KEY["pk"]["S"], "sk": f"view#{view}", "kind": "resync_view", "settings": document}
            self._call("put_item", TableName=self.table, Item=serialize(item))

    def resync_views(self, views: Iterable[str]) -> dict[str, str]:
        keys = [{"pk": RESYNC_KEY["pk"], "sk": {"S": f"view#{view}"}} for view in dict.fromkeys(views)]
        return {raw["sk"].removeprefix("view#"): raw["settings"] for raw in self._batch_get(keys)}

    def sync_markers(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The synced view recorded per profile key (resync_plan.sync_key), where there is one."""
        requests = [{"pk": {"S": f"sync#{key}"}, "sk": {"S": "sync"}} for key in dict.fromkeys(keys)]
        return {raw["pk"].removeprefix("sync#"): raw for raw in self._batch_get(requests)}

    def claim_syncs(self, claims: list[tuple[str, str | None, dict[str, Any]]], seq: int) -> set[str]:
        """Record, per (key, observed view, pending), that a transition is being sent (`pending`:
        from, to, seq), if the profile's synced view is still `observed` (None: none recorded), no
        transition is pending and no newer job (higher seq) has written it; the keys where that no
        longer held (read them again)."""
        writes = []
        for key, observed, pending in claims:
            condition = "attribute_not_exists(pending) AND (attribute_not_exists(seq) OR seq <= :seq)"
            values: dict[str, Any] = {":seq": {"N": str(seq)}, ":pending": serialize({"v": pending})["v"]}
            if observed is None:
                condition += " AND attribute_not_exists(#view)"
            else:
                condition += " AND #view = :observed"
                values[":observed"] = {"S": observed}
            writes.append(_SyncWrite(key, "SET pending = :pending, kind = :kind", condition, values))
        return self._write_syncs(writes)

    def commit_syncs(self, claims: list[tuple[str, dict[str, Any]]]) -> set[str]:
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
        return self._write_syncs(writes)

    def advance_syncs(self, keys: list[tuple[str, str]], view: str, seq: int) -> set[str]:
        """Profiles whose transition changes nothing that is sent: record `view` as synced, per
        (key, observed view), if still observed; the keys where it was not."""
        writes = [
            _SyncWrite(
                key,
                "SET #view = :to, seq = :seq, kind = :kind",
                "#view = :observed AND attribute_not_exists(pending) AND seq <= :seq",
                {":observed": {"S": observed}, ":to": {"S": view}, ":seq": {"N": str(seq)}},
            )
            for key, observed in keys
        ]
        return self._write_syncs(writes)

    def _write_syncs(self, writes: list[_SyncWrite]) -> set[str]:
        """Conditional updates of sync items, SYNC_WRITERS side by side (one UpdateItem each: a
        transaction would cost twice the write units and fail as a whole); the keys whose
        condition failed (the others are written)."""
        if len(writes) <= 1:
            return {write.key for write in writes if not self._update_sync(write)}
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(SYNC_WRITERS, len(writes)), thread_name_prefix="sync") as pool:
            written = list(pool.map(self._update_sync, writes))
        return {write.key for write, ok in zip(writes, written, strict=True) if not ok}

    def _update_sync(self, write: _SyncWrite) -> bool:
        try:
            self._call("update_item", **write.request(self.table))
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def end_resync(self, resync_id: str, status: str, fields: dict[str, Any]) -> bool:
        """Mark the running job `resync_id` ended (done/failed) and set `fields`; False if it was not running."""
        names = {"#status": "status", **{f"#f{i}": name for i, name in enumerate(fields)}}
        values = {
            ":id": {"S": resync_id},
            ":running": {"S": "running"},
            ":status": {"S": status},
            **{f":f{i}": serialize({"v": value})["v"] for i, value in enumerate(fields.values())},
        }
        sets = ", ".join(["#status = :status"] + [f"#f{i} = :f{i}" for i in range(len(fields))])
        try:
            self._call(
                "update_item",
                TableName=self.table,
                Key=RESYNC_KEY,
                UpdateExpression=f"SET {sets}",
                ConditionExpression="id = :id AND #status = :running",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def scan_profiles(
        self, segment: int, total: int, start: dict[str, Any] | None, limit: int
    ) -> tuple[list[UserProfile | Account], dict[str, Any] | None]:
        """One page of a parallel scan segment: its users and accounts, and where the next page starts."""
        request: dict[str, Any] = {
            "TableName": self.table,
            "Segment": segment,
            "TotalSegments": total,
            "Limit": limit,
            "FilterExpression": "kind IN (:user, :account)",
            "ExpressionAttributeValues": {":user": {"S": "user"}, ":account": {"S": "account"}},
        }
        if start:
            request["ExclusiveStartKey"] = start
        response = self._call("scan", **request)
        items: list[UserProfile | Account] = []
        for raw in response.get("Items", []):
            item = deserialize(raw)
            items.append(UserProfile.model_validate(item) if item["kind"] == "user" else Account.model_validate(item))
        return items, response.get("LastEvaluatedKey")

    # -- plumbing ----------------------------------------------------------------------------

    def _put(self, item: dict[str, Any], condition: str, values: dict[str, Any] | None = None) -> dict[str, Any]:
        put: dict[str, Any] = {"TableName": self.table, "Item": serialize(item), "ConditionExpression": condition}
        if values:
            put["ExpressionAttributeValues"] = values
        return {"Put": put}

    def _versioned_put(self, item: dict[str, Any], expected: int | None) -> dict[str, Any]:
        if expected is None:
            # New at this pk; a profile moved here keeps counting (version > 1 tells the stream so).
            return self._put(
                {**item, "version": item.get("version", 0) + 1},
                "attribute_not_exists(pk) OR kind = :alias",
                {":alias": {"S": "alias"}},
            )
        return self._put({**item, "version": expected + 1}, "version = :v", {":v": {"N": str(expected)}})

    def _query_all(self, **kwargs: Any) -> list[dict[str, Any]]:
        """Every page of a query on the table (raw items)."""
        items: list[dict[str, Any]] = []
        while True:
            response = self._call("query", TableName=self.table, **kwargs)
            items.extend(response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return items
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _batch_get(
        self, keys: list[dict[str, Any]], consistent: bool = True, projection: str | None = None
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for start in range(0, len(keys), 100):
            request: dict[str, Any] = {"Keys": keys[start : start + 100], "ConsistentRead": consistent}
            if projection:
                request["ProjectionExpression"] = projection
            pending: dict[str, Any] = {self.table: request}
            for attempt in range(BATCH_ATTEMPTS):
                response = self._call("batch_get_item", RequestItems=pending)
                items.extend(deserialize(raw) for raw in response.get("Responses", {}).get(self.table, []))
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
                time.sleep(_backoff(attempt))
            else:
                raise StoreUnavailable()
        return items

    def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        pending: dict[str, Any] = {self.table: requests}
        for attempt in range(BATCH_ATTEMPTS):
            response = self._call("batch_write_item", RequestItems=pending)
            pending = response.get("UnprocessedItems") or {}
            if not pending:
                return
            time.sleep(_backoff(attempt))
        raise StoreUnavailable()

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response: dict[str, Any] = getattr(self.client, operation)(**kwargs)
            return response
        except ClientError as error:
            code = error.response["Error"]["Code"]
            if code in _UNAVAILABLE:
                raise StoreUnavailable() from error
            if code == "ValidationException":
                raise BadRequest(f"the data cannot be stored: {error.response['Error'].get('Message', '')}") from error
            if code in ACCESS_DENIED_CODES:
                raise PermissionDenied(str(error.response["Error"].get("Message", ""))) from error
            raise
        except BotoCoreError as error:
            raise StoreUnavailable() from error

    # -- operations (CLI, status) ----------------------------------------------------------------

    def count_kinds(self, kinds: Iterable[str], total_segments: int = 4, seconds: float | None = None) -> KindCounts:
        """How many items of each kind (user, account, event, ...): ONE parallel Scan of the table
        that returns only `kind`, every page, the segments side by side.

        A Scan reads the whole table (its cost is the table's size): for operators (CLI status,
        console), never for the functions' hot paths. With `seconds`, it stops by then and
        estimates instead: the kinds' shares of what was read, times DescribeTable's item count.
        """
        from concurrent.futures import ThreadPoolExecutor

        kinds = list(dict.fromkeys(kinds))
        deadline = None if seconds is None else time.monotonic() + seconds
        values = {f":k{i}": {"S": kind} for i, kind in enumerate(kinds)}

        def count(segment: int) -> tuple[dict[str, int], int, bool]:
            request: dict[str, Any] = {
                "TableName": self.table,
                "Segment": segment,
                "TotalSegments": total_segments,
                "ProjectionExpression": "#kind",
                "FilterExpression": f"#kind IN ({', '.join(values)})",
                "ExpressionAttributeNames": {"#kind": "kind"},
                "ExpressionAttributeValues": values,
            }
            found = dict.fromkeys(kinds, 0)
            scanned = 0
            while True:
                response = self._call("scan", **request)
                for item in response.get("Items", []):
                    found[item["kind"]["S"]] += 1
                scanned += int(response.get("ScannedCount", 0))
                if "LastEvaluatedKey" not in response:
                    return found, scanned, True
                if deadline is not None and time.monotonic() > deadline:
                    return found, scanned, False
                request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

        counts = dict.fromkeys(kinds, 0)
        if not kinds:
            return KindCounts(counts, exact=True)
        with ThreadPoolExecutor(max_workers=min(total_segments, 16), thread_name_prefix="count") as pool:
            results = list(pool.map(count, range(total_segments)))
        scanned = sum(result[1] for result in results)
        for found, _, _ in results:
            for kind, number in found.items():
                counts[kind] += number
        if all(result[2] for result in results):
            return KindCounts(counts, exact=True)
        total = int(self._call("describe_table", TableName=self.table)["Table"].get("ItemCount", 0))
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
            request: dict[str, Any] = {
                "TableName": self.table,
                "Segment": segment,
                "TotalSegments": total_segments,
                "FilterExpression": f"#kind IN ({', '.join(values)})",
                "ExpressionAttributeNames": {"#kind": "kind"},
                "ExpressionAttributeValues": values,
            }
            items: list[dict[str, Any]] = []
            for _ in range(max_pages):
                response = self._call("scan", **request)
                items.extend(deserialize(raw) for raw in response.get("Items", []))
                if len(items) >= per_segment or "LastEvaluatedKey" not in response:
                    break
                request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
            return items[:per_segment]

        with ThreadPoolExecutor(max_workers=min(total_segments, 16), thread_name_prefix="sample") as pool:
            return [item for items in pool.map(sample, range(total_segments)) for item in items]

    def count_dead_letters(self) -> int:
        """How many dead letters are kept (a Query on their partition that counts, every page)."""
        request: dict[str, Any] = {
            "TableName": self.table,
            "Select": "COUNT",
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": "deadletter"}},
        }
        found = 0
        while True:
            response = self._call("query", **request)
            found += int(response.get("Count", 0))
            if "LastEvaluatedKey" not in response:
                return found
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def oldest_dead_letters(self, limit: int) -> list[dict[str, Any]]:
        """The `limit` oldest dead letters (sk starts with their time), payloads parsed."""
        request: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": "deadletter"}},
        }
        letters: list[dict[str, Any]] = []
        while len(letters) < limit:
            response = self._call("query", **request, Limit=limit - len(letters))
            letters.extend(deserialize(raw) for raw in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                break
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        for letter in letters:
            letter["payload"] = json.loads(letter["payload"])
        return letters[:limit]


@dataclass(frozen=True)
class KindCounts:
    """Items per kind; `exact` False: an estimate (the count ran out of time)."""

    counts: dict[str, int]
    exact: bool

    def __getitem__(self, kind: str) -> int:
        return self.counts[kind]


def _backoff(attempt: int) -> float:
    """Unprocessed items are throttled items: wait 50 ms, 100 ms, 200 ms ... with jitter."""
    return 0.05 * 2.0**attempt * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not cryptography


_shared: ProfileStore | None = None


def shared_store(table_name: str) -> ProfileStore:
    """One store, so one boto3 client, per warm container (made on first use, not at import)."""
    global _shared
    if _shared is None or _shared.table != table_name:
        _shared = ProfileStore(table_name)
    return _shared


def forget_shared_store() -> None:
    global _shared
    _shared = None


def _check_item_sizes(change: ProfileChange) -> None:
    """ProfileTooLarge before writing a profile or account over DynamoDB's 400 KB item."""
    for item in [profile.to_item() for profile, _ in change.profiles] + [a.to_item() for a, _ in change.accounts]:
        size = item_size({**item, "version": item.get("version", 0) + 1})
        if size > MAX_ITEM_BYTES:
            raise ProfileTooLarge(item["pk"], size)


def overflow_items(uid: str, change: ProfileChange) -> list[dict[str, Any]]:
    """The dropped identity pks in items of at most OVERFLOW_BYTES (a fresh sort key each: one per change)."""
    chunks: list[list[str]] = [[]]
    size = 0
    for pk in dict.fromkeys(change.dropped):
        if chunks[-1] and size + len(pk.encode()) > OVERFLOW_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(pk)
        size += len(pk.encode()) + 3
    items = [{"pk": f"ids#{uid}", "sk": uuid.uuid4().hex, "kind": "ids", "ids": chunk} for chunk in chunks]
    if change.merged_uids:
        items[0]["uids"] = list(change.merged_uids)
    return items


def _first_pk(change: ProfileChange) -> str:
    return change.profiles[0][0].pk if change.profiles else "(account)"


def _commit_failure(change: ProfileChange, cancelled: list[dict[str, Any]]) -> Exception:
    """What a cancelled profile transaction means, from its cancellation reasons."""
    if any("item size" in str(reason.get("Message", "")).lower() for reason in cancelled):
        return ProfileTooLarge(_first_pk(change))
    reasons = [reason.get("Code", "None") for reason in cancelled]
    if change.message_id and reasons and reasons[0] == "ConditionalCheckFailed":
        return DuplicateMessage(change.message_id)
    if any(code in _UNAVAILABLE or code == "ThrottlingError" for code in reasons):
        return StoreUnavailable()
    return VersionConflict(str(reasons))
