"""Profiles, aliases and accounts: the identity items read, the message's ProfileChange written in
one transaction, and the scan that resync pages through."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from segment_connector.domain.errors import BadRequest, DuplicateMessage, StoreUnavailable, VersionConflict
from segment_connector.domain.models.items import (
    ACCOUNT_SK,
    EVENT_SK_PREFIX,
    PROFILE_SK,
    Account,
    IdentityAlias,
    UserProfile,
    account_pk,
)
from segment_connector.domain.storable import MAX_ITEM_BYTES, ProfileTooLarge, item_size
from segment_connector.store.table import UNAVAILABLE, Table, deserialize, is_condition_failure, serialize

DEDUP_DAYS = 8
RECENT_MESSAGES = 8  # messageId hashes a profile keeps (a redelivery comes within a few hours)
OVERFLOW_BYTES = 100_000  # of identity pks in one overflow item (DynamoDB's item: 400 KB)


@dataclass
class ProfileChange:
    """Everything one message changes, written in one transaction.

    `profiles`/`accounts` pair the new state with the version read (None: must not exist yet).
    `retired` profiles become aliases of the profile that absorbed them. `dropped`: identity pks
    the bounded profile lists let go, kept in overflow items `ids#<uid>` (with the uids of profiles
    merged in, `merged_uids`), so that a delete finds them. A delete writes its `tombstone` and
    removes the `deleted` profiles (pk, version read) (deletion.py). `stale_aliases`: identity pks
    whose alias items still point at a pk this change retires; repointed at the profile after the
    commit (alias_repoints.py), so that a lookup follows one alias, not a chain.
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
    stale_aliases: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.profiles or self.retired or self.aliases or self.accounts or self.tombstone)


class Profiles:
    """Identity items (profiles and aliases) and accounts."""

    def __init__(self, table: Table):
        self.table = table

    def identity_items(self, pks: Iterable[str]) -> dict[str, UserProfile | IdentityAlias]:
        """Profiles and aliases stored at these identity pks (one strongly consistent BatchGet)."""
        keys = [{"pk": {"S": pk}, "sk": {"S": PROFILE_SK}} for pk in dict.fromkeys(pks)]
        found: dict[str, UserProfile | IdentityAlias] = {}
        for raw in self.table.batch_get(keys):
            item = _identity_item(raw)
            if item is not None:
                found[item.pk] = item
        return found

    def identity_head(self, pk: str) -> tuple[UserProfile | IdentityAlias | None, bool]:
        """The identity item at `pk` and whether the partition holds events, in one strongly
        consistent Query of one item: sort keys descending, `identity` comes before every
        `event#...` (whether there are events is known only when there is no identity item)."""
        response = self.table.call(
            "query",
            TableName=self.table.name,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": pk}},
            ScanIndexForward=False,
            ConsistentRead=True,
            Limit=1,
        )
        items = [deserialize(raw) for raw in response.get("Items", [])]
        if not items:
            return None, False
        if items[0]["sk"] == PROFILE_SK:
            return _identity_item(items[0]), False
        return None, str(items[0]["sk"]).startswith(EVENT_SK_PREFIX)

    def accounts(self, group_ids: Iterable[str]) -> dict[str, Account]:
        keys = [{"pk": {"S": account_pk(g)}, "sk": {"S": ACCOUNT_SK}} for g in dict.fromkeys(group_ids)]
        return {raw["group_id"]: Account.model_validate(raw) for raw in self.table.batch_get(keys)}

    def users_of_account(self, group_id: str) -> list[str]:
        """pks of the profiles linked to an account (GSI `users_by_account`)."""
        items = self.table.query_all(
            IndexName="users_by_account",
            KeyConditionExpression="account_id = :gid",
            ExpressionAttributeValues={":gid": {"S": group_id}},
        )
        return [raw["pk"]["S"] for raw in items]

    def scan(
        self, segment: int, total: int, start: dict[str, Any] | None, limit: int
    ) -> tuple[list[UserProfile | Account], dict[str, Any] | None]:
        """One page of a parallel scan segment: its users and accounts, and where the next page starts."""
        request: dict[str, Any] = {
            "TableName": self.table.name,
            "Segment": segment,
            "TotalSegments": total,
            "Limit": limit,
            "FilterExpression": "kind IN (:user, :account)",
            "ExpressionAttributeValues": {":user": {"S": "user"}, ":account": {"S": "account"}},
        }
        if start:
            request["ExclusiveStartKey"] = start
        response = self.table.call("scan", **request)
        items: list[UserProfile | Account] = []
        for raw in response.get("Items", []):
            item = deserialize(raw)
            items.append(UserProfile.model_validate(item) if item["kind"] == "user" else Account.model_validate(item))
        return items, response.get("LastEvaluatedKey")

    def commit(self, change: ProfileChange) -> None:
        """Write a ProfileChange atomically.

        Raises DuplicateMessage when the messageId was applied before, VersionConflict when
        another writer got there first (the caller reads again and retries), ProfileTooLarge when
        a profile or account would exceed DynamoDB's 400 KB item (checked before writing).
        """
        _remember_message(change)
        _check_item_sizes(change)
        if _one_profile_only(change):
            self._put_profile(change)
            return
        try:
            self.table.call("transact_write_items", TransactItems=self._commit_actions(change))
        except BadRequest as error:
            if "item size" in error.message.lower():  # DynamoDB counted more than item_size did
                raise ProfileTooLarge(_first_pk(change)) from error
            raise
        except ClientError as error:
            if error.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            raise _commit_failure(change, error.response.get("CancellationReasons", [])) from None
        if change.stale_aliases and change.profiles:
            from segment_connector.store.alias_repoints import repoint

            retired = [alias.pk for alias, _ in change.retired]
            repoint(self.table, change.stale_aliases, retired, change.profiles[0][0].pk)

    def _put_profile(self, change: ProfileChange) -> None:
        """A change of one stored profile alone: one conditional PutItem (a transaction would bill
        every item twice); its messageId is deduplicated by the profile's `recent_messages`."""
        profile, expected = change.profiles[0]
        put = self._versioned_put(profile.to_item(), expected)["Put"]
        try:
            self.table.call("put_item", **put)
        except BadRequest as error:
            if "item size" in error.message.lower():
                raise ProfileTooLarge(profile.pk) from error
            raise
        except ClientError as error:
            if not is_condition_failure(error):
                raise
            raise VersionConflict(profile.pk) from None

    def _commit_actions(self, change: ProfileChange) -> list[dict[str, Any]]:
        table = self.table
        actions: list[dict[str, Any]] = []
        if change.message_id:
            marker = {
                "pk": f"msg#{change.message_id}",
                "sk": "msg",
                "kind": "dedup",
                "expires_at": int(time.time()) + DEDUP_DAYS * 86400,
            }
            actions.append(table.put_action(marker, "attribute_not_exists(pk)"))
        for profile, expected in change.profiles:
            actions.append(self._versioned_put(profile.to_item(), expected))
        for alias, expected in change.retired:
            actions.append(table.put_action(alias.to_item(), "version = :v", {":v": {"N": str(expected)}}))
        for alias in change.aliases:
            actions.append(
                table.put_action(
                    alias.to_item(), "attribute_not_exists(pk) OR kind = :alias", {":alias": {"S": "alias"}}
                )
            )
        for account, expected in change.accounts:
            actions.append(self._versioned_put(account.to_item(), expected))
        return actions + self._deletion_actions(change)

    def _deletion_actions(self, change: ProfileChange) -> list[dict[str, Any]]:
        """The overflow items of dropped ids, and a delete's tombstone, registration and deletes."""
        table = self.table
        actions: list[dict[str, Any]] = []
        if change.profiles and (change.dropped or change.merged_uids):
            uid = change.profiles[0][0].uid
            actions += [
                {"Put": {"TableName": table.name, "Item": serialize(item)}} for item in overflow_items(uid, change)
            ]
        if change.tombstone:
            actions.append(table.put_action(change.tombstone, "attribute_not_exists(pk)"))
        if change.registration:
            actions.append({"Put": {"TableName": table.name, "Item": serialize(change.registration)}})
        for pk, version in change.deleted:
            delete = {"Key": {"pk": {"S": pk}, "sk": {"S": PROFILE_SK}}, "ConditionExpression": "version = :v"}
            delete |= {"TableName": table.name, "ExpressionAttributeValues": {":v": {"N": str(version)}}}
            actions.append({"Delete": delete})
        return actions

    def _versioned_put(self, item: dict[str, Any], expected: int | None) -> dict[str, Any]:
        if expected is None:
            # New at this pk; a profile moved here keeps counting (version > 1 tells the stream so).
            return self.table.put_action(
                {**item, "version": item.get("version", 0) + 1},
                "attribute_not_exists(pk) OR kind = :alias",
                {":alias": {"S": "alias"}},
            )
        return self.table.put_action({**item, "version": expected + 1}, "version = :v", {":v": {"N": str(expected)}})


def _identity_item(raw: dict[str, Any]) -> UserProfile | IdentityAlias | None:
    kind = raw.get("kind")
    if kind == "user":
        return UserProfile.model_validate(raw)
    if kind == "alias":
        return IdentityAlias.model_validate(raw)
    return None


def message_hash(message_id: str) -> str:
    """48 bits of the messageId's SHA-256, base64url (8 characters)."""
    digest = hashlib.sha256(message_id.encode()).digest()[:6]
    return base64.urlsafe_b64encode(digest).decode()


def _remember_message(change: ProfileChange) -> None:
    """DuplicateMessage when the message's profile applied it already; else note it there."""
    if not (change.message_id and change.profiles):
        return
    profile = change.profiles[0][0]
    mark = message_hash(change.message_id)
    recent = list(profile.recent_messages or [])
    if mark in recent:
        raise DuplicateMessage(change.message_id)
    profile.recent_messages = [*recent, mark][-RECENT_MESSAGES:]


def _one_profile_only(change: ProfileChange) -> bool:
    """A change of one profile that exists (its version read), and nothing else."""
    return (
        len(change.profiles) == 1
        and change.profiles[0][1] is not None
        and not (change.retired or change.aliases or change.accounts or change.dropped or change.merged_uids)
        and not (change.tombstone or change.registration or change.deleted)
    )


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
    if any(code in UNAVAILABLE or code == "ThrottlingError" for code in reasons):
        return StoreUnavailable()
    return VersionConflict(str(reasons))
