"""Outbound: a DynamoDB stream record read into the items it changed (its images)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from segment_connector.domain.models.items import Account, StoredEvent, UserProfile
from segment_connector.segment_api.delivery import RecordPlan
from segment_connector.store.table import deserialize_image


@dataclass
class Change:
    """A stream record with its images read into items."""

    plan: RecordPlan
    pk: str
    kind: str
    event_name: str
    new: UserProfile | Account | StoredEvent | None = None
    old: UserProfile | Account | None = None

    @property
    def seq(self) -> str:
        return self.plan.seq


def sequence_number(record: Any) -> str:
    dynamodb = record.get("dynamodb") if isinstance(record, Mapping) else None
    return str((dynamodb or {}).get("SequenceNumber", ""))


def parse(raw: dict[str, Any]) -> Change:
    dynamodb = raw.get("dynamodb") or {}
    created = dynamodb.get("ApproximateCreationDateTime")
    plan = RecordPlan(seq=sequence_number(raw), created=float(created) if created is not None else None, raw=raw)
    new_image = deserialize_image(dynamodb["NewImage"]) if dynamodb.get("NewImage") else {}
    old_image = deserialize_image(dynamodb["OldImage"]) if dynamodb.get("OldImage") else {}
    kind = str(new_image.get("kind", ""))
    change = Change(plan, str(new_image.get("pk", "")), kind, str(raw.get("eventName", "")))
    if kind == "user":
        change.new = UserProfile.model_validate(new_image)
        change.old = UserProfile.model_validate(old_image) if old_image.get("kind") == "user" else None
    elif kind == "account":
        change.new = Account.model_validate(new_image)
        change.old = Account.model_validate(old_image) if old_image.get("kind") == "account" else None
    elif kind == "event" and change.event_name == "INSERT":
        change.new = StoredEvent.from_item(new_image)
    return change


def people(change: Change) -> list[str]:
    """The uid of a user record's profile, then those of the profiles this change merged into it."""
    new, old = change.new, change.old
    assert isinstance(new, UserProfile)
    before = set(old.merged_uids or []) if isinstance(old, UserProfile) else set()
    return [new.uid] + [uid for uid in new.merged_uids or [] if uid not in before]


def moved(change: Change) -> bool:
    """A profile re-written at a better key (anonymous -> user_id): new here, but not a new user."""
    return change.old is None and isinstance(change.new, UserProfile) and change.new.version > 1
