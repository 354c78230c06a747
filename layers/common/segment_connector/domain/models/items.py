"""What the table stores: user profiles, identity aliases, events and accounts (see docs/design.md).

No `from __future__ import annotations` here: pydantic would evaluate each model's ~40 string
annotations (a compiled ForwardRef each) when the classes are made, on every cold start that
imports the store; evaluated by Python as the classes are defined, they cost ~0.8 ms less."""

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from segment_connector.domain.event_body import pack, unpack

IdentityType = Literal["user_id", "anonymous_id", "email"]
PROFILE_SK = "identity"
ACCOUNT_SK = "account"
EVENT_SK_PREFIX = "event#"
IDENTITY_ORDER: tuple[IdentityType, ...] = ("user_id", "anonymous_id", "email")


def identity_pk(kind: IdentityType, value: str) -> str:
    return f"id#{kind}#{value}"


def account_pk(group_id: str) -> str:
    return f"account#{group_id}"


class _Item(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)

    def to_item(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class UserProfile(_Item):
    """A user; stored at the pk of its best identity (user_id, else anonymous_id, else email)."""

    pk: str
    sk: str = PROFILE_SK
    kind: Literal["user"] = "user"
    uid: str = Field(default_factory=lambda: uuid.uuid4().hex)
    user_id: str | None = None
    anonymous_ids: list[str] = Field(default_factory=list)
    email: str | None = None
    traits: dict[str, Any] = Field(default_factory=dict)
    # when each trait was observed, by path: "plan", "address/city" (keys escaped as in a JSON
    # Pointer); a time also covers what is below its path. See traits.py.
    trait_times: dict[str, str] = Field(default_factory=dict)
    account_id: str | None = None
    account_linked_at: str | None = None
    identities: list[str] = Field(default_factory=list)
    # uids of the profiles merged into this one (the newest last, bounded): outbound unites their
    # segment history into this one's (segment_history.py)
    merged_uids: list[str] | None = None
    # short hashes of the newest messageIds applied to it (store/profiles.py: a redelivery of one is a
    # duplicate, without a marker item and a transaction for a change of this profile alone)
    recent_messages: list[str] | None = None
    created_at: str
    updated_at: str
    version: int = 0

    def best_pk(self) -> str:
        if self.user_id:
            return identity_pk("user_id", self.user_id)
        if self.anonymous_ids:
            return identity_pk("anonymous_id", self.anonymous_ids[0])
        return identity_pk("email", self.email or "")

    def event_partitions(self) -> list[str]:
        """Identity pks under which this user's events are stored (events never arrive by email)."""
        return [pk for pk in self.identities if not pk.startswith("id#email#")]

    def activity_partitions(self) -> list[str]:
        """Where segment rules read the user's events: its event partitions, else its own pk (a
        visitor seen only through events, whose profile lists no identities)."""
        return self.event_partitions() or [self.pk]


class IdentityAlias(_Item):
    """Another identity of a user: points at the pk of the user's profile."""

    pk: str
    sk: str = PROFILE_SK
    kind: Literal["alias"] = "alias"
    profile_pk: str


class StoredEvent(_Item):
    """A track/page/screen event, keyed by the identity it arrived with and its messageId."""

    pk: str
    sk: str
    kind: Literal["event"] = "event"
    message_id: str
    type: Literal["track", "page", "screen"]
    event: str
    properties: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    timestamp: str  # when it happened, corrected for the device's clock (never after its receipt)
    event_time: str
    # the time the message gave, kept only when `timestamp` differs from it (clock skew, a future time)
    original_timestamp: str | None = None
    source: Literal["segment", "api", "connector"]
    user_id: str | None = None
    anonymous_id: str | None = None
    # What segment rules and computed traits read of the event (issue 15: domain/activity.py), in
    # the LSI `by_time` with its name, type and timestamp; absent when no rule reads the event
    facts: dict[str, Any] | None = None
    expires_at: int | None = None  # the table's TTL: the timestamp plus event_retention_days

    def to_item(self) -> dict[str, Any]:
        """As stored: `properties` and `context` in one compressed `body` (domain/event_body.py),
        no `message_id` (the sort key holds it)."""
        item = self.model_dump(exclude_none=True, exclude={"properties", "context", "message_id"})
        item["body"] = pack(self.properties, self.context)
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> "StoredEvent":
        """A stored event (or a stream image of one); an item stored before bodies were packed
        has its `properties` and `context` as they are."""
        fields = dict(item)
        body = fields.pop("body", None)
        if body is not None:
            fields["properties"], fields["context"] = unpack(body)
        fields.setdefault("message_id", str(fields.get("sk", "")).removeprefix(EVENT_SK_PREFIX))
        return cls.model_validate(fields)

    @classmethod
    def build(cls, partition_pk: str, message_id: str, timestamp: str, **fields: Any) -> "StoredEvent":
        return cls(
            pk=partition_pk,
            sk=f"{EVENT_SK_PREFIX}{message_id}",
            message_id=message_id,
            timestamp=timestamp,
            event_time=f"{timestamp}#{message_id}",
            **fields,
        )


class Account(_Item):
    pk: str
    sk: str = ACCOUNT_SK
    kind: Literal["account"] = "account"
    group_id: str
    traits: dict[str, Any] = Field(default_factory=dict)
    # when each trait was observed, by path: "plan", "address/city" (keys escaped as in a JSON
    # Pointer); a time also covers what is below its path. See traits.py.
    trait_times: dict[str, str] = Field(default_factory=dict)
    created_at: str
    updated_at: str
    version: int = 0
